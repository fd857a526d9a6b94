// systemd without libsystemd: socket activation and notifications, checked against the protocol
// and against systemd's own systemd-socket-activate.
import test from 'ava'
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import {
  listenFds,
  notifyMainPid,
  notifyReloading,
  reloading,
  removeStoredFds,
  storeListeners,
  UdpSocket,
  UnixSocket,
  type Message,
  type ReceivedFd,
} from 'sendmsg'

import { inode, openFds, tempDir, turn } from './helpers.ts'
import { fixture } from './processes.ts'

const example = (name: string) => fileURLToPath(new URL(`../examples/${name}`, import.meta.url))
const linux = process.platform === 'linux' ? test : test.skip
const linuxSerial = process.platform === 'linux' ? test.serial : test.skip
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

linux('listenFdsByName gives each passed socket by its name as a ReceivedFd, closes unexpected ones with a warning, refuses a name passed twice untouched', async (t) => {
  const a = await listeningFd()
  const b = await listeningFd()
  const c = await listeningFd()
  const byName = (env: Record<string, string>, expect?: string[]) =>
    run(['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, fixture('listen-fds-report.mjs'), 'by-name', ...(expect ? [JSON.stringify(expect)] : [])], env, [a.fd, b.fd, c.fd])
  const all = byName({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'http:dns:old' })
  t.deepEqual(all.fds, [
    { fd: 3, name: 'http' },
    { fd: 4, name: 'dns' },
    { fd: 5, name: 'old' },
  ])
  t.deepEqual(all.cloexec, [true, true, true])
  t.deepEqual(all.envLeft, [])
  const expected = byName({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'http:dns:old' }, ['http', 'dns'])
  t.deepEqual(expected.fds, [
    { fd: 3, name: 'http' },
    { fd: 4, name: 'dns' },
  ])
  t.deepEqual(expected.open, [true, true, false], 'the unexpected one is closed at once')
  t.deepEqual(expected.warnings, ['SENDMSG_UNEXPECTED_LISTEN_FD'])
  const twice = byName({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'http:http:dns' })
  t.is(twice.error, 'ERR_SENDMSG_LISTEN_FDS')
  t.regex(twice.message as string, /more than one descriptor named 'http'.*listenFds\(\)/)
  t.deepEqual(twice.open, [true, true, true], 'nothing taken')
  t.deepEqual((twice.envLeft as string[]).sort(), ['LISTEN_FDNAMES', 'LISTEN_FDS', 'LISTEN_PID'], 'the environment left for listenFds()')
  a.server.close()
  b.server.close()
  c.server.close()
})

/** Runs `command` with `env` added and `sockets` from fd 3, and parses the JSON line it prints. */
function run(command: string[], env: Record<string, string>, sockets: number[] = []): Record<string, unknown> {
  const result = spawnSync(command[0]!, command.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', ...sockets],
    encoding: 'utf8',
  })
  if (result.status !== 0) throw new Error(`${command.join(' ')} exited with ${result.status}: ${result.stdout}`)
  return JSON.parse(result.stdout)
}

const hasLibsystemd = spawnSync('python3', ['-c', "import ctypes; ctypes.CDLL('libsystemd.so.0')"]).status === 0
const withLibsystemd = process.platform === 'linux' && hasLibsystemd ? test.serial : test.skip
if (!hasLibsystemd) console.log("libsystemd comparisons skipped: they need python3 and libsystemd.so.0 (Debian's libsystemd0, which .ci/run installs with systemd)")
/** libsystemd's answer (fixtures/libsystemd.py), run with LISTEN_PID set to its own pid, as systemd does. */
const libsystemd = (args: string[], env: Record<string, string> = {}, sockets: number[] = []) =>
  run(['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'sh', 'python3', fixture('libsystemd.py'), ...args], env, sockets)
const libsystemdMonotonic = () => Number(spawnSync('python3', [fixture('libsystemd.py'), 'monotonic'], { encoding: 'utf8' }).stdout)

interface Notification {
  data: Buffer
  fds: ReceivedFd[]
}

/** A fake service manager: a datagram socket at NOTIFY_SOCKET (set in this process while it is open) collecting what arrives. */
function fakeManager(address: string, bindTo = address) {
  const socket = UnixSocket.datagram(bindTo)
  const saved = process.env.NOTIFY_SOCKET
  process.env.NOTIFY_SOCKET = address
  const queued: Notification[] = []
  const waiting: Array<(message: Notification) => void> = []
  socket.on('message', (message: Message) => {
    // Kept past the delivery: the test looks at them later.
    const kept = { data: Buffer.from(message.data), fds: message.fds.map((fd) => fd.keep()) }
    const waiter = waiting.shift()
    if (waiter) waiter(kept)
    else queued.push(kept)
  })
  return {
    next: (): Promise<Notification> => {
      const message = queued.shift()
      return message ? Promise.resolve(message) : new Promise((resolve) => waiting.push(resolve))
    },
    close() {
      socket.close()
      if (saved === undefined) delete process.env.NOTIFY_SOCKET
      else process.env.NOTIFY_SOCKET = saved
    },
  }
}

withLibsystemd('notifyMainPid, notifyReloading and reloading send what libsystemd sends for the same state; MONOTONIC_USEC is CLOCK_MONOTONIC', async (t) => {
  using temp = tempDir('sendmsg-notify-')
  const path = join(temp.dir, 'notify.sock')
  const manager = fakeManager(path)
  try {
    t.true(await notifyMainPid(4242))
    const ours = (await manager.next()).data.toString()
    t.is(libsystemd(['notify', 'MAINPID=4242'], { NOTIFY_SOCKET: path }).result, 1)
    t.is((await manager.next()).data.toString(), ours)
    t.is(ours, 'MAINPID=4242')
    await notifyMainPid(4242, { READY: 1 })
    t.is((await manager.next()).data.toString(), 'READY=1\nMAINPID=4242')
    t.throws(() => notifyMainPid(1), { code: 'ERR_OUT_OF_RANGE' })

    const before = libsystemdMonotonic()
    await notifyReloading()
    const after = libsystemdMonotonic()
    const reload = (await manager.next()).data.toString()
    const [first, stamp] = reload.split('\n')
    t.is(first, 'RELOADING=1')
    const usec = Number(/^MONOTONIC_USEC=([0-9]+)$/.exec(stamp!)?.[1])
    t.true(before <= usec && usec <= after, `${before} <= ${usec} <= ${after}: the clock systemd reads`)
    t.is(libsystemd(['notify', reload], { NOTIFY_SOCKET: path }).result, 1)
    t.is((await manager.next()).data.toString(), reload, 'libsystemd sends the same bytes')

    t.is(await reloading(() => 'loaded'), 'loaded')
    t.regex((await manager.next()).data.toString(), /^RELOADING=1\nMONOTONIC_USEC=[0-9]+$/)
    t.is((await manager.next()).data.toString(), 'READY=1')
    const failure = new Error('bad configuration')
    await t.throwsAsync(
      reloading(async () => {
        throw failure
      }),
      { is: failure },
    )
    t.regex((await manager.next()).data.toString(), /^RELOADING=1\n/)
    t.is((await manager.next()).data.toString(), 'READY=1', 'READY=1 follows a failed reload too')
  } finally {
    manager.close()
  }
})

withLibsystemd('storeListeners sends one FDSTORE=1/FDNAME= per name with its socket, as sd_pid_notify_with_fds does (FDPOLL=0 for UDP)', async (t) => {
  const name = `sendmsg-fdstore-${process.pid}`
  const before = openFds()
  const manager = fakeManager(`@${name}`, `\0${name}`)
  const tcp = await listeningFd()
  const udp = UdpSocket.bound(0, '127.0.0.1')
  try {
    t.true(await storeListeners({ http: tcp.server, dns: udp }))
    const http = await manager.next()
    const dns = await manager.next()
    t.is(http.data.toString(), 'FDSTORE=1\nFDNAME=http')
    t.is(dns.data.toString(), 'FDSTORE=1\nFDNAME=dns\nFDPOLL=0')
    t.is(http.fds.length, 1)
    t.is(inode(http.fds[0]!.fd), inode(tcp.fd), 'the listening socket itself')
    t.is(inode(dns.fds[0]!.fd), inode(udp.fd))
    t.is(libsystemd(['notify', 'FDSTORE=1\nFDNAME=http', '3'], { NOTIFY_SOCKET: `@${name}` }, [tcp.fd]).result, 1)
    const theirs = await manager.next()
    t.is(theirs.data.toString(), http.data.toString())
    t.is(inode(theirs.fds[0]!.fd), inode(tcp.fd))
    for (const message of [http, dns, theirs]) for (const fd of message.fds) fd.close()

    // Refused before anything is sent: every listener is checked first.
    t.throws(() => storeListeners({ http: tcp.server, 'a:b': tcp.server }), { code: 'ERR_INVALID_ARG_VALUE', message: /listeners\.a:b/ })
    const unbound = UdpSocket.create('udp4')
    t.throws(() => storeListeners({ http: tcp.server, dns: unbound }), { code: 'ERR_INVALID_ARG_VALUE', message: /bound to no port/ })
    t.throws(() => reloading('not a function' as never), { code: 'ERR_INVALID_ARG_TYPE' })
    await unbound.close()
    t.true(await removeStoredFds('http'))
    t.is((await manager.next()).data.toString(), 'FDSTOREREMOVE=1\nFDNAME=http', 'the next message: the refused calls sent nothing')
    t.throws(() => removeStoredFds('a:b'), { code: 'ERR_INVALID_ARG_VALUE' })
  } finally {
    manager.close()
    tcp.server.close()
    await udp.close()
  }
  await once(tcp.server, 'close').catch(() => undefined)
  await turn()
  t.is(openFds(), before)
})

withLibsystemd('listeners stored through NOTIFY_SOCKET come back after a full restart by name (LISTEN_FDS/LISTEN_FDNAMES), as sd_listen_fds_with_names reads them, and serve what waited meanwhile', async (t) => {
  using temp = tempDir('sendmsg-fdstore-')
  const before = openFds()
  const manager = fakeManager(join(temp.dir, 'notify.sock'))
  const store = new Map<string, number>()
  const startService = (fds: number[], env: Record<string, string>) => {
    const child = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, fixture('systemd-service.mjs')], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'inherit', ...fds],
    })
    const line = new Promise<Record<string, unknown>>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (chunk) => {
        out += chunk
        if (out.includes('\n')) resolve(JSON.parse(out))
      })
      child.once('exit', (code) => reject(new Error(`the service exited with ${code}`)))
    })
    return { child, line }
  }
  /** Receives a service's FDSTORE messages and READY=1, as systemd would, keeping one descriptor per name. */
  const receiveStore = async () => {
    for (;;) {
      const message = await manager.next()
      const text = message.data.toString()
      if (text === 'READY=1') return
      const name = /FDNAME=([^\n]+)/.exec(text)![1]!
      const fd = message.fds[0]!.take()
      const held = store.get(name)
      if (held !== undefined && inode(held) === inode(fd)) closeSync(fd) // the same socket again: systemd keeps one
      else store.set(name, fd)
    }
  }
  try {
    // First start: nothing stored; the service makes its listeners and stores them.
    const first = startService([], {})
    const [firstLine] = await Promise.all([first.line, receiveStore()])
    t.deepEqual(firstLine.reused, [])
    t.deepEqual([...store.keys()].sort(), ['dns', 'http'])
    const { http, dns } = firstLine as { http: number; dns: number }
    first.child.stdin!.end()
    await once(first.child, 'exit')

    // Nobody serves now; a connection and a datagram wait in the stored sockets' queues.
    const waitingLine = new Promise<string>((resolve, reject) => {
      let text = ''
      net.connect({ host: '127.0.0.1', port: http }).on('data', (chunk) => (text += chunk)).on('end', () => resolve(text)).on('error', reject)
    })
    const client = (await import('node:dgram')).createSocket('udp4')
    const waitingAnswer = once(client, 'message') as Promise<[Buffer]>
    client.send('waited', dns, '127.0.0.1')

    // libsystemd reads the environment systemd sets for the restart as the package does.
    const fds = [store.get('http')!, store.get('dns')!]
    const env = { LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:dns' }
    const reference = libsystemd(['listen'], env, fds) as { count: number; fds: Array<{ fd: number; name: string; stream: boolean; datagram: boolean }> }
    t.is(reference.count, 2)
    t.deepEqual(reference.fds, [
      { fd: 3, name: 'http', stream: true, datagram: false },
      { fd: 4, name: 'dns', stream: false, datagram: true },
    ])
    const ours = run(['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, fixture('listen-fds-report.mjs'), 'by-name'], env, fds)
    t.deepEqual(ours.fds, reference.fds.map(({ fd, name }) => ({ fd, name })))

    // The restart: the service gets its listeners back by name, serves what waited, stores them again.
    const second = startService(fds, env)
    const [secondLine] = await Promise.all([second.line, receiveStore()])
    t.deepEqual(secondLine.reused, ['http', 'dns'])
    t.is(secondLine.http, http)
    t.is(secondLine.dns, dns)
    t.is(await waitingLine, `http served by ${second.child.pid}\n`)
    t.is((await waitingAnswer)[0].toString(), `dns served by ${second.child.pid}: waited`)
    t.deepEqual([...store.keys()].sort(), ['dns', 'http'], 'storing the same sockets again adds nothing')
    client.close()
    second.child.stdin!.end()
    await once(second.child, 'exit')
  } finally {
    manager.close()
    for (const fd of store.values()) closeSync(fd)
  }
  await turn()
  t.is(openFds(), before)
})

/** The child's next IPC message of this event. */
function nextEvent(child: ChildProcess, event: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Record<string, unknown>) => {
      if (message.event !== event) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message)
    }
    const onExit = (code: number | null) => reject(new Error(`process ${child.pid} exited (${code}) before '${event}'`))
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** `promise`, or a rejection as soon as `child` exits first (a notification it will never send). */
function whileAlive<T>(child: ChildProcess, promise: Promise<T>): Promise<T> {
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new Error(`process ${child.pid} exited (${code ?? signal})`)
  })
  exited.catch(() => undefined)
  return Promise.race([promise, exited])
}

linuxSerial('examples/supervisor.mjs under a fake systemd: stores its socket, READY=1, RELOADING=1 with MONOTONIC_USEC= then READY=1 on SIGHUP, and hands MAINPID= to its successor', async (t) => {
  using temp = tempDir('sendmsg-supervisor-')
  const before = openFds()
  const manager = fakeManager(join(temp.dir, 'notify.sock'))
  const children: ChildProcess[] = []
  const start = (args: string[]) => {
    const child = fork(example('supervisor.mjs'), ['--workers', '1', ...args], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    children.push(child)
    return child
  }
  try {
    const old = start([])
    const ready = nextEvent(old, 'ready')
    const stored = await whileAlive(old, manager.next())
    t.is(stored.data.toString(), 'FDSTORE=1\nFDNAME=http')
    t.is(stored.fds.length, 1)
    for (const fd of stored.fds) fd.close()
    t.is((await whileAlive(old, manager.next())).data.toString(), 'READY=1')
    await ready

    const restarted = nextEvent(old, 'restarted')
    old.kill('SIGHUP')
    t.regex((await whileAlive(old, manager.next())).data.toString(), /^RELOADING=1\nMONOTONIC_USEC=[0-9]+$/)
    await restarted
    t.is((await whileAlive(old, manager.next())).data.toString(), 'READY=1', 'the reload is over once the workers are replaced')

    const path = join(temp.dir, 'handoff', 'supervisor.sock')
    const offering = nextEvent(old, 'offering')
    old.send({ cmd: 'offer', path })
    await offering
    const handedOver = nextEvent(old, 'handed-over')
    const successor = start(['--take', path])
    const oldExited = once(old, 'exit')
    await nextEvent(successor, 'ready')
    t.is((await handedOver).to, successor.pid)
    t.is((await manager.next()).data.toString(), `READY=1\nMAINPID=${successor.pid}`, 'sent by the old main process, before it exits')
    await oldExited
    const successorExited = once(successor, 'exit')
    successor.send({ cmd: 'shutdown' })
    await successorExited
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    manager.close()
  }
  await turn()
  t.is(openFds(), before)
})
