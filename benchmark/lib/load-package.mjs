// Which build of this package a peer measures: this checkout's (the package's own name, resolved
// through package.json "exports"), or, for `run.mjs --compare=<checkout>`, another checkout's, named
// by SENDMSG_BENCH_PACKAGE. Either way only the public entry point is loaded, so the peers keep
// working whatever the internals become.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

export const PACKAGE_ENV = 'SENDMSG_BENCH_PACKAGE'

export async function loadSendmsg() {
  const root = process.env[PACKAGE_ENV]
  if (!root) return import('sendmsg')
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const entry = manifest.exports?.['.']?.import?.default ?? manifest.exports?.['.']?.require?.default ?? manifest.main
  if (typeof entry !== 'string') throw new Error(`${root}/package.json names no entry point`)
  return import(pathToFileURL(resolve(root, entry)).href)
}
