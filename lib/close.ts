// Closing a raw descriptor number through the public API, for code that must not reach into the
// binding (the frame channel and the handoff). It is the core's close(2), not Node's fs.closeSync:
// that works in every runtime (Deno's node:fs takes resource ids, not descriptor numbers).
import { native } from './binding'
import { INT32_MAX, validateInteger } from './errors'

/**
 * Closes the descriptor `fd` (a number you own: from `take()`, `socketpair()`, `pipe()`, `dup()`).
 * Throws `EBADF` when it is not open. A descriptor still owned by an object (a socket, a
 * ReceivedFd) is closed through that object instead.
 *
 * @example const [a, b] = socketpair(); closeFd(a); closeFd(b)
 */
export function closeFd(fd: number): void {
  native.closeFd(validateInteger(fd, 'fd', 0, INT32_MAX))
}
