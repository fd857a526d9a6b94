// A descriptor that arrived in a message, owned natively until someone takes it or closes it.
//
// The descriptor itself is held by the binding (crates/sendmsg-napi/src/event_loop/received_fds.rs)
// in a set with an id, and the binding is its one closer: at the end of its message's delivery,
// when the socket that kept the message closes, when a kept or adopted ReceivedFd is garbage-
// collected, or when the thread's environment goes away. This object only names it.
import { native } from './binding'
import { INT32_MAX, isIntegerIn, stateError, validateInteger } from './errors'

/** The id of a set of descriptors the binding holds (a message's, or a kept or adopted one). */
/** @internal */
export type ReceivedFdsHandle = number

/**
 * Sets held for a ReceivedFd of their own (keep(), or a number adopted): nothing else settles
 * them, so garbage collection does. (A message's set is settled when its delivery ends, or by the
 * socket that kept it.)
 */
const ownSets = new FinalizationRegistry<ReceivedFdsHandle>((id) => native.receivedFdsSettle(id))

function releasedError(): Error {
  return stateError('ERR_SENDMSG_FD_RELEASED', 'This descriptor was taken or closed: take() it while its message is being delivered to keep it')
}

/** Set by `receivedFdOf` for the constructor it calls. */
let slotForNext: { fds: ReceivedFdsHandle; index: number } | undefined

/** Internal: where a ReceivedFd's descriptor is held (undefined for one made released). */
let slotOf: (fd: ReceivedFd) => { fds: ReceivedFdsHandle; index: number } | undefined

/**
 * A file descriptor received in a message. It is owned by this object: `take()` hands the number
 * over to you, `close()` (or `using`) closes it. If neither has happened when the message's
 * delivery ends (its 'message' handlers have run, and so have the microtasks they queued, which
 * includes code waiting in `await once(sock, 'message')`), or with `for await` when the loop asks
 * for the next message, the package closes it: a descriptor nobody claims never leaks. To hold it
 * longer without taking the number, `keep()` it.
 *
 * @example sock.on('message', (msg) => { const fd = msg.fds[0]?.take() })
 */
export class ReceivedFd implements Disposable {
  /** Undefined for an object made released (`new ReceivedFd(-1)`). */
  readonly #fds: ReceivedFdsHandle | undefined
  readonly #index: number

  /**
   * Owns `fd`, a descriptor you give up (-1: already released). Messages make these for the
   * descriptors they carry.
   */
  constructor(fd: number) {
    const slot = slotForNext
    slotForNext = undefined
    if (slot !== undefined) {
      this.#fds = slot.fds
      this.#index = slot.index
      return
    }
    // A non-integer would reach close(2) as whatever the binding truncates it to (1.5 is stdout).
    if (!isIntegerIn(fd, -1, INT32_MAX)) validateInteger(fd, 'fd', -1, INT32_MAX)
    this.#fds = fd < 0 ? undefined : native.receivedFdAdopt(fd)
    this.#index = 0
    if (this.#fds !== undefined) ownSets.register(this, this.#fds)
  }

  /** The number, still owned by this object (valid until the message is handled). */
  get fd(): number {
    const fd = this.#fds === undefined ? -1 : native.receivedFdNumber(this.#fds, this.#index)
    if (fd < 0) throw releasedError()
    return fd
  }

  /** Whether the descriptor was taken or closed (by you, or at the end of its message's delivery). */
  get released(): boolean {
    return this.#fds === undefined || native.receivedFdNumber(this.#fds, this.#index) < 0
  }

  /** Takes the descriptor: the number is yours to close (`closeFd`), and nothing closes it for you. */
  take(): number {
    const fd = this.#fds === undefined ? -1 : native.receivedFdTake(this.#fds, this.#index)
    if (fd < 0) throw releasedError()
    return fd
  }

  /**
   * Keeps the descriptor beyond its message's delivery: returns a new ReceivedFd that owns it, and
   * this one is released. Nothing closes the kept one when the message settles; close it, take it,
   * or leave it to garbage collection (or the thread's end) to close.
   */
  keep(): ReceivedFd {
    const kept = this.#fds === undefined ? null : native.receivedFdKeep(this.#fds, this.#index)
    if (kept === null) throw releasedError()
    return ownReceivedFd(kept)
  }

  /** Closes the descriptor now. Idempotent. */
  close(): void {
    if (this.#fds !== undefined) native.receivedFdClose(this.#fds, this.#index)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  toString(): string {
    const fd = this.#fds === undefined ? -1 : native.receivedFdNumber(this.#fds, this.#index)
    return fd < 0 ? 'ReceivedFd(released)' : `ReceivedFd(${fd})`
  }

  static {
    slotOf = (fd) => (fd.#fds === undefined ? undefined : { fds: fd.#fds, index: fd.#index })
  }
}

/** Internal: the ReceivedFd naming slot `index` of a handle the binding made. */
/** @internal */
export function receivedFdOf(fds: ReceivedFdsHandle, index: number): ReceivedFd {
  slotForNext = { fds, index }
  try {
    return new ReceivedFd(-1)
  } finally {
    slotForNext = undefined
  }
}

/**
 * Internal: the ReceivedFd owning the descriptor of `fds`, a set of one that nothing else settles
 * (kept, or made by the binding outside a message, as a peer's pidfd): garbage collection closes
 * it if nobody does.
 */
/** @internal */
export function ownReceivedFd(fds: ReceivedFdsHandle): ReceivedFd {
  const own = receivedFdOf(fds, 0)
  ownSets.register(own, fds)
  return own
}

/** The number of a descriptor given as a number or a ReceivedFd: checked, and still the caller's. */
/** @internal */
export function descriptorNumber(fd: unknown, name = 'fd'): number {
  return fd instanceof ReceivedFd ? fd.fd : validateInteger(fd, name, 0, INT32_MAX)
}

/** Takes a checked descriptor over: a ReceivedFd gives it up; a number is the caller's to give. */
/** @internal */
export function takeDescriptor(fd: number | ReceivedFd): number {
  return fd instanceof ReceivedFd ? fd.take() : fd
}

/**
 * What a socket adopts: a descriptor number the caller gives up (`index` -1), or slot `index` of
 * the set where a ReceivedFd's descriptor is held, which the binding empties only if the adoption
 * succeeds (so the descriptor is never owned by nobody on the way, and a failed adoption leaves
 * the ReceivedFd as it was).
 */
/** @internal */
export interface AdoptionSource {
  source: number
  index: number
}

/** @internal */
export function adoptionSource(fd: number | ReceivedFd): AdoptionSource {
  if (!(fd instanceof ReceivedFd)) return { source: fd, index: -1 }
  const slot = slotOf(fd)
  if (slot === undefined) throw releasedError()
  return { source: slot.fds, index: slot.index }
}
