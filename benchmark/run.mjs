#!/usr/bin/env node
// The benchmark: this package between two Node processes, side by side with the same scenario in C
// (native/peer.c, compiled here), with Node's own net module for round trips (what Node's event
// loop itself costs), and with Node's subprocess.send(message, handle) for handing over listening
// sockets. Each figure is the median of several runs, printed with its ratio to C (or to Node's
// handle passing).
//
// Two placements: both processes pinned to one vCPU (the kernel's own cost, no cross-CPU wakeups),
// and free to run on any CPU. `npm run bench`; `npm run bench -- --quick` for fewer runs.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const quick = process.argv.includes('--quick')
const RUNS = quick ? 1 : 3
const SCALE = quick ? 0.25 : 1

const build = join(here, '.build')
mkdirSync(build, { recursive: true })
const cPeer = join(build, 'peer')
execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', cPeer, join(here, 'native', 'peer.c')], { stdio: 'inherit', timeout: 120_000, killSignal: 'SIGKILL' })

const hasTaskset = process.platform === 'linux' && spawnSync('taskset', ['-c', '0', 'true']).status === 0
const placements = hasTaskset ? ['one vCPU', 'free'] : ['free']

// A hang guard, not a measurement: the slowest full-size run takes a few seconds. SIGTERM, so
// that the peer stops its child (a datagram child would not notice its parent going).
const RUN_LIMIT_MS = 180_000

/** Runs a peer command and returns messages per second. */
function rate(command, args, placement) {
  const [cmd, argv] = placement === 'one vCPU' ? ['taskset', ['-c', '0', command, ...args]] : [command, args]
  const out = execFileSync(cmd, argv, { cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: RUN_LIMIT_MS, killSignal: 'SIGTERM' })
  const { messages, seconds } = JSON.parse(out.trim().split('\n').pop())
  return messages / seconds
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function measure(command, args, placement) {
  return median(Array.from({ length: RUNS }, () => rate(command, args, placement)))
}

const n = (count) => String(Math.max(1000, Math.round(count * SCALE)))
// [name, mode, type, payload, fds per message, messages, target ratio, unit]
const scenarios = [
  ['64 B messages one way, stream', 'oneway', 'stream', 64, 0, n(400000), 0.7, 'msg'],
  ['64 B messages one way, seqpacket', 'oneway', 'seqpacket', 64, 0, n(400000), 0.7, 'msg'],
  ['64 B messages one way, dgram', 'oneway', 'dgram', 64, 0, n(400000), 0.7, 'msg'],
  ['1 fd per message, stream', 'oneway', 'stream', 64, 1, n(200000), 0.75, 'fd'],
  ['16 fds per message, stream', 'oneway', 'stream', 64, 16, n(40000), 0.75, 'fd'],
  ['round trips, no fd, stream', 'roundtrip', 'stream', 64, 0, n(20000), 0.85, 'rt'],
  ['round trips, 1 fd, stream', 'roundtrip', 'stream', 64, 1, n(20000), 0.85, 'rt'],
]

const rows = []
const fmt = (x) => Math.round(x).toLocaleString('en-US')
console.log(`sendmsg benchmark: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${RUNS} run(s) each, median`)
for (const placement of placements) {
  console.log(`\n## both processes ${placement === 'one vCPU' ? 'pinned to one vCPU' : 'free to run on any CPU'}\n`)
  console.log('| scenario | C | sendmsg (Node) | ratio | target | Node net, for scale |')
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |')
  for (const [name, mode, type, payload, fds, count, target, unit] of scenarios) {
    const args = [mode, type, String(payload), String(fds), count]
    const c = measure(cPeer, args, placement)
    const ours = measure(process.execPath, ['peer.mjs', ...args], placement)
    const perUnit = unit === 'fd' ? fds : 1
    const label = unit === 'fd' ? 'fds/s' : unit === 'rt' ? 'round trips/s' : 'msg/s'
    const ratio = ours / c
    let netColumn = ''
    if (mode === 'roundtrip' && fds === 0) {
      const viaNet = measure(process.execPath, ['net-peer.mjs', String(payload), count], placement)
      netColumn = `${fmt(viaNet)} ${label} (${(viaNet / c).toFixed(2)})`
    }
    rows.push({ placement, name, c: c * perUnit, ours: ours * perUnit, ratio, target })
    console.log(`| ${name} | ${fmt(c * perUnit)} ${label} | ${fmt(ours * perUnit)} ${label} | ${ratio.toFixed(2)} | ${target.toFixed(2)} | ${netColumn} |`)
  }
  // Handing over listening sockets: ours against Node's own handle passing (no C peer).
  const handoffs = n(20000)
  const nodeCount = String(Math.max(200, Math.round(Number(handoffs) / 10)))
  const node = measure(process.execPath, ['node-ipc-peer.mjs', nodeCount], placement)
  const raw = measure(process.execPath, ['peer.mjs', 'handoff', 'stream', '1', '1', handoffs], placement)
  const wrapped = measure(process.execPath, ['peer.mjs', 'handoff-server', 'stream', '1', '1', handoffs], placement)
  console.log('\n| listening TCP sockets handed to a child, one per message | per second | ratio to Node | target |')
  console.log('| --- | ---: | ---: | ---: |')
  console.log(`| Node subprocess.send(msg, server): child gets a net.Server | ${fmt(node)} | 1.0x | |`)
  console.log(`| sendmsg: child owns the listening descriptor | ${fmt(raw)} | ${(raw / node).toFixed(1)}x | 20x |`)
  console.log(`| sendmsg: child owns it and makes a listening net.Server of it | ${fmt(wrapped)} | ${(wrapped / node).toFixed(1)}x | |`)
  rows.push({ placement, name: 'listening sockets handed over vs Node', c: node, ours: raw, ratio: raw / node, target: 20 })
}
const missed = rows.filter((row) => row.ratio < row.target)
console.log(`\n${rows.length - missed.length} of ${rows.length} figures meet their target.`)
for (const row of missed) console.log(`  below target (${row.placement}): ${row.name}: ${row.ratio.toFixed(2)} < ${row.target}`)
