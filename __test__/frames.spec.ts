// FrameChannel on its own: what it may hold (descriptors no frame declares are an error; with
// nobody consuming it stops reading), next() with a timeout or an AbortSignal, and closeFd.
// Serial: the tests count open descriptors.
import test from 'ava'
import { closeSync, fstatSync } from 'node:fs'

import { closeFd, FrameChannel, pipe, socketpair, UnixSocket, type NodeError } from 'sendmsg'

import { openFds, turn } from './helpers.ts'

const HEADER = (length: number, fds: number) => {
  const header = Buffer.alloc(6)
  header.writeUInt32BE(length, 0)
  header.writeUInt16BE(fds, 4)
  return header
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)))
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test.serial('descriptors that no frame declares are an error even when every read ends inside a header', async (t) => {
  const before = openFds()
  const [r, w] = pipe()
  const [evil, victim] = UnixSocket.pair('stream')
  const channel = new FrameChannel(victim)
  let sent = 0
  let refusedAt: number | undefined
  const failed = channel.next()
  failed.catch(() => (refusedAt ??= sent + 1))
  // Each message: the end of the previous frame's header and its body (a frame that declares no
  // descriptors), then the start of the next header, with 253 descriptors nobody will declare.
  const body = Buffer.from('{}')
  const frame = Buffer.concat([HEADER(body.length, 0), body])
  const lots = Array.from({ length: 253 }, () => r)
  let peak = 0
  for (; sent < 21 && refusedAt === undefined; sent++) {
    const data = sent === 0 ? frame.subarray(0, 5) : Buffer.concat([frame.subarray(5), frame.subarray(0, 5)])
    try {
      await evil.send(data, { fds: lots })
    } catch {
      break
    }
    // Until the channel has read this message: its descriptors are then installed here (held, or
    // closed with the error). Waited for, not assumed after one turn: readiness may come from
    // another thread (SENDMSG_REACTOR=thread) and the machine may be busy.
    const held = 4 + 253 * (sent + 1)
    for (let k = 0; k < 600 && refusedAt === undefined && openFds() - before < held; k++) await sleep(5)
    await turn()
    peak = Math.max(peak, openFds() - before)
  }
  const error = (await within(t.throwsAsync(failed), 3000, 'the protocol error')) as NodeError
  t.is(error.code, 'ERR_SENDMSG_FRAME')
  t.regex(error.message, /506 descriptors arrived for a frame that declares at most 253/)
  t.log(`refused after message ${refusedAt}; at most ${peak} descriptors open beyond the start`)
  t.is(refusedAt, 2, 'refused at the first message that brought more than a frame can declare')
  t.true(peak <= 2 * 253 + 8, `held ${peak}`)
  channel.close()
  evil.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

test.serial('with nobody consuming, a channel stops reading instead of hoarding frames and descriptors, and resumes as they are taken', async (t) => {
  const before = openFds()
  const [r, w] = pipe()
  const [sender, receiver] = UnixSocket.pair('stream')
  const channel = new FrameChannel(receiver)
  const count = 1000
  const sends: Promise<void>[] = []
  for (let i = 0; i < count; i++) {
    const body = Buffer.from(JSON.stringify({ i }))
    sends.push(sender.send([HEADER(body.length, 1), body], { fds: [r] }))
  }
  await sleep(300)
  const held = openFds() - before - 2
  t.log(`with ${count} frames sent and none consumed, ${held} descriptors are held`)
  t.true(held <= 64 + 70, `held ${held}`)
  // Taking them lets the rest in, in order.
  for (let i = 0; i < count; i++) {
    const { value, fds } = await within(channel.next<{ i: number }>(), 3000, `frame ${i}`)
    t.is(value.i, i)
    t.is(fds.length, 1)
  }
  await Promise.all(sends)
  channel.close()
  sender.close()
  closeSync(r)
  closeSync(w)
  await turn()
  t.is(openFds(), before)
})

test.serial('next() takes a timeout and an AbortSignal; a frame that comes later waits for the next call', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('stream')
  const sender = new FrameChannel(a)
  const receiver = new FrameChannel(b)
  const timedOut = (await t.throwsAsync(receiver.next({ timeout: 50 }))) as NodeError
  t.is(timedOut.code, 'ERR_SENDMSG_TIMEOUT')
  const controller = new AbortController()
  const waiting = receiver.next({ signal: controller.signal })
  controller.abort('because')
  const aborted = (await t.throwsAsync(waiting)) as NodeError & { cause: unknown }
  t.is(aborted.code, 'ABORT_ERR')
  t.is(aborted.name, 'AbortError')
  t.is(aborted.cause, 'because')
  await t.throwsAsync(receiver.next({ signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
  await sender.send({ late: true })
  await turn()
  t.deepEqual((await receiver.next({ timeout: 1000, signal: new AbortController().signal })).value, { late: true })
  t.throws(() => receiver.next({ timeout: 1.5 }), { code: 'ERR_OUT_OF_RANGE' })
  sender.close()
  receiver.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('a protocol error closes what the channel holds but lets it tell the peer why before close()', async (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('stream')
  const peer = new FrameChannel(a)
  const channel = new FrameChannel(b)
  const failed = channel.next()
  await a.send([HEADER(5, 0), Buffer.from('nope!')])
  await t.throwsAsync(failed, { code: 'ERR_SENDMSG_FRAME', message: /not JSON/ })
  await t.throwsAsync(channel.next(), { code: 'ERR_SENDMSG_FRAME' }, 'the error stays')
  await channel.send({ error: 'bad JSON' })
  t.deepEqual((await peer.next()).value, { error: 'bad JSON' })
  channel.close()
  await t.throwsAsync(peer.next(), { code: 'ERR_SENDMSG_FRAME_CLOSED' })
  peer.close()
  await turn()
  t.is(openFds(), before)
})

test.serial('closeFd closes a descriptor number, and checks it', (t) => {
  const before = openFds()
  const [x, y] = socketpair()
  closeFd(x)
  closeFd(y)
  t.throws(() => fstatSync(x), { code: 'EBADF' })
  t.throws(() => closeFd(-1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => closeFd('3' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})
