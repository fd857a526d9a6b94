// Handing listening sockets over: to a spawned worker, between unrelated processes through a named
// socket, in batches past the kernel's 253 per message, and refusing peers that break the rules.
// Serial: the tests count open descriptors.
import test from 'ava'
import { once } from 'node:events'
import { closeSync, mkdirSync, statSync, writeSync } from 'node:fs'
import net from 'node:net'
import { release } from 'node:os'
import { join } from 'node:path'

import {
  dup,
  FrameChannel,
  offerListeners,
  pidfdPid,
  pipe,
  receiveListeners,
  sendListeners,
  spawnWorker,
  takeListeners,
  UnixServer,
  UnixSocket,
  type Credentials,
  type NodeError,
  type PeerIdentity,
  type ReceivedFd,
} from 'sendmsg'

import { isCloexec, linuxAtLeast, openFds, tcpListener, tempDir, turn } from './helpers.ts'
import { fixture } from './processes.ts'

function fetchLine(options: net.NetConnectOpts): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    net
      .connect(options)
      .on('data', (chunk) => (text += chunk))
      .on('end', () => resolve(text))
      .on('error', reject)
  })
}

function channelPair(): [FrameChannel, FrameChannel] {
  const [a, b] = UnixSocket.pair('stream')
  return [new FrameChannel(a), new FrameChannel(b)]
}

test.serial('closing a frame channel rejects a next() that was waiting', async (t) => {
  const [a, b] = channelPair()
  const waiting = b.next()
  b.close()
  await t.throwsAsync(waiting, { code: 'ERR_SENDMSG_FRAME_CLOSED' })
  await t.throwsAsync(b.next(), { code: 'ERR_SENDMSG_FRAME_CLOSED' })
  a.close()
})

test.serial('a spawned worker gets named listeners, serves on them, and stops when told', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const before = openFds()
  const tcp = await tcpListener()
  const unixPath = join(temp.dir, 'w.sock')
  const unix = UnixServer.listen(unixPath)
  const worker = spawnWorker(process.execPath, [fixture('handoff-worker.mjs')], { listeners: { tcp: tcp.fd, unix } })
  await worker.ready
  const [frame] = (await once(worker.channel, 'frame')) as [{ value: { type: string; pid: number; names: string[] } }]
  t.is(frame.value.type, 'serving')
  t.deepEqual(frame.value.names.sort(), ['tcp', 'unix'])
  t.is(await fetchLine({ host: '127.0.0.1', port: tcp.port }), `tcp served by ${worker.child.pid}\n`)
  t.is(await fetchLine({ path: unixPath }), `unix served by ${worker.child.pid}\n`)
  const exited = once(worker.child, 'exit')
  await worker.channel.send({ type: 'stop' })
  t.deepEqual(await exited, [0, null])
  worker.channel.close()
  unix.close()
  closeSync(tcp.fd)
  await turn()
  t.is(openFds(), before)
})

test.serial('more listeners than one message can carry go in several frames', async (t) => {
  const before = openFds()
  const tcp = await tcpListener()
  const listeners = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`l${i}`, dup(tcp.fd)]))
  const [sender, receiver] = channelPair()
  const [sent, { listeners: received }] = await Promise.all([sendListeners(sender, listeners), receiveListeners(receiver)])
  t.is(sent, undefined)
  t.deepEqual(Object.keys(received), Object.keys(listeners))
  for (const fd of Object.values(received)) fd.close()
  for (const fd of Object.values(listeners)) closeSync(fd)
  sender.close()
  receiver.close()
  closeSync(tcp.fd)
  await turn()
  t.is(openFds(), before)
})

test.serial('a new process takes the listeners from a 0600 socket in a 0700 directory, after checking who offers them', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const before = openFds()
  const tcp = await tcpListener()
  const path = join(temp.dir, 'private', 'supervisor.sock')
  const offer = offerListeners(path, { http: tcp.fd })
  t.is(statSync(join(temp.dir, 'private')).mode & 0o777, 0o700)
  t.is(statSync(path).mode & 0o777, 0o600)
  const handedOver = once(offer, 'handoff') as Promise<[Credentials]>
  const { listeners, acknowledge } = await takeListeners(path, { expect: ['http'], acknowledge: false })
  // Until acknowledged, the offering side still holds its copy.
  await acknowledge()
  const [peer] = await handedOver
  t.is(peer.pid, process.pid)
  const server = net.createServer((socket) => socket.end('taken over\n'))
  const { toNetServer } = await import('sendmsg')
  toNetServer(listeners.http!, server)
  await once(server, 'listening')
  t.is(await fetchLine({ host: '127.0.0.1', port: tcp.port }), 'taken over\n')
  offer.close()
  server.close()
  closeSync(tcp.fd)
  await once(server, 'close')
  await turn()
  t.throws(() => statSync(path), { code: 'ENOENT' }, 'closing the offer removes its socket file')
  t.is(openFds(), before)
})

const pidfdTest = linuxAtLeast(6, 5) ? test.serial : test.serial.skip
if (!linuxAtLeast(6, 5)) console.log(`pidfd handoff test skipped: it needs Linux 6.5 or later, this is ${process.platform} ${release()}`)

pidfdTest('allow is given a pidfd of the peer, on either side, valid during the call and closed after it', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'p', 'pidfd.sock')
  const seen: Array<{ pid: number; pidfdPid: number; cloexec: boolean | undefined; pidfd: ReceivedFd }> = []
  const allow = (peer: PeerIdentity): boolean => {
    seen.push({ pid: peer.pid, pidfdPid: pidfdPid(peer.pidfd!), cloexec: isCloexec(peer.pidfd!.fd), pidfd: peer.pidfd! })
    return peer.uid === process.getuid!()
  }
  const offer = offerListeners(path, { http: tcp.fd }, { allow })
  const handedOver = once(offer, 'handoff') as Promise<[Credentials]>
  const { listeners } = await takeListeners(path, { expect: ['http'], allow })
  const [peer] = await handedOver
  t.is(seen.length, 2, 'the taker checked the offerer, and the offer the taker')
  for (const check of seen) {
    t.is(check.pidfdPid, check.pid)
    t.is(check.pid, process.pid)
    t.true(check.cloexec)
    t.true(check.pidfd.released, 'closed once allow returned')
  }
  t.false('pidfd' in peer, "the offer's events get the credentials, not the closed pidfd")
  listeners.http!.close()
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('peers that are not allowed are refused, on either side', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const tcp = await tcpListener()
  const path = join(temp.dir, 'p', 'refusing.sock')
  const offer = offerListeners(path, { http: tcp.fd }, { allow: () => false })
  const refused = once(offer, 'refused') as Promise<[Credentials]>
  await t.throwsAsync(takeListeners(path))
  t.is((await refused)[0].pid, process.pid)
  offer.close()

  const fair = offerListeners(join(temp.dir, 'q', 'fair.sock'), { http: tcp.fd })
  await t.throwsAsync(takeListeners(join(temp.dir, 'q', 'fair.sock'), { allow: () => false }), { code: 'ERR_SENDMSG_HANDOFF', message: /not allowed/ })
  fair.close()
  closeSync(tcp.fd)
})

test.serial('an allow callback that throws refuses the peer; closing an offer hangs up on a peer that never asked', async (t) => {
  using temp = tempDir()
  const tcp = await tcpListener()
  const before = openFds()
  const failure = new Error('allow failed')
  const path = join(temp.dir, 'p', 'throwing.sock')
  const offer = offerListeners(path, { http: tcp.fd }, {
    allow: () => {
      throw failure
    },
  })
  const refused = once(offer, 'refused') as Promise<[Credentials, Error]>
  await t.throwsAsync(takeListeners(path))
  const [peer, error] = await refused
  t.is(peer.pid, process.pid)
  t.is(error, failure)
  offer.close()

  const quietPath = join(temp.dir, 'q', 'quiet.sock')
  const quiet = offerListeners(quietPath, { http: tcp.fd })
  quiet.on('rejected', () => t.fail('a peer cut off by close() is not reported as rejected'))
  const silent = await UnixSocket.connect(quietPath) // connects, never asks for the listeners
  silent.on('message', () => t.fail('nothing was asked for'))
  await turn()
  await turn()
  const hungUp = once(silent, 'close')
  quiet.close()
  await hungUp
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('an offer refuses a directory others may enter', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const open = join(temp.dir, 'open')
  mkdirSync(open, { mode: 0o755 })
  const tcp = await tcpListener()
  t.throws(() => offerListeners(join(open, 's.sock'), { http: tcp.fd }), { code: 'ERR_SENDMSG_UNSAFE_DIRECTORY' })
  t.throws(() => offerListeners(join(temp.dir, 'x', 's.sock'), { http: 0 }), { code: 'ERR_INVALID_ARG_VALUE', message: /not a listening socket/ })
  // An abstract name has no file, so no permissions: refused before anything is made.
  const before = openFds()
  t.throws(() => offerListeners('\0sendmsg-offer', { http: tcp.fd }), { code: 'ERR_INVALID_ARG_VALUE', message: /abstract name/ })
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

// A peer that breaks the protocol: each case sends something wrong to receiveListeners, which must
// refuse it with a clear error and close every descriptor it got.
const HEADER = (length: number, fds: number) => {
  const header = Buffer.alloc(6)
  header.writeUInt32BE(length, 0)
  header.writeUInt16BE(fds, 4)
  return header
}
const listenersFrame = (names: unknown, total = Array.isArray(names) ? names.length : 1) =>
  Buffer.from(JSON.stringify({ protocol: 'sendmsg-handoff', version: 1, type: 'listeners', names, total }))

const garbage: Array<[string, (socket: UnixSocket, fds: { listener: number; pipe: number }) => Promise<void>, RegExp]> = [
  ['a frame longer than allowed', (s) => s.send(HEADER(2 ** 31, 0)), /declares \d+ bytes/],
  ['a body that is not JSON', (s) => s.send([HEADER(5, 0), Buffer.from('{{{{{')]), /not JSON/],
  ['a frame of another protocol', (s) => s.send([HEADER(2, 0), Buffer.from('{}')]), /does not speak the handoff protocol/],
  [
    'more descriptors than the frame declares',
    (s, { listener }) => {
      const body = listenersFrame(['http'])
      return s.send([HEADER(body.length, 1), body], { fds: [listener, listener] })
    },
    /descriptors arrived/,
  ],
  [
    'more descriptors than names',
    (s, { listener }) => {
      const body = listenersFrame(['http'])
      return s.send([HEADER(body.length, 2), body], { fds: [listener, listener] })
    },
    /names 1 listeners but carried 2/,
  ],
  [
    'a descriptor of the wrong kind',
    (s, { pipe }) => {
      const body = listenersFrame(['http'])
      return s.send([HEADER(body.length, 1), body], { fds: [pipe] })
    },
    /not a listening socket/,
  ],
  [
    'a forged name',
    (s, { listener }) => {
      const body = listenersFrame(['../../etc/passwd'])
      return s.send([HEADER(body.length, 1), body], { fds: [listener] })
    },
    /not well formed/,
  ],
  [
    'a name it was not asked for',
    (s, { listener }) => {
      const body = listenersFrame(['admin'])
      return s.send([HEADER(body.length, 1), body], { fds: [listener] })
    },
    /unexpected listener 'admin'/,
  ],
  [
    'the same name twice',
    (s, { listener }) => {
      const body = listenersFrame(['http', 'http'])
      return s.send([HEADER(body.length, 2), body], { fds: [listener, listener] })
    },
    /sent twice/,
  ],
  [
    'descriptors with no frame at all',
    async (s, { pipe }) => {
      await s.send('x', { fds: [pipe] })
      await s.end()
    },
    /descriptors|frame/,
  ],
  ['a peer that leaves mid-frame', (s) => s.send(HEADER(100, 0)).then(() => s.end()), /in the middle of a frame/],
]

for (const [what, send, message] of garbage) {
  test.serial(`receiving listeners refuses ${what} and closes what it got`, async (t) => {
    const before = openFds()
    const tcp = await tcpListener()
    const [r, w] = pipe()
    const [evil, victim] = UnixSocket.pair('stream')
    const channel = new FrameChannel(victim)
    const refused = receiveListeners(channel, { expect: ['http'] })
    await send(evil, { listener: tcp.fd, pipe: r })
    const error = (await t.throwsAsync(refused)) as NodeError
    t.is(error.code, 'ERR_SENDMSG_HANDOFF')
    t.regex(error.message, message)
    evil.close()
    closeSync(tcp.fd)
    closeSync(r)
    closeSync(w)
    await turn()
    t.is(openFds(), before, 'every descriptor the peer sent was closed')
  })
}

test.serial('an offer that gets garbage from one peer rejects it and keeps serving the next', async (t) => {
  using temp = tempDir('sendmsg-handoff-')
  const before = openFds()
  const tcp = await tcpListener()
  const path = join(temp.dir, 'o', 'offer.sock')
  const offer = offerListeners(path, { http: tcp.fd })
  const rejected = once(offer, 'rejected') as Promise<[NodeError]>
  const [r, w] = pipe()
  writeSync(w, 'x')
  const evil = await UnixSocket.connect(path)
  const body = Buffer.from(JSON.stringify({ protocol: 'sendmsg-handoff', version: 1, type: 'take' }))
  if (linuxAtLeast(6, 16)) {
    // The offer's socket refuses descriptors: the push fails in the sender and nothing arrives,
    // so this peer's garbage is a frame that declares a descriptor it could not bring.
    await t.throwsAsync(evil.send([HEADER(body.length, 1), body], { fds: [r] }), { code: 'EPERM' })
    await evil.send([HEADER(body.length, 1), body])
    const [error] = await rejected
    t.regex(error.message, /declares 1 descriptors but 0 arrived/)
  } else {
    await evil.send([HEADER(body.length, 1), body], { fds: [r] })
    const [error] = await rejected
    t.regex(error.message, /must carry no descriptors/)
  }
  evil.close()
  const handedOver = once(offer, 'handoff')
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  await handedOver
  t.truthy(listeners.http)
  listeners.http!.close()
  offer.close()
  closeSync(tcp.fd)
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})
