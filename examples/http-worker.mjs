// An HTTP worker, spawned by examples/supervisor.mjs with spawnWorker(): it gets the listening
// socket from its supervisor, serves on it alongside the other workers (the kernel spreads
// connections between them), and on 'stop' stops accepting, finishes the requests under way and
// exits. No connection is refused meanwhile: the socket stays open in the supervisor and the
// other workers. If the supervisor dies (even SIGKILLed), the channel tells: the worker drains
// the same way and exits (workerListeners' default onSupervisorExit policy, 'drain').
import http from 'node:http'
import { toNetServer, workerListeners } from 'sendmsg'

const { listeners, channel, drainOnExit } = await workerListeners({ expect: ['http'] })
let served = 0
const server = http.createServer((request, response) => {
  served++
  response.setHeader('x-worker-pid', String(process.pid))
  response.end(`served by worker ${process.pid}\n`)
})
drainOnExit(toNetServer(listeners.http, server))
server.once('listening', () => void channel.send({ type: 'serving', pid: process.pid }))

channel.on('frame', ({ value }) => {
  if (typeof value !== 'object' || value === null || !('type' in value) || value.type !== 'stop') return
  server.close(() => {
    channel
      .send({ type: 'stopped', pid: process.pid, served })
      .finally(() => process.exit(0))
  })
  server.closeIdleConnections()
})
