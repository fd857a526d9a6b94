// systemd without libsystemd: socket activation and notifications, checked against the protocol
// and against systemd's own systemd-socket-activate.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { listenFds, UnixSocket, type Message } from 'sendmsg'

import { tempDir } from './helpers.ts'
import { fixture } from './processes.ts'

const example = (name: string) => fileURLToPath(new URL(`../examples/${name}`, import.meta.url))
const linux = process.platform === 'linux' ? test : test.skip
if (process.platform !== 'linux') console.log('systemd tests skipped: systemd is Linux only')

async function listeningFd(): Promise<{ server: net.Server; fd: number }> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, fd: (server as unknown as { _handle: { fd: number } })._handle.fd }
}

/** Runs the listen-fds fixture as systemd would: sockets from fd 3, LISTEN_PID its own pid. */
function activate(env: Record<string, string>, sockets: number[], pid: 'own' | 'other' = 'own'): Record<string, unknown> {
  const setPid = pid === 'own' ? 'LISTEN_PID=$$' : 'LISTEN_PID=1'
  // `exec` keeps the shell's pid, so $$ is the pid node runs as.
  const result = spawnSync('sh', ['-c', `${setPid} exec "$0" "$1"`, process.execPath, fixture('listen-fds-report.mjs')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', ...sockets],
    encoding: 'utf8',
  })
  return JSON.parse(result.stdout)
}

linux('listenFds finds the passed sockets with their names, makes them close-on-exec, and clears the environment', async (t) => {
  const a = await listeningFd()
  const b = await listeningFd()
  const report = activate({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:admin' }, [a.fd, b.fd])
  t.true(report.pidMatched)
  t.deepEqual(report.fds, [
    { fd: 3, name: 'http' },
    { fd: 4, name: 'admin' },
  ])
  t.deepEqual(report.cloexec, [true, true])
  t.deepEqual(report.envLeft, [])
  a.server.close()
  b.server.close()
})

linux('listenFds ignores sockets meant for another process, names missing ones "unknown", refuses nonsense', async (t) => {
  const a = await listeningFd()
  t.deepEqual(activate({ LISTEN_FDS: '1' }, [a.fd], 'other').fds, [])
  t.deepEqual(activate({ LISTEN_FDS: '1' }, [a.fd]).fds, [{ fd: 3, name: 'unknown' }])
  t.is(activate({ LISTEN_FDS: 'many' }, [a.fd]).error, 'ERR_SENDMSG_LISTEN_FDS')
  t.is(activate({ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a:b' }, [a.fd]).error, 'ERR_SENDMSG_LISTEN_FDS')
  a.server.close()
})

test('listenFds is empty when this process was not socket-activated', (t) => {
  t.deepEqual(listenFds({ unsetEnvironment: false }), [])
})

async function notifications(address: string, path: string | undefined, state: unknown, withFd: boolean): Promise<{ message: Message; sent: unknown }> {
  const receiver = UnixSocket.datagram(path ?? address)
  const received = once(receiver, 'message')
  const child = spawn(process.execPath, [fixture('notify-child.mjs'), JSON.stringify(state), withFd ? 'fd' : ''], {
    env: { ...process.env, NOTIFY_SOCKET: address },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout.on('data', (chunk) => (out += chunk))
  const [message] = (await received) as [Message]
  const taken = message.fds.map((fd) => fd.take())
  await once(child, 'exit')
  receiver.close()
  for (const fd of taken) closeSync(fd)
  return { message, sent: JSON.parse(out).sent }
}

linux('notify sends READY/STATUS to NOTIFY_SOCKET, and stores descriptors with FDSTORE', async (t) => {
  using temp = tempDir('sendmsg-notify-')
  const path = join(temp.dir, 'notify.sock')
  const ready = await notifications(path, undefined, { READY: 1, STATUS: 'serving' }, false)
  t.is(ready.sent, true)
  t.is(ready.message.data.toString(), 'READY=1\nSTATUS=serving')
  const store = await notifications(join(temp.dir, 'notify2.sock'), undefined, { FDSTORE: 1, FDNAME: 'stdout' }, true)
  t.is(store.message.data.toString(), 'FDSTORE=1\nFDNAME=stdout')
  t.is(store.message.fds.length, 1)
})

linux('notify reaches an abstract NOTIFY_SOCKET written @name', async (t) => {
  const name = `sendmsg-notify-${process.pid}`
  const { message } = await notifications(`@${name}`, `\0${name}`, 'READY=1', false)
  t.is(message.data.toString(), 'READY=1')
})

test('notify without NOTIFY_SOCKET resolves false', async (t) => {
  const { notify } = await import('sendmsg')
  const saved = process.env.NOTIFY_SOCKET
  delete process.env.NOTIFY_SOCKET
  t.false(await notify('READY=1'))
  if (saved !== undefined) process.env.NOTIFY_SOCKET = saved
})

const hasSocketActivate = spawnSync('systemd-socket-activate', ['--version']).status === 0
const withSocketActivate = process.platform === 'linux' && hasSocketActivate ? test : test.skip
if (!hasSocketActivate) console.log("systemd-socket-activate test skipped: not installed (Debian's systemd package; .ci/run installs it)")

withSocketActivate('systemd-socket-activate starts examples/socket-activated.mjs, which serves on the socket it was given', async (t) => {
  const probe = net.createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as net.AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  const activator = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, '--fdname=http', process.execPath, example('socket-activated.mjs')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  activator.stderr.on('data', (chunk) => (log += chunk))
  try {
    // It prints "Listening on ..." once the socket is bound; the server starts on the first connection.
    while (!log.includes('Listening on')) await new Promise((resolve) => setTimeout(resolve, 20))
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/' }, (response) => {
          let text = ''
          response.on('data', (chunk) => (text += chunk))
          response.on('end', () => resolve(text))
        })
        .on('error', reject)
    })
    t.regex(body, /serving on the socket systemd passed as fd 3 \(http\)/)
  } finally {
    activator.kill()
  }
})
