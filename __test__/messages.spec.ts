// Message semantics as the kernel defines them: gather I/O, datagram and seqpacket boundaries,
// MSG_TRUNC and MSG_PEEK reported in flags, and Node's own socket objects as sockets.
import test from 'ava'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'

import {
  AF_INET,
  AF_UNIX,
  CMSG_LEN,
  CMSG_SPACE,
  constants,
  getSocketFamily,
  MSG_PEEK,
  MSG_TRUNC,
  recvmsg,
  sendmsg,
  socketpair,
  type SocketType,
} from 'sendmsg'

import { tempDir } from './helpers.ts'

const seqpacket = process.platform === 'darwin' ? test.skip : test
if (process.platform === 'darwin') console.log('seqpacket tests skipped: macOS has no AF_UNIX SOCK_SEQPACKET')

test('a list of chunks goes out as one message (gather I/O)', (t) => {
  const [a, b] = socketpair('dgram')
  const chunks = ['ab', Buffer.from('cd'), new Uint8Array([0x65]), new DataView(new Uint8Array([0x66]).buffer), new Uint16Array([0x6867])]
  t.is(sendmsg(a, chunks), 8)
  t.is(recvmsg(b).data.toString('latin1'), os.endianness() === 'LE' ? 'abcdefgh' : 'abcdefhg')
  closeSync(a)
  closeSync(b)
})

for (const type of ['dgram', 'seqpacket'] as SocketType[]) {
  const maybe = type === 'seqpacket' ? seqpacket : test
  maybe(`${type} sockets keep message boundaries and flag truncation`, (t) => {
    const [a, b] = socketpair(type)
    sendmsg(a, '0123456789')
    sendmsg(a, 'ab')
    sendmsg(a, '')
    const first = recvmsg(b, 4)
    t.is(first.data.toString(), '0123')
    t.not(first.flags & MSG_TRUNC, 0)
    const second = recvmsg(b, 64)
    t.is(second.data.toString(), 'ab')
    t.is(second.flags & MSG_TRUNC, 0)
    t.is(recvmsg(b, 64).data.length, 0, 'an empty message is a message')
    closeSync(a)
    closeSync(b)
  })

  maybe(`${type} MSG_PEEK leaves the message in place`, (t) => {
    const [a, b] = socketpair(type)
    sendmsg(a, 'peekaboo')
    t.is(recvmsg(b, 4, 0, MSG_PEEK).data.toString(), 'peek')
    t.is(recvmsg(b, 64).data.toString(), 'peekaboo')
    closeSync(a)
    closeSync(b)
  })
}

test('stream sockets merge plain data', (t) => {
  const [a, b] = socketpair('stream')
  sendmsg(a, 'ab')
  sendmsg(a, 'cd')
  t.is(recvmsg(b, 64).data.toString(), 'abcd')
  closeSync(a)
  closeSync(b)
})

test('CMSG_LEN and CMSG_SPACE are the platform\'s', (t) => {
  t.true(CMSG_LEN(0) > 0)
  t.is(CMSG_LEN(4), CMSG_LEN(0) + 4)
  t.true(CMSG_SPACE(4) >= CMSG_LEN(4))
  if (process.platform === 'linux' && process.arch === 'x64') {
    t.is(CMSG_LEN(4), 20)
    t.is(CMSG_SPACE(4), 24)
  }
  t.throws(() => CMSG_SPACE(-1), { instanceOf: RangeError })
})

test('constants carry the running platform\'s values', (t) => {
  if (process.platform === 'linux') {
    t.like(constants, {
      SOL_SOCKET: 1,
      SCM_RIGHTS: 1,
      SCM_CREDENTIALS: 2,
      AF_UNIX: 1,
      SOCK_STREAM: 1,
      SOCK_DGRAM: 2,
      SOCK_SEQPACKET: 5,
      MSG_PEEK: 2,
      MSG_CTRUNC: 8,
      MSG_TRUNC: 0x20,
      MSG_DONTWAIT: 0x40,
      MSG_NOSIGNAL: 0x4000,
      MSG_CMSG_CLOEXEC: 0x40000000,
      SCM_MAX_FD: 253,
    })
  } else {
    t.is(constants.SCM_CREDENTIALS, undefined)
    t.is(constants.MSG_NOSIGNAL, undefined)
  }
  t.true(Object.isFrozen(constants))
})

test('Node\'s own sockets work as the socket argument', async (t) => {
  using temp = tempDir()
  const path = join(temp.dir, 'server.sock')
  const server = net.createServer().listen(path)
  await once(server, 'listening')
  t.is(getSocketFamily(server), AF_UNIX)
  const client = net.connect(path)
  await once(client, 'connect')
  t.is(getSocketFamily(client), AF_UNIX)

  const tcp = net.createServer().listen(0, '127.0.0.1')
  await once(tcp, 'listening')
  t.is(getSocketFamily(tcp), AF_INET)

  const udp = dgram.createSocket('udp4')
  udp.bind(0, '127.0.0.1')
  await once(udp, 'listening')
  t.is(getSocketFamily(udp), AF_INET)

  const unconnected = new net.Socket()
  t.throws(() => getSocketFamily(unconnected), { code: 'ERR_INVALID_ARG_VALUE' })

  client.destroy()
  udp.close()
  await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => tcp.close(r))])
})
