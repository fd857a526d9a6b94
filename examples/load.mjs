// A small HTTP load generator for the demo: `concurrency` loops, each making one request after
// another to 127.0.0.1:PORT on a new connection every time (no keep-alive: every request tests
// that a connection is accepted). Forked with IPC: it reports { event: 'started' }, and on 'stop'
// { event: 'totals', totals }; it exits if its parent goes away.
//
//   node examples/load.mjs <port> [concurrency]
import http from 'node:http'

const port = Number(process.argv[2])
const concurrency = Number(process.argv[3] ?? 16)
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })
const totals = { requests: 0, ok: 0, failed: 0, refused: 0, errors: {}, workers: {} }
let running = true

function get() {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 10_000 }, (response) => {
      const worker = response.headers['x-worker-pid']
      response.resume()
      response.on('end', () => resolve({ status: response.statusCode, worker }))
      response.on('error', reject)
    })
    request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
    request.on('error', reject)
  })
}

async function loop() {
  while (running) {
    totals.requests++
    try {
      const { status, worker } = await get()
      if (status === 200) totals.ok++
      else totals.failed++
      totals.workers[worker] = (totals.workers[worker] ?? 0) + 1
    } catch (error) {
      totals.failed++
      if (error.code === 'ECONNREFUSED') totals.refused++
      totals.errors[error.code ?? error.message] = (totals.errors[error.code ?? error.message] ?? 0) + 1
    }
  }
}

const loops = Array.from({ length: concurrency }, loop)
process.on('message', async (message) => {
  if (message !== 'stop') return
  running = false
  await Promise.all(loops)
  process.send({ event: 'totals', totals }, () => process.exit(0))
})
// The parent is gone (killed, crashed): nobody will say 'stop' or read the totals.
process.on('disconnect', () => process.exit(1))
process.send?.({ event: 'started' })
