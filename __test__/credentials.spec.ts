// Peer credentials: the kernel's word on who is at the other end, and SCM_CREDENTIALS (Linux).
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, fstatSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

import {
  credentialsFromAncillary,
  passCredentials,
  peerCredentials,
  pipe,
  recvmsg,
  scmCredentials,
  sendmsg,
  socketpair,
  UnixServer,
  UnixSocket,
  type Message,
} from 'sendmsg'

import { tempDir, turn } from './helpers.ts'
import { publicFixture } from './processes.ts'

const gc = (setFlagsFromString('--expose-gc'), runInNewContext('gc')) as () => void
const linux = process.platform === 'linux' ? test : test.skip
if (process.platform !== 'linux') console.log('SCM_CREDENTIALS tests skipped: Linux only')

test('the peer of a pair is this process', (t) => {
  const [a, b] = UnixSocket.pair('stream')
  t.deepEqual(peerCredentials(a), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() })
  a.close()
  b.close()
})

test('the peer of a connection is the process that connected', async (t) => {
  using temp = tempDir('sendmsg-cred-')
  const path = join(temp.dir, 's.sock')
  const server = UnixServer.listen(path)
  const accepted = once(server, 'connection')
  const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(path)}).on('close', () => process.exit(0))`])
  const [socket] = (await accepted) as [UnixSocket]
  t.is(peerCredentials(socket).pid, child.pid!)
  socket.close()
  await once(child, 'exit')
  server.close()
})

linux('credentials sent with SCM_CREDENTIALS arrive, through the sync API and as message.credentials', async (t) => {
  const [x, y] = socketpair('dgram')
  passCredentials(y)
  sendmsg(x, 'me', [scmCredentials()])
  const received = recvmsg(y)
  t.deepEqual(credentialsFromAncillary(received.ancillary), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() })

  const [a, b] = UnixSocket.pair('seqpacket', { passCredentials: true })
  const arrived = once(b, 'message')
  // Nothing sent explicitly: SO_PASSCRED makes the kernel attach them anyway.
  await a.send('plain')
  const [message] = (await arrived) as [Message]
  t.deepEqual(message.credentials, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() })
  a.close()
  b.close()
})

const canDropPrivileges = process.platform === 'linux' && process.getuid!() === 0 && spawnSync('setpriv', ['--version']).status === 0
const asNobody = canDropPrivileges ? test : test.skip
if (!canDropPrivileges) console.log('forged-credentials test skipped: needs root and setpriv to run a child as an unprivileged user')

asNobody('the kernel refuses credentials an unprivileged sender may not claim (EPERM)', async (t) => {
  // The child runs as nobody: it gets a copy it can read wherever this clone is (a 0700 home too).
  using childFixture = publicFixture('credentials-child.mjs')
  const [mine, theirs] = socketpair('dgram')
  passCredentials(mine)
  const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, childFixture.path], {
    stdio: ['ignore', 'pipe', 'inherit', theirs],
  })
  let out = ''
  child.stdout!.on('data', (chunk) => (out += chunk))
  await once(child, 'exit')
  const report = JSON.parse(out) as { forged: string; uid: number }
  t.is(report.forged, 'EPERM')
  const honest = recvmsg(mine)
  t.is(honest.data.toString(), 'honest')
  t.is(credentialsFromAncillary(honest.ancillary)?.uid, 65534)
  const { closeSync } = await import('node:fs')
  closeSync(mine)
  closeSync(theirs)
})

test('passCredentials on a new pair: set on Linux; elsewhere refused, with each socket closed once', async (t) => {
  const fdDir = process.platform === 'linux' ? '/proc/self/fd' : '/dev/fd'
  const before = readdirSync(fdDir).length
  if (process.platform === 'linux') {
    const [a, b] = UnixSocket.pair('stream', { passCredentials: true })
    a.close()
    b.close()
  } else {
    t.throws(() => UnixSocket.pair('stream', { passCredentials: true }))
  }
  t.is(readdirSync(fdDir).length, before)
  // A descriptor opened now may reuse a number the pair had: nothing may close it later.
  const [r, w] = pipe()
  gc() // the refused socket's native half, if it had kept the descriptor, would close it now
  await turn()
  await turn()
  t.notThrows(() => {
    fstatSync(r)
    fstatSync(w)
  })
  closeSync(r)
  closeSync(w)
})
