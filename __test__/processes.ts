// Child processes for the fault specs: spawning a fixture with extra descriptors, reading its
// stdout line by line, and (Linux) seeing which system call it is blocked in.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { chmodSync, cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

export interface Child {
  process: ChildProcess
  /** The next line the child prints. */
  line(): Promise<string>
  /** The next line, parsed as JSON. */
  json<T = Record<string, unknown>>(): Promise<T>
  /** How it exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * Runs `command args` with stdout piped, stderr inherited and `extraFds` as fds 3, 4, ... in the
 * child. A hang guard kills it after `timeoutMs`.
 */
export function spawnChild(command: string, args: string[], extraFds: number[] = [], timeoutMs = 60_000): Child {
  const stdio: StdioOptions = ['ignore', 'pipe', 'inherit', ...extraFds]
  const child = spawn(command, args, { stdio })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
  const pending: string[] = []
  const waiting: Array<(line: string) => void> = []
  let ended = false
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => {
    const waiter = waiting.shift()
    if (waiter) waiter(line)
    else pending.push(line)
  })
  lines.on('close', () => {
    ended = true
    for (const waiter of waiting.splice(0)) waiter('')
  })
  const line = (): Promise<string> => {
    const next = pending.shift()
    if (next !== undefined) return Promise.resolve(next)
    if (ended) return Promise.resolve('')
    return new Promise((resolve) => waiting.push(resolve))
  }
  const json = async <T>(): Promise<T> => {
    const text = await line()
    try {
      return JSON.parse(text) as T
    } catch {
      throw new Error(`the child printed ${JSON.stringify(text)} where JSON was expected`)
    }
  }
  return { process: child, line, json, exited }
}

/** Runs a fixture with this Node binary. */
export function spawnFixture(name: string, args: string[] = [], extraFds: number[] = [], timeoutMs?: number): Child {
  return spawnChild(process.execPath, [fixture(name), ...args], extraFds, timeoutMs)
}

/** The system call numbers of recvmsg on the architectures whose /proc/PID/syscall we read. */
const RECVMSG: Partial<Record<string, number>> = { x64: 47, arm64: 212 }

/**
 * Linux: resolves once the process's main thread is blocked in recvmsg(2), as /proc/PID/syscall
 * shows it. Rejects on other systems or architectures (callers skip there).
 */
export async function blockedInRecvmsg(pid: number, timeoutMs = 20_000): Promise<void> {
  const number = RECVMSG[process.arch]
  if (process.platform !== 'linux' || number === undefined) throw new Error(`no /proc/PID/syscall reading on ${process.platform}/${process.arch}`)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const current = readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0]
    if (current === String(number)) return
    if (Date.now() > deadline) throw new Error(`process ${pid} never blocked in recvmsg (syscall ${current})`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Linux: whether `signal` is still pending (not yet delivered) for process `pid`. */
export function signalPending(pid: number, signal: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const bit = 1n << BigInt(signal - 1)
  for (const field of ['ShdPnd', 'SigPnd']) {
    const mask = new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1]
    if (mask !== undefined && (BigInt(`0x${mask}`) & bit) !== 0n) return true
  }
  return false
}

/**
 * A copy of fixture `name` that any user can run, with the built package beside it as
 * `node_modules/sendmsg`: a child that drops its privileges cannot read the clone when the clone
 * sits in a private directory (a home under /root is mode 0700). Removed on dispose.
 */
export function publicFixture(name: string): { path: string; [Symbol.dispose](): void } {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dir = mkdtempSync(join(tmpdir(), 'sendmsg-public-'))
  const remove = () => rmSync(dir, { recursive: true, force: true })
  try {
    const packageDir = join(dir, 'node_modules', 'sendmsg')
    mkdirSync(packageDir, { recursive: true })
    for (const entry of readdirSync(root)) {
      if (entry === 'package.json' || entry === 'binding.js' || entry === 'dist' || entry === 'esm' || /^sendmsg\..*\.node$/.test(entry)) {
        cpSync(join(root, entry), join(packageDir, entry), { recursive: true })
      }
    }
    cpSync(fixture(name), join(dir, name))
    openToEveryone(dir)
  } catch (error) {
    remove()
    throw error
  }
  return { path: join(dir, name), [Symbol.dispose]: remove }
}

/** Makes `path` and everything under it readable (directories enterable) by every user. */
function openToEveryone(path: string): void {
  const stat = lstatSync(path)
  if (stat.isSymbolicLink()) return
  chmodSync(path, (stat.mode & 0o777) | (stat.isDirectory() || (stat.mode & 0o100) !== 0 ? 0o555 : 0o444))
  if (stat.isDirectory()) for (const entry of readdirSync(path)) openToEveryone(join(path, entry))
}
