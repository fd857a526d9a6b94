// Pidfds (Linux 6.5+): descriptors for a process that, unlike its pid, never come to name another
// one. The peer's (SO_PEERPIDFD), and the sender's with every message (SO_PASSPIDFD, SCM_PIDFD).
// A check of who the peer is made through its pid (reading /proc/<pid>, say) is about the peer
// if, afterwards, its pidfd still names that pid: a pid reused in between would not be the pidfd's.
//
// The kernel's answers for what it lacks come from the binding as Node-style errors:
// ERR_SENDMSG_UNSUPPORTED (ENOPROTOOPT: before Linux 6.5, or not Linux) and
// ERR_SENDMSG_PEER_EXITED (EINVAL: before Linux 6.18, the peer has exited), each with the `errno`
// and `syscall` of the refusal.
import { native } from './binding'
import { binaryOf } from './bytes'
import { constants } from './constants'
import { invalidArgType, validateArray } from './errors'
import { fdOf, type DescriptorLike, type SocketLike } from './fd'
import { ownReceivedFd, type ReceivedFd } from './received-fd'

/**
 * A pidfd of the process at the other end of a connected AF_UNIX socket (the one that connected,
 * or made the pair), close-on-exec and owned by the ReceivedFd returned: close it (or `using`).
 * Linux 6.5+: ERR_SENDMSG_UNSUPPORTED before (and elsewhere). A peer that has exited gives a
 * pidfd whose {@link pidfdPid} is -1 on Linux 6.18+, and ERR_SENDMSG_PEER_EXITED before.
 *
 * @example
 * using pidfd = peerPidfd(sock)
 * const { pid } = peerCredentials(sock)
 * // ... look at the process through /proc/<pid> ...
 * if (pidfdPid(pidfd) !== pid) sock.close() // it exited meanwhile: that may have been another process
 */
export function peerPidfd(socket: SocketLike): ReceivedFd {
  return ownReceivedFd(native.peerPidfd(fdOf(socket)))
}

/**
 * The pid a pidfd names, as this process sees it: -1 once that process has exited (so a pid read
 * before is no longer its), 0 when it lives in a pid namespace this process cannot see. Linux
 * only; EBADF for a descriptor that is not a pidfd.
 *
 * @example const alive = pidfdPid(msg.pidfd!) > 0
 */
export function pidfdPid(pidfd: DescriptorLike): number {
  return native.pidfdPid(fdOf(pidfd, 'pidfd'))
}

/**
 * Linux 6.5+: makes the kernel attach a pidfd of the sender (SCM_PIDFD) to every message `socket`
 * receives. Event-loop sockets deliver it as `message.pidfd` (owned, closed with the message unless
 * taken); `recvmsg` returns it in an SCM_PIDFD item, the caller's to close (see
 * {@link pidfdFromAncillary}). ERR_SENDMSG_UNSUPPORTED on older kernels and elsewhere.
 *
 * @example passPidfd(sock); const pidfd = pidfdFromAncillary(recvmsg(sock).ancillary)
 */
export function passPidfd(socket: SocketLike, on = true): void {
  if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on)
  native.setPassPidfd(fdOf(socket), on)
}

/**
 * The pidfd in the SCM_PIDFD item of ancillary data `recvmsg` returned, or undefined. The caller
 * owns it, as every descriptor `recvmsg` returns: close it (`closeFd`).
 *
 * @example const pidfd = pidfdFromAncillary(recvmsg(sock).ancillary); if (pidfd !== undefined) closeFd(pidfd)
 */
export function pidfdFromAncillary(ancillary: readonly (readonly [number, number, ArrayBufferView])[]): number | undefined {
  validateArray(ancillary, 'ancillary')
  const type = constants.SCM_PIDFD
  if (type === undefined) return undefined
  for (const [level, kind, payload] of ancillary) {
    if (level !== constants.SOL_SOCKET || kind !== type) continue
    const data = binaryOf(payload, 'data')
    if (data.byteLength < 4) return undefined
    return new DataView(data.buffer, data.byteOffset, 4).getInt32(0, littleEndian)
  }
  return undefined
}

/**
 * Internal: the peer's pidfd where the kernel gives one, else undefined (before Linux 6.5, or
 * not Linux; or, before 6.18, a peer that has already exited).
 */
/** @internal */
export function peerPidfdIfAny(socket: SocketLike): ReceivedFd | undefined {
  try {
    return peerPidfd(socket)
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code
    if (code === 'ERR_SENDMSG_UNSUPPORTED' || code === 'ERR_SENDMSG_PEER_EXITED') return undefined
    throw error
  }
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
