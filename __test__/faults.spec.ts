// Faults: a peer killed mid-stream, a receiver at its descriptor limit. After each, the process's
// open descriptors are back where they were and sockets still work.
// Serial: the tests count open descriptors.
import test, { type ExecutionContext } from 'ava'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import { Socket } from 'node:net'

import { pipe, socketpair, UnixSocket, type Message, type NodeError, type SocketType } from 'sendmsg'

import { openFds, turn } from './helpers.ts'
import { fixture, spawnChild, spawnFixture } from './processes.ts'

const linux = process.platform === 'linux'
const STREAMING_TYPES: SocketType[] = linux ? ['stream', 'seqpacket'] : ['stream']
if (!linux) console.log('faults: seqpacket and RLIMIT tests skipped: they need Linux')

function nextMessage(socket: UnixSocket): Promise<Message> {
  return once(socket, 'message').then(([message]) => message as Message)
}

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

const withPrlimit = linux ? test.serial : test.serial.skip
withPrlimit('a receiver at its descriptor limit sees MSG_CTRUNC, loses nothing it got, and works again once descriptors are freed', async (t) => {
  const before = openFds()
  const [mine, theirs] = socketpair('seqpacket')
  // Enough for Node to start; the child fills the rest itself.
  const child = spawnChild('prlimit', ['--nofile=96:96', process.execPath, fixture('fd-limit-receiver.mjs')], [theirs])
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
