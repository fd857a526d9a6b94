// systemd without libsystemd: socket activation (sd_listen_fds) and service notifications
// (sd_notify), implemented from the protocol systemd documents in sd_listen_fds(3) and
// sd_notify(3).
import { native } from './binding'
import { checkOptionNames } from './cancellation'
import { invalidArgType, invalidArgValue, stateError } from './errors'
import { descriptorsOf, type DescriptorLike } from './fd'
import { UnixSocket } from './socket'

/**
 * The first descriptor systemd passes (SD_LISTEN_FDS_START).
 *
 * @example const first = SD_LISTEN_FDS_START // 3
 */
export const SD_LISTEN_FDS_START = 3

/**
 * A socket passed by socket activation.
 *
 * @example const http = listenFds().find((socket: ListenFd) => socket.name === 'http')
 */
export interface ListenFd {
  /** The descriptor: 3, 4, ... */
  fd: number
  /** Its name from LISTEN_FDNAMES (FileDescriptorName= in the socket unit), or 'unknown'. */
  name: string
}

/**
 * Options of {@link listenFds}.
 *
 * @example listenFds({ unsetEnvironment: false })
 */
export interface ListenFdsOptions {
  /** Remove LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from process.env (default true), so children do not inherit them. */
  unsetEnvironment?: boolean
}

/**
 * The sockets systemd passed to this process (socket activation), made close-on-exec. Empty when
 * none were passed to this process (LISTEN_PID names another). Hand each to
 * `toNetServer`, `UnixServer.from` or `UnixSocket.from`.
 *
 * @example for (const { fd, name } of listenFds()) if (name === 'http') toNetServer(fd, app)
 */
export function listenFds(options?: ListenFdsOptions): ListenFd[] {
  const { unsetEnvironment = true } = checkOptionNames(options, 'options', ['unsetEnvironment']) as ListenFdsOptions
  const { LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES } = process.env
  try {
    if (LISTEN_PID === undefined || LISTEN_FDS === undefined) return []
    if (!/^[1-9][0-9]*$/.test(LISTEN_PID)) throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_PID is not a process id: ${JSON.stringify(LISTEN_PID)}`)
    if (Number(LISTEN_PID) !== process.pid) return []
    if (!/^[0-9]+$/.test(LISTEN_FDS)) throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_FDS is not a count: ${JSON.stringify(LISTEN_FDS)}`)
    const count = Number(LISTEN_FDS)
    const names = LISTEN_FDNAMES === undefined ? [] : LISTEN_FDNAMES.split(':')
    if (LISTEN_FDNAMES !== undefined && names.length !== count) {
      throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_FDNAMES names ${names.length} sockets but LISTEN_FDS says ${count}`)
    }
    const fds: ListenFd[] = []
    for (let i = 0; i < count; i++) {
      const fd = SD_LISTEN_FDS_START + i
      native.setCloexec(fd)
      fds.push({ fd, name: names[i] || 'unknown' })
    }
    return fds
  } finally {
    if (unsetEnvironment) {
      delete process.env.LISTEN_PID
      delete process.env.LISTEN_FDS
      delete process.env.LISTEN_FDNAMES
    }
  }
}

/**
 * A notification: the text sd_notify takes, or its variables as an object.
 *
 * @example const state: NotifyState = { READY: 1, STATUS: 'serving' }
 */
export type NotifyState = string | Record<string, string | number | boolean>

/**
 * Options of {@link notify}.
 *
 * @example await notify({ FDSTORE: 1, FDNAME: 'http' }, { fds: [server] })
 */
export interface NotifyOptions {
  /** Descriptors to send with the message (FDSTORE=1 keeps them in the service manager), as anywhere the package takes them. */
  fds?: readonly DescriptorLike[]
  /** Remove NOTIFY_SOCKET from process.env after sending (default false). */
  unsetEnvironment?: boolean
}

function formatState(state: NotifyState): string {
  if (typeof state === 'string') return state
  if (state === null || typeof state !== 'object') throw invalidArgType('state', 'of type string or object', state)
  return Object.entries(state)
    .map(([key, value]) => {
      const text = typeof value === 'boolean' ? (value ? '1' : '0') : String(value)
      if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw invalidArgValue(`state.${key}`, key, 'is not a notification variable name')
      if (text.includes('\n')) throw invalidArgValue(`state.${key}`, text, 'must not contain a newline')
      return `${key}=${text}`
    })
    .join('\n')
}

/** NOTIFY_SOCKET as this package spells addresses: a path, or '@name' as the abstract '\0name'. */
function notifySocketAddress(value: string): string {
  if (value.startsWith('@')) return `\0${value.slice(1)}`
  if (value.startsWith('/')) return value
  throw stateError('ERR_SENDMSG_NOTIFY_SOCKET', `NOTIFY_SOCKET is neither a path nor an abstract name: ${JSON.stringify(value)}`)
}

/**
 * Sends a notification to the service manager, as sd_notify does: `'READY=1'`,
 * `{ STATUS: 'serving' }`, `{ FDSTORE: 1, FDNAME: 'http' }` with `fds`, ... Resolves to false when
 * NOTIFY_SOCKET is not set (not run by a service manager that listens).
 *
 * @example await notify({ READY: 1, STATUS: 'serving on :8080' })
 */
export async function notify(state: NotifyState, options?: NotifyOptions): Promise<boolean> {
  const { fds, unsetEnvironment = false } = checkOptionNames(options, 'options', ['fds', 'unsetEnvironment']) as NotifyOptions
  const text = formatState(state)
  const numbers = fds === undefined ? undefined : descriptorsOf(fds, 'options.fds')
  const target = process.env.NOTIFY_SOCKET
  if (unsetEnvironment) delete process.env.NOTIFY_SOCKET
  if (target === undefined || target === '') return false
  const socket = UnixSocket.datagram()
  try {
    await socket.sendTo(notifySocketAddress(target), text, numbers === undefined ? undefined : { fds: numbers })
  } finally {
    socket.close()
  }
  return true
}

/**
 * READY=1, with an optional STATUS= line.
 *
 * @example await notifyReady('accepting connections')
 */
export function notifyReady(status?: string): Promise<boolean> {
  return notify(status === undefined ? { READY: 1 } : { READY: 1, STATUS: status })
}

/**
 * Pushes descriptors into the service manager's store (FDSTORE=1) under `name`; they come back
 * through socket activation (listenFds) when the service restarts.
 *
 * @example await storeFds([server], 'http')
 */
export function storeFds(fds: readonly DescriptorLike[], name: string): Promise<boolean> {
  if (typeof name !== 'string' || !/^[^:\s]{1,255}$/.test(name)) throw invalidArgValue('name', name, 'must be 1 to 255 characters without ":" or white space')
  return notify({ FDSTORE: 1, FDNAME: name }, { fds })
}
