#!/usr/bin/env node
// Runs every suite below in turn, streaming their output, and ends with one line that sums them
// up: "N passed, N failed, N skipped" (CI reads it). Exits non-zero if any suite failed.
// Dependency-free; `npm test` runs it after scripts/setup.mjs. Arguments are passed on to ava.
import { join } from 'node:path'

import { countAva, countCargo, countOne, countSummary, root, runAll } from './lib/suites.mjs'

const bin = (name) => join(root, 'node_modules', '.bin', name)

await runAll([
  { name: 'cargo test', command: 'cargo', args: ['test', '--workspace', '--color', 'never'], count: countCargo },
  { name: 'rustfmt', command: 'cargo', args: ['fmt', '--all', '--check'], count: countOne },
  {
    name: 'clippy',
    command: 'cargo',
    args: ['clippy', '--workspace', '--all-targets', '--color', 'never', '--', '-D', 'warnings'],
    count: countOne,
  },
  { name: 'oxlint', command: bin('oxlint'), args: ['--deny-warnings'], count: countOne },
  { name: 'actionlint', command: process.execPath, args: ['scripts/lint-workflows.mjs'], count: countOne },
  { name: 'type-check of the specs', command: bin('tsc'), args: ['-p', '__test__/tsconfig.json'], count: countOne },
  { name: 'every export has an example', command: process.execPath, args: ['scripts/check-examples.mjs'], count: countOne },
  { name: 'README blocks and @examples type-check and run', command: process.execPath, args: ['scripts/check-docs-types.mjs'], count: countOne },
  { name: 'API reference (typedoc, not written)', command: bin('typedoc'), args: ['--emit', 'none'], count: countOne },
  { name: 'ava', command: bin('ava'), args: process.argv.slice(2), count: countAva },
  {
    // The same specs with the readiness backend Bun and Deno use, so both backends stay correct.
    name: 'ava with the poller-thread reactor (SENDMSG_REACTOR=thread)',
    command: bin('ava'),
    args: process.argv.slice(2),
    env: { SENDMSG_REACTOR: 'thread' },
    count: countAva,
  },
  {
    name: 'portable suite on Node 20, 22 and 24, Node with the poller thread, Bun and Deno',
    command: process.execPath,
    args: ['scripts/test-portable.mjs'],
    count: countSummary,
  },
  { name: 'glibc floor', command: process.execPath, args: ['scripts/check-glibc.mjs'], count: countSummary },
  { name: 'install test', command: process.execPath, args: ['scripts/test-install.mjs'], count: countSummary },
  {
    name: 'ava on the other Node versions',
    command: process.execPath,
    args: ['scripts/test-node-matrix.mjs', '--other-than-current', ...process.argv.slice(2)],
    count: countSummary,
  },
].map((suite) => ({ cwd: root, ...suite })))
