#!/usr/bin/env node
// Runs every test suite in turn (cargo test, the type-check of the specs, ava), streaming their
// output, and ends with one line that sums them up: "N passed, N failed, N skipped". Exits non-zero
// if any suite failed. Dependency-free; `npm test` runs it after scripts/setup.mjs.
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name) => join(root, 'node_modules', '.bin', name)

// Each suite: how to run it, and how to count its results from its output.
const suites = [
  {
    name: 'cargo test',
    command: 'cargo',
    args: ['test', '--workspace', '--color', 'never'],
    count(output) {
      const totals = { passed: 0, failed: 0, skipped: 0 }
      for (const m of output.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/g)) {
        totals.passed += Number(m[1])
        totals.failed += Number(m[2])
        totals.skipped += Number(m[3])
      }
      return totals
    },
  },
  {
    name: 'type-check of the specs',
    command: bin('tsc'),
    args: ['-p', '__test__/tsconfig.json'],
    count: () => ({ passed: 1, failed: 0, skipped: 0 }),
  },
  {
    name: 'ava',
    command: bin('ava'),
    args: process.argv.slice(2),
    count(output) {
      const number = (re) => Number(re.exec(output)?.[1] ?? 0)
      return {
        passed: number(/^\s*(\d+) tests? passed/m),
        failed: number(/^\s*(\d+) tests? failed/m) + number(/^\s*(\d+) uncaught exceptions?/m) + number(/^\s*(\d+) unhandled rejections?/m),
        skipped: number(/^\s*(\d+) tests? skipped/m) + number(/^\s*(\d+) tests? todo/m),
      }
    },
  },
]

function run(suite) {
  return new Promise((resolve) => {
    console.log(`\n=== ${suite.name}`)
    const child = spawn(suite.command, suite.args, { cwd: root, env: { ...process.env, FORCE_COLOR: '0' } })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
      process.stdout.write(chunk)
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
      process.stderr.write(chunk)
    })
    child.on('error', (error) => {
      console.error(`could not run ${suite.command}: ${error.message}`)
      resolve({ code: 1, counts: { passed: 0, failed: 1, skipped: 0 } })
    })
    child.on('close', (code) => {
      const counts = suite.count(output)
      // A suite that failed without a countable failure still counts as one.
      if (code !== 0 && counts.failed === 0) counts.failed = 1
      resolve({ code, counts })
    })
  })
}

const totals = { passed: 0, failed: 0, skipped: 0 }
let failedSuites = 0
for (const suite of suites) {
  const { code, counts } = await run(suite)
  for (const key of Object.keys(totals)) totals[key] += counts[key]
  if (code !== 0) failedSuites++
}
console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`)
process.exit(failedSuites === 0 ? 0 : 1)
