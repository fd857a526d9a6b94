// The package's main job, end to end: a supervisor binds a TCP port on 127.0.0.1 and hands it to
// HTTP workers; while a load generator runs, every worker is restarted one by one, then a new
// supervisor that crashes before acknowledging tries to take over (the old one rolls back and
// serves on; the crashed one's workers drain and exit), then the supervisor is replaced for real
// by a new supervisor process that takes the listening socket over through a named socket. The
// load generator's totals show no error and no refused connection.
//
//   node examples/zero-downtime.mjs [--quick]      (npm run demo)
import { fork } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const WORKERS = quick ? 2 : 3
const PAUSE = quick ? 300 : 1500
const here = fileURLToPath(new URL('.', import.meta.url))
const start = Date.now()
const say = (text) => console.log(`[${((Date.now() - start) / 1000).toFixed(2).padStart(6)}s] ${text}`)
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const children = []

/** A child that dies makes the next send to it fail: said here, and next() rejects. */
function watch(child) {
  children.push(child)
  child.on('error', (error) => say(`process ${child.pid}: ${error.message}`))
}

function startSupervisor(args) {
  const child = fork(join(here, 'supervisor.mjs'), ['--workers', String(WORKERS), ...args], { stdio: 'inherit' })
  watch(child)
  child.on('message', (message) => {
    if (message.event === 'worker-replaced') say(`  worker ${message.old} -> ${message.new} (the old one served ${message.served} requests)`)
    if (message.event === 'refused' || message.event === 'rejected') say(`  handoff ${message.event}: ${JSON.stringify(message)}`)
    if (message.event === 'rollback') say(`  rolled back: the taker ${message.from} did not complete (${message.message})`)
  })
  return child
}

/** The child's next message of this event; rejects if the child exits first. */
function next(child, event) {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return reject(new Error(`process ${child.pid} exited (${child.exitCode ?? child.signalCode}) before '${event}'`))
    }
    const onMessage = (message) => {
      if (message.event !== event) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message)
    }
    const onExit = (code, signal) => reject(new Error(`process ${child.pid} exited (${code ?? signal}) before '${event}'`))
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

const dir = mkdtempSync(join(tmpdir(), 'sendmsg-demo-'))
function cleanUp() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill()
  rmSync(dir, { recursive: true, force: true })
}
// Stopped from outside (Ctrl-C, a test's teardown): the children and the folder go too.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    cleanUp()
    process.exit(1)
  })
}
let failed = true
try {
  const first = startSupervisor([])
  const ready = await next(first, 'ready')
  say(`supervisor ${first.pid} listens on 127.0.0.1:${ready.port}, workers ${ready.workers.join(', ')}`)

  const load = fork(join(here, 'load.mjs'), [String(ready.port), '16'], { stdio: 'inherit' })
  watch(load)
  await next(load, 'started')
  say('load generator running: 16 concurrent clients, a new connection per request')
  await pause(PAUSE)

  say('restarting every worker, one by one')
  first.send({ cmd: 'restart' })
  await next(first, 'restarted')
  await pause(PAUSE)

  const path = join(dir, 'handoff', 'supervisor.sock')
  say(`replacing the supervisor: it offers the listening socket at ${path} (0600, in a 0700 directory)`)
  first.send({ cmd: 'offer', path })
  await next(first, 'offering')

  say('a new supervisor that exits before acknowledging: the handoff must roll back')
  const crashing = startSupervisor(['--take', path, '--fail-before-ack'])
  const rolledBack = next(first, 'rollback')
  const failing = await next(crashing, 'failing')
  say(`new supervisor ${crashing.pid} took the socket, started workers ${failing.workers.join(', ')}, and exits before acknowledging`)
  await rolledBack
  say(`old supervisor ${first.pid} still serves; the crashed one's workers drain and exit on their own`)
  await pause(PAUSE)

  say('the real replacement, at the same path')
  const second = startSupervisor(['--take', path])
  const handedOver = next(first, 'stopped')
  const secondReady = await next(second, 'ready')
  say(`new supervisor ${second.pid} took the socket, workers ${secondReady.workers.join(', ')}`)
  const stopped = await handedOver
  say(`old supervisor ${first.pid} stopped its workers (they served ${stopped.served} requests in their last round) and exited`)
  await pause(PAUSE)

  load.send('stop')
  const { totals } = await next(load, 'totals')
  second.send({ cmd: 'shutdown' })
  await next(second, 'stopped')

  const byWorker = Object.keys(totals.workers).length
  // The crashed supervisor's workers are not our children: signal 0 says whether they still
  // exist, and on Linux /proc whether they have exited and only wait for init to reap them (a
  // zombie, which some container inits reap late).
  const alive = (pid) => {
    try {
      process.kill(pid, 0)
    } catch {
      return false
    }
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1)?.[0] !== 'Z'
    } catch {
      return true
    }
  }
  // They drain and exit within moments of the crash; give them up to 10 s before calling it.
  for (let waited = 0; waited < 10_000 && failing.workers.some(alive); waited += 50) await pause(50)
  const orphans = failing.workers.filter(alive)
  const orphanServed = failing.workers.reduce((sum, pid) => sum + (totals.workers[pid] ?? 0), 0)
  console.log('')
  console.log(`requests: ${totals.requests}  ok: ${totals.ok}  failed: ${totals.failed}  refused connections: ${totals.refused}`)
  console.log(`served by ${byWorker} worker processes across 3 supervisors (one crashed before acknowledging and was rolled back), in ${((Date.now() - start) / 1000).toFixed(1)} s`)
  console.log(
    `the crashed supervisor's workers served ${orphanServed} requests, then ${orphans.length === 0 ? 'drained and exited on their own' : `still run: ${orphans.join(', ')}`}`,
  )
  if (totals.failed > 0) console.log(`errors: ${JSON.stringify(totals.errors)}`)
  failed = totals.failed > 0 || totals.ok === 0 || orphans.length > 0
  console.log(failed ? 'FAILED: some requests failed, or workers outlived their supervisor' : 'zero-downtime: every request was served')
} finally {
  cleanUp()
}
process.exit(failed ? 1 : 0)
