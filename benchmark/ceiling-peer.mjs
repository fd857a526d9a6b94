// The "ceiling" contender of benchmark/run.mjs: the same scenarios as sendmsg-peer.mjs, on the
// minimal Node-API addon of native/ceiling.c (one uv_poll wakeup, one recvmsg, one JS call with
// plain numbers, one direct sendmsg for a reply). No event-loop design in Node can do less per
// message, so this is what this package's round trips are measured against.
//
//   node ceiling-peer.mjs oneway|roundtrip <stream|seqpacket|dgram> <payload> <fds> <count> <warmup>
// Needs benchmark/.build/ceiling.node (run.mjs builds it). Prints {"messages":N,"seconds":S}.
//
// One way, the sender is a plain loop of blocking sends (the addon waits with poll(2) when the
// socket is full), as in C: what is measured is the receiving side's event loop.
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { guardChild, printResult, startClock } from './lib/peer-process.mjs'

const addon = createRequire(import.meta.url)('./.build/ceiling.node')

const [mode, type, payloadArg, fdsArg, countArg, warmupArg, role] = process.argv.slice(2)
const payload = Number(payloadArg)
const fdsPerMessage = Number(fdsArg)
const count = Number(countArg)
const warmup = Number(warmupArg)
const CHILD_FD = 3
// Control messages from the child, one way: one byte each (ready, warmed up, done).
const SIGNAL_BYTES = 1

if (mode !== 'oneway' && mode !== 'roundtrip') throw new Error(`ceiling-peer.mjs: unknown mode ${mode}`)
if (role === 'child') child()
else await parent()

async function parent() {
  const [mine, theirs] = addon.socketpair(type)
  const peer = spawn(process.execPath, [fileURLToPath(import.meta.url), mode, type, payloadArg, fdsArg, countArg, warmupArg, 'child'], {
    stdio: ['ignore', 'inherit', 'inherit', theirs],
  })
  closeSync(theirs)
  const guard = guardChild(peer, 'ceiling-peer.mjs')
  const devNull = openSync('/dev/null', 'r')

  let onBytes = () => {}
  const watcher = addon.watch(mine, (bytes) => {
    if (bytes <= 0) throw new Error(`ceiling-peer.mjs: recvmsg: ${bytes === 0 ? 'end of file' : `errno ${-bytes}`}`)
    onBytes(bytes)
  })
  const nextSignal = () => new Promise((resolve) => (onBytes = resolve))
  const sendMany = (n) => {
    for (let i = 0; i < n; i++) addon.send(mine, payload, devNull, fdsPerMessage)
  }
  // Round trips driven from the reply callback, as a C event loop would: no promise per message.
  const roundTrips = (n) =>
    new Promise((resolve) => {
      let remaining = n
      let received = 0
      onBytes = (bytes) => {
        received += bytes
        if (received < payload) return
        received -= payload
        if (--remaining === 0) resolve()
        else addon.send(mine, payload, devNull, fdsPerMessage)
      }
      addon.send(mine, payload, devNull, fdsPerMessage)
    })

  await nextSignal() // the child is up
  let seconds
  if (mode === 'oneway') {
    if (warmup > 0) {
      const warm = nextSignal()
      sendMany(warmup)
      await warm
    }
    const stop = startClock()
    const done = nextSignal()
    sendMany(count)
    await done
    seconds = stop()
  } else {
    if (warmup > 0) await roundTrips(warmup)
    const stop = startClock()
    await roundTrips(count)
    seconds = stop()
  }
  printResult(count, seconds)
  guard.finish()
  addon.unwatch(watcher)
  closeSync(mine)
  closeSync(devNull)
  // A datagram child sees no end-of-file: stop it (its exit ends this process).
  peer.kill()
}

function child() {
  // One way, what is counted: bytes on a stream (boundaries are not kept), messages otherwise.
  const perMessage = type === 'stream' ? payload : 1
  const warmAt = warmup * perMessage
  const doneAt = (warmup + count) * perMessage
  let received = 0
  let pending = 0
  addon.watch(CHILD_FD, (bytes) => {
    if (bytes === 0) process.exit(0)
    if (bytes < 0) throw new Error(`ceiling-peer.mjs child: recvmsg: errno ${-bytes}`)
    if (mode === 'roundtrip') {
      pending += bytes
      while (pending >= payload) {
        pending -= payload
        addon.send(CHILD_FD, payload, -1, 0)
      }
      return
    }
    const before = received
    received += type === 'stream' ? bytes : 1
    if (before < warmAt && received >= warmAt) addon.send(CHILD_FD, SIGNAL_BYTES, -1, 0)
    if (received >= doneAt && before < doneAt) addon.send(CHILD_FD, SIGNAL_BYTES, -1, 0)
  })
  addon.send(CHILD_FD, SIGNAL_BYTES, -1, 0) // ready
}
