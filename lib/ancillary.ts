// Ancillary data as Twisted spells it: a list of `[level, type, data]` triples. Builders and
// parsers for the common ones, and the check that turns a caller's list into what the binding takes.
import { binaryOf } from './bytes'
import { constants } from './constants'
import { descriptorsOf, type DescriptorLike } from './fd'
import { invalidArgType, invalidArgValue, validateArray, validateInt32 } from './errors'

/**
 * One control message to send: level (e.g. SOL_SOCKET), type (e.g. SCM_RIGHTS) and payload.
 *
 * @example const item: AncillaryItem = [SOL_SOCKET, SCM_RIGHTS, new Int32Array([fd])]
 */
export type AncillaryItem = readonly [level: number, type: number, data: ArrayBufferView | ArrayBuffer]
/**
 * One control message received. Descriptors in SCM_RIGHTS payloads (and the pidfd of an SCM_PIDFD
 * one) are now the caller's to close.
 *
 * @example for (const [level, type, data] of recvmsg(sock).ancillary) console.log(level, type, data)
 */
export type ReceivedAncillaryItem = [level: number, type: number, data: Buffer]

const FD_SIZE = 4

/** Checks a caller's list and returns it as `[level, type, Uint8Array]` triples. */
/** @internal */
export function ancillaryOf(value: unknown, name: string): Array<[number, number, Uint8Array]> {
  const list = validateArray(value, name)
  const items = new Array<[number, number, Uint8Array]>(list.length)
  for (let i = 0; i < list.length; i++) {
    const item = list[i]
    const itemName = `${name}[${i}]`
    if (!Array.isArray(item)) throw invalidArgType(itemName, 'a [level, type, data] array', item)
    if (item.length !== 3) throw invalidArgValue(itemName, item, 'must have exactly three items: [level, type, data]')
    const level = validateInt32(item[0], `${itemName}[0]`)
    const type = validateInt32(item[1], `${itemName}[1]`)
    const data = binaryOf(item[2], `${itemName}[2]`)
    if (level === constants.SOL_SOCKET && type === constants.SCM_RIGHTS && data.byteLength % FD_SIZE !== 0) {
      throw invalidArgValue(`${itemName}[2]`, data, 'must hold whole 32-bit descriptor numbers (a multiple of 4 bytes)')
    }
    items[i] = [level, type, data]
  }
  return items
}

/**
 * The SCM_RIGHTS triple that copies `fds` into the receiving process: the descriptors packed as
 * native-endian 32-bit integers, as the kernel reads them.
 *
 * @example sendmsg(sock, 'here', [scmRights([fd, server])])
 */
export function scmRights(fds: readonly DescriptorLike[]): AncillaryItem {
  // Checked before the buffer is made: a sparse `new Array(1e9)` is refused at its first hole, not
  // after allocating 4 GB for it.
  const numbers = descriptorsOf(fds, 'fds')
  const packed = Buffer.alloc(numbers.length * FD_SIZE)
  new Int32Array(packed.buffer, packed.byteOffset, numbers.length).set(numbers)
  return [constants.SOL_SOCKET, constants.SCM_RIGHTS, packed]
}

/**
 * The descriptors in a payload of native-endian 32-bit integers.
 *
 * @example const fds = unpackFds(data) // data from a [SOL_SOCKET, SCM_RIGHTS, data] item
 */
export function unpackFds(data: ArrayBufferView): number[] {
  const bytes = binaryOf(data, 'data')
  const count = Math.floor(bytes.byteLength / FD_SIZE)
  // Copy first: the payload may not be 4-byte aligned.
  const aligned = new Int32Array(count)
  new Uint8Array(aligned.buffer).set(bytes.subarray(0, count * FD_SIZE))
  return Array.from(aligned)
}

/**
 * Every descriptor in the SCM_RIGHTS items of received ancillary data, in order. The caller owns
 * them and must close them (`fs.closeSync`).
 *
 * @example const [fd] = fdsFromAncillary(recvmsg(sock).ancillary)
 */
export function fdsFromAncillary(ancillary: readonly (readonly [number, number, ArrayBufferView])[]): number[] {
  validateArray(ancillary, 'ancillary')
  const fds: number[] = []
  for (let i = 0; i < ancillary.length; i++) {
    const item: unknown = ancillary[i]
    if (!Array.isArray(item)) throw invalidArgType(`ancillary[${i}]`, 'a [level, type, data] array', item)
    const [level, type, data] = item as [unknown, unknown, ArrayBufferView]
    if (level === constants.SOL_SOCKET && type === constants.SCM_RIGHTS) fds.push(...unpackFds(data))
  }
  return fds
}
