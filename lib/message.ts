// A received message, as the event-loop sockets deliver it.
import type { ReceivedAncillaryItem } from './ancillary'
import { native } from './binding'
import { constants } from './constants'
import { credentialsFromAncillary, type Credentials } from './credentials'
import { invalidArgType, isIntegerIn, outOfRange } from './errors'
import { kRelease, ReceivedFd } from './received-fd'

const NO_FDS: readonly ReceivedFd[] = Object.freeze([])
const NO_ANCILLARY: readonly ReceivedAncillaryItem[] = Object.freeze([])

/**
 * Internal: settles the message once its delivery is over (the handler and the microtasks it
 * queued have run). Returns what the native side should close: `true` for all of its descriptors
 * (nobody even looked at them), an array of the numbers nobody claimed, or undefined for none.
 */
export const kUnclaimed = Symbol('unclaimed')
/** Internal: makes the descriptors objects now (before the shared number array is reused). */
export const kMaterialize = Symbol('materialize')
/** Internal: whether the message carried descriptors (without making them objects). */
export const kHasFds = Symbol('hasFds')

/**
 * One message: its data, the descriptors it carried (owned: see {@link ReceivedFd}), any other
 * control messages, `msg_flags`, and on datagram sockets the sender's address.
 *
 * @example sock.on('message', (msg: Message) => console.log(msg.data.toString(), msg.fds.length))
 */
export class Message {
  /** The bytes received. On a stream socket, a chunk of the stream: boundaries are not kept. */
  readonly data: Buffer
  /** Control messages other than descriptors (SCM_CREDENTIALS, ...), as `[level, type, data]`. */
  readonly ancillary: readonly ReceivedAncillaryItem[]
  /** `msg_flags`: MSG_TRUNC when a datagram was longer than `maxMessageSize`, MSG_CTRUNC when descriptors were lost (the receiver was at its descriptor limit). */
  readonly flags: number
  /** Datagram sockets: the sender's path (abstract names start with '\0'); undefined when unnamed. */
  readonly address: string | undefined
  #fds: readonly ReceivedFd[] | undefined
  #fdCount: number
  /** The native side's shared array, valid only while the message is being dispatched. */
  #fdNumbers: Int32Array | undefined
  /** Dispatch is over: descriptors not made into objects by then were closed. */
  #settled = false

  constructor(
    data: Buffer,
    fdCount: number,
    fdNumbers: Int32Array | undefined,
    ancillary: readonly ReceivedAncillaryItem[] | undefined,
    flags: number,
    address: string | undefined,
  ) {
    // Public for `instanceof` and types, so what it is told is checked: the count sizes an
    // allocation, and the numbers are closed when the message settles.
    if (fdNumbers !== undefined && !(fdNumbers instanceof Int32Array)) throw invalidArgType('fdNumbers', 'an instance of Int32Array', fdNumbers)
    if (!isIntegerIn(fdCount, 0, fdNumbers === undefined ? 0 : fdNumbers.length)) {
      throw outOfRange('fdCount', `an integer >= 0 and <= ${fdNumbers === undefined ? 0 : 'fdNumbers.length'}`, fdCount)
    }
    this.data = data
    this.ancillary = ancillary ?? NO_ANCILLARY
    this.flags = flags
    this.address = address
    this.#fdCount = fdCount
    this.#fdNumbers = fdNumbers
    this.#fds = fdCount === 0 ? NO_FDS : undefined
  }

  /** Descriptors that arrived with this message, in order. */
  get fds(): readonly ReceivedFd[] {
    return (this.#fds ??= this[kMaterialize]())
  }

  /** Linux: the sender's credentials, when it sent SCM_CREDENTIALS or the socket has `passCredentials`. */
  get credentials(): Credentials | undefined {
    return this.ancillary.length === 0 ? undefined : credentialsFromAncillary(this.ancillary)
  }

  /** Whether the data (MSG_TRUNC) or the control data (MSG_CTRUNC) was cut short. */
  get truncated(): boolean {
    return (this.flags & (constants.MSG_TRUNC | constants.MSG_CTRUNC)) !== 0
  }

  [kMaterialize](): readonly ReceivedFd[] {
    if (this.#fds !== undefined) return this.#fds
    const numbers = this.#fdNumbers
    const list = new Array<ReceivedFd>(this.#fdCount)
    // After dispatch the numbers are gone (closed): the objects are born released.
    for (let k = 0; k < this.#fdCount; k++) list[k] = new ReceivedFd(this.#settled || numbers === undefined ? -1 : numbers[k]!)
    this.#fdNumbers = undefined
    return (this.#fds = list)
  }

  [kHasFds](): boolean {
    return this.#fdCount > 0
  }

  [kUnclaimed](): true | number[] | undefined {
    this.#fdNumbers = undefined
    this.#settled = true
    const fds = this.#fds
    if (fds === undefined) return true
    let unclaimed: number[] | undefined
    for (const fd of fds) {
      const number = fd[kRelease]()
      if (number >= 0) (unclaimed ??= []).push(number)
    }
    return unclaimed
  }

  /** Closes the descriptors nobody claimed, here rather than in the native dispatcher. */
  settle(): void {
    this[kMaterialize]()
    const unclaimed = this[kUnclaimed]()
    if (Array.isArray(unclaimed)) for (const fd of unclaimed) native.closeFd(fd)
  }
}

const protocol = native.eventSocketProtocol()
export const EVENT = {
  MESSAGE: protocol.eventMessage,
  WRITABLE: protocol.eventWritable,
  END: protocol.eventEnd,
  ERROR: protocol.eventError,
  CONNECTION: protocol.eventConnection,
  SETTLE: protocol.eventSettle,
} as const

/**
 * Builds a Message from what the native side delivers (see the protocol in
 * crates/sendmsg-napi/src/event_socket.rs): the data is a view of the slab; the descriptors become
 * objects only if someone looks at them while the message is dispatched (or it is buffered).
 */
export function messageFrom(
  slab: ArrayBuffer,
  offset: number,
  length: number,
  flags: number,
  fdCount: number,
  fdNumbers: Int32Array,
  address: string | undefined,
  ancillary: ReceivedAncillaryItem[] | undefined,
): Message {
  return new Message(Buffer.from(slab, offset, length), fdCount, fdCount > 0 ? fdNumbers : undefined, ancillary, flags, address)
}
