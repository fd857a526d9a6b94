// A supervisor that owns the listening socket and never accepts on it itself: it hands it to HTTP
// workers (examples/http-worker.mjs), restarts them one by one, and hands everything over to a new
// supervisor process, all without refusing a connection.
//
//   node examples/supervisor.mjs [--port N] [--workers N] [--take PATH [--fail-before-ack]]
//
// With --take it takes the listening socket from the supervisor offering it at PATH (the new
// version of the supervisor replacing the old). With --fail-before-ack as well it is a new
// version that crashes: it starts its workers, then exits before acknowledging; the old
// supervisor rolls the handoff back and serves on, and this one's workers, whose supervisor is
// gone, finish what they serve and exit. When forked, it takes commands over IPC
// ({ cmd: 'restart' | 'offer' | 'shutdown' }) and reports events; run alone, SIGHUP restarts the
// workers and SIGTERM shuts down.
//
// Under systemd (Type=notify-reload, FileDescriptorStoreMax=1: see the README) it also takes the
// socket back from the fd store after a restart, stores it there, says READY=1, wraps a SIGHUP
// restart in RELOADING=1 ... READY=1, and hands MAINPID= to the successor that took over. Without
// NOTIFY_SOCKET and LISTEN_FDS all of that does nothing.
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  dup,
  listenFdsByName,
  notifyMainPid,
  notifyReady,
  offerListeners,
  reloading,
  spawnWorker,
  storeListeners,
  takeListeners,
} from 'sendmsg'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    workers: { type: 'string', default: '3' },
    take: { type: 'string' },
    'fail-before-ack': { type: 'boolean', default: false },
  },
})
const workerScript = fileURLToPath(new URL('./http-worker.mjs', import.meta.url))
// Resolves once the event is out (or cannot be sent: the parent is gone), so that exiting right
// after it does not drop it.
const report = (event) =>
  new Promise((resolve) => {
    if (!process.send) resolve(console.log(JSON.stringify(event)))
    else if (!process.connected) resolve(undefined)
    else process.send(event, () => resolve(undefined))
  })
// `value[name]` when `value` is an object that has it: frames and IPC messages are untyped JSON.
const field = (value, name) => (typeof value === 'object' && value !== null && name in value ? value[name] : undefined)

// The listening socket, as a descriptor nobody polls in this process.
let listener
let acknowledge = async () => {}
// After a restart under systemd, the socket this service stored before (see storeListeners below).
const stored = listenFdsByName({ expect: ['http'] })
if (stored.http) {
  listener = stored.http.take()
} else if (values.take) {
  const handoff = await takeListeners(values.take, { expect: ['http'], acknowledge: false })
  listener = handoff.listeners.http.take()
  acknowledge = handoff.acknowledge
} else {
  const server = net.createServer().listen(Number(values.port), '127.0.0.1')
  await once(server, 'listening')
  listener = dup(server) // keep the socket, then drop the net.Server that would accept on it
  server.close()
}
// The bound port, read through a throwaway net.Server on a duplicate, closed in the same tick
// (before the loop could accept on it).
const probe = net.createServer().listen({ fd: dup(listener) })
const address = probe.address()
const port = typeof address === 'object' && address !== null ? address.port : undefined
probe.close()

/** What each worker said it served when it stopped. */
const servedCounts = new Map()

async function startWorker() {
  const worker = spawnWorker(process.execPath, [workerScript], { listeners: { http: listener }, stdio: 'inherit' })
  const serving = new Promise((resolve, reject) => {
    worker.channel.on('frame', ({ value }) => {
      if (field(value, 'type') === 'serving') resolve(undefined)
      if (field(value, 'type') === 'stopped') servedCounts.set(worker, field(value, 'served'))
    })
    worker.child.once('exit', () => reject(new Error(`worker ${worker.child.pid} exited before serving`)))
  })
  await worker.ready
  await serving
  return worker
}

async function stopWorker(worker) {
  const exited = once(worker.child, 'exit')
  await worker.channel.send({ type: 'stop' })
  await exited
  return servedCounts.get(worker) ?? 0
}

let workers = []
for (let i = 0; i < Number(values.workers); i++) workers.push(await startWorker())
if (values['fail-before-ack']) {
  await report({ event: 'failing', pid: process.pid, workers: workers.map((w) => w.child.pid) })
  process.exit(1)
}
await acknowledge() // a predecessor may now let go: our workers are serving
if (!values.take) {
  // The service manager keeps a copy for the next start (a crash, `systemctl restart`), and learns
  // we are up. A successor (--take) does neither: its predecessor stored this very socket, and
  // hands it MAINPID= with READY=1, systemd hearing only from the main process.
  await storeListeners({ http: listener })
  await notifyReady()
}

async function restart() {
  for (let i = 0; i < workers.length; i++) {
    const fresh = await startWorker()
    const old = workers[i]
    workers[i] = fresh
    const served = await stopWorker(old)
    report({ event: 'worker-replaced', old: old.child.pid, new: fresh.child.pid, served })
  }
  report({ event: 'restarted' })
}

let stopping
function shutdown(reason) {
  stopping ??= (async () => {
    let served = 0
    for (const worker of workers) served += await stopWorker(worker)
    workers = []
    await report({ event: 'stopped', reason, served })
    process.exit(0)
  })()
  return stopping
}

function offer(path) {
  const offered = offerListeners(path, { http: listener })
  offered.on('refused', (peer) => report({ event: 'refused', peer }))
  offered.on('rejected', (error) => report({ event: 'rejected', message: error.message }))
  // The taker crashed or did not acknowledge in time: we still hold the socket and serve on, and
  // the offer stays open for the next attempt.
  offered.on('rollback', (error, peer) => report({ event: 'rollback', from: peer.pid, message: error.message }))
  offered.once('handoff', async (peer) => {
    // The offer closed itself (its file is gone): the new supervisor may offer at the same path.
    // Before exiting: from now on systemd watches the successor (it must be in this service's
    // cgroup, which a process this supervisor spawned is).
    await notifyMainPid(peer.pid, { READY: 1 })
    report({ event: 'handed-over', to: peer.pid })
    void shutdown('replaced')
  })
  report({ event: 'offering', path })
}

process.on('message', (message) => {
  const cmd = field(message, 'cmd')
  if (cmd === 'restart') void restart()
  if (cmd === 'offer') offer(field(message, 'path'))
  if (cmd === 'shutdown') void shutdown('asked')
})
process.on('SIGHUP', () => void reloading(restart)) // RELOADING=1 ... READY=1 under Type=notify-reload
process.on('SIGTERM', () => void shutdown('SIGTERM'))
// Forked, and the parent is gone (killed, crashed): nobody will send 'shutdown', so stop now.
process.on('disconnect', () => void shutdown('disconnected'))
// Ready once every handler is in place: a SIGHUP that came before process.on('SIGHUP') would end
// the process (the signal's default), and the parent may act on this report at once.
report({ event: 'ready', pid: process.pid, port, workers: workers.map((w) => w.child.pid) })
