// What the specs share: counting the process's open descriptors, reading descriptor flags, small
// wrappers around raw-fd I/O, temporary folders and waiting for a message.
import { once } from 'node:events'
import { closeSync, fstatSync, mkdtempSync, readFileSync, readSync, readdirSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import { release, tmpdir } from 'node:os'
import { join } from 'node:path'

import { dup, type Message, type UnixSocket } from 'sendmsg'

const FD_DIR = process.platform === 'linux' ? '/proc/self/fd' : '/dev/fd'

/**
 * One turn of the event loop: a message's unclaimed descriptors are closed when its delivery
 * ends, after the microtasks its handler queued (which includes an `await` that was waiting for
 * it), so counts taken right there still include them.
 */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Descriptors open in this process now. */
export function openFds(): number {
  return readdirSync(FD_DIR).length
}

/** Whether `fd` has FD_CLOEXEC (Linux: from /proc/self/fdinfo; elsewhere unknown). */
export function isCloexec(fd: number): boolean | undefined {
  if (process.platform !== 'linux') return undefined
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
  const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)![1]!, 8)
  return (flags & 0o2000000) !== 0
}

/** Reads until EOF from a blocking descriptor. */
export function readToEnd(fd: number): Buffer {
  const chunks: Buffer[] = []
  const buffer = Buffer.alloc(4096)
  for (;;) {
    const n = readSync(fd, buffer)
    if (n === 0) return Buffer.concat(chunks)
    chunks.push(Buffer.from(buffer.subarray(0, n)))
  }
}

export function closeAll(...fds: number[]): void {
  for (const fd of fds) closeSync(fd)
}

export function inode(fd: number): string {
  const stat = fstatSync(fd)
  return `${stat.dev}:${stat.ino}`
}

/**
 * A new empty folder under the system's temporary one, removed with everything in it when the
 * scope that holds it ends, a failed assertion or a throw included: `using temp = tempDir()`.
 */
export function tempDir(prefix = 'sendmsg-'): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) }
}

/** The next message `socket` emits. */
export function nextMessage(socket: UnixSocket): Promise<Message> {
  return once(socket, 'message').then(([message]) => message as Message)
}

/**
 * Whether this is Linux `major.minor` or later (from `os.release()`), for tests of what newer
 * kernels do. Elsewhere false.
 */
export function linuxAtLeast(major: number, minor: number): boolean {
  if (process.platform !== 'linux') return false
  const [have = 0, haveMinor = 0] = release().split(/[.-]/).map(Number)
  return have > major || (have === major && haveMinor >= minor)
}

/** The `Pid:` line of a descriptor's /proc/self/fdinfo entry (pidfds have one), or undefined. */
export function fdinfoPid(fd: number): number | undefined {
  const line = /^Pid:\s*(-?\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
  return line === null ? undefined : Number(line[1])
}

/**
 * A listening TCP socket on 127.0.0.1 as a bare descriptor that nothing accepts on (the
 * net.Server that made it is closed), and its port.
 */
export async function tcpListener(): Promise<{ fd: number; port: number }> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const fd = dup(server)
  server.close()
  await once(server, 'close')
  return { fd, port }
}
