// Pidfds of the peer and of each sender (Linux 6.5+: SO_PEERPIDFD, SO_PASSPIDFD/SCM_PIDFD), and
// sockets that refuse descriptors (Linux 6.16+: SO_PASSRIGHTS). Each test needs a kernel that has
// the feature and is skipped, saying so, on an older one; each counts the descriptors open before
// and after. Serial: the tests count open descriptors.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { release } from 'node:os'
import { join } from 'node:path'

import {
  closeFd,
  dup,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  Message,
  passPidfd,
  passRights,
  peerPidfd,
  pidfdFromAncillary,
  pidfdPid,
  pipe,
  ReceivedFd,
  recvmsg,
  scmRights,
  sendmsg,
  socketpair,
  UnixServer,
  UnixSocket,
  type NodeError,
} from 'sendmsg'

import { closeAll, fdinfoPid, isCloexec, linuxAtLeast, nextMessage, openFds, tempDir, turn } from './helpers.ts'

const hasPidfds = linuxAtLeast(6, 5)
const hasPassRights = linuxAtLeast(6, 16)
/** From 6.18 the kernel makes a pidfd of a peer that has exited; before, SO_PEERPIDFD is EINVAL. */
const pidfdsOfExitedPeers = linuxAtLeast(6, 18)
const pidfdTest = hasPidfds ? test.serial : test.serial.skip
const passRightsTest = hasPassRights ? test.serial : test.serial.skip
const unsupportedTest = process.platform === 'linux' && hasPassRights ? test.serial.skip : test.serial
if (!hasPidfds) console.log(`pidfd tests skipped: they need Linux 6.5 or later, this is ${process.platform} ${release()}`)
if (!hasPassRights) console.log(`SO_PASSRIGHTS tests skipped: they need Linux 6.16 or later, this is ${process.platform} ${release()}`)

/** A process that connects to `path` and waits until its stdin closes (or exits at once). */
function connectingChild(path: string, exitAtOnce: boolean) {
  const stay = exitAtOnce ? "process.exit(0)" : "process.stdin.on('end', () => process.exit(0)).resume()"
  return spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(path)}).on('connect', () => { ${stay} })`], {
    stdio: ['pipe', 'ignore', 'inherit'],
  })
}

// 1. The peer's pidfd (SO_PEERPIDFD) ---------------------------------------------------------

pidfdTest('peerPidfd gives a close-on-exec pidfd of the process that connected', async (t) => {
  using temp = tempDir('sendmsg-pidfd-')
  const before = openFds()
  const server = UnixServer.listen(join(temp.dir, 's.sock'))
  const accepted = once(server, 'connection')
  const child = connectingChild(join(temp.dir, 's.sock'), false)
  const [socket] = (await accepted) as [UnixSocket]
  {
    using pidfd = peerPidfd(socket)
    t.true(pidfd instanceof ReceivedFd)
    // The kernel's own word on which process the pidfd is, and the package's reading of it.
    t.is(fdinfoPid(pidfd.fd), child.pid!)
    t.is(pidfdPid(pidfd), child.pid!)
    t.is(isCloexec(pidfd.fd), true)
  }
  child.stdin!.end()
  await once(child, 'exit')
  socket.close()
  server.close()
  await turn()
  t.is(openFds(), before)
})

pidfdTest('a peer that has exited: a pidfd that says so (6.18+), or ERR_SENDMSG_PEER_EXITED before', async (t) => {
  using temp = tempDir('sendmsg-pidfd-')
  const before = openFds()
  const server = UnixServer.listen(join(temp.dir, 's.sock'))
  const accepted = once(server, 'connection')
  const child = connectingChild(join(temp.dir, 's.sock'), true)
  const [socket] = (await accepted) as [UnixSocket]
  await once(child, 'exit')
  if (pidfdsOfExitedPeers) {
    const pidfd = peerPidfd(socket)
    t.is(fdinfoPid(pidfd.fd), -1)
    t.is(pidfdPid(pidfd), -1)
    pidfd.close()
  } else {
    t.log(`Linux ${release()}: an exited peer has no pidfd before 6.18`)
    const error = t.throws(() => peerPidfd(socket), { code: 'ERR_SENDMSG_PEER_EXITED', message: /has exited/ }) as NodeError & { errno: number; syscall: string }
    t.is(error.syscall, 'getsockopt')
    t.is(error.errno, -22)
  }
  socket.close()
  server.close()
  await turn()
  t.is(openFds(), before)
})

pidfdTest('peerPidfd of what has no peer, or is no socket, is the kernel\'s refusal; bad arguments are refused first', (t) => {
  const before = openFds()
  const [r, w] = pipe()
  t.throws(() => peerPidfd(r), { code: 'ENOTSOCK' })
  t.throws(() => pidfdPid(r), { code: 'EBADF' })
  t.throws(() => peerPidfd('3' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => pidfdPid(-1), { code: 'ERR_OUT_OF_RANGE' })
  closeAll(r, w)
  t.is(openFds(), before)
})

// 2. The sender's pidfd with every message (SO_PASSPIDFD, SCM_PIDFD) --------------------------

pidfdTest('recvmsg on a socket with passPidfd returns the sender\'s pidfd as an SCM_PIDFD item, the caller\'s to close', (t) => {
  const before = openFds()
  const [x, y] = socketpair('dgram')
  const [r, w] = pipe()
  passPidfd(y)
  sendmsg(x, 'one', [scmRights([r])])
  const message = recvmsg(y)
  const pidfd = pidfdFromAncillary(message.ancillary)
  t.is(typeof pidfd, 'number')
  t.is(fdinfoPid(pidfd!), process.pid)
  t.is(isCloexec(pidfd!), true)
  // Twisted's contract: every descriptor recvmsg returns is the caller's; these are two.
  const fds = message.ancillary.flatMap(([, , data]) => (data.length === 4 ? [data.readInt32LE(0)] : []))
  t.is(fds.length, 2)
  for (const fd of fds) closeFd(fd)
  // A control buffer with no room left for the pidfd: MSG_CTRUNC, and the kernel installs none.
  const withSockets = openFds()
  sendmsg(x, 'cut', [scmRights([r])])
  const cut = recvmsg(y, 64, 4)
  t.true((cut.flags & MSG_CTRUNC) !== 0)
  t.is(pidfdFromAncillary(cut.ancillary), undefined)
  t.is(openFds(), withSockets + 1)
  closeFd(cut.ancillary[0]![2].readInt32LE(0))
  passPidfd(y, false)
  sendmsg(x, 'two')
  t.is(pidfdFromAncillary(recvmsg(y).ancillary), undefined)
  closeAll(x, y, r, w)
  t.is(openFds(), before)
})

pidfdTest('message.pidfd is the sender\'s pidfd, kept apart from message.fds, and closed with the message when nobody claims it', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket', { passPidfd: true })
  const [r, w] = pipe()
  const withSockets = openFds()

  // Unclaimed: closed once the delivery ends, like the descriptors the sender sent.
  const first = nextMessage(b)
  await a.send('one', { fds: [r] })
  const message = await first
  t.is(message.fds.length, 1)
  t.true(message.pidfd instanceof ReceivedFd)
  t.is(pidfdPid(message.pidfd!), process.pid)
  t.is(isCloexec(message.pidfd!.fd), true)
  t.is(openFds(), withSockets + 2)
  await turn()
  t.true(message.pidfd!.released)
  t.is(openFds(), withSockets)

  // Taken: the caller's, and nothing else closes it.
  const second = nextMessage(b)
  await a.send('two')
  const taken = (await second).pidfd!.take()
  await turn()
  t.is(fdinfoPid(taken), process.pid)
  closeFd(taken)
  t.is(openFds(), withSockets)

  // A message of one's own making owns the pidfd given, and a socket without passPidfd gives none.
  const [c, d] = UnixSocket.pair('seqpacket')
  const third = nextMessage(d)
  await c.send('three')
  t.is((await third).pidfd, undefined)
  c.close()
  d.close()
  t.throws(() => new Message(Buffer.alloc(0), [], [], 0, undefined, 3 as never), { code: 'ERR_INVALID_ARG_TYPE' })

  a.close()
  b.close()
  closeAll(r, w)
  await turn()
  t.is(openFds(), before)
})

pidfdTest('a message kept for later (its socket paused mid-batch) keeps its pidfd until delivered, then closes it', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram', { passPidfd: true })
  const withSockets = openFds()
  const seen: Message[] = []
  b.on('message', (message) => {
    seen.push(message)
    // The first message pauses the socket: the second, read in the same batch, is kept for later.
    if (seen.length === 1) b.pause()
  })
  await a.send('first')
  await a.send('second')
  while (seen.length < 1) await turn()
  await turn()
  t.is(seen.length, 1)
  t.true(seen[0]!.pidfd!.released)
  // The kept message's pidfd is held while it waits. With the poller thread (SENDMSG_REACTOR=thread)
  // a task reads one message, so the second waits in the kernel instead, with no pidfd made yet.
  const readTogether = process.env.SENDMSG_REACTOR !== 'thread'
  t.is(openFds(), withSockets + (readTogether ? 1 : 0))
  b.resume()
  while (seen.length < 2) await turn()
  t.is(pidfdPid(seen[1]!.pidfd!), process.pid)
  await turn()
  t.true(seen[1]!.pidfd!.released)
  t.is(openFds(), withSockets)
  a.close()
  b.close()
  await turn()
  t.is(openFds(), before)
})

// 3. Sockets that refuse descriptors (SO_PASSRIGHTS) ------------------------------------------

passRightsTest('passRights(socket, false): a sender of descriptors gets EPERM, none arrives, and data still does', (t) => {
  const before = openFds()
  const [x, y] = socketpair('seqpacket')
  const [r, w] = pipe()
  passRights(y, false)
  const error = t.throws(() => sendmsg(x, 'fds', [scmRights([r, w])]), { code: 'EPERM' }) as NodeError & { syscall: string }
  t.is(error.syscall, 'sendmsg')
  t.throws(() => recvmsg(y, 64, 64, MSG_DONTWAIT), { code: 'EAGAIN' })
  sendmsg(x, 'data')
  const message = recvmsg(y)
  t.is(message.data.toString(), 'data')
  t.deepEqual(message.ancillary, [])
  passRights(y, true)
  sendmsg(x, 'fds', [scmRights([r])])
  const fds = recvmsg(y).ancillary.map(([, , data]) => data.readInt32LE(0))
  t.is(fds.length, 1)
  closeAll(...fds, x, y, r, w)
  t.throws(() => passRights(x, 'no' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})

passRightsTest('a UnixSocket with passRights: false makes a send with descriptors reject with EPERM', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket', { passRights: false })
  const [r, w] = pipe()
  await t.throwsAsync(a.send('fds', { fds: [r] }), { code: 'EPERM' })
  const arrived = nextMessage(b)
  await a.send('data')
  const message = await arrived
  t.is(message.data.toString(), 'data')
  t.is(message.fds.length, 0)
  a.close()
  b.close()
  closeAll(r, w)
  await turn()
  t.is(openFds(), before)
})

passRightsTest('a server with passRights: false refuses descriptors on every connection, from before it is accepted', async (t) => {
  using temp = tempDir('sendmsg-rights-')
  const before = openFds()
  const path = join(temp.dir, 's.sock')
  const server = UnixServer.listen(path, { passRights: false })
  await once(server, 'listening')
  const [r, w] = pipe()
  // Not accepted yet (no 'connection' listener): the connection waits in the backlog.
  const client = await UnixSocket.connect(path)
  await t.throwsAsync(client.send('early', { fds: [r] }), { code: 'EPERM' })
  const accepted = once(server, 'connection')
  const [socket] = (await accepted) as [UnixSocket]
  await t.throwsAsync(client.send('late', { fds: [r] }), { code: 'EPERM' })
  const arrived = nextMessage(socket)
  await client.send('data')
  const message = await arrived
  t.is(message.data.toString(), 'data')
  t.is(message.fds.length, 0)
  client.close()
  socket.close()
  server.close()
  closeAll(r, w)
  await turn()
  t.is(openFds(), before)
})

passRightsTest('UnixServer.from with passRights: false sets it on the adopted listener: connections made after refuse descriptors', async (t) => {
  const before = openFds()
  // A listening socket made elsewhere (here: another server, closed), on an abstract name, which
  // closing that server does not remove.
  const path = `\0sendmsg-rights-${process.pid}`
  const first = UnixServer.listen(path)
  await once(first, 'listening')
  const listener = dup(first)
  first.close()
  const server = UnixServer.from(listener, { passRights: false })
  const [r, w] = pipe()
  const client = await UnixSocket.connect(path)
  await t.throwsAsync(client.send('early', { fds: [r] }), { code: 'EPERM' })
  client.close()
  server.close()
  closeAll(r, w)
  await turn()
  t.is(openFds(), before)
})

test.serial('the options are checked before anything is made', (t) => {
  const before = openFds()
  t.throws(() => UnixSocket.pair('stream', { passPidfd: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.passPidfd/ })
  t.throws(() => UnixSocket.pair('stream', { passRights: 'no' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.passRights/ })
  t.throws(() => passPidfd(0, 'yes' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})

unsupportedTest('where the kernel lacks them, the options are ERR_SENDMSG_UNSUPPORTED and nothing leaks', (t) => {
  const before = openFds()
  if (!hasPidfds) {
    t.throws(() => UnixSocket.pair('stream', { passPidfd: true }), { code: 'ERR_SENDMSG_UNSUPPORTED', message: /SO_PASSPIDFD .* Linux 6\.5/ })
    const [x, y] = socketpair('stream')
    t.throws(() => peerPidfd(x), { code: 'ERR_SENDMSG_UNSUPPORTED', message: /SO_PEERPIDFD/ })
    closeAll(x, y)
  }
  t.throws(() => UnixSocket.pair('stream', { passRights: false }), { code: 'ERR_SENDMSG_UNSUPPORTED', message: /SO_PASSRIGHTS .* Linux 6\.16/ })
  t.is(openFds(), before)
})
