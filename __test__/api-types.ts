// Compile-time checks of the public API's types (compiled by `tsc -p __test__/tsconfig.json`, never
// run): each `@ts-expect-error` line must be an error, and every other line must compile. The
// listeners carry no annotations on purpose: their types come from the emitters.
import * as dgram from 'node:dgram'
import { once } from 'node:events'
import * as net from 'node:net'

import {
  dup,
  FrameChannel,
  listenFdsByName,
  notify,
  offerListeners,
  receiveListeners,
  scmRights,
  sendmsg,
  spawnWorker,
  storeFds,
  storeListeners,
  takeListeners,
  UdpSocket,
  UnixServer,
  UnixSocket,
  workerListeners,
  type Credentials,
  type DescriptorLike,
  type IcmpError,
  type Message,
  type ReceivedFd,
  type UdpMessage,
} from 'sendmsg'

declare const sock: UnixSocket
declare const server: UnixServer
declare const channel: FrameChannel
declare const netServer: net.Server
declare const netSocket: net.Socket
declare const udp: dgram.Socket
declare const udpSocket: UdpSocket
declare const received: ReceivedFd
declare function expectType<T>(value: T): void

export async function events(): Promise<void> {
  sock.on('message', (msg) => expectType<Message>(msg))
  sock.on('message', (msg) => expectType<readonly ReceivedFd[]>(msg.fds))
  sock.on('error', (error) => expectType<Error>(error))
  sock.on('end', () => {})
  sock.on('drain', () => {})
  sock.on('close', () => {})
  // @ts-expect-error a misspelt event name
  sock.on('mesage', () => {})
  // @ts-expect-error a message is not a string
  sock.on('message', (msg: string) => msg)
  // @ts-expect-error 'end' carries nothing
  sock.on('end', (what: string) => what)

  udpSocket.on('message', (msg) => expectType<UdpMessage>(msg))
  udpSocket.on('message', (msg) => expectType<number>(msg.port + msg.stride))
  udpSocket.on('icmpError', (error) => expectType<IcmpError>(error))
  udpSocket.on('icmpError', (error) => expectType<number | undefined>(error.mtu))
  udpSocket.on('drain', () => {})
  udpSocket.on('close', () => {})
  // @ts-expect-error a misspelt event name
  udpSocket.on('mesage', () => {})
  // @ts-expect-error a datagram is a UdpMessage, not Node's (msg, rinfo)
  udpSocket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => [msg, rinfo])
  for await (const msg of udpSocket) expectType<UdpMessage>(msg)

  server.on('connection', (socket) => expectType<UnixSocket>(socket))
  server.on('listening', () => {})
  server.once('error', (error) => expectType<Error>(error))
  // @ts-expect-error a misspelt event name
  server.on('conection', () => {})
  // @ts-expect-error a connection is a UnixSocket
  server.on('connection', (socket: net.Socket) => socket)

  channel.on('frame', ({ value, fds }) => {
    expectType<unknown>(value)
    expectType<readonly ReceivedFd[]>(fds)
  })
  // @ts-expect-error a misspelt event name
  channel.on('frames', () => {})

  const offer = offerListeners('/run/app/handoff.sock', { http: netServer })
  offer.on('handoff', ({ pid, uid }) => expectType<number>(pid + uid))
  offer.on('handoff', (peer) => expectType<Credentials>(peer))
  // @ts-expect-error a misspelt event name
  offer.on('handof', () => {})

  // events.once works on each emitter.
  const [message] = await once(sock, 'message')
  const [connection] = await once(server, 'connection')
  const [frame] = await once(channel, 'frame')
  const [peer] = await once(offer, 'handoff')
  void [message, connection, frame, peer]
}

export async function cancellation(signal: AbortSignal): Promise<void> {
  await UnixSocket.connect('/tmp/app.sock', { type: 'seqpacket', signal, timeout: 1000 })
  await channel.next({ signal, timeout: 1000 })
  await takeListeners('/run/app/handoff.sock', { signal, timeout: 1000 })
  await workerListeners({ signal, timeout: 1000 })
  offerListeners('/run/app/handoff.sock', {}, { signal, timeout: 1000 })
  // @ts-expect-error a misspelt option name
  await UnixSocket.connect('/tmp/app.sock', { timout: 1000 })
  // @ts-expect-error a misspelt option name
  await channel.next({ timout: 1000 })
  // @ts-expect-error a misspelt option name
  UnixServer.listen('/tmp/app.sock', { backlogg: 1 })
}

export async function disposal(): Promise<void> {
  {
    using socket = sock
    using listening = server
    using frames = channel
    void [socket, listening, frames]
  }
  await using listening = UnixServer.listen('/tmp/app.sock')
  await using frames = channel
  await using offer = offerListeners('/run/app/handoff.sock', {})
  await using worker = spawnWorker(process.execPath, ['worker.js'], { listeners: {} })
  void [listening, frames, offer, worker]
}

export function nodeNames(): void {
  expectType<string | undefined>(server.address())
  expectType<boolean>(sock.isPaused())
  expectType<UnixSocket>(sock.destroy(new Error('bye')))
  expectType<UnixServer>(UnixServer.listen('/tmp/app.sock'))
}

export async function descriptorLikes(): Promise<void> {
  const all: DescriptorLike[] = [3, received, sock, server, netServer, netSocket, udp]
  await sock.send('x', { fds: all })
  await channel.send({ hello: 1 }, all)
  sendmsg(sock, 'x', [scmRights(all)])
  dup(netServer)
  await storeFds([netServer, received], 'http')
  await notify({ FDSTORE: 1 }, { fds: [netServer] })
  // @ts-expect-error an object without a descriptor
  await sock.send('x', { fds: [{ port: 80 }] })
  // @ts-expect-error an object without a descriptor
  dup({ port: 80 })
  // @ts-expect-error an object without a descriptor
  offerListeners('/run/app/handoff.sock', { http: { port: 80 } })
}

export async function listenerNames(): Promise<void> {
  const { listeners } = await workerListeners({ expect: ['http', 'admin'] })
  expectType<ReceivedFd>(listeners.http)
  expectType<ReceivedFd>(listeners.admin)
  // @ts-expect-error only the names expected
  void listeners.other
  const taken = await takeListeners('/run/app/handoff.sock', { expect: ['http'] })
  expectType<ReceivedFd>(taken.listeners.http)
  const any = await receiveListeners(channel)
  expectType<ReceivedFd | undefined>(any.listeners['http'] as ReceivedFd | undefined)
}

export async function systemdListeners(): Promise<void> {
  const stored = listenFdsByName({ expect: ['http', 'dns'] })
  expectType<ReceivedFd | undefined>(stored.http)
  // @ts-expect-error only the names expected
  void stored.other
  // The record passes as it is wherever listeners are taken, with or without expected names.
  await storeListeners(stored)
  offerListeners('/run/app/handoff.sock', listenFdsByName())
  await storeListeners({ dns: dgram.createSocket('udp4'), quic: UdpSocket.bound(0) })
}
