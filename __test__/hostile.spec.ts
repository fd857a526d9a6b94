// Hostile input: calls with wrong arguments leave nothing behind and adopt or close nothing by
// accident. Serial: the tests count open descriptors.
import test from 'ava'
import { closeSync } from 'node:fs'

import * as api from 'sendmsg'
import { Message, ReceivedFd, UnixServer, UnixSocket } from 'sendmsg'

import { openFds } from './helpers.ts'

test.serial('UnixSocket.connect() with wrong options refuses before it makes a descriptor', async (t) => {
  const before = openFds()
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { allowHalfOpen: 1.5 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { maxMessageSize: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', 5 as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})

test.serial('the exported classes refuse what would let them adopt or close a descriptor by accident', (t) => {
  const [fd, other] = api.socketpair('stream')
  // UnixServer's constructor is private in TypeScript only.
  const Server = UnixServer as unknown as new (...args: unknown[]) => UnixServer
  t.throws(() => new Server(fd, 'stream', { maxMessageSize: 1, allowHalfOpen: false }), { code: 'ERR_ILLEGAL_CONSTRUCTOR' })
  t.is(api.getSocketFamily(fd!), api.AF_UNIX, 'the descriptor was not adopted')
  // A non-integer would reach close(2) truncated: 1.5 is stdout, NaN is stdin.
  for (const bad of [1.5, NaN, -2, 2 ** 31, '3', undefined]) {
    t.throws(() => new ReceivedFd(bad as number), { instanceOf: bad === '3' || bad === undefined ? TypeError : RangeError }, String(bad))
  }
  t.is(new ReceivedFd(-1).released, true)
  // A Message is told how many descriptors it carries: more than it has numbers for is refused
  // (it would size an allocation, and settle() closes what it names).
  const MessageClass = Message as unknown as new (...args: unknown[]) => Message
  t.throws(() => new MessageClass(Buffer.alloc(0), 1e9, undefined, undefined, 0, undefined), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new MessageClass(Buffer.alloc(0), 2, new Int32Array(1), undefined, 0, undefined), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => new MessageClass(Buffer.alloc(0), 1, [7], undefined, 0, undefined), { code: 'ERR_INVALID_ARG_TYPE' })
  // A huge sparse list is refused at its first hole, before anything is allocated for it.
  t.throws(() => api.scmRights(new Array(1e9)), { code: 'ERR_INVALID_ARG_TYPE' })
  closeSync(fd!)
  closeSync(other!)
})
