// The event-loop core's promises where they are easiest to break: a peer that dies with our data
// unread, descriptors and later bytes in one stream, a datagram that fails, every path that drops
// a received message (close, garbage collection, worker termination), and user code re-entering
// the package.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { Worker } from 'node:worker_threads'

import { dup, pipe, recvmsg, sendmsg, socketpair, toNetServer, UnixSocket, type Message } from 'sendmsg'

import { nextMessage, openFds, turn } from './helpers.ts'
import { fixture } from './processes.ts'

/** Collects messages until `done` says so. */
function collect(socket: UnixSocket, done: (messages: Message[]) => boolean): Promise<Message[]> {
  return new Promise((resolve) => {
    const messages: Message[] = []
    socket.on('message', (message: Message) => {
      messages.push(message)
      if (done(messages)) resolve(messages)
    })
  })
}

for (const type of ['stream', 'seqpacket'] as const) {
  test.serial(`${type}: a peer that closes with our data unread still delivers every message it sent, then 'end'`, async (t) => {
    const before = openFds()
    const [ours, theirs] = socketpair(type)
    const socket = UnixSocket.from(ours!)
    // A request the peer never reads: its close then leaves a one-shot ECONNRESET on our socket,
    // which the kernel reports before the 50 messages still queued for us.
    await socket.send('request')
    for (let i = 0; i < 50; i++) sendmsg(theirs!, `m${String(i).padStart(2, '0')};`)
    closeSync(theirs!)
    const errors: Error[] = []
    socket.on('error', (error) => errors.push(error))
    const received: string[] = []
    socket.on('message', (message: Message) => received.push(message.data.toString()))
    const closed = once(socket, 'close')
    await once(socket, 'end')
    t.deepEqual(errors, [])
    const expected = Array.from({ length: 50 }, (_, i) => `m${String(i).padStart(2, '0')};`)
    if (type === 'stream') t.is(received.join(''), expected.join(''))
    else t.deepEqual(received, expected)
    await closed
    t.is(openFds(), before)
  })
}

test.serial('a killed peer process: every message it sent before dying arrives, then end', async (t) => {
  const [ours, theirs] = socketpair('seqpacket')
  const socket = UnixSocket.from(ours!)
  const child = spawn(
    process.execPath,
    ['-e', "const { sendmsg } = require(process.argv[1]); for (let i = 0; i < 50; i++) sendmsg(3, 'm' + i); process.stdout.write('sent\\n'); setInterval(() => {}, 1000)", createRequire(import.meta.url).resolve('sendmsg')],
    { stdio: ['ignore', 'pipe', 'inherit', theirs!], timeout: 60_000 },
  )
  closeSync(theirs!)
  await once(child.stdout!, 'data')
  await socket.send('unread request')
  child.kill('SIGKILL')
  await once(child, 'exit')
  const received: string[] = []
  socket.on('message', (message: Message) => received.push(message.data.toString()))
  await once(socket, 'end')
  t.is(received.length, 50)
  t.is(received[49], 'm49')
  socket.close()
})

test.serial('stream: a message with descriptors never shares a system call with bytes of a later message', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('stream')
  const [r, w] = pipe()
  // Straight to the kernel, then the rest of the tick leaves together: both paths are tried.
  for (const leading of [[], ['plain before;']]) {
    const sends = [...leading.map((data) => a.send(data)), a.send('X', { fds: [r] }), a.send('junk'), a.send('more')]
    const total = leading.join('').length + 'Xjunkmore'.length
    let length = 0
    const messages = await collect(b, (list) => {
      length = list.reduce((sum, message) => sum + message.data.length, 0)
      return length >= total
    })
    await Promise.all(sends)
    b.removeAllListeners('message')
    const carrier = messages.find((message) => message.fds.length > 0)
    t.truthy(carrier)
    t.true(carrier!.data.toString().endsWith('X'), `the read that brought the descriptor ends at its message: ${carrier!.data}`)
    t.is(messages.map((message) => message.data.toString()).join(''), leading.join('') + 'Xjunkmore')
  }
  a.close()
  b.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

test.serial('dgram: a send that fails rejects that message only; the socket keeps sending', async (t) => {
  const [a, b] = UnixSocket.pair('dgram')
  const never = 1 << 20 // not an open descriptor: EBADF
  const outcomes = await Promise.allSettled([a.send('one'), a.send('bad', { fds: [never] }), a.send('two'), a.send('also bad', { fds: [never] })])
  t.deepEqual(
    outcomes.map((outcome) => (outcome.status === 'fulfilled' ? 'sent' : (outcome.reason as { code: string }).code)),
    ['sent', 'EBADF', 'sent', 'EBADF'],
  )
  await a.send('three')
  // And a single send straight to the kernel.
  await t.throwsAsync(a.send('bad again', { fds: [never] }), { code: 'EBADF' })
  await a.send('four')
  const messages = await collect(b, (list) => list.length === 4)
  t.deepEqual(
    messages.map((message) => message.data.toString()),
    ['one', 'two', 'three', 'four'],
  )
  a.close()
  b.close()
})

test.serial('seqpacket: a message whose descriptor is closed is refused alone; the connection goes on', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const outcomes = await Promise.allSettled([a.send('one'), a.send('bad', { fds: [1 << 20] }), a.send('two')])
  t.deepEqual(
    outcomes.map((outcome) => outcome.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  )
  const messages = await collect(b, (list) => list.length === 2)
  t.deepEqual(
    messages.map((message) => message.data.toString()),
    ['one', 'two'],
  )
  a.close()
  b.close()
})

/**
 * How many descriptors the fixture's socket holds in buffered messages. With the poller-thread
 * reactor, 'message' handlers get one message per task, so only an iterator buffers: a pause or a
 * listener gone leaves the rest in the kernel, and then there is nothing of ours to leak.
 */
function buffersAtLeast(how: 'paused' | 'iterating' | 'no-listener'): number {
  return process.env.SENDMSG_REACTOR === 'thread' && how !== 'iterating' ? 0 : 30
}

for (const how of ['paused', 'iterating', 'no-listener'] as const) {
  test.serial(`a terminated worker closes the descriptors of its buffered messages (${how})`, async (t) => {
    const before = openFds()
    const worker = new Worker(fixture('buffered-messages.mjs'), { workerData: { how } })
    const [{ fdsBuffered }] = (await once(worker, 'message')) as [{ fdsBuffered: number }]
    t.true(fdsBuffered >= buffersAtLeast(how), `descriptors were buffered: ${fdsBuffered}`)
    await worker.terminate()
    await turn()
    t.is(openFds(), before, "the worker's buffered descriptors were closed with its environment")
  })

  test.serial(`a socket garbage-collected with buffered messages closes their descriptors (${how})`, async (t) => {
    const child = spawn(process.execPath, ['--expose-gc', fixture('buffered-messages.mjs'), how], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stderr!.resume()
    let out = ''
    child.stdout!.on('data', (chunk) => (out += chunk))
    const [code] = await once(child, 'exit')
    t.is(code, 0)
    const { fdsBuffered, left } = JSON.parse(out) as { fdsBuffered: number; left: number }
    t.true(fdsBuffered >= buffersAtLeast(how), `descriptors were buffered: ${fdsBuffered}`)
    t.is(left, 0, `nothing is left once the sockets are garbage: ${out}`)
  })
}

test.serial('close() with buffered messages closes their descriptors, taken ones excepted', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  for (let i = 0; i < 5; i++) await a.send(`m${i}`, { fds: [r, w] })
  const iterator = b[Symbol.asyncIterator]()
  const first = await iterator.next()
  const kept = (first.value as Message).fds[0]!.keep()
  await new Promise((resolve) => setTimeout(resolve, 30))
  b.close()
  a.close()
  await turn()
  t.is(openFds(), before + 3, 'only the pipe and the kept descriptor remain')
  t.false(kept.released)
  kept.close()
  closeSync(r)
  closeSync(w)
  t.is(openFds(), before)
})

test.serial('recvmsg re-entered from user code while its result is built does not abort', (t) => {
  const [a, b] = socketpair('dgram')
  const [c, d] = socketpair('dgram')
  sendmsg(a!, 'outer')
  sendmsg(c!, 'inner')
  let inner: string | undefined
  Object.defineProperty(Object.prototype, 'flags', {
    configurable: true,
    set(value) {
      Object.defineProperty(this, 'flags', { value, writable: true, enumerable: true, configurable: true })
      if (inner === undefined) {
        inner = ''
        inner = recvmsg(d!).data.toString()
      }
    },
  })
  let outer: string
  try {
    outer = recvmsg(b!).data.toString()
  } finally {
    delete (Object.prototype as { flags?: unknown }).flags
  }
  t.is(outer, 'outer')
  t.is(inner, 'inner')
  for (const fd of [a, b, c, d]) closeSync(fd!)
})

test.serial("from() on a descriptor the loop already watches reports EEXIST itself and leaves it with its owner", async (t) => {
  if (process.env.SENDMSG_REACTOR === 'thread') {
    // The poller thread has an epoll of its own, which does not see what libuv watches.
    t.log('not applicable with SENDMSG_REACTOR=thread: only libuv knows what else it watches')
    t.pass()
    return
  }
  const before = openFds()
  const [x, y] = socketpair('stream')
  const node = new net.Socket({ fd: x! })
  node.on('data', () => {})
  await turn()
  t.throws(() => UnixSocket.from(x!), { code: 'EEXIST' })
  // Still Node's: it reads what is sent.
  sendmsg(y!, 'still yours')
  const [chunk] = (await once(node, 'data')) as [Buffer]
  t.is(chunk.toString(), 'still yours')
  node.destroy()
  closeSync(y!)
  await turn()
  t.is(openFds(), before)
})

test.serial('a bridge that fails leaves the received descriptor with its ReceivedFd, which closes it', async (t) => {
  const before = openFds()
  const listening = net.createServer().listen(0, '127.0.0.1')
  await once(listening, 'listening')
  const other = net.createServer().listen(0, '127.0.0.1')
  await once(other, 'listening')
  const [a, b] = UnixSocket.pair('seqpacket')
  const copy = dup(other)
  const arrived = nextMessage(b)
  await a.send('listener', { fds: [copy] })
  closeSync(copy)
  const message = await arrived
  const [received] = message.fds
  t.throws(() => toNetServer(received!, listening), { code: 'ERR_SERVER_ALREADY_LISTEN' })
  t.false(received!.released, 'still owned by the ReceivedFd')
  received!.close()
  a.close()
  b.close()
  listening.close()
  other.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a kept ReceivedFd that nobody closes is closed when it is garbage-collected, and when its worker ends', async (t) => {
  const script = `
    const { isMainThread, parentPort, workerData } = require('node:worker_threads')
    const { pipe, UnixSocket } = require(isMainThread ? process.argv[1] : workerData)
    const { readdirSync, closeSync } = require('node:fs')
    const openFds = () => readdirSync('/proc/self/fd').length
    ;(async () => {
      const [a, b] = UnixSocket.pair('seqpacket')
      const [r, w] = pipe()
      const before = openFds()
      let kept = []
      const arrived = new Promise((resolve) => b.once('message', (msg) => resolve(kept.push(...msg.fds.map((fd) => fd.keep())))))
      await a.send('x', { fds: [r, w] })
      await arrived
      await new Promise((resolve) => setTimeout(resolve, 20))
      const held = openFds() - before
      if (!isMainThread) {
        // The pipe's own numbers are this script's to close; the kept copies are the package's.
        closeSync(r); closeSync(w)
        return parentPort.postMessage({ held })
      }
      kept = undefined
      for (let i = 0; i < 500 && openFds() !== before; i++) {
        globalThis.gc()
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      const left = openFds() - before
      a.close(); b.close(); closeSync(r); closeSync(w)
      process.stdout.write(JSON.stringify({ held, left }))
    })()
  `
  const packagePath = createRequire(import.meta.url).resolve('sendmsg')
  const child = spawn(process.execPath, ['--expose-gc', '-e', script, packagePath], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout!.on('data', (chunk) => (out += chunk))
  await once(child, 'exit')
  const collected = JSON.parse(out) as { held: number; left: number }
  t.is(collected.held, 2, 'both descriptors kept past the delivery')
  t.is(collected.left, 0, 'closed once the kept objects were collected')

  const before = openFds()
  const worker = new Worker(script, { eval: true, workerData: packagePath })
  const [{ held }] = (await once(worker, 'message')) as [{ held: number }]
  t.is(held, 2)
  await worker.terminate()
  await turn()
  t.is(openFds(), before, "the worker's kept descriptors were closed with its environment")
})

// Request/response traffic is read one message per readiness (a plain recvmsg), other traffic in
// batches (sendmsg_core::pace): whatever the pace when a burst comes, every message arrives, in
// order, and every descriptor nobody looked at is closed.
for (const type of ['stream', 'seqpacket', 'dgram'] as const) {
  test.serial(`${type}: a burst after request/response traffic arrives whole and in order, its unclaimed descriptors closed`, async (t) => {
    const before = openFds()
    const [a, b] = UnixSocket.pair(type)
    const [r, w] = pipe()
    // b answers every message, so both ends send between readinesses: request/response.
    const atB: string[] = []
    let fdsAtB = 0
    let index = 0
    b.on('message', (message: Message) => {
      atB.push(message.data.toString())
      // Half the messages' descriptors are looked at (and left), half never touched.
      if (index++ % 2 === 0) fdsAtB += message.fds.length
      void b.send('ok;')
    })
    const replies: string[] = []
    let waiting: (() => void) | undefined
    a.on('message', (message: Message) => {
      replies.push(message.data.toString())
      waiting?.()
    })
    const replyCount = () => replies.join('').split(';').length - 1
    const until = (count: number) =>
      new Promise<void>((resolve) => {
        waiting = () => replyCount() >= count && resolve()
        waiting()
      })
    const ROUNDS = 40
    for (let i = 0; i < ROUNDS; i++) {
      await a.send(`q${i};`, { fds: [r] })
      await until(i + 1)
    }
    // Then a burst, sent in one tick: b is reading one message per readiness when it starts.
    const BURST = 300
    const sends = Array.from({ length: BURST }, (_, i) => a.send(`m${i};`, { fds: [r] }))
    await Promise.all(sends)
    await until(ROUNDS + BURST)
    const expected = [...Array.from({ length: ROUNDS }, (_, i) => `q${i};`), ...Array.from({ length: BURST }, (_, i) => `m${i};`)]
    if (type === 'stream') t.is(atB.join(''), expected.join(''))
    else t.deepEqual(atB, expected)
    // Every message carried one descriptor; on a stream, reads stop at each descriptor's message.
    t.is(atB.length, ROUNDS + BURST)
    t.is(fdsAtB, (ROUNDS + BURST) / 2)
    a.close()
    b.close()
    closeSync(r)
    closeSync(w)
    await turn()
    t.is(openFds(), before)
  })
}

test.serial('a send in a later task, after one that went straight to the kernel, still goes out in order', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const received = collect(b, (list) => list.length === 5)
  // Straight out; the next sends come in tasks no message delivery to `a` began.
  const first = a.send('one')
  await new Promise((resolve) => setImmediate(resolve))
  const later = [a.send('two'), a.send('three')]
  await new Promise((resolve) => setImmediate(resolve))
  later.push(a.send('four'))
  await new Promise((resolve) => setTimeout(resolve, 1))
  later.push(a.send('five'))
  await Promise.all([first, ...later])
  t.deepEqual(
    (await received).map((message) => message.data.toString()),
    ['one', 'two', 'three', 'four', 'five'],
  )
  a.close()
  b.close()
})
