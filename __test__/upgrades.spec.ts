// Upgrades that go wrong and must recover (issue 14): a socket file left by a crashed offerer, a
// new supervisor that crashes or never acknowledges (rollback, then the next upgrade works), back
// to back upgrades at one path, and workers whose supervisor is SIGKILLed. Serial: the tests count
// open descriptors and run child processes.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'

import { offerListeners, socketpair, takeListeners, toNetServer, workerListeners, type Credentials, type NodeError } from 'sendmsg'

import { openFds, tcpListener, tempDir, turn } from './helpers.ts'
import { spawnChild, spawnFixture, type Child } from './processes.ts'

/** Connects to 127.0.0.1:port and hangs up: whether some process holds the listening socket. */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.on('connect', () => resolve(socket.destroy() && true))
    socket.on('error', () => resolve(false))
  })
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (response) => {
        let text = ''
        response.on('data', (chunk) => (text += chunk))
        response.on('end', () => resolve(text))
      })
      .on('error', reject)
  })
}

/** A child's JSON lines until one has `key`. */
async function lineWith<T = Record<string, unknown>>(child: Child, key: string): Promise<T> {
  for (;;) {
    const line = await child.line()
    if (line === '') throw new Error(`the child's output ended before a line with '${key}'`)
    const value = JSON.parse(line) as Record<string, unknown>
    if (key in value) return value as T
  }
}

async function sigkill(child: Child): Promise<void> {
  child.process.kill('SIGKILL')
  await child.exited
}

// 1. A stale socket file ----------------------------------------------------------------------

test.serial('an offer replaces the socket file a SIGKILLed offerer left behind', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const path = join(temp.dir, 'run', 'handoff.sock')
  const crashed = spawnFixture('upgrade-offerer.mjs', [path])
  t.truthy((await lineWith(crashed, 'offering')).offering)
  await sigkill(crashed)
  t.true(lstatSync(path).isSocket(), 'the killed offerer left its socket file')
  const before = openFds()
  const tcp = await tcpListener()
  const offer = offerListeners(path, { http: tcp.fd })
  t.is(statSync(path).mode & 0o777, 0o600, 'the replacement is born 0600 too')
  const handedOver = once(offer, 'handoff')
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  await handedOver
  listeners.http.close()
  closeSync(tcp.fd)
  await turn()
  t.throws(() => lstatSync(path), { code: 'ENOENT' }, 'a completed handoff closes the offer and removes its file')
  t.is(openFds(), before)
})

test.serial('a second offer at the path of a live one fails with EADDRINUSE, and the first keeps working', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const first = offerListeners(path, { http: tcp.fd })
  first.on('rejected', (error) => t.fail(`the probe of the second offer is no rejected peer: ${error.message}`))
  const error = t.throws(() => offerListeners(path, { http: tcp.fd })) as NodeError & { syscall: string; address: string; errno: number }
  t.is(error.code, 'EADDRINUSE')
  t.is(error.syscall, 'listen')
  t.is(error.address, path)
  t.true(error.errno < 0)
  t.regex(error.message, /^listen EADDRINUSE: address already in use .*handoff\.sock \(a live offer answers there\)$/)
  const handedOver = once(first, 'handoff')
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  await handedOver
  listeners.http.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('an offer never removes a file at its path that is not a socket', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const path = join(temp.dir, 'run', 'handoff.sock')
  // The private directory first, with a regular file where the socket would go.
  offerListeners(path, { http: tcp.fd }).close()
  writeFileSync(path, 'precious\n')
  const before = openFds()
  t.throws(() => offerListeners(path, { http: tcp.fd }), { code: 'EADDRINUSE', message: /a regular file is there, which an offer never removes/ })
  t.is(readFileSync(path, 'utf8'), 'precious\n')
  t.is(openFds(), before, 'the temporary socket and the lock were closed')
  t.deepEqual(
    (await import('node:fs')).readdirSync(join(temp.dir, 'run')),
    ['handoff.sock'],
    'no temporary socket file is left behind',
  )
  closeSync(tcp.fd)
})

test.serial('a path near the socket-address limit can be offered: the temporary name is no longer than the offer\'s', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  // 100 characters, which a socket address holds (108 bytes on Linux, 104 on macOS), with a short
  // name: `.offer-` and 8 hex digits in its place would not fit.
  const dir = join(temp.dir, 'r'.repeat(100 - temp.dir.length - 1 - '/h.sock'.length))
  const path = join(dir, 'h.sock')
  t.is(path.length, 100)
  const before = openFds()
  const offer = offerListeners(path, { http: tcp.fd })
  const handedOver = once(offer, 'handoff')
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  await handedOver
  listeners.http.close()
  await turn()
  t.is(openFds(), before)
  t.deepEqual((await import('node:fs')).readdirSync(dir), [], 'the offer closed itself and removed its file; no temporary file is left')
  closeSync(tcp.fd)
})

test.serial('offerers racing on one stale path: exactly one wins, the others get EADDRINUSE', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const path = join(temp.dir, 'run', 'handoff.sock')
  for (let round = 0; round < 3; round++) {
    const crashed = spawnFixture('upgrade-offerer.mjs', [path])
    await lineWith(crashed, 'offering')
    await sigkill(crashed)
    const racers = Array.from({ length: 4 }, () => spawnFixture('upgrade-offerer.mjs', [path]))
    const outcomes = await Promise.all(racers.map((racer) => racer.json<{ offering?: boolean; pid?: number; error?: string; message?: string }>()))
    const winners = outcomes.filter((outcome) => outcome.offering)
    t.is(winners.length, 1, JSON.stringify(outcomes))
    for (const outcome of outcomes.filter((o) => !o.offering)) t.is(outcome.error, 'EADDRINUSE', outcome.message)
    // The path leads to the winner, and only to it.
    let offerer: Credentials | undefined
    const { listeners } = await takeListeners(path, { expect: ['http'], allow: (peer) => Boolean((offerer = peer)) })
    listeners.http.close()
    t.is(offerer?.pid, winners[0]!.pid)
    for (const racer of racers) if (racer.process.exitCode === null) await sigkill(racer)
  }
})

test.serial('an offer made while another process holds the directory lock fails with EADDRINUSE at once', async (t) => {
  // flock(1) of util-linux holds the same lock an offerer takes: flock(2) on the directory.
  if (process.platform !== 'linux' || spawnSync('flock', ['--version']).error !== undefined) {
    t.log('flock(1) is not installed here: nothing to hold the lock with')
    t.pass()
    return
  }
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const dir = join(temp.dir, 'run')
  const path = join(dir, 'handoff.sock')
  offerListeners(path, { http: tcp.fd }).close() // makes the private directory
  const holder = spawnChild('flock', ['--close', dir, '-c', 'echo locked; exec sleep 60'])
  t.is(await holder.line(), 'locked')
  const before = openFds()
  t.throws(() => offerListeners(path, { http: tcp.fd }), { code: 'EADDRINUSE', message: /another process is placing an offer at this path right now/ })
  t.is(openFds(), before)
  await sigkill(holder)
  const offer = offerListeners(path, { http: tcp.fd })
  offer.close()
  closeSync(tcp.fd)
})

test.serial('the new options are checked before anything is made', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const path = join(temp.dir, 'run', 'handoff.sock')
  t.throws(() => offerListeners(path, { http: tcp.fd }, { ackTimeout: 0 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => offerListeners(path, { http: tcp.fd }, { ackTimeout: '5' as never }), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => lstatSync(join(temp.dir, 'run')), { code: 'ENOENT' }, 'nothing was made')
  // workerListeners checks its options after adopting the channel, and closes it when they are wrong.
  for (const [options, code] of [
    [{ onSupervisorExit: 'exit' }, 'ERR_INVALID_ARG_VALUE'],
    [{ drainTimeout: -1 }, 'ERR_OUT_OF_RANGE'],
  ] as const) {
    const [mine, theirs] = socketpair('stream')
    const before = openFds()
    await t.throwsAsync(workerListeners({ fd: theirs, ...options } as never), { code })
    t.is(openFds(), before - 1, 'the channel descriptor was closed')
    closeSync(mine)
  }
  closeSync(tcp.fd)
})

// 2. Rollback and back-to-back upgrades -------------------------------------------------------

test.serial('a taker that exits before acknowledging rolls the handoff back: the offer keeps serving, and the next taker gets the listeners', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const offer = offerListeners(path, { http: tcp.fd })
  offer.on('handoff', () => t.pass())
  const rolledBack = once(offer, 'rollback') as Promise<[NodeError, Credentials]>
  const crashing = spawnFixture('upgrade-taker.mjs', [path, 'exit-before-ack'])
  t.truthy((await lineWith(crashing, 'taken')).taken)
  const [error, peer] = await rolledBack
  t.is(error.code, 'ERR_SENDMSG_HANDOFF')
  t.regex(error.message, /rolled back: the peer hung up/)
  t.is(peer.pid, crashing.process.pid!)
  t.deepEqual(await crashing.exited, { code: 1, signal: null })
  t.true(lstatSync(path).isSocket(), 'the offer is still open')
  t.true(await connects(tcp.port), 'the listening socket is still held: connections wait in its backlog')
  const handedOver = once(offer, 'handoff') as Promise<[Credentials]>
  const { listeners } = await takeListeners(path, { expect: ['http'] })
  t.is((await handedOver)[0].pid, process.pid)
  const server = toNetServer(listeners.http, net.createServer((socket) => socket.on('error', () => {}).end('second taker\n')))
  await once(server, 'listening')
  t.true(await connects(tcp.port))
  server.close()
  await once(server, 'close')
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('a taker that does not acknowledge within ackTimeout is rolled back, and its late acknowledge() rejects', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const offer = offerListeners(path, { http: tcp.fd }, { ackTimeout: 50 })
  offer.on('handoff', () => t.fail('a rolled back handoff is no handoff'))
  const rolledBack = once(offer, 'rollback') as Promise<[NodeError & { cause: NodeError }, Credentials]>
  const slow = await takeListeners(path, { expect: ['http'], acknowledge: false })
  const [error] = await rolledBack
  t.is(error.cause.code, 'ERR_SENDMSG_TIMEOUT')
  await t.throwsAsync(slow.acknowledge(), { code: 'ERR_SENDMSG_HANDOFF', message: /rolled the handoff back: The peer did not acknowledge the listeners within 50 ms/ })
  slow.listeners.http.close()
  t.true(lstatSync(path).isSocket(), 'the offer is still open')
  offer.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('one taker at a time: a second is refused while the first has not acknowledged', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const offer = offerListeners(path, { http: tcp.fd })
  const first = await takeListeners(path, { expect: ['http'], acknowledge: false })
  const rejected = once(offer, 'rejected') as Promise<[NodeError]>
  await t.throwsAsync(takeListeners(path), { code: 'ERR_SENDMSG_HANDOFF', message: /another process is taking the listeners/ })
  t.regex((await rejected)[0].message, /another process is taking/)
  const handedOver = once(offer, 'handoff')
  await first.acknowledge()
  await handedOver
  first.listeners.http.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('closing an offer while a taker holds unacknowledged listeners tells it: its acknowledge() rejects', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const tcp = await tcpListener()
  const before = openFds()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const offer = offerListeners(path, { http: tcp.fd })
  const taker = await takeListeners(path, { expect: ['http'], acknowledge: false })
  offer.close()
  await t.throwsAsync(taker.acknowledge(), { code: 'ERR_SENDMSG_HANDOFF', message: /the offer was closed before the handoff was done/ })
  taker.listeners.http.close()
  await turn()
  t.is(openFds(), before)
  closeSync(tcp.fd)
})

test.serial('a taker keeps the listeners when the offering process dies before reading its acknowledgement', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const path = join(temp.dir, 'run', 'handoff.sock')
  const before = openFds()
  const old = spawnFixture('upgrade-offerer.mjs', [path])
  const { port } = await lineWith<{ port: number }>(old, 'offering')
  const { listeners, acknowledge } = await takeListeners(path, { expect: ['http'], acknowledge: false })
  await sigkill(old)
  await acknowledge()
  const server = toNetServer(listeners.http, net.createServer((socket) => socket.end('still here\n')))
  await once(server, 'listening')
  const answer = await new Promise<string>((resolve, reject) => {
    let text = ''
    net
      .connect({ host: '127.0.0.1', port })
      .on('data', (chunk) => (text += chunk))
      .on('end', () => resolve(text))
      .on('error', reject)
  })
  t.is(answer, 'still here\n')
  server.close()
  await once(server, 'close')
  await turn()
  t.is(openFds(), before)
})

test.serial('back-to-back upgrades at one path: A hands to B, B offers at once and hands to C', async (t) => {
  using temp = tempDir('sendmsg-upgrades-')
  const before = openFds()
  const tcp = await tcpListener()
  const path = join(temp.dir, 'run', 'handoff.sock')
  const a = offerListeners(path, { http: tcp.fd })
  const aHandedOver = once(a, 'handoff') as Promise<[Credentials]>
  const b = spawnFixture('upgrade-taker.mjs', [path, 'ack-and-offer'])
  await lineWith(b, 'acknowledged')
  t.is((await aHandedOver)[0].pid, b.process.pid!)
  closeSync(tcp.fd) // A lets go of its copy, as an old supervisor does
  t.truthy((await lineWith(b, 'offering')).offering, 'B offered at the path A used, right after the handoff')
  let offerer: Credentials | undefined
  const c = await takeListeners(path, { expect: ['http'], allow: (peer) => Boolean((offerer = peer)) })
  t.is(offerer?.pid, b.process.pid)
  t.is((await lineWith<{ to: number }>(b, 'handoff')).to, process.pid)
  const server = toNetServer(c.listeners.http, net.createServer((socket) => socket.on('error', () => {}).end('C\n')))
  await once(server, 'listening')
  t.true(await connects(tcp.port))
  b.process.kill()
  await b.exited
  server.close()
  await once(server, 'close')
  await turn()
  t.is(openFds(), before)
})

// 3. Workers of a dead supervisor -------------------------------------------------------------

test.serial("a worker whose supervisor is SIGKILLed finishes its in-flight request and exits with code 0 (the default 'drain')", async (t) => {
  const supervisor = spawnFixture('upgrade-supervisor.mjs', ['drain'])
  const { port } = await lineWith<{ port: number; worker: number }>(supervisor, 'port')
  const slow = get(port, '/slow')
  await lineWith(supervisor, 'inFlight')
  await sigkill(supervisor)
  t.is(await slow, 'slow done\n', 'the request under way when the supervisor died was answered')
  t.deepEqual(await lineWith(supervisor, 'exit'), { exit: 0 })
  while ((await supervisor.line()) !== ''); // its output ends when it is gone
  t.false(await connects(port), 'nobody holds the listening socket any more')
})

test.serial("with the 'ignore' policy a worker whose supervisor is SIGKILLed serves on", async (t) => {
  const supervisor = spawnFixture('upgrade-supervisor.mjs', ['ignore'])
  const { port, worker } = await lineWith<{ port: number; worker: number }>(supervisor, 'port')
  await sigkill(supervisor)
  await lineWith(supervisor, 'supervisorGone')
  t.is(await get(port, '/'), `served by ${worker}\n`)
  t.true(await connects(port))
  // Still serving, unsupervised: stopped here, by hand. Its output ends when it is gone.
  process.kill(worker, 'SIGTERM')
  while ((await supervisor.line()) !== '');
  t.false(await connects(port))
})

test.serial('a worker still draining past drainTimeout exits with code 1', async (t) => {
  const supervisor = spawnFixture('upgrade-supervisor.mjs', ['drain', '50'])
  const { port } = await lineWith<{ port: number }>(supervisor, 'port')
  const hanging = get(port, '/hang').then(
    () => 'answered',
    (error: NodeError) => error.code,
  )
  await lineWith(supervisor, 'inFlight')
  await sigkill(supervisor)
  t.deepEqual(await lineWith(supervisor, 'exit'), { exit: 1 })
  t.is(await hanging, 'ECONNRESET', 'the request that never finished was cut when the worker gave up')
})

test.serial('a supervisor-exit policy given as a function is called with ERR_SENDMSG_SUPERVISOR_GONE and decides alone', async (t) => {
  const supervisor = spawnFixture('upgrade-supervisor.mjs', ['report'])
  await lineWith(supervisor, 'port')
  await sigkill(supervisor)
  t.deepEqual(await lineWith(supervisor, 'policy'), { policy: 'ERR_SENDMSG_SUPERVISOR_GONE' })
  t.deepEqual(await lineWith(supervisor, 'exit'), { exit: 7 })
})
