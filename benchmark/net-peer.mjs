// Node's own net module, for benchmark/run.mjs: request/response round trips of 64 bytes over a
// Unix stream socket between two Node processes (no descriptors: net cannot pass them). It shows
// what Node's event loop itself costs per round trip.
//
//   node net-peer.mjs <payload> <count>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (benchmark/run.mjs's time limit) it stops the child first.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const [payloadArg, countArg, role, path] = process.argv.slice(2)
const payload = Number(payloadArg)
const count = Number(countArg)

if (role === 'child') {
  let pending = 0
  const response = Buffer.alloc(payload)
  const socket = net.connect(path)
  socket.on('data', (data) => {
    pending += data.length
    while (pending >= payload) {
      pending -= payload
      socket.write(response)
    }
  })
  socket.on('error', () => process.exit(0))
  socket.on('end', () => process.exit(0))
} else {
  const dir = mkdtempSync(join(tmpdir(), 'sendmsg-bench-'))
  const socketPath = join(dir, 'net.sock')
  const server = net.createServer().listen(socketPath)
  await once(server, 'listening')
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), payloadArg, countArg, 'child', socketPath], { stdio: 'inherit' })
  // However this process ends (a crash included), the socket's folder goes.
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  let finished = false
  child.once('exit', (code, signal) => {
    if (finished) return process.exit(0)
    console.error(`net-peer.mjs: the child exited (${code ?? signal}) before the run was over`)
    process.exit(1)
  })
  process.once('SIGTERM', () => {
    child.kill('SIGKILL')
    process.exit(1)
  })
  const [socket] = await once(server, 'connection')
  let reply
  let received = 0
  socket.on('data', (data) => {
    received += data.length
    if (received >= payload) {
      received -= payload
      reply()
    }
  })
  const data = Buffer.alloc(payload)
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const answered = new Promise((resolve) => (reply = resolve))
    socket.write(data)
    await answered
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  console.log(JSON.stringify({ messages: count, seconds }))
  finished = true
  // The child exits on end-of-file; its exit ends this process.
  socket.destroy()
  server.close()
}
