// Who is at the other end of an AF_UNIX socket: the kernel's answer (SO_PEERCRED on Linux,
// getpeereid and LOCAL_PEERPID on macOS), and credentials sent as control messages
// (SCM_CREDENTIALS, Linux only), which the kernel checks before delivering them.
import type { AncillaryItem } from './ancillary'
import { native } from './binding'
import { binaryOf } from './bytes'
import { checkOptionNames } from './cancellation'
import { constants } from './constants'
import { invalidArgType, stateError, validateInteger, INT32_MAX } from './errors'
import { fdOf, type SocketLike } from './fd'

/**
 * A process's identity as the kernel reports it.
 *
 * @example const { pid, uid, gid }: Credentials = peerCredentials(sock)
 */
export interface Credentials {
  pid: number
  uid: number
  gid: number
}

/**
 * The credentials of the process at the other end of a connected AF_UNIX socket, as the kernel
 * recorded them when it connected: fit for access checks.
 *
 * @example if (peerCredentials(sock).uid !== process.getuid?.()) sock.close()
 */
export function peerCredentials(socket: SocketLike): Credentials {
  return native.peerCredentials(fdOf(socket))
}

function requireScmCredentials(): number {
  const type = constants.SCM_CREDENTIALS
  if (type === undefined) throw stateError('ERR_SENDMSG_UNSUPPORTED', `SCM_CREDENTIALS exists only on Linux, not on ${process.platform}`)
  return type
}

/** `struct ucred`: pid_t, uid_t, gid_t, native-endian. */
const UCRED_SIZE = 12

/**
 * The SCM_CREDENTIALS triple (Linux) carrying `credentials`, by default this process's own. The
 * kernel refuses (EPERM) credentials a process may not claim.
 *
 * @example sendmsg(sock, 'hi', [scmCredentials()])
 */
export function scmCredentials(credentials: Partial<Credentials> = {}): AncillaryItem {
  const type = requireScmCredentials()
  if (credentials === null || typeof credentials !== 'object') throw invalidArgType('credentials', 'of type object', credentials)
  const { pid = process.pid, uid = process.getuid!(), gid = process.getgid!() } = checkOptionNames(credentials, 'credentials', ['pid', 'uid', 'gid']) as Partial<Credentials>
  const data = Buffer.alloc(UCRED_SIZE)
  const view = new DataView(data.buffer, data.byteOffset, UCRED_SIZE)
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
  view.setInt32(0, validateInteger(pid, 'credentials.pid', 0, INT32_MAX), littleEndian)
  view.setUint32(4, validateInteger(uid, 'credentials.uid', 0, 2 ** 32 - 1), littleEndian)
  view.setUint32(8, validateInteger(gid, 'credentials.gid', 0, 2 ** 32 - 1), littleEndian)
  return [constants.SOL_SOCKET, type, data]
}

/**
 * The credentials in received ancillary data (an SCM_CREDENTIALS item), or undefined.
 *
 * @example const who = credentialsFromAncillary(msg.ancillary)
 */
export function credentialsFromAncillary(ancillary: readonly (readonly [number, number, ArrayBufferView])[]): Credentials | undefined {
  const type = constants.SCM_CREDENTIALS
  if (type === undefined) return undefined
  for (const [level, kind, payload] of ancillary) {
    if (level !== constants.SOL_SOCKET || kind !== type) continue
    const data = binaryOf(payload, 'data')
    if (data.byteLength < UCRED_SIZE) return undefined
    const view = new DataView(data.buffer, data.byteOffset, UCRED_SIZE)
    const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
    return { pid: view.getInt32(0, littleEndian), uid: view.getUint32(4, littleEndian), gid: view.getUint32(8, littleEndian) }
  }
  return undefined
}

/**
 * Linux: makes the kernel attach the sender's credentials to every message `socket` receives
 * (SO_PASSCRED), whether or not the sender sent any.
 *
 * @example passCredentials(sock)
 */
export function passCredentials(socket: SocketLike, on = true): void {
  requireScmCredentials()
  native.setPassCredentials(fdOf(socket), on)
}
