// Handing listening sockets from one process to another without refusing a connection: to a worker
// a supervisor spawns, or to an unrelated process (the next version of the supervisor) that
// connects to a named socket. The sockets stay open in the sender until the receiver acknowledges,
// so at every moment some process holds them and connections wait in the backlog, never refused.
//
// The protocol is JSON frames (lib/frames.ts):
//   sender   -> { protocol: 'sendmsg-handoff', version: 1, type: 'listeners', names, total } + fds
//               (as many frames as it takes, at most 253 descriptors each)
//   receiver -> { protocol, version, type: 'ack', names }        once it holds them all
//   receiver -> { protocol, version, type: 'error', message }    when it refuses what it got
// and, for a takeover over a named socket, first
//   taker    -> { protocol, version, type: 'take' }
// Either side that refuses tells the other why in an 'error' frame when the channel still takes
// one, and rejects with ERR_SENDMSG_HANDOFF. Written on the public socket API only.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { lstatSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

import { listenerProblem } from './bridge'
import { closeFd } from './close'
import { peerCredentials, type Credentials } from './credentials'
import { INT32_MAX, invalidArgType, invalidArgValue, stateError, validateInteger } from './errors'
import { descriptorOf, type DescriptorLike } from './fd'
import { abortError, checkOptionNames, Deadline, timeoutError, waitOptions, WAIT_OPTIONS, type WaitOptions } from './cancellation'
import { FrameChannel, MAX_FDS_PER_FRAME, type Frame } from './frames'
import { refuseRightsIfSupported } from './pass-rights'
import { peerPidfdIfAny } from './pidfd'
import type { ReceivedFd } from './received-fd'
import { listenNow, type UnixServer } from './server'
import { UnixSocket } from './socket'
import { socketpair } from './sync'

const PROTOCOL = 'sendmsg-handoff'
const VERSION = 1
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
/** The most listeners one handoff carries: a bound on what a peer can make us wait for. */
const MAX_LISTENERS = 65_536
/** An error text sent to the peer is cut to this many characters (and shorter if the frame needs). */
const MAX_ERROR_TEXT = 1024
/** How long an allowed peer of an offer may take to ask for the listeners, by default. */
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000
/**
 * The environment variable that tells a spawned worker which descriptor is its channel.
 *
 * @example const channelFd = Number(process.env[HANDOFF_FD_ENV])
 */
export const HANDOFF_FD_ENV = 'SENDMSG_HANDOFF_FD'

/**
 * A listener to hand over: a listening socket, or a bound UDP socket (which becomes a
 * `dgram.Socket` on the other side with `toDgramSocket`); a descriptor, or an object that has one
 * (net.Server, dgram.Socket, UnixServer, ...), as every parameter of the package that takes a
 * descriptor.
 *
 * @example const source: ListenerSource = net.createServer().listen(0)
 */
export type ListenerSource = DescriptorLike
/**
 * Listening sockets by name.
 *
 * @example const listeners: Listeners = { http: server, admin: 4 }
 */
export type Listeners = Readonly<Record<string, ListenerSource>>

/**
 * What a refused handoff rejects with.
 *
 * @example await takeListeners(path).catch((error: HandoffError) => log(error.code === 'ERR_SENDMSG_HANDOFF' ? error.message : 'other'))
 */
export type HandoffError = Error & { code: 'ERR_SENDMSG_HANDOFF' }

function handoffError(message: string, options?: ErrorOptions): HandoffError {
  return stateError('ERR_SENDMSG_HANDOFF', message, options) as HandoffError
}

/**
 * The next frame from the peer. A peer that broke the framing, or hung up, is a refused handoff
 * (ERR_SENDMSG_HANDOFF, the frame error as `cause`); aborts and timeouts pass through, the
 * deadline's own reason rather than the AbortError next() wraps it in.
 */
async function nextFrame(channel: FrameChannel, deadline: Deadline | undefined): Promise<Frame> {
  try {
    return await channel.next(deadline?.signal === undefined ? undefined : { signal: deadline.signal })
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code
    if (code === 'ERR_SENDMSG_FRAME') throw handoffError(`the peer broke the frame protocol: ${(error as Error).message}`, { cause: error })
    if (code === 'ERR_SENDMSG_FRAME_CLOSED') throw handoffError('the peer hung up before the handoff was done', { cause: error })
    throw deadline === undefined ? error : deadline.reason(error)
  }
}

/** `text` cut to at most `length` characters (never inside a surrogate pair), marked as cut. */
function cut(text: string, length: number): string {
  if (text.length <= length) return text
  if (length <= 1) return ''
  let end = length - 1
  const last = text.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${text.slice(0, end)}…`
}

/**
 * Tells the peer why it was refused, if the channel still takes a frame. The text is the peer's
 * to read, not ours to crash on: it is cut to fit the frame (a peer can make an error text long,
 * for example with a long name), and a failed send is ignored (the peer may be gone).
 */
async function tellPeer(channel: FrameChannel, message: string): Promise<void> {
  if (channel.closed) return
  let text = cut(message, MAX_ERROR_TEXT)
  for (;;) {
    const frame = { ...header('error'), message: text }
    if (Buffer.byteLength(JSON.stringify(frame)) <= channel.maxFrameSize) {
      try {
        await channel.send(frame)
      } catch {
        // Gone, or not writable: nothing more to tell.
      }
      return
    }
    if (text === '') return
    text = cut(text, text.length >> 1)
  }
}

function header(type: string): { protocol: string; version: number; type: string } {
  return { protocol: PROTOCOL, version: VERSION, type }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** Checks a frame's envelope; the caller checks the rest. */
function expectFrame(frame: Frame, type: string): Record<string, unknown> {
  const { value } = frame
  if (!isObject(value) || value.protocol !== PROTOCOL) throw handoffError('the peer does not speak the handoff protocol')
  if (value.version !== VERSION) throw handoffError(`the peer speaks handoff version ${String(value.version)}, not ${VERSION}`)
  if (value.type === 'error' && type !== 'error') throw handoffError(`the peer refused: ${String(value.message)}`)
  if (value.type !== type) throw handoffError(`expected a '${type}' frame, got '${String(value.type)}'`)
  if (type !== 'listeners' && frame.fds.length > 0) throw handoffError(`a '${type}' frame must carry no descriptors, it carried ${frame.fds.length}`)
  return value
}

function listenerEntries(listeners: Listeners): Array<[string, number]> {
  if (!isObject(listeners)) throw invalidArgType('listeners', 'an object of listening sockets by name', listeners)
  const count = Object.keys(listeners).length
  if (count > MAX_LISTENERS) throw invalidArgValue('listeners', `${count} listeners`, `must hold at most ${MAX_LISTENERS} listening sockets`)
  const entries = Object.entries(listeners).map(([name, source]): [string, number] => {
    if (!NAME.test(name)) throw invalidArgValue(`listeners.${name}`, name, 'has a name that is not 1-64 letters, digits, or . _ : - (starting with a letter or digit)')
    return [name, descriptorOf(source, `listeners.${name}`)]
  })
  for (const [name, fd] of entries) {
    const problem = listenerProblem(fd)
    if (problem !== undefined) throw invalidArgValue(`listeners.${name}`, fd, problem)
  }
  return entries
}

/**
 * Sends `listeners` over `channel` in frames of at most 253 descriptors, and resolves when the
 * peer acknowledges holding them all: from then on the sender may close its copies.
 *
 * @example await sendListeners(channel, { http: server })
 */
export async function sendListeners(channel: FrameChannel, listeners: Listeners): Promise<void> {
  const entries = listenerEntries(listeners)
  const names = entries.map(([name]) => name)
  // At least one frame, even for no listeners, so that the peer always gets an answer.
  const batches: Array<Array<[string, number]>> = []
  for (let start = 0; start < entries.length; start += MAX_FDS_PER_FRAME) batches.push(entries.slice(start, start + MAX_FDS_PER_FRAME))
  if (batches.length === 0) batches.push([])
  for (const batch of batches) {
    await channel.send({ ...header('listeners'), names: batch.map(([name]) => name), total: entries.length }, batch.map(([, fd]) => fd))
  }
  const ack = expectFrame(await nextFrame(channel, undefined), 'ack')
  const acknowledged = ack.names
  if (!Array.isArray(acknowledged) || acknowledged.length !== names.length || acknowledged.some((name, i) => name !== names[i])) {
    throw handoffError('the peer acknowledged other listeners than those sent')
  }
}

/**
 * Listening sockets received, by name, each an owned ReceivedFd (take it, or turn it into a
 * server). With `expect`, exactly the names expected.
 *
 * @example const listeners: ReceivedListeners<'http'> = (await workerListeners({ expect: ['http'] })).listeners
 */
export type ReceivedListeners<Name extends string = string> = Record<Name, ReceivedFd>

/**
 * Options of {@link receiveListeners}.
 *
 * @example await receiveListeners(channel, { expect: ['http'], acknowledge: false })
 */
export interface ReceiveListenersOptions<Name extends string = string> extends WaitOptions {
  /** The names expected, exactly; anything else is refused. The listeners are then typed by these names. */
  expect?: readonly Name[]
  /** Acknowledge at once (default true). With false, call the returned `acknowledge()` when ready. */
  acknowledge?: boolean
}

const RECEIVE_OPTIONS = ['expect', 'acknowledge', ...WAIT_OPTIONS] as const

/**
 * What {@link receiveListeners} and {@link takeListeners} resolve to.
 *
 * @example const { listeners, acknowledge }: ReceivedHandoff = await takeListeners(path, { acknowledge: false })
 */
export interface ReceivedHandoff<Name extends string = string> {
  listeners: ReceivedListeners<Name>
  /** Tells the sender it may close its copies (already done unless `acknowledge: false`). */
  acknowledge(): Promise<void>
}

/**
 * Receives listening sockets sent by `sendListeners`, checks every one (a name that is well formed
 * and unique, and expected if `expect` is given; one descriptor per name; each a listening
 * socket or a bound, unconnected UDP socket), and acknowledges. Anything else is refused: the
 * descriptors received so far are closed, the peer is told why, and the promise rejects with
 * ERR_SENDMSG_HANDOFF.
 *
 * @example const { listeners } = await receiveListeners(channel, { expect: ['http'] })
 */
export async function receiveListeners<const Name extends string = string>(
  channel: FrameChannel,
  options?: ReceiveListenersOptions<Name>,
): Promise<ReceivedHandoff<Name>> {
  if (!(channel instanceof FrameChannel)) throw invalidArgType('channel', 'an instance of FrameChannel', channel)
  const checked = checkOptionNames(options, 'options', RECEIVE_OPTIONS) as ReceiveListenersOptions<Name>
  const { signal, timeout } = waitOptions(checked as Record<string, unknown>, 'options')
  const deadline = new Deadline({ signal, timeout }, () => timeoutError(`The listeners did not arrive within ${timeout} ms`))
  try {
    return await receiveWithin(channel, checked, deadline)
  } finally {
    deadline.dispose()
  }
}

async function receiveWithin<Name extends string>(
  channel: FrameChannel,
  options: ReceiveListenersOptions<Name>,
  deadline: Deadline,
): Promise<ReceivedHandoff<Name>> {
  // Every name is checked against `expect` (when given) before it is stored.
  const received: ReceivedListeners<string> = Object.create(null)
  const held: ReceivedFd[] = []
  try {
    deadline.check()
    let total: number | undefined
    let count = 0
    do {
      const frame = await nextFrame(channel, deadline)
      // Owned from here on, whatever is wrong with the frame.
      const fds = frame.fds.map((fd) => fd.keep())
      held.push(...fds)
      const value = expectFrame(frame, 'listeners')
      const { names } = value
      if (!Array.isArray(names) || names.length > MAX_FDS_PER_FRAME) throw handoffError('a listeners frame without a proper list of names')
      if (!Number.isInteger(value.total) || (value.total as number) < 0 || (value.total as number) > MAX_LISTENERS) {
        throw handoffError(`a listeners frame without a proper total (an integer from 0 to ${MAX_LISTENERS})`)
      }
      if (total !== undefined && value.total !== total) throw handoffError('the total changed between frames')
      total = value.total as number
      // Every frame brings the handoff closer to its end: the frames are bounded by the total.
      if (names.length === 0 && total !== 0) throw handoffError('a listeners frame with no listeners in a handoff that announced some')
      if (count + names.length > total) throw handoffError(`more listeners than the ${total} announced`)
      if (names.length !== fds.length) throw handoffError(`a frame names ${names.length} listeners but carried ${fds.length} descriptors`)
      names.forEach((name: unknown, i: number) => {
        if (typeof name !== 'string' || !NAME.test(name)) throw handoffError(`a listener name is not well formed: ${JSON.stringify(name)}`)
        if (name in received) throw handoffError(`the listener '${name}' was sent twice`)
        if (options.expect && !(options.expect as readonly string[]).includes(name)) throw handoffError(`an unexpected listener '${name}'`)
        const problem = listenerProblem(fds[i]!)
        if (problem !== undefined) throw handoffError(`the listener '${name}' ${problem}`)
        received[name] = fds[i]!
      })
      count += names.length
    } while (count < total)
    if (options.expect) {
      const missing = options.expect.filter((name) => !(name in received))
      if (missing.length > 0) throw handoffError(`listeners missing: ${missing.join(', ')}`)
    }
  } catch (error) {
    for (const fd of held) fd.close()
    await tellPeer(channel, (error as Error).message)
    channel.close()
    throw error
  }
  const names = Object.keys(received)
  let acknowledged: Promise<void> | undefined
  const acknowledge = () => (acknowledged ??= channel.send({ ...header('ack'), names }))
  if (options.acknowledge !== false) await acknowledge()
  return { listeners: received as ReceivedListeners<Name>, acknowledge }
}

/**
 * Options of {@link spawnWorker}: Node's spawn options, the listeners, and the channel's descriptor.
 *
 * @example spawnWorker(process.execPath, ['worker.js'], { listeners: { http: server }, env: process.env })
 */
export interface SpawnWorkerOptions extends SpawnOptions {
  /** The listening sockets the worker gets. */
  listeners: Listeners
  /** The worker's descriptor for the channel (default 3). */
  fd?: number
}

/**
 * What {@link spawnWorker} returns.
 *
 * @example const { child, channel, ready }: SpawnedWorker = spawnWorker(node, ['worker.js'], { listeners })
 */
export interface SpawnedWorker extends AsyncDisposable {
  child: ChildProcess
  /** The channel to the worker, for your own control messages once the listeners are handed over. */
  channel: FrameChannel
  /** Resolves when the worker holds the listeners. */
  ready: Promise<void>
  /**
   * For `await using`: closes the channel and ends the worker (SIGTERM unless it already exited),
   * resolving once it has exited.
   */
  [Symbol.asyncDispose](): Promise<void>
}

/** Node's spawn options, which spawnWorker passes on. */
const SPAWN_OPTIONS = [
  'cwd',
  'env',
  'argv0',
  'stdio',
  'detached',
  'uid',
  'gid',
  'serialization',
  'shell',
  'windowsVerbatimArguments',
  'windowsHide',
  'signal',
  'timeout',
  'killSignal',
] as const

/**
 * Spawns a worker with a connected stream socket on a known descriptor (3 by default, named in
 * its environment as SENDMSG_HANDOFF_FD; blocking, as inherited sockets are expected to be) and
 * hands it `listeners` over it. A Node worker calls `workerListeners()`; any other program can
 * speak the frame protocol documented in lib/handoff.ts.
 *
 * @example const { ready } = spawnWorker(process.execPath, ['worker.js'], { listeners: { http: server } })
 */
export function spawnWorker(command: string, args: readonly string[], options: SpawnWorkerOptions): SpawnedWorker {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options)
  checkOptionNames(options, 'options', ['listeners', 'fd', ...SPAWN_OPTIONS])
  const { listeners, fd = 3, ...spawnOptions } = options
  // Checked before anything is made. 0-2 are the child's stdio; past 1023 is past a default limit.
  validateInteger(fd, 'options.fd', 3, 1023)
  listenerEntries(listeners)
  // The worker's end stays blocking, as any program expects a socket it inherits to be (a
  // pair's ends are separate open files, so making ours non-blocking does not touch theirs).
  const [mineFd, theirs] = socketpair('stream')
  let mine: UnixSocket
  try {
    mine = UnixSocket.from(mineFd)
  } catch (error) {
    closeFd(theirs)
    throw error
  }
  const given = spawnOptions.stdio
  const stdio: unknown[] = typeof given === 'string' ? [given, given, given] : ['inherit', 'inherit', 'inherit']
  if (Array.isArray(given)) given.slice(0, 3).forEach((entry, i) => (stdio[i] = entry))
  while (stdio.length < fd) stdio.push('ignore')
  stdio[fd] = theirs
  let child: ChildProcess
  try {
    child = spawn(command, args, { ...spawnOptions, stdio: stdio as never, env: { ...(spawnOptions.env ?? process.env), [HANDOFF_FD_ENV]: String(fd) } })
  } catch (error) {
    mine.close()
    throw error
  } finally {
    closeFd(theirs)
  }
  const channel = new FrameChannel(mine)
  // A failed handoff leaves nothing to talk about: the worker is told why, and the channel closed.
  const ready = sendListeners(channel, listeners).catch(async (error: unknown) => {
    await tellPeer(channel, (error as Error).message)
    channel.close()
    throw error
  })
  ready.catch(() => {})
  return {
    child,
    channel,
    ready,
    async [Symbol.asyncDispose]() {
      channel.close()
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill()
      await exited
    },
  }
}

/**
 * What {@link workerListeners} resolves to.
 *
 * @example const { listeners, channel }: WorkerHandoff = await workerListeners()
 */
export interface WorkerHandoff<Name extends string = string> {
  listeners: ReceivedListeners<Name>
  /** The channel to the supervisor, for control messages. */
  channel: FrameChannel
}

/**
 * Options of {@link workerListeners}.
 *
 * @example await workerListeners({ expect: ['http'], timeout: 10_000 })
 */
export interface WorkerListenersOptions<Name extends string = string> extends Omit<ReceiveListenersOptions<Name>, 'acknowledge'> {
  /** The channel's descriptor (default: SENDMSG_HANDOFF_FD, which spawnWorker sets in the worker's environment). */
  fd?: number
}

function notAWorker(message: string, cause?: unknown): Error {
  return stateError('ERR_SENDMSG_NOT_A_WORKER', message, cause === undefined ? undefined : { cause })
}

/** The worker's end of its channel: the descriptor its supervisor named, adopted. */
function workerSocket(fd: number | undefined): UnixSocket {
  const named = process.env[HANDOFF_FD_ENV]
  if (fd === undefined && named === undefined) {
    throw notAWorker(`workerListeners() runs in a worker spawned by spawnWorker(): ${HANDOFF_FD_ENV} is not set (pass options.fd to name the channel yourself)`)
  }
  const number = fd ?? Number(named)
  if (fd === undefined && !(Number.isInteger(number) && number >= 0)) throw notAWorker(`${HANDOFF_FD_ENV} is not a descriptor number: ${JSON.stringify(named)}`)
  try {
    return UnixSocket.from(number)
  } catch (error) {
    // A wrong options.fd is the caller's argument error; a descriptor that is not a socket is not a channel.
    const code = (error as { code?: unknown } | null)?.code
    if (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE') throw error
    throw notAWorker(`descriptor ${number} is not this worker's channel to a supervisor: ${(error as Error).message}`, error)
  }
}

/**
 * In a worker spawned by `spawnWorker`: receives its listening sockets (and acknowledges them).
 * With `timeout` or `signal`, a supervisor that never sends them is given up on: the channel is
 * closed and the promise rejects (ERR_SENDMSG_TIMEOUT, or an AbortError). The channel's
 * descriptor is taken over at once: whatever fails after that closes it.
 *
 * @example const { listeners } = await workerListeners({ expect: ['http'] }); toNetServer(listeners.http, app)
 */
export async function workerListeners<const Name extends string = string>(options?: WorkerListenersOptions<Name>): Promise<WorkerHandoff<Name>> {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw invalidArgType('options', 'of type object', options)
  // The descriptor is this worker's channel and good for nothing else: it is adopted first, and
  // closed whenever the handoff fails, a wrong option or an aborted signal included.
  const channel = new FrameChannel(workerSocket(options?.fd))
  let receiveOptions: ReceiveListenersOptions<Name>
  try {
    const { fd: _fd, ...rest } = checkOptionNames(options, 'options', ['expect', ...WAIT_OPTIONS, 'fd']) as WorkerListenersOptions<Name>
    waitOptions(rest as Record<string, unknown>, 'options')
    receiveOptions = rest
  } catch (error) {
    channel.close()
    throw error
  }
  const { listeners } = await receiveListeners(channel, receiveOptions)
  return { listeners, channel }
}

/**
 * Options of {@link offerListeners}.
 *
 * @example offerListeners(path, listeners, { allow: (peer) => peer.uid === 0 || peer.uid === process.getuid?.() })
 */
export interface OfferOptions extends WaitOptions {
  /**
   * Who may take the listeners (default: a process of the same user). Given the peer's credentials
   * and, on Linux 6.5+, a pidfd of it (see {@link PeerIdentity}).
   */
  allow?: (peer: PeerIdentity) => boolean
  /** How long an allowed peer may take to ask for the listeners, in ms (default 10 s); then it is hung up on ('rejected', ERR_SENDMSG_TIMEOUT). */
  handshakeTimeout?: number
  /** Ends the offer (as `close()` does) and emits 'error' with an AbortError when aborted. */
  signal?: AbortSignal
  /** Ends the offer and emits 'error' (ERR_SENDMSG_TIMEOUT) when no peer took the listeners within this many ms. */
  timeout?: number
}

/**
 * The events of a {@link ListenerOffer} and what their listeners get.
 *
 * @example offerListeners(path, listeners).on('handoff', ({ pid, uid }) => console.log(`taken by ${pid} (uid ${uid})`))
 */
export interface ListenerOfferEvents {
  /** A peer acknowledged and holds the listeners: its kernel credentials. */
  handoff: [peer: Credentials]
  /** A peer that was not allowed; `error` is what `allow` threw, if it threw. */
  refused: [peer: Credentials, error?: unknown]
  /** A peer that broke the protocol or asked for nothing in time; its credentials when they were read. */
  rejected: [error: Error, peer?: Credentials]
  /** The offer's server failed, or its `timeout` or `signal` ended it. */
  error: [error: Error]
}

/**
 * Who the peer of an offer (or the offerer, to a taker) is, as `allow` sees it: the kernel's
 * credentials and, on Linux 6.5+, a pidfd of that very process. A pid can be reused by another
 * process once the peer exits; the pidfd cannot: a check made through `/proc/<pid>` is about the
 * peer if `pidfdPid(pidfd)` still gives `pid` afterwards.
 *
 * @example
 * const allow = ({ pid, uid, pidfd }: PeerIdentity): boolean => uid === process.getuid?.() && (pidfd === undefined || pidfdPid(pidfd) === pid)
 */
export interface PeerIdentity extends Credentials {
  /**
   * Linux 6.5+: a pidfd of the peer (SO_PEERPIDFD), owned by the handoff and valid only during the
   * `allow` call: it is closed when `allow` returns or throws (`keep()` it to hold it longer).
   * Undefined where the kernel has none (older kernels, macOS; or before 6.18 a peer that has
   * already exited, which could not take anything anyway).
   */
  readonly pidfd?: ReceivedFd
}

function sameUser(peer: Credentials): boolean {
  return peer.uid === process.getuid!()
}

/**
 * Asks `allow` about the peer of `socket` (credentials `peer`), with a pidfd of it where the
 * kernel has one; the pidfd is closed once `allow` returns or throws.
 */
function allowPeer(socket: UnixSocket, peer: Credentials, allow: (peer: PeerIdentity) => boolean): boolean {
  const pidfd = peerPidfdIfAny(socket)
  try {
    return allow(pidfd === undefined ? { ...peer } : { ...peer, pidfd })
  } finally {
    pidfd?.close()
  }
}

function unsafeDirectory(message: string): Error {
  return stateError('ERR_SENDMSG_UNSAFE_DIRECTORY', message)
}

/**
 * Refuses a path that goes through a symbolic link another user owns (root's and ours are
 * trusted): its owner can re-point it whenever they like, and everything below it with it. Each
 * prefix of the path as given is what the kernel resolves on the way, so each is looked at as
 * given; a prefix that does not exist yet is one mkdir makes, ours.
 */
function refuseForeignLinks(dir: string): void {
  const uid = process.getuid!()
  const parts = dir.split('/')
  for (let end = 1; end <= parts.length; end++) {
    const prefix = parts.slice(0, end).join('/')
    if (prefix === '' || prefix === '.') continue
    let stat
    try {
      stat = lstatSync(prefix)
    } catch {
      return
    }
    if (stat.isSymbolicLink() && stat.uid !== uid && stat.uid !== 0) {
      throw unsafeDirectory(`${prefix} is a symbolic link of user ${stat.uid}, who could re-point it: an offer's path may go through links of root or this user only`)
    }
  }
}

/**
 * Makes sure `dir` exists, belongs to us, and no one else may enter it; returns its identity.
 * The directory itself is never a symbolic link: whoever owns a link can re-point it between
 * our check and the bind, and systemd's mkdir_safe refuses links for the same reason. (The
 * directories above it are the caller's choice, as with systemd's RuntimeDirectory.)
 */
function privateDirectory(dir: string): { dev: number; ino: number } {
  refuseForeignLinks(dir)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = lstatSync(dir)
  if (stat.isSymbolicLink()) {
    throw unsafeDirectory(`${dir} is a symbolic link (owner ${stat.uid}): an offer's directory must be a real directory, never a link someone could re-point`)
  }
  if (!stat.isDirectory() || stat.uid !== process.getuid!() || (stat.mode & 0o077) !== 0) {
    throw unsafeDirectory(
      `${dir} must be a directory of this user that no one else may enter (mode 0700); it is mode 0${(stat.mode & 0o777).toString(8)}, owner ${stat.uid}`,
    )
  }
  return { dev: stat.dev, ino: stat.ino }
}

/**
 * Binds and listens at `path` with the socket file born mode 0600, so that no chmod by path ever
 * follows (a path resolved again after the bind is a path someone may have re-pointed). bind(2)
 * gives the file the process umask's mode on macOS, and on Linux the socket inode's mode masked
 * by the umask (measured on 6.18: fchmod 0600 before bind gives a 0600 file, after bind it changes
 * only the socket's inode); the umask is the one lever that works on both, and that works with
 * UnixServer.listen binding for us. It is process-wide, but JavaScript runs on one thread and the
 * bind between the two umask calls is synchronous, so no other JavaScript sees it; a file the
 * libuv threadpool happens to create in those microseconds gets a narrower mode, never a wider
 * one. A worker thread may not set the umask: there the file keeps the process umask's mode, and
 * the 0700 directory is what keeps other users out.
 */
function listenPrivately(path: string): UnixServer {
  let previous: number | undefined
  try {
    previous = process.umask(0o177)
  } catch {
    // ERR_WORKER_UNSUPPORTED_OPERATION in a worker thread.
  }
  try {
    // Descriptors are refused from before the first connection (Linux 6.16+): the offer's peers
    // ask and listen, and one that pushes descriptors at the supervisor gets EPERM, so it cannot
    // fill the supervisor's descriptor table. Older kernels: the frame channel closes them.
    return listenNow(path, undefined, refuseRightsIfSupported)
  } finally {
    if (previous !== undefined) process.umask(previous)
  }
}

/**
 * Offers listening sockets at a named socket path for another process to take (`takeListeners`):
 * the new version of a supervisor taking over from the old one. The socket file is born mode 0600
 * in a directory only its owner can enter (created if missing; never a symbolic link, nor reached
 * through another user's), and every peer is checked by its credentials (same user by default),
 * with a pidfd of it on Linux 6.5+ (see {@link PeerIdentity}). On Linux 6.16+ the offer's socket
 * refuses descriptors (SO_PASSRIGHTS off): a peer that sends some gets EPERM. Events: 'handoff' (the peer's credentials; it acknowledged and holds the listeners), 'refused' (a
 * peer that was not allowed, or for which `allow` threw: the error follows the credentials),
 * 'rejected' (a peer that broke the protocol, or asked for nothing within `handshakeTimeout`: the
 * error, then the credentials), 'error' (the server's, or the offer's `timeout` or `signal`, which
 * close it). The offer stays open until closed.
 *
 * @example const offer = offerListeners('/run/app/handoff.sock', { http: server }); offer.once('handoff', stop)
 */
export function offerListeners(path: string, listeners: Listeners, options?: OfferOptions): ListenerOffer {
  return new ListenerOffer(path, listeners, options)
}

/**
 * Listening sockets offered at a named socket: see {@link offerListeners}.
 *
 * @example offerListeners(path, { http: server }).once('handoff', () => process.exit(0))
 */
export class ListenerOffer extends EventEmitter<ListenerOfferEvents> implements Disposable, AsyncDisposable {
  readonly path: string
  readonly #server: UnixServer
  readonly #listeners: Listeners
  readonly #allow: (peer: PeerIdentity) => boolean
  readonly #handshakeTimeout: number
  /** The peers being served, closed with the offer. */
  readonly #channels = new Set<FrameChannel>()
  readonly #signal: AbortSignal | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor(path: string, listeners: Listeners, options?: OfferOptions) {
    super()
    const checked = checkOptionNames(options, 'options', ['allow', 'handshakeTimeout', 'signal', 'timeout']) as OfferOptions
    listenerEntries(listeners)
    if (checked.allow !== undefined && typeof checked.allow !== 'function') throw invalidArgType('options.allow', 'a function', checked.allow)
    const { signal, timeout } = waitOptions(checked as Record<string, unknown>, 'options')
    this.#handshakeTimeout = validateInteger(checked.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT, 'options.handshakeTimeout', 1, INT32_MAX)
    if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path)
    if (path.charCodeAt(0) === 0) {
      throw invalidArgValue('path', path, 'must be a filesystem path: an abstract name has no permissions to keep other users out')
    }
    // Nothing is made for an offer given up on before it began.
    if (signal?.aborted) throw abortError(signal.reason)
    this.path = path
    this.#listeners = listeners
    this.#allow = checked.allow ?? sameUser
    const dir = dirname(path)
    const identity = privateDirectory(dir)
    this.#server = listenPrivately(path)
    // The bind resolved the path again: make sure it went where the check looked.
    let now: { dev: number; ino: number; isSymbolicLink(): boolean } | undefined
    try {
      now = lstatSync(dir)
    } catch {
      now = undefined
    }
    if (now === undefined || now.isSymbolicLink() || now.dev !== identity.dev || now.ino !== identity.ino) {
      this.#server.close()
      throw unsafeDirectory(`${dir} was replaced while the offer was being made`)
    }
    this.#server.on('connection', (socket: UnixSocket) => void this.#serve(socket))
    this.#server.on('error', (error: Error) => this.emit('error', error))
    if (signal !== undefined) {
      this.#signal = signal
      signal.addEventListener('abort', this.#onAbort, { once: true })
    }
    if (timeout !== undefined) {
      this.#timer = setTimeout(() => this.#giveUp(timeoutError(`No process took the listeners offered at ${path} within ${timeout} ms`)), timeout)
    }
  }

  readonly #onAbort = (): void => this.#giveUp(abortError(this.#signal!.reason))

  /** Ends the offer for `reason` and says so, as Node's streams do for an AbortSignal. */
  #giveUp(reason: Error): void {
    if (this.#closed) return
    this.close()
    this.emit('error', reason)
  }

  async #serve(socket: UnixSocket): Promise<void> {
    let peer: Credentials
    try {
      peer = peerCredentials(socket)
    } catch (error) {
      socket.close()
      this.emit('rejected', error as Error)
      return
    }
    let allowed: boolean
    try {
      allowed = allowPeer(socket, peer, this.#allow)
    } catch (error) {
      socket.close()
      this.emit('refused', peer, error)
      return
    }
    if (!allowed) {
      socket.close()
      this.emit('refused', peer)
      return
    }
    const channel = new FrameChannel(socket, { maxFrameSize: 64 * 1024 })
    this.#channels.add(channel)
    const timeout = this.#handshakeTimeout
    const handshake = new Deadline({ timeout }, () => timeoutError(`The peer asked for no listeners within ${timeout} ms`))
    try {
      let take: Frame
      try {
        take = await nextFrame(channel, handshake)
      } finally {
        handshake.dispose()
      }
      expectFrame(take, 'take')
      await sendListeners(channel, this.#listeners)
      if (this.#timer !== undefined) clearTimeout(this.#timer)
      this.#timer = undefined
      this.emit('handoff', peer)
    } catch (error) {
      if (this.#closed) return
      await tellPeer(channel, (error as Error).message)
      this.emit('rejected', error as Error, peer)
    } finally {
      this.#channels.delete(channel)
      channel.close()
    }
  }

  /** Stops offering: removes the socket file and hangs up on peers still being served. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#server.close()
    for (const channel of this.#channels) channel.close()
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `close()`, resolving once the offer's socket is closed, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    const closed = this.#server.closed ? undefined : once(this.#server, 'close')
    this.close()
    await closed
  }
}

/**
 * Options of {@link takeListeners}.
 *
 * @example await takeListeners(path, { expect: ['http'], allow: (peer) => peer.uid === process.getuid?.() })
 */
export interface TakeOptions<Name extends string = string> extends ReceiveListenersOptions<Name> {
  /**
   * Whom to take listeners from (default: a process of the same user). Given the offerer's
   * credentials and, on Linux 6.5+, a pidfd of it (see {@link PeerIdentity}).
   */
  allow?: (peer: PeerIdentity) => boolean
}

const TAKE_OPTIONS = [...RECEIVE_OPTIONS, 'allow'] as const

/**
 * Takes the listening sockets offered at `path` by `offerListeners`. With `acknowledge: false`
 * the offering process keeps its copies until you call `acknowledge()` (for example once your own
 * workers serve), so that someone accepts connections at every moment.
 *
 * @example const { listeners, acknowledge } = await takeListeners(path, { acknowledge: false })
 */
export async function takeListeners<const Name extends string = string>(path: string, options?: TakeOptions<Name>): Promise<ReceivedHandoff<Name>> {
  const { allow = sameUser, ...receiveOptions } = checkOptionNames(options, 'options', TAKE_OPTIONS) as TakeOptions<Name>
  if (typeof allow !== 'function') throw invalidArgType('options.allow', 'a function', allow)
  const { signal, timeout } = waitOptions(receiveOptions as Record<string, unknown>, 'options')
  // One deadline for all of it: connecting, asking, and receiving.
  const deadline = new Deadline({ signal, timeout }, () => timeoutError(`No listeners were taken from ${path} within ${timeout} ms`))
  let channel: FrameChannel | undefined
  let handoff: ReceivedHandoff<Name>
  try {
    deadline.check()
    const socket = await deadline.race(UnixSocket.connect(path), (late) => late.close())
    channel = new FrameChannel(socket, { maxFrameSize: 64 * 1024 })
    const peer = peerCredentials(socket)
    if (!allowPeer(socket, peer, allow)) throw handoffError(`the process offering listeners (pid ${peer.pid}, uid ${peer.uid}) is not allowed`)
    await channel.send(header('take'))
    // From here on, a refusal closes the channel and tells the peer why.
    handoff = await receiveWithin(channel, { ...receiveOptions, acknowledge: false }, deadline)
  } catch (error) {
    channel?.close()
    throw deadline.reason(error)
  } finally {
    deadline.dispose()
  }
  let done: Promise<void> | undefined
  // Once the kernel has the ack there is nothing more to say or hear: close at once.
  const acknowledge = () => (done ??= handoff.acknowledge().finally(() => channel.close()))
  if (receiveOptions.acknowledge !== false) await acknowledge()
  return { listeners: handoff.listeners, acknowledge }
}
