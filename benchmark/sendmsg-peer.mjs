// The sendmsg contender of benchmark/run.mjs: this package between two Node processes, in the same
// scenarios as native/peer.c and ceiling-peer.mjs. The parent spawns itself as the child with one
// end of a socketpair on fd 3, runs `warmup` untimed messages or round trips, then times `count`
// more: one way, from the child's "warm" message until its "done"; round trips, from the first
// timed request to the last reply.
//
//   node sendmsg-peer.mjs oneway|roundtrip|handoff|handoff-server <stream|seqpacket|dgram> <payload> <fds> <count> <warmup>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (run.mjs's time limit) it stops the child first. With
// SENDMSG_BENCH_PACKAGE=<checkout> it measures that checkout's build instead (run.mjs --compare).
//
// handoff: one listening TCP socket per message; the child takes the descriptor (and closes it).
// handoff-server: the same, and the child turns each into a listening net.Server before closing it,
// as Node's own subprocess.send(message, server) does for its child (node-ipc-peer.mjs).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { loadSendmsg } from './lib/load-package.mjs'
import { guardChild, printResult, startClock } from './lib/peer-process.mjs'

const { UnixSocket } = await loadSendmsg()

const [mode, type, payloadArg, fdsArg, countArg, warmupArg, role] = process.argv.slice(2)
const payload = Number(payloadArg)
const fdsPerMessage = Number(fdsArg)
const count = Number(countArg)
const warmup = Number(warmupArg)
// Sends in flight before the sender waits: messages issued in one tick leave in one sendmmsg.
const WINDOW = 256

if (!['oneway', 'roundtrip', 'handoff', 'handoff-server'].includes(mode)) throw new Error(`sendmsg-peer.mjs: unknown mode ${mode}`)
if (role === 'child') child()
else await parent()

async function parent() {
  const [mine, theirs] = UnixSocket.pair(type)
  const peer = spawn(process.execPath, [fileURLToPath(import.meta.url), mode, type, payloadArg, fdsArg, countArg, warmupArg, 'child'], {
    stdio: ['ignore', 'inherit', 'inherit', theirs.fd],
  })
  theirs.close()
  const guard = guardChild(peer, 'sendmsg-peer.mjs')
  // The descriptor sent: a listening TCP socket to hand over, otherwise /dev/null (closed at the end).
  let passed
  let devNull
  let listener
  if (mode.startsWith('handoff')) {
    listener = net.createServer().listen(0, '127.0.0.1')
    await once(listener, 'listening')
    passed = listener._handle.fd
  } else {
    passed = devNull = openSync('/dev/null', 'r')
  }
  const options = fdsPerMessage > 0 ? { fds: new Array(fdsPerMessage).fill(passed) } : undefined
  const data = Buffer.alloc(payload)
  const nextMessage = () => new Promise((resolve) => mine.once('message', resolve))

  const sendMany = async (n) => {
    let last
    for (let i = 0; i < n; i++) {
      last = mine.send(data, options)
      if (i % WINDOW === WINDOW - 1) await last
    }
    await last
  }
  // Round trips driven from the reply handler, as an application would: the next request goes
  // from inside the 'message' callback. A rejected send is an unhandled rejection: the run fails.
  let onReply
  const roundTrips = (n) =>
    new Promise((resolve) => {
      let remaining = n
      let received = 0
      onReply = (msg) => {
        received += msg.data.length
        if (received < payload) return
        received -= payload
        if (--remaining === 0) resolve()
        else void mine.send(data, options)
      }
      void mine.send(data, options)
    })

  await nextMessage() // the child is up
  let seconds
  if (mode === 'roundtrip') {
    mine.on('message', (msg) => onReply(msg))
    if (warmup > 0) await roundTrips(warmup)
    const stop = startClock()
    await roundTrips(count)
    seconds = stop()
  } else {
    if (warmup > 0) {
      const warm = nextMessage()
      await sendMany(warmup)
      await warm
    }
    const stop = startClock()
    const done = nextMessage()
    await sendMany(count)
    await done
    seconds = stop()
  }
  printResult(count, seconds)
  guard.finish()
  mine.close()
  listener?.close()
  if (devNull !== undefined) closeSync(devNull)
  // Datagram sockets see no end-of-file when the peer closes: stop the child ourselves (its exit
  // then ends this process).
  peer.kill()
}

function child() {
  const sock = UnixSocket.from(3)
  const response = Buffer.alloc(payload)
  // One way, what is counted: bytes on a stream (boundaries are not kept), messages otherwise.
  const perMessage = type === 'stream' && !mode.startsWith('handoff') ? payload : 1
  const warmAt = warmup * perMessage
  const doneAt = (warmup + count) * perMessage
  let received = 0
  let pending = 0
  const onMessage = (msg) => {
    if (mode === 'roundtrip') {
      pending += msg.data.length
      while (pending >= payload) {
        pending -= payload
        void sock.send(response)
      }
      return
    }
    // Descriptors left unclaimed are closed by the package after this handler.
    if (mode === 'handoff-server') for (const fd of msg.fds) new net.Server().listen({ fd: fd.take() }).close()
    else if (mode === 'handoff') for (const fd of msg.fds) fd.close()
    const before = received
    received += perMessage === 1 ? 1 : msg.data.length
    if (before < warmAt && received >= warmAt) void sock.send('warm')
    if (before < doneAt && received >= doneAt) void sock.send('done')
  }
  // SENDMSG_BENCH_BATCH=1: the batch receive API ('messages': one call per receive) instead of one
  // 'message' event per message.
  if (process.env.SENDMSG_BENCH_BATCH === '1') sock.on('messages', (batch) => batch.forEach(onMessage))
  else sock.on('message', onMessage)
  sock.on('end', () => process.exit(0))
  void sock.send('ready')
}
