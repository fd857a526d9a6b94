// Running a test suite as a child process and counting its results from its output: what
// scripts/test.mjs and the scripts it runs (the Node matrix, the install test) share. The summary
// line they all print, "N passed, N failed, N skipped", is the one CI reads. Dependency-free.
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository's root folder. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** cargo test: the sum of its "test result:" lines. */
export function countCargo(output) {
  const totals = { passed: 0, failed: 0, skipped: 0 }
  for (const m of output.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/g)) {
    totals.passed += Number(m[1])
    totals.failed += Number(m[2])
    totals.skipped += Number(m[3])
  }
  return totals
}

/** ava's closing lines. */
export function countAva(output) {
  const number = (re) => Number(re.exec(output)?.[1] ?? 0)
  return {
    passed: number(/^\s*(\d+) tests? passed/m),
    failed: number(/^\s*(\d+) tests? failed/m) + number(/^\s*(\d+) uncaught exceptions?/m) + number(/^\s*(\d+) unhandled rejections?/m),
    skipped: number(/^\s*(\d+) tests? skipped/m) + number(/^\s*(\d+) tests? todo/m),
  }
}

/** A runner of our own: its last summary line. */
export function countSummary(output) {
  const matches = [...output.matchAll(/^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/gm)]
  const last = matches.at(-1)
  return last
    ? { passed: Number(last[1]), failed: Number(last[2]), skipped: Number(last[3] ?? 0) }
    : { passed: 0, failed: 0, skipped: 0 }
}

/** A suite with no count of its own: one check that passed or failed by its exit code. */
export const countOne = () => ({ passed: 1, failed: 0, skipped: 0 })

export function summaryLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed, ${skipped} skipped`
}

/**
 * Runs `suite` ({ name, command, args, count, cwd?, env? }), streaming its output, and resolves
 * to { code, counts }. A suite that failed without a countable failure still counts one.
 */
export function runSuite(suite) {
  return new Promise((resolve) => {
    console.log(`\n=== ${suite.name}`)
    const child = spawn(suite.command, suite.args, {
      cwd: suite.cwd,
      env: { ...process.env, FORCE_COLOR: '0', ...suite.env },
    })
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
      if (code !== 0 && counts.failed === 0) counts.failed = 1
      resolve({ code, counts })
    })
  })
}

/** Runs suites in turn, prints the summary line, and exits non-zero if any failed. */
export async function runAll(suites) {
  const totals = { passed: 0, failed: 0, skipped: 0 }
  let failedSuites = 0
  for (const suite of suites) {
    const { code, counts } = await runSuite(suite)
    for (const key of Object.keys(totals)) totals[key] += counts[key]
    if (code !== 0) failedSuites++
  }
  console.log(`\n${summaryLine(totals)}`)
  process.exit(failedSuites === 0 ? 0 : 1)
}
