// Descriptor passing: across processes, at the kernel's limit, and without leaks when the control
// buffer is too small or the message is only peeked at. Serial: the tests count open descriptors.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, readSync, writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import {
  CMSG_SPACE,
  fdsFromAncillary,
  MSG_CTRUNC,
  MSG_PEEK,
  pipe,
  recvmsg,
  scmRights,
  sendmsg,
  socketpair,
  type NodeError,
} from 'sendmsg'

import { closeAll, inode, isCloexec, openFds, readToEnd } from './helpers.ts'

const LINE_WRITER = fileURLToPath(new URL('./fixtures/write-line-through-received-fd.mjs', import.meta.url))

test.serial('a child process writes a line through a pipe end it received, then every copy is closed', async (t) => {
  const before = openFds()
  const [parentEnd, childEnd] = socketpair()
  const [r, w] = pipe()
  const child = spawn(process.execPath, [LINE_WRITER, 'a line from the child'], {
    stdio: ['ignore', 'inherit', 'inherit', childEnd],
  })
  const exited = once(child, 'exit')
  closeSync(childEnd)
  sendmsg(parentEnd, 'x', [scmRights([w])])
  // From here on the child holds the only write end: EOF proves its copy was closed too.
  closeSync(w)
  t.is(readToEnd(r).toString(), 'a line from the child\n')
  const [code] = await exited
  t.is(code, 0)
  closeAll(r, parentEnd)
  t.is(openFds(), before)
})

test.serial('253 descriptors arrive in order; 254 are the kernel\'s EINVAL', (t) => {
  const before = openFds()
  const [a, b] = socketpair('seqpacket')
  // Each read end holds its own index, so the received copies prove the order.
  const readEnds = Array.from({ length: 254 }, (_, i) => {
    const [r, w] = pipe()
    writeSync(w, `${i}`.padStart(3, '0'))
    closeSync(w)
    return r
  })

  const error = t.throws(() => sendmsg(a, 'x', [scmRights(readEnds)])) as NodeError & { errno: number; syscall: string }
  t.is(error.code, 'EINVAL')
  t.is(error.syscall, 'sendmsg')
  t.is(error.errno, -22)

  sendmsg(a, 'x', [scmRights(readEnds.slice(0, 253))])
  const { ancillary, flags } = recvmsg(b, 16, 253 * 4)
  t.is(flags & MSG_CTRUNC, 0)
  const received = fdsFromAncillary(ancillary)
  t.is(received.length, 253)
  const marker = Buffer.alloc(3)
  const indices = received.map((fd) => {
    readSync(fd, marker)
    return Number(marker.toString())
  })
  t.deepEqual(indices, Array.from({ length: 253 }, (_, i) => i))
  closeAll(a, b, ...readEnds, ...received)
  t.is(openFds(), before)
})

test.serial('received descriptors are close-on-exec and the flags are clean', (t) => {
  const [a, b] = socketpair()
  const [r, w] = pipe()
  sendmsg(a, 'x', [scmRights([r, w])])
  const { ancillary, flags } = recvmsg(b)
  t.is(flags, 0, 'MSG_CMSG_CLOEXEC (0x40000000) must not show in the flags')
  const received = fdsFromAncillary(ancillary)
  t.is(received.length, 2)
  if (process.platform === 'linux') {
    for (const fd of received) t.true(isCloexec(fd), `fd ${fd} is close-on-exec`)
  } else {
    t.log(`skipped the /proc/self/fdinfo check: no procfs on ${process.platform}`)
  }
  closeAll(a, b, r, w, ...received)
})

test.serial('received descriptors are not inherited by a spawned child', async (t) => {
  const [a, b] = socketpair()
  const [r, w] = pipe()
  sendmsg(a, 'x', [scmRights([r])])
  const [copy] = fdsFromAncillary(recvmsg(b).ancillary)
  // The child reports the identity of whatever sits at that number; it must not be our pipe.
  const child = spawn(
    process.execPath,
    ['-e', `try { const s = require('fs').fstatSync(${copy}); console.log(s.dev + ':' + s.ino) } catch { console.log('closed') }`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  await once(child, 'exit')
  t.not(output.trim(), inode(copy!))
  closeAll(a, b, r, w, copy!)
})

test.serial('a control buffer too small for every descriptor hands over those that arrived and leaks none', (t) => {
  const before = openFds()
  const [a, b] = socketpair()
  const [r, w] = pipe()
  sendmsg(a, 'x', [scmRights([r, r, r, r, r])])
  // cmsgSize 4 makes a CMSG_SPACE(4) buffer: room for fewer than five descriptors.
  const { data, ancillary, flags } = recvmsg(b, 16, 4)
  t.is(data.toString(), 'x')
  t.not(flags & MSG_CTRUNC, 0)
  const received = fdsFromAncillary(ancillary)
  const room = Math.floor((CMSG_SPACE(4) - CMSG_SPACE(0)) / 4)
  t.is(received.length, room)
  closeAll(...received)
  closeAll(a, b, r, w)
  t.is(openFds(), before)
})

test.serial('peeking hands over fresh copies of the descriptors, and the real receive more', (t) => {
  const before = openFds()
  const [a, b] = socketpair('dgram')
  const [r, w] = pipe()
  sendmsg(a, 'peek', [scmRights([r, w])])
  const peeked = recvmsg(b, 16, 64, MSG_PEEK)
  t.is(peeked.data.toString(), 'peek')
  const peekedFds = fdsFromAncillary(peeked.ancillary)
  t.is(peekedFds.length, 2)
  const real = recvmsg(b, 16, 64)
  t.is(real.data.toString(), 'peek')
  const realFds = fdsFromAncillary(real.ancillary)
  t.is(realFds.length, 2)
  closeAll(...peekedFds, ...realFds, a, b, r, w)
  t.is(openFds(), before)
})

test.serial('empty datagrams carry descriptors; empty stream sends with descriptors are refused', (t) => {
  const [r, w] = pipe()
  const [da, db] = socketpair('dgram')
  t.is(sendmsg(da, Buffer.alloc(0), [scmRights([r])]), 0)
  const received = fdsFromAncillary(recvmsg(db).ancillary)
  t.is(received.length, 1)

  const [sa, sb] = socketpair('stream')
  const error = t.throws(() => sendmsg(sa, '', [scmRights([r])]), { instanceOf: TypeError }) as NodeError
  t.is(error.code, 'ERR_INVALID_ARG_VALUE')
  t.regex(error.message, /stream socket/)
  // The socket is still usable, and nothing was sent.
  sendmsg(sa, 'after', [scmRights([r])])
  const after = recvmsg(sb)
  t.is(after.data.toString(), 'after')
  const more = fdsFromAncillary(after.ancillary)
  t.is(more.length, 1)
  closeAll(r, w, da, db, sa, sb, ...received, ...more)
})
