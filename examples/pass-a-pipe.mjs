// Hands the write end of a pipe to a child process over a socketpair; the child writes through it
// and exits; the parent reads what the child wrote, then EOF once every copy is closed.
//
//   node examples/pass-a-pipe.mjs
import { spawn } from 'node:child_process'
import { closeSync, readSync, writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { fdsFromAncillary, pipe, recvmsg, scmRights, sendmsg, socketpair } from 'sendmsg'

if (process.argv[2] === 'child') {
  // fd 3 is our end of the socketpair.
  const { ancillary } = recvmsg(3)
  const [fd] = fdsFromAncillary(ancillary)
  if (fd === undefined) throw new Error('the message brought no descriptor')
  const line = `hello from child ${process.pid}, writing through a descriptor it was handed\n`
  // The descriptor is a plain fd now: any fs call works on it.
  writeSync(fd, line)
  closeSync(fd)
} else {
  const [parentEnd, childEnd] = socketpair()
  const [readEnd, writeEnd] = pipe()
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'child'], {
    stdio: ['ignore', 'inherit', 'inherit', childEnd],
  })
  closeSync(childEnd)
  sendmsg(parentEnd, 'here is a pipe', [scmRights([writeEnd])])
  closeSync(writeEnd) // the child now holds the only write end
  const buffer = Buffer.alloc(4096)
  let text = ''
  for (let n; (n = readSync(readEnd, buffer)) > 0; ) text += buffer.toString('utf8', 0, n)
  process.stdout.write(`parent ${process.pid} read: ${text}`)
  console.log('EOF: every copy of the write end is closed')
  closeSync(readEnd)
  closeSync(parentEnd)
  child.on('exit', (code) => process.exit(code ?? 1))
}
