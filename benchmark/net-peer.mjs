// The Node `net` contender of benchmark/run.mjs: request/response round trips of 64 bytes over a
// Unix stream socket between two Node processes (no descriptors: net cannot pass them). It shows
// what Node's own event loop and streams cost per round trip. `warmup` untimed round trips first.
//
//   node net-peer.mjs <payload> <count> <warmup>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (run.mjs's time limit) it stops the child first.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { guardChild, printResult, startClock } from './lib/peer-process.mjs'

const [payloadArg, countArg, warmupArg, role, path] = process.argv.slice(2)
const payload = Number(payloadArg)
const count = Number(countArg)
const warmup = Number(warmupArg)

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
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), payloadArg, countArg, warmupArg, 'child', socketPath], { stdio: 'inherit' })
  // However this process ends (a crash included), the socket's folder goes.
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  const guard = guardChild(child, 'net-peer.mjs')
  const [socket] = await once(server, 'connection')
  const data = Buffer.alloc(payload)
  // Round trips driven from the 'data' handler, as sendmsg-peer.mjs and ceiling-peer.mjs do.
  let onReply
  socket.on('data', (chunk) => onReply(chunk))
  const roundTrips = (n) =>
    new Promise((resolve) => {
      let remaining = n
      let received = 0
      onReply = (chunk) => {
        received += chunk.length
        if (received < payload) return
        received -= payload
        if (--remaining === 0) resolve()
        else socket.write(data)
      }
      socket.write(data)
    })
  if (warmup > 0) await roundTrips(warmup)
  const stop = startClock()
  await roundTrips(count)
  const seconds = stop()
  printResult(count, seconds)
  guard.finish()
  // The child exits on end-of-file; its exit ends this process.
  socket.destroy()
  server.close()
}
