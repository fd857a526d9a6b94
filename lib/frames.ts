// Frames over a UnixSocket, with descriptors: what the handoff protocol (and any small control
// protocol between processes) is built on. Written on the public socket API only.
//
// A frame is a 6-byte header, the JSON body's length (u32, big-endian) and how many descriptors
// ride with the frame (u16), then the body. It works on every socket type, streams included:
// reads there join and split messages, so the descriptors of each read queue up in arrival order
// and every complete frame takes its count from the front. That is sound because a message's
// descriptors arrive with the read holding its first byte, never later: when a read ends, the
// only frame that may still be owed descriptors is the one the buffer ends inside, so anything
// beyond what that frame declares (or could declare, while its header is incomplete) is an error.
import { EventEmitter } from 'node:events'

import { abortError, checkOptionNames, timeoutError, waitOptions, WAIT_OPTIONS, type WaitOptions } from './cancellation'
import { invalidArgType, stateError, validateInteger } from './errors'
import { descriptorsOf, type DescriptorLike } from './fd'
import type { Message } from './message'
import type { ReceivedFd } from './received-fd'
import { UnixSocket } from './socket'

const HEADER_SIZE = 6
/** The kernel's limit for one message (Linux SCM_MAX_FD), so that a frame is one message's worth. */
/** @internal */
export const MAX_FDS_PER_FRAME = 253
/**
 * With nobody consuming, the channel stops reading the socket once this many frames, or this many
 * descriptors in them, wait: the peer's sends then wait in the kernel, as with the sockets' own
 * backlog, instead of piling up in this process. A full frame's descriptors always fit.
 */
const MAX_QUEUED_FRAMES = 64
const MAX_QUEUED_FDS = 4 * MAX_FDS_PER_FRAME

/**
 * A received frame: its JSON value and the descriptors that came with it. They are owned by the
 * channel until you `take()` them (or close them): the next `next()` call, or the end of the
 * 'frame' handler, closes those left.
 *
 * @example const { value, fds }: Frame = await channel.next()
 */
export interface Frame<T = unknown> {
  value: T
  fds: readonly ReceivedFd[]
}

/**
 * The events of a {@link FrameChannel} and what their listeners get.
 *
 * @example channel.on('frame', ({ value, fds }) => console.log(value, fds.length))
 */
export interface FrameChannelEvents {
  /** A frame arrived; its descriptors not taken or kept in the handler are closed after it. */
  frame: [frame: Frame]
  /** The peer hung up between frames. */
  end: []
  /** A protocol or socket error (with nobody waiting in `next()`). */
  error: [error: Error]
}

/**
 * Options of a {@link FrameChannel}.
 *
 * @example new FrameChannel(sock, { maxFrameSize: 64 * 1024 })
 */
export interface FrameChannelOptions {
  /** The largest frame body accepted, in bytes (default 1 MiB). Larger is a protocol error. */
  maxFrameSize?: number
}

/**
 * Options of {@link FrameChannel.next}: `signal` rejects with an AbortError (`code: 'ABORT_ERR'`)
 * when aborted (at once if it already is), `timeout` with `ERR_SENDMSG_TIMEOUT` when no frame
 * arrived within that many milliseconds.
 *
 * @example await channel.next({ timeout: 5000, signal: AbortSignal.timeout(10_000) })
 */
export type NextFrameOptions = WaitOptions

function frameError(message: string): Error & { code: string } {
  return stateError('ERR_SENDMSG_FRAME', message)
}

/** Closes the descriptors of a frame nobody took. */
function settle(frame: Frame): void {
  for (const fd of frame.fds) fd.close()
}

interface Waiter {
  resolve: (frame: Frame) => void
  reject: (error: Error) => void
}

/**
 * JSON frames with descriptors over a connected UnixSocket. Receive with `next()` (one frame at a
 * time; the previous frame's unclaimed descriptors close when you ask for the next) or with
 * 'frame' events (unclaimed descriptors close after the handler). With nobody consuming, it stops
 * reading after 64 frames (or 1012 descriptors) and resumes as they are consumed.
 *
 * A protocol error (a frame too large, bad JSON, descriptors that belong to no frame, the stream
 * ending inside a frame) rejects `next()` (or is emitted as 'error') with `ERR_SENDMSG_FRAME`,
 * closes every descriptor the channel holds and stops taking frames; the socket stays open for
 * `send()` so that you can tell the peer why, until you `close()` the channel (at once when
 * nobody was waiting or listening for the error). A peer that hangs up or a socket error closes
 * it at once.
 *
 * @example const channel = new FrameChannel(sock); await channel.send({ hello: 1 }, [fd])
 */
export class FrameChannel extends EventEmitter<FrameChannelEvents> implements Disposable, AsyncDisposable {
  readonly socket: UnixSocket
  readonly #maxFrameSize: number
  #buffer: Buffer = Buffer.alloc(0)
  /** Descriptors received and not yet given to a frame, in arrival order; owned here. */
  #fds: ReceivedFd[] = []
  /** Complete frames nobody has asked for yet, and how many descriptors they hold. */
  #frames: Array<Frame & { fds: ReceivedFd[] }> = []
  #queuedFds = 0
  /** Whether this channel paused the socket because too much waits unconsumed. */
  #throttled = false
  #waiters: Waiter[] = []
  #previous: Frame | undefined
  #error: Error | undefined
  #ended = false
  #closed = false

  constructor(socket: UnixSocket, options?: FrameChannelOptions) {
    super()
    if (!(socket instanceof UnixSocket)) throw invalidArgType('socket', 'an instance of UnixSocket', socket)
    const { maxFrameSize = 1 << 20 } = checkOptionNames(options, 'options', ['maxFrameSize'])
    this.socket = socket
    this.#maxFrameSize = validateInteger(maxFrameSize, 'options.maxFrameSize', 1, 2 ** 32 - 1)
    socket.on('message', (message: Message) => this.#onMessage(message))
    // Frames that arrived before anyone listened go to the first 'frame' listener.
    ;(this as EventEmitter).on('newListener', (event) => {
      if (event === 'frame') queueMicrotask(() => this.#flushQueued())
    })
    socket.on('end', () => this.#onEnd())
    socket.on('error', (error: Error) => this.#fail(error, true))
    socket.on('close', () => this.#onEnd())
  }

  /** The largest frame body sent or accepted, in bytes. */
  get maxFrameSize(): number {
    return this.#maxFrameSize
  }

  /** Whether the channel's socket is closed (by `close()`, the peer, or an error). */
  get closed(): boolean {
    return this.#closed || this.socket.closed
  }

  /**
   * Sends `value` as JSON with `fds` (at most 253). Resolves when the kernel has taken it. A frame
   * larger than `maxFrameSize` throws ERR_SENDMSG_FRAME at once.
   *
   * @example await channel.send({ type: 'ping' })
   */
  send(value: unknown, fds: readonly DescriptorLike[] = []): Promise<void> {
    const numbers = descriptorsOf(fds, 'fds')
    if (numbers.length > MAX_FDS_PER_FRAME) throw frameError(`a frame carries at most ${MAX_FDS_PER_FRAME} descriptors, not ${numbers.length}`)
    const body = Buffer.from(JSON.stringify(value) ?? 'null', 'utf8')
    if (body.length > this.#maxFrameSize) throw frameError(`a frame of ${body.length} bytes is larger than ${this.#maxFrameSize}`)
    const header = Buffer.alloc(HEADER_SIZE)
    header.writeUInt32BE(body.length, 0)
    header.writeUInt16BE(numbers.length, 4)
    return this.socket.send([header, body], numbers.length > 0 ? { fds: numbers } : undefined)
  }

  /**
   * The next frame. The previous one's unclaimed descriptors close now. Rejects on a protocol
   * error, when the peer is gone, when `signal` aborts (AbortError) or after `timeout` ms
   * (ERR_SENDMSG_TIMEOUT); a frame that arrives after that waits for the next call.
   *
   * @example const { value, fds } = await channel.next({ timeout: 5000 })
   */
  next<T = unknown>(options?: NextFrameOptions): Promise<Frame<T>> {
    const { signal, timeout } = waitOptions(checkOptionNames(options, 'options', WAIT_OPTIONS), 'options')
    if (signal?.aborted) return Promise.reject(abortError(signal.reason))
    if (this.#previous) settle(this.#previous)
    this.#previous = undefined
    const frame = this.#frames.shift()
    if (frame !== undefined) {
      this.#consumed(frame)
      return Promise.resolve((this.#previous = frame) as Frame<T>)
    }
    if (this.#error) return Promise.reject(this.#error)
    if (this.#ended || this.#closed) return Promise.reject(channelClosed())
    return new Promise<Frame>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const onAbort = () => finish(() => reject(abortError(signal!.reason)))
      const finish = (settleWaiter: () => void) => {
        const index = this.#waiters.indexOf(waiter)
        if (index >= 0) this.#waiters.splice(index, 1)
        if (timer !== undefined) clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        settleWaiter()
      }
      const waiter: Waiter = {
        resolve: (next) => finish(() => resolve((this.#previous = next))),
        reject: (error) => finish(() => reject(error)),
      }
      this.#waiters.push(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (timeout !== undefined) timer = setTimeout(() => finish(() => reject(timeoutError(`No frame arrived within ${timeout} ms`))), timeout)
    }) as Promise<Frame<T>>
  }

  #onMessage(message: Message): void {
    // After an error nothing is taken: the socket closes the message's descriptors itself.
    if (this.#closed || this.#error) return
    for (const fd of message.fds) this.#fds.push(fd.keep())
    this.#buffer = this.#buffer.length === 0 ? Buffer.from(message.data) : Buffer.concat([this.#buffer, message.data])
    try {
      this.#parse()
    } catch (error) {
      this.#fail(error as Error, false)
    }
  }

  /**
   * Takes every complete frame out of the buffer, and checks the descriptors against them before
   * delivering any: a frame is never handed on when the read that brought it also brought
   * descriptors nobody declared.
   */
  #parse(): void {
    const complete: Array<Frame & { fds: ReceivedFd[] }> = []
    try {
      // How many descriptors the frame the buffer ends inside may still claim.
      let claimable = 0
      while (this.#buffer.length > 0) {
        if (this.#buffer.length < HEADER_SIZE) {
          // A header not yet complete may still declare up to a message's worth.
          claimable = MAX_FDS_PER_FRAME
          break
        }
        const length = this.#buffer.readUInt32BE(0)
        const fdCount = this.#buffer.readUInt16BE(4)
        if (length > this.#maxFrameSize) throw frameError(`a frame declares ${length} bytes, more than ${this.#maxFrameSize}`)
        if (fdCount > MAX_FDS_PER_FRAME) throw frameError(`a frame declares ${fdCount} descriptors, more than ${MAX_FDS_PER_FRAME}`)
        if (this.#buffer.length < HEADER_SIZE + length) {
          claimable = fdCount
          break
        }
        if (this.#fds.length < fdCount) throw frameError(`a frame declares ${fdCount} descriptors but ${this.#fds.length} arrived with it`)
        let value: unknown
        try {
          value = JSON.parse(this.#buffer.toString('utf8', HEADER_SIZE, HEADER_SIZE + length))
        } catch {
          throw frameError('a frame body is not JSON')
        }
        this.#buffer = this.#buffer.subarray(HEADER_SIZE + length)
        complete.push({ value, fds: this.#fds.splice(0, fdCount) })
      }
      // Descriptors arrive with their frame's first byte: only the unfinished frame may own these.
      if (this.#fds.length > claimable) {
        throw frameError(
          claimable === 0
            ? `${this.#fds.length} descriptors arrived without a frame to carry them`
            : `${this.#fds.length} descriptors arrived for a frame that declares at most ${claimable}`,
        )
      }
    } catch (error) {
      for (const frame of complete) settle(frame)
      throw error
    }
    for (const frame of complete) this.#deliver(frame)
  }

  #deliver(frame: Frame & { fds: ReceivedFd[] }): void {
    const waiter = this.#waiters[0]
    if (waiter !== undefined) return waiter.resolve(frame)
    if (this.listenerCount('frame') === 0) {
      this.#frames.push(frame)
      this.#queuedFds += frame.fds.length
      if (!this.#throttled && (this.#frames.length >= MAX_QUEUED_FRAMES || this.#queuedFds >= MAX_QUEUED_FDS)) {
        this.#throttled = true
        this.socket.pause()
      }
      return
    }
    try {
      this.emit('frame', frame)
    } finally {
      settle(frame)
    }
  }

  /** A queued frame was taken: read again once there is room. */
  #consumed(frame: Frame & { fds: ReceivedFd[] }): void {
    this.#queuedFds -= frame.fds.length
    if (this.#throttled && this.#frames.length < MAX_QUEUED_FRAMES && this.#queuedFds < MAX_QUEUED_FDS) {
      this.#throttled = false
      if (!this.#closed) this.socket.resume()
    }
  }

  #flushQueued(): void {
    while (this.#frames.length > 0 && this.listenerCount('frame') > 0) {
      const frame = this.#frames.shift()!
      this.#consumed(frame)
      this.#deliver(frame)
    }
  }

  #onEnd(): void {
    if (this.#ended) return
    this.#ended = true
    if (this.#closed || this.#error) return
    if (this.#buffer.length > 0 || this.#fds.length > 0) {
      this.#fail(frameError('the peer went away in the middle of a frame'), false)
      return
    }
    for (const waiter of this.#waiters.splice(0)) waiter.reject(channelClosed())
    this.emit('end')
  }

  /** A protocol error leaves the socket open for a last word to the peer; a socket error does not. */
  #fail(error: Error, closeSocket: boolean): void {
    if (this.#error || this.#closed) return
    this.#error = error
    this.#releaseAll()
    this.#buffer = Buffer.alloc(0)
    // Read on (and discard) so that a peer that hangs up still closes the socket.
    if (this.#throttled) {
      this.#throttled = false
      this.socket.resume()
    }
    const waiters = this.#waiters.splice(0)
    const told = waiters.length > 0 || this.listenerCount('error') > 0
    if (closeSocket || !told) this.close()
    for (const waiter of waiters) waiter.reject(error)
    if (waiters.length === 0 && this.listenerCount('error') > 0) this.emit('error', error)
  }

  /** Closes every descriptor the channel holds (the frame last returned by next() included). */
  #releaseAll(): void {
    for (const fd of this.#fds.splice(0)) fd.close()
    for (const frame of this.#frames.splice(0)) settle(frame)
    this.#queuedFds = 0
    if (this.#previous) settle(this.#previous)
    this.#previous = undefined
  }

  /** Closes the socket and every descriptor the channel still holds. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#releaseAll()
    this.socket.close()
    for (const waiter of this.#waiters.splice(0)) waiter.reject(channelClosed())
  }

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close()
  }

  /** `close()`, then the socket's 'close' event, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed && this.socket.closed) return
    const closed = this.socket.closed ? undefined : new Promise<void>((resolve) => this.socket.once('close', resolve))
    this.close()
    await closed
  }
}

function channelClosed(): Error {
  return stateError('ERR_SENDMSG_FRAME_CLOSED', 'The channel closed before another frame arrived')
}
