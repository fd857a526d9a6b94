// Closing a raw descriptor number through the public API, for code that must not reach into the
// binding (the frame channel and the handoff). Today it is Node's own close; it may later become
// a native call without changing its contract.
import { closeSync } from 'node:fs'

import { INT32_MAX, validateInteger } from './errors'

/**
 * Closes the descriptor `fd` (a number you own: from `take()`, `socketpair()`, `pipe()`, `dup()`).
 * Throws `EBADF` when it is not open. A descriptor still owned by an object (a socket, a
 * ReceivedFd) is closed through that object instead.
 *
 * @example const [a, b] = socketpair(); closeFd(a); closeFd(b)
 */
export function closeFd(fd: number): void {
  closeSync(validateInteger(fd, 'fd', 0, INT32_MAX))
}
