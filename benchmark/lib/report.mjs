// The printed tables: per placement, every contender's median and spread with its ratio to the
// row's reference, then each target and whether it is met. Markdown, so that they can be quoted.
import { pairedRatio, summarize } from './stats.mjs'

const integer = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const ratio = (x) => (!Number.isFinite(x) ? '–' : x >= 10 ? `${x.toFixed(1)}x` : `${x.toFixed(2)}x`)
const percent = (x) => `${Math.round(x * 100)}%`

/** A contender's rates per run, NaN for a failed run, so that run i stays run i. */
export const ratesOf = (contender) => contender.samples.map((sample) => sample.rate ?? Number.NaN)

function spreadOfRatio(r) {
  return Number.isFinite(r.min) ? `${ratio(r.ofMedians)} (${ratio(r.min)}–${ratio(r.max)})` : ratio(r.ofMedians)
}

export function printSystem(out, { system, checkout, loadBefore, loadAfter, runs, quick }) {
  out(`sendmsg benchmark: ${system.cpuModel}, ${system.cpus} CPUs, Node ${system.node}, ${system.kernel}`)
  out(`checkout ${checkout.commit ?? 'unknown'}${checkout.dirty ? ' with uncommitted changes' : ''}`)
  out(`${runs} run(s) per figure${quick ? ' (--quick: shorter timed runs)' : ''}, contenders interleaved run by run (A B C A B C ...), warm-up before every timed run`)
  out(`load average (1, 5, 15 min): ${loadBefore.join(', ')} before, ${loadAfter.join(', ')} after`)
  out('figures: median (min–max) over the runs; ratios: ratio of medians (min–max of the per-run ratios, runs paired)')
}

/** The CPU load while a placement's runs ran: for pinned runs, the other CPUs are not ours. */
export function describeLoad(placement, samples, pinnedCpu) {
  const loads = samples.map((s) => s.cpuLoad).filter(Boolean)
  if (loads.length === 0) return 'CPU load: not available'
  const cpus = Object.keys(loads[0])
  const parts = []
  for (const cpu of cpus) {
    const busy = summarize(loads.map((l) => l[cpu]?.busy ?? Number.NaN))
    const steal = summarize(loads.map((l) => l[cpu]?.steal ?? Number.NaN))
    const whose = placement === 'pinned' ? (cpu === `cpu${pinnedCpu}` ? ' (ours)' : ' (others)') : ''
    parts.push(`${cpu}${whose} busy ${percent(busy.median)} (${percent(busy.min)}–${percent(busy.max)})${steal.max > 0.005 ? `, steal ${percent(steal.median)}` : ''}`)
  }
  let share = ''
  const shares = summarize(samples.map((s) => s.cpuShare ?? Number.NaN))
  if (shares.n > 0) {
    share =
      placement === 'pinned'
        ? `\nCPU our processes got on cpu${pinnedCpu} (their CPU time over wall time, start-up included; the rest went idle or to other programs): ${percent(shares.median)} (${percent(shares.min)}–${percent(shares.max)})`
        : `\nCPUs our processes used (CPU time over wall time): ${shares.median.toFixed(2)} (${shares.min.toFixed(2)}–${shares.max.toFixed(2)})`
  }
  return `CPU load during these runs, median (min–max) per run: ${parts.join('; ')}${share}`
}

export function printPlacement(out, { placement, title, rows, pinnedCpu }) {
  out(`\n## ${title}\n`)
  out(describeLoad(placement, rows.flatMap((row) => row.contenders.flatMap((c) => c.samples)), pinnedCpu))
  out('')
  out('| scenario | contender | median | min–max | ratio to reference |')
  out('| --- | --- | ---: | ---: | ---: |')
  for (const row of rows) {
    const reference = row.contenders.find((c) => c.id === row.reference)
    let first = true
    for (const contender of row.contenders) {
      const name = first ? row.name : ''
      first = false
      if (contender.unavailable) {
        out(`| ${name} | ${contender.label} | ${contender.unavailable} | | |`)
        continue
      }
      const rates = ratesOf(contender).map((r) => r * row.perMessage)
      const s = summarize(rates)
      const failed = contender.samples.filter((sample) => sample.error).length
      const failures = failed > 0 ? ` (${failed} run(s) failed)` : ''
      const vs = contender === reference ? '1.00x (reference)' : reference && !reference.unavailable ? spreadOfRatio(pairedRatio(ratesOf(contender), ratesOf(reference))) : '–'
      // A round trip also as its latency, the figure people know from C.
      const latency = row.unit === 'round trips/s' && Number.isFinite(s.median) ? ` (${(1e6 / s.median).toFixed(1)} µs)` : ''
      out(`| ${name} | ${contender.label} | ${integer(s.median)} ${row.unit}${latency}${failures} | ${integer(s.min)}–${integer(s.max)} | ${vs} |`)
    }
    if (row.note) out(`| | _${row.note}_ | | | |`)
  }
}

/** Each target as a line of a table, and whether it is met; returns the rows missed. */
export function printTargets(out, rows) {
  out('\n| target | measured | met? |')
  out('| --- | ---: | --- |')
  const missed = []
  let checked = 0
  for (const row of rows) {
    for (const target of row.targets) {
      const of = row.contenders.find((c) => c.id === target.contender)
      const against = row.contenders.find((c) => c.id === target.against)
      const what = `${row.name}: ${of?.label ?? target.contender} ≥ ${target.atLeast}x ${against?.label ?? target.against}`
      if (target.notApplicable) {
        out(`| ${row.name}: ${of.label} ≥ ${target.atLeast}x Node's net | n/a: ${target.notApplicable} | – |`)
        continue
      }
      if (!of || !against || of.unavailable || against.unavailable) {
        out(`| ${what} | not measured: ${(of?.unavailable || against?.unavailable) ?? 'contender missing'} | – |`)
        continue
      }
      const r = pairedRatio(ratesOf(of), ratesOf(against))
      const met = r.ofMedians >= target.atLeast
      checked++
      if (!met) missed.push({ what, ratio: r.ofMedians })
      out(`| ${what} | ${spreadOfRatio(r)} | ${met ? 'yes' : 'NO'} (${r.runsAtLeast(target.atLeast)} of ${r.perRun.length} runs) |`)
    }
  }
  out(`\n${checked - missed.length} of ${checked} measured targets met.`)
  return missed
}

/** --compare: this checkout against the other, per row, run for run. */
export function printComparison(out, rows, otherCheckout) {
  out(`\n| this checkout vs ${otherCheckout} | this | other | this / other |`)
  out('| --- | ---: | ---: | ---: |')
  for (const row of rows) {
    for (const other of row.contenders.filter((c) => c.comparedWith)) {
      const ours = row.contenders.find((c) => c.id === other.comparedWith)
      const a = summarize(ratesOf(ours).map((r) => r * row.perMessage))
      const b = summarize(ratesOf(other).map((r) => r * row.perMessage))
      out(
        `| ${row.name}: ${ours.label} | ${integer(a.median)} (${integer(a.min)}–${integer(a.max)}) | ${integer(b.median)} (${integer(b.min)}–${integer(b.max)}) | ${spreadOfRatio(pairedRatio(ratesOf(ours), ratesOf(other)))} |`,
      )
    }
  }
}
