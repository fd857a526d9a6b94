// Summaries of repeated measurements: every figure the benchmark prints is a median with its
// spread (min and max), never a single run.

/** The median (the mean of the middle two for an even count); NaN for no values. */
export function median(values) {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** { median, min, max, n } of the finite values. */
export function summarize(values) {
  const finite = values.filter(Number.isFinite)
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), n: finite.length }
}

/**
 * The ratio of two contenders measured in the same runs: the ratio of their medians, and the
 * min and max of the per-run ratios (runs are paired: run i of each contender ran back to back).
 * `runsAtLeast(target)` counts the paired runs whose ratio reaches `target`.
 */
export function pairedRatio(numerator, denominator) {
  const perRun = []
  for (let i = 0; i < Math.min(numerator.length, denominator.length); i++) {
    if (Number.isFinite(numerator[i]) && Number.isFinite(denominator[i]) && denominator[i] > 0) perRun.push(numerator[i] / denominator[i])
  }
  const { min, max } = summarize(perRun)
  return {
    ofMedians: median(numerator.filter(Number.isFinite)) / median(denominator.filter(Number.isFinite)),
    min,
    max,
    perRun,
    runsAtLeast: (target) => perRun.filter((ratio) => ratio >= target).length,
  }
}
