// The handoff against peers and neighbours that mean harm: a socket directory that is a link
// someone else owns, error texts made too long to send, broken framing, frames without end, peers
// that say nothing, and callers that give up (timeout, AbortSignal). Every test checks that no
// descriptor is left open. Serial: the tests count open descriptors.
import test from 'ava'
import { once } from 'node:events'
import { spawnSync } from 'node:child_process'
import fs, { chmodSync, chownSync, closeSync, lchownSync, lstatSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { release } from 'node:os'
import { join } from 'node:path'

import {
  FrameChannel,
  offerListeners,
  pipe,
  receiveListeners,
  socketpair,
  takeListeners,
  UnixServer,
  UnixSocket,
  workerListeners,
  type NodeError,
} from 'sendmsg'

import { linuxAtLeast, openFds, tcpListener, tempDir, turn } from './helpers.ts'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

/** `promise`, or a failure after `ms`: what today's code never does must not hang the run. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)))
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

const HEADER = (length: number, fds: number) => {
  const header = Buffer.alloc(6)
  header.writeUInt32BE(length, 0)
  header.writeUInt16BE(fds, 4)
  return header
}
const handoffBody = (fields: Record<string, unknown>) => Buffer.from(JSON.stringify({ protocol: 'sendmsg-handoff', version: 1, ...fields }))

/** Everything `socket` receives until the other side hangs up, parsed as frames (descriptors closed). */
function framesUntilClosed(socket: UnixSocket): Promise<Array<{ value: Record<string, unknown>; size: number }>> {
  const chunks: Buffer[] = []
  socket.on('message', (message) => {
    chunks.push(Buffer.from(message.data))
    for (const fd of message.fds) fd.close()
  })
  return new Promise((resolve) => {
    const done = () => {
      let buffer = Buffer.concat(chunks)
      const frames = []
      while (buffer.length >= 6 && buffer.length >= 6 + buffer.readUInt32BE(0)) {
        const size = buffer.readUInt32BE(0)
        frames.push({ value: JSON.parse(buffer.toString('utf8', 6, 6 + size)) as Record<string, unknown>, size })
        buffer = buffer.subarray(6 + size)
      }
      resolve(frames)
    }
    socket.once('end', done)
    socket.once('close', done)
  })
}

// 1. The socket directory -------------------------------------------------------------------

test.serial('an offer refuses a socket directory that is a symbolic link, even one into a private directory of ours', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  // /shared/app -> /private: `shared` and the link belong to another user, who could re-point it.
  const shared = join(temp.dir, 'shared')
  const target = join(temp.dir, 'private')
  mkdirSync(shared, { mode: 0o755 })
  mkdirSync(target, { mode: 0o700 })
  const link = join(shared, 'app')
  symlinkSync(target, link)
  if (isRoot) {
    chownSync(shared, NOBODY, NOBODY)
    lchownSync(link, NOBODY, NOBODY)
  }
  const error = t.throws(() => offerListeners(join(link, 'h.sock'), { http: tcp }), { code: 'ERR_SENDMSG_UNSAFE_DIRECTORY', message: /symbolic link/ })
  if (isRoot) t.regex(error!.message, new RegExp(`${NOBODY}`))
  t.deepEqual(readdirSync(target), [], 'nothing was bound through the link')

  // A link of our own is refused the same way: we never follow one there.
  const ours = join(temp.dir, 'ours')
  symlinkSync(target, ours)
  t.throws(() => offerListeners(join(ours, 'h.sock'), { http: tcp }), { code: 'ERR_SENDMSG_UNSAFE_DIRECTORY', message: /symbolic link/ })
  t.deepEqual(readdirSync(target), [])
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

test.serial('an offer refuses a path through a link another user made, and accepts one through a link of its own', async (t) => {
  if (!isRoot) return t.pass('needs root to act as another user')
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  // The other user needs to reach `shared`; our private target stays 0700.
  chmodSync(temp.dir, 0o755)
  const shared = join(temp.dir, 'shared')
  const target = join(temp.dir, 'private')
  mkdirSync(shared, { mode: 0o755 })
  mkdirSync(target, { mode: 0o700 })
  chownSync(shared, NOBODY, NOBODY)
  // As that user, with their own shell: /shared/app -> our private directory.
  const link = join(shared, 'app')
  const made = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'ln', '-sfn', target, link], { encoding: 'utf8' })
  t.is(made.status, 0, made.stderr)
  t.is(lstatSync(link).uid, NOBODY)
  // Deeper than the link: `sub` would be made inside the target, and the link re-pointed later.
  t.throws(() => offerListeners(join(link, 'sub', 'h.sock'), { http: tcp }), {
    code: 'ERR_SENDMSG_UNSAFE_DIRECTORY',
    message: new RegExp(`symbolic link of user ${NOBODY}`),
  })
  t.deepEqual(readdirSync(target), [], 'nothing was made through the link')

  const ours = join(temp.dir, 'ours')
  symlinkSync(target, ours)
  const offer = offerListeners(join(ours, 'sub', 'h.sock'), { http: tcp })
  t.is(lstatSync(join(target, 'sub', 'h.sock')).mode & 0o777, 0o600)
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

test.serial('the offer socket is born mode 0600: no chmod by path after the bind, and the umask is restored', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'run', 'h.sock')
  const chmods: string[] = []
  const saved = { chmodSync: fs.chmodSync, chmod: fs.chmod, lchmodSync: fs.lchmodSync }
  fs.chmodSync = ((target: fs.PathLike, mode: fs.Mode) => {
    chmods.push(String(target))
    return saved.chmodSync(target, mode)
  }) as typeof fs.chmodSync
  fs.chmod = ((target: fs.PathLike, ...rest: unknown[]) => {
    chmods.push(String(target))
    return (saved.chmod as (...args: unknown[]) => void)(target, ...rest)
  }) as typeof fs.chmod
  syncBuiltinESMExports()
  // With umask 0 a plain bind makes the file 0777: only the offer's own care makes it 0600.
  const umask = process.umask(0)
  let offer
  try {
    offer = offerListeners(path, { http: tcp })
    t.is(process.umask(umask), 0, 'the offer put the umask back')
  } finally {
    process.umask(umask)
    Object.assign(fs, saved)
    syncBuiltinESMExports()
  }
  t.deepEqual(chmods, [], 'no path was chmod-ed')
  t.is(lstatSync(path).mode & 0o777, 0o600)
  t.true(lstatSync(path).isSocket())
  t.is(statSync(join(temp.dir, 'run')).mode & 0o777, 0o700)
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

// 2. Error texts too long to send -----------------------------------------------------------

test.serial('an offer refusing a peer whose error text would not fit a frame cuts it, tells the peer, and does not crash', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  const path = join(temp.dir, 'o', 'h.sock')
  const offer = offerListeners(path, { http: tcp })
  const rejected = once(offer, 'rejected') as Promise<[NodeError]>
  const evil = await UnixSocket.connect(path)
  const answers = framesUntilClosed(evil)
  // A 'type' that fills the 64 KiB frame: the refusal quotes it, which makes it longer still.
  const body = handoffBody({ type: 'x'.repeat(65_000) })
  t.true(body.length <= 64 * 1024)
  await evil.send([HEADER(body.length, 0), body])
  const [error] = await within(rejected, 5000, "the offer's 'rejected' event")
  t.is(error.code, 'ERR_SENDMSG_HANDOFF')
  t.regex(error.message, /expected a 'take' frame/)
  const frames = await answers
  t.is(frames.length, 1)
  t.is(frames[0]!.value.type, 'error')
  t.regex(String(frames[0]!.value.message), /^expected a 'take' frame, got 'x+…$/)
  t.true(frames[0]!.size <= 64 * 1024)
  evil.close()
  offer.close()
  await turn()
  process.off('unhandledRejection', onUnhandled)
  t.deepEqual(unhandled, [])
  t.is(openFds(), before)
  closeSync(tcp)
})

test.serial('receiving listeners refuses with ERR_SENDMSG_HANDOFF and closes its channel when the error text would not fit a frame', async (t) => {
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const [evil, victim] = UnixSocket.pair('stream')
  const channel = new FrameChannel(victim, { maxFrameSize: 64 * 1024 })
  const refused = receiveListeners(channel, { expect: ['http'] })
  const answers = framesUntilClosed(evil)
  // The refusal quotes the name as JSON, and the frame escapes it again: '"' becomes 4 bytes.
  const body = handoffBody({ type: 'listeners', names: ['"'.repeat(30_000)], total: 1 })
  await evil.send([HEADER(body.length, 1), body], { fds: [tcp] })
  const error = (await within(t.throwsAsync(refused), 5000, 'the refusal')) as NodeError
  t.is(error.code, 'ERR_SENDMSG_HANDOFF')
  t.regex(error.message, /not well formed/)
  const frames = await within(answers, 5000, 'the channel closing')
  t.is(frames.length, 1)
  t.regex(String(frames[0]!.value.message), /^a listener name is not well formed: ".*…$/)
  t.true(victim.closed, 'the channel was closed')
  evil.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

// 3. Framing errors are handoff refusals, and the peer is told ------------------------------

const brokenFraming: Array<[string, (socket: UnixSocket, fd: number) => Promise<void>, RegExp, boolean]> = [
  ['a 100 MiB length prefix', (s) => s.send(HEADER(100 * 1024 * 1024, 0)), /declares 104857600 bytes/, true],
  ['a body that is not JSON', (s) => s.send([HEADER(5, 0), Buffer.from('{{{{{')]), /not JSON/, true],
  [
    'surplus descriptors',
    (s, fd) => {
      const body = handoffBody({ type: 'listeners', names: ['http'], total: 1 })
      return s.send([HEADER(body.length, 1), body], { fds: [fd, fd, fd] })
    },
    /descriptors arrived without a frame/,
    true,
  ],
  // The peer is gone for reading: only the code and the cause can be checked.
  ['a stream ending mid-frame', (s) => s.send(HEADER(100, 0)).then(() => s.end()), /in the middle of a frame/, false],
]

for (const [what, send, cause, told] of brokenFraming) {
  test.serial(`receiving listeners refuses ${what} with ERR_SENDMSG_HANDOFF (the frame error as cause)${told ? ' and tells the peer' : ''}`, async (t) => {
    const tcp = (await tcpListener()).fd
    const before = openFds()
    const [evil, victim] = UnixSocket.pair('stream')
    const refused = receiveListeners(new FrameChannel(victim), { expect: ['http'] })
    const answers = framesUntilClosed(evil)
    await send(evil, tcp)
    const error = (await t.throwsAsync(refused)) as NodeError & { cause: NodeError }
    t.is(error.code, 'ERR_SENDMSG_HANDOFF')
    t.is(error.cause?.code, 'ERR_SENDMSG_FRAME')
    t.regex(error.cause.message, cause)
    t.regex(error.message, cause)
    const frames = await within(answers, 5000, 'the channel closing')
    if (told) {
      t.is(frames.length, 1)
      t.is(frames[0]!.value.type, 'error')
      t.regex(String(frames[0]!.value.message), cause)
    }
    evil.close()
    await turn()
    t.is(openFds(), before, 'every descriptor the peer sent was closed')
    closeSync(tcp)
  })
}

test.serial('an offer refuses broken framing with ERR_SENDMSG_HANDOFF and tells the peer why', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'o', 'h.sock')
  const offer = offerListeners(path, { http: tcp })
  const rejected = once(offer, 'rejected') as Promise<[NodeError & { cause: NodeError }]>
  const evil = await UnixSocket.connect(path)
  const answers = framesUntilClosed(evil)
  await evil.send(HEADER(100 * 1024 * 1024, 0))
  const [error] = await within(rejected, 5000, "the offer's 'rejected' event")
  t.is(error.code, 'ERR_SENDMSG_HANDOFF')
  t.is(error.cause.code, 'ERR_SENDMSG_FRAME')
  const frames = await answers
  t.is(frames.length, 1)
  t.regex(String(frames[0]!.value.message), /declares 104857600 bytes/)
  evil.close()
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

// 4. Frames without end ---------------------------------------------------------------------

const badTotals: Array<[string, Record<string, unknown>, RegExp]> = [
  ['frames with no names in a handoff of one', { names: [], total: 1 }, /no listeners in a handoff that announced some/],
  ['a total past the maximum', { names: [], total: 1e9 }, /proper total/],
  ['a total that is not an integer', { names: [], total: 1.5 }, /proper total/],
  ['a negative total', { names: [], total: -1 }, /proper total/],
  ['names past the total', { names: ['a', 'b'], total: 1 }, /more listeners than the 1 announced/],
]

for (const [what, fields, message] of badTotals) {
  test.serial(`receiving listeners refuses ${what} at the first such frame`, async (t) => {
    const tcp = (await tcpListener()).fd
    const before = openFds()
    const [evil, victim] = UnixSocket.pair('stream')
    const refused = receiveListeners(new FrameChannel(victim))
    const body = handoffBody({ type: 'listeners', ...fields })
    const fds = (fields.names as string[]).map(() => tcp)
    // Five times: today's code waited for ever on the empty ones.
    for (let i = 0; i < 5; i++) await evil.send([HEADER(body.length, fds.length), body], fds.length > 0 ? { fds } : undefined).catch(() => {})
    const error = (await within(t.throwsAsync(refused), 3000, 'the refusal')) as NodeError
    t.is(error.code, 'ERR_SENDMSG_HANDOFF')
    t.regex(error.message, message)
    evil.close()
    await turn()
    t.is(openFds(), before)
    closeSync(tcp)
  })
}

test.serial('an empty handoff (total 0) is one frame, and still works', async (t) => {
  const before = openFds()
  const [evil, victim] = UnixSocket.pair('stream')
  const channel = new FrameChannel(victim)
  const received = receiveListeners(channel)
  const body = handoffBody({ type: 'listeners', names: [], total: 0 })
  await evil.send([HEADER(body.length, 0), body])
  t.deepEqual(Object.keys((await received).listeners), [])
  channel.close()
  evil.close()
  await turn()
  t.is(openFds(), before)
})

// 6. Peers that say nothing, and callers that give up -----------------------------------------

test.serial('an offer hangs up on an allowed peer that asks for nothing within the handshake timeout', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'o', 'h.sock')
  const offer = offerListeners(path, { http: tcp }, { handshakeTimeout: 100 })
  const rejected = once(offer, 'rejected') as Promise<[NodeError]>
  const silent = await UnixSocket.connect(path)
  const answers = framesUntilClosed(silent)
  const started = Date.now()
  const [error] = await within(rejected, 3000, "the offer's 'rejected' event")
  t.is(error.code, 'ERR_SENDMSG_TIMEOUT')
  t.regex(error.message, /within 100 ms/)
  t.true(Date.now() - started >= 90)
  const frames = await answers
  t.is(frames[0]?.value.type, 'error')
  // The offer still serves the next peer.
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  listeners.http!.close()
  silent.close()
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

/** A server at `path` that accepts and says nothing: an offer that never answers. */
function mute(path: string): { server: UnixServer; accepted: UnixSocket[] } {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 })
  const server = UnixServer.listen(path)
  const accepted: UnixSocket[] = []
  server.on('connection', (socket: UnixSocket) => accepted.push(socket))
  return { server, accepted }
}

test.serial('takeListeners gives up after its timeout, or when its signal aborts, closing what it opened', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const path = join(temp.dir, 'm', 'mute.sock')
  const { server, accepted } = mute(path)
  const before = openFds()
  const timedOut = (await t.throwsAsync(within(takeListeners(path, { timeout: 100 }), 3000, 'takeListeners'))) as NodeError
  t.is(timedOut.code, 'ERR_SENDMSG_TIMEOUT')
  t.regex(timedOut.message, /within 100 ms/)

  const controller = new AbortController()
  const taking = takeListeners(path, { signal: controller.signal })
  setTimeout(() => controller.abort(), 50)
  const aborted = (await t.throwsAsync(within(taking, 3000, 'takeListeners'))) as NodeError
  t.is(aborted.code, 'ABORT_ERR')
  t.is(aborted.name, 'AbortError')

  const connections = accepted.length
  await t.throwsAsync(takeListeners(path, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR', name: 'AbortError' })
  await turn()
  t.is(accepted.length, connections, 'an aborted signal connects to nothing')
  for (const socket of accepted) socket.close()
  await turn()
  t.is(openFds(), before)
  server.close()
})

test.serial('workerListeners gives up after its timeout, or when its signal aborts, and closes its channel', async (t) => {
  const before = openFds()
  const [supervisor, worker] = socketpair('stream')
  const timedOut = (await t.throwsAsync(within(workerListeners({ fd: worker, timeout: 100 }), 3000, 'workerListeners'))) as NodeError
  t.is(timedOut.code, 'ERR_SENDMSG_TIMEOUT')
  t.throws(() => fs.fstatSync(worker), { code: 'EBADF' }, 'the channel is closed')

  const [supervisor2, worker2] = socketpair('stream')
  const controller = new AbortController()
  const waiting = workerListeners({ fd: worker2, signal: controller.signal })
  setTimeout(() => controller.abort(new Error('shutting down')), 50)
  const aborted = (await t.throwsAsync(within(waiting, 3000, 'workerListeners'))) as NodeError & { cause: Error }
  t.is(aborted.code, 'ABORT_ERR')
  t.is(aborted.cause.message, 'shutting down')
  closeSync(supervisor)
  closeSync(supervisor2)
  await turn()
  t.is(openFds(), before)
})

test.serial('an offer ends with an error after its timeout or when its signal aborts; an aborted signal makes none', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'o', 'h.sock')
  const offer = offerListeners(path, { http: tcp }, { timeout: 100 })
  const [timedOut] = (await within(once(offer, 'error'), 3000, "the offer's 'error'")) as [NodeError]
  t.is(timedOut.code, 'ERR_SENDMSG_TIMEOUT')
  t.throws(() => lstatSync(path), { code: 'ENOENT' }, 'the offer is closed')

  const controller = new AbortController()
  const aborted = offerListeners(path, { http: tcp }, { signal: controller.signal })
  const ended = once(aborted, 'error')
  controller.abort()
  const [error] = (await ended) as [NodeError]
  t.is(error.code, 'ABORT_ERR')
  t.throws(() => lstatSync(path), { code: 'ENOENT' })

  t.throws(() => offerListeners(path, { http: tcp }, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR', name: 'AbortError' })
  t.throws(() => lstatSync(path), { code: 'ENOENT' }, 'nothing was made')

  // A handoff in time clears the timeout.
  const inTime = offerListeners(path, { http: tcp }, { timeout: 300 })
  inTime.on('error', () => t.fail('the timeout was cleared by the handoff'))
  const { listeners } = await takeListeners(path)
  listeners.http!.close()
  await new Promise((resolve) => setTimeout(resolve, 400))
  inTime.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

test.serial('unknown option names are refused with ERR_INVALID_ARG_VALUE', async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'o', 'h.sock')
  const unknown = { code: 'ERR_INVALID_ARG_VALUE', message: /unknown option 'timout'/ }
  t.throws(() => offerListeners(path, { http: tcp }, { timout: 5 } as never), unknown)
  await t.throwsAsync(takeListeners(path, { timout: 5 } as never), unknown)
  // The worker's channel is taken over first, and closed with the refusal.
  const [supervisor, worker] = socketpair('stream')
  await t.throwsAsync(workerListeners({ fd: worker, timout: 5 } as never), unknown)
  t.throws(() => fs.fstatSync(worker), { code: 'EBADF' })
  closeSync(supervisor)
  const [a, b] = UnixSocket.pair('stream')
  const channel = new FrameChannel(a)
  await t.throwsAsync(receiveListeners(channel, { timout: 5 } as never), unknown)
  t.throws(() => channel.next({ timout: 5 } as never), unknown)
  t.throws(() => new FrameChannel(b, { maxFramesize: 5 } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /unknown option 'maxFramesize'/ })
  await t.throwsAsync(takeListeners(path, { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(takeListeners(path, { signal: 'no' as never }), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => lstatSync(path), { code: 'ENOENT' }, 'nothing was made')
  channel.close()
  b.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})

// Descriptors pushed at the supervisor ---------------------------------------------------------

const passRightsTest = linuxAtLeast(6, 16) ? test.serial : test.serial.skip
if (!linuxAtLeast(6, 16)) console.log(`SO_PASSRIGHTS handoff test skipped: it needs Linux 6.16 or later, this is ${process.platform} ${release()}`)

passRightsTest("a peer of an offer that pushes descriptors at the supervisor gets EPERM, and the supervisor's descriptor count does not grow", async (t) => {
  using temp = tempDir('sendmsg-handoff-sec-')
  const tcp = (await tcpListener()).fd
  const before = openFds()
  const path = join(temp.dir, 'o', 'h.sock')
  const offer = offerListeners(path, { http: tcp })
  // A peer whose every send was refused has said nothing: its hanging up is a silent one (as a
  // liveness probe's), not a 'rejected' peer.
  offer.on('rejected', (error) => t.fail(`a peer that said nothing is not rejected: ${error.message}`))
  // A peer of the same user (so allowed) that sends a frame with as many descriptors as fit.
  const pusher = await UnixSocket.connect(path)
  const [r, w] = pipe()
  await turn()
  await turn()
  const withPeer = openFds()
  const body = handoffBody({ type: 'take' })
  const pushed = Array.from({ length: 253 }, (_, i) => (i % 2 === 0 ? r : w))
  const refused = await t.throwsAsync(pusher.send(Buffer.concat([HEADER(body.length, pushed.length), body]), { fds: pushed }), { code: 'EPERM' })
  t.is((refused as (NodeError & { syscall?: string }) | undefined)?.syscall, 'sendmsg')
  await t.throwsAsync(pusher.send(Buffer.concat([HEADER(body.length, 1), body]), { fds: [r] }), { code: 'EPERM' })
  await turn()
  t.is(openFds(), withPeer, 'no descriptor reached the supervisor')
  pusher.close()
  // The offer still serves an honest taker.
  const { listeners } = await within(takeListeners(path, { expect: ['http'] }), 10_000, 'an honest taker')
  listeners.http.close()
  offer.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
  closeSync(tcp)
})
