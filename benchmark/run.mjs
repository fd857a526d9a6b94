#!/usr/bin/env node
// The benchmark (`npm run bench`): this package between two Node processes, beside the same
// scenario in C (the kernel's cost), a minimal Node-API addon (the least any event-loop design in
// Node can do: "the ceiling"), Node's own net module and Node's own handle passing.
//
// What makes the figures honest:
//   - every contender runs an untimed warm-up first (V8 compiles for tens of thousands of round
//     trips; C gets the same warm-up), and only then starts the clock;
//   - every figure is the median of several runs, printed with min and max; contenders alternate
//     run by run (A B C A B C ...), so per-run ratios are paired and load changes hit all alike;
//   - the processor, CPU count, Node, kernel and the load during the runs are printed with it.
// Two placements: both processes pinned to one vCPU (taskset: the code's own cost, no cross-CPU
// wakeups) and free to run on any CPU.
//
//   node benchmark/run.mjs [--quick] [--runs=N] [--only=round,dgram] [--placement=pinned|free]
//                          [--compare=/path/to/other/checkout] [--runtimes[=node-thread,bun,deno]]
//                          [--json[=file]]
// --quick      fewer runs and shorter timed runs (the warm-up stays whole), for development
// --compare    runs the other checkout's build of the package beside this one, run for run (it
//              must be built: `npm run build` there), and prints this / other per row
// --runtimes   this package also on other runtimes (default: Node with the poller thread, Bun and
//              Deno; see scripts/lib/runtimes.mjs), each against C in the same run
// --json       all raw samples as JSON: to stdout (the tables then go to stderr), or to a file
import { writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildNative } from './lib/build.mjs'
import { printComparison, printPlacement, printSystem, printTargets } from './lib/report.mjs'
import { canPin, PINNED_CPU, runPeer } from './lib/run-peer.mjs'
import { scenarios } from './lib/scenarios.mjs'
import { describeCheckout, describeSystem, loadAverage } from './lib/system.mjs'
import { runtimeCommand } from '../scripts/lib/runtimes.mjs'

function parseOptions(argv) {
  const options = { quick: false, runs: undefined, only: [], placements: undefined, compare: undefined, json: undefined, runtimes: [] }
  for (const arg of argv) {
    const [flag, value] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    if (flag === '--quick') options.quick = true
    else if (flag === '--runs' && Number(value) >= 1) options.runs = Math.floor(Number(value))
    else if (flag === '--only' && value) options.only = value.split(',')
    else if (flag === '--placement' && (value === 'pinned' || value === 'free')) options.placements = [value]
    else if (flag === '--compare' && value) options.compare = resolve(value)
    else if (flag === '--runtimes') options.runtimes = value ? value.split(',') : ['node-thread', 'bun', 'deno']
    else if (flag === '--json') options.json = value ?? '-'
    else {
      console.error(`run.mjs: unknown or incomplete option ${arg} (see the comment at the top of benchmark/run.mjs)`)
      process.exit(2)
    }
  }
  return options
}

const options = parseOptions(process.argv.slice(2))
const RUNS = options.runs ?? (options.quick ? 3 : 5)
const SCALE = options.quick ? 0.25 : 1
// Tables go to stdout unless the JSON does; progress always goes to stderr.
const out = options.json === '-' ? (line) => console.error(line) : (line) => console.log(line)
// On a terminal, one status line rewritten in place; otherwise (a log) one line per row.
const progress = (text, rowStart) => {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`)
  else if (rowStart) console.error(text)
}

const { cPeer, udpPeer, ceilingError } = buildNative()
if (ceilingError) console.error(`run.mjs: the minimal Node-API addon was not built, its rows will say so:\n${ceilingError}`)
const runtimes = options.runtimes.map((name) => ({ name, ...runtimeCommand(name) }))
const rowsToRun = scenarios({ cPeer, udpPeer, ceilingError, compare: options.compare, runtimes, scale: SCALE }).filter(
  (row) => options.only.length === 0 || options.only.some((text) => row.name.includes(text)),
)
const pinnable = canPin()
const placements = (options.placements ?? ['pinned', 'free']).filter((p) => p === 'free' || pinnable)
const titles = { pinned: `both processes pinned to one vCPU (taskset -c ${PINNED_CPU})`, free: 'both processes free to run on any CPU' }

const system = describeSystem()
const checkout = describeCheckout(dirname(fileURLToPath(import.meta.url)))
const compared = options.compare && describeCheckout(options.compare)
const loadBefore = loadAverage()
const startedAt = new Date().toISOString()
const results = []
for (const placement of placements) {
  const rows = rowsToRun.map((row) => ({
    ...row,
    reference: row.reference ?? 'c',
    contenders: row.contenders.map((contender) => ({ ...contender, samples: [] })),
  }))
  for (const row of rows) {
    const runnable = row.contenders.filter((contender) => !contender.unavailable)
    for (let run = 0; run < RUNS; run++) {
      for (const contender of runnable) {
        progress(`${placement}: ${row.name}: run ${run + 1}/${RUNS}: ${contender.label}`, run === 0 && contender === runnable[0])
        const sample = runPeer(contender, placement)
        if (sample.error) console.error(`\nrun.mjs: ${placement}, ${row.name}, ${contender.label}, run ${run + 1} failed: ${sample.error}`)
        contender.samples.push(sample)
      }
    }
  }
  progress('')
  results.push({ placement, rows })
}
const loadAfter = loadAverage()

printSystem(out, { system, checkout, loadBefore, loadAfter, runs: RUNS, quick: options.quick })
const missed = []
for (const { placement, rows } of results) {
  printPlacement(out, { placement, title: titles[placement], rows, pinnedCpu: PINNED_CPU })
  for (const miss of printTargets(out, rows)) missed.push({ placement, ...miss })
  if (options.compare) printComparison(out, rows, `${options.compare} (${compared.commit ?? 'not a git checkout'})`)
}
if (!pinnable) out('\n(taskset is not available here: no pinned figures)')
if (missed.length > 0) {
  out('\nbelow target:')
  for (const miss of missed) out(`  ${miss.placement}: ${miss.what}: ${miss.ratio.toFixed(2)}`)
}

if (options.json !== undefined) {
  const document = {
    startedAt,
    system,
    loadAverage: { before: loadBefore, after: loadAfter },
    runs: RUNS,
    quick: options.quick,
    checkout,
    compare: options.compare ? { path: options.compare, ...compared } : null,
    results: results.map(({ placement, rows }) => ({
      placement,
      rows: rows.map((row) => ({
        name: row.name,
        unit: row.unit,
        perMessage: row.perMessage,
        reference: row.reference,
        targets: row.targets,
        contenders: row.contenders.map(({ id, label, command, args, unavailable, samples }) => ({ id, label, command, args, unavailable, samples })),
      })),
    })),
  }
  const text = JSON.stringify(document, null, 2)
  if (options.json === '-') console.log(text)
  else writeFileSync(options.json, `${text}\n`)
}
