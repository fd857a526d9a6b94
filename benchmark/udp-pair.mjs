// run.mjs's UDP contenders: one run of lib/udp-pair.mjs as a peer process run.mjs can run (and pin),
// printing {"messages":N,"seconds":S} (the datagrams the receiver counted).
//
//   node udp-pair.mjs <count> <warm> <command> <args...>   ('%ROLE%' in args: recv, then send)
import { runPair } from './lib/udp-pair.mjs'

const [count, warm, command, ...args] = process.argv.slice(2)
// A peer that meets SIGTERM (run.mjs's hang guard) ends its two children with it.
const { received, seconds } = await runPair(command, args, Number(count), Number(warm))
console.log(JSON.stringify({ messages: received, seconds }))
