// Bridges between descriptors and Node's own socket objects. A descriptor is checked for what it
// really is (family, SO_TYPE, listening or connected) before Node is given it, so a mismatch is a
// clear error here rather than a confusing one inside net or dgram.
// Namespace imports: a default import of a node: module needs esModuleInterop in the consumer's
// compiler options (TS1192 without it), and these declarations ship.
import * as dgram from 'node:dgram'
import * as net from 'node:net'

import { native } from './binding'
import { constants } from './constants'
import { invalidArgValue } from './errors'
import { descriptorNumber, type ReceivedFd } from './received-fd'
import { RUNTIME, runtimeUnsupported } from './runtime'

export { fdOf } from './fd'

/**
 * A descriptor: a number, or a ReceivedFd (which the bridge takes when it succeeds).
 *
 * @example const fd: Descriptor = message.fds[0]!
 */
export type Descriptor = number | ReceivedFd

const FAMILY_NAMES: Record<number, string> = {
  [constants.AF_UNIX]: 'AF_UNIX',
  [constants.AF_INET]: 'AF_INET',
  [constants.AF_INET6]: 'AF_INET6',
}
const TYPE_NAMES: Record<number, string> = {
  [constants.SOCK_STREAM]: 'stream',
  [constants.SOCK_DGRAM]: 'datagram',
  [constants.SOCK_SEQPACKET]: 'seqpacket',
}

interface Checked {
  fd: number
  description: ReturnType<typeof native.describeSocket>
  what: string
}

function describe(fd: Descriptor): Checked {
  const number = descriptorNumber(fd)
  const description = native.describeSocket(number)
  const family = FAMILY_NAMES[description.family] ?? `address family ${description.family}`
  const type = TYPE_NAMES[description.type] ?? `socket type ${description.type}`
  const state = description.listening ? ', listening' : description.connected ? ', connected' : ''
  return { fd: number, description, what: `a ${family} ${type} socket${state}` }
}


/**
 * Makes a listening `net.Server` (or listens with the one given, e.g. an `http.Server`) of a
 * descriptor that must be a listening TCP or AF_UNIX stream socket. The server owns the
 * descriptor from then on ('listening' follows as usual).
 *
 * @example const server = toNetServer(listeners.http, http.createServer(handler))
 */
export function toNetServer<S extends net.Server = net.Server>(fd: Descriptor, server?: S): S {
  const checked = describe(fd)
  const { description } = checked
  if (!(description.family in FAMILY_NAMES) || description.type !== constants.SOCK_STREAM || !description.listening) {
    throw invalidArgValue('fd', checked.fd, `is ${checked.what}, not a listening TCP or AF_UNIX stream socket`)
  }
  if (RUNTIME === 'bun' && server !== undefined && !(server instanceof net.Server)) {
    // Bun's http.Server is no net.Server, and its listen({ fd }) ignores the descriptor: it
    // listens on a new TCP port instead. Refused before taking the descriptor.
    throw runtimeUnsupported(
      "this server (Bun's http.Server is not a net.Server) cannot listen on an existing descriptor: its listen({ fd }) opens a new port instead",
      'Listen with a net.Server and hand it the connections: ' +
        "toNetServer(fd, net.createServer((socket) => server.emit('connection', socket))).",
    )
  }
  const target = server ?? (new net.Server() as S)
  return handOver(fd, (number) => target.listen({ fd: number }))
}

/**
 * Makes a `net.Socket` of a descriptor that must be a connected TCP or AF_UNIX stream socket.
 * The socket owns the descriptor from then on.
 *
 * @example for (const fd of msg.fds) toNetSocket(fd).end('hello')
 */
export function toNetSocket(fd: Descriptor, options: Omit<net.SocketConstructorOpts, 'fd'> = {}): net.Socket {
  const checked = describe(fd)
  const { description } = checked
  if (!(description.family in FAMILY_NAMES) || description.type !== constants.SOCK_STREAM || description.listening || !description.connected) {
    throw invalidArgValue('fd', checked.fd, `is ${checked.what}, not a connected TCP or AF_UNIX stream socket`)
  }
  if (RUNTIME === 'bun') {
    // Bun's net.Socket accepts { fd } but never reads or writes it: it fails later with "Socket is
    // closed". Refused before taking the descriptor, which stays the caller's.
    throw runtimeUnsupported(
      'net.Socket cannot adopt an existing descriptor (new net.Socket({ fd }))',
      description.family === constants.AF_UNIX
        ? 'Use UnixSocket.from(fd) for an AF_UNIX socket.'
        : 'Pass the listening socket instead (toNetServer works in Bun), or move the data with sendmsg/recvmsg.',
    )
  }
  return handOver(fd, (number) => new net.Socket({ readable: true, writable: true, ...options, fd: number }))
}

/**
 * Makes a bound `dgram.Socket` of a descriptor that must be a UDP socket (IPv4 or IPv6). The
 * socket owns the descriptor from then on. It is bound when this returns: Node emits 'listening'
 * for a descriptor during bind itself.
 *
 * @example const udp = toDgramSocket(listeners.dns)
 */
export function toDgramSocket(fd: Descriptor): dgram.Socket {
  const checked = describe(fd)
  const { description } = checked
  const type = description.family === constants.AF_INET ? 'udp4' : description.family === constants.AF_INET6 ? 'udp6' : undefined
  if (type === undefined || description.type !== constants.SOCK_DGRAM) {
    throw invalidArgValue('fd', checked.fd, `is ${checked.what}, not a UDP socket`)
  }
  const socket = dgram.createSocket(type)
  try {
    return handOver(fd, (number) => socket.bind({ fd: number }))
  } catch (error) {
    socket.close()
    throw error
  }
}

/**
 * Gives the descriptor to a Node object made by `adopt`, and only once that worked lets go of
 * it: a ReceivedFd is released then, and keeps (and eventually closes) it if `adopt` throws, so a
 * failed bridge never leaves the descriptor owned by nobody.
 */
function handOver<T>(fd: Descriptor, adopt: (fd: number) => T): T {
  const adopted = adopt(descriptorNumber(fd))
  if (typeof fd !== 'number') fd.take()
  return adopted
}

/**
 * Whether a descriptor is a listening stream socket.
 *
 * @example isListeningSocket(3)
 */
export function isListeningSocket(fd: Descriptor): boolean {
  try {
    return isListening(describe(fd).description)
  } catch {
    return false
  }
}

function isListening(description: Checked['description']): boolean {
  return description.listening && (description.type === constants.SOCK_STREAM || description.type === constants.SOCK_SEQPACKET)
}

/**
 * What a listener handed over (to a worker, to the next supervisor, to systemd's fd store) may
 * be, in one place: a listening stream or seqpacket socket, or a bound UDP socket (IPv4 or IPv6)
 * with no default peer, the datagram socket's way of "listening" on its port. Returns why `fd`
 * is not one, worded to follow "The listener ...", or undefined when it is.
 */
/** @internal */
export function listenerProblem(fd: Descriptor): string | undefined {
  let checked: Checked
  try {
    checked = describe(fd)
  } catch {
    return 'is not a listening socket nor a bound UDP socket: it is not a socket at all'
  }
  const { description, what } = checked
  if (isListening(description)) return undefined
  const udp = (description.family === constants.AF_INET || description.family === constants.AF_INET6) && description.type === constants.SOCK_DGRAM
  if (!udp) return `is not a listening socket nor a bound UDP socket: it is ${what}`
  // A connected UDP socket takes datagrams from its one peer only: whoever receives it would
  // silently miss everyone else. One not bound has no port anyone could be sending to.
  if (description.connected) return 'is a connected UDP socket (it receives from its one peer only): hand over a bound, unconnected one'
  if (!description.bound) return 'is a UDP socket bound to no port: bind it before handing it over'
  return undefined
}
