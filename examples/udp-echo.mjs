// A QUIC-style UDP echo server: one socket on every address (dual-stack), each answer sent from
// the address the request came to (so a client that connected to one of several addresses hears
// back from that one), ECN-capable answers with the request's marks counted (as a QUIC ACK frame
// reports them), and runs of datagrams received coalesced (GRO) answered as one GSO send.
//
//   node examples/udp-echo.mjs [port]          serve (default port 4433)
//   node examples/udp-echo.mjs --demo          serve on a free port, run a client against it, stop
import { ECN_CE, ECN_ECT0, ECN_ECT1, UdpSocket } from 'sendmsg'

/** Marks seen per peer, as QUIC counts them (RFC 9000, section 13.4). */
const ecnCounts = new Map()

function serve(port) {
  // '::' with the default dual-stack socket: IPv4 peers arrive as ::ffff:a.b.c.d.
  const server = UdpSocket.bound(port, '::', { type: 'udp6', gro: true, splitSegments: false, ecn: true, pktinfo: true })
  server.on('message', (message) => {
    const peer = `[${message.address}]:${message.port}`
    const counts = ecnCounts.get(peer) ?? { ect0: 0, ect1: 0, ce: 0 }
    const marks = { [ECN_ECT0]: 'ect0', [ECN_ECT1]: 'ect1', [ECN_CE]: 'ce' }
    if (marks[message.ecn] !== undefined) counts[marks[message.ecn]] += message.segments
    ecnCounts.set(peer, counts)
    // One send for the whole run: the kernel cuts it back into the datagrams that came in.
    server
      .sendTo(message.data, message.port, message.address, {
        segmentSize: message.segments > 1 ? message.stride : undefined,
        sourceAddress: message.localAddress,
        ecn: ECN_ECT0,
      })
      .catch((error) => console.error(`answer to ${peer} failed: ${error.message}`))
  })
  server.on('icmpError', (error) => console.error(`${error.code} from ${error.offender ?? 'the network'} for [${error.address}]:${error.port}`))
  return server
}

async function demo() {
  const server = serve(0)
  const { port } = server.address()
  console.log(`echo server on [::]:${port} (GSO: ${server.gsoSegments} segments per send, GRO: ${server.gro})`)
  for (const address of ['127.0.0.1', '::1']) {
    const client = UdpSocket.create(address.includes(':') ? 'udp6' : 'udp4', { gro: true, splitSegments: false }).connect(port, address)
    /** @type {Promise<void>} */
    const answered = new Promise((resolve) => {
      let datagrams = 0
      client.on('message', (message) => {
        datagrams += message.segments
        console.log(
          `  ${address}: ${message.segments} datagram(s) of ${message.stride} bytes from ${message.address} (asked ${address}), ECN ${message.ecn === ECN_ECT0 ? 'ECT(0)' : message.ecn}`,
        )
        if (datagrams === 10) resolve()
      })
    })
    // Ten 1,200-byte datagrams in one GSO send, marked ECT(0).
    await client.send(Buffer.alloc(12_000, 'q'), { segmentSize: 1200, ecn: ECN_ECT0 })
    await answered
    client.close()
  }
  console.log('ECN marks counted per peer:', Object.fromEntries(ecnCounts))
  server.close()
}

if (process.argv[2] === '--demo') await demo()
else {
  const server = serve(Number(process.argv[2] ?? 4433))
  console.log(`echo server on [::]:${server.address().port}`)
}
