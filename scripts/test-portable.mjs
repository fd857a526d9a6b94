#!/usr/bin/env node
// Runs the portable suite (__test__/portable/suite.mjs) on every runtime the package supports:
// Node (libuv's poll), Node with SENDMSG_REACTOR=thread (the poller thread that Bun and Deno
// use), Bun and Deno. Each run has a hard timeout: a crash or a hang is a failure.
//
//   node scripts/test-portable.mjs            all four
//   node scripts/test-portable.mjs bun deno   only those (node, node-thread, bun, deno)
//
// Bun and Deno come from the npm registry's `bun` and `deno` packages (which install the official
// build for this platform), pinned, kept under .cache/<runtime>/<version>/. The suite loads the
// built package (dist/): run `npm run build` first. Ends with "N passed, N failed".
// Dependency-free.
import { spawn } from 'node:child_process'
import { join } from 'node:path'

import { countSummary, root } from './lib/suites.mjs'
import { RUNTIMES, runtimeCommand } from './lib/runtimes.mjs'

/** Per runtime: the suite takes a few seconds; a run past this is hung. */
const TIMEOUT_MS = 120_000

const suite = join(root, '__test__', 'portable', 'suite.mjs')

/** Runs one suite with a hard timeout; resolves to its counts (a crash, hang or no count fails). */
function run(name, { command, args, env = {} }) {
  return new Promise((resolve) => {
    console.log(`\n=== portable suite on ${name}`)
    const child = spawn(command, args, { cwd: root, env: { ...process.env, FORCE_COLOR: '0', ...env } })
    let output = ''
    const collect = (stream) => (chunk) => {
      output += chunk
      stream.write(chunk)
    }
    child.stdout.on('data', collect(process.stdout))
    child.stderr.on('data', collect(process.stderr))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, TIMEOUT_MS)
    child.on('error', (error) => {
      clearTimeout(timer)
      console.error(`could not run ${command}: ${error.message}`)
      resolve({ passed: 0, failed: 1 })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const counts = countSummary(output)
      if (timedOut) console.log(`${name}: killed after ${TIMEOUT_MS / 1000} s (hung)`)
      else if (signal) console.log(`${name}: died of ${signal}`)
      if (code !== 0 && counts.failed === 0) counts.failed = 1
      resolve(counts)
    })
  })
}

const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !RUNTIMES.includes(name))
if (unknown.length > 0) {
  console.error(`unknown runtime ${unknown.join(', ')}: expected ${RUNTIMES.join(', ')}`)
  process.exit(2)
}
const totals = { passed: 0, failed: 0 }
for (const name of wanted.length > 0 ? wanted : RUNTIMES) {
  let spec
  try {
    const runtime = runtimeCommand(name)
    spec = { command: runtime.command, args: [...runtime.args, suite], env: runtime.env }
  } catch (error) {
    console.error(error.message)
    totals.failed++
    continue
  }
  const counts = await run(name, spec)
  totals.passed += counts.passed
  totals.failed += counts.failed
}
console.log(`\n${totals.passed} passed, ${totals.failed} failed`)
process.exit(totals.failed === 0 ? 0 : 1)
