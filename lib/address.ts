// AF_UNIX addresses as the package spells them: a filesystem path, or on Linux an abstract name
// written with a leading '\0' (Node's own convention).
import { invalidArgType, invalidArgValue } from './errors'

export function addressOf(path: unknown, name = 'path'): Buffer {
  if (typeof path !== 'string') throw invalidArgType(name, 'of type string', path)
  if (path.length === 0) throw invalidArgValue(name, path, 'must not be empty')
  if (path.charCodeAt(0) === 0 && process.platform !== 'linux') {
    throw invalidArgValue(name, path, `is an abstract socket name ('\\0...'), which exists only on Linux, not on ${process.platform}`)
  }
  return Buffer.from(path, 'utf8')
}

/** Adds Node's `address` property to a connect/bind error. */
export function withAddress<E extends Error>(error: E, path: string): E {
  if (typeof (error as { code?: unknown }).code === 'string') {
    Object.defineProperty(error, 'address', { value: path, enumerable: true, configurable: true, writable: true })
  }
  return error
}
