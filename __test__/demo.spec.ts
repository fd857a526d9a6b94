// A short run of the demo (npm run demo): rolling restarts, a new supervisor that crashes before
// acknowledging (rolled back; its workers drain and exit on their own) and a supervisor
// replacement, under HTTP load, with zero failed requests and zero refused connections.
import test from 'ava'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

test('the zero-downtime demo serves every request', async (t) => {
  const demo = spawn(process.execPath, [fileURLToPath(new URL('../examples/zero-downtime.mjs', import.meta.url)), '--quick'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // A hang guard below ava's own timeout, and no demo left running whatever happens to the test: the
  // demo stops its children when it gets SIGTERM, and they stop when it is gone.
  const guard = setTimeout(() => demo.kill(), 90_000)
  t.teardown(() => {
    clearTimeout(guard)
    if (demo.exitCode === null && demo.signalCode === null) demo.kill()
  })
  let out = ''
  demo.stdout.on('data', (chunk) => (out += chunk))
  const code = await new Promise((resolve) => demo.on('exit', resolve))
  t.log(out.trim().split('\n').slice(-3).join('\n'))
  t.is(code, 0, out)
  const totals = /requests: (\d+) {2}ok: (\d+) {2}failed: (\d+) {2}refused connections: (\d+)/.exec(out)
  t.truthy(totals, out)
  const [, requests, ok, failed, refused] = totals!.map(Number)
  t.true(requests! > 0)
  t.is(ok, requests)
  t.is(failed, 0)
  t.is(refused, 0)
  t.regex(out, /rolled back: the taker \d+ did not complete/)
  t.regex(out, /the crashed supervisor's workers served \d+ requests, then drained and exited on their own/)
})
