// Interoperability with another implementation: Python's socket.send_fds/recv_fds in a second
// process, descriptors passing both ways.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, readSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { pipe, socketpair, UnixSocket, type Message } from 'sendmsg'

import { readToEnd } from './helpers.ts'

const python = spawnSync('python3', ['-c', 'import socket; socket.send_fds']).status === 0
const withPython = python ? test : test.skip
if (!python) console.log('Python interop test skipped: needs python3 >= 3.9 (socket.send_fds)')

withPython('descriptors pass both ways between Node and Python', async (t) => {
  // Python gets a plain blocking socket; only our end joins the event loop.
  const [mineFd, theirs] = socketpair('stream')
  const mine = UnixSocket.from(mineFd)
  const child = spawn('python3', [fileURLToPath(new URL('./fixtures/python-peer.py', import.meta.url))], {
    stdio: ['ignore', 'inherit', 'inherit', theirs],
  })
  closeSync(theirs)
  const exited = once(child, 'exit')

  // Node -> Python: a pipe's write end, which Python writes through.
  const [r, w] = pipe()
  const back = once(mine, 'message')
  await mine.send('here is a pipe', { fds: [w] })
  closeSync(w)

  // Python -> Node: the read end of a pipe Python filled.
  const [message] = (await back) as [Message]
  t.is(message.data.toString(), 'here is one back')
  const fromPython = message.fds[0]!.take()
  const buffer = Buffer.alloc(64)
  const n = readSync(fromPython, buffer)
  t.is(buffer.toString('utf8', 0, n), 'from a python pipe\n')
  closeSync(fromPython)

  await mine.send('x')
  t.deepEqual(await exited, [0, null])
  t.is(readToEnd(r).toString(), 'written by python\n')
  closeSync(r)
  mine.close()
})
