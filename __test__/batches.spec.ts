// Receiving in batches: the 'messages' event and batches(), for throughput. Each message keeps
// the ownership rules of a single one: what nobody took is closed when the batch's delivery ends.
import test from 'ava'
import { once } from 'node:events'
import { closeSync } from 'node:fs'

import { pipe, UnixSocket, type Message } from 'sendmsg'

import { openFds, turn } from './helpers.ts'

test.serial("'messages' delivers what one receive brought in one call; unclaimed descriptors close after it", async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('seqpacket')
  const [r, w] = pipe()
  for (let i = 0; i < 20; i++) void a.send(`m${i}`, { fds: [r] })
  await a.send('last', { fds: [w] })
  const batches: Message[][] = []
  let taken = -1
  let afterMicrotask: boolean | undefined
  b.on('messages', (batch: Message[]) => {
    batches.push(batch)
    if (taken < 0) taken = batch[0]!.fds[0]!.take()
    const later = batch[1]!.fds[0]!
    // Still owned during the delivery, the handler's microtasks included.
    void Promise.resolve().then(() => (afterMicrotask = later.released))
  })
  while (batches.flat().length < 21) await once(b, 'messages')
  await turn()
  t.is(batches.length, 1, 'one call for the whole receive')
  t.deepEqual(
    batches.flat().map((message) => message.data.toString()),
    [...Array.from({ length: 20 }, (_, i) => `m${i}`), 'last'],
  )
  t.false(afterMicrotask, 'owned until the microtasks the handler queued have run')
  t.true(batches[0]![1]!.fds[0]!.released, 'closed once the delivery ended')
  t.is(openFds(), before + 4 + 1, 'the sockets, the pipe and the one descriptor taken')
  closeSync(taken)
  closeSync(r)
  closeSync(w)
  a.close()
  b.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('batches() yields every message that arrived; the previous batch settles on next()', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram')
  const [r, w] = pipe()
  for (let i = 0; i < 10; i++) await a.send(`m${i}`, { fds: [r, w] })
  const seen: string[] = []
  let previous: Message[] | undefined
  for await (const batch of b.batches()) {
    if (previous !== undefined) t.true(previous.every((message) => message.fds.every((fd) => fd.released)))
    previous = batch
    seen.push(...batch.map((message) => message.data.toString()))
    if (seen.length === 10) break
  }
  t.deepEqual(seen, Array.from({ length: 10 }, (_, i) => `m${i}`))
  t.true(previous!.every((message) => message.fds.every((fd) => fd.released)), 'leaving the loop settles the last batch')
  closeSync(r)
  closeSync(w)
  a.close()
  b.close()
  await turn()
  t.is(openFds(), before)
})

test.serial("a paused socket's backlog goes to 'messages' as one batch on resume", async (t) => {
  const [a, b] = UnixSocket.pair('seqpacket')
  const got: string[][] = []
  b.on('message', () => b.pause())
  const first = once(b, 'message')
  for (let i = 0; i < 5; i++) void a.send(`m${i}`)
  await first
  b.removeAllListeners('message')
  b.on('messages', (batch: Message[]) => got.push(batch.map((message) => message.data.toString())))
  b.resume()
  await once(b, 'messages')
  t.deepEqual(got, [['m1', 'm2', 'm3', 'm4']])
  a.close()
  b.close()
})
