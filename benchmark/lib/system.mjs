// What the figures depend on besides the code: the processor (ratios to C differ between
// processors of the same kind), the number of CPUs, Node, the kernel, and the load other
// programs put on the machine during the run.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'

export function describeSystem() {
  let model = cpus()[0]?.model ?? 'unknown'
  try {
    // /proc/cpuinfo's "model name" is what lscpu shows; os.cpus() can shorten it.
    model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? model
  } catch {}
  return { cpuModel: model, cpus: cpus().length, node: process.version, kernel: `${process.platform} ${release()}` }
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage() {
  return loadavg().map((x) => Math.round(x * 100) / 100)
}

/**
 * Per-CPU time counters from /proc/stat (Linux), in clock ticks: busy (user, nice, system, irq,
 * softirq, steal), idle (idle, iowait) and steal (time the hypervisor gave to other guests).
 * Undefined elsewhere.
 */
export function cpuTimes() {
  let text
  try {
    text = readFileSync('/proc/stat', 'utf8')
  } catch {
    return undefined
  }
  const times = {}
  for (const line of text.split('\n')) {
    const match = /^(cpu\d+)\s+(.*)$/.exec(line)
    if (!match) continue
    const [user, nice, system, idle, iowait, irq, softirq, steal = 0] = match[2].split(/\s+/).map(Number)
    times[match[1]] = { busy: user + nice + system + irq + softirq + steal, idle: idle + iowait, steal }
  }
  return times
}

/** Per CPU, between two cpuTimes() readings: the busy and steal fractions of the elapsed time. */
export function cpuLoadBetween(before, after) {
  if (!before || !after) return undefined
  const load = {}
  for (const [cpu, end] of Object.entries(after)) {
    const start = before[cpu]
    if (!start) continue
    const total = end.busy + end.idle - (start.busy + start.idle)
    if (total <= 0) continue
    load[cpu] = { busy: (end.busy - start.busy) / total, steal: (end.steal - start.steal) / total }
  }
  return load
}

let clockTicksPerSecond
/**
 * CPU seconds used so far by this process's waited-for children, grandchildren included once
 * their parents have waited for them (every peer reaps its child before it exits): the difference
 * over one run is what that run's processes used. Undefined where /proc is missing.
 */
export function childrenCpuSeconds() {
  let stat
  try {
    stat = readFileSync('/proc/self/stat', 'utf8')
  } catch {
    return undefined
  }
  clockTicksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100
  // The fields after the command name (which may hold spaces), from field 3 (state) on: cutime
  // and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond
}

/** Which code ran: the git commit of a checkout, and whether it had uncommitted changes. */
export function describeCheckout(dir) {
  const git = (...args) => spawnSync('git', args, { cwd: dir, encoding: 'utf8', timeout: 10_000 })
  const head = git('rev-parse', '--short=12', 'HEAD')
  if (head.status !== 0) return { commit: undefined, dirty: undefined }
  return { commit: head.stdout.trim(), dirty: git('status', '--porcelain', '--untracked-files=no').stdout.trim() !== '' }
}
