// Runs one peer once, in a placement, and returns its rate; with the CPU load around it.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { childrenCpuSeconds, cpuLoadBetween, cpuTimes } from './system.mjs'

const benchmarkDir = join(dirname(fileURLToPath(import.meta.url)), '..')

// A hang guard, not a measurement: the slowest full-size run takes a few seconds. SIGTERM, so
// that the peer stops its child (a datagram child would not notice its parent going).
const RUN_LIMIT_MS = 120_000

export const PINNED_CPU = 0

/** 'pinned' (both processes on one vCPU with taskset) or 'free'. */
export function placementCommand(placement, command, args) {
  return placement === 'pinned' ? ['taskset', ['-c', String(PINNED_CPU), command, ...args]] : [command, args]
}

export function canPin() {
  return process.platform === 'linux' && spawnSync('taskset', ['-c', String(PINNED_CPU), 'true']).status === 0
}

/**
 * One run: { rate, messages, seconds, cpuLoad, cpuShare } or { error, cpuLoad, cpuShare }. A failed
 * run is kept as a failure (printed and counted) rather than ending the benchmark. cpuShare: the
 * CPU time the run's processes got over its wall time (pinned, below 1 when other programs took
 * part of that CPU; a run's start-up counts too).
 */
export function runPeer({ command, args, env }, placement) {
  const [cmd, argv] = placementCommand(placement, command, args)
  const before = cpuTimes()
  const cpuBefore = childrenCpuSeconds()
  const wallBefore = process.hrtime.bigint()
  const result = spawnSync(cmd, argv, {
    cwd: benchmarkDir,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: RUN_LIMIT_MS,
    killSignal: 'SIGTERM',
  })
  const cpuLoad = cpuLoadBetween(before, cpuTimes())
  const wallSeconds = Number(process.hrtime.bigint() - wallBefore) / 1e9
  const cpuAfter = childrenCpuSeconds()
  const cpuShare = cpuBefore === undefined ? undefined : (cpuAfter - cpuBefore) / wallSeconds
  const lastLine = result.stdout?.trim().split('\n').pop()
  if (result.error || result.status !== 0 || !lastLine) {
    const why = result.error?.message ?? `exit ${result.status ?? result.signal}`
    return { error: `${why}: ${(result.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}`, cpuLoad, cpuShare }
  }
  try {
    const { messages, seconds } = JSON.parse(lastLine)
    return { rate: messages / seconds, messages, seconds, cpuLoad, cpuShare }
  } catch {
    return { error: `unreadable result: ${lastLine}`, cpuLoad, cpuShare }
  }
}
