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
// one, and rejects with ERR_SENDMSG_HANDOFF. After a taker's ack, the offering side's verdict is
// end-of-file (done: it closed its offer and let go) or an 'error' frame (rolled back: it did not
// take the ack in time, or was closed, and keeps serving); a taker that reads end-of-file without
// a word, or whose ack cannot go because the other side is gone, keeps the listeners. A version 1
// offerer that knows nothing of rollbacks closes after the ack: the same verdict, so both sides
// stay compatible. Written on the public socket API only.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { EventEmitter, once } from 'node:events'

import { listenerProblem } from './bridge'
import { closeFd } from './close'
import { peerCredentials, type Credentials } from './credentials'
import { INT32_MAX, invalidArgType, invalidArgValue, stateError, validateInteger } from './errors'
import { descriptorOf, type DescriptorLike } from './fd'
import { abortError, checkOptionNames, Deadline, timeoutError, waitOptions, WAIT_OPTIONS, type WaitOptions } from './cancellation'
import { FrameChannel, MAX_FDS_PER_FRAME, type Frame } from './frames'
import { peerPidfdIfAny } from './pidfd'
import type { ReceivedFd } from './received-fd'
import { listenAtOfferPath } from './offer-path'
import type { UnixServer } from './server'
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
/** How long a peer that got the listeners may take to acknowledge them, by default (tableflip's upgrade timeout). */
const DEFAULT_ACK_TIMEOUT = 60_000
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
 * peer acknowledges holding them all: from then on the sender may close its copies. With
 * `timeout` or `signal`, a peer that does not acknowledge in time is given up on
 * (ERR_SENDMSG_TIMEOUT, or an AbortError): the sender still holds its listeners.
 *
 * @example await sendListeners(channel, { http: server }, { timeout: 60_000 })
 */
export async function sendListeners(channel: FrameChannel, listeners: Listeners, options?: WaitOptions): Promise<void> {
  const entries = listenerEntries(listeners)
  const { signal, timeout } = waitOptions(checkOptionNames(options, 'options', WAIT_OPTIONS), 'options')
  const deadline = new Deadline({ signal, timeout }, () => timeoutError(`The peer did not acknowledge the listeners within ${timeout} ms`))
  try {
    await sendWithin(channel, entries, deadline)
  } finally {
    deadline.dispose()
  }
}

async function sendWithin(channel: FrameChannel, entries: Array<[string, number]>, deadline: Deadline): Promise<void> {
  deadline.check()
  const names = entries.map(([name]) => name)
  // At least one frame, even for no listeners, so that the peer always gets an answer.
  const batches: Array<Array<[string, number]>> = []
  for (let start = 0; start < entries.length; start += MAX_FDS_PER_FRAME) batches.push(entries.slice(start, start + MAX_FDS_PER_FRAME))
  if (batches.length === 0) batches.push([])
  for (const batch of batches) {
    await channel.send({ ...header('listeners'), names: batch.map(([name]) => name), total: entries.length }, batch.map(([, fd]) => fd))
  }
  const ack = expectFrame(await nextFrame(channel, deadline), 'ack')
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
 * Something a worker serves with and can stop: a net.Server, http.Server, UnixServer, ... Its
 * `close(callback)` stops accepting and calls back once what it serves is finished.
 *
 * @example const drainable: Drainable = http.createServer(app)
 */
export interface Drainable {
  close(callback?: (error?: Error) => void): unknown
  /** http.Server's: closes keep-alive connections that wait for no request, which would keep close() waiting. */
  closeIdleConnections?(): void
}

/**
 * What {@link workerListeners} resolves to.
 *
 * @example const { listeners, channel, drainOnExit }: WorkerHandoff = await workerListeners()
 */
export interface WorkerHandoff<Name extends string = string> {
  listeners: ReceivedListeners<Name>
  /** The channel to the supervisor, for control messages. */
  channel: FrameChannel
  /**
   * Registers a server to drain when the supervisor is gone (the 'drain' policy of
   * `onSupervisorExit`): it stops accepting and finishes what it serves before the process
   * exits. Returns the server.
   */
  drainOnExit<S extends Drainable>(server: S): S
}

/**
 * What a worker does when its supervisor is gone: the channel ended because the supervisor
 * exited, crashed or was killed (even with SIGKILL), so nobody will stop it or restart it.
 * 'drain' (the default): every server given to `drainOnExit` stops accepting and finishes what
 * it serves, then the process exits with code 0 (code 1 if that took longer than
 * `drainTimeout`); with no server registered it exits at once. 'ignore': nothing happens, the
 * worker serves on unsupervised. A function: it is called with the reason
 * (ERR_SENDMSG_SUPERVISOR_GONE) and does what it likes.
 *
 * @example await workerListeners({ onSupervisorExit: (reason) => log(reason.message) })
 */
export type SupervisorExitPolicy = 'drain' | 'ignore' | ((reason: Error) => void)

/**
 * Options of {@link workerListeners}.
 *
 * @example await workerListeners({ expect: ['http'], timeout: 10_000, onSupervisorExit: 'drain' })
 */
export interface WorkerListenersOptions<Name extends string = string> extends Omit<ReceiveListenersOptions<Name>, 'acknowledge'> {
  /** The channel's descriptor (default: SENDMSG_HANDOFF_FD, which spawnWorker sets in the worker's environment). */
  fd?: number
  /** What to do when the supervisor is gone (default 'drain': finish, then exit). */
  onSupervisorExit?: SupervisorExitPolicy
  /** The 'drain' policy's bound, in ms (default 30 s): past it the process exits with code 1 anyway. */
  drainTimeout?: number
}

const WORKER_OPTIONS = ['expect', ...WAIT_OPTIONS, 'fd', 'onSupervisorExit', 'drainTimeout'] as const
/** How long the 'drain' policy lets servers finish, by default. */
const DEFAULT_DRAIN_TIMEOUT = 30_000

/**
 * Watches the channel for the supervisor's end and applies `policy` then. The worker's own
 * `channel.close()` is not the supervisor's end: only the peer hanging up, or the socket failing
 * (ECONNRESET when it died with our messages unread), is.
 */
function watchSupervisor(channel: FrameChannel, policy: SupervisorExitPolicy, drainTimeout: number): (server: Drainable) => void {
  const servers: Drainable[] = []
  let gone = false
  const onGone = (cause?: Error) => {
    if (gone) return
    gone = true
    const reason = stateError('ERR_SENDMSG_SUPERVISOR_GONE', 'The supervisor is gone: its end of the channel closed', cause === undefined ? undefined : { cause })
    if (policy === 'ignore') return
    if (typeof policy === 'function') return policy(reason)
    drainAndExit(servers, drainTimeout)
  }
  channel.on('end', () => onGone())
  channel.socket.on('error', (error: Error) => onGone(error))
  return (server) => void servers.push(server)
}

/** Closes every server, waits for what they serve to finish, and exits (code 1 past the bound). */
function drainAndExit(servers: readonly Drainable[], drainTimeout: number): void {
  if (servers.length === 0) process.exit(0)
  // Not unref'd: the bound must hold even if a server's close never calls back.
  setTimeout(() => process.exit(1), drainTimeout)
  let open = servers.length
  for (const server of servers) {
    server.close(() => {
      if (--open === 0) process.exit(0)
    })
    server.closeIdleConnections?.()
  }
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
 * When the supervisor is gone later, `onSupervisorExit` says what happens: by default the
 * servers given to `drainOnExit` finish what they serve and the process exits (see
 * {@link SupervisorExitPolicy}).
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
  let policy: SupervisorExitPolicy
  let drainTimeout: number
  try {
    const { fd: _fd, onSupervisorExit = 'drain', drainTimeout: bound, ...rest } = checkOptionNames(options, 'options', WORKER_OPTIONS) as WorkerListenersOptions<Name>
    waitOptions(rest as Record<string, unknown>, 'options')
    if (onSupervisorExit !== 'drain' && onSupervisorExit !== 'ignore' && typeof onSupervisorExit !== 'function') {
      throw invalidArgValue('options.onSupervisorExit', onSupervisorExit, "must be 'drain', 'ignore' or a function")
    }
    policy = onSupervisorExit
    drainTimeout = validateInteger(bound ?? DEFAULT_DRAIN_TIMEOUT, 'options.drainTimeout', 0, INT32_MAX)
    receiveOptions = rest
  } catch (error) {
    channel.close()
    throw error
  }
  const { listeners } = await receiveListeners(channel, receiveOptions)
  const drainOnExit = watchSupervisor(channel, policy, drainTimeout)
  return {
    listeners,
    channel,
    drainOnExit<S extends Drainable>(server: S): S {
      drainOnExit(server)
      return server
    },
  }
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
  /**
   * How long a peer that received the listeners may take to acknowledge them, in ms (default 60 s:
   * it may start its own workers first). Then the handoff is rolled back ('rollback',
   * ERR_SENDMSG_TIMEOUT): the peer is told, and the offer keeps its listeners for the next taker.
   */
  ackTimeout?: number
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
  /** A peer acknowledged and holds the listeners: its kernel credentials. The offer is closed by then. */
  handoff: [peer: Credentials]
  /**
   * A peer received the listeners but the handoff did not complete: it hung up or crashed, did
   * not acknowledge within `ackTimeout`, or acknowledged wrongly. The peer was told (if it still
   * listens); the offer still holds its listeners and serves the next taker.
   */
  rollback: [error: Error, peer: Credentials]
  /** A peer that was not allowed; `error` is what `allow` threw, if it threw. */
  refused: [peer: Credentials, error?: unknown]
  /**
   * A peer that broke the protocol, asked for nothing in time, or asked while another peer was
   * taking the listeners; its credentials when they were read. (A peer that hangs up without a
   * word, as one proving the path live does, is not reported.)
   */
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

/**
 * Offers listening sockets at a named socket path for another process to take (`takeListeners`):
 * the new version of a supervisor taking over from the old one. The socket file is born mode 0600
 * in a directory only its owner can enter (created if missing; never a symbolic link, nor reached
 * through another user's), and every peer is checked by its credentials (same user by default),
 * with a pidfd of it on Linux 6.5+ (see {@link PeerIdentity}). On Linux 6.16+ the offer's socket
 * refuses descriptors (SO_PASSRIGHTS off): a peer that sends some gets EPERM.
 * A stale socket file a crashed offerer left at `path` is replaced (proved stale by connecting,
 * then renamed over, never unlinked first); a live offer there, or any other file, makes this
 * throw EADDRINUSE.
 *
 * One peer at a time takes the listeners. Once it acknowledges, the offer closes (its file is
 * removed before the peer hears that the handoff is done, so that the peer may offer at the same
 * path at once: back-to-back upgrades). If it crashes, hangs up or does not acknowledge within
 * `ackTimeout`, the handoff is rolled back: the peer is told, and the offer keeps the listeners
 * and serves the next taker.
 *
 * Events: 'handoff' (the peer's credentials; it acknowledged and holds the listeners), 'rollback'
 * (the error, then the credentials of a peer that got the listeners but did not complete),
 * 'refused' (a peer that was not allowed, or for which `allow` threw: the error follows the
 * credentials), 'rejected' (a peer that broke the protocol, asked for nothing within
 * `handshakeTimeout`, or asked while another was taking: the error, then the credentials),
 * 'error' (the server's, or the offer's `timeout` or `signal`, which close it).
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
  readonly #ackTimeout: number
  /** The peers being served, closed with the offer. */
  readonly #channels = new Set<FrameChannel>()
  /** The one peer taking the listeners now (it holds copies until it acknowledges or the handoff is rolled back). */
  #taker: FrameChannel | undefined
  readonly #signal: AbortSignal | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor(path: string, listeners: Listeners, options?: OfferOptions) {
    super()
    const checked = checkOptionNames(options, 'options', ['allow', 'handshakeTimeout', 'ackTimeout', 'signal', 'timeout']) as OfferOptions
    listenerEntries(listeners)
    if (checked.allow !== undefined && typeof checked.allow !== 'function') throw invalidArgType('options.allow', 'a function', checked.allow)
    const { signal, timeout } = waitOptions(checked as Record<string, unknown>, 'options')
    this.#handshakeTimeout = validateInteger(checked.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT, 'options.handshakeTimeout', 1, INT32_MAX)
    this.#ackTimeout = validateInteger(checked.ackTimeout ?? DEFAULT_ACK_TIMEOUT, 'options.ackTimeout', 1, INT32_MAX)
    if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path)
    if (path.charCodeAt(0) === 0) {
      throw invalidArgValue('path', path, 'must be a filesystem path: an abstract name has no permissions to keep other users out')
    }
    // Nothing is made for an offer given up on before it began.
    if (signal?.aborted) throw abortError(signal.reason)
    this.path = path
    this.#listeners = listeners
    this.#allow = checked.allow ?? sameUser
    this.#server = listenAtOfferPath(path)
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
    try {
      if (!(await this.#handshake(channel, peer))) return
      await this.#handOver(channel, peer)
    } finally {
      this.#channels.delete(channel)
      channel.close()
    }
  }

  /** Waits for the peer's 'take'; whether it asked, and is the one taker now. */
  async #handshake(channel: FrameChannel, peer: Credentials): Promise<boolean> {
    const timeout = this.#handshakeTimeout
    const handshake = new Deadline({ timeout }, () => timeoutError(`The peer asked for no listeners within ${timeout} ms`))
    try {
      expectFrame(await nextFrame(channel, handshake), 'take')
      if (this.#taker !== undefined) throw handoffError('another process is taking the listeners now: try again once it is done')
    } catch (error) {
      if (this.#closed) return false
      // Connected and left without a word: someone proving the path live (lib/offer-path.ts), not a taker.
      if (wentSilently(error)) return false
      await tellPeer(channel, (error as Error).message)
      this.emit('rejected', error as Error, peer)
      return false
    } finally {
      handshake.dispose()
    }
    return !this.#closed
  }

  /**
   * Sends the listeners and waits for the ack: then the offer closes (its file removed, so that
   * the taker may offer at the same path) and the taker reads end-of-file, its sign that the
   * handoff is done. Anything else rolls back: the taker is told why, the offer keeps serving.
   */
  async #handOver(channel: FrameChannel, peer: Credentials): Promise<void> {
    this.#taker = channel
    try {
      await sendListeners(channel, this.#listeners, { timeout: this.#ackTimeout })
    } catch (error) {
      if (this.#taker !== channel) return // closed meanwhile: close() told the taker
      this.#taker = undefined
      if (this.#closed) return
      const rolledBack = handoffError(`the handoff was rolled back: ${(error as Error).message}`, { cause: error })
      await tellPeer(channel, (error as Error).message)
      this.emit('rollback', rolledBack, peer)
      return
    }
    // An ack that arrived after close() told the taker it was rolled back does not count.
    if (this.#taker !== channel) return
    this.#taker = undefined
    this.close()
    this.emit('handoff', peer)
  }

  /**
   * Stops offering: removes the socket file and hangs up on peers still being served. A peer
   * taking the listeners right now is told that the handoff is rolled back (the listeners stay
   * with this process) before it is hung up on.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#server.close()
    const taker = this.#taker
    this.#taker = undefined
    for (const channel of this.#channels) {
      if (channel === taker) void tellPeer(channel, 'the offer was closed before the handoff was done').finally(() => channel.close())
      else channel.close()
    }
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

/** Whether a handshake ended because the peer hung up before sending anything at all. */
function wentSilently(error: unknown): boolean {
  return (error as { cause?: { code?: unknown } } | null)?.cause?.code === 'ERR_SENDMSG_FRAME_CLOSED'
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
 * `acknowledge()` resolves once the offering process has let go: it closed its offer (its socket
 * file is gone, so you may offer at the same path at once), or it is gone (it crashed after
 * sending: then these are the only copies, and yours to keep). It rejects with
 * ERR_SENDMSG_HANDOFF when the handoff was rolled back (you acknowledged after its `ackTimeout`,
 * or it closed the offer): the offering process still serves, and yours are surplus copies to
 * close. With the default `acknowledge: true` a rollback rejects `takeListeners` itself, and
 * the listeners are closed.
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
  const acknowledge = () => (done ??= confirmHandoff(channel, handoff.acknowledge))
  if (receiveOptions.acknowledge !== false) {
    try {
      await acknowledge()
    } catch (error) {
      for (const fd of Object.values<ReceivedFd>(handoff.listeners)) fd.close()
      throw error
    }
  }
  return { listeners: handoff.listeners, acknowledge }
}

/** Whether a failed send or read means that the peer is gone (crashed, or closed its end). */
function peerGone(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause?.code
  return code === 'EPIPE' || code === 'ECONNRESET' || code === 'ENOTCONN' || code === 'ERR_SOCKET_CLOSED' || cause === 'ERR_SENDMSG_FRAME_CLOSED'
}

/**
 * Sends the ack, then waits for the offering process's verdict: end-of-file when it let go (or
 * died), an error frame when it rolled the handoff back. Either way the channel is closed after.
 */
async function confirmHandoff(channel: FrameChannel, acknowledge: () => Promise<void>): Promise<void> {
  try {
    try {
      await acknowledge()
    } catch (error) {
      // It closed its end before our ack went: it died, or it rolled back and said so in a frame
      // that may still wait to be read (a failed send does not stop reading).
      if (!peerGone(error)) throw error
    }
    let verdict: Frame
    try {
      verdict = await nextFrame(channel, undefined)
    } catch (error) {
      // End-of-file without a word: it let go, or died; either way the listeners are ours alone.
      if (peerGone(error)) return
      throw error
    }
    // Nothing is expected but end-of-file: an error frame is a rollback, anything else a broken peer.
    expectFrame(verdict, 'error')
    throw handoffError(`the offering process rolled the handoff back: ${String((verdict.value as Record<string, unknown>).message)}`)
  } finally {
    channel.close()
  }
}
