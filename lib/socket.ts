// UnixSocket: an AF_UNIX socket that lives in the event loop, sends messages with descriptors
// and delivers received ones as 'message' events or through `for await`.
//
// Sending: lib/send-queue.ts owns the queue and its promises.
// Receiving: the binding (crates/sendmsg-napi/src/event_loop/) drains the socket when the loop
// says it is readable and calls `message` once per message, each in its own callback scope. The
// message's descriptors are owned by the binding and closed once its delivery ends, unless taken
// (see ReceivedFd). A message that cannot be delivered now (paused, no listener, a `for await` not
// asking yet) is kept in the backlog, and settled when it is delivered from there.
import { EventEmitter } from 'node:events'

import { ancillaryOf, type AncillaryItem } from './ancillary'
import { addressOf, withAddress } from './address'
import { native } from './binding'
import { chunksOf, totalLength, type Data } from './bytes'
import { constants } from './constants'
import { checkOptionNames, Deadline, timeoutError, waitOptions, WAIT_OPTIONS, type WaitOptions } from './cancellation'
import { invalidArgType, invalidArgValue, stateError, validateInteger } from './errors'
import { descriptorsOf, type DescriptorLike } from './fd'
import { Message, messageFrom, settle } from './message'
import { adoptionSource, descriptorNumber, ReceivedFd, type AdoptionSource } from './received-fd'
import { closedError, SendQueue, type SocketHandle } from './send-queue'
import { sockTypeOf, socketTypeName, type SocketType } from './sync'

/**
 * Options of a {@link UnixSocket}.
 *
 * @example const sock = await UnixSocket.connect('/tmp/app.sock', { maxMessageSize: 1 << 20 })
 */
export interface UnixSocketOptions {
  /**
   * The largest message (datagram, seqpacket) or stream chunk received in one piece, in bytes.
   * Longer datagrams arrive cut short, with MSG_TRUNC in `flags`. Default 65536.
   */
  maxMessageSize?: number
  /**
   * Stream and seqpacket: keep the sending side open after the peer has ended. Default false: once
   * the peer ends, the socket finishes its queued sends and closes.
   */
  allowHalfOpen?: boolean
  /**
   * Linux: have the kernel attach the sender's credentials to every message received
   * (SO_PASSCRED); read them as `message.credentials`. Default false.
   */
  passCredentials?: boolean
  /**
   * Linux 6.5+: have the kernel attach a pidfd of the sender to every message received
   * (SO_PASSPIDFD); it arrives as `message.pidfd`, owned like `message.fds`. Default false.
   * ERR_SENDMSG_UNSUPPORTED on older kernels and elsewhere.
   */
  passPidfd?: boolean
  /**
   * Linux 6.16+: with false, the socket refuses descriptors (SO_PASSRIGHTS off): a peer that sends
   * some gets EPERM and none arrives. On a server, every accepted connection refuses them, from
   * before it is accepted (with `UnixServer.from`, those made after the adoption). Default true.
   * ERR_SENDMSG_UNSUPPORTED for false on older kernels and elsewhere.
   */
  passRights?: boolean
}

const SOCKET_OPTIONS = ['maxMessageSize', 'allowHalfOpen', 'passCredentials', 'passPidfd', 'passRights'] as const

/**
 * Options of {@link UnixSocket.connect}: the socket's type and options, and when to give up.
 *
 * @example const sock = await UnixSocket.connect('/tmp/app.sock', { type: 'seqpacket', timeout: 5000 })
 */
export interface ConnectOptions extends UnixSocketOptions, WaitOptions {
  /** 'stream' (default), 'seqpacket' or 'dgram'. */
  type?: SocketType
}

const CONNECT_OPTIONS = [...SOCKET_OPTIONS, 'type', ...WAIT_OPTIONS] as const

/**
 * The events of a {@link UnixSocket} and what their listeners get.
 *
 * @example sock.on('message', (msg) => console.log(msg.data.length))
 */
export interface UnixSocketEvents {
  /** A message arrived. */
  message: [message: Message]
  /** The messages one receive brought, for throughput; with a listener here, 'message' is not emitted. */
  messages: [batch: Message[]]
  /** The peer finished sending (after every message it sent was delivered). */
  end: []
  /** Queued sends went out. */
  drain: []
  /** A receive error, or the error given to `destroy()`; 'close' follows. */
  error: [error: Error]
  /** The socket closed. */
  close: []
}

/**
 * What travels with a message besides its data.
 *
 * @example await sock.send('ready', { fds: [server] })
 */
export interface SendOptions {
  /**
   * Descriptors to copy to the peer: numbers, ReceivedFds, or objects that own one (a net.Server,
   * a UnixSocket, ...). They travel with the message's first byte; they stay yours: close them
   * once the send's promise settles if you no longer need them.
   */
  fds?: readonly DescriptorLike[]
  /** Other control messages, as `[level, type, data]` triples (for example SCM_CREDENTIALS). */
  ancillary?: readonly AncillaryItem[]
}

/** Received messages buffered (paused, or ahead of a slow `for await`) before reading stops. */
const BACKLOG_HIGH_WATER = 64
const DEFAULT_MAX_MESSAGE_SIZE = 65536
const MSG_CTRUNC = constants.MSG_CTRUNC
const MAX_MESSAGE_SIZE = 64 * 1024 * 1024

/**
 * A socket that is open but unreachable and idle (not reading, nothing queued) can never be used
 * again: the binding closes its descriptor when it is collected, and this says so, as Node does
 * for a FileHandle collected while open.
 */
/** @internal */
export const collectedWhileOpen = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`${what} was garbage-collected while open, so its descriptor was closed. Close sockets with close().`, {
    code: 'SENDMSG_SOCKET_COLLECTED',
  })
})

type Waiter = { all: boolean; resolve: (result: IteratorResult<Message[]>) => void; reject: (error: Error) => void }

/**
 * - `connecting`: a connect() is in progress.
 * - `open`.
 * - `closed`: the descriptor is closed; methods stay defined and do nothing (sends reject).
 */
type Lifecycle = 'connecting' | 'open' | 'closed'
/**
 * The receiving direction: `open` until the peer's end of file (`ended`, once every buffered
 * message was delivered) or a receive error (`failed`).
 */
type ReadState = 'open' | 'ended' | 'failed'
/** How messages are consumed: 'message' events, or an async iterator. */
type Consumer = 'events' | 'iterator'
/** The sending direction as `end()` sees it. */
type EndState = 'open' | 'ending' | 'ended'

/** Checks a socket's options; `known` are the other option names the caller takes (and stripped). */
/** @internal */
export function validateSocketOptions(options: unknown, known: readonly string[] = SOCKET_OPTIONS): Required<UnixSocketOptions> {
  if (options === undefined) return DEFAULT_SOCKET_OPTIONS
  const {
    maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE,
    allowHalfOpen = false,
    passCredentials = false,
    passPidfd = false,
    passRights = true,
  } = checkOptionNames(options, 'options', known) as UnixSocketOptions
  validateInteger(maxMessageSize, 'options.maxMessageSize', 1, MAX_MESSAGE_SIZE)
  if (typeof allowHalfOpen !== 'boolean') throw invalidArgType('options.allowHalfOpen', 'of type boolean', allowHalfOpen)
  if (typeof passCredentials !== 'boolean') throw invalidArgType('options.passCredentials', 'of type boolean', passCredentials)
  if (typeof passPidfd !== 'boolean') throw invalidArgType('options.passPidfd', 'of type boolean', passPidfd)
  if (typeof passRights !== 'boolean') throw invalidArgType('options.passRights', 'of type boolean', passRights)
  return { maxMessageSize, allowHalfOpen, passCredentials, passPidfd, passRights }
}

const DEFAULT_SOCKET_OPTIONS: Required<UnixSocketOptions> = Object.freeze({
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  allowHalfOpen: false,
  passCredentials: false,
  passPidfd: false,
  passRights: true,
})

/**
 * Internal: sets the kernel options among `options` on `fd`, before a socket is opened on it (so
 * that its first message has them) or, for a server, before it listens (so that every connection
 * starts with them). Only what differs from the kernel's defaults is set: a default never fails
 * on a kernel that lacks the option.
 */
/** @internal */
export function applyKernelOptions(fd: number, options: Required<UnixSocketOptions>): void {
  if (options.passCredentials) native.setPassCredentials(fd, true)
  if (options.passPidfd) native.setPassPidfd(fd, true)
  if (!options.passRights) native.setPassRights(fd, false)
}

function fdNumbersOf(fds: unknown): number[] | undefined {
  if (fds === undefined) return undefined
  const numbers = descriptorsOf(fds, 'options.fds')
  return numbers.length === 0 ? undefined : numbers
}

/** Set by `openSocket` for the constructor it calls. */
let opening: { from: AdoptionSource; type: SocketType; options: Required<UnixSocketOptions> } | undefined

/** Set once the class is defined: the private constructor, for `openSocket`. */
let construct: () => UnixSocket

/**
 * An AF_UNIX socket in the event loop: 'stream', 'seqpacket' or 'dgram'.
 *
 * Events ({@link UnixSocketEvents}): `'message'` (a {@link Message}), `'end'` (the peer finished
 * sending), `'drain'` (queued sends went out), `'error'`, `'close'`.
 *
 * @example
 * const [a, b] = UnixSocket.pair('seqpacket')
 * b.on('message', (msg) => console.log(msg.data.toString(), msg.fds.length))
 * await a.send('hello', { fds: [process.stdout.fd] })
 */
export class UnixSocket extends EventEmitter<UnixSocketEvents> implements AsyncIterable<Message>, Disposable, AsyncDisposable {
  readonly #type: SocketType
  readonly #handle: SocketHandle
  readonly #fd: number
  readonly #allowHalfOpen: boolean
  readonly #sends: SendQueue
  #lifecycle: Lifecycle = 'open'
  #connecting: { resolve: () => void; reject: (error: Error) => void } | undefined
  #endState: EndState = 'open'
  #ended: Promise<void> | undefined
  #endResolve: (() => void) | undefined

  #readState: ReadState = 'open'
  #readError: Error | undefined
  /** The peer's end of file arrived (it is emitted once the backlog is delivered). */
  #peerEnded = false
  #endEmitted = false
  #consumer: Consumer = 'events'
  #paused = false
  /** Whether the binding is asked to read now (derived: see #wantsToRead). */
  #reading = false
  #backlog: Message[] = []
  #backlogScheduled = false
  #waiter: Waiter | undefined
  /** What the iterator gave out last: its delivery ends when the loop asks for the next. */
  #iterated: Message[] = []
  /** Whether the binding delivers in batches (see #updateDelivery). */
  #batched = false
  /** The messages of the receive being delivered, for 'messages'. */
  #batch: Message[] = []
  #warnedLostFds = false

  /** Use {@link UnixSocket.pair}, {@link UnixSocket.connect}, {@link UnixSocket.datagram} or {@link UnixSocket.from}. */
  private constructor() {
    super()
    const args = opening
    opening = undefined
    if (args === undefined) throw stateError('ERR_ILLEGAL_CONSTRUCTOR', 'Use UnixSocket.pair(), connect(), datagram() or from()')
    this.#type = args.type
    this.#allowHalfOpen = args.options.allowHalfOpen
    // Owned by the binding from here on; if opening fails, it is still where it came from.
    const { source, index } = args.from
    this.#handle = native.socketOpen(source, index, { type: args.type, listening: false, maxMessageSize: args.options.maxMessageSize }, this, UnixSocket.#events)
    this.#fd = native.socketFd(this.#handle)
    this.#sends = new SendQueue(this.#handle, args.type, {
      drained: () => this.emit('drain'),
      emptied: () => this.#afterSendsDone(),
    })
    collectedWhileOpen.register(this, `A ${args.type} UnixSocket (fd ${this.#fd})`, this)
    // Node's own events, which the typed map of the socket's events leaves out.
    const emitter = this as EventEmitter
    emitter.on('newListener', (event) => {
      if (event === 'message' || event === 'messages') queueMicrotask(() => this.#updateReading())
    })
    emitter.on('removeListener', (event) => {
      if (event === 'message' || event === 'messages') this.#updateReading()
    })
  }

  /**
   * A connected pair of sockets, both in the event loop. Both ends are non-blocking, and a process
   * that inherits one inherits that too: to give a child a plain (blocking) end, make the pair with
   * `socketpair()` and adopt only yours with `UnixSocket.from()`.
   *
   * @example const [parent, child] = UnixSocket.pair('seqpacket')
   */
  static pair(type: SocketType = 'stream', options?: UnixSocketOptions): [UnixSocket, UnixSocket] {
    const checked = validateSocketOptions(options)
    const [a, b] = native.socketpair(sockTypeOf(type), true) as [number, number]
    let first: UnixSocket
    try {
      first = openFresh(a, type, checked)
    } catch (error) {
      native.closeFd(b)
      throw error
    }
    return [first, openFresh(b, type, checked)]
  }

  /**
   * Connects to a listening (stream, seqpacket) or bound (dgram) socket at `path`; on Linux a
   * path starting with '\0' is an abstract name. A refusal is worded as Node's (`connect ENOENT
   * /run/app.sock`, with `code`, `syscall` and `address`). With `signal` or `timeout` a connect
   * still under way is given up (AbortError, ERR_SENDMSG_TIMEOUT) and its socket closed.
   *
   * @example const sock = await UnixSocket.connect('/run/app.sock', { type: 'seqpacket', timeout: 5000 })
   */
  static async connect(path: string, options?: ConnectOptions): Promise<UnixSocket> {
    // Every argument is checked before the descriptor exists: nothing to leak when one is wrong.
    const { type = 'stream', signal, timeout, ...socketOptions } = checkOptionNames(options, 'options', CONNECT_OPTIONS) as ConnectOptions
    const sockType = sockTypeOf(type, 'options.type')
    const wait = waitOptions({ signal, timeout }, 'options')
    const address = addressOf(path)
    const checked = validateSocketOptions(socketOptions)
    const deadline = new Deadline(wait, () => timeoutError(`connect timed out after ${timeout} ms: ${path}`))
    try {
      deadline.check()
      const socket = openFresh(native.unixSocket(sockType), type, checked)
      try {
        if (!native.socketConnect(socket.#handle, address)) await deadline.race(socket.#waitConnected(), () => {})
      } catch (error) {
        socket.close()
        throw deadline.reason(withAddress(error as Error, 'connect', path))
      }
      return socket
    } finally {
      deadline.dispose()
    }
  }

  /**
   * A datagram socket, bound to `path` when given (so that peers can reply to it). Send with
   * {@link UnixSocket.sendTo}.
   *
   * @example const server = UnixSocket.datagram('/tmp/app.dgram')
   */
  static datagram(path?: string, options?: UnixSocketOptions): UnixSocket {
    const checked = validateSocketOptions(options)
    const address = path === undefined ? undefined : addressOf(path)
    const socket = openFresh(native.unixSocket(constants.SOCK_DGRAM), 'dgram', checked)
    if (address !== undefined) {
      try {
        native.bindUnix(socket.#fd, address)
      } catch (error) {
        socket.close()
        throw withAddress(error as Error, 'bind', path!)
      }
    }
    return socket
  }

  /**
   * Adopts an open AF_UNIX socket descriptor (for example fd 3 that a supervisor passed to this
   * process, or a ReceivedFd): the socket owns it from now on and makes it non-blocking.
   *
   * @example const channel = UnixSocket.from(3)
   */
  static from(fd: number | ReceivedFd, options?: UnixSocketOptions): UnixSocket {
    const checked = validateSocketOptions(options)
    const number = descriptorNumber(fd)
    const description = native.describeSocket(number)
    if (description.family !== constants.AF_UNIX) {
      throw invalidArgValue('fd', number, 'is not an AF_UNIX socket')
    }
    if (description.listening) throw invalidArgValue('fd', number, 'is a listening socket: use UnixServer.from()')
    const type = socketTypeName(description.type)
    if (type === undefined) throw invalidArgValue('fd', number, 'is not a stream, seqpacket or dgram socket')
    // Adopted only if opening succeeds: otherwise the number (or the ReceivedFd) is still yours.
    return openSocket(adoptionSource(fd), type, checked)
  }

  /** 'stream', 'seqpacket' or 'dgram'. */
  get type(): SocketType {
    return this.#type
  }

  /** The descriptor, still owned by the socket; -1 once closed. */
  get fd(): number {
    return this.#lifecycle === 'closed' ? -1 : this.#fd
  }

  get closed(): boolean {
    return this.#lifecycle === 'closed'
  }

  /** Bytes queued and not yet taken by the kernel. */
  get writableLength(): number {
    return this.#sends.length
  }

  /** This socket's address; undefined when unnamed. */
  get localAddress(): string | undefined {
    if (this.closed) return undefined
    return native.localAddress(this.#fd)?.toString('utf8') ?? undefined
  }

  /** The connected peer's address; undefined when unnamed or unconnected. */
  get remoteAddress(): string | undefined {
    if (this.closed) return undefined
    try {
      return native.peerAddress(this.#fd)?.toString('utf8') ?? undefined
    } catch {
      return undefined
    }
  }

  // Sending -----------------------------------------------------------------------------------

  /**
   * Sends one message. Resolves when the kernel has taken all of it; rejects with a Node-style
   * error (EPIPE, ECONNREFUSED, ERR_SOCKET_CLOSED, ...). Wrong arguments throw at once.
   *
   * @example await sock.send('ready', { fds: [listener] })
   */
  send(data: Data, options?: SendOptions): Promise<void> {
    return this.#enqueue(data, options, undefined)
  }

  /**
   * Datagram sockets: sends one message to `path`.
   *
   * When the receiver's queue is full the message waits, and so do the messages queued after it.
   * The kernel gives no readiness event for another socket's queue, so the send is retried after
   * 1 ms, then after delays doubling up to 50 ms. A connected socket's send() needs no retries.
   *
   * @example await sock.sendTo('/tmp/peer.dgram', 'ping')
   */
  sendTo(path: string, data: Data, options?: SendOptions): Promise<void> {
    if (this.#type !== 'dgram') throw stateError('ERR_SOCKET_BAD_TYPE', 'sendTo() is for datagram sockets; use send()')
    return this.#enqueue(data, options, addressOf(path))
  }

  #enqueue(data: Data, options: SendOptions | undefined, address: Uint8Array | undefined): Promise<void> {
    const parts = chunksOf(data, 'data')
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options)
      // A hot path: a loop over the (one or two) keys rather than checkOptionNames' list search.
      for (const key in options) {
        if (key !== 'fds' && key !== 'ancillary') throw invalidArgValue('options', key, `has an unknown option '${key}' (known: fds, ancillary)`)
      }
    }
    const fds = fdNumbersOf(options?.fds)
    const ancillary = options?.ancillary === undefined ? undefined : ancillaryOf(options.ancillary, 'options.ancillary')
    const length = totalLength(parts)
    if (this.#type === 'stream' && length === 0) {
      if (fds !== undefined || ancillary !== undefined) {
        throw invalidArgValue('data', data, 'must not be empty when descriptors or control messages are sent on a stream socket: the kernel would drop them')
      }
      return this.closed ? Promise.reject(closedError()) : Promise.resolve()
    }
    if (this.closed) return Promise.reject(closedError())
    if (this.#endState !== 'open') return Promise.reject(stateError('ERR_STREAM_WRITE_AFTER_END', 'write after end'))
    return this.#sends.push({ parts, length, fds, ancillary, address })
  }

  /**
   * Finishes sending: queued messages go out, then the peer reads end-of-file (stream,
   * seqpacket). Further sends reject.
   */
  end(): Promise<void> {
    if (this.#ended !== undefined) return this.#ended
    this.#ended = new Promise<void>((resolve) => (this.#endResolve = resolve))
    this.#endState = 'ending'
    if (this.closed || this.#sends.isEmpty) this.#afterSendsDone()
    return this.#ended
  }

  /** The send queue is empty: finish an end(), and close a socket whose peer has ended. */
  #afterSendsDone(): void {
    if (this.#endState === 'ending') {
      this.#endState = 'ended'
      if (this.#type !== 'dgram' && this.#sends.error === undefined && !this.closed) {
        try {
          native.socketShutdown(this.#handle)
        } catch {
          // The peer is gone; ending is moot.
        }
      }
      this.#endResolve!()
    }
    if (this.#endEmitted && !this.#allowHalfOpen) this.close()
  }

  #waitConnected(): Promise<void> {
    this.#lifecycle = 'connecting'
    return new Promise<void>((resolve, reject) => {
      this.#connecting = { resolve, reject }
    })
  }

  #onWritable(): void {
    const connecting = this.#connecting
    if (connecting === undefined) return this.#sends.writable()
    this.#connecting = undefined
    this.#lifecycle = 'open'
    try {
      native.socketFinishConnect(this.#handle)
      connecting.resolve()
    } catch (error) {
      connecting.reject(error as Error)
    }
  }

  // Receiving ---------------------------------------------------------------------------------

  /** Stops delivering messages until {@link UnixSocket.resume}; what already arrived waits. */
  pause(): this {
    this.#paused = true
    this.#updateReading()
    return this
  }

  resume(): this {
    this.#paused = false
    if (this.#backlog.length > 0) this.#scheduleBacklog()
    this.#updateReading()
    return this
  }

  /** Whether {@link UnixSocket.pause} stopped the deliveries, as Node's streams' `isPaused()`. */
  isPaused(): boolean {
    return this.#paused
  }

  #wantsToRead(): boolean {
    if (this.closed || this.#peerEnded || this.#readState !== 'open') return false
    if (this.#consumer === 'iterator') return this.#backlog.length < BACKLOG_HIGH_WATER
    return !this.#paused && this.#backlog.length === 0 && this.#hasListeners()
  }

  #hasListeners(): boolean {
    return this.listenerCount('message') > 0 || this.listenerCount('messages') > 0
  }

  #updateReading(): void {
    this.#updateDelivery()
    const want = this.#wantsToRead()
    if (want === this.#reading) return
    this.#reading = want
    native.socketSetReading(this.#handle, want)
  }

  /**
   * One callback scope per message is what 'message' handlers are promised; consumers that only
   * collect (an iterator, 'messages' batches) get the batch's messages with plain calls and one
   * scope after them.
   */
  #updateDelivery(): void {
    const batched = this.#consumer === 'iterator' || this.listenerCount('messages') > 0
    if (batched === this.#batched || this.closed) return
    this.#batched = batched
    native.socketSetBatched(this.#handle, batched)
  }

  /** A message arrived. Returns whether it is kept for a later delivery (then settled by us). */
  #onMessage(message: Message): boolean {
    if ((message.flags & MSG_CTRUNC) !== 0) this.#warnLostFds()
    const waiter = this.#waiter
    if (waiter !== undefined && !waiter.all) {
      this.#waiter = undefined
      this.#iterated = [message]
      waiter.resolve({ value: this.#iterated, done: false })
      return true
    }
    if (this.#consumer === 'iterator' || this.#paused || this.#backlog.length > 0 || !this.#hasListeners()) {
      this.#backlog.push(message)
      if (this.#backlog.length >= BACKLOG_HIGH_WATER || this.#consumer !== 'iterator') this.#updateReading()
      return true
    }
    if (this.#batched) {
      // Delivered with the rest of this receive, in #onBatchEnd, and settled after that.
      this.#batch.push(message)
      return true
    }
    this.emit('message', message)
    return false
  }

  /** The end of a batched delivery: the messages collected go out together. */
  #onBatchEnd(): void {
    const waiter = this.#waiter
    if (waiter !== undefined && this.#backlog.length > 0) {
      // A batches() iterator waiting: it takes everything that arrived.
      this.#waiter = undefined
      this.#iterated = this.#backlog.splice(0)
      this.#updateReading()
      waiter.resolve({ value: this.#iterated, done: false })
      return
    }
    if (this.#batch.length === 0) return
    const batch = this.#batch
    this.#batch = []
    if (this.listenerCount('messages') === 0) {
      // Its listener went away during the receive: these wait for whoever comes next.
      this.#backlog.unshift(...batch)
      this.#scheduleBacklog()
      this.#updateReading()
      return
    }
    try {
      this.emit('messages', batch)
    } finally {
      // Once the handlers and the microtasks they queued have run.
      setImmediate(settleAll, batch)
    }
  }

  /**
   * The receive buffer holds a full message's descriptors, so MSG_CTRUNC here means the kernel
   * could not install them all: the process is at its descriptor limit (RLIMIT_NOFILE) and the
   * rest were dropped. The message's `flags` and `truncated` say so; this warning (once per
   * socket) tells those who do not look, since nothing else would.
   */
  #warnLostFds(): void {
    if (this.#warnedLostFds) return
    this.#warnedLostFds = true
    process.emitWarning(
      `A ${this.#type} UnixSocket (fd ${this.#fd}) received a message whose descriptors did not all arrive (MSG_CTRUNC): ` +
        'the process is probably at its descriptor limit (RLIMIT_NOFILE). Check message.truncated.',
      { code: 'SENDMSG_FDS_TRUNCATED' },
    )
  }

  #scheduleBacklog(): void {
    if (this.#backlogScheduled || this.#consumer === 'iterator') return
    this.#backlogScheduled = true
    setImmediate(this.#deliverBacklog)
  }

  /** One buffered message per turn of the loop, so that each handler's microtasks run before the next. */
  readonly #deliverBacklog = (): void => {
    this.#backlogScheduled = false
    if (this.closed || this.#paused || this.#consumer === 'iterator') return
    if (!this.#hasListeners()) return
    const batch = this.listenerCount('messages') > 0 ? this.#backlog.splice(0) : this.#backlog.splice(0, 1)
    if (batch.length > 0) {
      try {
        if (this.listenerCount('messages') > 0) this.emit('messages', batch)
        else this.emit('message', batch[0]!)
      } finally {
        // Settled once the handler's microtasks have run, as for messages straight off the socket.
        setImmediate(settleAll, batch)
      }
    }
    if (this.#backlog.length > 0) this.#scheduleBacklog()
    else if (this.#peerEnded) this.#emitEnd()
    else this.#updateReading()
  }

  #onEnd(): void {
    this.#peerEnded = true
    this.#reading = false
    if (this.#backlog.length === 0 || this.#consumer === 'iterator') this.#emitEnd()
  }

  #emitEnd(): void {
    if (this.#endEmitted) return
    if (this.#consumer === 'iterator' && this.#backlog.length > 0) return
    this.#endEmitted = true
    this.#readState = 'ended'
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.resolve({ value: undefined, done: true })
    this.emit('end')
    if (!this.#allowHalfOpen && !this.closed) {
      if (this.#sends.isEmpty) this.close()
      else void this.end()
    }
  }

  #onError(error: Error): void {
    this.#readState = 'failed'
    this.#readError = error
    this.#reading = false
    const waiter = this.#waiter
    this.#waiter = undefined
    if (waiter !== undefined) waiter.reject(error)
    else if (this.#consumer !== 'iterator' || this.listenerCount('error') > 0) this.emit('error', error)
    this.close()
  }

  /**
   * Iterates over received messages. A message's unclaimed descriptors are closed when the loop
   * asks for the next one (or stops). Ends when the peer does; throws on a receive error. Leaving
   * the loop early (`break`, `return`, a throw) closes the socket, as it destroys Node's streams.
   *
   * @example for await (const msg of sock) handle(msg.data, msg.fds)
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    const batches = this.#iterate(false)
    const iterator: AsyncIterableIterator<Message> = {
      next: async () => {
        const result = await batches.next()
        return result.done ? result : { value: result.value[0]!, done: false }
      },
      return: async () => {
        await batches.return!()
        return { value: undefined, done: true }
      },
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  /**
   * Iterates over received messages in batches: each step gives every message that has arrived
   * (at least one), for throughput. The batch's unclaimed descriptors are closed when the loop
   * asks for the next batch (or stops). Ends when the peer does; throws on a receive error.
   *
   * @example for await (const batch of sock.batches()) for (const msg of batch) handle(msg.data, msg.fds)
   */
  batches(): AsyncIterableIterator<Message[]> {
    return this.#iterate(true)
  }

  #iterate(all: boolean): AsyncIterableIterator<Message[]> {
    if (this.#consumer === 'iterator') throw stateError('ERR_SENDMSG_ALREADY_ITERATING', 'This socket already has an active iterator')
    this.#consumer = 'iterator'
    this.#updateReading()
    const settlePrevious = () => {
      const previous = this.#iterated
      this.#iterated = []
      settleAll(previous)
    }
    const stop = (): IteratorResult<Message[]> => {
      settlePrevious()
      if (this.#consumer === 'iterator') {
        this.#consumer = 'events'
        this.#updateReading()
        if (this.#backlog.length > 0) this.#scheduleBacklog()
      }
      return { value: undefined, done: true }
    }
    const iterator: AsyncIterableIterator<Message[]> = {
      next: async () => {
        settlePrevious()
        if (this.#consumer !== 'iterator') return { value: undefined, done: true }
        const result = await this.#pull(all)
        if (result.done) stop()
        return result
      },
      return: async () => {
        const result = stop()
        this.close()
        return result
      },
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  #pull(all: boolean): Promise<IteratorResult<Message[]>> {
    if (this.#backlog.length > 0) {
      this.#iterated = all ? this.#backlog.splice(0) : this.#backlog.splice(0, 1)
      this.#updateReading()
      return Promise.resolve({ value: this.#iterated, done: false })
    }
    if (this.#readError) return Promise.reject(this.#readError)
    if (this.#peerEnded || this.closed) {
      this.#emitEnd()
      return Promise.resolve({ value: undefined, done: true })
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { all, resolve, reject }
    })
  }

  // Lifetime ----------------------------------------------------------------------------------

  /**
   * Closes the socket now: queued sends reject with ERR_SOCKET_CLOSED, buffered messages' descriptors
   * close, 'close' follows. Idempotent.
   */
  close(): void {
    this.#close(undefined)
  }

  #close(error: Error | undefined): void {
    if (this.closed) return
    this.#lifecycle = 'closed'
    this.#reading = false
    native.socketClose(this.#handle)
    collectedWhileOpen.unregister(this)
    this.#sends.close()
    this.#connecting?.reject(closedError())
    this.#connecting = undefined
    this.#endResolve?.()
    settleAll(this.#backlog.splice(0))
    settleAll(this.#iterated)
    this.#iterated = []
    settleAll(this.#batch)
    this.#batch = []
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.resolve({ value: undefined, done: true })
    process.nextTick(() => {
      if (error !== undefined) this.emit('error', error)
      this.emit('close')
    })
  }

  /**
   * Closes the socket as `close()` does, after emitting `error` as 'error' if given (Node's
   * `socket.destroy(error)`): 'error', then 'close'. Idempotent.
   *
   * @example sock.destroy(new Error('protocol violation'))
   */
  destroy(error?: Error): this {
    if (error !== undefined && !(error instanceof Error)) throw invalidArgType('error', 'an instance of Error', error)
    this.#close(error)
    return this
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** Lets the process exit while this socket is open (it still works while the process runs). */
  unref(): this {
    if (!this.closed) native.socketSetReferenced(this.#handle, false)
    this.#sends.setReferenced(false)
    return this
  }

  /** Undoes {@link UnixSocket.unref}. */
  ref(): this {
    if (!this.closed) native.socketSetReferenced(this.#handle, true)
    this.#sends.setReferenced(true)
    return this
  }

  /** What the binding calls, with `this` = the socket (see SocketEvents in binding.d.ts). */
  static readonly #events = {
    message(this: UnixSocket, ...args: Parameters<typeof messageFrom>): boolean {
      this.#sends.newTask()
      return this.#onMessage(messageFrom(...args))
    },
    batchEnd(this: UnixSocket): void {
      this.#sends.newTask()
      this.#onBatchEnd()
    },
    writable(this: UnixSocket): void {
      this.#onWritable()
    },
    end(this: UnixSocket): void {
      this.#onEnd()
    },
    error(this: UnixSocket, error: Error): void {
      this.#onError(error)
    },
  }

  static {
    construct = () => new UnixSocket()
  }
}


/**
 * Internal: a UnixSocket on the descriptor `from` names, which it owns from then on. If opening
 * fails, the descriptor is left where it was (the caller's number, or the ReceivedFd's slot).
 */
/** @internal */
export function openSocket(from: AdoptionSource, type: SocketType, options: Required<UnixSocketOptions>): UnixSocket {
  // Before the binding owns the descriptor (a kernel without an option: then nothing was adopted).
  applyKernelOptions(from.index < 0 ? from.source : native.receivedFdNumber(from.source, from.index), options)
  opening = { from, type, options }
  try {
    return construct()
  } finally {
    opening = undefined
  }
}

/** A UnixSocket on a descriptor this package just made: closed if the socket cannot be opened. */
function openFresh(fd: number, type: SocketType, options: Required<UnixSocketOptions>): UnixSocket {
  try {
    return openSocket({ source: fd, index: -1 }, type, options)
  } catch (error) {
    native.closeFd(fd)
    throw error
  }
}

function settleAll(messages: readonly Message[]): void {
  for (const message of messages) settle(message)
}
