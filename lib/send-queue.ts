// The sending direction of a UnixSocket: the queue of messages and their promises.
//
// This is the one owner of the queue and of which messages are offered to the kernel together;
// the binding (crates/sendmsg-napi/src/event_loop/send.rs) hands them to the core, which decides
// how they share system calls, and the socket re-arms itself when the kernel is full.
//
// A send goes to the kernel at once when nothing is queued. Sends made after it in the same tick
// queue up and leave together in one call at the end of the tick (sendmmsg, or one gathered
// sendmsg per run on a stream), which is what lets both ends batch. What the kernel cannot take
// yet waits, in order, for the socket to become writable.
//
// The end of a tick is found with a promise reaction, which a reply sent from a 'message' handler
// would pay for on every message. So a send that went straight out opens no batch: the queue
// notes it (`sentDirect`), and only a second send in that state opens one. The socket tells the
// queue when a new task begins (`newTask()`: the binding is delivering a message), after which
// the next send goes straight out again. A second send made in a later task that began some
// other way (a timer) merely queues and leaves at the end of its tick: later, never lost or
// reordered.
import type { SocketType } from './sync'
import { native } from './binding'
import { stateError } from './errors'

/** The binding's handle on a socket. */
/** @internal */
export type SocketHandle = ReturnType<typeof native.socketOpen>

/** What a send carries, checked (lib/socket.ts `#enqueue` makes it). */
/** @internal */
export interface Outgoing {
  parts: Uint8Array[]
  length: number
  fds: number[] | undefined
  ancillary: Array<[number, number, Uint8Array]> | undefined
  address: Uint8Array | undefined
  /**
   * What a transport of its own needs and the queue carries untouched (lib/udp.ts: the datagram's
   * destination, ECN mark, segment size and source address).
   */
  meta?: unknown
}

/**
 * One message waiting for the kernel.
 * A class, so that every entry has one shape (the binding and the flush read thousands of them).
 */
/** @internal */
export class QueuedSend {
  /** Bytes already taken by the kernel (a stream's partial write). */
  sent: number
  readonly parts: Uint8Array[]
  readonly length: number
  readonly fds: number[] | undefined
  readonly ancillary: Array<[number, number, Uint8Array]> | undefined
  readonly address: Uint8Array | undefined
  readonly meta: unknown
  readonly resolve: () => void
  readonly reject: (error: Error) => void

  constructor(message: Outgoing, sent: number, resolve: () => void, reject: (error: Error) => void) {
    this.sent = sent
    this.parts = message.parts
    this.length = message.length
    this.fds = message.fds
    this.ancillary = message.ancillary
    this.address = message.address
    this.meta = message.meta
    this.resolve = resolve
    this.reject = reject
  }
}

/**
 * - `idle`: nothing queued; a send goes straight to the kernel.
 * - `sentDirect`: nothing queued, and a send went straight to the kernel in this task; the next
 *   send opens the tick's batch.
 * - `batching`: a send went straight out this tick; later ones queue until the flush at its end.
 * - `flushing`: handing the queue to the kernel right now (sends made meanwhile queue).
 * - `awaitingWritable`: the kernel is full; the socket calls back when it is writable.
 * - `awaitingRetry`: a datagram's receiver is full; a timer retries (no readiness event exists).
 * - `failed`: a send broke the connection; every later send rejects with that error.
 * - `closed`.
 */
type WriteState = 'idle' | 'sentDirect' | 'batching' | 'flushing' | 'awaitingWritable' | 'awaitingRetry' | 'failed' | 'closed'

/** Queued messages offered to the kernel per call, at most. */
const SEND_BATCH_MAX = 256
/** Retry delays for a datagram sent to a full receiver, in ms: doubling from the first to the last. */
const RETRY_FIRST_MS = 1
const RETRY_MAX_MS = 50

/**
 * Errors that concern the message that met them, not the connection: nothing of that message was
 * sent (a closed descriptor in `fds`, too many descriptors, credentials the kernel refused, a
 * control message too large), so the messages after it are unaffected.
 */
const MESSAGE_ERRORS = new Set(['EBADF', 'EINVAL', 'EMSGSIZE', 'ETOOMANYREFS', 'EPERM', 'ENOBUFS', 'ERR_OUT_OF_RANGE'])

/**
 * How a queue hands messages to the kernel: the AF_UNIX sockets' calls by default; a UdpSocket
 * (lib/udp.ts) brings its own, over the same queue. Both return the progress made (bytes on a
 * stream, whole messages otherwise); zero means the socket is full and armed itself (or, per
 * `socketWriting`, wants a retry timer).
 */
/** @internal */
export interface SendTransport {
  /** One message's data (`data`, from where a stream left off); `first`: nothing of it went yet. */
  sendOne(handle: SocketHandle, message: Outgoing, data: Uint8Array, first: boolean): number
  /**
   * `count` queued messages from `queue[from]` on, in as few system calls as the kernel allows.
   * Absent for AF_UNIX sockets, whose batches the queue lays out itself (`#sendBatch`).
   */
  sendQueued?(handle: SocketHandle, queue: QueuedSend[], from: number, count: number): number
}

const unixTransport: SendTransport = {
  sendOne: (handle, message, data, first) =>
    native.socketSend(handle, data, first ? message.fds : undefined, message.address, first ? message.ancillary : undefined),
}

/** What the queue tells its socket. */
/** @internal */
export interface SendQueueOwner {
  /** The queue emptied after having been full ('drain'). */
  drained(): void
  /** The queue is empty (an `end()` may finish now). */
  emptied(): void
}

/** @internal */
export class SendQueue {
  readonly #handle: SocketHandle
  readonly #type: SocketType
  readonly #owner: SendQueueOwner
  readonly #transport: SendTransport
  #queue: QueuedSend[] = []
  #head = 0
  #bytes = 0
  #state: WriteState = 'idle'
  #error: Error | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #retryDelay = RETRY_FIRST_MS
  #referenced = true
  /** The kernel was full since the last 'drain'. */
  #wasFull = false

  constructor(handle: SocketHandle, type: SocketType, owner: SendQueueOwner, transport: SendTransport = unixTransport) {
    this.#handle = handle
    this.#type = type
    this.#owner = owner
    this.#transport = transport
  }

  /** Bytes queued and not yet taken by the kernel. */
  get length(): number {
    return this.#bytes
  }

  get isEmpty(): boolean {
    return this.#head >= this.#queue.length
  }

  /** Whether a send made now would be refused (and with what). */
  get error(): Error | undefined {
    return this.#error
  }

  push(message: Outgoing): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#state === 'idle' && message.parts.length === 1) return this.#sendNow(message)
    const promise = new Promise<void>((resolve, reject) => {
      this.#queue.push(new QueuedSend(message, 0, resolve, reject))
      this.#bytes += message.length
    })
    if (this.#state === 'idle' || this.#state === 'sentDirect') this.#openBatch()
    return promise
  }

  /**
   * A new task began (the binding is delivering a message to this socket): a send that went
   * straight out before belongs to an earlier tick, so the next one may too.
   */
  newTask(): void {
    if (this.#state === 'sentDirect') this.#state = 'idle'
  }

  /** Sends made from now until the end of the tick queue up and leave together then. */
  #openBatch(): void {
    this.#state = 'batching'
    // A promise reaction, not queueMicrotask (which Node wraps in an AsyncResource per call).
    void Promise.resolve().then(this.#endOfTick)
  }

  /** Nothing is queued: straight to the kernel; a batch opens only if the kernel took less. */
  #sendNow(message: Outgoing): Promise<void> {
    let sent: number
    try {
      sent = this.#transport.sendOne(this.#handle, message, message.parts[0]!, true)
    } catch (error) {
      if (!this.#concernsMessageOnly(error as Error, 0)) this.#fail(error as Error)
      return Promise.reject(error as Error)
    }
    const complete = this.#type === 'stream' ? sent === message.length : sent > 0
    if (complete) {
      this.#state = 'sentDirect'
      return Promise.resolve()
    }
    this.#openBatch()
    // Queued at the front, with what went already.
    return new Promise<void>((resolve, reject) => {
      this.#queue.push(new QueuedSend(message, this.#type === 'stream' ? sent : 0, resolve, reject))
      this.#bytes += message.length - (this.#type === 'stream' ? sent : 0)
      this.#wasFull = true
    })
  }

  readonly #endOfTick = (): void => {
    if (this.#state === 'batching') this.flush()
  }

  /** The socket is writable again (or a retry is due). */
  writable(): void {
    if (this.#state === 'awaitingWritable') this.flush()
  }

  /** Hands queued messages to the kernel until it is full or the queue is empty. */
  flush(): void {
    if (this.#state === 'closed' || this.#state === 'failed') return
    this.#state = 'flushing'
    while (this.#head < this.#queue.length) {
      let progress: number
      try {
        progress = this.#sendSome()
      } catch (error) {
        const pending = this.#queue[this.#head]!
        if (this.#concernsMessageOnly(error as Error, pending.sent)) {
          this.#head++
          this.#bytes -= pending.length - pending.sent
          pending.reject(error as Error)
          continue
        }
        this.#fail(error as Error)
        return
      }
      if (progress === 0) return this.#waitForRoom()
      this.#retryDelay = RETRY_FIRST_MS
    }
    this.#queue = []
    this.#head = 0
    this.#state = 'idle'
    if (this.#wasFull) {
      this.#wasFull = false
      this.#owner.drained()
    }
    this.#owner.emptied()
  }

  /** One call to the kernel from the head of the queue; returns the progress it made. */
  #sendSome(): number {
    const queue = this.#queue
    const first = queue[this.#head]!
    if (first.ancillary !== undefined || (this.#head === queue.length - 1 && first.parts.length === 1)) {
      // The lean path (a single message), and messages with control messages of their own.
      const data = single(first.parts).subarray(first.sent)
      const sent = this.#transport.sendOne(this.#handle, first, data, first.sent === 0)
      return this.#type === 'stream' ? this.#advanceBytes(sent) : this.#advanceMessages(sent)
    }
    let end = this.#head + 1
    while (end < queue.length && end - this.#head < SEND_BATCH_MAX && queue[end]!.ancillary === undefined) end++
    const progress = this.#transport.sendQueued?.(this.#handle, queue, this.#head, end - this.#head) ?? this.#sendBatch(this.#head, end)
    return this.#type === 'stream' ? this.#advanceBytes(progress) : this.#advanceMessages(progress)
  }

  /**
   * Hands `queue[from..end]` to the binding as its flat arrays (see socketSendQueued in
   * binding.d.ts): laid out here, where it is cheap, so that the binding reads each message with
   * two Node-API calls rather than a property read per field.
   */
  #sendBatch(from: number, end: number): number {
    const queue = this.#queue
    const count = end - from
    const parts: Uint8Array[] = []
    const partCounts = new Uint32Array(count)
    const fdCounts = new Uint32Array(count)
    let fdTotal = 0
    let addresses: Array<Uint8Array | undefined> | undefined
    for (let i = 0; i < count; i++) {
      const pending = queue[from + i]!
      const first = pending.sent === 0
      const messageParts = first ? pending.parts : remainingParts(pending)
      for (let k = 0; k < messageParts.length; k++) parts.push(messageParts[k]!)
      partCounts[i] = messageParts.length
      // Descriptors ride with a message's first byte only.
      if (first && pending.fds !== undefined) fdTotal += fdCounts[i] = pending.fds.length
      if (pending.address !== undefined) (addresses ??= new Array<Uint8Array | undefined>(count))[i] = pending.address
    }
    const fds = new Int32Array(fdTotal)
    for (let i = 0, at = 0; i < count && at < fdTotal; i++) {
      const list = fdCounts[i]! > 0 ? queue[from + i]!.fds! : undefined
      if (list !== undefined) for (let k = 0; k < list.length; k++) fds[at++] = list[k]!
    }
    return native.socketSendQueued(this.#handle, parts, partCounts, fds, fdCounts, addresses)
  }

  /** A stream took `bytes`: resolves the messages it completed, notes a partial one. */
  #advanceBytes(bytes: number): number {
    const queue = this.#queue
    this.#bytes -= bytes
    let left = bytes
    while (left > 0) {
      const pending = queue[this.#head]!
      const rest = pending.length - pending.sent
      if (left < rest) {
        pending.sent += left
        break
      }
      left -= rest
      this.#head++
      pending.resolve()
    }
    return bytes
  }

  #advanceMessages(count: number): number {
    for (let i = 0; i < count; i++) {
      const pending = this.#queue[this.#head++]!
      this.#bytes -= pending.length
      pending.resolve()
    }
    return count
  }

  /** The kernel took nothing: wait as the socket says (it armed itself, or a timer is needed). */
  #waitForRoom(): void {
    this.#wasFull = true
    if (native.socketWriting(this.#handle) !== 'awaitingRetry') {
      this.#state = 'awaitingWritable'
      return
    }
    this.#state = 'awaitingRetry'
    const delay = this.#retryDelay
    this.#retryDelay = Math.min(delay * 2, RETRY_MAX_MS)
    this.#retryTimer = setTimeout(this.#retry, delay)
    if (!this.#referenced) this.#retryTimer.unref()
  }

  readonly #retry = (): void => {
    this.#retryTimer = undefined
    if (this.#state === 'awaitingRetry') this.flush()
  }

  #concernsMessageOnly(error: Error, sent: number): boolean {
    if (sent > 0) return false
    return this.#type === 'dgram' || MESSAGE_ERRORS.has((error as { code?: string }).code ?? '')
  }

  /** The connection is broken for sending: every queued send rejects, and so does every later one. */
  #fail(error: Error): void {
    this.#error = error
    this.#state = 'failed'
    this.#rejectAll(error)
    this.#owner.emptied()
  }

  #rejectAll(error: Error): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    const queue = this.#queue
    const head = this.#head
    this.#queue = []
    this.#head = 0
    this.#bytes = 0
    for (let i = head; i < queue.length; i++) queue[i]!.reject(error)
  }

  /** The socket closed: queued sends reject with ERR_SOCKET_CLOSED, and so do later ones. */
  close(): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#error ??= closedError()
    this.#rejectAll(closedError())
  }

  setReferenced(referenced: boolean): void {
    this.#referenced = referenced
    if (referenced) this.#retryTimer?.ref()
    else this.#retryTimer?.unref()
  }
}

/** @internal */
export function closedError(): Error {
  return stateError('ERR_SOCKET_CLOSED', 'Socket is closed')
}

/** A stream message's parts from byte `sent` on (the kernel took the rest). */
function remainingParts(pending: QueuedSend): Uint8Array[] {
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

/** A message's data as one buffer (gathered sends of several parts go through the queue path). */
function single(parts: Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}
