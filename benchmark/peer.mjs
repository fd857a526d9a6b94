// The Node side of benchmark/run.mjs: this package between two Node processes, in the same
// scenarios as native/peer.c. The parent spawns itself as the child with one end of a socketpair
// on fd 3, and times from the first send until the child reports that it received everything.
//
//   node peer.mjs oneway|roundtrip|handoff <stream|seqpacket|dgram> <payload> <fds> <count>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (benchmark/run.mjs's time limit) it stops the child first.
//
// handoff: one listening TCP socket per message; the child takes the descriptor (and closes it).
// handoff-server: the same, and the child turns each into a listening net.Server before closing it,
// as Node's own subprocess.send(message, server) does for its child (node-ipc-peer.mjs).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { UnixSocket } from 'sendmsg'

const [mode, type, payloadArg, fdsArg, countArg, role] = process.argv.slice(2)
const payload = Number(payloadArg)
const fdsPerMessage = Number(fdsArg)
const count = Number(countArg)
// Sends in flight before the sender waits: messages issued in one tick leave in one sendmmsg.
const WINDOW = 256

if (role === 'child') child()
else await parent()

async function parent() {
  const [mine, theirs] = UnixSocket.pair(type)
  const peer = spawn(process.execPath, [fileURLToPath(import.meta.url), mode, type, payloadArg, fdsArg, countArg, 'child'], {
    stdio: ['ignore', 'inherit', 'inherit', theirs.fd],
  })
  theirs.close()
  let finished = false
  peer.once('exit', (code, signal) => {
    if (finished) return process.exit(0)
    console.error(`peer.mjs: the child exited (${code ?? signal}) before the run was over`)
    process.exit(1)
  })
  // A datagram child sees no end-of-file when this process goes: stop it.
  process.once('SIGTERM', () => {
    peer.kill('SIGKILL')
    process.exit(1)
  })
  // The descriptor sent: a listening TCP socket to hand over, otherwise /dev/null (closed at the end).
  let passed
  let devNull
  if (mode.startsWith('handoff')) {
    const listener = net.createServer().listen(0, '127.0.0.1')
    await once(listener, 'listening')
    passed = listener._handle.fd
  } else {
    passed = devNull = openSync('/dev/null', 'r')
  }
  const options = fdsPerMessage > 0 ? { fds: new Array(fdsPerMessage).fill(passed) } : undefined
  const data = Buffer.alloc(payload)
  const ready = new Promise((resolve) => mine.once('message', resolve))
  await ready // the child is up
  const start = process.hrtime.bigint()
  if (mode === 'oneway' || mode.startsWith('handoff')) {
    const done = new Promise((resolve) => mine.once('message', resolve))
    let last
    for (let i = 0; i < count; i++) {
      last = mine.send(data, options)
      if (i % WINDOW === WINDOW - 1) await last
    }
    await last
    await done
  } else {
    let reply
    mine.on('message', (msg) => {
      received += msg.data.length
      if (received >= payload) {
        received -= payload
        reply()
      }
    })
    let received = 0
    for (let i = 0; i < count; i++) {
      const answered = new Promise((resolve) => (reply = resolve))
      await mine.send(data, options)
      await answered
    }
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  console.log(JSON.stringify({ messages: count, seconds }))
  finished = true
  mine.close()
  if (devNull !== undefined) closeSync(devNull)
  // Datagram sockets see no end-of-file when the peer closes: stop the child ourselves (its exit
  // then ends this process).
  peer.kill()
}

function child() {
  const sock = UnixSocket.from(3)
  const response = Buffer.alloc(payload)
  let received = 0
  let bytes = 0
  sock.on('message', (msg) => {
    // Descriptors left unclaimed are closed by the package after this handler.
    if (mode.startsWith('handoff')) {
      for (const fd of msg.fds) {
        if (mode === 'handoff-server') new net.Server().listen({ fd: fd.take() }).close()
        else fd.close()
      }
      if (++received === count) void sock.send('done')
      return
    }
    if (mode === 'roundtrip') {
      bytes += msg.data.length
      while (bytes >= payload) {
        bytes -= payload
        void sock.send(response)
      }
      return
    }
    if (type === 'stream') {
      bytes += msg.data.length
      if (bytes >= payload * count) void sock.send('done')
    } else if (++received === count) {
      void sock.send('done')
    }
  })
  sock.on('end', () => process.exit(0))
  void sock.send('ready')
}
