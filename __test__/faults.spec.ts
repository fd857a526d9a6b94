// Faults: a peer killed mid-stream, a receiver at its descriptor limit, close() at awkward moments,
// signals during blocking calls, and descriptors that must not reach spawned children. After each,
// the process's open descriptors are back where they were and sockets still work.
// Serial: the tests count open descriptors.
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import { Socket } from 'node:net'
import { constants as osConstants } from 'node:os'

import { pipe, sendmsg, scmRights, socketpair, UnixServer, UnixSocket, type Message, type NodeError, type SocketType } from 'sendmsg'

import { inode, isCloexec, nextMessage, openFds, turn } from './helpers.ts'
import { blockedInRecvmsg, fixture, signalPending, spawnChild, spawnFixture } from './processes.ts'

const linux = process.platform === 'linux'
const STREAMING_TYPES: SocketType[] = linux ? ['stream', 'seqpacket'] : ['stream']
if (!linux) console.log('faults: seqpacket, RLIMIT and /proc-based tests skipped: they need Linux')

/** Resolves when everything that holds the write end of the pipe `readEnd` has closed it. */
function endOfFile(readEnd: number): Promise<void> {
  const reader = new Socket({ fd: readEnd, readable: true, writable: false })
  reader.resume()
  return once(reader, 'end').then(() => void reader.destroy())
}

/** A fresh pair made the same way passes data and a descriptor: the package is still usable. */
async function assertFreshPairWorks(t: ExecutionContext, type: SocketType): Promise<void> {
  const [x, y] = socketpair(type)
  const [a, b] = [UnixSocket.from(x), UnixSocket.from(y)]
  const [r, w] = pipe()
  const arrived = nextMessage(b)
  await a.send('still works', { fds: [r] })
  const message = await arrived
  t.is(message.data.toString(), 'still works')
  t.is(message.fds.length, 1)
  a.close()
  b.close()
  closeSync(r)
  closeSync(w)
  await turn()
}

function isNodeStyle(error: unknown): error is NodeError & { errno: number; syscall: string } {
  const e = error as { code?: unknown; errno?: unknown; syscall?: unknown }
  return error instanceof Error && typeof e.code === 'string' && typeof e.errno === 'number' && e.errno < 0 && typeof e.syscall === 'string'
}

// A peer SIGKILLed mid-stream --------------------------------------------------------------------

for (const type of STREAMING_TYPES) {
  test.serial(`${type}: the sender is SIGKILLed mid-stream: the receiver sees an orderly end and in-flight descriptors are released`, async (t) => {
    const before = openFds()
    const [mine, theirs] = socketpair(type)
    const [r, w] = pipe()
    // The child holds the pipe's write end as fd 4 and streams copies of it to us.
    const child = spawnFixture('fd-stream-peer.mjs', ['send'], [theirs, w])
    closeSync(theirs)
    closeSync(w)
    const socket = UnixSocket.from(mine)
    let received = 0
    const errors: Error[] = []
    socket.on('error', (error) => errors.push(error))
    socket.on('message', (message: Message) => {
      received += message.fds.length
    })
    const ended = once(socket, 'end')
    const closed = once(socket, 'close')
    t.is(await child.line(), 'streaming')
    child.process.kill('SIGKILL')
    t.is((await child.exited).signal, 'SIGKILL')
    await ended
    await closed
    t.deepEqual(errors, [], 'a killed peer is an end, not an error')
    t.true(received >= 128, `${received} descriptors received before the end`)
    t.true(socket.closed, 'the socket closed itself after the end')
    // Every copy of the write end is gone: the child's, those in flight, the ones we received.
    await endOfFile(r)
    await turn()
    t.is(openFds(), before)
    await assertFreshPairWorks(t, type)
    t.is(openFds(), before)
  })

  test.serial(`${type}: the receiver is SIGKILLed with sends queued: they reject with a Node-style error and nothing hangs`, async (t) => {
    const before = openFds()
    const [mine, theirs] = socketpair(type)
    const child = spawnFixture('fd-stream-peer.mjs', ['receive'], [theirs])
    closeSync(theirs)
    const socket = UnixSocket.from(mine)
    const [r, w] = pipe()
    const outcomes: Array<Promise<'sent' | Error>> = []
    const send = () => {
      const outcome = socket.send(Buffer.alloc(512), { fds: [w] }).then(() => 'sent' as const, (error: Error) => error)
      outcomes.push(outcome)
      return outcome
    }
    for (let i = 0; i < 100; i++) await send()
    t.is(await child.line(), 'stalled')
    // Fill the kernel's buffer, then queue more in the socket.
    while (socket.writableLength === 0) {
      for (let i = 0; i < 64; i++) void send()
      await turn()
    }
    for (let i = 0; i < 64; i++) void send()
    const queued = socket.writableLength
    t.true(queued > 0)
    child.process.kill('SIGKILL')
    await child.exited
    const settled = await Promise.all(outcomes)
    const failures = settled.filter((outcome): outcome is Error => outcome !== 'sent')
    t.true(failures.length >= 64, `${failures.length} sends rejected`)
    for (const error of failures) {
      t.true(isNodeStyle(error), `a Node-style error: ${String(error)}`)
      t.true(['EPIPE', 'ECONNRESET'].includes((error as NodeError).code), (error as NodeError).code)
    }
    // The write side is broken for good: later sends reject the same way, at once.
    const later = await t.throwsAsync(socket.send('later'))
    t.is((later as NodeError).code, (failures[0] as NodeError).code)
    t.is(socket.writableLength, 0)
    socket.close()
    closeSync(w)
    // The copies that sat in the dead child's receive queue were released by the kernel.
    await endOfFile(r)
    await turn()
    t.is(openFds(), before)
    await assertFreshPairWorks(t, type)
  })
}

// The receiver at its descriptor limit ------------------------------------------------------------

const withFdLimit = linux ? test.serial : test.serial.skip
withFdLimit('a receiver at its descriptor limit sees MSG_CTRUNC, loses nothing it got, and works again once descriptors are freed', async (t) => {
  const before = openFds()
  const [mine, theirs] = socketpair('seqpacket')
  // Enough for Node to start (it cannot raise a hard limit); the child fills the rest itself.
  const child = spawnChild('/bin/sh', ['-c', 'ulimit -n 96 && exec "$0" "$1"', process.execPath, fixture('fd-limit-receiver.mjs')], [theirs])
  closeSync(theirs)
  const sender = UnixSocket.from(mine)
  const [r, w] = pipe()
  const ready = await child.json<{ ready: boolean; free: number }>()
  t.true(ready.ready)

  await sender.send('ten', { fds: Array(10).fill(r) })
  const atLimit = await child.json<{ count: number; ctrunc: boolean; truncated: boolean; openAfter: number; baseline: number; warnings: string[] }>()
  t.is(atLimit.count, ready.free, 'the kernel installed as many as there was room for')
  t.true(atLimit.ctrunc, 'MSG_CTRUNC is in message.flags')
  t.true(atLimit.truncated, 'message.truncated says so too')
  t.deepEqual(atLimit.warnings, ['SENDMSG_FDS_TRUNCATED'], 'and a process warning tells those who do not look')
  t.is(atLimit.openAfter, atLimit.baseline, 'what arrived was handed over (and closed) or closed by the package')

  await sender.send('ten again', { fds: Array(10).fill(r) })
  const afterFreeing = await child.json<{ count: number; ctrunc: boolean; openAfter: number; baseline: number }>()
  t.is(afterFreeing.count, 10, 'the same socket delivers every descriptor once there is room')
  t.false(afterFreeing.ctrunc)
  t.is(afterFreeing.openAfter, afterFreeing.baseline)
  t.is((await child.exited).code, 0)

  sender.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

// close() at awkward moments ----------------------------------------------------------------------

test.serial('close() with descriptor-carrying sends queued: the queued ones reject with ERR_SOCKET_CLOSED, the rest went', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('stream')
  const [r, w] = pipe()
  const outcomes: Array<Promise<string>> = []
  // Nobody reads b: the kernel buffer fills and the rest queue.
  while (a.writableLength === 0) {
    for (let i = 0; i < 64; i++) outcomes.push(a.send(Buffer.alloc(4096), { fds: [r] }).then(() => 'sent', (error: NodeError) => error.code))
    await turn()
  }
  a.close()
  const closeEvents: unknown[] = []
  a.on('close', () => closeEvents.push('close'))
  const settled = await Promise.all(outcomes)
  t.true(settled.includes('sent'))
  t.true(settled.includes('ERR_SOCKET_CLOSED'))
  t.deepEqual([...new Set(settled)].sort(), ['ERR_SOCKET_CLOSED', 'sent'])
  t.is(a.writableLength, 0)
  // The peer drains what did go, descriptors and all, then sees the end.
  let arrived = 0
  b.on('message', (message: Message) => (arrived += message.fds.length))
  await once(b, 'end')
  t.is(arrived, settled.filter((outcome) => outcome === 'sent').length)
  await turn()
  t.deepEqual(closeEvents, ['close'], "'close' is emitted once")
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
  await assertFreshPairWorks(t, 'stream')
})

for (const type of linux ? (['seqpacket', 'dgram'] as SocketType[]) : (['dgram'] as SocketType[])) {
  test.serial(`${type}: close() inside a message handler mid-batch: later messages are not delivered and their descriptors close`, async (t) => {
    const before = openFds()
    const [a, b] = UnixSocket.pair(type)
    const [r, w] = pipe()
    // Sent before anyone reads, so they arrive in one batched receive.
    await Promise.all(Array.from({ length: 10 }, (_, i) => a.send(`m${i}`, { fds: [r, w] })))
    const seen: string[] = []
    let kept = -1
    b.on('message', (message: Message) => {
      seen.push(message.data.toString())
      kept = message.fds[0]!.take()
      b.close()
      // Closing twice, and using the socket after, from inside the handler.
      b.close()
      void b.send('after close').catch(() => {})
    })
    await once(b, 'close')
    await turn()
    t.deepEqual(seen, ['m0'], 'nothing is delivered after close()')
    t.true(isCloexec(kept) ?? true, 'the descriptor taken in the handler is still ours')
    closeSync(kept)
    t.is(openFds(), before + 2 + 1, 'only the pipe and the sending socket remain')
    a.close()
    closeSync(r)
    closeSync(w)
    await turn()
    t.is(openFds(), before)
    await assertFreshPairWorks(t, type)
  })
}

test.serial('close() inside a for-await loop over a batch: the loop ends and the rest of the batch is closed', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram')
  const [r, w] = pipe()
  await Promise.all(Array.from({ length: 10 }, (_, i) => a.send(`m${i}`, { fds: [r] })))
  const seen: string[] = []
  for await (const message of b) {
    seen.push(message.data.toString())
    b.close()
  }
  t.deepEqual(seen, ['m0'])
  a.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

test.serial('use after close: every method has a defined result, none throws a surprise or hangs', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram')
  const closes: string[] = []
  a.on('close', () => closes.push('a'))
  a.close()
  a.close()
  await t.throwsAsync(a.send('x'), { code: 'ERR_SOCKET_CLOSED' })
  await t.throwsAsync(a.sendTo('/nonexistent', 'x'), { code: 'ERR_SOCKET_CLOSED' })
  await a.end() // resolves: there is nothing left to end
  t.is(a.pause(), a)
  t.is(a.resume(), a)
  t.is(a.ref(), a)
  t.is(a.unref(), a)
  t.is(a.fd, -1)
  t.true(a.closed)
  t.is(a.localAddress, undefined)
  t.is(a.remoteAddress, undefined)
  t.is(a.writableLength, 0)
  const iterated: Message[] = []
  for await (const message of a) iterated.push(message)
  t.deepEqual(iterated, [], 'iterating a closed socket ends at once')
  await a[Symbol.asyncDispose]()
  await turn()
  t.deepEqual(closes, ['a'], "'close' is emitted once")

  const server = UnixServer.listen('\0sendmsg-faults-' + process.pid)
  const serverCloses: string[] = []
  server.on('close', () => serverCloses.push('server'))
  server.close()
  server.close()
  t.is(server.fd, -1)
  t.is(server.address(), undefined)
  const accepted: UnixSocket[] = []
  for await (const socket of server) accepted.push(socket)
  t.deepEqual(accepted, [])
  await turn()
  t.deepEqual(serverCloses, ['server'])
  b.close()
  await turn()
  t.is(openFds(), before)
})

// Signals during blocking sync calls -------------------------------------------------------------

const withProcSyscall = linux && (process.arch === 'x64' || process.arch === 'arm64') ? test.serial : test.serial.skip
if (!(linux && (process.arch === 'x64' || process.arch === 'arm64'))) console.log('faults: the EINTR test needs /proc/PID/syscall (Linux x64/arm64)')
withProcSyscall('signals handled in JavaScript do not break a blocking sync recvmsg: the call goes on and returns the message', async (t) => {
  const before = openFds()
  const [mine, theirs] = socketpair('seqpacket')
  const SIGNALS = 3
  const child = spawnFixture('blocking-recv-with-signals.mjs', [String(SIGNALS)], [theirs])
  closeSync(theirs)
  t.is(await child.line(), 'ready')
  const pid = child.process.pid!
  for (let i = 0; i < SIGNALS; i++) {
    await blockedInRecvmsg(pid)
    child.process.kill('SIGUSR2')
    // One at a time: a signal sent while the previous one is pending would merge with it.
    while (signalPending(pid, osConstants.signals.SIGUSR2)) await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await blockedInRecvmsg(pid)
  const [r, w] = pipe()
  sendmsg(mine, 'after the signals', [scmRights([r])])
  const report = await child.json<{ data: string; identities: string[]; signals: number }>()
  t.is(report.data, 'after the signals')
  t.deepEqual(report.identities, [inode(r)])
  t.is(report.signals, SIGNALS, 'the handler saw every signal once the call returned')
  t.is((await child.exited).code, 0)
  closeSync(mine)
  closeSync(r)
  closeSync(w)
  t.is(openFds(), before)
})

// Inheritance ------------------------------------------------------------------------------------

test.serial('a descriptor received by a UnixSocket and taken is not inherited by a spawned child', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('stream')
  const [r, w] = pipe()
  let taken = -1
  b.on('message', (message: Message) => (taken = message.fds[0]!.take()))
  await a.send('x', { fds: [r] })
  while (taken < 0) await turn()
  if (linux) t.true(isCloexec(taken))
  const child = spawn(
    process.execPath,
    ['-e', `try { const s = require('fs').fstatSync(${taken}); console.log(s.dev + ':' + s.ino) } catch { console.log('closed') }`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  await once(child, 'exit')
  t.not(output.trim(), '')
  t.not(output.trim(), inode(taken), 'the child does not have our descriptor at that number')
  a.close()
  b.close()
  for (const fd of [taken, r, w]) closeSync(fd)
  await turn()
  t.is(openFds(), before)
})

for (const mode of ['handler', 'tick'] as const) {
  const where = mode === 'handler' ? 'a message handler' : "a nextTick callback queued by a message handler"
  test(`when ${where} throws and uncaughtException keeps the process alive, each message's descriptor is closed once`, async (t) => {
    const child = spawnFixture('throwing-handler.mjs', [mode])
    t.deepEqual(await child.json(), { seen: 50, uncaught: 50, leaked: 0, othersOpen: true })
    t.is((await child.exited).code, 0)
  })
}
