// Hostile input: every export of 'sendmsg' called with random and malformed arguments (wrong types,
// huge and negative sizes, sparse arrays, getters and proxies that throw, detached buffers), mixed
// with valid ones so that the calls reach deep. What may come out:
//   - a TypeError or RangeError, or an Error with a string `code` (Node-style), thrown or as a
//     rejection;
//   - the caller's own error, unchanged, when a getter or proxy trap of theirs throws (the
//     package reads what it is given once and lets such an error through: it is theirs);
// and never a crash (a native abort ends this file's process, which ava reports as a failure), a
// hang, or a descriptor left open: after each run the process has exactly the descriptors it had.
//
// Descriptor numbers that belong to the test runner (stdio, ava's IPC channel) are never handed to
// calls that would read, adopt or close them: they are swapped for a number that cannot be open.
// Serial: the runs count open descriptors.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import dgram from 'node:dgram'
import fc from 'fast-check'
import { closeSync, fstatSync } from 'node:fs'
import net from 'node:net'

import * as api from 'sendmsg'
import { FrameChannel, ListenerOffer, Message, ReceivedFd, UnixServer, UnixSocket, type SocketType } from 'sendmsg'

import { openFds, tempDir, turn } from './helpers.ts'

/** Thrown by the test's own hostile getters and traps: allowed to surface unchanged. */
class CallersOwnError extends Error {}

const NEVER_OPEN = 2 ** 31 - 2
const TYPES: SocketType[] = process.platform === 'linux' ? ['stream', 'dgram', 'seqpacket'] : ['stream', 'dgram']

// What may come out --------------------------------------------------------------------------------

/** Throws (failing the property, which fast-check then shrinks) unless `error` is allowed out. */
function checkError(error: unknown, what: string): void {
  if (error instanceof CallersOwnError) return
  if (error instanceof TypeError || error instanceof RangeError) return
  if (error instanceof Error && typeof (error as { code?: unknown }).code === 'string') return
  throw new Error(`${what} threw ${error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error)}`)
}

// Hostile values -----------------------------------------------------------------------------------

function detachedBuffer(): Uint8Array {
  const view = new Uint8Array(16)
  structuredClone(view.buffer, { transfer: [view.buffer] })
  return view
}

function detachedArrayBuffer(): ArrayBuffer {
  const buffer = new ArrayBuffer(16)
  structuredClone(buffer, { transfer: [buffer] })
  return buffer
}

const throwingGetter = (): object =>
  Object.defineProperty({}, 'fd', {
    get() {
      throw new CallersOwnError('getter')
    },
    enumerable: true,
  })

/**
 * A proxy whose traps throw for every property the package could look up by name. Symbol keys
 * pass through: fast-check itself asks the values it generates for its own symbols.
 */
const throwingProxy = (target: object): object => {
  const refuse = (what: string) => {
    throw new CallersOwnError(`proxy ${what}`)
  }
  return new Proxy(target, {
    get: (inner, key, receiver) => (typeof key === 'symbol' ? Reflect.get(inner, key, receiver) : refuse('get')),
    has: (inner, key) => (typeof key === 'symbol' ? Reflect.has(inner, key) : refuse('has')),
    getOwnPropertyDescriptor: (inner, key) => (typeof key === 'symbol' ? Reflect.getOwnPropertyDescriptor(inner, key) : refuse('getOwnPropertyDescriptor')),
    ownKeys: () => refuse('ownKeys'),
  })
}

/** An array whose elements are getters that throw. */
const arrayWithThrowingElement = (): unknown[] => {
  const array = [1, 2, 3]
  Object.defineProperty(array, 1, {
    get() {
      throw new CallersOwnError('element getter')
    },
  })
  return array
}

const specials = fc.constantFrom<unknown>(
  undefined,
  null,
  NaN,
  Infinity,
  -Infinity,
  -0,
  -1,
  1.5,
  -(2 ** 31) - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  10n,
  '',
  '\0',
  '\0abstract',
  'x'.repeat(300),
  '\uD800',
  Symbol('s'),
  () => 1,
  [],
  // oxlint-disable-next-line no-sparse-arrays -- holes are one of the hostile inputs
  [, ,],
  new Array(2 ** 32 - 1),
  Object.create(null),
  { fd: -1 },
  { fd: 1.5 },
  { fd: NaN },
  { fd: '3' },
  { _handle: { fd: -5 } },
  new Date(),
  new Map(),
  Buffer.alloc(0),
  new SharedArrayBuffer(8),
  new Float64Array(3),
  new BigInt64Array(2),
  new DataView(new ArrayBuffer(8)),
  new Uint8Array(new ArrayBuffer(64), 3, 5),
)

const hostile: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.anything({ withBigInt: true, withBoxedValues: true, withNullPrototype: true, withTypedArray: true, withSparseArray: true, withMap: true, withSet: true, withDate: true }) },
  { weight: 3, arbitrary: specials },
  // Made afresh for each use: detaching and proxies are one-way.
  { weight: 1, arbitrary: fc.constant(null).map(() => detachedBuffer()) },
  { weight: 1, arbitrary: fc.constant(null).map(() => detachedArrayBuffer()) },
  { weight: 1, arbitrary: fc.constant(null).map(() => throwingGetter()) },
  { weight: 1, arbitrary: fc.constant(null).map(() => throwingProxy({})) },
  { weight: 1, arbitrary: fc.constant(null).map(() => throwingProxy([1, 2, 3])) },
  { weight: 1, arbitrary: fc.constant(null).map(() => arrayWithThrowingElement()) },
)

/** Either a plausible value or a hostile one. */
const or = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: hostile })

const smallInt = fc.integer({ min: -4, max: 70_000 })
/** Sizes that are cheap to honour (huge valid sizes have their own test below). */
const size = or(fc.oneof(smallInt, fc.constantFrom(0, 1, 4, 253 * 4, 65_536)))
const int32 = or(fc.oneof(smallInt, fc.integer(), fc.constantFrom(0, 2 ** 31 - 1, -(2 ** 31))))
const bytes = fc.oneof(fc.string(), fc.uint8Array({ maxLength: 300 }), fc.int32Array({ maxLength: 20 }).map((a) => a as ArrayBufferView))
const data = or(fc.oneof(bytes, fc.array(or(bytes), { maxLength: 4 })))
const fdNumbers = or(fc.array(or(fc.integer({ min: -2, max: 40 })), { maxLength: 6 }))
const ancillaryItem = or(fc.tuple(or(fc.constantFrom(api.SOL_SOCKET, 0, -1, 41)), or(fc.constantFrom(api.SCM_RIGHTS, 2, 99, -1)), or(bytes)))
const ancillary = or(fc.array(ancillaryItem, { maxLength: 3 }))
const socketType = or(fc.constantFrom<SocketType>(...TYPES))
/** Names in the current (temporary) directory, or abstract names: never a path elsewhere. */
const path = or(fc.oneof(fc.string({ minLength: 1, maxLength: 40 }).map((s) => s.replaceAll('/', '_')), fc.string({ maxLength: 20 }).map((s) => `\0sendmsg-hostile-${s}`)))
const socketOptions = or(
  fc.record(
    { maxMessageSize: size, allowHalfOpen: or(fc.boolean()), type: socketType, backlog: size, fds: fdNumbers, ancillary },
    { requiredKeys: [] },
  ),
)

// Descriptors: ours, and everyone else's ------------------------------------------------------------

let ours = new Set<number>()

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd)
    return true
  } catch {
    return false
  }
}

/** A descriptor that is open but not ours is replaced with one that cannot be open. */
function sanitize(value: unknown): unknown {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 31 && !ours.has(value) && isOpen(value)) return NEVER_OPEN
  if (value !== null && typeof value === 'object' && !(value instanceof ArrayBuffer) && !ArrayBuffer.isView(value)) {
    let own: PropertyDescriptor | undefined
    try {
      own = Object.getOwnPropertyDescriptor(value, 'fd')
    } catch {
      return value // a hostile proxy: the package will meet its trap, not a descriptor
    }
    if (own && 'value' in own && sanitize(own.value) !== own.value) return { fd: NEVER_OPEN }
  }
  return value
}

/** For calls that would adopt a socket: no open number at all, ours included. */
function neverOurs(value: unknown): unknown {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 31 && isOpen(value)) return NEVER_OPEN
  return sanitize(value)
}

function closeAll(fds: number[]): number[] {
  for (const fd of fds) closeSync(fd)
  return fds
}

/** What a call is named in a counterexample (hostile values may refuse to be printed). */
function describeCall(name: string, args: unknown[]): string {
  try {
    return `${name}(${fc.stringify(args)})`
  } catch {
    return `${name}(<unprintable arguments>)`
  }
}

/** Closes whatever a successful call handed back that holds descriptors. */
function release(result: unknown): void {
  if (result instanceof UnixSocket || result instanceof UnixServer) return result.close()
  if (result instanceof ReceivedFd) return result.close()
  if (result instanceof ListenerOffer || result instanceof FrameChannel) return result.close()
  if (result instanceof net.Server || result instanceof dgram.Socket) return void result.close()
  if (result instanceof net.Socket) return void result.destroy()
  const spawned = result as { child?: ChildProcess; channel?: FrameChannel }
  if (spawned !== null && typeof spawned === 'object' && spawned.channel instanceof FrameChannel) {
    spawned.channel.close()
    spawned.child?.kill()
    return
  }
  if (Array.isArray(result) && result.every((item) => item instanceof UnixSocket)) return result.forEach((socket: UnixSocket) => socket.close())
  const received = result as { ancillary?: unknown }
  // What recvmsg returns: its descriptors are the caller's to close.
  if (result !== null && typeof result === 'object' && !(result instanceof Message) && Array.isArray(received.ancillary)) {
    for (const fd of api.fdsFromAncillary(received.ancillary as never)) closeSync(fd)
  }
}

interface Pool {
  sockets: UnixSocket[]
  close(): void
}

function pool(): Pool {
  const sockets = TYPES.flatMap((type) => UnixSocket.pair(type))
  ours = new Set(sockets.map((socket) => socket.fd))
  return {
    sockets,
    close() {
      for (const socket of sockets) socket.close()
      ours = new Set()
    },
  }
}

const poolSocket = (p: Pool) => fc.constantFrom(...p.sockets)
const socketArgument = (p: Pool) => fc.oneof(poolSocket(p).map((s) => s.fd), poolSocket(p), hostile.map(sanitize))

// The calls ----------------------------------------------------------------------------------------

type Call = { name: string; run: () => unknown }

function syncCalls(p: Pool): fc.Arbitrary<Call> {
  const call = (name: string, args: fc.Arbitrary<unknown[]>, run: (...args: any[]) => unknown) =>
    args.map((list) => ({ name: describeCall(name, list), run: () => run(...list) }))
  return fc.oneof(
    call('sendmsg', fc.tuple(socketArgument(p), data, ancillary, int32), api.sendmsg),
    call('recvmsg', fc.tuple(socketArgument(p), size, size, or(fc.constantFrom(0, api.MSG_PEEK, api.MSG_DONTWAIT, api.MSG_TRUNC))), api.recvmsg),
    call('getSocketFamily', fc.tuple(socketArgument(p)), api.getSocketFamily),
    call('socketpair', fc.array(socketType, { maxLength: 2 }), (...args: unknown[]) => closeAll(api.socketpair(...(args as [])))),
    call('pipe', fc.array(hostile, { maxLength: 2 }), (...args: unknown[]) => closeAll((api.pipe as (...a: unknown[]) => number[])(...args))),
    call('CMSG_LEN', fc.tuple(or(fc.oneof(smallInt, fc.integer(), fc.constantFrom(2 ** 31 - 1, 2 ** 53)))), api.CMSG_LEN),
    call('CMSG_SPACE', fc.tuple(or(fc.oneof(smallInt, fc.integer(), fc.constantFrom(2 ** 31 - 1, 2 ** 53)))), api.CMSG_SPACE),
    call('scmRights', fc.tuple(fdNumbers), api.scmRights),
    call('fdsFromAncillary', fc.tuple(ancillary), api.fdsFromAncillary),
    call('unpackFds', fc.tuple(or(bytes)), api.unpackFds),
    call('new ReceivedFd', fc.tuple(fc.oneof(fc.constant('fresh'), hostile), fc.constantFrom('take', 'close', 'dispose', 'fd', 'released', 'toString')), (fd: unknown, method: string) => {
      // A ReceivedFd owns (and closes) the number it is given: only a descriptor this test made,
      // or a number checked not to be open at the moment of the call.
      const received = adoptFresh(fd, (number) => new ReceivedFd(number as number)) as ReceivedFd
      try {
        if (method === 'take') return closeAll([received.take()])
        if (method === 'dispose') return received[Symbol.dispose]()
        if (method === 'fd' || method === 'released') return (received as unknown as Record<string, unknown>)[method]
        return (received as unknown as Record<string, () => unknown>)[method]!()
      } finally {
        received.close()
      }
    }),
    call('peerCredentials', fc.tuple(socketArgument(p)), api.peerCredentials),
    call('scmCredentials', fc.array(or(fc.record({ pid: int32, uid: int32, gid: int32 }, { requiredKeys: [] })), { maxLength: 1 }), api.scmCredentials),
    call('credentialsFromAncillary', fc.tuple(ancillary), api.credentialsFromAncillary),
    call('passCredentials', fc.tuple(socketArgument(p), or(fc.boolean())), api.passCredentials),
    call('dup', fc.tuple(socketArgument(p)), (socket: unknown) => closeAll([api.dup(socket as number)])),
    call('fdOf', fc.tuple(socketArgument(p)), api.fdOf),
    call('isListeningSocket', fc.tuple(hostile.map(sanitize)), api.isListeningSocket),
    call(
      'a bridge',
      fc.tuple(fc.constantFrom('toNetServer', 'toNetSocket', 'toDgramSocket'), fc.oneof(fc.constant('fresh'), hostile.map(neverOurs))),
      (name: 'toNetServer' | 'toNetSocket' | 'toDgramSocket', fd: unknown) => adoptFresh(fd, (number) => api[name](number as number)),
    ),
    call('listenFds', fc.array(or(fc.record({ unsetEnvironment: or(fc.boolean()) }, { requiredKeys: [] })), { maxLength: 1 }), api.listenFds),
    call('new FrameChannel', fc.tuple(or(fc.record({ maxFrameSize: size }, { requiredKeys: [] }))), (options: unknown) => {
      const [a, b] = UnixSocket.pair('stream')
      try {
        new FrameChannel(a, options as never).close()
      } finally {
        a.close()
        b.close()
      }
    }),
    call(
      'new Message',
      fc.tuple(or(bytes), or(fc.oneof(hostile, fc.constant([]))), ancillary, int32, or(fc.string())),
      (...args: unknown[]) => {
        const message = new (Message as unknown as new (...a: unknown[]) => Message)(...args)
        void message.fds.length
        void message.truncated
        return message
      },
    ),
  )
}

function runSync(call: Call): void {
  let result: unknown
  try {
    result = call.run()
  } catch (error) {
    checkError(error, call.name)
    return
  }
  release(result)
}

/**
 * `from()` with 'fresh': a descriptor made for it (one end of a new pair), which it owns if it
 * succeeds and which is closed here if it refuses.
 */
function adoptFresh(fd: unknown, from: (fd: unknown) => unknown): unknown {
  // Checked again now, not only when generated: a number free then may have been opened since.
  if (fd !== 'fresh') return from(neverOurs(fd))
  const [end, other] = api.socketpair('dgram')
  closeSync(other!)
  try {
    return from(end)
  } catch (error) {
    closeSync(end!)
    throw error
  }
}

/** A frame channel whose peer has already closed: whatever waits on it must fail. */
function goneChannel(type: SocketType): FrameChannel {
  const [ours, theirs] = UnixSocket.pair(type === 'dgram' ? 'stream' : type)
  theirs.close()
  return new FrameChannel(ours)
}

/** The event-loop side: constructors and every method, on fresh sockets each run. */
function asyncCalls(p: Pool): fc.Arbitrary<Call[]> {
  const fresh = fc.constantFrom(...TYPES)
  const call = (name: string, args: fc.Arbitrary<unknown[]>, run: (...args: any[]) => unknown) =>
    args.map((list) => ({ name: describeCall(name, list), run: () => run(...list) }))
  const method = (name: string, args: fc.Arbitrary<unknown[]>) =>
    call(`socket.${name}`, fc.tuple(fresh, args), (type: SocketType, list: unknown[]) => {
      const [socket, peer] = UnixSocket.pair(type)
      try {
        return (socket as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...list)
      } finally {
        // The promise a send returned settles when the socket closes: rejected, or resolved if sent.
        socket.close()
        peer.close()
      }
    })
  const one = fc.oneof(
    call('UnixSocket.pair', fc.tuple(socketType, socketOptions), UnixSocket.pair),
    call('UnixSocket.connect', fc.tuple(path, socketOptions), UnixSocket.connect),
    call('UnixSocket.datagram', fc.tuple(fc.oneof(fc.constant(undefined), path), socketOptions), UnixSocket.datagram),
    call('UnixSocket.from', fc.tuple(fc.oneof(fc.constant('fresh'), hostile.map(sanitize)), socketOptions), (fd: unknown, options: unknown) =>
      adoptFresh(fd, (number) => UnixSocket.from(number as number, options as never)),
    ),
    // A listen error is emitted as 'error', as net.Server does: the promise turns it into a rejection.
    call('UnixServer.listen', fc.tuple(path, socketOptions), (path: string, options: unknown) => {
      const server = UnixServer.listen(path, options as never)
      return new Promise((resolve, reject) => {
        server.once('listening', () => resolve(server))
        server.once('error', reject)
      })
    }),
    call('UnixServer.from', fc.tuple(fc.oneof(fc.constant('fresh'), hostile.map(sanitize)), socketOptions), (fd: unknown, options: unknown) =>
      adoptFresh(fd, (number) => UnixServer.from(number as number, options as never)),
    ),
    call('new UnixSocket', fc.array(hostile.map(sanitize), { maxLength: 4 }), (...args: unknown[]) => new (UnixSocket as unknown as new (...a: unknown[]) => unknown)(...args)),
    call('new UnixServer', fc.array(hostile.map(sanitize), { maxLength: 3 }), (...args: unknown[]) => new (UnixServer as unknown as new (...a: unknown[]) => unknown)(...args)),
    method('send', fc.tuple(data, socketOptions)),
    method('sendTo', fc.tuple(path, data, socketOptions)),
    method('end', fc.array(hostile, { maxLength: 1 })),
    method('close', fc.array(hostile, { maxLength: 1 })),
    method('pause', fc.array(hostile, { maxLength: 1 })),
    method('resume', fc.array(hostile, { maxLength: 1 })),
    method('ref', fc.array(hostile, { maxLength: 1 })),
    method('unref', fc.array(hostile, { maxLength: 1 })),
    call('pool socket send', fc.tuple(poolSocket(p), data, socketOptions), (socket: UnixSocket, ...args: unknown[]) => socket.send(...(args as [never, never]))),
    // The supervisor toolkit. Every call that would wait for a peer gets one that is already gone,
    // so it must fail, never hang; NOTIFY_SOCKET is unset in the test run.
    call('notify', fc.tuple(or(fc.oneof(fc.string(), fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.boolean())))), or(fc.record({ fds: fdNumbers }, { requiredKeys: [] }))), api.notify),
    call('notifyReady', fc.array(or(fc.string()), { maxLength: 1 }), api.notifyReady),
    call('storeFds', fc.tuple(fdNumbers, or(fc.string())), api.storeFds),
    call('sendListeners', fc.tuple(or(fc.constant({})), fc.constantFrom(...TYPES)), (listeners: unknown, type: SocketType) => {
      const channel = goneChannel(type)
      return api.sendListeners(channel, listeners as never).finally(() => channel.close())
    }),
    call('receiveListeners', fc.tuple(or(fc.record({ expect: or(fc.array(fc.string())), acknowledge: or(fc.boolean()) }, { requiredKeys: [] }))), (options: unknown) => {
      const channel = goneChannel('stream')
      return api.receiveListeners(channel, options as never).finally(() => channel.close())
    }),
    call('workerListeners', fc.tuple(or(fc.record({ expect: or(fc.array(fc.string())) }, { requiredKeys: [] }))), (options: unknown) => {
      const [end, other] = api.socketpair('stream')
      closeSync(other!)
      let argument: object
      try {
        // Spreading a hostile object may throw its own error before the call is made.
        argument = { ...(options as object), fd: end }
      } catch (error) {
        closeSync(end!)
        throw error
      }
      return api.workerListeners(argument)
    }),
    call('offerListeners', fc.tuple(path, or(fc.constant({})), or(fc.record({ allow: or(fc.constant(() => false)) }, { requiredKeys: [] }))), api.offerListeners),
    call('takeListeners', fc.tuple(path, or(fc.record({ expect: or(fc.array(fc.string())) }, { requiredKeys: [] }))), api.takeListeners),
    call('spawnWorker', fc.tuple(or(fc.constant({})), or(fc.constantFrom(3, 4))), (listeners: unknown, fd: unknown) =>
      api.spawnWorker(process.execPath, ['-e', ''], { listeners: listeners as never, fd: fd as number }),
    ),
  )
  return fc.array(one, { minLength: 1, maxLength: 4 })
}

async function runAsync(calls: Call[]): Promise<void> {
  const settled: Array<Promise<void>> = []
  for (const call of calls) {
    let result: unknown
    try {
      result = call.run()
    } catch (error) {
      checkError(error, call.name)
      continue
    }
    if (result instanceof Promise) {
      settled.push(
        result.then(
          (value) => release(value),
          (error) => checkError(error, call.name),
        ),
      )
    } else {
      release(result)
    }
  }
  // Sends on the pool may wait for room; the peer drains them.
  await Promise.all(settled)
}

// The properties -----------------------------------------------------------------------------------

test.serial('every synchronous export: only TypeError, RangeError or Node-style errors, and no descriptor left behind', (t) => {
  const before = openFds()
  const p = pool()
  try {
    fc.assert(
      fc.property(syncCalls(p), (call) => {
        const open = openFds()
        runSync(call)
        if (openFds() !== open) throw new Error(`${call.name} left ${openFds() - open} descriptors behind`)
      }),
      { numRuns: Number(process.env.HOSTILE_RUNS ?? 5000), verbose: 1, includeErrorInReport: true },
    )
  } finally {
    p.close()
  }
  t.is(openFds(), before)
})

test.serial('every event-loop constructor and method: defined errors or rejections, no hang, no descriptor left behind', async (t) => {
  // The first child process makes libuv open its signal pipe for SIGCHLD, once for good: do that
  // before counting descriptors.
  await once(spawn(process.execPath, ['-e', '']), 'exit')
  using temp = tempDir('sendmsg-hostile-')
  const cwd = process.cwd()
  // Random names bind sockets in the current directory: make it a throwaway one.
  process.chdir(temp.dir)
  const before = openFds()
  const p = pool()
  // The pool's peers drain whatever is sent to them, descriptors included (closed by the package).
  for (const socket of p.sockets) socket.on('message', () => {})
  try {
    await fc.assert(
      fc.asyncProperty(asyncCalls(p), async (calls) => {
        const open = openFds()
        await runAsync(calls)
        await turn()
        await turn()
        if (openFds() !== open) throw new Error(`${calls.map((call) => call.name).join('; ')} left ${openFds() - open} descriptors behind`)
      }),
      { numRuns: Number(process.env.HOSTILE_RUNS ?? 2000), verbose: 1, includeErrorInReport: true },
    )
  } finally {
    p.close()
    process.chdir(cwd)
  }
  await turn()
  t.is(openFds(), before)
})

test.serial('huge valid sizes are honoured or refused cleanly, without a crash', (t) => {
  const before = openFds()
  const [a, b] = UnixSocket.pair('dgram')
  // Nothing waiting: the buffers are set up and the receive is EAGAIN.
  t.throws(() => api.recvmsg(b.fd, 2 ** 31 - 1), { code: 'EAGAIN' })
  t.throws(() => api.recvmsg(b.fd, 16, api.constants.MAX_CMSG_SIZE), { code: 'EAGAIN' })
  t.throws(() => api.recvmsg(b.fd, 16, api.constants.MAX_CMSG_SIZE + 1), { instanceOf: RangeError })
  t.true(api.CMSG_SPACE(api.constants.MAX_CMSG_SIZE) <= 2 ** 31 - 1)
  t.throws(() => UnixSocket.pair('dgram', { maxMessageSize: 2 ** 31 }), { instanceOf: RangeError })
  a.close()
  b.close()
  t.is(openFds(), before)
})

// What the properties found --------------------------------------------------------------------------

test.serial('UnixSocket.connect() with wrong options refuses before it makes a descriptor', async (t) => {
  const before = openFds()
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { allowHalfOpen: 1.5 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { maxMessageSize: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', 5 as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})

test.serial('the exported classes refuse what would let them adopt or close a descriptor by accident', (t) => {
  const [fd, other] = api.socketpair('stream')
  // UnixServer's constructor is private in TypeScript only.
  const Server = UnixServer as unknown as new (...args: unknown[]) => UnixServer
  t.throws(() => new Server(fd, 'stream', { maxMessageSize: 1, allowHalfOpen: false }), { code: 'ERR_ILLEGAL_CONSTRUCTOR' })
  t.is(api.getSocketFamily(fd!), api.AF_UNIX, 'the descriptor was not adopted')
  // A non-integer would reach close(2) truncated: 1.5 is stdout, NaN is stdin.
  for (const bad of [1.5, NaN, -2, 2 ** 31, '3', undefined]) {
    t.throws(() => new ReceivedFd(bad as number), { instanceOf: bad === '3' || bad === undefined ? TypeError : RangeError }, String(bad))
  }
  t.is(new ReceivedFd(-1).released, true)
  // A Message of one's own making holds ReceivedFd objects, never bare numbers (which it would
  // have to close).
  const MessageClass = Message as unknown as new (...args: unknown[]) => Message
  t.throws(() => new MessageClass(Buffer.alloc(0), 1e9), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new MessageClass(Buffer.alloc(0), [7]), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => new MessageClass('data'), { code: 'ERR_INVALID_ARG_TYPE' })
  // A huge sparse list is refused at its first hole, before anything is allocated for it.
  t.throws(() => api.scmRights(new Array(1e9)), { code: 'ERR_INVALID_ARG_TYPE' })
  closeSync(fd!)
  closeSync(other!)
})
