#!/usr/bin/env node
// Soak: two Node processes pass descriptors over the async API (UnixSocket) for a bounded time (or
// count), then compare each process's open descriptors and memory at the start and at the end.
// Exits non-zero if a descriptor was lost, fewer than --min-fds went through, or either process
// did not stay flat.
//
//   npm run soak                                       # 60 seconds, at least 1,000,000 descriptors
//   node --expose-gc scripts/soak.mjs --fds=50000 --json
//
// Options: --seconds=S (run time, default 60) or --fds=N (a count instead), --min-fds=N (default
// 1,000,000 in a timed run), --per-message=K (descriptors per message, default 8), --type=seqpacket|
// stream|dgram, --max-rss-growth=MiB (RSS outside V8's heap) and --max-heap-growth=MiB (live heap):
// the tolerances for "flat"; --json (one summary line at the end).
//
// Flat means: each process has exactly as many descriptors open at the end (everything received
// and settled, socket still open) as at the start (socket set up, nothing sent); and, measured
// after a garbage collection, neither its live JavaScript heap nor its resident memory outside
// V8's heap grew by more than the tolerance between the end of the warm-up (the first half:
// JIT code, slabs and batch buffers reach their working size there) and the end. A leak grows
// with the traffic. V8's heap reservation itself is left out of the judgement: it grows in steps
// of whole semispaces (16 MiB) when it sees a high allocation rate, at any point of a run, and
// gives them back only under memory pressure. Plain RSS is printed all the same.
import { spawn } from 'node:child_process'
import { closeSync, readdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import { pipe, socketpair, UnixSocket } from 'sendmsg'

const options = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const [key, value = 'true'] = arg.replace(/^--/, '').split('=')
    return [key, value]
  }),
)

const FD_DIR = process.platform === 'linux' ? '/proc/self/fd' : '/dev/fd'
const openFds = () => readdirSync(FD_DIR).length
const turn = () => new Promise((resolve) => setImmediate(resolve))
async function settle() {
  // Twice: objects freed by the first collection can release more (finalizers) for the second.
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.()
    await turn()
  }
}
const sample = () => {
  const { rss, heapUsed, heapTotal } = process.memoryUsage()
  return { fds: openFds(), rss, heap: heapUsed, native: rss - heapTotal }
}
const MiB = (bytes) => (bytes / 1048576).toFixed(1)

if (options.peer) await receive()
else await drive()

/** The receiving process: fd 3 is its socket. Reports over stdout, one JSON line at a time. */
async function receive() {
  // Made before the first count: Node opens /dev/null while creating a piped stdout.
  process.stdout.write('')
  const socket = UnixSocket.from(3, { maxMessageSize: 4096 })
  let fds = 0
  let messages = 0
  let taken = 0
  let closedEarly = 0
  let warm
  socket.on('message', (message) => {
    if (message.data.length === 4 && message.fds.length === 0) {
      const command = message.data.toString()
      if (command === 'warm') void settle().then(() => (warm = sample()))
      if (command === 'done') void finish()
      if (command === 'bye!') process.exit(0)
      return
    }
    messages++
    const received = message.fds
    fds += received.length
    // Most are left to the package to close; every 16th message one is taken and closed by hand,
    // and one closed early, so that every path a descriptor can leave by is exercised.
    if ((messages & 15) === 0 && received.length >= 1) {
      closeSync(received[0].take())
      taken++
      if (received.length >= 2) {
        received[1].close()
        closedEarly++
      }
    }
  })
  // Measured as the end is, after the loop has turned and a collection ran: a descriptor Node
  // still has open from starting up would otherwise count as one that went missing.
  await settle()
  const start = sample()
  console.log(JSON.stringify({ ready: true }))
  async function finish() {
    await settle()
    console.log(JSON.stringify({ messages, fds, taken, closedEarly, start, warm, end: sample() }))
  }
  // The sender says 'bye!' once it has measured its own end. Not exiting right after the report:
  // a stream or seqpacket sender would then see end-of-file and close its socket before it counts
  // its descriptors. Not waiting for 'end' alone either: a datagram socket never gets one.
  socket.on('end', () => process.exit(0))
}

/** The sending process: spawns the receiver, streams, compares, reports. */
async function drive() {
  const byCount = options.fds !== undefined
  const total = byCount ? Number(options.fds) : Infinity
  const seconds = byCount ? Infinity : Number(options.seconds ?? 60)
  const minFds = Number(options['min-fds'] ?? (byCount ? 0 : 1_000_000))
  const perMessage = Number(options['per-message'] ?? 8)
  const type = options.type ?? 'seqpacket'
  const maxRssGrowth = Number(options['max-rss-growth'] ?? 8) * 1048576
  const maxHeapGrowth = Number(options['max-heap-growth'] ?? 2) * 1048576
  const window = 256

  const [mine, theirs] = socketpair(type)
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--peer'], {
    stdio: ['ignore', 'pipe', 'inherit', theirs],
  })
  closeSync(theirs)
  // However this process ends, the receiver does not outlive it (a datagram one would wait forever).
  process.on('exit', () => child.exitCode === null && child.signalCode === null && child.kill())
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const nextReport = async () => {
    const { value, done } = await lines.next()
    if (done) throw new Error('the receiver exited early')
    return JSON.parse(value)
  }
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  // A hang guard, not a measurement.
  const guardMs = Number.isFinite(seconds) ? seconds * 1000 + 300_000 : 600_000
  const guard = setTimeout(() => {
    console.error(`soak: still running after ${guardMs / 1000} s; giving up`)
    child.kill('SIGKILL')
    process.exit(2)
  }, guardMs)

  const socket = UnixSocket.from(mine)
  const [r, w] = pipe()
  const payload = Array.from({ length: perMessage }, (_, i) => (i % 2 === 0 ? r : w))
  await nextReport() // ready
  await settle()
  const start = sample()
  let warm
  const began = process.hrtime.bigint()
  const elapsed = () => Number(process.hrtime.bigint() - began) / 1e9
  const warmedUp = () => (byCount ? fdsSent >= total / 2 : elapsed() >= seconds / 2)
  let messages = 0
  let fdsSent = 0
  while (byCount ? fdsSent < total : elapsed() < seconds) {
    const pending = new Array(window)
    let batch = 0
    for (; batch < window && fdsSent < total; batch++) {
      const count = Math.min(perMessage, total - fdsSent)
      fdsSent += count
      pending[batch] = socket.send('fds!', { fds: count === perMessage ? payload : payload.slice(0, count) })
    }
    pending.length = batch
    await Promise.all(pending)
    messages += batch
    if (warm === undefined && warmedUp()) {
      await socket.send('warm')
      await settle()
      warm = sample()
    }
  }
  await socket.send('done')
  const peer = await nextReport()
  const took = elapsed()
  await settle()
  const end = sample()
  await socket.send('bye!')
  socket.close()
  closeSync(r)
  closeSync(w)
  const { code } = await exited
  clearTimeout(guard)

  const rate = fdsSent / took
  const sides = [
    ['sender', start, warm, end],
    ['receiver', peer.start, peer.warm, peer.end],
  ]
  const problems = []
  if (peer.fds !== fdsSent) problems.push(`${fdsSent} descriptors sent, ${peer.fds} received`)
  if (fdsSent < minFds) problems.push(`only ${fdsSent} descriptors went through, fewer than ${minFds}`)
  if (code !== 0) problems.push(`the receiver exited with ${code}`)
  for (const [name, first, warmed, last] of sides) {
    if (last.fds !== first.fds) problems.push(`${name}: ${first.fds} descriptors open at the start, ${last.fds} at the end`)
    if (last.native - warmed.native > maxRssGrowth) problems.push(`${name}: resident memory outside V8's heap grew by ${MiB(last.native - warmed.native)} MiB after the warm-up`)
    if (last.heap - warmed.heap > maxHeapGrowth) problems.push(`${name}: the live heap grew by ${MiB(last.heap - warmed.heap)} MiB after the warm-up`)
  }

  console.log(`soak: ${fdsSent.toLocaleString('en')} descriptors in ${messages.toLocaleString('en')} ${type} messages (${perMessage} each) in ${took.toFixed(1)} s: ${Math.round(rate).toLocaleString('en')} fds/s`)
  console.log('            open fds       RSS MiB                       RSS outside V8 heap   live heap MiB')
  console.log('            start -> end   start, after warm-up -> end   warm-up -> end        warm-up -> end')
  for (const [name, first, warmed, last] of sides) {
    const fdsColumn = `${first.fds} -> ${last.fds}`.padEnd(14)
    const rssColumn = `${MiB(first.rss)}, ${MiB(warmed.rss)} -> ${MiB(last.rss)}`.padEnd(29)
    const nativeColumn = `${MiB(warmed.native)} -> ${MiB(last.native)}`.padEnd(21)
    console.log(`  ${name.padEnd(9)} ${fdsColumn} ${rssColumn} ${nativeColumn} ${MiB(warmed.heap)} -> ${MiB(last.heap)}`)
  }
  console.log(`  receiver: ${peer.taken.toLocaleString('en')} descriptors taken and closed by hand, ${peer.closedEarly.toLocaleString('en')} closed early with close(), the rest closed by the package`)
  console.log(problems.length === 0 ? `  flat: descriptors equal; after the warm-up, RSS outside V8's heap within ${MiB(maxRssGrowth)} MiB and the live heap within ${MiB(maxHeapGrowth)} MiB` : `  NOT FLAT: ${problems.join('; ')}`)
  if (options.json) {
    console.log(JSON.stringify({ fds: fdsSent, received: peer.fds, seconds: took, rate, sender: { start, warm, end }, receiver: { start: peer.start, warm: peer.warm, end: peer.end }, problems }))
  }
  process.exit(problems.length === 0 ? 0 : 1)
}
