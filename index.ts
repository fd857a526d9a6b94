// sendmsg: the whole of POSIX sendmsg(2)/recvmsg(2) for Node.js, control messages included.
//
// The public API. Layers, from the bottom:
//   crates/sendmsg-core   the syscalls (Rust, nix)
//   crates/sendmsg-napi   the Node-API binding (generated loader: binding.js)
//   lib/                  the TypeScript layer: argument checks, Node-style errors, helpers
//   index.ts              this file: what the package exports
export { sendmsg, recvmsg, getSocketFamily, socketpair, pipe, dup, CMSG_LEN, CMSG_SPACE } from './lib/sync'
export { closeFd } from './lib/close'
export type { ReceivedMessage, SocketType } from './lib/sync'
export { scmRights, fdsFromAncillary, unpackFds } from './lib/ancillary'
export type { AncillaryItem, ReceivedAncillaryItem } from './lib/ancillary'
export type { Bytes, Data } from './lib/bytes'
export type { DescriptorLike, SocketLike } from './lib/fd'
export type { NodeError } from './lib/errors'
export { constants } from './lib/constants'
export { UnixSocket } from './lib/socket'
export type { UnixSocketOptions, ConnectOptions, SendOptions, UnixSocketEvents } from './lib/socket'
export { UnixServer } from './lib/server'
export type { UnixServerOptions, UnixServerEvents } from './lib/server'
export { UdpSocket, UdpMessage, ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE } from './lib/udp'
export type { UdpType, UdpSocketOptions, UdpSendOptions, UdpSocketEvents, IcmpError } from './lib/udp'
export { Message } from './lib/message'
export { ReceivedFd } from './lib/received-fd'
export { peerCredentials, scmCredentials, credentialsFromAncillary, passCredentials } from './lib/credentials'
export type { Credentials } from './lib/credentials'
export { peerPidfd, pidfdPid, passPidfd, pidfdFromAncillary } from './lib/pidfd'
export { passRights } from './lib/pass-rights'
export { fdOf, toNetServer, toNetSocket, toDgramSocket, isListeningSocket } from './lib/bridge'
export type { Descriptor } from './lib/bridge'
export {
  listenFds,
  listenFdsByName,
  notify,
  notifyReady,
  notifyReloading,
  reloading,
  notifyMainPid,
  storeFds,
  storeListeners,
  removeStoredFds,
  SD_LISTEN_FDS_START,
} from './lib/systemd'
export type { ListenFd, ListenFdsOptions, ListenFdsByNameOptions, NotifyOptions, NotifyState } from './lib/systemd'
export { FrameChannel } from './lib/frames'
export type { Frame, FrameChannelEvents, FrameChannelOptions, NextFrameOptions } from './lib/frames'
export type { WaitOptions } from './lib/cancellation'
export {
  sendListeners,
  receiveListeners,
  spawnWorker,
  workerListeners,
  offerListeners,
  takeListeners,
  ListenerOffer,
  HANDOFF_FD_ENV,
} from './lib/handoff'
export type {
  Listeners,
  ListenerSource,
  ReceivedListeners,
  ReceivedHandoff,
  ReceiveListenersOptions,
  SpawnWorkerOptions,
  SpawnedWorker,
  WorkerHandoff,
  WorkerListenersOptions,
  SupervisorExitPolicy,
  Drainable,
  OfferOptions,
  ListenerOfferEvents,
  TakeOptions,
  HandoffError,
  PeerIdentity,
} from './lib/handoff'
export type { PlatformConstants } from './lib/constants'

import { constants } from './lib/constants'

// Each constant as a named export too, with the running platform's value.
/** The socket level of control messages (1 on Linux, 0xffff on macOS).
 * @example sendmsg(sock, 'x', [[SOL_SOCKET, SCM_RIGHTS, new Int32Array([fd])]]) */
export const SOL_SOCKET = constants.SOL_SOCKET
/** Control message type: descriptors to copy to the receiver.
 * @example const rights = recvmsg(sock).ancillary.filter(([level, type]) => level === SOL_SOCKET && type === SCM_RIGHTS) */
export const SCM_RIGHTS = constants.SCM_RIGHTS
/** Control message type, Linux only (undefined elsewhere): the sender's pid, uid and gid.
 * @example if (type === SCM_CREDENTIALS) console.log('pid', data.readInt32LE(0)) */
export const SCM_CREDENTIALS = constants.SCM_CREDENTIALS
/** Control message type, Linux 6.5+ only: a pidfd of the sender.
 * @example const pidfd = type === SCM_PIDFD ? data.readInt32LE(0) : -1 // yours to close */
export const SCM_PIDFD = constants.SCM_PIDFD
/** Socket option, Linux only: the kernel then attaches the sender's SCM_CREDENTIALS to every message.
 * @example const canAskForCredentials = SO_PASSCRED !== undefined */
export const SO_PASSCRED = constants.SO_PASSCRED
/** Address family: Unix domain sockets.
 * @example getSocketFamily(sock) === AF_UNIX */
export const AF_UNIX = constants.AF_UNIX
/** Address family: IPv4.
 * @example getSocketFamily(tcpSocket) === AF_INET */
export const AF_INET = constants.AF_INET
/** Address family: IPv6.
 * @example getSocketFamily(tcpSocket) === AF_INET6 */
export const AF_INET6 = constants.AF_INET6
/** Socket type: a byte stream, what `socketpair('stream')` makes.
 * @example const isStream = socketType === SOCK_STREAM */
export const SOCK_STREAM = constants.SOCK_STREAM
/** Socket type: datagrams, what `socketpair('dgram')` makes.
 * @example const isDatagram = socketType === SOCK_DGRAM */
export const SOCK_DGRAM = constants.SOCK_DGRAM
/** Socket type: ordered, reliable datagrams (Linux), what `socketpair('seqpacket')` makes.
 * @example const isSeqpacket = socketType === SOCK_SEQPACKET */
export const SOCK_SEQPACKET = constants.SOCK_SEQPACKET
/** Send flag: out-of-band data (TCP urgent data; AF_UNIX refuses it).
 * @example sendmsg(tcpSocket, '!', [], MSG_OOB) */
export const MSG_OOB = constants.MSG_OOB
/** Receive flag: look at the next message and leave it queued (descriptors come as fresh copies).
 * @example const { data } = recvmsg(sock, 1024, 4096, MSG_PEEK) */
export const MSG_PEEK = constants.MSG_PEEK
/** Send flag: bypass routing (meaningful for IP sockets).
 * @example sendmsg(udpSocket, data, [], MSG_DONTROUTE) */
export const MSG_DONTROUTE = constants.MSG_DONTROUTE
/** Flag: end of record (seqpacket), in `flags` of a received message.
 * @example if (recvmsg(sock).flags & MSG_EOR) console.log('end of record') */
export const MSG_EOR = constants.MSG_EOR
/** Received flag: the datagram was longer than `maxSize` and was cut short.
 * @example if (recvmsg(sock, 16).flags & MSG_TRUNC) console.log('datagram cut short') */
export const MSG_TRUNC = constants.MSG_TRUNC
/** Received flag: the control data did not fit (`cmsgSize` too small; `CMSG_SPACE(4)` already holds two descriptors).
 * @example if (recvmsg(sock, 1024, 0).flags & MSG_CTRUNC) console.log('descriptors arrived with no room for them') */
export const MSG_CTRUNC = constants.MSG_CTRUNC
/** Receive flag: wait for the full `maxSize` bytes (stream sockets).
 * @example const header = recvmsg(sock, 4, 0, MSG_WAITALL).data */
export const MSG_WAITALL = constants.MSG_WAITALL
/** Flag: this call only does not block; `EAGAIN` instead.
 * @example recvmsg(sock, 1024, 4096, MSG_DONTWAIT) // throws EAGAIN when nothing is queued */
export const MSG_DONTWAIT = constants.MSG_DONTWAIT
/** Send flag, Linux only: no SIGPIPE. The package adds it to every send itself.
 * @example const linux = MSG_NOSIGNAL !== undefined */
export const MSG_NOSIGNAL = constants.MSG_NOSIGNAL
/** Receive flag, Linux only: received descriptors are close-on-exec. The package adds it itself.
 * @example const atomicCloexec = MSG_CMSG_CLOEXEC !== undefined */
export const MSG_CMSG_CLOEXEC = constants.MSG_CMSG_CLOEXEC
/** The most descriptors one message may carry (253 on Linux).
 * @example sendmsg(sock, 'x', [scmRights(fds.slice(0, SCM_MAX_FD))]) */
export const SCM_MAX_FD = constants.SCM_MAX_FD
