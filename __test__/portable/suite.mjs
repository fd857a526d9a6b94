// The portable runtime suite: the package's public API, checked the same way under Node, Bun and
// Deno. Plain JavaScript with no test framework (Bun and Deno cannot run ava's TypeScript loader
// reliably), loading the built CommonJS package (dist/). Every check counts the process's open
// descriptors before and after (/proc/self/fd), so a leak fails the check that made it.
//
// Run by scripts/test-portable.mjs; alone: node __test__/portable/suite.mjs, bun <same>,
// deno run -A <same>. The last line is "N passed, N failed"; the exit code is 1 on any failure.
// Descriptor numbers are never given to node:fs (Deno's node:fs takes resource ids, not numbers):
// descriptors are used through the package's own calls and closed with its native close.
import { spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const require = createRequire(import.meta.url)
const sendmsg = require(join(root, 'dist', 'index.js'))
const { native } = require(join(root, 'dist', 'lib', 'binding.js'))
const { FrameChannel, UnixServer, UnixSocket, dup, fdOf, fdsFromAncillary, recvmsg, scmRights, sendmsg: send, socketpair, spawnWorker, toDgramSocket, toNetServer, toNetSocket } = sendmsg

const RUNTIME = process.versions.bun !== undefined ? 'bun' : process.versions.deno !== undefined || typeof globalThis.Deno === 'object' ? 'deno' : 'node'
/** How to start this same runtime on a script: Deno needs `run -A`. */
const RUNTIME_ARGS = RUNTIME === 'deno' ? ['run', '-A'] : []
const CHECK_TIMEOUT_MS = 15_000

const temp = mkdtempSync(join(tmpdir(), 'sendmsg-portable-'))
let passed = 0
let failed = 0

function openFds() {
  return readdirSync('/proc/self/fd').length
}

/** For a socket: its family and type, e.g. " (family 1, type 5)", to tell ours from the runtime's. */
function describe(fd, what) {
  if (!what.startsWith('socket:')) return ''
  try {
    const { family, type } = native.describeSocket(Number(fd))
    return ` (family ${family}, type ${type})`
  } catch {
    return ''
  }
}

/** What each open descriptor is, by number (for naming a leak). */
function fdTable() {
  const table = new Map()
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      table.set(name, readlinkSync(`/proc/self/fd/${name}`))
    } catch {
      // The directory's own descriptor, closed by now.
    }
  }
  return table
}

/** A loop turn or two: lets closes queued for "after the delivery" happen. */
function turn(ms = 20) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function assert(condition, message) {
  if (!condition) throw new Error(message)
}

function equal(actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) throw new Error(`${what}: got ${a}, expected ${e}`)
}

function closeFd(fd) {
  native.closeFd(fd)
}

/** Whether `fd` is the write end of a working socket: a byte written through it arrives at `peer`. */
function roundTrip(fd, peer, text) {
  send(fd, text)
  return recvmsg(peer, 64).data.toString()
}

function expectThrow(fn, code, what) {
  try {
    fn()
  } catch (error) {
    equal(error.code, code, `${what}: error code`)
    return error
  }
  throw new Error(`${what}: expected ${code}, nothing was thrown`)
}

/**
 * Runs one check: `fn(own)` with a timeout (`own(...sockets)` closes them after it, however it
 * ends), then the descriptor count compared with the one before, waiting a little for closes
 * that finish on a later turn.
 */
async function check(name, fn, { fds = true } = {}) {
  const before = openFds()
  const tableBefore = fdTable()
  // Sockets a check made, closed after it however it ended: one left open by a failed check would
  // otherwise be collected (and its descriptor closed) in the middle of a later check's count.
  const made = []
  const own = (...sockets) => {
    made.push(...sockets)
    return sockets.length === 1 ? sockets[0] : sockets
  }
  let timer
  try {
    await Promise.race([
      fn(own).finally(() => {
        for (const socket of made) socket.close()
      }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS)
      }),
    ])
    if (fds) {
      let after = openFds()
      for (let i = 0; i < 10 && after !== before; i++) {
        await turn(30)
        after = openFds()
      }
      if (after !== before) {
        const tableAfter = fdTable()
        const opened = [...tableAfter].filter(([fd, what]) => tableBefore.get(fd) !== what).map(([fd, what]) => `${fd} -> ${what}${describe(fd, what)}`)
        const closed = [...tableBefore].filter(([fd, what]) => tableAfter.get(fd) !== what).map(([fd, what]) => `${fd} -> ${what}`)
        throw new Error(`descriptors: ${before} open before, ${after} after; opened [${opened.join(', ')}], closed [${closed.join(', ')}]`)
      }
    }
    passed++
    console.log(`ok - ${name}`)
  } catch (error) {
    failed++
    console.log(`not ok - ${name}: ${error?.stack ?? error}`.split('\n').slice(0, 4).join('\n    '))
  } finally {
    clearTimeout(timer)
  }
}

const TYPES = ['stream', 'seqpacket', 'dgram']

// ---- the sync API ----

for (const type of TYPES) {
  await check(`sync ${type}: sendmsg/recvmsg pass data and a descriptor`, async () => {
    const [a, b] = socketpair(type)
    const [x, y] = socketpair('dgram')
    send(a, 'hello', [scmRights([x])])
    const message = recvmsg(b, 64)
    const fds = fdsFromAncillary(message.ancillary)
    equal(message.data.toString(), 'hello', 'data')
    equal(fds.length, 1, 'descriptor count')
    equal(roundTrip(fds[0], y, 'through it'), 'through it', 'the received descriptor works')
    for (const fd of [a, b, x, y, ...fds]) closeFd(fd)
  })
}

// ---- event-loop sockets ----

for (const type of TYPES) {
  await check(`UnixSocket ${type}: data and descriptors both ways, the taken ones work`, async (own) => {
    const [a, b] = own(...UnixSocket.pair(type))
    const [x, y] = socketpair('dgram')
    const toB = once(b, 'message')
    await a.send('a to b', { fds: [x] })
    const [fromA] = await toB
    equal(fromA.data.toString(), 'a to b', 'data a to b')
    const taken = fromA.fds[0].take()
    equal(roundTrip(taken, y, 'first'), 'first', 'the descriptor a sent works')
    const toA = once(a, 'message')
    await b.send('b to a', { fds: [taken] })
    const [fromB] = await toA
    equal(fromB.data.toString(), 'b to a', 'data b to a')
    const back = fromB.fds[0].take()
    equal(roundTrip(back, y, 'second'), 'second', 'the descriptor b sent works')
    for (const fd of [x, y, taken, back]) closeFd(fd)
    a.close()
    b.close()
  })
}

await check('UnixSocket: a descriptor nobody takes is closed once its delivery is over', async (own) => {
  const [a, b] = own(...UnixSocket.pair('seqpacket'))
  const [x, y] = socketpair('dgram')
  const arrived = once(b, 'message')
  await a.send('unclaimed', { fds: [x, y] })
  const [message] = await arrived
  await turn()
  assert(message.fds.every((fd) => fd.released), 'both descriptors released')
  expectThrow(() => message.fds[0].take(), 'ERR_SENDMSG_FD_RELEASED', 'take() after the delivery')
  closeFd(x)
  closeFd(y)
  a.close()
  b.close()
})

await check('UnixSocket: a descriptor can be taken after awaiting its message', async (own) => {
  const [a, b] = own(...UnixSocket.pair('seqpacket'))
  const [x, y] = socketpair('dgram')
  void a.send('one', { fds: [x] })
  const [message] = await once(b, 'message')
  const fd = message.fds[0].take()
  equal(roundTrip(fd, y, 'awaited'), 'awaited', 'the descriptor taken after await works')
  for (const n of [fd, x, y]) closeFd(n)
  a.close()
  b.close()
})

await check('UnixSocket: nextTick callbacks and promise reactions of a handler run before the next message', async (own) => {
  const [a, b] = own(...UnixSocket.pair('seqpacket'))
  const order = []
  b.on('message', (message) => {
    const n = message.data.toString()
    order.push(`message ${n}`)
    process.nextTick(() => order.push(`nextTick ${n}`))
    void Promise.resolve().then(() => order.push(`promise ${n}`))
  })
  await Promise.all([a.send('1'), a.send('2')])
  for (let i = 0; i < 50 && order.length < 6; i++) await turn(10)
  equal(order, ['message 1', 'nextTick 1', 'promise 1', 'message 2', 'nextTick 2', 'promise 2'], 'order')
  a.close()
  b.close()
})

await check("UnixSocket: one socket's handler and its promise reactions run before another socket's handler", async (own) => {
  const [a1, b1] = own(...UnixSocket.pair('seqpacket'))
  const [a2, b2] = own(...UnixSocket.pair('seqpacket'))
  const order = []
  for (const [name, socket] of [['one', b1], ['two', b2]]) {
    socket.on('message', () => {
      order.push(name)
      void Promise.resolve().then(() => order.push(`promise ${name}`))
    })
  }
  // Both readable before either is handled.
  await Promise.all([a1.send('x'), a2.send('x')])
  for (let i = 0; i < 50 && order.length < 4; i++) await turn(10)
  equal([order[1], order[3]], [`promise ${order[0]}`, `promise ${order[2]}`], `order ${JSON.stringify(order)}`)
})

await check('UnixSocket: backpressure holds a writer back and loses or reorders nothing', async (own) => {
  const [a, b] = own(...UnixSocket.pair('seqpacket'))
  const COUNT = 3000
  const payload = Buffer.alloc(4096, 7)
  b.pause()
  const sends = []
  for (let i = 0; i < COUNT; i++) {
    const message = Buffer.from(payload)
    message.writeUInt32LE(i, 0)
    sends.push(a.send(message))
  }
  await turn(50)
  let settled = 0
  for (const p of sends) void p.then(() => settled++)
  await turn(20)
  assert(settled < COUNT, `the writer is held back while the reader is paused (${settled} of ${COUNT} settled)`)
  let next = 0
  let outOfOrder = 0
  const all = new Promise((resolve) => {
    b.on('message', (message) => {
      if (message.data.readUInt32LE(0) !== next) outOfOrder++
      next++
      if (next === COUNT) resolve()
    })
  })
  b.resume()
  await Promise.all([all, ...sends])
  equal({ received: next, outOfOrder }, { received: COUNT, outOfOrder: 0 }, 'delivery')
  a.close()
  b.close()
})

await check('UnixSocket: for await delivers in order, ends at the end, and closes unclaimed descriptors', async (own) => {
  const [a, b] = own(...UnixSocket.pair('seqpacket'))
  const [x, y] = socketpair('dgram')
  for (let i = 0; i < 5; i++) void a.send(`m${i}`, { fds: [x] })
  void a.end()
  const seen = []
  for await (const message of b) seen.push(message.data.toString())
  equal(seen, ['m0', 'm1', 'm2', 'm3', 'm4'], 'messages')
  closeFd(x)
  closeFd(y)
  a.close()
  b.close()
})

for (const type of ['stream', 'seqpacket']) {
  await check(`UnixServer ${type}: accepts a connection that passes a descriptor`, async (own) => {
    const path = join(temp, `server-${type}.sock`)
    const server = own(UnixServer.listen(path, { type }))
    const accepted = once(server, 'connection')
    const client = own(await UnixSocket.connect(path, { type }))
    const [conn] = await accepted
    own(conn)
    const [x, y] = socketpair('dgram')
    const arrived = once(conn, 'message')
    await client.send('over the server', { fds: [x] })
    const [message] = await arrived
    equal(message.data.toString(), 'over the server', 'data')
    const fd = message.fds[0].take()
    equal(roundTrip(fd, y, 'accepted'), 'accepted', 'the descriptor works')
    for (const n of [fd, x, y]) closeFd(n)
    client.close()
    conn.close()
    server.close()
  })
}

/** Runs `source` as a module in a child of this same runtime; resolves to { code, stdout, ms }. */
function runChild(name, source, { timeoutMs = 10_000, args = [] } = {}) {
  const file = join(temp, name)
  writeFileSync(file, source)
  const started = Date.now()
  const child = spawn(process.execPath, [...RUNTIME_ARGS, file, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, ms: Date.now() - started })
    })
  })
}

const distUrl = JSON.stringify(join(root, 'dist', 'index.js'))

// A runtime opens descriptors of its own for its first child processes and keeps them (Node a
// signal pipe; Deno a socket pair for its SIGCHLD handling, once a child outlives a loop turn):
// spawn a few first, outside any check's count.
for (const stdio of [['ignore', 'pipe', 'inherit'], ['ignore', 'ignore', 'inherit']]) {
  const child = spawn('/bin/sleep', ['0.2'], { stdio })
  child.stdout?.resume()
  await once(child, 'close')
}

await check('UnixSocket: unref() lets the process exit while a socket is reading; without it, the socket keeps it alive', async () => {
  const source = `
    import { createRequire } from 'node:module'
    const { UnixSocket } = createRequire(import.meta.url)(${distUrl})
    const [a, b] = UnixSocket.pair('stream')
    globalThis.held = a
    b.on('message', () => {})
    void a.send('x')
    if (process.argv.includes('unref')) { a.unref(); b.unref() }
    process.on('exit', () => console.log('exited'))
  `
  const unrefd = await runChild('unref.mjs', source, { args: ['unref'], timeoutMs: 10_000 })
  equal({ code: unrefd.code, out: unrefd.stdout.trim() }, { code: 0, out: 'exited' }, 'with unref(): exits by itself')
  const kept = await runChild('kept.mjs', source, { timeoutMs: 1500 })
  equal(kept.signal, 'SIGKILL', 'without unref(): still running after 1.5 s')
})

for (const how of ['terminate', 'unref']) {
  // Counted by the worker's own sockets (their inodes) rather than by the total: Deno keeps an
  // epoll and an eventfd of each terminated worker's event loop open, Bun a pipe.
  await check(`worker_threads: a worker with live sockets goes away cleanly (${how}), closing its sockets`, async () => {
    const file = join(temp, `worker-${how}.mjs`)
    writeFileSync(
      file,
      `
      import { readlinkSync } from 'node:fs'
      import { createRequire } from 'node:module'
      import { parentPort } from 'node:worker_threads'
      const { UnixSocket } = createRequire(import.meta.url)(${distUrl})
      const [a, b] = UnixSocket.pair('seqpacket')
      b.on('message', () => {})
      void a.send('hello')
      const [full] = UnixSocket.pair('dgram')
      for (let i = 0; i < 50; i++) full.send(Buffer.alloc(65536)).catch(() => {})
      globalThis.held = [a, b, full]
      parentPort.postMessage({ sockets: [a.fd, b.fd, full.fd].map((fd) => readlinkSync('/proc/self/fd/' + fd)) })
      if (${JSON.stringify(how)} === 'unref') for (const socket of [a, b, full]) socket.unref()
    `,
    )
    const { Worker } = await import('node:worker_threads')
    const worker = new Worker(file)
    const [{ sockets }] = await once(worker, 'message')
    equal(sockets.length, 3, 'the worker made its sockets')
    const exited = once(worker, 'exit')
    if (how === 'terminate') await worker.terminate()
    await exited
    await turn()
    const open = new Set(fdTable().values())
    equal(sockets.filter((socket) => open.has(socket)), [], "the worker's sockets still open")
  }, { fds: false })
}

// ---- FrameChannel, spawnWorker/workerListeners ----

await check('FrameChannel: JSON frames with descriptors, both ways', async (own) => {
  const [a, b] = own(...UnixSocket.pair('stream'))
  const left = new FrameChannel(a)
  const right = new FrameChannel(b)
  const [x, y] = socketpair('dgram')
  // Taken in the handler: a frame's unclaimed descriptors close after it.
  const arrived = new Promise((resolve) => right.once('frame', (frame) => resolve({ value: frame.value, fd: frame.fds[0].take() })))
  await left.send({ hello: 'world', n: [1, 2, 3] }, [x])
  const frame = await arrived
  equal(frame.value, { hello: 'world', n: [1, 2, 3] }, 'value')
  const fd = frame.fd
  equal(roundTrip(fd, y, 'framed'), 'framed', 'the descriptor works')
  const back = once(left, 'frame')
  await right.send({ reply: true })
  equal((await back)[0].value, { reply: true }, 'reply')
  for (const n of [fd, x, y]) closeFd(n)
  left.close()
  right.close()
})

await check('spawnWorker/workerListeners: a worker of this runtime serves HTTP on a listener it was handed', async (own) => {
  const path = join(temp, 'http.sock')
  const listener = own(UnixServer.listen(path))
  const workerFile = join(temp, 'http-worker.mjs')
  writeFileSync(
    workerFile,
    `
    import http from 'node:http'
    import net from 'node:net'
    import { createRequire } from 'node:module'
    const { toNetServer, workerListeners } = createRequire(import.meta.url)(${distUrl})
    const { listeners, channel } = await workerListeners({ expect: ['http'] })
    const app = http.createServer((req, res) => res.end('served by ' + process.pid))
    let server
    let refused
    try {
      server = toNetServer(listeners.http, app)
    } catch (error) {
      // Bun: its http.Server cannot listen on a descriptor; the error says the way around.
      refused = error.code
      server = toNetServer(listeners.http, net.createServer((socket) => app.emit('connection', socket)))
    }
    server.on('listening', () => channel.send({ type: 'serving', refused }))
    channel.on('frame', ({ value }) => { if (value.type === 'stop') server.close(() => process.exit(0)) })
    channel.on('end', () => process.exit(0))
  `,
  )
  const worker = spawnWorker(process.execPath, [...RUNTIME_ARGS, workerFile], { listeners: { http: listener } })
  try {
    await worker.ready
    const [frame] = await once(worker.channel, 'frame')
    equal(frame.value.type, 'serving', 'the worker says it serves')
    equal(frame.value.refused, RUNTIME === 'bun' ? 'ERR_SENDMSG_RUNTIME_UNSUPPORTED' : undefined, 'toNetServer(fd, http.Server) refused only where it cannot work')
    const body = await new Promise((resolve, reject) => {
      http
        .get({ socketPath: path, path: '/' }, (res) => {
          let text = ''
          res.on('data', (chunk) => (text += chunk))
          res.on('end', () => resolve(text))
        })
        .on('error', reject)
    })
    equal(body, `served by ${worker.child.pid}`, 'response')
    const exited = once(worker.child, 'exit')
    await worker.channel.send({ type: 'stop' })
    equal((await exited)[0], 0, 'worker exit code')
  } finally {
    worker.channel.close()
    listener.close()
    if (worker.child.exitCode === null) worker.child.kill('SIGKILL')
  }
})

// ---- bridges ----

await check('toNetServer: a listening descriptor becomes a net.Server that serves', async (own) => {
  const path = join(temp, 'bridge.sock')
  const listener = own(UnixServer.listen(path))
  const fd = dup(listener.fd)
  listener.unref()
  const server = toNetServer(fd, net.createServer((socket) => socket.end('bridged\n')))
  await once(server, 'listening')
  const text = await new Promise((resolve, reject) => {
    let got = ''
    net
      .connect(path)
      .on('data', (chunk) => (got += chunk))
      .on('end', () => resolve(got))
      .on('error', reject)
  })
  equal(text, 'bridged\n', 'served')
  await new Promise((resolve) => server.close(resolve))
  listener.close()
})

await check('toNetSocket: a connected descriptor becomes a net.Socket (or a clear runtime error)', async () => {
  const [mine, peer] = socketpair('stream')
  if (RUNTIME === 'bun') {
    const error = expectThrow(() => toNetSocket(mine), 'ERR_SENDMSG_RUNTIME_UNSUPPORTED', 'Bun cannot adopt')
    assert(/UnixSocket\.from/.test(error.message), 'the message says the way around')
    closeFd(mine)
    closeFd(peer)
    return
  }
  const socket = toNetSocket(mine)
  const got = once(socket, 'data')
  send(peer, 'to the net.Socket')
  equal(String((await got)[0]), 'to the net.Socket', 'read through net.Socket')
  await new Promise((resolve) => socket.write('from the net.Socket', resolve))
  equal(recvmsg(peer, 64).data.toString(), 'from the net.Socket', 'written through net.Socket')
  socket.destroy()
  await once(socket, 'close')
  closeFd(peer)
})

await check('fdOf/dup and toDgramSocket on runtime sockets (or a clear runtime error)', async () => {
  const udp = dgram.createSocket('udp4')
  await new Promise((resolve) => udp.bind(0, '127.0.0.1', resolve))
  if (RUNTIME === 'deno') {
    const error = expectThrow(() => dup(udp), 'ERR_SENDMSG_RUNTIME_UNSUPPORTED', 'Deno has no descriptor numbers')
    assert(/closeFd/.test(error.message), 'the message says the way around')
    expectThrow(() => fdOf(net.createServer()), 'ERR_SENDMSG_RUNTIME_UNSUPPORTED', 'Deno net.Server')
    await new Promise((resolve) => udp.close(resolve))
    return
  }
  const fd = dup(udp)
  const { port } = udp.address()
  await new Promise((resolve) => udp.close(resolve))
  const adopted = toDgramSocket(fd)
  if (!adopted.address) throw new Error('no dgram.Socket')
  const got = once(adopted, 'message')
  const sender = dgram.createSocket('udp4')
  sender.send('datagram', port, '127.0.0.1')
  equal(String((await got)[0]), 'datagram', 'received through the adopted dgram.Socket')
  await new Promise((resolve) => sender.close(resolve))
  await new Promise((resolve) => adopted.close(resolve))
})

await check('closeFd: the native close works on a descriptor number', async () => {
  const [a, b] = socketpair('dgram')
  closeFd(a)
  closeFd(b)
  expectThrow(() => closeFd(a), 'EBADF', 'a second close')
})

rmSync(temp, { recursive: true, force: true })
console.log(`# runtime ${RUNTIME} ${process.versions[RUNTIME] ?? process.version}, reactor ${native.reactorBackend()}`)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
