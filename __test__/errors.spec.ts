// Errors: the kernel's refusals come back as Node-style errors, and wrong arguments are TypeError or
// RangeError thrown before any system call, leaving the socket as it was.
import test from 'ava'
import { closeSync } from 'node:fs'

import {
  constants,
  getSocketFamily,
  MSG_DONTWAIT,
  pipe,
  recvmsg,
  SCM_RIGHTS,
  sendmsg,
  socketpair,
  SOL_SOCKET,
  type NodeError,
} from 'sendmsg'

type SystemError = NodeError & { errno: number; syscall: string }

function systemError(t: import('ava').ExecutionContext, fn: () => unknown, code: string, syscall: string): SystemError {
  const error = t.throws(fn, { instanceOf: Error }) as SystemError
  t.is(error.code, code)
  t.is(error.syscall, syscall)
  t.true(error.errno < 0, 'errno is negative, as in Node')
  t.true(error.message.startsWith(`${code}: `), error.message)
  t.true(error.message.endsWith(`, ${syscall}`), error.message)
  return error
}

test('a closed peer is EPIPE, not a SIGPIPE death', (t) => {
  const [a, b] = socketpair()
  closeSync(b)
  const error = systemError(t, () => sendmsg(a, 'x'), 'EPIPE', 'sendmsg')
  t.is(error.errno, -32)
  t.is(error.message, 'EPIPE: broken pipe, sendmsg')
  closeSync(a)
})

test('a closed datagram peer is ECONNREFUSED', (t) => {
  const [a, b] = socketpair('dgram')
  closeSync(b)
  systemError(t, () => sendmsg(a, 'x'), 'ECONNREFUSED', 'sendmsg')
  closeSync(a)
})

test('a descriptor that is not open is EBADF', (t) => {
  const error = systemError(t, () => recvmsg(2 ** 31 - 1), 'EBADF', 'recvmsg')
  t.is(error.message, 'EBADF: bad file descriptor, recvmsg')
  systemError(t, () => sendmsg(2 ** 31 - 1, 'x'), 'EBADF', 'sendmsg')
  systemError(t, () => getSocketFamily(2 ** 31 - 1), 'EBADF', 'getsockname')
})

test('a descriptor that is not a socket is ENOTSOCK', (t) => {
  const [r, w] = pipe()
  systemError(t, () => recvmsg(r), 'ENOTSOCK', 'recvmsg')
  systemError(t, () => sendmsg(w, 'x'), 'ENOTSOCK', 'sendmsg')
  closeSync(r)
  closeSync(w)
})

test('nothing to receive without blocking is EAGAIN', (t) => {
  const [a, b] = socketpair()
  systemError(t, () => recvmsg(b, 16, 0, MSG_DONTWAIT), 'EAGAIN', 'recvmsg')
  closeSync(a)
  closeSync(b)
})

test('an unknown SOL_SOCKET control message type is the kernel\'s EINVAL', (t) => {
  const [a, b] = socketpair()
  systemError(t, () => sendmsg(a, 'x', [[SOL_SOCKET, 0x7777, Buffer.alloc(4)]]), 'EINVAL', 'sendmsg')
  closeSync(a)
  closeSync(b)
})

// Each bad call must throw the named error class and code, send nothing and consume nothing.
const badSends: Array<[string, unknown[], typeof TypeError | typeof RangeError, string]> = [
  ['a number as data', [123], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['an object as data', [{ length: 1 }], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['null as data', [null], TypeError, 'ERR_INVALID_ARG_TYPE'],
  // oxlint-disable-next-line no-sparse-arrays -- the hole is what this case checks
  ['a sparse data array', [[, 'x']], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a non-array ancillary', ['x', 'ancillary'], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['an ancillary object', ['x', { 0: [1, 1, Buffer.alloc(4)], length: 1 }], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a two-item triple', ['x', [[SOL_SOCKET, SCM_RIGHTS]]], TypeError, 'ERR_INVALID_ARG_VALUE'],
  ['a non-array triple', ['x', ['triple']], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a string level', ['x', [['1', SCM_RIGHTS, Buffer.alloc(4)]]], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a fractional type', ['x', [[SOL_SOCKET, 1.5, Buffer.alloc(4)]]], RangeError, 'ERR_OUT_OF_RANGE'],
  ['a string payload', ['x', [[SOL_SOCKET, SCM_RIGHTS, 'abcd']]], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a ragged SCM_RIGHTS payload', ['x', [[SOL_SOCKET, SCM_RIGHTS, Buffer.alloc(3)]]], TypeError, 'ERR_INVALID_ARG_VALUE'],
  ['string flags', ['x', [], '0'], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['fractional flags', ['x', [], 0.5], RangeError, 'ERR_OUT_OF_RANGE'],
  ['flags beyond 32 bits', ['x', [], 2 ** 32], RangeError, 'ERR_OUT_OF_RANGE'],
]

for (const [what, args, errorClass, code] of badSends) {
  test(`sendmsg refuses ${what} before any system call`, (t) => {
    const [a, b] = socketpair('dgram')
    const error = t.throws(() => (sendmsg as (...a: unknown[]) => number)(a, ...args), { instanceOf: errorClass }) as NodeError
    t.is(error.code, code)
    // Nothing reached the peer, and the socket still works.
    t.is((t.throws(() => recvmsg(b, 16, 0, MSG_DONTWAIT)) as NodeError).code, 'EAGAIN')
    sendmsg(a, 'ok')
    t.is(recvmsg(b).data.toString(), 'ok')
    closeSync(a)
    closeSync(b)
  })
}

const badReceives: Array<[string, unknown[], typeof TypeError | typeof RangeError, string]> = [
  ['a negative maxSize', [-1], RangeError, 'ERR_OUT_OF_RANGE'],
  ['a fractional maxSize', [1.5], RangeError, 'ERR_OUT_OF_RANGE'],
  ['a string maxSize', ['16'], TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a huge maxSize', [2 ** 53], RangeError, 'ERR_OUT_OF_RANGE'],
  ['a negative cmsgSize', [16, -1], RangeError, 'ERR_OUT_OF_RANGE'],
  ['a cmsgSize whose CMSG_SPACE overflows', [16, constants.MAX_CMSG_SIZE + 1], RangeError, 'ERR_OUT_OF_RANGE'],
  ['an infinite cmsgSize', [16, Infinity], RangeError, 'ERR_OUT_OF_RANGE'],
  ['NaN flags', [16, 16, NaN], RangeError, 'ERR_OUT_OF_RANGE'],
  ['bigint flags', [16, 16, 0n], TypeError, 'ERR_INVALID_ARG_TYPE'],
]

for (const [what, args, errorClass, code] of badReceives) {
  test(`recvmsg refuses ${what} before any system call`, (t) => {
    const [a, b] = socketpair('dgram')
    sendmsg(a, 'kept')
    const error = t.throws(() => (recvmsg as (...a: unknown[]) => unknown)(b, ...args), { instanceOf: errorClass }) as NodeError
    t.is(error.code, code)
    // The message is still there.
    t.is(recvmsg(b).data.toString(), 'kept')
    closeSync(a)
    closeSync(b)
  })
}

const badSockets: Array<[string, unknown, typeof TypeError | typeof RangeError, string]> = [
  ['a string', '3', TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['a negative number', -1, RangeError, 'ERR_OUT_OF_RANGE'],
  ['a fractional number', 3.5, RangeError, 'ERR_OUT_OF_RANGE'],
  ['undefined', undefined, TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['an object without a descriptor', {}, TypeError, 'ERR_INVALID_ARG_VALUE'],
  ['an object with a string fd', { fd: '3' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
]

for (const [what, socket, errorClass, code] of badSockets) {
  test(`every call refuses ${what} as the socket`, (t) => {
    for (const call of [() => sendmsg(socket as number, 'x'), () => recvmsg(socket as number), () => getSocketFamily(socket as number)]) {
      const error = t.throws(call, { instanceOf: errorClass }) as NodeError
      t.is(error.code, code)
    }
  })
}

test('argument errors read like Node\'s own', (t) => {
  const [a, b] = socketpair()
  t.throws(() => sendmsg(a, 1 as unknown as string), {
    message:
      'The "data" argument must be of type string or an instance of Buffer, TypedArray, DataView or ArrayBuffer, or an array of them. Received type number (1)',
  })
  t.throws(() => recvmsg(b, -1), {
    message: 'The value of "maxSize" is out of range. It must be >= 0 && <= 2147483647. Received -1',
  })
  closeSync(a)
  closeSync(b)
})

test('a throwing getter on a socket object surfaces as its own error, not a crash', (t) => {
  const hostile = {
    get fd(): number {
      throw new Error('boom')
    },
  }
  t.throws(() => sendmsg(hostile as never, 'x'), { message: 'boom' })
})
