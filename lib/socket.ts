// UnixSocket: an AF_UNIX socket that lives in the event loop, sends messages with descriptors
// and delivers received ones as 'message' events or through `for await`.
//
// Sending: send() queues the message and a microtask flushes the queue, so messages sent in the
// same tick go out together (sendmmsg, or one gathered sendmsg per run on a stream). What the
// kernel cannot take yet waits for the socket to become writable. Each send's promise settles when
// the kernel has taken the whole message.
//
// Receiving: the native half drains the socket when the loop says it is readable and calls
// #onMessage once per message, each in its own callback scope. A message's descriptors are
// closed after its handler unless taken (see ReceivedFd).
import { EventEmitter } from 'node:events'

import { ancillaryOf, type AncillaryItem } from './ancillary'
import { addressOf, withAddress } from './address'
import { native } from './binding'
import { chunksOf, totalLength, type Data } from './bytes'
import { constants } from './constants'
import { invalidArgType, invalidArgValue, isIntegerIn, stateError, validateArray, validateInteger, INT32_MAX } from './errors'
import { EVENT, kHasFds, kMaterialize, kUnclaimed, Message, messageFrom } from './message'
import { descriptorNumber, ReceivedFd, takeDescriptor } from './received-fd'
import { sockTypeOf, type SocketType } from './sync'

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
}

/**
 * What travels with a message besides its data.
 *
 * @example await sock.send('ready', { fds: [listener.fd] })
 */
export interface SendOptions {
  /**
   * Descriptors to copy to the peer, as numbers or ReceivedFd objects. They travel with the
   * message's first byte; keep them open until the send's promise settles, then close them if you
   * no longer need them.
   */
  fds?: readonly (number | ReceivedFd)[]
  /** Other control messages, as `[level, type, data]` triples (for example SCM_CREDENTIALS). */
  ancillary?: readonly AncillaryItem[]
}

interface PendingSend {
  parts: Uint8Array[]
  length: number
  /** Bytes already taken by the kernel (a stream's partial write). */
  sent: number
  fds: readonly number[]
  ancillary: Array<[number, number, Uint8Array]> | undefined
  address: Uint8Array | undefined
  resolve: () => void
  reject: (error: Error) => void
}

/** Received messages buffered (paused, or ahead of a slow `for await`) before reading stops. */
const BACKLOG_HIGH_WATER = 64
/** Queued messages handed to the kernel per native call, at most and at first. */
const SEND_BATCH_MAX = 256
const SEND_BATCH_MIN = 8
/**
 * Retry delays, in ms, for a datagram sent to an address whose receiver is full: the kernel reports
 * an unconnected socket writable whatever the receiver's queue holds, so there is no readiness
 * event to wait for there.
 */
const ADDRESSED_RETRY_FIRST_MS = 1
const ADDRESSED_RETRY_MAX_MS = 50
const DEFAULT_MAX_MESSAGE_SIZE = 65536
const MSG_CTRUNC = constants.MSG_CTRUNC
const MAX_MESSAGE_SIZE = 64 * 1024 * 1024

export const kInternal = Symbol('internal')

/**
 * A socket that is open but unreachable and idle (not reading, nothing queued) can never be used
 * again: the native side closes its descriptor when it is collected, and this says so, as Node does
 * for a FileHandle collected while open.
 */
export const collectedWhileOpen = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`${what} was garbage-collected while open, so its descriptor was closed. Close sockets with close().`, {
    code: 'SENDMSG_SOCKET_COLLECTED',
  })
})

type Waiter = { resolve: (result: IteratorResult<Message>) => void; reject: (error: Error) => void }

function validateOptions(options: unknown): Required<UnixSocketOptions> {
  if (options === undefined) return { maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE, allowHalfOpen: false, passCredentials: false }
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options)
  const { maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE, allowHalfOpen = false, passCredentials = false } = options as UnixSocketOptions
  validateInteger(maxMessageSize, 'options.maxMessageSize', 1, MAX_MESSAGE_SIZE)
  if (typeof allowHalfOpen !== 'boolean') throw invalidArgType('options.allowHalfOpen', 'of type boolean', allowHalfOpen)
  if (typeof passCredentials !== 'boolean') throw invalidArgType('options.passCredentials', 'of type boolean', passCredentials)
  return { maxMessageSize, allowHalfOpen, passCredentials }
}

const NO_FDS: readonly number[] = Object.freeze([])

function fdNumbersOf(fds: unknown): readonly number[] {
  if (fds === undefined) return NO_FDS
  const list = validateArray(fds, 'options.fds')
  const numbers = new Array<number>(list.length)
  for (let i = 0; i < list.length; i++) {
    const fd = list[i]
    numbers[i] = isIntegerIn(fd, 0, INT32_MAX) ? fd : descriptorNumber(fd, `options.fds[${i}]`)
  }
  return numbers
}

function closedError(): Error {
  return stateError('ERR_SOCKET_CLOSED', 'Socket is closed')
}

const TYPE_OF_SOCK: Record<number, SocketType> = {
  [constants.SOCK_STREAM]: 'stream',
  [constants.SOCK_DGRAM]: 'dgram',
  [constants.SOCK_SEQPACKET]: 'seqpacket',
}

export function socketTypeName(sockType: number): SocketType | undefined {
  return TYPE_OF_SOCK[sockType]
}

/**
 * An AF_UNIX socket in the event loop: 'stream', 'seqpacket' or 'dgram'.
 *
 * Events: `'message'` (a {@link Message}), `'end'` (the peer finished sending), `'drain'` (queued
 * sends went out), `'error'`, `'close'`.
 *
 * @example
 * const [a, b] = UnixSocket.pair('seqpacket')
 * b.on('message', (msg) => console.log(msg.data.toString(), msg.fds.length))
 * await a.send('hello', { fds: [process.stdout.fd] })
 */
export class UnixSocket extends EventEmitter implements AsyncIterable<Message>, AsyncDisposable {
  readonly #type: SocketType
  #native: InstanceType<typeof native.NativeSocket> | undefined
  readonly #allowHalfOpen: boolean
  #fd: number

  #queue: PendingSend[] = []
  #head = 0
  #queuedBytes = 0
  /**
   * How many queued messages the next native call is offered: twice what the kernel took when it
   * last filled up, so a socket that takes a few at a time is not handed (and planned) the whole
   * queue on every writable event.
   */
  #sendBatch = SEND_BATCH_MAX
  #flushScheduled = false
  #watchingWritable = false
  /** Set while a sendTo() waits for a full receiver (see ADDRESSED_RETRY_FIRST_MS). */
  #retryTimer: NodeJS.Timeout | undefined
  #retryDelay = ADDRESSED_RETRY_FIRST_MS
  #unrefed = false
  #needDrain = false
  #writeError: Error | undefined
  #ending: { resolve: () => void; promise: Promise<void> } | undefined
  #connecting: { resolve: () => void; reject: (error: Error) => void } | undefined

  #reading = false
  #paused = false
  #readEnded = false
  #endEmitted = false
  #backlog: Message[] = []
  /** The message whose 'message' handler just ran and whose descriptors await EVENT_SETTLE. */
  #delivering: Message | undefined
  #backlogScheduled = false
  #iterating = false
  #waiter: Waiter | undefined
  #readError: Error | undefined
  #closed = false
  #warnedLostFds = false

  /** Use the static constructors: {@link UnixSocket.pair}, {@link UnixSocket.connect}, {@link UnixSocket.datagram}, {@link UnixSocket.from}. */
  constructor(token: typeof kInternal, fd: number, type: SocketType, options: Required<UnixSocketOptions>) {
    super()
    if (token !== kInternal) throw stateError('ERR_ILLEGAL_CONSTRUCTOR', 'Use UnixSocket.pair(), connect(), datagram() or from()')
    this.#type = type
    this.#fd = fd
    this.#allowHalfOpen = options.allowHalfOpen
    // Before the native half owns the descriptor: if this throws (macOS has no SO_PASSCRED), the
    // caller still owns it and closes it, once.
    if (options.passCredentials) native.setPassCredentials(fd, true)
    this.#native = new native.NativeSocket(fd, sockTypeOf(type), false, options.maxMessageSize, this, UnixSocket.#dispatch)
    collectedWhileOpen.register(this, `A ${type} UnixSocket (fd ${fd})`, this)
    this.on('newListener', (event) => {
      if (event === 'message') queueMicrotask(() => this.#updateReading())
    })
    this.on('removeListener', (event) => {
      if (event === 'message') this.#updateReading()
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
    const checked = validateOptions(options)
    const [a, b] = native.socketpair(sockTypeOf(type), true) as [number, number]
    return [adopt(a, type, checked), adopt(b, type, checked)]
  }

  /**
   * Connects to a listening (stream, seqpacket) or bound (dgram) socket at `path`; on Linux a
   * path starting with '\0' is an abstract name.
   *
   * @example const sock = await UnixSocket.connect('/run/app.sock', { type: 'seqpacket' })
   */
  static async connect(path: string, options?: UnixSocketOptions & { type?: SocketType }): Promise<UnixSocket> {
    const type = options?.type ?? 'stream'
    const address = addressOf(path)
    // Every argument is checked before the descriptor exists: nothing to leak when one is wrong.
    const checked = validateOptions(stripType(options))
    const socket = adopt(native.unixSocket(sockTypeOf(type)), type, checked)
    try {
      if (!native.connectUnix(socket.#fd, address)) await socket.#waitConnected()
    } catch (error) {
      socket.close()
      throw withAddress(error as Error, path)
    }
    return socket
  }

  /**
   * A datagram socket, bound to `path` when given (so that peers can reply to it). Send with
   * {@link UnixSocket.sendTo}.
   *
   * @example const server = UnixSocket.datagram('/tmp/app.dgram')
   */
  static datagram(path?: string, options?: UnixSocketOptions): UnixSocket {
    const checked = validateOptions(options)
    const address = path === undefined ? undefined : addressOf(path)
    const socket = adopt(native.unixSocket(constants.SOCK_DGRAM), 'dgram', checked)
    if (address !== undefined) {
      try {
        native.bindUnix(socket.#fd, address)
      } catch (error) {
        socket.close()
        throw withAddress(error as Error, path!)
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
    const checked = validateOptions(options)
    const number = descriptorNumber(fd)
    const description = native.describeSocket(number)
    if (description.family !== constants.AF_UNIX) {
      throw invalidArgValue('fd', number, 'is not an AF_UNIX socket')
    }
    if (description.listening) throw invalidArgValue('fd', number, 'is a listening socket: use UnixServer.from()')
    const type = socketTypeName(description.type)
    if (type === undefined) throw invalidArgValue('fd', number, 'is not a stream, seqpacket or dgram socket')
    // Checked while borrowed; owned from here on (adopt closes it if wrapping fails).
    return adopt(takeDescriptor(fd), type, checked)
  }

  /** 'stream', 'seqpacket' or 'dgram'. */
  get type(): SocketType {
    return this.#type
  }

  /** The descriptor, still owned by the socket; -1 once closed. */
  get fd(): number {
    return this.#closed ? -1 : this.#fd
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Bytes queued and not yet taken by the kernel. */
  get writableLength(): number {
    return this.#queuedBytes
  }

  /** This socket's address; undefined when unnamed. */
  get localAddress(): string | undefined {
    if (this.#closed) return undefined
    return native.localAddress(this.#fd)?.toString('utf8') ?? undefined
  }

  /** The connected peer's address; undefined when unnamed or unconnected. */
  get remoteAddress(): string | undefined {
    if (this.#closed) return undefined
    try {
      return native.peerAddress(this.#fd)?.toString('utf8') ?? undefined
    } catch {
      return undefined
    }
  }

  /**
   * Sends one message. Resolves when the kernel has taken all of it; rejects with a Node-style
   * error (EPIPE, ECONNREFUSED, ERR_SOCKET_CLOSED, ...). Wrong arguments throw at once.
   *
   * @example await sock.send('ready', { fds: [listener.fd] })
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
    if (options !== undefined && (options === null || typeof options !== 'object')) throw invalidArgType('options', 'of type object', options)
    const fds = fdNumbersOf(options?.fds)
    const ancillary = options?.ancillary === undefined ? undefined : ancillaryOf(options.ancillary, 'options.ancillary')
    const length = totalLength(parts)
    if (this.#type === 'stream' && length === 0) {
      if (fds.length > 0 || ancillary !== undefined) {
        throw invalidArgValue('data', data, 'must not be empty when descriptors or control messages are sent on a stream socket: the kernel would drop them')
      }
      return this.#closed ? Promise.reject(closedError()) : Promise.resolve()
    }
    if (this.#closed) return Promise.reject(closedError())
    if (this.#writeError) return Promise.reject(this.#writeError)
    if (this.#ending) return Promise.reject(stateError('ERR_STREAM_WRITE_AFTER_END', 'write after end'))
    // Queued, and flushed in a microtask: messages sent in the same tick leave together, which is
    // what lets both ends batch (measured: sending at once costs a wakeup per message).
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ parts, length, sent: 0, fds, ancillary, address, resolve, reject })
      this.#queuedBytes += length
      if (!this.#flushScheduled && !this.#watchingWritable && this.#retryTimer === undefined) {
        this.#flushScheduled = true
        queueMicrotask(this.#flushLater)
      }
    })
  }

  readonly #flushLater = (): void => {
    this.#flushScheduled = false
    this.#flush()
  }

  /**
   * Hands queued messages to the kernel until it is full or the queue is empty. `retrying`: the
   * retry timer calls (see #waitForRoom).
   */
  #flush(retrying = false): void {
    const socket = this.#native
    if (socket === undefined || this.#closed) return
    const head = this.#head
    const queuedBytes = this.#queuedBytes
    // Re-read the queue each time round: a failure replaces it.
    while (this.#head < this.#queue.length) {
      const first = this.#queue[this.#head]!
      let done: boolean
      try {
        if (first.ancillary !== undefined) done = this.#sendWithAncillary(socket, first)
        else if (this.#head === this.#queue.length - 1 && first.parts.length === 1) done = this.#sendOne(socket, first)
        else done = this.#sendPlain(socket)
      } catch (error) {
        this.#failSends(error as Error)
        if (this.#closed) return
        continue
      }
      if (!done) {
        this.#needDrain = true
        this.#waitForRoom(retrying, this.#head !== head || this.#queuedBytes !== queuedBytes)
        return
      }
    }
    this.#queue = []
    this.#head = 0
    this.#retryDelay = ADDRESSED_RETRY_FIRST_MS
    this.#setWatchingWritable(false)
    if (this.#needDrain) {
      this.#needDrain = false
      this.emit('drain')
    }
    this.#afterQueueEmpty()
  }

  /** Sends a run of queued messages without extra control data. Returns whether all of it went. */
  #sendPlain(socket: InstanceType<typeof native.NativeSocket>): boolean {
    const queue = this.#queue
    const parts: Uint8Array[] = []
    const addresses: Uint8Array[] = []
    let planLength = 0
    let end = this.#head
    while (end < queue.length && end - this.#head < this.#sendBatch && queue[end]!.ancillary === undefined) {
      const pending = queue[end]!
      planLength += 3 + (pending.sent === 0 ? pending.fds.length : 0)
      end++
    }
    const plan = new Int32Array(planLength)
    let p = 0
    for (let i = this.#head; i < end; i++) {
      const pending = queue[i]!
      const messageParts = pending.sent === 0 ? pending.parts : remainingParts(pending)
      for (const part of messageParts) parts.push(part)
      plan[p++] = messageParts.length
      plan[p++] = pending.address === undefined ? 0 : 1
      if (pending.address !== undefined) addresses.push(pending.address)
      const fds = pending.sent === 0 ? pending.fds : []
      plan[p++] = fds.length
      for (const fd of fds) plan[p++] = fd
    }
    const offered = end - this.#head
    const head = this.#head
    const progress = socket.send(parts, plan, addresses.length > 0 ? addresses : undefined)
    const done = this.#type === 'stream' ? this.#advanceBytes(progress, end) : (this.#completeMessages(progress), this.#head === end)
    const taken = this.#head - head
    this.#sendBatch = done ? Math.min(SEND_BATCH_MAX, Math.max(offered * 2, this.#sendBatch)) : Math.max(SEND_BATCH_MIN, taken * 2)
    return done
  }

  /** The only queued message, in one part: the lean path of a request or a reply. */
  #sendOne(socket: InstanceType<typeof native.NativeSocket>, pending: PendingSend): boolean {
    const first = pending.sent === 0
    const data = first ? pending.parts[0]! : pending.parts[0]!.subarray(pending.sent)
    // The binding only reads the list.
    const sent = socket.sendOne(data, first && pending.fds.length > 0 ? (pending.fds as number[]) : undefined, pending.address)
    if (sent < 0) return false
    if (this.#type === 'stream') return this.#advanceBytes(sent, this.#head + 1)
    this.#completeMessages(1)
    return true
  }

  #sendWithAncillary(socket: InstanceType<typeof native.NativeSocket>, pending: PendingSend): boolean {
    const first = pending.sent === 0
    const sent = socket.sendWithAncillary(
      first ? pending.parts : remainingParts(pending),
      first ? [...pending.ancillary!, ...(pending.fds.length > 0 ? [fdTriple(pending.fds)] : [])] : [],
      pending.address,
    )
    if (sent < 0) return false
    if (this.#type === 'stream') return this.#advanceBytes(sent, this.#head + 1)
    this.#completeMessages(1)
    return true
  }

  /** A stream took `bytes`: resolve the messages it completed, note a partial one. */
  #advanceBytes(bytes: number, end: number): boolean {
    const queue = this.#queue
    this.#queuedBytes -= bytes
    while (bytes > 0 && this.#head < end) {
      const pending = queue[this.#head]!
      const left = pending.length - pending.sent
      if (bytes < left) {
        pending.sent += bytes
        return false
      }
      bytes -= left
      this.#head++
      pending.resolve()
    }
    return this.#head === end
  }

  #completeMessages(count: number): void {
    const queue = this.#queue
    for (let i = 0; i < count; i++) {
      const pending = queue[this.#head++]!
      this.#queuedBytes -= pending.length
      pending.resolve()
    }
  }

  /** A send failed. A datagram's error is its own (one destination); any other breaks the socket. */
  #failSends(error: Error): void {
    if (this.#type === 'dgram' && (error as { code?: string }).code !== 'EBADF') {
      const pending = this.#queue[this.#head++]!
      this.#queuedBytes -= pending.length
      pending.reject(error)
      return
    }
    this.#writeError = error
    this.#rejectQueued(error)
    this.#setWatchingWritable(false)
    this.#afterQueueEmpty()
  }

  #rejectQueued(error: Error): void {
    const queue = this.#queue
    const head = this.#head
    this.#queue = []
    this.#head = 0
    this.#queuedBytes = 0
    for (let i = head; i < queue.length; i++) queue[i]!.reject(error)
  }

  /**
   * The kernel is full: go on when the socket becomes writable. Except for a datagram sent to an
   * address whose receiver is full: the kernel reports an unconnected socket writable whatever that
   * receiver holds, so once a writable event or a retry has brought nothing, retry on a timer,
   * after delays doubling from ADDRESSED_RETRY_FIRST_MS to ADDRESSED_RETRY_MAX_MS.
   */
  #waitForRoom(retrying: boolean, progressed: boolean): void {
    if (progressed) this.#retryDelay = ADDRESSED_RETRY_FIRST_MS
    const stuck = !progressed && (retrying || this.#watchingWritable) && this.#queue[this.#head]!.address !== undefined
    if (!stuck) return this.#setWatchingWritable(true)
    this.#setWatchingWritable(false)
    const delay = this.#retryDelay
    this.#retryDelay = Math.min(delay * 2, ADDRESSED_RETRY_MAX_MS)
    this.#retryTimer = setTimeout(this.#retry, delay)
    if (this.#unrefed) this.#retryTimer.unref()
  }

  readonly #retry = (): void => {
    this.#retryTimer = undefined
    this.#flush(true)
  }

  #setWatchingWritable(on: boolean): void {
    if (this.#watchingWritable === on || this.#closed) return
    this.#watchingWritable = on
    this.#native!.watchWritable(on)
  }

  #afterQueueEmpty(): void {
    if (this.#ending) {
      const ending = this.#ending
      if (this.#type !== 'dgram' && !this.#writeError && !this.#closed) {
        try {
          this.#native!.shutdown()
        } catch {
          // The peer is gone; ending is moot.
        }
      }
      ending.resolve()
      if (this.#readEnded && !this.#allowHalfOpen) this.close()
    } else if (this.#readEnded && !this.#allowHalfOpen && this.#endEmitted) {
      this.close()
    }
  }

  /**
   * Finishes sending: queued messages go out, then the peer reads end-of-file (stream,
   * seqpacket). Further sends reject.
   */
  end(): Promise<void> {
    if (this.#ending) return this.#ending.promise
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    this.#ending = { resolve, promise }
    if (this.#closed) resolve()
    else if (this.#head >= this.#queue.length && !this.#flushScheduled) this.#afterQueueEmpty()
    return promise
  }

  #waitConnected(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#connecting = { resolve, reject }
      this.#setWatchingWritable(true)
    })
  }

  #onWritable(): void {
    const connecting = this.#connecting
    if (connecting) {
      this.#connecting = undefined
      this.#setWatchingWritable(false)
      try {
        native.finishConnect(this.#fd)
        connecting.resolve()
      } catch (error) {
        connecting.reject(error as Error)
      }
      return
    }
    this.#flush()
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

  get isPaused(): boolean {
    return this.#paused
  }

  #wantsToRead(): boolean {
    if (this.#closed || this.#readEnded) return false
    if (this.#iterating) return this.#backlog.length < BACKLOG_HIGH_WATER
    return !this.#paused && this.#backlog.length === 0 && this.listenerCount('message') > 0
  }

  #updateReading(): void {
    const want = this.#wantsToRead()
    if (want === this.#reading) return
    this.#reading = want
    if (want) this.#native!.readStart()
    else this.#native!.readStop()
  }

  #onMessage(message: Message): void {
    if ((message.flags & MSG_CTRUNC) !== 0) this.#warnLostFds()
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      message[kMaterialize]()
      waiter.resolve({ value: message, done: false })
      return
    }
    if (this.#iterating || this.#paused || this.#backlog.length > 0 || this.listenerCount('message') === 0) {
      message[kMaterialize]()
      this.#backlog.push(message)
      if (this.#backlog.length >= BACKLOG_HIGH_WATER || !this.#iterating) this.#updateReading()
      return
    }
    this.#emitMessage(message)
    // Settled on EVENT_SETTLE, once the handler's microtasks have run too.
    if (message[kHasFds]()) this.#delivering = message
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

  #emitMessage(message: Message): void {
    try {
      this.emit('message', message)
    } catch (error) {
      // The native side leaves everything to us when the handler throws.
      message.settle()
      throw error
    }
  }

  #onSettle(): true | number[] | undefined {
    const message = this.#delivering
    this.#delivering = undefined
    return message?.[kUnclaimed]()
  }

  #scheduleBacklog(): void {
    if (this.#backlogScheduled || this.#iterating) return
    this.#backlogScheduled = true
    setImmediate(this.#deliverBacklog)
  }

  /** One buffered message per turn of the loop, so that each handler's microtasks run before the next. */
  readonly #deliverBacklog = (): void => {
    this.#backlogScheduled = false
    if (this.#closed || this.#paused || this.#iterating) return
    if (this.listenerCount('message') === 0) return
    const message = this.#backlog.shift()
    if (message !== undefined) {
      this.#emitMessage(message)
      // Settled once the handler's microtasks have run, as for a message straight off the socket.
      setImmediate(() => message.settle())
    }
    if (this.#backlog.length > 0) this.#scheduleBacklog()
    else if (this.#readEnded) this.#finishEnd()
    else this.#updateReading()
  }

  #onEnd(): void {
    this.#readEnded = true
    this.#reading = false
    if (this.#backlog.length === 0 || this.#iterating) this.#finishEnd()
  }

  #finishEnd(): void {
    if (this.#endEmitted) return
    if (this.#iterating && this.#backlog.length > 0) return
    this.#endEmitted = true
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.resolve({ value: undefined, done: true })
    this.emit('end')
    if (!this.#allowHalfOpen && !this.#closed) {
      if (this.#head >= this.#queue.length && !this.#flushScheduled) this.close()
      else void this.end()
    }
  }

  #onError(error: Error): void {
    this.#readError = error
    this.#reading = false
    const waiter = this.#waiter
    this.#waiter = undefined
    if (waiter !== undefined) waiter.reject(error)
    else if (!this.#iterating || this.listenerCount('error') > 0) this.emit('error', error)
    this.close()
  }

  /**
   * Iterates over received messages. A message's unclaimed descriptors are closed when the loop
   * asks for the next one (or stops). Ends when the peer does; throws on a receive error.
   *
   * @example for await (const msg of sock) handle(msg.data, msg.fds)
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    if (this.#iterating) throw stateError('ERR_SENDMSG_ALREADY_ITERATING', 'This socket already has an active iterator')
    this.#iterating = true
    this.#updateReading()
    let previous: Message | undefined
    const settlePrevious = () => {
      previous?.settle()
      previous = undefined
    }
    const stop = (): IteratorResult<Message> => {
      settlePrevious()
      if (this.#iterating) {
        this.#iterating = false
        this.#updateReading()
        if (this.#backlog.length > 0) this.#scheduleBacklog()
      }
      return { value: undefined, done: true }
    }
    const iterator: AsyncIterableIterator<Message> = {
      next: async () => {
        settlePrevious()
        if (!this.#iterating) return { value: undefined, done: true }
        const result = await this.#pull()
        if (result.done) stop()
        else previous = result.value
        return result
      },
      return: async () => stop(),
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  #pull(): Promise<IteratorResult<Message>> {
    const message = this.#backlog.shift()
    if (message !== undefined) {
      this.#updateReading()
      return Promise.resolve({ value: message, done: false })
    }
    if (this.#readError) return Promise.reject(this.#readError)
    if (this.#readEnded || this.#closed) {
      this.#finishEnd()
      return Promise.resolve({ value: undefined, done: true })
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject }
    })
  }

  // Lifetime ----------------------------------------------------------------------------------

  /**
   * Closes the socket now: queued sends reject with ERR_SOCKET_CLOSED, buffered messages' descriptors
   * close, 'close' follows. Idempotent.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#reading = false
    this.#watchingWritable = false
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    this.#native?.close()
    this.#native = undefined
    collectedWhileOpen.unregister(this)
    const error = closedError()
    this.#rejectQueued(error)
    this.#connecting?.reject(error)
    this.#connecting = undefined
    this.#ending?.resolve()
    for (const message of this.#backlog.splice(0)) message.settle()
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.resolve({ value: undefined, done: true })
    process.nextTick(() => this.emit('close'))
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** Lets the process exit while this socket is open (it still works while the process runs). */
  unref(): this {
    this.#native?.unref()
    this.#unrefed = true
    this.#retryTimer?.unref()
    return this
  }

  /** Undoes {@link UnixSocket.unref}. */
  ref(): this {
    this.#native?.ref()
    this.#unrefed = false
    this.#retryTimer?.ref()
    return this
  }

  static #dispatch(
    this: UnixSocket,
    event: number,
    a?: unknown,
    b?: unknown,
    c?: unknown,
    d?: unknown,
    e?: unknown,
    f?: unknown,
    g?: unknown,
    h?: unknown,
  ): unknown {
    switch (event) {
      case EVENT.MESSAGE:
        return this.#onMessage(
          messageFrom(a as ArrayBuffer, b as number, c as number, d as number, e as number, f as Int32Array, g as string | undefined, h as never),
        )
      case EVENT.SETTLE:
        return this.#onSettle()
      case EVENT.WRITABLE:
        return this.#onWritable()
      case EVENT.END:
        return this.#onEnd()
      case EVENT.ERROR:
        return this.#onError(a as Error)
    }
    return undefined
  }
}

function stripType(options: (UnixSocketOptions & { type?: SocketType }) | undefined): UnixSocketOptions | undefined {
  // Not an object: left for validateOptions to refuse.
  if (options === null || typeof options !== 'object') return options
  const { type: _type, ...rest } = options
  return rest
}

function remainingParts(pending: PendingSend): Uint8Array[] {
  let skip = pending.sent
  const parts: Uint8Array[] = []
  for (const part of pending.parts) {
    if (skip >= part.byteLength) {
      skip -= part.byteLength
      continue
    }
    parts.push(skip > 0 ? part.subarray(skip) : part)
    skip = 0
  }
  return parts
}

function fdTriple(fds: readonly number[]): [number, number, Uint8Array] {
  const packed = new Uint8Array(new Int32Array(fds).buffer)
  return [constants.SOL_SOCKET, constants.SCM_RIGHTS, packed]
}

/** Wraps a descriptor this package just created or accepted; closes it if wrapping fails. */
export function adopt(fd: number, type: SocketType, options: Required<UnixSocketOptions>): UnixSocket {
  try {
    return new UnixSocket(kInternal, fd, type, options)
  } catch (error) {
    native.closeFd(fd)
    throw error
  }
}

export { validateOptions as validateSocketOptions }
