// A received message, as the event-loop sockets deliver it.
// Imported rather than the global, which Node defines as a getter: one call per message less.
import { Buffer } from 'node:buffer'
import type { ReceivedAncillaryItem } from './ancillary'
import { native } from './binding'
import { constants } from './constants'
import { credentialsFromAncillary, type Credentials } from './credentials'
import { invalidArgType, validateInt32 } from './errors'
import { receivedFdOf, ReceivedFd, type ReceivedFdsHandle } from './received-fd'

const NO_FDS: readonly ReceivedFd[] = Object.freeze([])
const NO_ANCILLARY: readonly ReceivedAncillaryItem[] = Object.freeze([])

/** Set while the binding's delivery builds a Message from its own values. */
let building = false

function checkMessageArguments(data: unknown, fds: unknown, ancillary: unknown, flags: unknown, address: unknown, pidfd: unknown): void {
  if (!Buffer.isBuffer(data)) throw invalidArgType('data', 'an instance of Buffer', data)
  if (!Array.isArray(fds) || !fds.every((fd) => fd instanceof ReceivedFd)) throw invalidArgType('fds', 'an Array of ReceivedFd', fds)
  if (!Array.isArray(ancillary)) throw invalidArgType('ancillary', 'an Array', ancillary)
  validateInt32(flags, 'flags')
  if (address !== undefined && typeof address !== 'string') throw invalidArgType('address', 'of type string', address)
  if (pidfd !== undefined && !(pidfd instanceof ReceivedFd)) throw invalidArgType('pidfd', 'an instance of ReceivedFd', pidfd)
}

/**
 * Internal: a Message from what the binding delivers (see SocketEvents in binding.d.ts): the
 * data is a view of the delivery slab, the descriptors a handle that the binding owns.
 */
/** @internal */
export let messageFrom: (
  slab: ArrayBuffer,
  offset: number,
  length: number,
  flags: number,
  fds: ReceivedFdsHandle | undefined,
  fdCount: number,
  pidfd: boolean,
  address: string | undefined,
  ancillary: ReceivedAncillaryItem[] | undefined,
) => Message

/** Internal: ends a message's delivery: every descriptor nobody took or kept is closed. */
/** @internal */
export let settle: (message: Message) => void

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
  /** The sender's pidfd: a ReceivedFd once looked at (or given), null when none came. */
  #pidfd: ReceivedFd | null | undefined
  /** The binding's handle on the descriptors, made into ReceivedFd objects when first looked at. */
  #handle: ReceivedFdsHandle | undefined
  #fdCount = 0
  /** Whether the handle holds a pidfd of the sender, after the `#fdCount` descriptors. */
  #hasPidfd = false

  /** A message of your own making (for tests, say): its descriptors are the ReceivedFds given. */
  constructor(
    data: Buffer,
    fds: readonly ReceivedFd[] = NO_FDS,
    ancillary: readonly ReceivedAncillaryItem[] = NO_ANCILLARY,
    flags = 0,
    address: string | undefined = undefined,
    pidfd: ReceivedFd | undefined = undefined,
  ) {
    // Public for `instanceof` and for tests, so what it is given is checked (the binding's own
    // messages skip the checks: they are built from values it made).
    if (building) building = false
    else checkMessageArguments(data, fds, ancillary, flags, address, pidfd)
    this.data = data
    this.#fds = fds
    this.#pidfd = pidfd ?? null
    this.ancillary = ancillary
    this.flags = flags
    this.address = address
  }

  /** Descriptors that arrived with this message, in order. */
  get fds(): readonly ReceivedFd[] {
    if (this.#fds !== undefined) return this.#fds
    const handle = this.#handle!
    const list = new Array<ReceivedFd>(this.#fdCount)
    for (let k = 0; k < this.#fdCount; k++) list[k] = receivedFdOf(handle, k)
    return (this.#fds = list)
  }

  /**
   * Linux 6.5+, on a socket with `passPidfd`: a pidfd of the process that sent this message, owned
   * as `fds` are (take, keep or close it; closed when the delivery ends otherwise). Unlike the pid
   * in `credentials`, it never comes to name another process. Undefined when none came.
   */
  get pidfd(): ReceivedFd | undefined {
    if (this.#pidfd === undefined) this.#pidfd = this.#hasPidfd ? receivedFdOf(this.#handle!, this.#fdCount) : null
    return this.#pidfd ?? undefined
  }

  /** Linux: the sender's credentials, when it sent SCM_CREDENTIALS or the socket has `passCredentials`. */
  get credentials(): Credentials | undefined {
    return this.ancillary.length === 0 ? undefined : credentialsFromAncillary(this.ancillary)
  }

  /** Whether the data (MSG_TRUNC) or the control data (MSG_CTRUNC) was cut short. */
  get truncated(): boolean {
    return (this.flags & (constants.MSG_TRUNC | constants.MSG_CTRUNC)) !== 0
  }

  static {
    messageFrom = (slab, offset, length, flags, handle, fdCount, pidfd, address, ancillary) => {
      building = true
      const message = new Message(Buffer.from(slab, offset, length), NO_FDS, ancillary ?? NO_ANCILLARY, flags, address)
      if (handle === undefined) return message
      // Made into objects only if somebody looks (most messages' descriptors are taken or ignored).
      message.#fds = fdCount === 0 ? NO_FDS : undefined
      message.#pidfd = pidfd ? undefined : null
      message.#handle = handle
      message.#fdCount = fdCount
      message.#hasPidfd = pidfd
      return message
    }
    settle = (message) => {
      if (message.#handle !== undefined) native.receivedFdsSettle(message.#handle)
      else {
        if (message.#fds !== undefined) for (const fd of message.#fds) fd.close()
        message.#pidfd?.close()
      }
    }
  }
}
