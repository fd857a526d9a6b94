// Argument errors written the way Node writes its own (`code` ERR_INVALID_ARG_TYPE,
// ERR_OUT_OF_RANGE, ERR_INVALID_ARG_VALUE), and the validators that throw them. Everything a
// caller passes is checked here, before any system call.
import { inspect } from 'node:util'

/**
 * An error with Node's `code` property: `'EPIPE'`, `'ERR_INVALID_ARG_TYPE'`, ...
 *
 * @example try { sendmsg(sock, 'x') } catch (error) { if ((error as NodeError).code === 'EPIPE') reconnect() }
 */
export interface NodeError extends Error {
  code: string
}

function withCode<E extends Error>(error: E, code: string): E & NodeError {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true })
  return error as E & NodeError
}

// Describes a value without trusting it: a hostile getter or Proxy must not replace our error.
function describe(value: unknown): string {
  try {
    if (value === null || value === undefined) return `Received ${value}`
    if (typeof value === 'function') return `Received function ${value.name || '<anonymous>'}`
    if (typeof value === 'object') {
      const name = (value as { constructor?: { name?: unknown } }).constructor?.name
      if (typeof name === 'string' && name !== '') return `Received an instance of ${name}`
      return `Received ${inspect(value, { depth: -1 })}`
    }
    let shown = inspect(value, { colors: false })
    if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
    return `Received type ${typeof value} (${shown})`
  } catch {
    return 'Received a value that could not be inspected'
  }
}

function show(value: unknown): string {
  try {
    const shown = inspect(value, { depth: 0, breakLength: Infinity })
    return shown.length > 128 ? `${shown.slice(0, 128)}...` : shown
  } catch {
    return '<uninspectable>'
  }
}

/** @internal */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & NodeError {
  return withCode(new TypeError(`The "${name}" argument must be ${expected}. ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE')
}

/** @internal */
export function outOfRange(name: string, range: string, actual: unknown): RangeError & NodeError {
  return withCode(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${show(actual)}`),
    'ERR_OUT_OF_RANGE',
  )
}

/** @internal */
export function invalidArgValue(name: string, actual: unknown, reason: string): TypeError & NodeError {
  return withCode(new TypeError(`The argument '${name}' ${reason}. Received ${show(actual)}`), 'ERR_INVALID_ARG_VALUE')
}

/** An error with a code of this package's own, for states rather than arguments. */
/** @internal */
export function stateError(code: string, message: string, options?: ErrorOptions): Error & NodeError {
  return withCode(new Error(message, options), code)
}

/** @internal */
export const INT32_MIN = -(2 ** 31)
/** @internal */
export const INT32_MAX = 2 ** 31 - 1

/** Whether `value` is an integer in `[min, max]` (the cheap check hot paths make before naming anything). */
/** @internal */
export function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

/** An integer in `[min, max]`, or a TypeError/RangeError naming `name`. */
/** @internal */
export function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value)
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value)
  return value
}

/** @internal */
export function validateInt32(value: unknown, name: string): number {
  return validateInteger(value, name, INT32_MIN, INT32_MAX)
}

/** A real array (sparse slots are caught by the per-item checks, which see `undefined`). */
/** @internal */
export function validateArray(value: unknown, name: string): readonly unknown[] {
  if (!Array.isArray(value)) throw invalidArgType(name, 'an instance of Array', value)
  return value
}

/** @internal */
export function validateOneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalidArgValue(name, value, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`)
  }
  return value as T
}
