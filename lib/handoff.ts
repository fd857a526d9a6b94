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
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { chmodSync, mkdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'

import { native } from './binding'
import { isListeningSocket } from './bridge'
import { constants } from './constants'
import { peerCredentials, type Credentials } from './credentials'
import { invalidArgType, invalidArgValue, stateError, validateInteger } from './errors'
import { fdOf } from './fd'
import { FrameChannel, MAX_FDS_PER_FRAME, type Frame } from './frames'
import { ReceivedFd } from './received-fd'
import { UnixServer } from './server'
import { UnixSocket } from './socket'

const PROTOCOL = 'sendmsg-handoff'
const VERSION = 1
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
/**
 * The environment variable that tells a spawned worker which descriptor is its channel.
 *
 * @example const channelFd = Number(process.env[HANDOFF_FD_ENV])
 */
export const HANDOFF_FD_ENV = 'SENDMSG_HANDOFF_FD'

/**
 * A listening socket to hand over: a descriptor, or an object that has one (net.Server, UnixServer, ...).
 *
 * @example const source: ListenerSource = server
 */
export type ListenerSource = number | ReceivedFd | object
/**
 * Listening sockets by name.
 *
 * @example const listeners: Listeners = { http: server, admin: 4 }
 */
export type Listeners = Readonly<Record<string, ListenerSource>>

/**
 * What a refused handoff rejects with.
 *
 * @example if ((error as HandoffError).code === 'ERR_SENDMSG_HANDOFF') log(error.message)
 */
export type HandoffError = Error & { code: 'ERR_SENDMSG_HANDOFF' }

function handoffError(message: string): HandoffError {
  return stateError('ERR_SENDMSG_HANDOFF', message) as HandoffError
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
  const entries = Object.entries(listeners).map(([name, source]): [string, number] => {
    if (!NAME.test(name)) throw invalidArgValue(`listeners.${name}`, name, 'has a name that is not 1-64 letters, digits, or . _ : - (starting with a letter or digit)')
    return [name, fdOf(source, `listeners.${name}`)]
  })
  for (const [name, fd] of entries) {
    if (!isListeningSocket(fd)) throw invalidArgValue(`listeners.${name}`, fd, 'is not a listening socket')
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
  const ack = expectFrame(await channel.next(), 'ack')
  const acknowledged = ack.names
  if (!Array.isArray(acknowledged) || acknowledged.length !== names.length || acknowledged.some((name, i) => name !== names[i])) {
    throw handoffError('the peer acknowledged other listeners than those sent')
  }
}

/**
 * Listening sockets received, by name, each an owned ReceivedFd (take it, or turn it into a server).
 *
 * @example toNetServer((listeners as ReceivedListeners).http, app)
 */
export type ReceivedListeners = Record<string, ReceivedFd>

/**
 * Options of {@link receiveListeners}.
 *
 * @example await receiveListeners(channel, { expect: ['http'], acknowledge: false })
 */
export interface ReceiveListenersOptions {
  /** The names expected, exactly; anything else is refused. */
  expect?: readonly string[]
  /** Acknowledge at once (default true). With false, call the returned `acknowledge()` when ready. */
  acknowledge?: boolean
}

/**
 * What {@link receiveListeners} and {@link takeListeners} resolve to.
 *
 * @example const { listeners, acknowledge }: ReceivedHandoff = await takeListeners(path, { acknowledge: false })
 */
export interface ReceivedHandoff {
  listeners: ReceivedListeners
  /** Tells the sender it may close its copies (already done unless `acknowledge: false`). */
  acknowledge(): Promise<void>
}

/**
 * Receives listening sockets sent by `sendListeners`, checks every one (a name that is well formed
 * and unique, and expected if `expect` is given; one descriptor per name; each a listening
 * socket), and acknowledges. Anything else is refused: the descriptors received so far are closed,
 * the peer is told why, and the promise rejects with ERR_SENDMSG_HANDOFF.
 *
 * @example const { listeners } = await receiveListeners(channel, { expect: ['http'] })
 */
export async function receiveListeners(channel: FrameChannel, options: ReceiveListenersOptions = {}): Promise<ReceivedHandoff> {
  const received: ReceivedListeners = Object.create(null)
  const held: ReceivedFd[] = []
  try {
    let total: number | undefined
    let count = 0
    do {
      const frame = await channel.next()
      // Owned from here on, whatever is wrong with the frame.
      for (const fd of frame.fds) held.push(new ReceivedFd(fd.take()))
      const fds = held.slice(held.length - frame.fds.length)
      const value = expectFrame(frame, 'listeners')
      const { names } = value
      if (!Array.isArray(names) || names.length > MAX_FDS_PER_FRAME) throw handoffError('a listeners frame without a proper list of names')
      if (!Number.isInteger(value.total) || (value.total as number) < 0) throw handoffError('a listeners frame without a proper total')
      if (total !== undefined && value.total !== total) throw handoffError('the total changed between frames')
      total = value.total as number
      if (names.length !== fds.length) throw handoffError(`a frame names ${names.length} listeners but carried ${fds.length} descriptors`)
      names.forEach((name: unknown, i: number) => {
        if (typeof name !== 'string' || !NAME.test(name)) throw handoffError(`a listener name is not well formed: ${JSON.stringify(name)}`)
        if (name in received) throw handoffError(`the listener '${name}' was sent twice`)
        if (options.expect && !options.expect.includes(name)) throw handoffError(`an unexpected listener '${name}'`)
        if (!isListeningSocket(fds[i]!)) throw handoffError(`the listener '${name}' is not a listening socket`)
        received[name] = fds[i]!
      })
      count += names.length
      if (count > total) throw handoffError(`more listeners than the ${total} announced`)
    } while (count < total)
    if (options.expect) {
      const missing = options.expect.filter((name) => !(name in received))
      if (missing.length > 0) throw handoffError(`listeners missing: ${missing.join(', ')}`)
    }
  } catch (error) {
    for (const fd of held) fd.close()
    const message = (error as Error).message
    await channel.send({ ...header('error'), message }).catch(() => {})
    channel.close()
    throw error
  }
  const names = Object.keys(received)
  let acknowledged: Promise<void> | undefined
  const acknowledge = () => (acknowledged ??= channel.send({ ...header('ack'), names }))
  if (options.acknowledge !== false) await acknowledge()
  return { listeners: received, acknowledge }
}

/**
 * Options of {@link spawnWorker}: Node's spawn options, the listeners, and the channel's descriptor.
 *
 * @example spawnWorker(process.execPath, ['worker.js'], { listeners: { http }, env: process.env })
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
export interface SpawnedWorker {
  child: ChildProcess
  /** The channel to the worker, for your own control messages once the listeners are handed over. */
  channel: FrameChannel
  /** Resolves when the worker holds the listeners. */
  ready: Promise<void>
}

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
  const { listeners, fd = 3, ...spawnOptions } = options
  // Checked before anything is made. 0-2 are the child's stdio; past 1023 is past a default limit.
  validateInteger(fd, 'options.fd', 3, 1023)
  listenerEntries(listeners)
  // The worker's end stays blocking, as any program expects a socket it inherits to be (a
  // pair's ends are separate open files, so making ours non-blocking does not touch theirs).
  const [mineFd, theirs] = native.socketpair(constants.SOCK_STREAM, false) as [number, number]
  let mine: UnixSocket
  try {
    mine = UnixSocket.from(mineFd)
  } catch (error) {
    native.closeFd(theirs)
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
    native.closeFd(theirs)
  }
  const channel = new FrameChannel(mine)
  const ready = sendListeners(channel, listeners)
  ready.catch(() => {})
  return { child, channel, ready }
}

/**
 * What {@link workerListeners} resolves to.
 *
 * @example const { listeners, channel }: WorkerHandoff = await workerListeners()
 */
export interface WorkerHandoff {
  listeners: ReceivedListeners
  /** The channel to the supervisor, for control messages. */
  channel: FrameChannel
}

/**
 * In a worker spawned by `spawnWorker`: receives its listening sockets (and acknowledges them).
 *
 * @example const { listeners } = await workerListeners(); toNetServer(listeners.http, app)
 */
export async function workerListeners(options: Omit<ReceiveListenersOptions, 'acknowledge'> & { fd?: number } = {}): Promise<WorkerHandoff> {
  const fd = options.fd ?? Number(process.env[HANDOFF_FD_ENV] ?? 3)
  const channel = new FrameChannel(UnixSocket.from(fd))
  const { listeners } = await receiveListeners(channel, options)
  return { listeners, channel }
}

/**
 * Options of {@link offerListeners}.
 *
 * @example offerListeners(path, listeners, { allow: (peer) => peer.uid === 0 || peer.uid === process.getuid() })
 */
export interface OfferOptions {
  /** Who may take the listeners (default: a process of the same user). */
  allow?: (peer: Credentials) => boolean
}

function sameUser(peer: Credentials): boolean {
  return peer.uid === process.getuid!()
}

/** Makes sure `dir` exists, belongs to us, and no one else may enter it. */
function privateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = statSync(dir)
  if (!stat.isDirectory() || stat.uid !== process.getuid!() || (stat.mode & 0o077) !== 0) {
    throw stateError(
      'ERR_SENDMSG_UNSAFE_DIRECTORY',
      `${dir} must be a directory of this user that no one else may enter (mode 0700); it is mode 0${(stat.mode & 0o777).toString(8)}, owner ${stat.uid}`,
    )
  }
}

/**
 * Offers listening sockets at a named socket path for another process to take (`takeListeners`):
 * the new version of a supervisor taking over from the old one. The socket file is mode 0600 in a
 * directory only its owner can enter (created if missing), and every peer is checked by its
 * credentials (same user by default). Events: 'handoff' (the peer's credentials; it acknowledged
 * and holds the listeners), 'refused' (a peer that was not allowed, or for which `allow` threw: the
 * error follows the credentials), 'rejected' (a peer that broke the protocol), 'error'. The offer
 * stays open until closed.
 *
 * @example const offer = offerListeners('/run/app/handoff.sock', { http: server }); offer.once('handoff', stop)
 */
export function offerListeners(path: string, listeners: Listeners, options: OfferOptions = {}): ListenerOffer {
  return new ListenerOffer(path, listeners, options)
}

/**
 * Listening sockets offered at a named socket: see {@link offerListeners}.
 *
 * @example offerListeners(path, { http: server }).once('handoff', () => process.exit(0))
 */
export class ListenerOffer extends EventEmitter {
  readonly path: string
  readonly #server: UnixServer
  readonly #listeners: Listeners
  readonly #allow: (peer: Credentials) => boolean
  /** The peers being served, closed with the offer. */
  readonly #channels = new Set<FrameChannel>()
  #closed = false

  constructor(path: string, listeners: Listeners, options: OfferOptions) {
    super()
    listenerEntries(listeners)
    if (options.allow !== undefined && typeof options.allow !== 'function') throw invalidArgType('options.allow', 'a function', options.allow)
    if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path)
    if (path.charCodeAt(0) === 0) {
      throw invalidArgValue('path', path, 'must be a filesystem path: an abstract name has no permissions to keep other users out')
    }
    this.path = path
    this.#listeners = listeners
    this.#allow = options.allow ?? sameUser
    privateDirectory(dirname(path))
    this.#server = UnixServer.listen(path)
    try {
      chmodSync(path, 0o600)
    } catch (error) {
      this.#server.close()
      throw error
    }
    this.#server.on('connection', (socket: UnixSocket) => void this.#serve(socket))
    this.#server.on('error', (error: Error) => this.emit('error', error))
  }

  async #serve(socket: UnixSocket): Promise<void> {
    let peer: Credentials
    try {
      peer = peerCredentials(socket)
    } catch (error) {
      socket.close()
      this.emit('rejected', error)
      return
    }
    let allowed: boolean
    try {
      allowed = this.#allow(peer)
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
    try {
      expectFrame(await channel.next(), 'take')
      await sendListeners(channel, this.#listeners)
      this.emit('handoff', peer)
    } catch (error) {
      if (this.#closed) return
      await channel.send({ ...header('error'), message: (error as Error).message }).catch(() => {})
      this.emit('rejected', error, peer)
    } finally {
      this.#channels.delete(channel)
      channel.close()
    }
  }

  /** Stops offering: removes the socket file and hangs up on peers still being served. */
  close(): void {
    this.#closed = true
    this.#server.close()
    for (const channel of this.#channels) channel.close()
  }
}

/**
 * Options of {@link takeListeners}.
 *
 * @example await takeListeners(path, { expect: ['http'], allow: (peer) => peer.uid === process.getuid() })
 */
export interface TakeOptions extends ReceiveListenersOptions {
  /** Whom to take listeners from (default: a process of the same user). */
  allow?: (peer: Credentials) => boolean
}

/**
 * Takes the listening sockets offered at `path` by `offerListeners`. With `acknowledge: false`
 * the offering process keeps its copies until you call `acknowledge()` (for example once your own
 * workers serve), so that someone accepts connections at every moment.
 *
 * @example const { listeners, acknowledge } = await takeListeners(path, { acknowledge: false })
 */
export async function takeListeners(path: string, options: TakeOptions = {}): Promise<ReceivedHandoff> {
  const socket = await UnixSocket.connect(path)
  const channel = new FrameChannel(socket, { maxFrameSize: 64 * 1024 })
  try {
    const peer = peerCredentials(socket)
    if (!(options.allow ?? sameUser)(peer)) throw handoffError(`the process offering listeners (pid ${peer.pid}, uid ${peer.uid}) is not allowed`)
    await channel.send(header('take'))
  } catch (error) {
    channel.close()
    throw error
  }
  const handoff = await receiveListeners(channel, { ...options, acknowledge: false })
  let done: Promise<void> | undefined
  // Once the kernel has the ack there is nothing more to say or hear: close at once.
  const acknowledge = () => (done ??= handoff.acknowledge().finally(() => channel.close()))
  if (options.acknowledge !== false) await acknowledge()
  return { listeners: handoff.listeners, acknowledge }
}
