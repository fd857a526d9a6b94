// An HTTP server started by systemd socket activation (or by `systemd-socket-activate`): it serves
// on the listening socket it was given as fd 3 instead of binding one, and tells the service
// manager when it is ready.
//
//   systemd-socket-activate -l 127.0.0.1:8080 --fdname=http node examples/socket-activated.mjs
import http from 'node:http'
import { listenFds, notifyReady, toNetServer } from 'sendmsg'

const passed = listenFds()
const socket = passed.find(({ name }) => name === 'http') ?? passed[0]
if (socket === undefined) {
  console.error('No listening socket was passed: run me under systemd socket activation.')
  process.exit(1)
}
const server = http.createServer((request, response) => {
  response.end(`hello from pid ${process.pid}, serving on the socket systemd passed as fd ${socket.fd} (${socket.name})\n`)
})
toNetServer(socket.fd, server)
server.once('listening', () => void notifyReady(`serving on fd ${socket.fd}`))
