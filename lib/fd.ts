// Finds the file descriptor behind whatever a caller calls a socket: a number, one of this
// package's sockets (`.fd`), or Node's own net.Socket, net.Server and dgram.Socket, whose libuv
// handle knows its descriptor on Unix.
import { Socket as DatagramSocket } from 'node:dgram'
import type * as dgram from 'node:dgram'
import type * as net from 'node:net'
import { Server as NetServer, Socket as NetSocket } from 'node:net'

import { invalidArgType, invalidArgValue, INT32_MAX, isIntegerIn, validateInteger } from './errors'
import type { ReceivedFd } from './received-fd'
import { RUNTIME, runtimeUnsupported } from './runtime'
import type { UnixServer } from './server'
import type { UnixSocket } from './socket'
import type { UdpSocket } from './udp'

/**
 * Anything that stands for an open descriptor, wherever the package takes one: a number, a
 * {@link ReceivedFd}, Node's `net.Server`, `net.Socket` and `dgram.Socket`, or this package's
 * `UnixSocket`, `UnixServer` and `UdpSocket`. The descriptor stays its owner's: it is only read,
 * or copied to the receiver of a message.
 *
 * @example const listener: DescriptorLike = net.createServer().listen(0)
 */
export type DescriptorLike = number | ReceivedFd | UnixSocket | UnixServer | UdpSocket | net.Server | net.Socket | dgram.Socket

/**
 * The socket parameters' name for a {@link DescriptorLike}.
 *
 * @example const socket: SocketLike = net.createConnection('/tmp/app.sock')
 */
export type SocketLike = DescriptorLike

function handleFd(handle: unknown): unknown {
  return handle !== null && typeof handle === 'object' ? (handle as { fd?: unknown }).fd : undefined
}

function fdOfObject(socket: object): unknown {
  if (socket instanceof DatagramSocket) {
    // dgram.Socket keeps its handle in a state object behind a private symbol (its `_handle`
    // accessor is deprecated, DEP0112).
    for (const symbol of Object.getOwnPropertySymbols(socket)) {
      if (symbol.description === 'state symbol') {
        const state = (socket as unknown as Record<symbol, unknown>)[symbol]
        return state !== null && typeof state === 'object' ? handleFd((state as { handle?: unknown }).handle) : undefined
      }
    }
    return undefined
  }
  const own = (socket as { fd?: unknown }).fd
  if (own !== undefined) return own
  // net.Socket and net.Server
  return handleFd((socket as { _handle?: unknown })._handle)
}

/**
 * The descriptor number of `socket` (a {@link DescriptorLike}), still owned by it; a
 * TypeError/RangeError naming `name` otherwise.
 *
 * @example sendmsg(sock, 'here', [scmRights([fdOf(server)])])
 */
export function fdOf(socket: DescriptorLike, name = 'socket'): number {
  return descriptorOf(socket, name)
}

/** Internal: {@link fdOf} for values not yet known to be descriptor-likes (run-time checks). */
/** @internal */
export function descriptorOf(socket: unknown, name: string): number {
  if (isIntegerIn(socket, 0, INT32_MAX)) return socket
  if (typeof socket === 'number') return validateInteger(socket, name, 0, INT32_MAX)
  if (socket === null || typeof socket !== 'object') {
    throw invalidArgType(name, 'a file descriptor number or an object with one (ReceivedFd, net.Socket, net.Server, dgram.Socket, UnixSocket, UnixServer)', socket)
  }
  const fd = fdOfObject(socket)
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > INT32_MAX) {
    if (RUNTIME === 'deno' && (socket instanceof NetServer || socket instanceof NetSocket || socket instanceof DatagramSocket)) {
      // Deno's node:net and node:dgram sit on Deno's own resources, which have no descriptor
      // number to read (no `_handle.fd`).
      throw runtimeUnsupported(
        "net and dgram sockets expose no descriptor number (no _handle.fd)",
        "Make the socket with this package (UnixSocket, UnixServer, socketpair) and pass its .fd, or " +
          "listen with net.Server.listen({ fd }) on a descriptor you already have. Note also that Deno's node:fs " +
          "does not take descriptor numbers: close them with this package's native close (closeFd), not fs.closeSync.",
      )
    }
    throw invalidArgValue(name, socket, 'has no file descriptor: is it open, and connected, bound or listening?')
  }
  return fd
}

/** Internal: the numbers of a list of descriptor-likes, each checked and named `name[i]`. */
/** @internal */
export function descriptorsOf(list: unknown, name: string): number[] {
  if (!Array.isArray(list)) throw invalidArgType(name, 'an instance of Array', list)
  const numbers = new Array<number>(list.length)
  for (let i = 0; i < list.length; i++) {
    const fd: unknown = list[i]
    numbers[i] = isIntegerIn(fd, 0, INT32_MAX) ? fd : descriptorOf(fd, `${name}[${i}]`)
  }
  return numbers
}
