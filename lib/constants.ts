// The running platform's values of the socket constants. Values differ between Linux and macOS
// (SOL_SOCKET is 1 on Linux and 0xffff on macOS, MSG_* bits differ), so they come from the addon,
// never from a table here. Linux-only constants are undefined elsewhere.
import { native } from './binding'

/**
 * The socket constants of the running platform.
 *
 * @example const { SOL_SOCKET, SCM_RIGHTS }: PlatformConstants = constants
 */
export interface PlatformConstants {
  readonly SOL_SOCKET: number
  readonly SCM_RIGHTS: number
  /** Linux only. */
  readonly SCM_CREDENTIALS?: number
  /** Linux 6.5+ only: a pidfd of the sender. */
  readonly SCM_PIDFD?: number
  /** Linux only. */
  readonly SO_PASSCRED?: number
  readonly AF_UNIX: number
  readonly AF_INET: number
  readonly AF_INET6: number
  readonly SOCK_STREAM: number
  readonly SOCK_DGRAM: number
  readonly SOCK_SEQPACKET: number
  readonly MSG_OOB: number
  readonly MSG_PEEK: number
  readonly MSG_DONTROUTE: number
  readonly MSG_EOR: number
  readonly MSG_TRUNC: number
  readonly MSG_CTRUNC: number
  readonly MSG_WAITALL: number
  readonly MSG_DONTWAIT: number
  /** Linux only; the package adds it to every send itself. */
  readonly MSG_NOSIGNAL?: number
  /** Linux only; the package adds it to every receive itself. */
  readonly MSG_CMSG_CLOEXEC?: number
  /** Descriptors one message may carry (Linux SCM_MAX_FD, 253). */
  readonly SCM_MAX_FD: number
  /** The largest `cmsgSize` whose CMSG_SPACE still fits a control buffer. */
  readonly MAX_CMSG_SIZE: number
}

/**
 * The running platform's values of the socket constants, frozen.
 *
 * @example if (constants.SCM_CREDENTIALS === undefined) console.log('no SCM_CREDENTIALS here')
 */
export const constants: PlatformConstants = Object.freeze(native.platformConstants())
