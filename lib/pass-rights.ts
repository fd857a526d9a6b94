// Sockets that refuse descriptors (SO_PASSRIGHTS, Linux 6.16+). Off, a socket accepts no
// SCM_RIGHTS: whoever sends it descriptors gets EPERM from sendmsg and nothing arrives, so a peer
// cannot fill the receiver's descriptor table (a supervisor's, say) with descriptors it never asked
// for. A listening socket's setting is what every connection it accepts starts with, those still
// in its backlog included (measured on Linux 6.18).
import { native } from './binding'
import { invalidArgType } from './errors'
import { fdOf, type SocketLike } from './fd'

/**
 * Linux 6.16+: whether `socket` accepts descriptors (SCM_RIGHTS). With `false`, senders of
 * descriptors to it get EPERM and none arrives; set it on a listening socket before it listens and
 * every accepted connection refuses them too (the `passRights` option of UnixServer.listen does
 * that). ERR_SENDMSG_UNSUPPORTED on older kernels and elsewhere.
 *
 * @example passRights(sock, false) // this peer may send data and credentials, never descriptors
 */
export function passRights(socket: SocketLike, on: boolean): void {
  if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on)
  native.setPassRights(fdOf(socket), on)
}

/**
 * Internal: turns descriptors off on `fd` where the kernel can (6.16+); elsewhere nothing
 * (ERR_SENDMSG_UNSUPPORTED is the kernel's "not here", not a fault). Whether it did.
 */
/** @internal */
export function refuseRightsIfSupported(fd: number): boolean {
  try {
    native.setPassRights(fd, false)
    return true
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'ERR_SENDMSG_UNSUPPORTED') return false
    throw error
  }
}
