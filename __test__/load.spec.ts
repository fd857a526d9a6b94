// Load: one process holding 1,000 connections that all pass descriptors at once, and a short soak
// between two processes (the long one is `npm run soak`). Serial: the tests count open descriptors.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

import { pipe, UnixServer, UnixSocket, type Message } from 'sendmsg'

import { openFds, turn } from './helpers.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const CONNECTIONS = 1000

async function collected(): Promise<{ rss: number; heap: number; external: number }> {
  for (let i = 0; i < 2; i++) {
    gc()
    await turn()
  }
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
  return { rss, heap: heapUsed, external: external + arrayBuffers }
}

/** The soft descriptor limit, where the system says (Linux); undefined elsewhere. */
function descriptorLimit(): number | undefined {
  if (process.platform !== 'linux') return undefined
  const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return line ? Number(line[1]) : undefined
}

const limit = descriptorLimit()
const enoughDescriptors = limit === undefined || limit >= 2 * CONNECTIONS + 512
if (!enoughDescriptors) console.log(`load: the 1,000-connection test needs ${2 * CONNECTIONS + 512} descriptors; the limit here is ${limit}`)

;(enoughDescriptors ? test.serial : test.serial.skip)('1,000 connections in one process all pass descriptors at once; memory per socket; nothing left after closing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sendmsg-load-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const before = openFds()
  const idle = await collected()

  const server = UnixServer.listen(join(dir, 'server.sock'))
  const accepted: UnixSocket[] = []
  let fdsArrived = 0
  let messagesArrived = 0
  let allArrived: () => void
  const arrived = new Promise<void>((resolve) => (allArrived = resolve))
  server.on('connection', (socket: UnixSocket) => {
    accepted.push(socket)
    socket.on('message', (message: Message) => {
      messagesArrived++
      fdsArrived += message.fds.length
      if (messagesArrived === CONNECTIONS) allArrived()
    })
  })
  const clients: UnixSocket[] = []
  // In rounds, each accepted before the next, so that the listen backlog is not what is tested (a
  // full backlog makes a Unix connect fail with EAGAIN, in Node's net as here).
  for (let i = 0; i < CONNECTIONS; i += 100) {
    clients.push(...(await Promise.all(Array.from({ length: 100 }, () => UnixSocket.connect(join(dir, 'server.sock'))))))
    while (accepted.length < clients.length) await turn()
  }
  const connected = await collected()
  t.is(openFds(), before + 1 + 2 * CONNECTIONS)

  const [r, w] = pipe()
  const began = process.hrtime.bigint()
  await Promise.all(clients.map((client, i) => client.send(`from ${i}`, { fds: [r, w] })))
  await arrived
  const milliseconds = Number(process.hrtime.bigint() - began) / 1e6
  t.is(fdsArrived, 2 * CONNECTIONS)
  const busy = await collected()
  t.is(openFds(), before + 1 + 2 * CONNECTIONS + 2, 'every received descriptor was closed after its handler')

  const sockets = 2 * CONNECTIONS
  const perSocket = (bytes: number) => `${((bytes / sockets) / 1024).toFixed(1)} KiB`
  const report =
    `${CONNECTIONS} connections (${sockets} sockets in this process): ` +
    `RSS ${perSocket(connected.rss - idle.rss)}, JS heap ${perSocket(connected.heap - idle.heap)}, ` +
    `external ${perSocket(connected.external - idle.external)} per socket when connected; ` +
    `RSS ${perSocket(busy.rss - idle.rss)}, JS heap ${perSocket(busy.heap - idle.heap)} per socket once all had passed descriptors; ` +
    `${CONNECTIONS} messages with ${2 * CONNECTIONS} descriptors sent at once, all received in ${milliseconds.toFixed(0)} ms`
  t.log(report)
  console.log(`load: ${report}`)

  for (const socket of [...clients, ...accepted]) socket.close()
  server.close()
  closeSync(r)
  closeSync(w)
  await once(server, 'close')
  await turn()
  t.is(openFds(), before)
})

const SOAK = fileURLToPath(new URL('../scripts/soak.mjs', import.meta.url))

test.serial('a short soak: 50,000 descriptors between two processes leave both flat', async (t) => {
  const child = spawn(process.execPath, ['--expose-gc', SOAK, '--fds=50000', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  const [code] = (await once(child, 'exit')) as [number | null]
  const lines = output.trim().split('\n')
  const summary = JSON.parse(lines.at(-1)!) as { fds: number; received: number; problems: string[] }
  t.log(lines.slice(0, -1).join('\n'))
  t.deepEqual(summary.problems, [])
  t.is(summary.received, 50_000)
  t.is(code, 0)
})
