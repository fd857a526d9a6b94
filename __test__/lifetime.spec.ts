// Lifetime: worker teardown, ref()/unref(), garbage collection of idle sockets, and backpressure.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'

import { UnixSocket, type Message } from 'sendmsg'

import { openFds, turn } from './helpers.ts'
import { fixture } from './processes.ts'

function runNode(args: string[], timeoutMs: number): Promise<{ code: number | null; signal: string | null; stdout: string }> {
  return new Promise((resolve) => {
    // stderr is kept: the garbage-collection fixture's warnings are expected, not noise for the run.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stderr.resume()
    let stdout = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout })
    })
  })
}

for (const how of ['terminate', 'process.exit', 'unref'] as const) {
  test.serial(`a worker with live sockets goes away cleanly (${how}): no abort, no descriptor left`, async (t) => {
    const before = openFds()
    const worker = new Worker(fixture('worker-with-sockets.mjs'), { workerData: { how, id: how } })
    const [{ fds }] = (await once(worker, 'message')) as [{ fds: number[] }]
    t.is(fds.length, 8)
    t.true(openFds() >= before + 8)
    if (how === 'terminate') await worker.terminate()
    const [code] = how === 'terminate' ? [1] : await once(worker, 'exit')
    if (how === 'process.exit') t.is(code, 3)
    if (how === 'unref') t.is(code, 0, 'unreferenced sockets let the worker finish')
    await turn()
    t.is(openFds(), before, 'the worker\'s sockets were closed with its environment')
  })
}

test('unref() lets a process exit while a socket is open and reading; without it, it stays', async (t) => {
  const unref = await runNode([fixture('exits-when-unref.mjs'), 'unref'], 5000)
  t.is(unref.code, 0)
  t.is(unref.stdout.trim(), 'exited')
  const referenced = await runNode([fixture('exits-when-unref.mjs')], 700)
  t.is(referenced.signal, 'SIGKILL', 'still running when killed')
})

test('idle unreferenced sockets are collected with their descriptors; reading ones are kept', async (t) => {
  if (process.platform !== 'linux') return t.pass('counts descriptors through /proc (Linux)')
  const result = await runNode(['--expose-gc', fixture('gc-idle-sockets.mjs')], 20000)
  t.is(result.code, 0)
  const { before, opened, after, received, warned } = JSON.parse(result.stdout) as Record<string, number> & { received: string[] }
  t.true(opened >= before + 400)
  t.true(after <= before + 2, `after garbage collection ${after} descriptors are open (${before} before, 2 still in use)`)
  t.deepEqual(received, ['still delivered'])
  t.true(warned > 0, 'each collected socket is reported with a SENDMSG_SOCKET_COLLECTED warning')
})

test.serial('backpressure: a slow reader holds the writer back, and nothing is lost or reordered', async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const total = 3000
  let sent = 0
  const producer = (async () => {
    for (let i = 0; i < total; i++) {
      const payload = Buffer.alloc(1024)
      payload.writeUInt32LE(i)
      await a.send(payload)
      sent++
    }
  })()
  let received = 0
  let maxAhead = 0
  for await (const message of b as AsyncIterable<Message>) {
    t.is(message.data.readUInt32LE(0), received)
    received++
    maxAhead = Math.max(maxAhead, sent - received)
    if (received % 250 === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    if (received === total) break
  }
  await producer
  t.is(sent, total)
  t.true(maxAhead < 1000, `the writer got at most ${maxAhead} messages ahead of the slow reader`)
  t.true(maxAhead > 10, 'the kernel and the reader\'s backlog did buffer some')
  t.log(`the writer got at most ${maxAhead} messages ahead of the reader`)
  a.close()
  b.close()
})
