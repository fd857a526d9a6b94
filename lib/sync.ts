// The Twisted-shaped synchronous API. These calls block when the socket is blocking: that is their
// contract (use them on non-blocking sockets, or off the main thread, or in short-lived tools).
import type { AncillaryItem, ReceivedAncillaryItem } from './ancillary'
import { ancillaryOf } from './ancillary'
import { native } from './binding'
import { chunksOf, type Data } from './bytes'
import { constants } from './constants'
import { validateInt32, validateInteger, validateOneOf, INT32_MAX } from './errors'
import { fdOf, type SocketLike } from './fd'

/**
 * What `recvmsg` returns: Twisted's `(data, ancillary, flags)`, as an object.
 *
 * @example const { data, ancillary, flags }: ReceivedMessage = recvmsg(sock)
 */
export interface ReceivedMessage {
  /** The bytes received (at most `maxSize`). */
  data: Buffer
  /** Control messages; descriptors in SCM_RIGHTS items (and an SCM_PIDFD item's pidfd) are the caller's to close. */
  ancillary: ReceivedAncillaryItem[]
  /** `msg_flags`: MSG_TRUNC, MSG_CTRUNC, MSG_EOR, ... */
  flags: number
}

/**
 * Sends `data` (one piece, or a list sent with gather I/O in one system call) and `ancillary`
 * control messages over `socket`. Returns the number of bytes sent. A closed peer is an `EPIPE`
 * error, never a SIGPIPE.
 *
 * @example sendmsg(sock, 'hello', [scmRights([fd])])
 */
export function sendmsg(socket: SocketLike, data: Data, ancillary: readonly AncillaryItem[] = [], flags = 0): number {
  const fd = fdOf(socket)
  const chunks = chunksOf(data, 'data')
  const items = ancillaryOf(ancillary, 'ancillary')
  validateInt32(flags, 'flags')
  return native.sendmsg(fd, chunks, items, flags)
}

/**
 * Receives one message of at most `maxSize` bytes, with room for `cmsgSize` bytes of control
 * payload (the control buffer is `CMSG_SPACE(cmsgSize)`, as in Twisted). Received descriptors
 * are close-on-exec. When the control buffer was too small, `flags` has MSG_CTRUNC and every
 * descriptor the kernel did install is still in `ancillary`.
 *
 * @example const { data, ancillary } = recvmsg(sock, 1024)
 */
export function recvmsg(socket: SocketLike, maxSize = 8192, cmsgSize = 4096, flags = 0): ReceivedMessage {
  const fd = fdOf(socket)
  validateInteger(maxSize, 'maxSize', 0, INT32_MAX)
  validateInteger(cmsgSize, 'cmsgSize', 0, constants.MAX_CMSG_SIZE)
  validateInt32(flags, 'flags')
  return native.recvmsg(fd, maxSize, cmsgSize, flags)
}

/**
 * The address family of `socket` (`AF_UNIX`, `AF_INET`, `AF_INET6`, ...).
 *
 * @example getSocketFamily(sock) === constants.AF_UNIX
 */
export function getSocketFamily(socket: SocketLike): number {
  return native.getSocketFamily(fdOf(socket))
}

/**
 * An AF_UNIX socket type: `'stream'` (SOCK_STREAM), `'dgram'` (SOCK_DGRAM) or `'seqpacket'`
 * (SOCK_SEQPACKET, Linux only).
 *
 * @example const type: SocketType = 'seqpacket'
 */
export type SocketType = 'stream' | 'dgram' | 'seqpacket'
const SOCKET_TYPES: readonly SocketType[] = ['stream', 'dgram', 'seqpacket']

/** The one table of socket types: the package's names and the platform's `SOCK_*` values. */
const SOCK_TYPE_VALUES: Readonly<Record<SocketType, number>> = {
  stream: constants.SOCK_STREAM,
  dgram: constants.SOCK_DGRAM,
  seqpacket: constants.SOCK_SEQPACKET,
}

/** The `SOCK_*` value of a socket type name, checked. */
/** @internal */
export function sockTypeOf(type: unknown, name = 'type'): number {
  return SOCK_TYPE_VALUES[validateOneOf(type, name, SOCKET_TYPES)]
}

/** The package's name for a `SO_TYPE` value; undefined for what it does not handle. */
/** @internal */
export function socketTypeName(sockType: number): SocketType | undefined {
  return SOCKET_TYPES.find((type) => SOCK_TYPE_VALUES[type] === sockType)
}

/**
 * A connected pair of AF_UNIX sockets, as descriptor numbers, both close-on-exec and blocking.
 * Close them with `fs.closeSync`. (macOS has no 'seqpacket': ESOCKTNOSUPPORT/EPROTONOSUPPORT.)
 *
 * @example const [a, b] = socketpair('seqpacket')
 */
export function socketpair(type: SocketType = 'stream'): [number, number] {
  const [a, b] = native.socketpair(sockTypeOf(type), false)
  return [a!, b!]
}

/**
 * A pipe, as `[readFd, writeFd]`, both close-on-exec: something to pass to another process.
 * Close them with `fs.closeSync`.
 *
 * @example const [readFd, writeFd] = pipe()
 */
export function pipe(): [number, number] {
  const [r, w] = native.pipe()
  return [r!, w!]
}

/**
 * A new descriptor for the same socket or file (close-on-exec), yours to close: Node has no dup().
 * A supervisor can hold a listening socket without accepting on it: `dup(server)`, then
 * `server.close()`.
 *
 * @example const listener = dup(server); server.close()
 */
export function dup(socket: SocketLike): number {
  return native.dup(fdOf(socket))
}

/**
 * `CMSG_LEN(payload)`: the `cmsg_len` of a control message with that many payload bytes.
 *
 * @example CMSG_LEN(4) // 20 on 64-bit Linux
 */
export function CMSG_LEN(payload: number): number {
  validateInteger(payload, 'payload', 0, constants.MAX_CMSG_SIZE)
  return native.CMSG_LEN(payload)!
}

/**
 * `CMSG_SPACE(payload)`: the room a control message with that many payload bytes takes.
 *
 * @example CMSG_SPACE(4) // 24 on 64-bit Linux: room for two descriptors
 */
export function CMSG_SPACE(payload: number): number {
  validateInteger(payload, 'payload', 0, constants.MAX_CMSG_SIZE)
  return native.CMSG_SPACE(payload)!
}
