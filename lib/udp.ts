// UdpSocket: a UDP socket in the event loop with per-datagram metadata, for QUIC-style protocols:
// ECN marks, the local address a datagram came to and the one to answer from (PKTINFO), GSO (one
// buffer sent as many datagrams) and GRO (many received as one), receive timestamps, TTL, and ICMP
// errors as 'icmpError' events.
//
// It is the same machinery as UnixSocket's: the binding's event-loop socket (Role::Udp in
// crates/sendmsg-napi/src/event_loop/udp/), the same send queue and promises (lib/send-queue.ts,
// with the UDP transport below), the same close and reference rules. Metadata names follow
// Node's dgram where the meaning is the same (address(), remoteAddress(), 'message'), and the
// libuv proposals for TOS/ECN, PKTINFO and GSO/GRO otherwise.
import { Buffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import { isIP } from 'node:net'
import type { Socket as DgramSocket } from 'node:dgram'

import { native } from './binding'
import { chunksOf, totalLength, type Data } from './bytes'
import { invalidArgType, invalidArgValue, outOfRange, stateError, validateInteger } from './errors'
import { fdOf } from './fd'
import { adoptionSource, descriptorNumber, type AdoptionSource, type ReceivedFd } from './received-fd'
import { constants } from './constants'
import { closedError, SendQueue, type SendTransport, type SocketHandle } from './send-queue'
import { collectedWhileOpen } from './socket'

/**
 * ECN codepoint (RFC 3168) Not-ECT: the low two bits of the TOS byte / traffic class.
 *
 * @example UdpSocket.bound(4433).on('message', (msg: UdpMessage) => msg.ecn === ECN_NOT_ECT && console.log('no ECN from', msg.address))
 */
export const ECN_NOT_ECT = 0
/**
 * ECN codepoint ECT(1) (RFC 3168; L4S uses it).
 *
 * @example await UdpSocket.create('udp6').sendTo('packet', 4433, '::1', { ecn: ECN_ECT1 })
 */
export const ECN_ECT1 = 1
/**
 * ECN codepoint ECT(0) (RFC 3168): the sender is ECN-capable.
 *
 * @example await UdpSocket.create('udp6').sendTo('packet', 4433, '::1', { ecn: ECN_ECT0 })
 */
export const ECN_ECT0 = 2
/**
 * ECN codepoint CE (RFC 3168): a router on the path saw congestion.
 *
 * @example let marked = 0; UdpSocket.bound(4433).on('message', (msg: UdpMessage) => { if (msg.ecn === ECN_CE) marked++ })
 */
export const ECN_CE = 3

/**
 * 'udp4' or 'udp6' (dual-stack unless `ipv6Only`), as in `dgram.createSocket`.
 *
 * @example const type: UdpType = 'udp6'
 */
export type UdpType = 'udp4' | 'udp6'

/**
 * Options of a {@link UdpSocket}: what to receive with each datagram, and how.
 *
 * @example const sock = UdpSocket.create('udp6', { gro: true, timestamps: true })
 */
export interface UdpSocketOptions {
  /** udp6 only: refuse IPv4 peers (IPV6_V6ONLY). Default false: dual-stack. */
  ipv6Only?: boolean
  /** The largest datagram received whole, in bytes (longer ones arrive cut, `truncated`). Default 65535. */
  maxMessageSize?: number
  /**
   * Receive runs of datagrams from one sender coalesced (UDP_GRO, Linux). Each run is handed over
   * one datagram per 'message' (the default, `splitSegments: true`) or whole, with `stride` and
   * `segments` saying where to cut. Default false.
   */
  gro?: boolean
  /** With `gro`: one 'message' per datagram (true, default) or per coalesced run (false). */
  splitSegments?: boolean
  /** Receive each datagram's ECN bits and TOS/traffic class (`message.ecn`, `.trafficClass`). Default true. */
  ecn?: boolean
  /** Receive the local address and interface each datagram came to (`.localAddress`, `.interfaceIndex`). Default true. */
  pktinfo?: boolean
  /** Receive each datagram's TTL / hop limit (`.ttl`). Default false. */
  ttl?: boolean
  /** Receive the kernel's receive time of each datagram (`.timestamp`, ns since the epoch). Default false. */
  timestamps?: boolean
  /** Set Don't Fragment: a datagram too large for the path fails, and 'icmpError' says the path's MTU. Default false. */
  dontFragment?: boolean
  /** SO_RCVBUF in bytes, as in `dgram.createSocket` (capped by net.core.rmem_max). Default: the system's. */
  recvBufferSize?: number
  /** SO_SNDBUF in bytes, as in `dgram.createSocket` (capped by net.core.wmem_max). Default: the system's. */
  sendBufferSize?: number
}

/**
 * What travels with one datagram sent.
 *
 * @example const udp = UdpSocket.create('udp4'); await udp.sendTo('reply', 4433, '127.0.0.1', { sourceAddress: '127.0.0.1', ecn: ECN_ECT0 })
 */
export interface UdpSendOptions {
  /** The ECN codepoint (0 to 3); the socket's DSCP bits are kept. Default: the socket's TOS as it is. */
  ecn?: number
  /**
   * GSO: `data` is cut into datagrams of this many bytes (the last may be shorter), at most 64,
   * sent in one system call. Where the kernel or device cannot segment, they are sent one by one.
   */
  segmentSize?: number
  /** The local address to send from (IP_PKTINFO / IPV6_PKTINFO): answer from the address asked. */
  sourceAddress?: string
}

/** A datagram's metadata, carried by the shared send queue as `meta` and read by the binding. */
interface DatagramMeta {
  host: string | undefined
  port: number
  /** -1: not given. */
  ecn: number
  /** -1: not given. */
  segmentSize: number
  source: string | undefined
}

/** Numbers per datagram in `udpSendQueued`'s flat array: port, ECN, segment size. */
const NUMBERS_PER_DATAGRAM = 3

/** The UDP calls of the binding, for the shared send queue. */
const udpTransport: SendTransport = {
  sendOne(handle, message, data) {
    const meta = message.meta as DatagramMeta
    return native.udpSend(handle, data, meta.host, meta.port, meta.ecn, meta.segmentSize, meta.source)
  },
  /**
   * `queue[from..from + count]` laid out as flat arrays, as the queue does for AF_UNIX batches
   * (`#sendBatch`): the binding reads a batch with a few Node-API calls, not a property read per
   * field and datagram (see udpSendQueued in binding.d.ts).
   */
  sendQueued(handle, queue, from, count) {
    const parts = new Array<Uint8Array>(count)
    const numbers = new Int32Array(count * NUMBERS_PER_DATAGRAM)
    let hosts: Array<string | undefined> | undefined
    let sources: Array<string | undefined> | undefined
    for (let i = 0; i < count; i++) {
      const entry = queue[from + i]!
      const meta = entry.meta as DatagramMeta
      // One part per datagram (#enqueue).
      parts[i] = entry.parts[0]!
      numbers[i * NUMBERS_PER_DATAGRAM] = meta.port
      numbers[i * NUMBERS_PER_DATAGRAM + 1] = meta.ecn
      numbers[i * NUMBERS_PER_DATAGRAM + 2] = meta.segmentSize
      if (meta.host !== undefined) (hosts ??= new Array<string | undefined>(count))[i] = meta.host
      if (meta.source !== undefined) (sources ??= new Array<string | undefined>(count))[i] = meta.source
    }
    return native.udpSendQueued(handle, parts, numbers, hosts, sources)
  },
}

/**
 * A datagram received, with what the kernel said about it. Only what the socket asked for is
 * set; the rest is undefined.
 *
 * @example UdpSocket.bound(4433).on('message', (msg: UdpMessage) => console.log(msg.address, msg.port, msg.ecn, msg.localAddress))
 */
export class UdpMessage {
  /** The datagram, or with `gro` and `splitSegments: false` a run of them (cut every `stride` bytes). */
  readonly data: Buffer
  /** The sender's address and port. */
  readonly address: string
  readonly port: number
  /** The ECN codepoint (0 to 3). */
  readonly ecn: number | undefined
  /** The whole TOS byte / traffic class (DSCP and ECN). */
  readonly trafficClass: number | undefined
  /** The local address the datagram was sent to (answer from it with `sourceAddress`). */
  readonly localAddress: string | undefined
  /** The interface it arrived on. */
  readonly interfaceIndex: number | undefined
  /** The IPv4 TTL or IPv6 hop limit. */
  readonly ttl: number | undefined
  /** The size of each datagram in `data`: `data.length` unless a GRO run was handed whole. */
  readonly stride: number
  /** `msg_flags` (MSG_TRUNC: `truncated`). */
  readonly flags: number
  readonly #seconds: number
  readonly #nanoseconds: number

  /** @internal */
  constructor(
    data: Buffer,
    address: string,
    port: number,
    ecn: number,
    trafficClass: number,
    localAddress: string | undefined,
    interfaceIndex: number,
    ttl: number,
    stride: number,
    flags: number,
    seconds: number,
    nanoseconds: number,
  ) {
    this.data = data
    this.address = address
    this.port = port
    this.ecn = ecn < 0 ? undefined : ecn
    this.trafficClass = trafficClass < 0 ? undefined : trafficClass
    this.localAddress = localAddress
    this.interfaceIndex = interfaceIndex < 0 ? undefined : interfaceIndex
    this.ttl = ttl < 0 ? undefined : ttl
    this.stride = stride
    this.flags = flags
    this.#seconds = seconds
    this.#nanoseconds = nanoseconds
  }

  /** The kernel's receive time, in nanoseconds since the Unix epoch (with `timestamps`). */
  get timestamp(): bigint | undefined {
    if (this.#seconds < 0) return undefined
    return BigInt(this.#seconds) * 1_000_000_000n + BigInt(this.#nanoseconds)
  }

  /** How many datagrams `data` holds. */
  get segments(): number {
    return this.stride > 0 ? Math.max(1, Math.ceil(this.data.length / this.stride)) : 1
  }

  /** Datagram `i` of a GRO run handed whole. */
  segment(i: number): Buffer {
    return this.data.subarray(i * this.stride, (i + 1) * this.stride)
  }

  /** The datagram was longer than `maxMessageSize` and was cut short. */
  get truncated(): boolean {
    return (this.flags & MSG_TRUNC) !== 0
  }
}

const MSG_TRUNC = constants.MSG_TRUNC
/** Datagrams an iterator holds before it pauses the socket. */
const ITERATOR_QUEUE_LIMIT = 1024
/** The largest UDP payload (65,535 less the UDP and IPv4 headers); a GSO buffer too. */
const MAX_UDP_PAYLOAD = 65_507

/**
 * An ICMP error the kernel queued for a datagram this socket sent: a Node-style error (`code`
 * ECONNREFUSED for port unreachable, EMSGSIZE for packet too big, ...), with details.
 *
 * @example UdpSocket.create('udp4').on('icmpError', (error: IcmpError) => console.log(error.code, error.mtu))
 */
export interface IcmpError extends Error {
  code: string
  errno: number
  syscall: string
  /** 'icmp', 'icmp6' or 'local' (the local stack, e.g. a datagram larger than the known path MTU). */
  origin?: string
  icmpType?: number
  icmpCode?: number
  /** EMSGSIZE: the path's MTU. */
  mtu?: number
  /** Who reported it (a router, or the destination host). */
  offender?: string
  /** The destination of the datagram that met it. */
  address?: string
  port?: number
}

/**
 * The events of a {@link UdpSocket} and what their listeners get.
 *
 * @example UdpSocket.bound(4433).on('message', (msg) => console.log(msg.address, msg.data.length))
 */
export interface UdpSocketEvents {
  /** A datagram arrived (or, with `gro` and `splitSegments: false`, a run of them). */
  message: [message: UdpMessage]
  /** The kernel reported an ICMP error for a datagram this socket sent; the socket goes on. */
  icmpError: [error: IcmpError]
  /** Queued sends went out. */
  drain: []
  /** A receive error; 'close' follows. */
  error: [error: Error]
  /** The socket closed. */
  close: []
}

type Lifecycle = 'open' | 'closed'

type CheckedOptions = Required<Omit<UdpSocketOptions, 'recvBufferSize' | 'sendBufferSize'>> & Pick<UdpSocketOptions, 'recvBufferSize' | 'sendBufferSize'>

const DEFAULTS: CheckedOptions = {
  ipv6Only: false,
  maxMessageSize: 65535,
  gro: false,
  splitSegments: true,
  ecn: true,
  pktinfo: true,
  ttl: false,
  timestamps: false,
  dontFragment: false,
  recvBufferSize: undefined,
  sendBufferSize: undefined,
}

function validateOptions(options: unknown): CheckedOptions {
  if (options === undefined) return DEFAULTS
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options)
  const checked = { ...DEFAULTS }
  for (const key of Object.keys(options)) {
    if (!(key in DEFAULTS)) throw invalidArgValue('options', key, 'has an unknown option')
  }
  for (const [key, value] of Object.entries(options as Record<string, unknown>)) {
    if (value === undefined) continue
    if (key === 'maxMessageSize') {
      checked.maxMessageSize = validateInteger(value, 'options.maxMessageSize', 1, 65535)
    } else if (key === 'recvBufferSize' || key === 'sendBufferSize') {
      checked[key] = validateInteger(value, `options.${key}`, 1, 2 ** 31 - 1)
    } else if (typeof value !== 'boolean') {
      throw invalidArgType(`options.${key}`, 'of type boolean', value)
    } else {
      ;(checked as Record<string, unknown>)[key] = value
    }
  }
  return checked
}

/** An IP literal, with 'localhost' as the loopback address of the socket's family. */
function hostOf(host: unknown, type: UdpType, name: string): string {
  if (typeof host !== 'string') throw invalidArgType(name, 'of type string', host)
  if (host === 'localhost') return type === 'udp4' ? '127.0.0.1' : '::1'
  const version = isIP(host)
  if (version === 0) throw invalidArgValue(name, host, 'must be an IP address (names are not resolved)')
  if (version === 6 && type === 'udp4') throw invalidArgValue(name, host, 'is an IPv6 address, and this is a udp4 socket')
  return host
}

function portOf(port: unknown, name: string, min: number): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < min || port > 65535) {
    const error = outOfRange(name, `>= ${min} and <= 65535`, port)
    Object.defineProperty(error, 'code', { value: 'ERR_SOCKET_BAD_PORT' })
    throw error
  }
  return port
}

/** Set once the class is defined: the private constructor, for `open`. */
let construct: () => UdpSocket

/** Set by the static constructors for the private constructor. */
let opening: { from: AdoptionSource; type: UdpType; options: CheckedOptions } | undefined

/**
 * A UDP socket in the event loop with per-datagram metadata.
 *
 * Events ({@link UdpSocketEvents}): `'message'` (a {@link UdpMessage}), `'icmpError'` (an
 * {@link IcmpError}), `'drain'`, `'error'`, `'close'`. Or iterate: `for await (const msg of socket)`.
 *
 * @example
 * const server = UdpSocket.bound(4433, '::', { type: 'udp6' })
 * server.on('message', (msg) => server.sendTo(msg.data, msg.port, msg.address, { sourceAddress: msg.localAddress }))
 */
export class UdpSocket extends EventEmitter<UdpSocketEvents> implements AsyncIterable<UdpMessage>, AsyncDisposable {
  readonly #type: UdpType
  readonly #handle: SocketHandle
  readonly #fd: number
  readonly #sends: SendQueue
  #lifecycle: Lifecycle = 'open'
  #paused = false
  #reading = false

  private constructor() {
    super()
    const args = opening
    opening = undefined
    if (args === undefined) throw stateError('ERR_ILLEGAL_CONSTRUCTOR', 'Use UdpSocket.create(), bound() or from()')
    this.#type = args.type
    const { maxMessageSize, gro, splitSegments, ecn, pktinfo, ttl, timestamps, dontFragment, recvBufferSize, sendBufferSize } = args.options
    // Owned by the binding from here on; if opening fails, it is still where it came from.
    this.#handle = native.udpOpen(
      args.from.source,
      args.from.index,
      { maxMessageSize, gro, splitSegments, ecn, pktinfo, ttl, timestamps, dontFragment, recvBufferSize, sendBufferSize },
      this,
      UdpSocket.#events,
    )
    this.#fd = native.socketFd(this.#handle)
    this.#sends = new SendQueue(this.#handle, 'dgram', { drained: () => this.emit('drain'), emptied: () => {} }, udpTransport)
    collectedWhileOpen.register(this, `A UdpSocket (fd ${this.#fd})`, this)
    // Node's own events, which the typed map of the socket's events leaves out.
    const emitter = this as EventEmitter
    emitter.on('newListener', (event) => {
      if (event === 'message' || event === 'icmpError') queueMicrotask(() => this.#updateReading())
    })
    emitter.on('removeListener', (event) => {
      if (event === 'message' || event === 'icmpError') this.#updateReading()
    })
  }

  /**
   * A new, unbound UDP socket. It gets an ephemeral port with its first send, or bind() one.
   *
   * @example const client = UdpSocket.create('udp4', { ttl: true })
   */
  static create(type: UdpType = 'udp4', options?: UdpSocketOptions): UdpSocket {
    if (type !== 'udp4' && type !== 'udp6') throw invalidArgValue('type', type, "must be 'udp4' or 'udp6'")
    const checked = validateOptions(options)
    const fd = native.udpCreate(type === 'udp6', checked.ipv6Only)
    try {
      return open({ source: fd, index: -1 }, type, checked)
    } catch (error) {
      native.closeFd(fd)
      throw error
    }
  }

  /**
   * A new UDP socket bound to `port` (0: any free one) on `address` (default: every address of
   * the family, '0.0.0.0' or '::').
   *
   * @example const server = UdpSocket.bound(0, '127.0.0.1')
   */
  static bound(port = 0, address?: string, options?: UdpSocketOptions & { type?: UdpType }): UdpSocket {
    const type = options?.type ?? (address !== undefined && isIP(address) === 6 ? 'udp6' : 'udp4')
    const { type: _type, ...rest } = options ?? {}
    const socket = UdpSocket.create(type, rest)
    try {
      socket.bind(port, address)
    } catch (error) {
      socket.close()
      throw error
    }
    return socket
  }

  /**
   * Adopts an open UDP socket descriptor (a number or a ReceivedFd, e.g. one handed over by a
   * supervisor): the socket owns it from now on. Refused (and left as it was) if it is not UDP.
   *
   * @example const udp = UdpSocket.from(3) // a UDP socket a supervisor handed over as fd 3
   */
  static from(fd: number | ReceivedFd, options?: UdpSocketOptions): UdpSocket {
    const checked = validateOptions(options)
    const number = descriptorNumber(fd)
    const type: UdpType = native.getSocketFamily(number) === constants.AF_INET6 ? 'udp6' : 'udp4'
    return open(adoptionSource(fd), type, checked)
  }

  /**
   * A UdpSocket on a copy of a `dgram.Socket`'s descriptor (the bridge from Node's own sockets).
   * Both then share one socket: close the dgram.Socket (which closes only its copy) unless you
   * mean them to compete for datagrams.
   *
   * @example const node = (await import('node:dgram')).createSocket('udp4'); const udp = UdpSocket.fromDgram(node); node.close()
   */
  static fromDgram(socket: DgramSocket, options?: UdpSocketOptions): UdpSocket {
    const copy = native.dup(fdOf(socket, 'socket'))
    try {
      return UdpSocket.from(copy, options)
    } catch (error) {
      native.closeFd(copy)
      throw error
    }
  }

  /** 'udp4' or 'udp6'. */
  get type(): UdpType {
    return this.#type
  }

  /** The descriptor, still owned by the socket; -1 once closed. */
  get fd(): number {
    return this.closed ? -1 : this.#fd
  }

  get closed(): boolean {
    return this.#lifecycle === 'closed'
  }

  /** Bytes queued and not yet taken by the kernel. */
  get writableLength(): number {
    return this.#sends.length
  }

  /** Datagrams one send can carry as one buffer: 64 with GSO, 1 where the sender cuts them itself. */
  get gsoSegments(): number {
    return this.closed ? 1 : native.udpGsoSegments(this.#handle)
  }

  /** Whether received datagrams may arrive coalesced (GRO was asked for and granted). */
  get gro(): boolean {
    return !this.closed && native.udpGro(this.#handle)
  }

  /** Binds to `port` on `address` (default: every address of the family). */
  bind(port = 0, address?: string): this {
    this.#checkOpen()
    const host = address === undefined ? (this.#type === 'udp4' ? '0.0.0.0' : '::') : hostOf(address, this.#type, 'address')
    native.udpBind(this.#handle, host, portOf(port, 'port', 0))
    return this
  }

  /** Fixes the peer: send() goes there, and only its datagrams are received. */
  connect(port: number, address = 'localhost'): this {
    this.#checkOpen()
    native.udpConnect(this.#handle, hostOf(address, this.#type, 'address'), portOf(port, 'port', 1))
    return this
  }

  disconnect(): this {
    this.#checkOpen()
    native.udpDisconnect(this.#handle)
    return this
  }

  /** This socket's address, as `dgram.Socket.address()` gives it. */
  address(): { address: string; family: string; port: number } {
    this.#checkOpen()
    return native.udpLocalAddress(this.#handle)
  }

  /** The connected peer's address; throws ERR_SOCKET_DGRAM_NOT_CONNECTED when not connected. */
  remoteAddress(): { address: string; family: string; port: number } {
    this.#checkOpen()
    const peer = native.udpRemoteAddress(this.#handle)
    if (peer === null) throw stateError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected')
    return peer
  }

  /** The socket's TOS byte / traffic class (DSCP and ECN bits) for datagrams sent without `ecn`. */
  getTOS(): number {
    this.#checkOpen()
    return native.udpTrafficClass(this.#handle)
  }

  /** Sets the TOS byte / traffic class. Per-datagram `ecn` marks keep its DSCP bits. */
  setTOS(tos: number): this {
    this.#checkOpen()
    native.udpSetTrafficClass(this.#handle, validateInteger(tos, 'tos', 0, 255))
    return this
  }

  #checkOpen(): void {
    if (this.closed) throw stateError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running')
  }

  // Sending -----------------------------------------------------------------------------------

  /**
   * Sends one datagram (or, with `segmentSize`, a run of them) to the connected peer. Resolves
   * when the kernel has taken it; rejects with a Node-style error. Wrong arguments throw at once.
   *
   * @example const udp = UdpSocket.create('udp4').connect(4433, '127.0.0.1'); await udp.send('packet', { ecn: ECN_ECT0 })
   */
  send(data: Data, options?: UdpSendOptions): Promise<void> {
    return this.#enqueue(data, options, undefined, 0)
  }

  /**
   * Sends one datagram (or a GSO run) to `port` on `address`.
   *
   * @example const udp = UdpSocket.create('udp6'); await udp.sendTo(Buffer.alloc(12_000), 4433, '2001:db8::1', { segmentSize: 1200 })
   */
  sendTo(data: Data, port: number, address: string, options?: UdpSendOptions): Promise<void> {
    return this.#enqueue(data, options, hostOf(address, this.#type, 'address'), portOf(port, 'port', 1))
  }

  #enqueue(data: Data, options: UdpSendOptions | undefined, host: string | undefined, port: number): Promise<void> {
    const chunks = chunksOf(data, 'data')
    // One buffer per datagram: the binding sends each transmit from one slice.
    const parts = chunks.length === 1 ? chunks : [Buffer.concat(chunks)]
    const length = totalLength(parts)
    if (length > MAX_UDP_PAYLOAD) throw outOfRange('data.length', `at most ${MAX_UDP_PAYLOAD} bytes (one UDP datagram, or one GSO buffer)`, length)
    let ecn = -1
    let segmentSize = -1
    let source: string | undefined
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options)
      if (options.ecn !== undefined) ecn = validateInteger(options.ecn, 'options.ecn', 0, 3)
      if (options.segmentSize !== undefined) {
        segmentSize = validateInteger(options.segmentSize, 'options.segmentSize', 1, 65507)
        if (Math.ceil(length / segmentSize) > 64) {
          throw outOfRange('options.segmentSize', `at least ${Math.ceil(length / 64)} for ${length} bytes (64 segments at most)`, segmentSize)
        }
      }
      if (options.sourceAddress !== undefined) source = hostOf(options.sourceAddress, this.#type, 'options.sourceAddress')
    }
    if (this.closed) return Promise.reject(closedError())
    const meta: DatagramMeta = { host, port, ecn, segmentSize, source }
    return this.#sends.push({ parts, length, fds: undefined, ancillary: undefined, address: undefined, meta })
  }

  // Receiving ---------------------------------------------------------------------------------

  /** Stops delivering datagrams until resume(); they wait in the kernel's receive buffer (and beyond it, are dropped). */
  pause(): this {
    this.#paused = true
    this.#updateReading()
    return this
  }

  resume(): this {
    this.#paused = false
    this.#updateReading()
    return this
  }

  /**
   * The socket polls while anyone listens for 'message' or 'icmpError': ICMP errors are noticed
   * only while it polls (as POLLERR), so with only 'icmpError' listeners it still reads, and
   * drops datagrams nobody listens for, as a dgram.Socket does.
   */
  #updateReading(): void {
    const listening = this.listenerCount('message') > 0 || this.listenerCount('icmpError') > 0
    const want = !this.closed && !this.#paused && listening
    if (want === this.#reading) return
    this.#reading = want
    native.socketSetReading(this.#handle, want)
  }

  /**
   * Iterates over received datagrams. Datagrams that arrive faster than the loop takes them wait
   * in a queue of up to 1,024; beyond that the socket pauses, and they wait in the kernel's
   * receive buffer (which drops what does not fit, as for any UDP socket). The loop ends when
   * the socket closes, throws on a receive error, and leaving it early (`break`, `return`, a
   * throw) closes the socket. 'icmpError' events are not part of it: listen for them as well.
   *
   * @example for await (const msg of UdpSocket.bound(4433)) console.log(msg.address, msg.data.length)
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<UdpMessage> {
    const queue: UdpMessage[] = []
    let head = 0
    let failure: Error | undefined
    let ended = this.closed
    let wake: (() => void) | undefined
    let pausedByUs = false
    const onMessage = (message: UdpMessage) => {
      queue.push(message)
      if (queue.length - head >= ITERATOR_QUEUE_LIMIT && !this.#paused) {
        pausedByUs = true
        this.pause()
      }
      wake?.()
    }
    const onError = (error: Error) => {
      failure = error
      wake?.()
    }
    const onClose = () => {
      ended = true
      wake?.()
    }
    this.on('message', onMessage)
    this.on('error', onError)
    this.on('close', onClose)
    const detach = () => {
      this.off('message', onMessage)
      this.off('error', onError)
      this.off('close', onClose)
    }
    const iterator: AsyncIterableIterator<UdpMessage> = {
      next: async () => {
        for (;;) {
          if (head < queue.length) {
            const message = queue[head]!
            queue[head++] = undefined as unknown as UdpMessage
            if (head === queue.length) queue.length = head = 0
            if (pausedByUs && queue.length - head < ITERATOR_QUEUE_LIMIT / 2) {
              pausedByUs = false
              this.resume()
            }
            return { value: message, done: false }
          }
          if (failure !== undefined) {
            detach()
            throw failure
          }
          if (ended) {
            detach()
            return { value: undefined, done: true }
          }
          await new Promise<void>((resolve) => (wake = resolve))
          wake = undefined
        }
      },
      return: async () => {
        detach()
        this.close()
        return { value: undefined, done: true }
      },
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  // Lifetime ----------------------------------------------------------------------------------

  /** Closes the socket now: queued sends reject with ERR_SOCKET_CLOSED; 'close' follows. Idempotent. */
  close(): void {
    if (this.closed) return
    this.#lifecycle = 'closed'
    this.#reading = false
    native.socketClose(this.#handle)
    collectedWhileOpen.unregister(this)
    this.#sends.close()
    process.nextTick(() => this.emit('close'))
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** Lets the process exit while this socket is open. */
  unref(): this {
    if (!this.closed) native.socketSetReferenced(this.#handle, false)
    this.#sends.setReferenced(false)
    return this
  }

  ref(): this {
    if (!this.closed) native.socketSetReferenced(this.#handle, true)
    this.#sends.setReferenced(true)
    return this
  }

  /** What the binding calls, with `this` = the socket (udp/receive.rs documents the arguments). */
  static readonly #events = {
    message(
      this: UdpSocket,
      slab: ArrayBuffer,
      offset: number,
      length: number,
      flags: number,
      address: string,
      port: number,
      ecn: number,
      stride: number,
      localAddress: string | undefined,
      interfaceIndex: number,
      ttl: number,
      seconds: number,
      nanoseconds: number,
      trafficClass: number,
    ): boolean {
      this.#sends.newTask()
      const message = new UdpMessage(
        Buffer.from(slab, offset, length),
        address,
        port,
        ecn,
        trafficClass,
        localAddress,
        interfaceIndex,
        ttl,
        stride,
        flags,
        seconds,
        nanoseconds,
      )
      this.emit('message', message)
      return false
    },
    writable(this: UdpSocket): void {
      this.#sends.writable()
    },
    error(this: UdpSocket, error: Error): void {
      this.#reading = false
      this.emit('error', error)
      this.close()
    },
    icmpError(this: UdpSocket, error: Error): void {
      this.emit('icmpError', error as IcmpError)
    },
  }

  static {
    construct = () => new UdpSocket()
  }
}

function open(from: AdoptionSource, type: UdpType, options: CheckedOptions): UdpSocket {
  opening = { from, type, options }
  try {
    return construct()
  } finally {
    opening = undefined
  }
}
