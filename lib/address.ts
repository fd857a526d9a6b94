// AF_UNIX addresses as the package spells them: a filesystem path, or on Linux an abstract name
// written with a leading '\0' (Node's own convention).
import { getSystemErrorMap } from 'node:util'

import { invalidArgType, invalidArgValue } from './errors'

/** @internal */
export function addressOf(path: unknown, name = 'path'): Buffer {
  if (typeof path !== 'string') throw invalidArgType(name, 'of type string', path)
  if (path.length === 0) throw invalidArgValue(name, path, 'must not be empty')
  if (path.charCodeAt(0) === 0 && process.platform !== 'linux') {
    throw invalidArgValue(name, path, `is an abstract socket name ('\\0...'), which exists only on Linux, not on ${process.platform}`)
  }
  return Buffer.from(path, 'utf8')
}

/**
 * Words a system error of a connect, bind or listen on `path` as Node's net module words its own,
 * and adds `address` and `syscall`: `connect ENOENT /tmp/app.sock`, `listen EADDRINUSE: address
 * already in use /tmp/app.sock` (a bind made for a listen is reported as the listen, as Node does
 * for pipes). Errors without a system `code` (argument errors) are returned as they are.
 */
/** @internal */
export function withAddress<E extends Error>(error: E, syscall: 'connect' | 'bind' | 'listen', path: string): E {
  const { code, errno } = error as { code?: unknown; errno?: unknown }
  if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return error
  let message = `${syscall} ${code} ${path}`
  if (syscall === 'listen') {
    const description = typeof errno === 'number' ? getSystemErrorMap().get(errno)?.[1] : undefined
    message = description === undefined ? message : `listen ${code}: ${description} ${path}`
  }
  const previous = error.message
  error.message = message
  if (typeof error.stack === 'string') error.stack = error.stack.replace(previous, message)
  for (const [key, value] of [['syscall', syscall], ['address', path]] as const) {
    Object.defineProperty(error, key, { value, enumerable: true, configurable: true, writable: true })
  }
  return error
}
