// The Node handle-passing contender of benchmark/run.mjs: the parent forks this script and hands
// it a listening TCP server with subprocess.send(message, server), `warmup` times untimed, then
// `count` times timed; the child closes each net.Server it gets and reports when it has them all.
//
//   node node-ipc-peer.mjs <count> <warmup>
// Prints one JSON line: {"messages":N,"seconds":S}. Exits non-zero if the child exits before the
// run is over; on SIGTERM (run.mjs's time limit) it stops the child first.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { guardChild, printResult, startClock } from './lib/peer-process.mjs'

const count = Number(process.argv[2])
const warmup = Number(process.argv[3])

if (process.argv[4] === 'child') {
  let received = 0
  process.on('message', (message, server) => {
    if (message === 'bye') return process.exit(0)
    server.close()
    received++
    if (received === warmup) process.send('warm')
    if (received === warmup + count) process.send('done')
  })
  process.send('ready')
} else {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const child = fork(fileURLToPath(import.meta.url), [String(count), String(warmup), 'child'])
  const guard = guardChild(child, 'node-ipc-peer.mjs')
  await once(child, 'message')
  if (warmup > 0) {
    const warm = once(child, 'message')
    for (let i = 0; i < warmup; i++) child.send('listener', server)
    await warm
  }
  const stop = startClock()
  const done = once(child, 'message')
  for (let i = 0; i < count; i++) child.send('listener', server)
  await done
  const seconds = stop()
  printResult(count, seconds)
  guard.finish()
  child.send('bye')
  server.close()
}
