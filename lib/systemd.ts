// systemd without libsystemd: socket activation (sd_listen_fds), service notifications
// (sd_notify) and the fd store, implemented from the protocol systemd documents in
// sd_listen_fds(3) and sd_notify(3), and checked against libsystemd itself in the tests.
import { native } from './binding'
import { listenerProblem } from './bridge'
import { checkOptionNames } from './cancellation'
import { constants } from './constants'
import { invalidArgType, invalidArgValue, stateError, validateInteger, INT32_MAX } from './errors'
import { descriptorOf, descriptorsOf, type DescriptorLike } from './fd'
import type { Listeners, ReceivedListeners } from './handoff'
import { ReceivedFd } from './received-fd'
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
  try {
    return claim(passedFds())
  } finally {
    if (unsetEnvironment) unsetListenEnvironment()
  }
}

/** What LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES say was passed to this process; nothing is touched. */
function passedFds(): ListenFd[] {
  const { LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES } = process.env
  if (LISTEN_PID === undefined || LISTEN_FDS === undefined) return []
  if (!/^[1-9][0-9]*$/.test(LISTEN_PID)) throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_PID is not a process id: ${JSON.stringify(LISTEN_PID)}`)
  if (Number(LISTEN_PID) !== process.pid) return []
  if (!/^[0-9]+$/.test(LISTEN_FDS)) throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_FDS is not a count: ${JSON.stringify(LISTEN_FDS)}`)
  const count = Number(LISTEN_FDS)
  const names = LISTEN_FDNAMES === undefined ? [] : LISTEN_FDNAMES.split(':')
  if (LISTEN_FDNAMES !== undefined && names.length !== count) {
    throw stateError('ERR_SENDMSG_LISTEN_FDS', `LISTEN_FDNAMES names ${names.length} sockets but LISTEN_FDS says ${count}`)
  }
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }))
}

/** Makes the passed descriptors close-on-exec, as sd_listen_fds does: they are this process's, not its children's. */
function claim(fds: ListenFd[]): ListenFd[] {
  for (const { fd } of fds) native.setCloexec(fd)
  return fds
}

function unsetListenEnvironment(): void {
  delete process.env.LISTEN_PID
  delete process.env.LISTEN_FDS
  delete process.env.LISTEN_FDNAMES
}

/**
 * Options of {@link listenFdsByName}.
 *
 * @example listenFdsByName({ expect: ['http', 'dns'] })
 */
export interface ListenFdsByNameOptions<Name extends string = string> extends ListenFdsOptions {
  /**
   * The names this process serves. A descriptor passed under another name (a listener an older
   * version stored, say) is closed at once with a warning, and the record is typed by these names.
   */
  expect?: readonly Name[]
}

/**
 * The descriptors systemd passed (socket activation, or its fd store after a restart) by their
 * names (LISTEN_FDNAMES): each a close-on-exec {@link ReceivedFd} this process owns, in a record
 * that `toNetServer`, `toDgramSocket`, `storeListeners` and `offerListeners` take as it is. A name
 * may be missing (nothing was stored yet: make that listener yourself). A name passed more than
 * once is refused with ERR_SENDMSG_LISTEN_FDS before anything is taken (descriptors and
 * environment as they were, for `listenFds()`), as is a malformed environment.
 *
 * @example const { http, dns } = listenFdsByName({ expect: ['http', 'dns'] }); if (http) toNetServer(http, app)
 */
export function listenFdsByName<const Name extends string = string>(
  options?: ListenFdsByNameOptions<Name>,
): string extends Name ? ReceivedListeners : Partial<ReceivedListeners<Name>> {
  const { unsetEnvironment = true, expect } = checkOptionNames(options, 'options', ['unsetEnvironment', 'expect']) as ListenFdsByNameOptions<Name>
  if (expect !== undefined && (!Array.isArray(expect) || expect.some((name) => typeof name !== 'string'))) {
    throw invalidArgType('options.expect', 'an array of strings', expect)
  }
  let fds: ListenFd[]
  try {
    fds = passedFds()
  } catch (error) {
    if (unsetEnvironment) unsetListenEnvironment()
    throw error
  }
  const seen = new Set<string>()
  for (const { name } of fds) {
    if (seen.has(name)) {
      throw stateError(
        'ERR_SENDMSG_LISTEN_FDS',
        `systemd passed more than one descriptor named '${name}': take them with listenFds(), or remove the stale ones from the fd store (removeStoredFds('${name}'))`,
      )
    }
    seen.add(name)
  }
  if (unsetEnvironment) unsetListenEnvironment()
  const listeners: Record<string, ReceivedFd> = Object.create(null)
  for (const { fd, name } of claim(fds)) {
    if (expect !== undefined && !(expect as readonly string[]).includes(name)) {
      native.closeFd(fd)
      process.emitWarning(`systemd passed a descriptor named '${name}' (fd ${fd}), which this process does not expect; closed it. removeStoredFds('${name}') takes it out of the fd store.`, {
        code: 'SENDMSG_UNEXPECTED_LISTEN_FD',
      })
      continue
    }
    listeners[name] = new ReceivedFd(fd)
  }
  // Any name of the record may be missing: typed optional when the names are known, and as an
  // index (whose missing keys read as undefined) otherwise, so that it passes for Listeners.
  return listeners as string extends Name ? ReceivedListeners : Partial<ReceivedListeners<Name>>
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

/** What FDNAME= may be here: a handoff name (so a stored listener can be offered on by name) without ':' (LISTEN_FDNAMES's separator). */
const FDNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

function fdName(name: unknown, argument: string): string {
  if (typeof name !== 'string' || !FDNAME.test(name)) {
    throw invalidArgValue(argument, name, 'must be 1-64 letters, digits, or . _ - (starting with a letter or digit)')
  }
  return name
}

/**
 * Stores listeners in the service manager's fd store, one `FDSTORE=1` message per name
 * (`FDNAME=`), so that they come back by name (`listenFdsByName`) when the service restarts,
 * connections meanwhile waiting in their queues. Each must be a listening socket or a bound UDP
 * socket, as in a handoff. UDP sockets are stored with `FDPOLL=0`: systemd drops a stored
 * descriptor that polls with an error, and a UDP socket does whenever an ICMP error arrives for a
 * datagram it sent (with IP_RECVERR, which UdpSocket sets). Storing the same socket again is
 * harmless (systemd keeps one copy); to store another socket under a name, `removeStoredFds(name)`
 * first. Needs `FileDescriptorStoreMax=` in the unit. Resolves to false without NOTIFY_SOCKET.
 *
 * @example await storeListeners({ http: server, dns: udpSocket })
 */
export function storeListeners(listeners: Listeners): Promise<boolean> {
  if (listeners === null || typeof listeners !== 'object' || Array.isArray(listeners)) {
    throw invalidArgType('listeners', 'an object of listeners by name', listeners)
  }
  // Every argument is checked before the first message goes out: all of them are stored, or none.
  const messages = Object.entries(listeners).map(([name, source]) => {
    fdName(name, `listeners.${name}`)
    const fd = descriptorOf(source, `listeners.${name}`)
    const problem = listenerProblem(fd)
    if (problem !== undefined) throw invalidArgValue(`listeners.${name}`, fd, problem)
    const state: Record<string, string | number> = { FDSTORE: 1, FDNAME: name }
    if (native.describeSocket(fd).type === constants.SOCK_DGRAM) state.FDPOLL = 0
    return { state, fd }
  })
  return storeEach(messages)
}

async function storeEach(messages: Array<{ state: Record<string, string | number>; fd: number }>): Promise<boolean> {
  for (const { state, fd } of messages) {
    if (!(await notify(state, { fds: [fd] }))) return false
  }
  return true
}

/**
 * Takes every descriptor stored under `name` out of the service manager's fd store
 * (`FDSTOREREMOVE=1`). Resolves to false without NOTIFY_SOCKET.
 *
 * @example await removeStoredFds('admin') // this version no longer serves it
 */
export function removeStoredFds(name: string): Promise<boolean> {
  return notify({ FDSTOREREMOVE: 1, FDNAME: fdName(name, 'name') })
}

/**
 * Tells the service manager that `pid` is the service's main process from now on (`MAINPID=`):
 * how a supervisor replaced under `Type=notify` hands its place to its successor. systemd takes
 * it only from the current main process (or, with `NotifyAccess=all`, any process of the
 * service), and only for a process of the service's own control group, so the old supervisor
 * sends it (once the successor holds the listeners: the offer's 'handoff' event gives its pid),
 * before it exits. `state` adds variables to the same message, such as `READY: 1` closing a reload.
 *
 * @example offerListeners(path, listeners).once('handoff', async (peer) => { await notifyMainPid(peer.pid); process.exit(0) })
 */
export function notifyMainPid(pid: number, state?: Record<string, string | number | boolean>): Promise<boolean> {
  validateInteger(pid, 'pid', 2, INT32_MAX)
  if (state !== undefined && (state === null || typeof state !== 'object')) throw invalidArgType('state', 'of type object', state)
  return notify({ ...state, MAINPID: pid })
}

/**
 * `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now, in µs), as `Type=notify-reload` wants
 * it: systemd takes a reload as begun only with a timestamp at or after the moment it sent the
 * reload signal. Send READY=1 (`notifyReady()`) when done, or use {@link reloading}.
 *
 * @example process.on('SIGHUP', async () => { await notifyReloading(); log('reading the configuration again'); await notifyReady() })
 */
export function notifyReloading(status?: string): Promise<boolean> {
  const state: Record<string, string | number> = { RELOADING: 1, MONOTONIC_USEC: native.monotonicUsec() }
  if (status !== undefined) state.STATUS = status
  return notify(state)
}

/**
 * Runs `task` between `RELOADING=1` (with `MONOTONIC_USEC=`) and `READY=1`, the second sent
 * whether the task succeeds or throws (the service still runs, on its old configuration if the
 * reload failed), so that systemd's reload job always ends. Resolves to what the task returns.
 *
 * @example process.on('SIGHUP', () => void reloading(async () => log('reading the configuration again')))
 */
export function reloading<T>(task: () => T | Promise<T>): Promise<T> {
  if (typeof task !== 'function') throw invalidArgType('task', 'a function', task)
  return reloadAround(task)
}

async function reloadAround<T>(task: () => T | Promise<T>): Promise<T> {
  await notifyReloading()
  try {
    return await task()
  } finally {
    await notifyReady()
  }
}
