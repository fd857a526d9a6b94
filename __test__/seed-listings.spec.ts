// Twisted's two sendmsg listings (send_replacement.py and copy_descriptor.py), as tests.
import test from 'ava'
import { closeSync, readSync, writeSync } from 'node:fs'

import { fdsFromAncillary, pipe, recvmsg, scmRights, sendmsg, socketpair, SCM_RIGHTS, SOL_SOCKET } from 'sendmsg'

test('sendmsg and recvmsg replace send and recv', (t) => {
  const [foo, bar] = socketpair()
  t.is(sendmsg(foo, 'Hello, world'), 12)
  const { data, ancillary, flags } = recvmsg(bar, 1024)
  t.is(data.toString(), 'Hello, world')
  t.deepEqual(ancillary, [])
  t.is(flags, 0)
  closeSync(foo)
  closeSync(bar)
})

test('a copied pipe descriptor reads the second half of the string', (t) => {
  const [readSocket, writeSocket] = socketpair()
  const [r, w] = pipe()
  writeSync(w, 'Hello, world')

  sendmsg(writeSocket, 'x', [scmRights([r])])
  const { ancillary } = recvmsg(readSocket, 1024)
  t.is(ancillary.length, 1)
  const [level, type, packed] = ancillary[0]!
  t.is(level, SOL_SOCKET)
  t.is(type, SCM_RIGHTS)
  t.is(packed.length, 4)
  const [copy] = fdsFromAncillary(ancillary)
  t.not(copy, r)

  const first = Buffer.alloc(6)
  const second = Buffer.alloc(6)
  readSync(r, first)
  readSync(copy!, second)
  t.is(first.toString(), 'Hello,')
  t.is(second.toString(), ' world')
  for (const fd of [readSocket, writeSocket, r, w, copy!]) closeSync(fd)
})
