// Finds the file descriptor behind whatever a caller calls a socket: a number, one of this
// package's sockets (`.fd`), or Node's own net.Socket, net.Server and dgram.Socket, whose libuv
// handle knows its descriptor on Unix.
import { Socket as DatagramSocket } from 'node:dgram'
import { Server as NetServer, Socket as NetSocket } from 'node:net'

import { invalidArgType, invalidArgValue, INT32_MAX, validateInteger } from './errors'
import { RUNTIME, runtimeUnsupported } from './runtime'

/**
 * A descriptor number, or an object that owns one.
 *
 * @example const socket: SocketLike = net.createConnection('/tmp/app.sock')
 */
export type SocketLike = number | { readonly fd: number } | object

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
 * The descriptor number of `socket` (a number, a net.Server, net.Socket, dgram.Socket, or one of
 * this package's sockets), still owned by it; a TypeError/RangeError naming `name` otherwise.
 *
 * @example sendmsg(sock, 'here', [scmRights([fdOf(server)])])
 */
export function fdOf(socket: unknown, name = 'socket'): number {
  if (typeof socket === 'number') return validateInteger(socket, name, 0, INT32_MAX)
  if (socket === null || typeof socket !== 'object') {
    throw invalidArgType(name, 'a file descriptor number or an object with one (net.Socket, net.Server, dgram.Socket)', socket)
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
