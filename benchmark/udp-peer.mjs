// The Node contenders of the UDP rows of run.mjs (run by udp-pair.mjs), with the protocol and flow control of
// native/udp-peer.c (read its header):
//
//   node udp-peer.mjs recv <contender>
//   node udp-peer.mjs send <contender> <port> <warm> <count>
//
// Contenders: "dgram" (Node's dgram, one send per datagram), "plain" (UdpSocket, each send awaited:
// one system call per datagram), "batch" (UdpSocket, a window's sends made in one tick: the queue
// hands them to the kernel together, sendmmsg), "gso" (UdpSocket, 32-segment GSO buffers; the
// receiver asks for GRO and takes each coalesced run whole).
import dgram from 'node:dgram'
import { loadSendmsg } from './lib/load-package.mjs'

const { UdpSocket } = await loadSendmsg()

const SIZE = 1200
const SEGMENTS = 32
const HOST = '127.0.0.1'
const [role, contender, ...args] = process.argv.slice(2)
const gso = contender === 'gso'
const WINDOW = 2048
const ACK_EVERY = 256
const RECV_BUFFER = 4 << 20

function receive() {
  const isDgram = contender === 'dgram'
  const socket = isDgram
    ? dgram.createSocket({ type: 'udp4', recvBufferSize: RECV_BUFFER })
    : UdpSocket.bound(0, HOST, { ecn: false, pktinfo: false, gro: gso, splitSegments: false, recvBufferSize: RECV_BUFFER })
  let received = 0
  let total = 0
  let acked = 0
  let start = 0
  const ack = Buffer.alloc(4)
  const onDatagram = (data, segments, port) => {
    const kind = data[0]
    if (kind === 2) {
      console.log(JSON.stringify({ received, seconds: (performance.now() - start) / 1000 }))
      process.exit(0)
    }
    if (kind === 1) {
      if (received === 0) start = performance.now()
      received += segments
    }
    total += segments
    if (total - acked >= ACK_EVERY) {
      acked = total
      ack.writeUInt32LE(total >>> 0, 0)
      if (isDgram) socket.send(ack, port, HOST)
      else void socket.sendTo(ack, port, HOST)
    }
  }
  if (isDgram) {
    socket.on('message', (data, rinfo) => onDatagram(data, 1, rinfo.port))
    socket.bind(0, HOST, () => console.log(JSON.stringify({ port: socket.address().port })))
  } else {
    socket.on('message', (message) => onDatagram(message.data, message.segments, message.port))
    console.log(JSON.stringify({ port: socket.address().port }))
  }
}

async function send() {
  const [port, warm, count] = args.map(Number)
  const isDgram = contender === 'dgram'
  const socket = isDgram ? dgram.createSocket('udp4') : UdpSocket.create('udp4')
  // The receiver's exit makes the end markers' port unreachable: not news here.
  socket.on('error', () => {})
  if (isDgram) await new Promise((resolve) => socket.connect(port, HOST, resolve))
  else socket.connect(port, HOST)
  let sent = 0
  let acked = 0
  let wake
  const onAck = (data) => {
    const count = data.readUInt32LE(0)
    if (count > acked) acked = count
    if (wake !== undefined && sent - acked < WINDOW) wake()
  }
  socket.on('message', isDgram ? onAck : (message) => onAck(message.data))
  /** Room in the window: acknowledgements, or 20 ms of silence (what is outstanding was lost). */
  const room = (needed) =>
    sent - acked + needed <= WINDOW
      ? undefined
      : new Promise((resolve) => {
          const timer = setTimeout(() => {
            acked = sent
            wake = undefined
            resolve()
          }, 20)
          wake = () => {
            if (sent - acked + needed > WINDOW) return
            clearTimeout(timer)
            wake = undefined
            resolve()
          }
        })

  const buffers = [0, 1].map((kind) => Buffer.alloc(gso ? SIZE * SEGMENTS : SIZE, kind))
  async function phase(kind, total) {
    const buffer = buffers[kind]
    for (let done = 0; done < total; ) {
      const per = gso ? Math.min(SEGMENTS, total - done) : 1
      const waiting = room(per)
      if (waiting !== undefined) await waiting
      if (isDgram) {
        socket.send(buffer, 0, SIZE)
        sent++
        done++
      } else if (contender === 'plain') {
        await socket.send(buffer)
        sent++
        done++
      } else {
        // The window's worth in one tick: the send queue flushes them together.
        let last
        while (done < total && sent - acked + per <= WINDOW) {
          const n = gso ? Math.min(SEGMENTS, total - done) : 1
          last = gso ? socket.send(n === SEGMENTS ? buffer : buffer.subarray(0, n * SIZE), { segmentSize: SIZE }) : socket.send(buffer)
          sent += n
          done += n
        }
        await last
      }
    }
  }
  await phase(0, warm)
  await phase(1, count)
  const end = Buffer.from([2])
  // Until the receiver has reported (and the runner stops us), or half a second has passed.
  let markers = 0
  const timer = setInterval(() => {
    if (++markers > 50) {
      clearInterval(timer)
      socket.close()
      return
    }
    if (isDgram) socket.send(end)
    else void socket.send(end)
  }, 10)
}

if (role === 'recv') receive()
else await send()
