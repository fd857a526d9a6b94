// Node's own handle passing, for benchmark/run.mjs: the parent forks this script and hands it a
// listening TCP server `count` times with subprocess.send(message, server); the child closes each
// net.Server it gets and reports when it has them all.
//
//   node node-ipc-peer.mjs <count>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (benchmark/run.mjs's time limit) it stops the child first.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

const count = Number(process.argv[2])

if (process.argv[3] === 'child') {
  let received = 0
  process.on('message', (message, server) => {
    if (message === 'bye') return process.exit(0)
    server.close()
    if (++received === count) process.send('done')
  })
  process.send('ready')
} else {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const child = fork(fileURLToPath(import.meta.url), [String(count), 'child'])
  let finished = false
  child.once('exit', (code, signal) => {
    if (finished) return
    console.error(`node-ipc-peer.mjs: the child exited (${code ?? signal}) before the run was over`)
    process.exit(1)
  })
  process.once('SIGTERM', () => {
    child.kill('SIGKILL')
    process.exit(1)
  })
  await once(child, 'message')
  const start = process.hrtime.bigint()
  const done = once(child, 'message')
  for (let i = 0; i < count; i++) child.send('listener', server)
  await done
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  console.log(JSON.stringify({ messages: count, seconds }))
  finished = true
  child.send('bye')
  server.close()
}
