#!/usr/bin/env node
// The UDP benchmark: 1,200-byte datagrams one way over loopback between two processes, through
// Node's dgram, through this package's UdpSocket (one datagram per send, a window's sends batched
// by the send queue, and GSO buffers received with GRO), and the same in C (native/udp-peer.c,
// compiled here into .build/), side by side in one run.
//
// Both ends use the same flow control (udp-peer.c explains it), so a figure is what sender and
// receiver together carry, not what a sender too fast for its receiver throws away. Each process
// warms up on its own datagrams before the measured ones; each figure is the median of RUNS runs,
// with their min–max.
//
//   node benchmark/udp.mjs            (--quick: fewer and shorter runs)
import { execFileSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runPair } from './lib/udp-pair.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const quick = process.argv.includes('--quick')
const RUNS = quick ? 3 : 5
const SCALE = quick ? 0.3 : 1

const build = join(here, '.build')
mkdirSync(build, { recursive: true })
const cPeer = join(build, 'udp-peer')
execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', cPeer, join(here, 'native', 'udp-peer.c')], { stdio: 'inherit', timeout: 120_000 })

const node = (contender) => [process.execPath, [join(here, 'udp-peer.mjs'), '%ROLE%', contender]]
const c = (mode) => [cPeer, ['%ROLE%', mode]]

/** One run: datagrams per second as the receiver counted them. */
async function run([command, args], count) {
  const { received, seconds, lost } = await runPair(command, args, count, Math.max(2000, Math.round(count / 5)))
  return { rate: received / seconds, lost }
}

async function measure(contender, count) {
  const results = []
  for (let i = 0; i < RUNS; i++) results.push(await run(contender, count))
  const rates = results.map((r) => r.rate).sort((a, b) => a - b)
  return { median: rates[Math.floor(rates.length / 2)], min: rates[0], max: rates.at(-1), lost: results.reduce((n, r) => n + r.lost, 0) }
}

const n = (count) => Math.max(5000, Math.round(count * SCALE))
// [mode, datagrams per run, Node contender, C mode]
const rows = [
  ['per datagram', n(150_000), 'plain', 'plain'],
  ['batched (sendmmsg / recvmmsg)', n(200_000), 'batch', 'batch'],
  ['GSO + GRO', n(1_000_000), 'gso', 'gso'],
]

const fmt = (x) => Math.round(x).toLocaleString('en-US')
const cell = (m) => `${fmt(m.median)} (${fmt(m.min)}–${fmt(m.max)})${m.lost > 0 ? ` ${m.lost} lost` : ''}`
console.log(`sendmsg UDP benchmark: 1,200-byte datagrams one way on loopback`)
console.log(`${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.version}, ${RUNS} runs each: median (min–max) datagrams/s\n`)

const dgram = await measure(node('dgram'), n(150_000))
console.log('| mode | Node dgram | sendmsg UdpSocket | C | vs dgram | vs C |')
console.log('| --- | ---: | ---: | ---: | ---: | ---: |')
const results = []
for (const [mode, count, contender, cMode] of rows) {
  const ours = await measure(node(contender), count)
  const native = await measure(c(cMode), count)
  results.push({ mode, ours, native })
  console.log(
    `| ${mode} | ${mode === 'per datagram' ? cell(dgram) : ''} | ${cell(ours)} | ${cell(native)} | ${(ours.median / dgram.median).toFixed(1)}x | ${((100 * ours.median) / native.median).toFixed(0)}% |`,
  )
}
const gso = results.at(-1)
console.log(`\nTargets with GSO + GRO: at least 5x Node's dgram (${(gso.ours.median / dgram.median).toFixed(1)}x), at least 75% of C (${((100 * gso.ours.median) / gso.native.median).toFixed(0)}%).`)
console.log(`load after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
