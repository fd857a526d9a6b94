// Event-loop sockets: how they are made, how messages go out and come in, and the microtask
// ordering between messages. Serial: several tests count open descriptors.
import test from 'ava'
import { once } from 'node:events'
import { closeSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { mock } from 'node:test'

import { pipe, recvmsg, socketpair, UnixServer, UnixSocket, type Message, type NodeError, type SocketType } from 'sendmsg'

import { nextMessage, openFds, tempDir, turn } from './helpers.ts'

const TYPES: SocketType[] = process.platform === 'darwin' ? ['stream', 'dgram'] : ['stream', 'seqpacket', 'dgram']
const linuxOnly = process.platform === 'linux' ? test.serial : test.serial.skip
if (process.platform !== 'linux') console.log('abstract-namespace tests skipped: Linux only')

for (const type of TYPES) {
  test.serial(`${type}: a pair passes data and a descriptor`, async (t) => {
    const before = openFds()
    const [a, b] = UnixSocket.pair(type)
    const [r, w] = pipe()
    writeSync(w, 'through the pipe')
    const arrived = nextMessage(b)
    await a.send('hello', { fds: [r] })
    const message = await arrived
    t.is(message.data.toString(), 'hello')
    t.is(message.fds.length, 1)
    await turn()
    t.true(message.fds[0]!.released, 'its delivery is over: the descriptor was not taken and is closed')
    closeSync(r)
    closeSync(w)
    a.close()
    b.close()
    await turn()
    t.is(openFds(), before)
  })
}

test.serial('a descriptor taken in the handler stays open, one left alone is closed', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  writeSync(w, 'abc')
  let taken = -1
  let leftAlone: Message['fds'][number] | undefined
  b.on('message', (message: Message) => {
    t.is(message.fds.length, 2)
    taken = message.fds[0]!.take()
    leftAlone = message.fds[1]
  })
  await a.send('x', { fds: [r, r] })
  await once(b, 'message')
  await turn()
  // The caller's own copy may be closed now that the promise settled.
  closeSync(r)
  closeSync(w)
  const buffer = Buffer.alloc(3)
  t.is(readSync(taken, buffer), 3)
  t.is(buffer.toString(), 'abc')
  closeSync(taken)
  t.true(leftAlone!.released)
  t.throws(() => leftAlone!.fd, { code: 'ERR_SENDMSG_FD_RELEASED' })
  a.close()
  b.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a descriptor can be taken after awaiting the message, and not once its delivery is over', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  writeSync(w, 'xyz')
  void a.send('one', { fds: [r] })
  const [message] = (await once(b, 'message')) as [Message]
  // The common pattern: await the message, then take its descriptor.
  const fd = message.fds[0]!.take()
  const buffer = Buffer.alloc(3)
  readSync(fd, buffer)
  t.is(buffer.toString(), 'xyz')
  closeSync(fd)

  void a.send('two', { fds: [r] })
  const [late] = (await once(b, 'message')) as [Message]
  await turn()
  t.throws(() => late.fds[0]!.take(), { code: 'ERR_SENDMSG_FD_RELEASED' }, 'after the loop turned, unclaimed is closed')
  closeSync(r)
  closeSync(w)
  a.close()
  b.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('close() and Symbol.dispose close a received descriptor early; take() after it fails clearly', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  const seen: string[] = []
  b.on('message', (message: Message) => {
    const [first, second] = message.fds
    first!.close()
    second![Symbol.dispose]()
    seen.push(String(first!.released), String(second!.released))
    t.throws(() => first!.take(), { code: 'ERR_SENDMSG_FD_RELEASED' })
  })
  await a.send('x', { fds: [r, w] })
  await once(b, 'message')
  t.deepEqual(seen, ['true', 'true'])
  closeSync(r)
  closeSync(w)
  a.close()
  b.close()
})

test.serial('for await delivers messages in order and closes each one\'s unclaimed descriptors as it moves on', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  for (let i = 0; i < 5; i++) void a.send(`m${i}`, { fds: [r] })
  await a.end()
  closeSync(r)
  closeSync(w)
  const got: string[] = []
  for await (const message of b) {
    got.push(message.data.toString())
    t.is(message.fds.length, 1)
    t.false(message.fds[0]!.released, 'still open inside the loop body')
  }
  t.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4'])
  t.true(b.closed, 'the peer ended, so the socket closed')
  a.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a promise resolved inside a message handler runs before the next message', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const order: string[] = []
  b.on('message', (message: Message) => {
    const name = message.data.toString()
    order.push(`message ${name}`)
    process.nextTick(() => order.push(`nextTick ${name}`))
    void Promise.resolve().then(() => order.push(`promise ${name}`))
  })
  // Sent in one tick: one sendmmsg, so both arrive in one batch on the other side.
  void a.send('1')
  await a.send('2')
  while (order.length < 6) await new Promise((resolve) => setImmediate(resolve))
  t.deepEqual(order, ['message 1', 'nextTick 1', 'promise 1', 'message 2', 'nextTick 2', 'promise 2'])
  a.close()
  b.close()
})

test.serial('sends queue while the socket is full and settle in order once the reader catches up', async (t) => {
  const [a, b] = UnixSocket.pair('dgram')
  const chunk = Buffer.alloc(16 * 1024, 7)
  const settled: number[] = []
  const sends = Array.from({ length: 200 }, (_, i) => a.send(chunk).then(() => settled.push(i)))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.true(a.writableLength > 0, 'the kernel could not take everything: the rest is queued')
  t.true(settled.length < 200)
  let received = 0
  b.on('message', (message: Message) => {
    t.is(message.data.length, chunk.length)
    received++
  })
  await Promise.all(sends)
  t.deepEqual(settled, Array.from({ length: 200 }, (_, i) => i))
  t.is(a.writableLength, 0)
  while (received < 200) await new Promise((resolve) => setImmediate(resolve))
  a.close()
  b.close()
})

test.serial('a large stream send completes across partial writes, in order', async (t) => {
  const [a, b] = UnixSocket.pair('stream')
  const big = Buffer.alloc(4 << 20)
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i / 4, i)
  const chunks: Buffer[] = []
  let total = 0
  const expected = Buffer.concat([big, Buffer.from('tail')])
  const all = new Promise<void>((resolve) =>
    b.on('message', (message: Message) => {
      chunks.push(Buffer.from(message.data))
      total += message.data.length
      if (total >= expected.length) resolve()
    }),
  )
  await Promise.all([a.send(big), a.send('tail')])
  await all
  t.true(chunks.length > 1, 'it took several receives')
  t.true(Buffer.concat(chunks).equals(expected))
  a.close()
  b.close()
})

test.serial('on a stream, descriptors arrive with the read that holds their message\'s first byte', async (t) => {
  const [a, b] = UnixSocket.pair('stream')
  const [r, w] = pipe()
  // [stream offset of the chunk, its data, descriptors with it]
  const chunks: Array<[number, string, number]> = []
  let offset = 0
  b.on('message', (message: Message) => {
    chunks.push([offset, message.data.toString(), message.fds.length])
    offset += message.data.length
  })
  void a.send('aaaa')
  await a.send('bbbb', { fds: [r] })
  void a.send('cccc')
  while (offset < 12) await new Promise((resolve) => setImmediate(resolve))
  // Plain data before may share the read (the kernel stops a stream read after the message that
  // carries descriptors, not before it); the descriptors are never early and never late.
  const carriers = chunks.filter(([, , count]) => count > 0)
  t.is(carriers.length, 1, JSON.stringify(chunks))
  const [start, data] = carriers[0]!
  t.true(start <= 4 && start + data.length >= 8, `the chunk ${JSON.stringify(carriers[0])} holds bytes 4..8`)
  t.true(data.endsWith('bbbb'), 'and ends with the message that carried them')
  closeSync(r)
  closeSync(w)
  a.close()
  b.close()
})

test.serial('messages carry their flags, and datagrams longer than maxMessageSize are flagged truncated', async (t) => {
  const [a, b] = UnixSocket.pair('dgram', { maxMessageSize: 8 })
  const arrived = nextMessage(b)
  await a.send('0123456789abcdef')
  const message = await arrived
  t.is(message.data.toString(), '01234567')
  t.true(message.truncated)
  a.close()
  b.close()
})

test.serial('a listening server accepts connections, for stream and seqpacket', async (t) => {
  using temp = tempDir()
  for (const type of TYPES.filter((ty) => ty !== 'dgram') as Array<'stream' | 'seqpacket'>) {
    const path = join(temp.dir, `${type}.sock`)
    const server = UnixServer.listen(path, { type })
    t.is(server.address(), path)
    server.on('connection', (socket: UnixSocket) => {
      socket.on('message', (message: Message) => void socket.send(message.data.toString().toUpperCase()))
    })
    const client = await UnixSocket.connect(path, { type })
    t.is(client.remoteAddress, path)
    const reply = nextMessage(client)
    await client.send(`hello ${type}`)
    t.is((await reply).data.toString(), `HELLO ${type.toUpperCase()}`)
    client.close()
    server.close()
    await once(server, 'close')
    t.throws(() => readSync(openFdOr(path), Buffer.alloc(1)), undefined, 'the socket file is gone')
  }
})

function openFdOr(path: string): number {
  // Throws ENOENT when the file no longer exists.
  return (require('node:fs') as typeof import('node:fs')).openSync(path, 'r')
}

test.serial('a server iterates over its connections with for await', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'iter.sock')
  const server = UnixServer.listen(path)
  const clients = await Promise.all([UnixSocket.connect(path), UnixSocket.connect(path)])
  let accepted = 0
  for await (const socket of server) {
    accepted++
    socket.close()
    if (accepted === 2) break
  }
  t.is(accepted, 2)
  for (const client of clients) client.close()
  server.close()
})

test.serial('connecting to nothing is a Node-style error with the address', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'nobody.sock')
  const error = (await t.throwsAsync(UnixSocket.connect(path))) as NodeError & { syscall: string; address: string }
  t.is(error.code, 'ENOENT')
  t.is(error.syscall, 'connect')
  t.is(error.address, path)
})

linuxOnly('abstract names work on Linux', async (t) => {
  const name = `\0sendmsg-test-${process.pid}`
  const server = UnixServer.listen(name, { type: 'seqpacket' })
  server.on('connection', (socket: UnixSocket) => void socket.send('from an abstract name'))
  const client = await UnixSocket.connect(name, { type: 'seqpacket' })
  t.is((await nextMessage(client)).data.toString(), 'from an abstract name')
  client.close()
  server.close()
})

if (process.platform !== 'linux') {
  test('abstract names are a clear error off Linux', (t) => {
    t.throws(() => UnixServer.listen('\0name'), { code: 'ERR_INVALID_ARG_VALUE', message: /only on Linux/ })
  })
}

test.serial('datagrams: sendTo a bound socket, which sees the sender\'s address and can reply', async (t) => {
  using temp = tempDir()
  const serverPath = join(temp.dir, 'server.dgram')
  const clientPath = join(temp.dir, 'client.dgram')
  const server = UnixSocket.datagram(serverPath)
  const client = UnixSocket.datagram(clientPath)
  server.on('message', (message: Message) => void server.sendTo(message.address!, `echo ${message.data}`))
  const reply = nextMessage(client)
  await client.sendTo(serverPath, 'ping')
  const message = await reply
  t.is(message.data.toString(), 'echo ping')
  t.is(message.address, serverPath)
  t.throws(() => server.send === undefined || (UnixSocket.pair('stream')[0].sendTo as (...a: unknown[]) => unknown)('x', 'y'), {
    code: 'ERR_SOCKET_BAD_TYPE',
  })
  const failed = (await t.throwsAsync(client.sendTo(join(temp.dir, 'nobody'), 'lost'))) as NodeError
  t.is(failed.code, 'ENOENT')
  // One destination's failure does not break the socket.
  const again = nextMessage(client)
  await client.sendTo(serverPath, 'still here')
  t.is((await again).data.toString(), 'echo still here')
  server.close()
  client.close()
})

test.serial('datagrams: sendTo a receiver that is not reading waits without spinning, then delivers in order', async (t) => {
  // The kernel reports an unconnected datagram socket writable whatever the receiver's queue holds,
  // so waiting for writability alone would retry the send in a busy loop.
  using temp = tempDir()
  const receiverPath = join(temp.dir, 'receiver.dgram')
  const receiver = UnixSocket.datagram(receiverPath)
  const sender = UnixSocket.datagram()
  const count = 200
  const sent = Array.from({ length: count }, (_, i) => sender.sendTo(receiverPath, `${i}`))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.true(sender.writableLength > 0, 'the receiver\'s queue is full, so sends wait')
  const start = performance.eventLoopUtilization()
  await new Promise((resolve) => setTimeout(resolve, 300))
  const busy = performance.eventLoopUtilization(start).utilization
  t.true(busy < 0.5, `the loop was idle while the sends waited (utilization ${busy.toFixed(2)})`)
  const received: string[] = []
  receiver.on('message', (message: Message) => received.push(message.data.toString()))
  await Promise.all(sent)
  while (received.length < count) await once(receiver, 'message')
  t.deepEqual(received, Array.from({ length: count }, (_, i) => `${i}`))
  sender.close()
  receiver.close()
})

test.serial('datagrams: a sendTo retry that moves the queue starts the backoff again from its shortest delay', async (t) => {
  using temp = tempDir()
  const receiverPath = join(temp.dir, 'receiver.dgram')
  const receiver = UnixSocket.datagram(receiverPath) // no 'message' listener: read below, by hand
  const sender = UnixSocket.datagram()
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const received: string[] = []
  const readSome = (count: number) => {
    for (let i = 0; i < count; i++) received.push(recvmsg(receiver.fd, 64).data.toString())
  }
  const advance = async (ms: number) => {
    for (let i = 0; i < ms; i++) {
      mock.timers.tick(1)
      await turn()
      await turn()
    }
  }
  const sent = Array.from({ length: 60 }, (_, i) => sender.sendTo(receiverPath, `${i}`))
  await advance(200) // the receiver is full: the retries back off to their longest delay
  const waiting = sender.writableLength
  t.true(waiting > 0)
  readSome(5)
  for (let ms = 0; ms < 50 && sender.writableLength === waiting; ms++) await advance(1)
  const moved = sender.writableLength
  t.true(moved < waiting, 'a retry sent what fits')
  readSome(5)
  await advance(1)
  t.true(sender.writableLength < moved, 'the retry after one that moved the queue comes after the shortest delay')
  while (received.length < sent.length) {
    try {
      readSome(1)
    } catch {
      await advance(1)
    }
  }
  await Promise.all(sent)
  t.deepEqual(received, Array.from({ length: sent.length }, (_, i) => `${i}`))
  sender.close()
  receiver.close()
})

test.serial('a received message\'s memory transferred away does not receive later messages', async (t) => {
  // Messages share one ArrayBuffer per thread; transferring it detaches it from this side.
  const [a, b] = UnixSocket.pair('dgram')
  const first = nextMessage(b)
  await a.send('first')
  const { data } = await first
  const moved = new Uint8Array(structuredClone(data.buffer, { transfer: [data.buffer as ArrayBuffer] }))
  const snapshot = moved.slice()
  const second = nextMessage(b)
  await a.send('second!!')
  t.is((await second).data.toString(), 'second!!')
  t.deepEqual(moved, snapshot, 'the transferred memory is left alone')
  a.close()
  b.close()
})

test.serial('adopting a descriptor: a socket from the sync API, and refusals for what does not fit', async (t) => {
  const [x, y] = socketpair('seqpacket')
  const a = UnixSocket.from(x)
  t.is(a.type, 'seqpacket')
  t.is(a.fd, x)
  const arrived = nextMessage(a)
  const { sendmsg } = await import('sendmsg')
  sendmsg(y, 'adopted')
  t.is((await arrived).data.toString(), 'adopted')
  a.close()
  closeSync(y)

  const [r, w] = pipe()
  t.throws(() => UnixSocket.from(r), { code: 'ENOTSOCK' })
  using temp = tempDir()
  const server = UnixServer.listen(join(temp.dir, 'l.sock'))
  t.throws(() => UnixSocket.from(server.fd), { code: 'ERR_INVALID_ARG_VALUE', message: /UnixServer\.from/ })
  server.close()
  closeSync(r)
  closeSync(w)
})

test.serial('end() lets the peer read end-of-file, after which both sides close', async (t) => {
  const [a, b] = UnixSocket.pair('stream')
  const got: string[] = []
  b.on('message', (message: Message) => got.push(message.data.toString()))
  const ended = once(b, 'end')
  void a.send('last words')
  await a.end()
  await ended
  t.deepEqual(got, ['last words'])
  await turn()
  t.true(b.closed, 'after the peer ended, the socket closed itself')
  await t.throwsAsync(a.send('too late'), { code: 'ERR_STREAM_WRITE_AFTER_END' })
  a.close()
})

test.serial('a closed peer rejects sends with EPIPE; use after close and double close are defined', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  b.close()
  const error = (await t.throwsAsync(a.send('anyone?'))) as NodeError & { syscall: string; errno: number }
  t.is(error.code, 'EPIPE')
  t.is(error.errno, -32)
  await t.throwsAsync(a.send('again'), { code: 'EPIPE' })
  a.close()
  a.close()
  await t.throwsAsync(a.send('after close'), { code: 'ERR_SOCKET_CLOSED' })
  t.is(a.fd, -1)
})

test.serial('close() rejects queued sends and closes buffered descriptors', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram')
  const [r, w] = pipe()
  const chunk = Buffer.alloc(32 * 1024)
  const sends = Array.from({ length: 100 }, () => a.send(chunk, { fds: [r] }).then(
    () => 'sent',
    (error: NodeError) => error.code,
  ))
  await new Promise((resolve) => setTimeout(resolve, 20))
  a.close()
  const outcomes = await Promise.all(sends)
  t.true(outcomes.includes('sent'))
  t.true(outcomes.includes('ERR_SOCKET_CLOSED'))
  b.pause() // buffered, not delivered
  b.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

test.serial('a send with wrong arguments throws at once', (t) => {
  const [a, b] = UnixSocket.pair('stream')
  t.throws(() => a.send(42 as unknown as string), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => a.send('x', { fds: [-1] }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => a.send('', { fds: [0] }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => UnixSocket.pair('stream', { maxMessageSize: 0 }), { instanceOf: RangeError })
  t.throws(() => UnixSocket.pair('raw' as SocketType), { code: 'ERR_INVALID_ARG_VALUE' })
  a.close()
  b.close()
})
