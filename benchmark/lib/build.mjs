// Compiles the benchmark's native contenders at run time into benchmark/.build/ (ignored by
// git; nothing native is committed): the C peers (AF_UNIX and UDP), and the minimal Node-API addon ("the ceiling"),
// built against the headers of the very Node that runs the benchmark.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const benchmarkDir = join(dirname(fileURLToPath(import.meta.url)), '..')
export const buildDir = join(benchmarkDir, '.build')
const COMPILE_LIMIT_MS = 120_000

function compile(args) {
  const cc = process.env.CC ?? 'cc'
  const result = spawnSync(cc, ['-O2', ...args], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8', timeout: COMPILE_LIMIT_MS, killSignal: 'SIGKILL' })
  if (result.error) return `${cc}: ${result.error.message}`
  if (result.status !== 0) return `${cc} failed:\n${result.stderr}`
  return undefined
}

/** Node's own headers (node_api.h and uv.h): shipped beside the node binary in official builds. */
function nodeHeaders() {
  const candidates = [join(dirname(dirname(process.execPath)), 'include', 'node'), process.env.NODE_INCLUDE_DIR].filter(Boolean)
  return candidates.find((dir) => existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h')))
}

/**
 * Builds them. Returns { cPeer, udpPeer, ceilingError }: the C peers are required (throw), the addon is
 * optional (its row then says why it is missing: a missing piece is reported, not faked).
 */
export function buildNative() {
  mkdirSync(buildDir, { recursive: true })
  const cPeer = join(buildDir, 'peer')
  const peerError = compile(['-o', cPeer, join(benchmarkDir, 'native', 'peer.c')])
  if (peerError) throw new Error(`could not build the C peer: ${peerError}`)
  const udpPeer = join(buildDir, 'udp-peer')
  const udpError = compile(['-o', udpPeer, join(benchmarkDir, 'native', 'udp-peer.c')])
  if (udpError) throw new Error(`could not build the C UDP peer: ${udpError}`)
  const headers = nodeHeaders()
  let ceilingError
  if (!headers) {
    ceilingError = `no Node headers (node_api.h, uv.h) beside ${process.execPath}; set NODE_INCLUDE_DIR`
  } else {
    // Node-API symbols resolve against the node binary when the addon is loaded.
    const shared = process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared', '-fPIC']
    ceilingError = compile([...shared, '-I', headers, '-o', join(buildDir, 'ceiling.node'), join(benchmarkDir, 'native', 'ceiling.c')])
  }
  return { cPeer, udpPeer, ceilingError }
}
