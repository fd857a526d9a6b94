// What the benchmark measures: each row's contenders (how to run them) and its targets.
//
// Contenders:
//   C          native/peer.c: one blocking sendmsg/recvmsg per message, the kernel's own cost
//   ceiling    native/ceiling.c via ceiling-peer.mjs: the least any event-loop design in Node can
//              do per message (one uv_poll wakeup, one recvmsg, one JS call, one direct sendmsg):
//              the ceiling for round trips; one way it is no ceiling, since batching (recvmmsg,
//              many messages per wakeup) beats one recvmsg per wakeup
//   sendmsg    this package (sendmsg-peer.mjs), through its public API only
//   Node net   Node's own net module (net-peer.mjs): round trips without descriptors
//   Node IPC   Node's subprocess.send(message, handle) (node-ipc-peer.mjs): listening sockets
//   UDP rows   1,200-byte datagrams one way, receiver and sender run by udp-pair.mjs: Node's dgram,
//              UdpSocket (udp-peer.mjs) and C (native/udp-peer.c), per datagram, batched
//              (sendmmsg/recvmmsg) and with GSO+GRO, all with the same flow control
// With --compare=<checkout>, every sendmsg contender gets a twin running that checkout's build;
// with --runtimes, one per runtime named (Node with the poller thread, Bun, Deno), each measured
// against C in the same run like every contender.
import { PACKAGE_ENV } from './load-package.mjs'

// Untimed warm-up before every timed run, in messages or round trips. A V8 process is still
// compiling for its first tens of thousands of round trips (about 100 µs each over the first
// 2,000, 28-32 µs over 20,000, 24 µs over 100,000 when timed from the start); measured here, the
// timed figure stops improving after 10,000-30,000 round trips of warm-up. C runs the same
// warm-up so that every contender's run has the same shape.
const ROUND_TRIP_WARMUP = 30_000

/**
 * The rows, for one session. `scale` shortens the timed part (--quick); the warm-up is never
 * shortened, since a cold run measures the compiler, not the code.
 */
export function scenarios({ cPeer, udpPeer, ceilingError, compare, runtimes = [], scale }) {
  const timed = (count, minimum = 1000) => String(Math.max(minimum, Math.round(count * scale)))
  const node = process.execPath

  const c = (mode, type, payload, fds, count, warmup) => ({
    id: 'c',
    label: 'C, one syscall per message',
    command: cPeer,
    args: [mode, type, String(payload), String(fds), count, String(warmup)],
  })
  const ceiling = (mode, type, payload, fds, count, warmup) => ({
    id: 'ceiling',
    label: 'minimal Node-API addon (1 recvmsg per wakeup)',
    command: node,
    args: ['ceiling-peer.mjs', mode, type, String(payload), String(fds), count, String(warmup)],
    unavailable: ceilingError && `not built: ${ceilingError}`,
  })
  // This package, and with --compare the other checkout's build of it, run for run.
  const sendmsg = (mode, type, payload, fds, count, warmup, { id = 'sendmsg', label = 'sendmsg' } = {}) => {
    const args = ['sendmsg-peer.mjs', mode, type, String(payload), String(fds), count, String(warmup)]
    const ours = { id, label, command: node, args }
    const inRuntimes = runtimes.map((runtime) => ({
      id: `${id}@${runtime.name}`,
      label: `${label} on ${runtime.label}`,
      command: runtime.command,
      args: [...runtime.args, ...args],
      env: runtime.env,
    }))
    if (!compare) return [ours, ...inRuntimes]
    return [ours, { ...ours, id: `${id}@compare`, label: `${label} (${compare})`, env: { [PACKAGE_ENV]: compare }, comparedWith: id }, ...inRuntimes]
  }

  const roundTrips = (fds) => {
    const count = timed(30_000)
    const row = {
      name: fds === 0 ? 'round trips, no fd' : 'round trips, 1 fd',
      unit: 'round trips/s',
      perMessage: 1,
      contenders: [
        c('roundtrip', 'stream', 64, fds, count, ROUND_TRIP_WARMUP),
        ceiling('roundtrip', 'stream', 64, fds, count, ROUND_TRIP_WARMUP),
        ...sendmsg('roundtrip', 'stream', 64, fds, count, ROUND_TRIP_WARMUP),
      ],
      targets: [{ contender: 'sendmsg', against: 'ceiling', atLeast: 0.9 }],
    }
    if (fds === 0) {
      row.contenders.push({ id: 'net', label: "Node's net", command: node, args: ['net-peer.mjs', '64', count, String(ROUND_TRIP_WARMUP)] })
      row.targets.push({ contender: 'sendmsg', against: 'net', atLeast: 1.3 })
    } else {
      row.targets.push({ contender: 'sendmsg', against: 'net', atLeast: 1.3, notApplicable: "Node's net cannot pass descriptors" })
    }
    return row
  }

  const oneWay = ({ name, type, fds, count, warmup, unit, target }) => ({
    name,
    unit,
    perMessage: unit === 'fds/s' ? fds : 1,
    contenders: [
      c('oneway', type, 64, fds, timed(count), warmup),
      ceiling('oneway', type, 64, fds, timed(count), warmup),
      ...sendmsg('oneway', type, 64, fds, timed(count), warmup),
      // The receiver takes each receive's messages in one 'messages' call (not in a --compare
      // checkout, which may predate the batch API).
      ...sendmsg('oneway', type, 64, fds, timed(count), warmup, { id: 'sendmsg-batch', label: "sendmsg, batch API ('messages')" })
        .filter((contender) => contender.comparedWith === undefined)
        .map((contender) => ({ ...contender, env: { ...contender.env, SENDMSG_BENCH_BATCH: '1' } })),
    ],
    targets: target
      ? [
          { contender: 'sendmsg', against: 'c', atLeast: target },
          { contender: 'sendmsg-batch', against: 'c', atLeast: 0.75 },
        ]
      : [],
  })

  // UDP: each run is a receiver and a sender of one contender, counted by the receiver. Warm-up:
  // a fifth of the timed datagrams, at least 2,000 (each process warms up on its own datagrams).
  const udpPair = (id, label, count, command, args, env) => {
    const warm = String(Math.max(2000, Math.round(Number(count) / 5)))
    return { id, label, command: node, args: ['udp-pair.mjs', count, warm, command, ...args], env }
  }
  const udpRow = ({ name, mode, count, withDgram, targets = [] }) => {
    const n = timed(count, 5000)
    const ours = udpPair('sendmsg', `sendmsg UdpSocket (${mode})`, n, node, ['udp-peer.mjs', '%ROLE%', mode])
    return {
      name,
      unit: 'datagrams/s',
      perMessage: 1,
      contenders: [
        udpPair('c', `C (${mode})`, n, udpPeer, ['%ROLE%', mode]),
        ...(withDgram ? [udpPair('dgram', "Node's dgram", n, node, ['udp-peer.mjs', '%ROLE%', 'dgram'])] : []),
        ours,
        ...(compare ? [{ ...ours, id: 'sendmsg@compare', label: `${ours.label} (${compare})`, env: { [PACKAGE_ENV]: compare }, comparedWith: 'sendmsg' }] : []),
      ],
      targets,
    }
  }

  const handoffs = timed(20_000)
  // Node's handle passing is 10-30x slower: fewer of them. Its rate still rises after 1,000
  // handoffs of warm-up (measured: 6,200/s cold, 7,300/s after 1,000, 9,200/s after 3,000).
  const nodeHandoffs = timed(2_000, 200)
  return [
    roundTrips(0),
    roundTrips(1),
    oneWay({ name: 'one way, 1 fd a message', type: 'stream', fds: 1, count: 200_000, warmup: 100_000, unit: 'fds/s', target: 0.6 }),
    oneWay({ name: 'one way, 16 fds a message', type: 'stream', fds: 16, count: 40_000, warmup: 20_000, unit: 'fds/s', target: 0.6 }),
    oneWay({ name: '64 B one way, seqpacket', type: 'seqpacket', fds: 0, count: 400_000, warmup: 200_000, unit: 'msg/s', target: 0.65 }),
    oneWay({ name: '64 B one way, dgram', type: 'dgram', fds: 0, count: 400_000, warmup: 200_000, unit: 'msg/s', target: 0.65 }),
    {
      ...oneWay({ name: '64 B one way, stream', type: 'stream', fds: 0, count: 400_000, warmup: 200_000, unit: 'msg/s' }),
      note: "measures batching (many messages per write on a stream) against C's one syscall per message: no target",
    },
    {
      name: 'listening TCP sockets handed to a child',
      unit: 'sockets/s',
      perMessage: 1,
      contenders: [
        { id: 'node-ipc', label: "Node's subprocess.send(msg, server)", command: node, args: ['node-ipc-peer.mjs', nodeHandoffs, '3000'] },
        ...sendmsg('handoff', 'stream', 1, 1, handoffs, 10_000, { id: 'sendmsg', label: 'sendmsg, child owns the descriptor' }),
        ...sendmsg('handoff-server', 'stream', 1, 1, handoffs, 10_000, {
          id: 'sendmsg-server',
          label: 'sendmsg, child makes a net.Server of it (as Node does)',
        }),
      ],
      reference: 'node-ipc',
      targets: [{ contender: 'sendmsg', against: 'node-ipc', atLeast: 20 }],
    },
    udpRow({ name: 'UDP 1,200 B one way, a send per datagram', mode: 'plain', count: 150_000, withDgram: true }),
    udpRow({ name: 'UDP 1,200 B one way, batched', mode: 'batch', count: 200_000 }),
    udpRow({
      name: 'UDP 1,200 B one way, GSO + GRO',
      mode: 'gso',
      count: 1_000_000,
      withDgram: true,
      targets: [
        { contender: 'sendmsg', against: 'dgram', atLeast: 5 },
        { contender: 'sendmsg', against: 'c', atLeast: 0.75 },
      ],
    }),
  ]
}
