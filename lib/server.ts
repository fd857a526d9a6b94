// UnixServer: a listening AF_UNIX socket (stream or seqpacket) in the event loop, delivering
// accepted connections as UnixSockets.
import { EventEmitter } from 'node:events'
import { renameSync, statSync, unlinkSync } from 'node:fs'

import { addressOf, withAddress } from './address'
import { native } from './binding'
import { constants } from './constants'
import { checkOptionNames } from './cancellation'
import { invalidArgValue, stateError, validateInteger, INT32_MAX } from './errors'
import { adoptionSource, descriptorNumber, type AdoptionSource, type ReceivedFd, type ReceivedFdsHandle } from './received-fd'
import type { SocketHandle } from './send-queue'
import { applyKernelOptions, collectedWhileOpen, openSocket, UnixSocket, validateSocketOptions, type UnixSocketOptions } from './socket'
import { socketTypeName, sockTypeOf } from './sync'

/**
 * Options of a {@link UnixServer}; accepted sockets get the {@link UnixSocketOptions} too.
 *
 * @example const server = UnixServer.listen('/tmp/app.sock', { type: 'seqpacket', backlog: 64 })
 */
export interface UnixServerOptions extends UnixSocketOptions {
  /** 'stream' (default) or 'seqpacket'. */
  type?: 'stream' | 'seqpacket'
  /** The listen(2) backlog. Default 511, as Node's. */
  backlog?: number
}

const SERVER_OPTIONS = ['type', 'backlog', 'maxMessageSize', 'allowHalfOpen', 'passCredentials', 'passPidfd', 'passRights'] as const

/**
 * The events of a {@link UnixServer} and what their listeners get.
 *
 * @example UnixServer.listen('/tmp/app.sock').on('connection', (sock) => void sock.end())
 */
export interface UnixServerEvents {
  /** A connection was accepted. */
  connection: [socket: UnixSocket]
  /** The server listens (emitted on the next tick after `UnixServer.listen()` returns). */
  listening: []
  /** Listening failed (EADDRINUSE, EACCES, ...), or accepting did; 'close' follows. */
  error: [error: Error]
  /** The server closed. */
  close: []
}

/**
 * Internal: {@link UnixServer.listen} that throws a listen error instead of emitting it, for
 * callers that make the server as part of a synchronous step of their own; `prepare` is given the
 * bound socket before it listens (for options that must be set before the first connection).
 */
/** @internal */
export let listenNow: (path: string, options?: UnixServerOptions, prepare?: (fd: number) => void) => UnixServer

/**
 * Internal: renames the socket file `server` created to `to` (rename(2), which replaces whatever
 * is there in one step), and makes `close()` remove it there.
 */
/** @internal */
export let moveBoundFile: (server: UnixServer, to: string) => void

/** The file a server created, so that close() removes that file and not a successor's. */
interface BoundFile {
  path: string
  dev: number
  ino: number
}

/**
 * A listening socket. Events ({@link UnixServerEvents}): `'listening'`, `'connection'` (a
 * {@link UnixSocket}), `'error'`, `'close'`. Accepted sockets are close-on-exec and non-blocking.
 *
 * @example
 * const server = UnixServer.listen('/tmp/app.sock')
 * server.on('connection', (sock) => sock.on('message', (msg) => void sock.send(msg.data)))
 */
export class UnixServer extends EventEmitter<UnixServerEvents> implements AsyncIterable<UnixSocket>, Disposable, AsyncDisposable {
  readonly #type: 'stream' | 'seqpacket'
  readonly #socketOptions: Required<UnixSocketOptions>
  readonly #handle: SocketHandle
  readonly #fd: number
  #bound: BoundFile | undefined
  #accepting = false
  #closed = false
  #iterating = false
  #pending: UnixSocket[] = []
  #waiter: ((result: IteratorResult<UnixSocket>) => void) | undefined

  /** Use {@link UnixServer.listen} or {@link UnixServer.from}. */
  private constructor() {
    super()
    // `private` binds TypeScript only: from JavaScript this would adopt (and later close) any number.
    const args = opening
    opening = undefined
    if (args === undefined) throw stateError('ERR_ILLEGAL_CONSTRUCTOR', 'Use UnixServer.listen() or from()')
    this.#type = args.type
    this.#socketOptions = args.options
    // Owned by the binding from here on; if opening fails, it is still where it came from.
    const { source, index } = args.from
    this.#handle = native.socketOpen(source, index, { type: args.type, listening: true, maxMessageSize: 1 }, this, UnixServer.#events)
    this.#fd = native.socketFd(this.#handle)
    collectedWhileOpen.register(this, `A ${args.type} UnixServer (fd ${this.#fd})`, this)
    // Node's own events, which the typed map of the server's events leaves out.
    const emitter = this as EventEmitter
    emitter.on('newListener', (event) => {
      if (event === 'connection') queueMicrotask(() => this.#updateAccepting())
    })
    emitter.on('removeListener', (event) => {
      if (event === 'connection') this.#updateAccepting()
    })
  }

  /**
   * Binds `path` and listens, as Node's `net.Server.listen()` does for a pipe: the server is
   * returned at once, `'listening'` follows on the next tick, and a system error (EADDRINUSE,
   * EACCES, ...) is emitted as `'error'` (worded `listen EADDRINUSE: address already in use
   * /run/app.sock`), then `'close'`. Wrong arguments throw. On Linux a path starting with '\0' is
   * an abstract name (no file).
   *
   * @example const server = UnixServer.listen('/run/app.sock', { type: 'seqpacket' }).on('error', console.error)
   */
  static listen(path: string, options?: UnixServerOptions): UnixServer {
    const { server, error } = UnixServer.#listen(path, options, undefined)
    if (error !== undefined) server.#close(error)
    else process.nextTick(() => server.closed || server.emit('listening'))
    return server
  }

  /** Listens, or says why not: an argument error throws, a system error is returned with its server. */
  static #listen(path: string, options: UnixServerOptions | undefined, prepare: ((fd: number) => void) | undefined): { server: UnixServer; error?: Error } {
    const { type = 'stream', backlog = 511, ...socketOptions } = checkOptionNames(options, 'options', SERVER_OPTIONS) as UnixServerOptions
    if (type !== 'stream' && type !== 'seqpacket') throw invalidArgValue('options.type', type, "must be 'stream' or 'seqpacket'")
    validateInteger(backlog, 'options.backlog', 0, INT32_MAX)
    const checked = validateSocketOptions(socketOptions)
    const address = addressOf(path)
    const fd = native.unixSocket(sockTypeOf(type))
    let server: UnixServer
    try {
      server = UnixServer.#open({ source: fd, index: -1 }, type, checked)
    } catch (error) {
      native.closeFd(fd)
      throw error
    }
    try {
      native.bindUnix(fd, address)
      if (path.charCodeAt(0) !== 0) {
        const stat = statSync(path)
        server.#bound = { path, dev: stat.dev, ino: stat.ino }
      }
      // Set on the listening socket so that every accepted one has them from its first message.
      applyKernelOptions(fd, checked)
      prepare?.(fd)
      native.listenUnix(fd, backlog)
    } catch (error) {
      return { server, error: withAddress(error as Error, 'listen', path) }
    }
    return { server }
  }

  /**
   * Adopts a listening AF_UNIX socket descriptor (from a supervisor, systemd, or a ReceivedFd);
   * `'listening'` follows on the next tick, as for `listen()`.
   *
   * @example const server = UnixServer.from(3)
   */
  static from(fd: number | ReceivedFd, options?: UnixSocketOptions): UnixServer {
    const checked = validateSocketOptions(options)
    const number = descriptorNumber(fd)
    const description = native.describeSocket(number)
    if (description.family !== constants.AF_UNIX) throw invalidArgValue('fd', number, 'is not an AF_UNIX socket')
    if (!description.listening) throw invalidArgValue('fd', number, 'is not a listening socket')
    const type = socketTypeName(description.type)
    if (type !== 'stream' && type !== 'seqpacket') throw invalidArgValue('fd', number, 'is not a stream or seqpacket socket')
    // On the listening socket, as listen() does, so that connections made from now on start with
    // them (those already in its backlog get them when accepted).
    applyKernelOptions(number, checked)
    const server = UnixServer.#open(adoptionSource(fd), type, checked)
    // As net.Server.listen({ fd }) does: the socket already listens, and says so on the next tick.
    process.nextTick(() => server.closed || server.emit('listening'))
    return server
  }

  /** A server on the descriptor `from` names, which it owns from then on (if opening succeeds). */
  static #open(from: AdoptionSource, type: 'stream' | 'seqpacket', options: Required<UnixSocketOptions>): UnixServer {
    opening = { from, type, options }
    try {
      return new UnixServer()
    } finally {
      opening = undefined
    }
  }

  get type(): 'stream' | 'seqpacket' {
    return this.#type
  }

  /** The listening descriptor, still owned by the server; -1 once closed. */
  get fd(): number {
    return this.#closed ? -1 : this.#fd
  }

  get closed(): boolean {
    return this.#closed
  }

  /** The path the server listens on (an abstract name starts with '\0'), as `net.Server.address()` gives a pipe's; undefined once closed. */
  address(): string | undefined {
    if (this.#closed) return undefined
    return native.localAddress(this.#fd)?.toString('utf8') ?? undefined
  }

  #updateAccepting(): void {
    const want = !this.#closed && (this.#iterating ? this.#pending.length < 64 : this.listenerCount('connection') > 0)
    if (want === this.#accepting) return
    this.#accepting = want
    native.socketSetReading(this.#handle, want)
  }

  /** An accepted connection, in a handle the binding closes after this call unless a socket took it. */
  #onConnection(connection: ReceivedFdsHandle): void {
    const socket = openSocket({ source: connection, index: 0 }, this.#type, this.#socketOptions)
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      waiter({ value: socket, done: false })
    } else if (this.#iterating || this.listenerCount('connection') === 0) {
      this.#pending.push(socket)
      this.#updateAccepting()
    } else {
      this.emit('connection', socket)
    }
  }

  /**
   * Iterates over accepted connections until the server closes. Leaving the loop early (`break`,
   * `return`, a throw) closes the server, as it destroys Node's streams.
   *
   * @example for await (const sock of UnixServer.listen('/tmp/app.sock')) serve(sock)
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<UnixSocket> {
    if (this.#iterating) throw stateError('ERR_SENDMSG_ALREADY_ITERATING', 'This server already has an active iterator')
    this.#iterating = true
    this.#updateAccepting()
    const stop = (): IteratorResult<UnixSocket> => {
      this.#iterating = false
      this.#updateAccepting()
      return { value: undefined, done: true }
    }
    const iterator: AsyncIterableIterator<UnixSocket> = {
      next: () => {
        if (!this.#iterating) return Promise.resolve({ value: undefined, done: true })
        const socket = this.#pending.shift()
        if (socket !== undefined) {
          this.#updateAccepting()
          return Promise.resolve({ value: socket, done: false })
        }
        if (this.#closed) return Promise.resolve(stop())
        return new Promise((resolve) => (this.#waiter = resolve))
      },
      return: async () => {
        const result = stop()
        this.close()
        return result
      },
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  /** Stops listening, closes the descriptor and removes the socket file it created. Idempotent. */
  close(): void {
    this.#close(undefined)
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `close()`, then the 'close' event, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return
    const closed = new Promise<void>((resolve) => this.once('close', resolve))
    this.close()
    await closed
  }

  #close(error: Error | undefined): void {
    if (this.#closed) return
    this.#closed = true
    this.#accepting = false
    // The file goes first, while the socket still listens: a process that finds the path
    // answering leaves it alone (lib/offer-path.ts proves a file stale by connecting), so nobody
    // can take our file for stale and replace it between the two steps, only for us to remove
    // the replacement.
    this.#unlinkBoundFile()
    native.socketClose(this.#handle)
    collectedWhileOpen.unregister(this)
    for (const socket of this.#pending.splice(0)) socket.close()
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.({ value: undefined, done: true })
    process.nextTick(() => {
      if (error !== undefined) this.emit('error', error)
      this.emit('close')
    })
  }

  #unlinkBoundFile(): void {
    const bound = this.#bound
    this.#bound = undefined
    if (bound === undefined) return
    try {
      const stat = statSync(bound.path)
      if (stat.dev === bound.dev && stat.ino === bound.ino) unlinkSync(bound.path)
    } catch {
      // Already gone.
    }
  }

  unref(): this {
    if (!this.#closed) native.socketSetReferenced(this.#handle, false)
    return this
  }

  ref(): this {
    if (!this.#closed) native.socketSetReferenced(this.#handle, true)
    return this
  }

  /** What the binding calls, with `this` = the server (see SocketEvents in binding.d.ts). */
  static readonly #events = {
    connection(this: UnixServer, connection: ReceivedFdsHandle): void {
      this.#onConnection(connection)
    },
    error(this: UnixServer, error: Error): void {
      this.emit('error', error)
    },
  }

  static {
    moveBoundFile = (server, to) => {
      const bound = server.#bound
      if (bound === undefined || server.#closed) throw stateError('ERR_SENDMSG_NOT_BOUND', 'This server has no socket file of its own to move')
      renameSync(bound.path, to)
      server.#bound = { ...bound, path: to }
    }
    listenNow = (path, options, prepare) => {
      const { server, error } = UnixServer.#listen(path, options, prepare)
      if (error === undefined) return server
      server.close()
      throw error
    }
  }
}


/** Set by `UnixServer.#open` for the constructor it calls. */
let opening: { from: AdoptionSource; type: 'stream' | 'seqpacket'; options: Required<UnixSocketOptions> } | undefined
