// A descriptor that arrived in a message, owned until someone takes it or closes it.
import { native } from './binding'
import { INT32_MAX, isIntegerIn, stateError, validateInteger } from './errors'

/** Internal: hands back the number if still owned (for closing), and empties the object. */
export const kRelease = Symbol('release')

/**
 * A file descriptor received in a message. It is owned by this object: `take()` hands the number
 * over to you, `close()` (or `using`) closes it. If neither has happened when the message's
 * delivery ends (its 'message' handlers have run, and so have the microtasks they queued, which
 * includes code waiting in `await once(sock, 'message')`), or with `for await` when the loop asks
 * for the next message, the package closes it: a descriptor nobody claims never leaks.
 *
 * @example sock.on('message', (msg) => { const fd = msg.fds[0]?.take() })
 */
export class ReceivedFd implements Disposable {
  #fd: number

  /** Owns `fd` (-1: already released). Messages make these; a number of your own works too. */
  constructor(fd: number) {
    // A non-integer would reach close(2) as whatever the binding truncates it to (1.5 is stdout).
    this.#fd = isIntegerIn(fd, -1, INT32_MAX) ? fd : validateInteger(fd, 'fd', -1, INT32_MAX)
  }

  /** The number, still owned by this object (valid until the message is handled). */
  get fd(): number {
    if (this.#fd < 0) throw stateError('ERR_SENDMSG_FD_RELEASED', 'This descriptor was taken or closed: take() it while its message is being delivered to keep it')
    return this.#fd
  }

  /** Whether the descriptor was taken or closed. */
  get released(): boolean {
    return this.#fd < 0
  }

  /** Takes the descriptor: the number is yours to close (`fs.closeSync`), and nothing closes it for you. */
  take(): number {
    const fd = this.fd
    this.#fd = -1
    return fd
  }

  /** Closes the descriptor now. Idempotent. */
  close(): void {
    const fd = this.#fd
    if (fd < 0) return
    this.#fd = -1
    native.closeFd(fd)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  [kRelease](): number {
    const fd = this.#fd
    this.#fd = -1
    return fd
  }

  toString(): string {
    return this.#fd < 0 ? 'ReceivedFd(released)' : `ReceivedFd(${this.#fd})`
  }
}

/** The number of a descriptor given as a number or a ReceivedFd: checked, and still the caller's. */
export function descriptorNumber(fd: unknown, name = 'fd'): number {
  return fd instanceof ReceivedFd ? fd.fd : validateInteger(fd, name, 0, INT32_MAX)
}

/** Takes a checked descriptor over: a ReceivedFd gives it up; a number is the caller's to give. */
export function takeDescriptor(fd: number | ReceivedFd): number {
  return fd instanceof ReceivedFd ? fd.take() : fd
}
