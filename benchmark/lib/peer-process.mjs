// What every Node peer of benchmark/run.mjs does the same way: watch its child so that no run can
// hang or pass off a crash as a result, and print the one result line run.mjs reads.
//
// The protocol of every peer (Node and C): the parent spawns a child, runs `warmup` untimed
// messages or round trips first (so that both V8s have compiled and optimized the hot paths), then
// times `count` more, and prints {"messages":count,"seconds":S} as its last stdout line.

/**
 * Fails the run if `child` exits before `finish()` is called, and stops the child when run.mjs
 * stops this process (SIGTERM, its time limit): a datagram child would not notice its parent going.
 * After `finish()`, the child's exit ends this process.
 */
export function guardChild(child, peerName) {
  let finished = false
  child.once('exit', (code, signal) => {
    if (finished) return process.exit(0)
    console.error(`${peerName}: the child exited (${code ?? signal}) before the run was over`)
    process.exit(1)
  })
  process.once('SIGTERM', () => {
    child.kill('SIGKILL')
    process.exit(1)
  })
  // This process crashing (an uncaught exception) must not leave a datagram child behind either.
  process.once('exit', () => {
    if (!finished) child.kill('SIGKILL')
  })
  return {
    finish() {
      finished = true
    },
  }
}

/** A stopwatch in seconds. */
export function startClock() {
  const start = process.hrtime.bigint()
  return () => Number(process.hrtime.bigint() - start) / 1e9
}

/** The result line. */
export function printResult(messages, seconds) {
  console.log(JSON.stringify({ messages, seconds }))
}
