// sendmsg: the whole of POSIX sendmsg(2)/recvmsg(2) for Node.js, control messages included.
//
// The public API. Layers, from the bottom:
//   crates/sendmsg-core   the syscalls (Rust, nix)
//   crates/sendmsg-napi   the Node-API binding (generated loader: binding.js)
//   lib/                  the TypeScript layer: argument checks, Node-style errors, helpers
//   index.ts              this file: what the package exports
export { sendmsg, recvmsg, getSocketFamily, socketpair, pipe, dup, CMSG_LEN, CMSG_SPACE } from './lib/sync'
export type { ReceivedMessage, SocketType } from './lib/sync'
export { scmRights, fdsFromAncillary, unpackFds } from './lib/ancillary'
export type { AncillaryItem, ReceivedAncillaryItem } from './lib/ancillary'
export type { Bytes, Data } from './lib/bytes'
export type { SocketLike } from './lib/fd'
export type { NodeError } from './lib/errors'
export { constants } from './lib/constants'
export { UnixSocket } from './lib/socket'
export type { UnixSocketOptions, SendOptions } from './lib/socket'
export { UnixServer } from './lib/server'
export type { UnixServerOptions } from './lib/server'
export { Message } from './lib/message'
export { ReceivedFd } from './lib/received-fd'
export { peerCredentials, scmCredentials, credentialsFromAncillary, passCredentials } from './lib/credentials'
export type { Credentials } from './lib/credentials'
export { fdOf, toNetServer, toNetSocket, toDgramSocket, isListeningSocket } from './lib/bridge'
export { listenFds, notify, notifyReady, storeFds, SD_LISTEN_FDS_START } from './lib/systemd'
export type { ListenFd, ListenFdsOptions, NotifyOptions, NotifyState } from './lib/systemd'
export { FrameChannel } from './lib/frames'
export type { Frame, FrameChannelOptions } from './lib/frames'
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
  OfferOptions,
  TakeOptions,
  HandoffError,
} from './lib/handoff'
export type { PlatformConstants } from './lib/constants'

import { constants } from './lib/constants'

// Each constant as a named export too, with the running platform's value.
export const SOL_SOCKET = constants.SOL_SOCKET
export const SCM_RIGHTS = constants.SCM_RIGHTS
export const SCM_CREDENTIALS = constants.SCM_CREDENTIALS
export const SCM_PIDFD = constants.SCM_PIDFD
export const SO_PASSCRED = constants.SO_PASSCRED
export const AF_UNIX = constants.AF_UNIX
export const AF_INET = constants.AF_INET
export const AF_INET6 = constants.AF_INET6
export const SOCK_STREAM = constants.SOCK_STREAM
export const SOCK_DGRAM = constants.SOCK_DGRAM
export const SOCK_SEQPACKET = constants.SOCK_SEQPACKET
export const MSG_OOB = constants.MSG_OOB
export const MSG_PEEK = constants.MSG_PEEK
export const MSG_DONTROUTE = constants.MSG_DONTROUTE
export const MSG_EOR = constants.MSG_EOR
export const MSG_TRUNC = constants.MSG_TRUNC
export const MSG_CTRUNC = constants.MSG_CTRUNC
export const MSG_WAITALL = constants.MSG_WAITALL
export const MSG_DONTWAIT = constants.MSG_DONTWAIT
export const MSG_NOSIGNAL = constants.MSG_NOSIGNAL
export const MSG_CMSG_CLOEXEC = constants.MSG_CMSG_CLOEXEC
export const SCM_MAX_FD = constants.SCM_MAX_FD
