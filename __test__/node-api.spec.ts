// The API as Node's own modules shape theirs (issue 13): cancellation with AbortSignal and
// timeouts, unknown options refused, disposal with `using`, Node's method and event names, Node's
// error wording, and one notion of a descriptor-like wherever a descriptor is taken. Serial: the
// tests count open descriptors.
import test from 'ava'
import { spawn } from 'node:child_process'
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import { closeSync, existsSync, fstatSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import { join } from 'node:path'

import {
  dup,
  fdsFromAncillary,
  FrameChannel,
  listenFds,
  MSG_CTRUNC,
  notify,
  offerListeners,
  pipe,
  receiveListeners,
  recvmsg,
  scmCredentials,
  scmRights,
  sendmsg,
  socketpair,
  spawnWorker,
  storeFds,
  takeListeners,
  UnixServer,
  UnixSocket,
  workerListeners,
  type Message,
  type NodeError,
} from 'sendmsg'

import { nextMessage, openFds, tempDir, turn } from './helpers.ts'

async function tcpServer(): Promise<net.Server> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

const unknownOption = { code: 'ERR_INVALID_ARG_VALUE', message: /unknown option 'bogus'/ }
const bogus = { bogus: 1 } as never

// 2. Cancellation ----------------------------------------------------------------------------------

test.serial('every waiting call rejects with an AbortError when its signal is already aborted, and leaves nothing open', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'app.sock')
  const server = UnixServer.listen(path)
  await once(server, 'listening')
  const tcp = await tcpServer()
  const before = openFds()
  const signal = AbortSignal.abort(new Error('not now'))
  const aborted = { code: 'ABORT_ERR', name: 'AbortError' }
  const connectError = (await t.throwsAsync(UnixSocket.connect(path, { signal }), aborted)) as NodeError & { cause: Error }
  t.is(connectError.cause.message, 'not now')
  await t.throwsAsync(takeListeners(join(temp.dir, 'offer', 'h.sock'), { signal }), aborted)
  const [supervisor, worker] = socketpair('stream')
  await t.throwsAsync(workerListeners({ fd: worker, signal }), aborted)
  t.throws(() => offerListeners(join(temp.dir, 'offer', 'h.sock'), { http: tcp }, { signal }), aborted)
  const [a, b] = UnixSocket.pair('stream')
  const channel = new FrameChannel(a)
  await t.throwsAsync(channel.next({ signal }), aborted)
  await t.throwsAsync(receiveListeners(channel, { signal }), aborted)
  channel.close()
  b.close()
  closeSync(supervisor)
  await turn()
  t.is(openFds(), before)
  server.close()
  tcp.close()
})

test.serial('a timeout rejects with ERR_SENDMSG_TIMEOUT; an abort while waiting with an AbortError', async (t) => {
  const [a, b] = UnixSocket.pair('stream')
  const channel = new FrameChannel(a)
  await t.throwsAsync(channel.next({ timeout: 20 }), { code: 'ERR_SENDMSG_TIMEOUT' })
  const controller = new AbortController()
  const waiting = channel.next({ signal: controller.signal })
  controller.abort()
  await t.throwsAsync(waiting, { code: 'ABORT_ERR', name: 'AbortError' })
  channel.close()
  b.close()
})

test.serial('unknown option names are refused with ERR_INVALID_ARG_VALUE wherever options are taken', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'app.sock')
  const before = openFds()
  t.throws(() => UnixSocket.pair('stream', bogus), unknownOption)
  t.throws(() => UnixSocket.datagram(undefined, bogus), unknownOption)
  await t.throwsAsync(UnixSocket.connect(path, bogus), unknownOption)
  t.throws(() => UnixServer.listen(path, bogus), unknownOption)
  t.false(existsSync(path), 'nothing was bound')
  const [x, y] = socketpair('stream')
  t.throws(() => UnixSocket.from(x, bogus), unknownOption)
  t.throws(() => listenFds(bogus), unknownOption)
  if (process.platform === 'linux') t.throws(() => scmCredentials(bogus), unknownOption)
  await t.throwsAsync(notify('READY=1', bogus), unknownOption)
  const [a, b] = UnixSocket.pair('stream')
  t.throws(() => a.send('x', bogus), unknownOption)
  t.throws(() => new FrameChannel(a, bogus), unknownOption)
  const channel = new FrameChannel(a)
  t.throws(() => channel.next(bogus), unknownOption)
  t.throws(() => spawnWorker(process.execPath, ['-e', ''], { listeners: {}, bogus: 1 } as never), unknownOption)
  channel.close()
  b.close()
  closeSync(x)
  closeSync(y)
  await turn()
  t.is(openFds(), before)
})

// 3. Disposal --------------------------------------------------------------------------------------

test.serial('using and await using close sockets, servers, channels and offers', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'app.sock')
  const tcp = await tcpServer()
  const before = openFds()
  let kept: { socket?: UnixSocket; server?: UnixServer; channel?: FrameChannel } = {}
  {
    using server = UnixServer.listen(path)
    const [a, b] = UnixSocket.pair('stream')
    using socket = b
    using channel = new FrameChannel(a)
    kept = { socket, server, channel }
  }
  t.true(kept.socket!.closed)
  t.true(kept.server!.closed)
  t.true(kept.channel!.closed)
  t.false(existsSync(path), 'the socket file is removed')
  {
    await using server = UnixServer.listen(path)
    const [a, b] = UnixSocket.pair('stream')
    await using socket = b
    await using channel = new FrameChannel(a)
    kept = { socket, server, channel }
  }
  t.true(kept.server!.closed && kept.socket!.closed && kept.channel!.closed)
  const offerPath = join(temp.dir, 'offer', 'h.sock')
  {
    await using offer = offerListeners(offerPath, { http: tcp })
    t.true(existsSync(offer.path))
  }
  t.false(existsSync(offerPath), 'the offer is closed')
  await turn()
  t.is(openFds(), before)
  tcp.close()
})

test.serial("await using a spawned worker closes its channel and ends the child", async (t) => {
  const tcp = await tcpServer()
  let child: ReturnType<typeof spawn> | undefined
  {
    await using worker = spawnWorker(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { listeners: { http: tcp } })
    child = worker.child
    t.is(child.exitCode, null)
  }
  t.true(child.exitCode !== null || child.signalCode !== null, 'the child has exited')
  tcp.close()
})

test.serial('leaving a for await over a socket or a server closes it, as leaving one over a stream destroys it', async (t) => {
  using temp = tempDir()
  const [a, b] = UnixSocket.pair('seqpacket')
  await a.send('one')
  await a.send('two')
  for await (const message of b) {
    t.is(message.data.toString(), 'one')
    break
  }
  t.true(b.closed)
  a.close()

  const server = UnixServer.listen(join(temp.dir, 'app.sock'))
  const client = await UnixSocket.connect(join(temp.dir, 'app.sock'))
  for await (const socket of server) {
    socket.close()
    break
  }
  t.true(server.closed)
  client.close()
})

// 4. Node's names ----------------------------------------------------------------------------------

test.serial("listen(): 'listening' on the next tick, address() as net.Server's, a listen error as 'error' then 'close'", async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'app.sock')
  const server = UnixServer.listen(path)
  await once(server, 'listening') // attached after listen() returned
  t.is(server.address(), path)
  const order: string[] = []
  const second = UnixServer.listen(path)
  t.true(second instanceof UnixServer, 'listen() returns the server')
  const failed = new Promise<NodeError & { syscall: string; address: string }>((resolve) => {
    second.on('error', (error) => {
      order.push('error')
      resolve(error as NodeError & { syscall: string; address: string })
    })
  })
  second.on('close', () => order.push('close'))
  const error = await failed
  await turn()
  t.deepEqual(order, ['error', 'close'])
  t.is(error.code, 'EADDRINUSE')
  t.is(error.syscall, 'listen')
  t.is(error.address, path)
  t.is(error.message, `listen EADDRINUSE: address already in use ${path}`)
  t.true(second.closed)
  t.true(existsSync(path), "the failed server does not remove the first one's file")
  server.close()
  t.is(server.address(), undefined)

  // Adopting a listening descriptor says so too, as net.Server.listen({ fd }) does.
  const listening = UnixServer.listen(path)
  await once(listening, 'listening')
  const adopted = UnixServer.from(dup(listening))
  await once(adopted, 'listening')
  adopted.close()
  listening.close()
})

test.serial("destroy(error) emits 'error' with it, then 'close'; isPaused() is a method", async (t) => {
  const [a, b] = UnixSocket.pair('stream')
  const events: string[] = []
  const boom = new Error('boom')
  a.on('error', (error) => events.push(`error ${error.message}`))
  a.on('close', () => events.push('close'))
  t.false(a.isPaused())
  a.pause()
  t.true(a.isPaused())
  t.is(a.destroy(boom), a)
  t.true(a.closed)
  await new Promise<void>((resolve) => a.on('close', () => resolve()))
  t.deepEqual(events, ['error boom', 'close'])
  b.destroy()
  await once(b, 'close')
})

// 5. Node's error wording --------------------------------------------------------------------------

test.serial('connect errors are worded as net.connect words them, with address and syscall', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'nope.sock')
  const error = (await t.throwsAsync(UnixSocket.connect(path))) as NodeError & { syscall: string; address: string }
  t.is(error.message, `connect ENOENT ${path}`)
  t.is(error.code, 'ENOENT')
  t.is(error.syscall, 'connect')
  t.is(error.address, path)
  const node = await new Promise<Error>((resolve) => net.connect(path).on('error', resolve))
  t.is(error.message, node.message, "the same words as Node's own")
})

test.serial('new FrameChannel(3) is ERR_INVALID_ARG_TYPE; workerListeners outside a worker is ERR_SENDMSG_NOT_A_WORKER', async (t) => {
  t.throws(() => new FrameChannel(3 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  const saved = process.env.SENDMSG_HANDOFF_FD
  delete process.env.SENDMSG_HANDOFF_FD
  try {
    await t.throwsAsync(workerListeners(), { code: 'ERR_SENDMSG_NOT_A_WORKER', message: /spawnWorker/ })
    const [r, w] = [...socketpair('stream')]
    closeSync(w!)
    const file = join(tempDir().dir, 'plain')
    writeFileSync(file, '')
    const { openSync } = await import('node:fs')
    const notASocket = openSync(file, 'r')
    await t.throwsAsync(workerListeners({ fd: notASocket }), { code: 'ERR_SENDMSG_NOT_A_WORKER' })
    t.notThrows(() => fstatSync(notASocket), 'a descriptor that is not a channel is left alone')
    closeSync(notASocket)
    closeSync(r!)
  } finally {
    if (saved !== undefined) process.env.SENDMSG_HANDOFF_FD = saved
  }
})

// 10. Examples that do what they say ----------------------------------------------------------------

test.serial("MSG_CTRUNC's example: a cmsgSize of 0 has no room for a descriptor, which CMSG_SPACE(4) has", (t) => {
  const [a, b] = socketpair('dgram')
  const [r, w] = pipe()
  sendmsg(a, 'x', [scmRights([r])])
  sendmsg(a, 'y', [scmRights([r, w])])
  const cut = recvmsg(b, 1024, 0)
  t.not(cut.flags & MSG_CTRUNC, 0, 'the example prints')
  t.deepEqual(fdsFromAncillary(cut.ancillary), [])
  const roomy = recvmsg(b, 1024, 4)
  t.is(roomy.flags & MSG_CTRUNC, 0, 'a 4-byte cmsgSize holds two descriptors: nothing is cut')
  const copies = fdsFromAncillary(roomy.ancillary)
  t.is(copies.length, 2)
  for (const fd of [a, b, r, w, ...copies]) closeSync(fd)
})

// 6. Descriptor-likes ------------------------------------------------------------------------------

test.serial('every parameter that takes a descriptor takes net and dgram objects, ReceivedFds and this package\'s sockets', async (t) => {
  using temp = tempDir()
  const tcp = await tcpServer()
  const udp = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve))
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [c, d] = UnixSocket.pair('seqpacket')
  await a.send('objects', { fds: [tcp, udp, c] })
  const message: Message = await nextMessage(b)
  t.is(message.fds.length, 3)
  // A ReceivedFd is passed on as it is.
  await a.send('received', { fds: [message.fds[0]!] })
  t.is((await nextMessage(b)).fds.length, 1)

  const [e, f] = UnixSocket.pair('stream')
  const sender = new FrameChannel(e)
  const receiver = new FrameChannel(f)
  await sender.send({ hello: 1 }, [tcp, udp])
  t.is((await receiver.next()).fds.length, 2)

  const [x, y] = socketpair('dgram')
  sendmsg(x, 'rights', [scmRights([tcp, udp])])
  const copies = fdsFromAncillary(recvmsg(y).ancillary)
  t.is(copies.length, 2)
  for (const fd of copies) closeSync(fd)
  const copy = dup(tcp)
  closeSync(copy)

  // storeFds and notify: to a NOTIFY_SOCKET of our own.
  const notifyPath = join(temp.dir, 'notify.sock')
  const manager = UnixSocket.datagram(notifyPath)
  process.env.NOTIFY_SOCKET = notifyPath
  try {
    const stored = nextMessage(manager)
    t.true(await storeFds([tcp, udp], 'both'))
    const got = await stored
    t.is(got.data.toString(), 'FDSTORE=1\nFDNAME=both')
    t.is(got.fds.length, 2)
  } finally {
    delete process.env.NOTIFY_SOCKET
  }
  for (const socket of [a, b, c, d, sender, receiver, manager]) socket.close()
  closeSync(x)
  closeSync(y)
  await turn()
  await turn()
  t.is(openFds(), before)
  tcp.close()
  udp.close()
})
