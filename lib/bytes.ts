// Turns the data a caller may pass (Buffer, any typed array or DataView, ArrayBuffer, string, or a
// list of them for gather I/O) into the list of Uint8Array views the binding takes. Views share
// memory with the caller's buffers: nothing is copied but strings.
import { invalidArgType } from './errors'

/**
 * One piece of data: bytes in any form, or a string sent as UTF-8.
 *
 * @example const piece: Bytes = Buffer.from('hello')
 */
export type Bytes = string | ArrayBufferView | ArrayBuffer | SharedArrayBuffer
/**
 * Data for one message: one piece, or several sent together with gather I/O.
 *
 * @example const data: Data = ['header', new Uint8Array([1, 2, 3])]
 */
export type Data = Bytes | readonly Bytes[]

const EXPECTED_DATA = 'of type string or an instance of Buffer, TypedArray, DataView or ArrayBuffer, or an array of them'
const EXPECTED_BINARY = 'an instance of Buffer, TypedArray, DataView or ArrayBuffer'

function viewOf(value: unknown): Uint8Array | undefined {
  if (value instanceof Uint8Array) return value
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return new Uint8Array(value)
  return undefined
}

/** Binary data only: control-message payloads, where a string would be a mistake. */
/** @internal */
export function binaryOf(value: unknown, name: string): Uint8Array {
  const view = viewOf(value)
  if (view === undefined) throw invalidArgType(name, EXPECTED_BINARY, value)
  return view
}

/** Message data: binary, or a string sent as UTF-8. */
/** @internal */
export function bytesOf(value: unknown, name: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8')
  const view = viewOf(value)
  if (view === undefined) throw invalidArgType(name, EXPECTED_DATA, value)
  return view
}

/** @internal */
export function chunksOf(data: unknown, name: string): Uint8Array[] {
  if (data instanceof Uint8Array) return [data]
  if (!Array.isArray(data)) return [bytesOf(data, name)]
  const chunks = new Array<Uint8Array>(data.length)
  for (let i = 0; i < data.length; i++) {
    const item: unknown = data[i]
    chunks[i] = item instanceof Uint8Array ? item : bytesOf(item, `${name}[${i}]`)
  }
  return chunks
}

/** @internal */
export function totalLength(chunks: readonly Uint8Array[]): number {
  let total = 0
  for (const chunk of chunks) total += chunk.byteLength
  return total
}
