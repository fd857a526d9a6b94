// UDP listeners in the handoff: a bound UDP socket goes by name like a listening TCP socket, and
// becomes a dgram.Socket (toDgramSocket) or a UdpSocket (UdpSocket.from) on the other side. A UDP
// socket that would not serve (connected to one peer, or bound to no port) is refused on both
// sides. Serial: the tests count open descriptors.
import test from 'ava'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import dgram from 'node:dgram'
import net from 'node:net'
import { join } from 'node:path'

import {
  dup,
  FrameChannel,
  offerListeners,
  receiveListeners,
  sendListeners,
  spawnWorker,
  takeListeners,
  toDgramSocket,
  toNetServer,
  UdpSocket,
  UnixSocket,
  type NodeError,
  type UdpMessage,
} from 'sendmsg'

import { openFds, tcpListener, tempDir, turn } from './helpers.ts'
import { fixture } from './processes.ts'

/** A bound UDP socket as a bare descriptor that nothing reads, as a supervisor holds it. */
async function udpListener(type: 'udp4' | 'udp6' = 'udp4'): Promise<{ fd: number; port: number; address: string }> {
  const address = type === 'udp4' ? '127.0.0.1' : '::1'
  const socket = dgram.createSocket(type)
  socket.bind(0, address)
  await once(socket, 'listening')
  const { port } = socket.address()
  const fd = dup(socket)
  await new Promise<void>((resolve) => socket.close(resolve))
  return { fd, port, address }
}

/** Sends `text` to a UDP port and resolves to the first answer. */
async function ask(port: number, address: string, text: string): Promise<string> {
  const client = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4')
  const answer = once(client, 'message') as Promise<[Buffer]>
  client.send(text, port, address)
  const [data] = await answer
  await new Promise<void>((resolve) => client.close(resolve))
  return data.toString()
}

function fetchLine(options: net.NetConnectOpts): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    net
      .connect(options)
      .on('data', (chunk) => (text += chunk))
      .on('end', () => resolve(text))
      .on('error', reject)
  })
}

test.serial('a spawned worker gets a bound UDP socket by name and answers datagrams on it with dgram', async (t) => {
  const before = openFds()
  const tcp = await tcpListener()
  const udp = await udpListener()
  const worker = spawnWorker(process.execPath, [fixture('udp-handoff-worker.mjs')], { listeners: { http: tcp.fd, dns: udp.fd } })
  await worker.ready
  const [frame] = (await once(worker.channel, 'frame')) as [{ value: { type: string; udp: { port: number } } }]
  t.is(frame.value.type, 'serving')
  t.is(frame.value.udp.port, udp.port, 'the worker serves on the port the supervisor bound')
  t.is(await ask(udp.port, udp.address, 'hello'), `dns served by ${worker.child.pid}: hello`)
  t.is(await fetchLine({ host: '127.0.0.1', port: tcp.port }), `http served by ${worker.child.pid}\n`)
  const exited = once(worker.child, 'exit')
  await worker.channel.send({ type: 'stop' })
  t.deepEqual(await exited, [0, null])
  worker.channel.close()
  closeSync(tcp.fd)
  closeSync(udp.fd)
  await turn()
  t.is(openFds(), before)
})

test.serial('a takeover carries TCP and UDP (IPv4 and IPv6) together; the taker serves with net, dgram and UdpSocket', async (t) => {
  using temp = tempDir('sendmsg-handoff-udp-')
  const before = openFds()
  const tcp = await tcpListener()
  const v4 = await udpListener('udp4')
  const v6 = await udpListener('udp6')
  const path = join(temp.dir, 'private', 'supervisor.sock')
  const offer = offerListeners(path, { http: tcp.fd, dns: v4.fd, quic: v6.fd })
  const handedOver = once(offer, 'handoff')
  const { listeners } = await takeListeners(path, { expect: ['http', 'dns', 'quic'] })
  await handedOver
  offer.close()
  // The old process lets go of its copies, as it would by exiting.
  closeSync(tcp.fd)
  closeSync(v4.fd)
  closeSync(v6.fd)

  const server = toNetServer(listeners.http, net.createServer((socket) => socket.end('taken over\n')))
  const dns = toDgramSocket(listeners.dns)
  t.is(dns.address().family, 'IPv4')
  dns.on('message', (data, from) => dns.send(`dgram: ${data}`, from.port, from.address))
  const quic = UdpSocket.from(listeners.quic)
  t.is(quic.type, 'udp6')
  quic.on('message', (message: UdpMessage) => void quic.sendTo(`UdpSocket: ${message.data}`, message.port, message.address))
  await once(server, 'listening')
  t.is(await fetchLine({ host: '127.0.0.1', port: tcp.port }), 'taken over\n')
  t.is(await ask(v4.port, v4.address, 'a'), 'dgram: a')
  t.is(await ask(v6.port, v6.address, 'b'), 'UdpSocket: b')
  t.true(listeners.dns.released && listeners.quic.released, 'the sockets own the descriptors now')

  server.close()
  await once(server, 'close')
  await new Promise<void>((resolve) => dns.close(resolve))
  await quic.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a UDP socket connected to one peer, or bound to no port, is refused before anything is sent', async (t) => {
  const before = openFds()
  const connected = dgram.createSocket('udp4')
  connected.bind(0, '127.0.0.1')
  await once(connected, 'listening')
  connected.connect(9, '127.0.0.1')
  await once(connected, 'connect')
  const unbound = UdpSocket.create('udp4')
  const [a, b] = UnixSocket.pair('stream')
  const sender = new FrameChannel(a)
  await t.throwsAsync(sendListeners(sender, { dns: connected }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /'listeners\.dns' is a connected UDP socket .*hand over a bound, unconnected one/,
  })
  await t.throwsAsync(sendListeners(sender, { dns: unbound }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /'listeners\.dns' is a UDP socket bound to no port: bind it/,
  })
  using temp = tempDir('sendmsg-handoff-udp-')
  t.throws(() => offerListeners(join(temp.dir, 'o', 's.sock'), { dns: unbound }), { code: 'ERR_INVALID_ARG_VALUE', message: /bound to no port/ })
  sender.close()
  b.close()
  await new Promise<void>((resolve) => connected.close(resolve))
  await unbound.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a receiver refuses a UDP socket bound to no port, tells the sender why, and closes it', async (t) => {
  const before = openFds()
  const unbound = UdpSocket.create('udp6')
  const [evil, victim] = UnixSocket.pair('stream')
  const receiving = receiveListeners(new FrameChannel(victim), { expect: ['dns'] })
  const body = Buffer.from(JSON.stringify({ protocol: 'sendmsg-handoff', version: 1, type: 'listeners', names: ['dns'], total: 1 }))
  const header = Buffer.alloc(6)
  header.writeUInt32BE(body.length, 0)
  header.writeUInt16BE(1, 4)
  const told = once(evil, 'message') as Promise<[{ data: Buffer }]>
  await evil.send([header, body], { fds: [unbound.fd] })
  const error = (await t.throwsAsync(receiving)) as NodeError
  t.is(error.code, 'ERR_SENDMSG_HANDOFF')
  t.regex(error.message, /the listener 'dns' is a UDP socket bound to no port/)
  const [reply] = await told
  t.regex(reply.data.toString(), /bound to no port/)
  evil.close()
  await unbound.close()
  await turn()
  t.is(openFds(), before)
})
