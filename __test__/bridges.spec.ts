// Bridges to Node's own objects: descriptors become net.Server, net.Socket and dgram.Socket after a
// check of what they really are; the wrong kind is a clear error.
import test from 'ava'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'

import { dup, pipe, toDgramSocket, toNetServer, toNetSocket, UnixServer, UnixSocket, type Message } from 'sendmsg'

import { tempDir } from './helpers.ts'

async function listening(): Promise<net.Server> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

test('a listening TCP descriptor becomes a net.Server that serves', async (t) => {
  const original = await listening()
  const port = (original.address() as net.AddressInfo).port
  const fd = dup(original)
  original.close()
  const server = toNetServer(fd, net.createServer((socket) => socket.end('bridged\n')))
  await once(server, 'listening')
  const reply = await new Promise<string>((resolve) => {
    let text = ''
    net.connect(port, '127.0.0.1').on('data', (c) => (text += c)).on('end', () => resolve(text))
  })
  t.is(reply, 'bridged\n')
  server.close()
})

test('a listening AF_UNIX stream descriptor, received in a message, becomes a net.Server', async (t) => {
  using temp = tempDir('sendmsg-bridge-')
  const path = join(temp.dir, 'u.sock')
  const unix = UnixServer.listen(path)
  const [a, b] = UnixSocket.pair('seqpacket')
  const arrived = once(b, 'message')
  await a.send('listener', { fds: [unix.fd] })
  const [message] = (await arrived) as [Message]
  const received = message.fds[0]!
  const server = toNetServer(received, net.createServer((socket) => socket.end('over unix\n')))
  t.true(received.released, 'the server owns it now')
  await once(server, 'listening')
  const reply = await new Promise<string>((resolve) => {
    let text = ''
    net.connect(path).on('data', (c) => (text += c)).on('end', () => resolve(text))
  })
  t.is(reply, 'over unix\n')
  server.close()
  unix.close()
  a.close()
  b.close()
})

test('a connected TCP descriptor becomes a net.Socket', async (t) => {
  const server = await listening()
  const accepted = once(server, 'connection')
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const [peer] = (await accepted) as [net.Socket]
  const bridged = toNetSocket(dup(client))
  const got = once(peer, 'data')
  bridged.write('through the bridge')
  t.is(String((await got)[0]), 'through the bridge')
  bridged.destroy()
  client.destroy()
  peer.destroy()
  server.close()
})

test('a UDP descriptor becomes a dgram.Socket', async (t) => {
  const original = dgram.createSocket('udp4')
  original.bind(0, '127.0.0.1')
  await once(original, 'listening')
  const port = original.address().port
  const fd = dup(original)
  original.close()
  const bridged = toDgramSocket(fd)
  t.is(bridged.address().port, port, 'bound when it returns')
  const got = once(bridged, 'message')
  const sender = dgram.createSocket('udp4')
  sender.send('datagram', port, '127.0.0.1')
  t.is(String((await got)[0]), 'datagram')
  sender.close()
  bridged.close()
})

test('descriptors of the wrong kind are refused with what they are', async (t) => {
  const server = await listening()
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const udp = dgram.createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  const [seq] = UnixSocket.pair(process.platform === 'darwin' ? 'dgram' : 'seqpacket')
  const [r, w] = pipe()

  // A refusal leaves the descriptor with the caller.
  const [clientFd, udpFd, serverFd] = [dup(client), dup(udp), dup(server)]
  t.throws(() => toNetServer(clientFd), { code: 'ERR_INVALID_ARG_VALUE', message: /AF_INET stream socket, connected, not a listening/ })
  t.throws(() => toNetServer(udpFd), { code: 'ERR_INVALID_ARG_VALUE', message: /datagram socket/ })
  t.throws(() => toNetSocket(serverFd), { code: 'ERR_INVALID_ARG_VALUE', message: /listening, not a connected/ })
  t.throws(() => toNetSocket(seq!.fd), { code: 'ERR_INVALID_ARG_VALUE', message: /AF_UNIX/ })
  t.throws(() => toDgramSocket(serverFd), { code: 'ERR_INVALID_ARG_VALUE', message: /not a UDP socket/ })
  t.throws(() => toNetServer(r), { code: 'ENOTSOCK' })
  t.throws(() => toNetServer(-1), { instanceOf: RangeError })

  for (const fd of [clientFd, udpFd, serverFd]) closeSync(fd)
  closeSync(r)
  closeSync(w)
  seq!.close()
  udp.close()
  client.destroy()
  server.close()
})
