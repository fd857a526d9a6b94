// Frames over a UnixSocket, with descriptors: what the handoff protocol (and any small control
// protocol between processes) is built on.
//
// A frame is a 6-byte header, the JSON body's length (u32, big-endian) and how many descriptors
// ride with the frame (u16), then the body. It works on every socket type, streams included:
// reads there join and split messages, so the descriptors of each read queue up in arrival order
// and every complete frame takes its count from the front. That is sound because a message's
// descriptors arrive with the read holding its first byte, never later: by the time a frame is
// complete its descriptors are there, and any beyond what the frames being read declare are an
// error.
import { EventEmitter } from 'node:events'

import { native } from './binding'
import { stateError, validateInteger } from './errors'
import type { Message } from './message'
import { ReceivedFd } from './received-fd'
import type { UnixSocket } from './socket'

const HEADER_SIZE = 6
/** The kernel's limit for one message (Linux SCM_MAX_FD), so that a frame is one message's worth. */
export const MAX_FDS_PER_FRAME = 253

/**
 * A received frame: its JSON value and the descriptors that came with it (owned: see ReceivedFd).
 *
 * @example const { value, fds }: Frame = await channel.next()
 */
export interface Frame<T = unknown> {
  value: T
  fds: ReceivedFd[]
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

function frameError(message: string): Error & { code: string } {
  return stateError('ERR_SENDMSG_FRAME', message)
}

function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      native.closeFd(fd)
    } catch {
      // Already closed.
    }
  }
}

function settle(frame: Frame): void {
  for (const fd of frame.fds) fd.close()
}

/**
 * JSON frames with descriptors over a connected UnixSocket. Receive with `next()` (one frame at a
 * time; the previous frame's unclaimed descriptors close when you ask for the next) or with
 * 'frame' events (unclaimed descriptors close after the handler). A protocol error (a frame too
 * large, bad JSON, descriptors that belong to no frame, the stream ending inside a frame) closes
 * the channel and every descriptor it holds, and is reported as 'error' (or `next()` rejects).
 *
 * @example const channel = new FrameChannel(sock); await channel.send({ hello: 1 }, [fd])
 */
export class FrameChannel extends EventEmitter {
  readonly socket: UnixSocket
  readonly #maxFrameSize: number
  #buffer: Buffer = Buffer.alloc(0)
  /** Descriptors received and not yet given to a frame, in arrival order; owned here. */
  #fds: number[] = []
  #frames: Frame[] = []
  #waiters: Array<{ resolve: (frame: Frame) => void; reject: (error: Error) => void }> = []
  #previous: Frame | undefined
  #error: Error | undefined
  #ended = false
  #closed = false

  constructor(socket: UnixSocket, options: FrameChannelOptions = {}) {
    super()
    this.socket = socket
    this.#maxFrameSize = validateInteger(options.maxFrameSize ?? 1 << 20, 'options.maxFrameSize', 1, 2 ** 32 - 1)
    socket.on('message', (message: Message) => this.#onMessage(message))
    // Frames that arrived before anyone listened go to the first 'frame' listener.
    this.on('newListener', (event) => {
      if (event === 'frame') queueMicrotask(() => this.#flushQueued())
    })
    socket.on('end', () => this.#onEnd())
    socket.on('error', (error: Error) => this.#fail(error))
    socket.on('close', () => this.#onEnd())
  }

  /**
   * Sends `value` as JSON with `fds` (at most 253). Resolves when the kernel has taken it.
   *
   * @example await channel.send({ type: 'ping' })
   */
  send(value: unknown, fds: readonly (number | ReceivedFd)[] = []): Promise<void> {
    if (fds.length > MAX_FDS_PER_FRAME) throw frameError(`a frame carries at most ${MAX_FDS_PER_FRAME} descriptors, not ${fds.length}`)
    const body = Buffer.from(JSON.stringify(value) ?? 'null', 'utf8')
    if (body.length > this.#maxFrameSize) throw frameError(`a frame of ${body.length} bytes is larger than ${this.#maxFrameSize}`)
    const header = Buffer.alloc(HEADER_SIZE)
    header.writeUInt32BE(body.length, 0)
    header.writeUInt16BE(fds.length, 4)
    return this.socket.send([header, body], fds.length > 0 ? { fds } : undefined)
  }

  /**
   * The next frame. The previous one's unclaimed descriptors close now. Rejects on a protocol
   * error or when the peer is gone.
   *
   * @example const { value, fds } = await channel.next()
   */
  next<T = unknown>(): Promise<Frame<T>> {
    if (this.#previous) settle(this.#previous)
    this.#previous = undefined
    const frame = this.#frames.shift()
    if (frame !== undefined) return Promise.resolve((this.#previous = frame) as Frame<T>)
    if (this.#error) return Promise.reject(this.#error)
    if (this.#ended || this.#closed) return Promise.reject(channelClosed())
    return new Promise<Frame>((resolve, reject) => this.#waiters.push({ resolve, reject })).then((next) => (this.#previous = next) as Frame<T>)
  }

  #onMessage(message: Message): void {
    if (this.#closed) return
    for (const fd of message.fds) this.#fds.push(fd.take())
    this.#buffer = this.#buffer.length === 0 ? Buffer.from(message.data) : Buffer.concat([this.#buffer, message.data])
    try {
      this.#parse()
    } catch (error) {
      this.#fail(error as Error)
    }
  }

  /**
   * Takes every complete frame out of the buffer, and checks the descriptors against them before
   * delivering any: a frame is never handed on when the read that brought it also brought
   * descriptors nobody declared.
   */
  #parse(): void {
    const complete: Frame[] = []
    try {
      while (this.#buffer.length >= HEADER_SIZE) {
        const length = this.#buffer.readUInt32BE(0)
        const fdCount = this.#buffer.readUInt16BE(4)
        if (length > this.#maxFrameSize) throw frameError(`a frame declares ${length} bytes, more than ${this.#maxFrameSize}`)
        if (fdCount > MAX_FDS_PER_FRAME) throw frameError(`a frame declares ${fdCount} descriptors, more than ${MAX_FDS_PER_FRAME}`)
        if (this.#fds.length > fdCount && this.#buffer.length < HEADER_SIZE + length) {
          // The frame under way is the only one that could own them, and it declared fewer.
          throw frameError(`${this.#fds.length} descriptors arrived for a frame that declares ${fdCount}`)
        }
        if (this.#buffer.length < HEADER_SIZE + length) break
        if (this.#fds.length < fdCount) throw frameError(`a frame declares ${fdCount} descriptors but ${this.#fds.length} arrived with it`)
        let value: unknown
        try {
          value = JSON.parse(this.#buffer.toString('utf8', HEADER_SIZE, HEADER_SIZE + length))
        } catch {
          throw frameError('a frame body is not JSON')
        }
        this.#buffer = this.#buffer.subarray(HEADER_SIZE + length)
        complete.push({ value, fds: this.#fds.splice(0, fdCount).map((fd) => new ReceivedFd(fd)) })
      }
      // Descriptors arrive with their frame's first byte: with no frame under way, these have none.
      if (this.#buffer.length === 0 && this.#fds.length > 0) {
        throw frameError(`${this.#fds.length} descriptors arrived without a frame to carry them`)
      }
    } catch (error) {
      for (const frame of complete) settle(frame)
      throw error
    }
    for (const frame of complete) this.#deliver(frame)
  }

  #deliver(frame: Frame): void {
    const waiter = this.#waiters.shift()
    if (waiter !== undefined) return waiter.resolve(frame)
    if (this.listenerCount('frame') === 0) {
      this.#frames.push(frame)
      return
    }
    try {
      this.emit('frame', frame)
    } finally {
      settle(frame)
    }
  }

  #flushQueued(): void {
    while (this.#frames.length > 0 && this.listenerCount('frame') > 0) this.#deliver(this.#frames.shift()!)
  }

  #onEnd(): void {
    if (this.#ended) return
    this.#ended = true
    if (this.#closed) return
    if (this.#buffer.length > 0 || this.#fds.length > 0) {
      this.#fail(frameError('the peer went away in the middle of a frame'))
      return
    }
    for (const waiter of this.#waiters.splice(0)) waiter.reject(channelClosed())
    this.emit('end')
  }

  #fail(error: Error): void {
    if (this.#error) return
    this.#error = error
    const waiters = this.#waiters.splice(0)
    this.close()
    for (const waiter of waiters) waiter.reject(error)
    if (waiters.length === 0 && this.listenerCount('error') > 0) this.emit('error', error)
  }

  /** Closes the socket and every descriptor the channel still holds. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    closeAll(this.#fds.splice(0))
    for (const frame of this.#frames.splice(0)) settle(frame)
    if (this.#previous) settle(this.#previous)
    this.#previous = undefined
    this.socket.close()
    for (const waiter of this.#waiters.splice(0)) waiter.reject(channelClosed())
  }
}

function channelClosed(): Error {
  return stateError('ERR_SENDMSG_FRAME_CLOSED', 'The channel closed before another frame arrived')
}
