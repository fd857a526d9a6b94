#!/usr/bin/env node
// Measures what a readiness event costs with each reactor: round trips between the two ends of an
// event-loop socket pair in one process (each round trip is two readiness events, one per end).
// A measurement, not a test: it asserts nothing. Runs under Node, Bun and Deno (`deno run -A`);
// compare `node scripts/measure-reactor.mjs` with `SENDMSG_REACTOR=thread node ...`.
//
//   node scripts/measure-reactor.mjs [roundTrips=20000]
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const { UnixSocket, socketpair } = require(join(root, 'dist', 'index.js'))
const { native } = require(join(root, 'dist', 'lib', 'binding.js'))

const ROUND_TRIPS = Number(process.argv[2] ?? 20_000)
const WARM_UP = 5_000
const runtime = process.versions.bun ? `bun ${process.versions.bun}` : process.versions.deno ? `deno ${process.versions.deno}` : `node ${process.version}`

/** Resolves to microseconds per round trip of `count` ping-pongs, each ping carrying `fds`. */
function pingPong(a, b, count, fds) {
  return new Promise((resolve) => {
    let left = count
    let started
    const payload = Buffer.alloc(64, 1)
    b.on('message', (message) => void b.send(message.data))
    a.on('message', () => {
      if (--left === 0) {
        resolve((Number(process.hrtime.bigint() - started) / 1000) / count)
        return
      }
      void a.send(payload, { fds })
    })
    started = process.hrtime.bigint()
    void a.send(payload, { fds })
  })
}

async function measure(label, fds) {
  const results = []
  for (const count of [WARM_UP, ROUND_TRIPS, ROUND_TRIPS]) {
    const [a, b] = UnixSocket.pair('seqpacket')
    results.push(await pingPong(a, b, count, fds))
    a.close()
    b.close()
  }
  // The first run is the warm-up (V8 is still compiling): reported apart, not in the figure.
  const best = Math.min(results[1], results[2])
  console.log(`${label}: ${best.toFixed(1)} µs per round trip (runs: ${results.slice(1).map((r) => r.toFixed(1)).join(', ')}; warm-up ${results[0].toFixed(1)})`)
}

console.log(`# ${runtime}, reactor ${native.reactorBackend()}, ${ROUND_TRIPS} round trips per run`)
await measure('64 bytes', [])
const [x, y] = socketpair('dgram')
await measure('64 bytes + 1 fd', [x])
native.closeFd(x)
native.closeFd(y)
