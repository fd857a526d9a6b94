// One run of a one-way UDP benchmark: a receiver and a sender of the same contender (udp-peer.mjs
// or native/udp-peer.c, which describe the protocol and the flow control), the receiver started
// first; the rate is what the receiver counted. Run through ../udp-pair.mjs by run.mjs, whose
// placement (pinned or free) the two processes inherit.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

/** The next line of `lines` as JSON, within `ms`. */
function nextJson(lines, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    lines.once('line', (line) => {
      clearTimeout(timer)
      resolve(JSON.parse(line))
    })
  })
}

/**
 * Runs `command args` twice, with '%ROLE%' in `args` as 'recv' and then 'send' (the sender also
 * gets the receiver's port, `warm` and `count`). Resolves { received, seconds, lost }.
 */
export async function runPair(command, args, count, warm, env = process.env) {
  const withRole = (role) => args.map((arg) => (arg === '%ROLE%' ? role : arg))
  const receiver = spawn(command, withRole('recv'), { stdio: ['ignore', 'pipe', 'inherit'], env })
  const lines = createInterface({ input: receiver.stdout })
  let sender
  try {
    const { port } = await nextJson(lines, 10_000, 'receiver')
    sender = spawn(command, [...withRole('send'), String(port), String(warm), String(count)], { stdio: ['ignore', 'ignore', 'inherit'], env })
    const { received, seconds } = await nextJson(lines, 120_000, 'run')
    return { received, seconds, lost: count - received }
  } finally {
    sender?.kill()
    receiver.kill()
  }
}
