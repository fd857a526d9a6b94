// The runtimes the package runs on, and how to start a script in each: Node (libuv's poll), Node
// with SENDMSG_REACTOR=thread (the poller thread Bun and Deno use), Bun and Deno. Bun and Deno come
// from the npm registry's `bun` and `deno` packages (which install the official build for this
// platform), pinned, kept under .cache/<runtime>/<version>/. Used by the portable suite
// (scripts/test-portable.mjs) and the benchmark (benchmark/run.mjs --runtimes). Dependency-free.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'

import { root } from './suites.mjs'

export const BUN_VERSION = '1.4.5'
export const DENO_VERSION = '2.9.6'
// Exact versions, so a run is repeatable; each satisfies ava 7's engines (^20.19 || ^22.20 || ^24.12).
export const NODE_MATRIX = ['20.20.2', '22.23.3', '24.21.0']

const major = (version) => version.replace(/^v/, '').split('.')[0]
/** The Node versions of the matrix other than the one running this. */
export const OTHER_NODES = NODE_MATRIX.filter((version) => major(version) !== major(process.version))

/** Every runtime: this Node, the same with the poller thread, the matrix's other Nodes, Bun, Deno. */
export const RUNTIMES = ['node', 'node-thread', ...OTHER_NODES.map((version) => `node-${major(version)}`), 'bun', 'deno']

/** The path of `bin` (relative to node_modules) of the npm package `name@version`, installed under .cache when missing. */
function npmBinary(name, version, bin) {
  const prefix = join(root, '.cache', name, version)
  const binary = join(prefix, 'node_modules', bin)
  if (!existsSync(binary)) {
    console.log(`installing ${name}@${version} from the npm registry into ${prefix}`)
    mkdirSync(prefix, { recursive: true })
    // npm leaves both packages' install scripts unrun unless allowed; their binaries run as
    // installed (checked on linux-x64 for the pinned versions).
    const install = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${name}@${version}`],
      { stdio: 'inherit' },
    )
    if (install.status !== 0 || !existsSync(binary)) throw new Error(`could not install ${name}@${version} into ${prefix}`)
  }
  return binary
}

/** The path of a `node` binary of exactly `version`, installed from the npm registry when missing. */
export function nodeBinary(version) {
  if (process.version === `v${version}`) return process.execPath
  return npmBinary('node', version, join('node', 'bin', 'node'))
}

/**
 * How to run a script in `name`: `{ command, args, env, label }`; the script's path and its own
 * arguments go after `args`. Installs Bun or Deno on first use.
 */
export function runtimeCommand(name) {
  switch (name) {
    case 'node':
      return { command: process.execPath, args: [], env: {}, label: `Node ${process.version}` }
    case 'node-thread':
      return { command: process.execPath, args: [], env: { SENDMSG_REACTOR: 'thread' }, label: `Node ${process.version}, poller thread` }
    case 'bun':
      return { command: npmBinary('bun', BUN_VERSION, join('.bin', 'bun')), args: [], env: {}, label: `Bun ${BUN_VERSION}` }
    case 'deno':
      return { command: npmBinary('deno', DENO_VERSION, join('.bin', 'deno')), args: ['run', '-A'], env: {}, label: `Deno ${DENO_VERSION}` }
    default: {
      const version = OTHER_NODES.find((other) => name === `node-${major(other)}`)
      if (version === undefined) throw new Error(`unknown runtime ${name}: expected ${RUNTIMES.join(', ')}`)
      return { command: nodeBinary(version), args: [], env: {}, label: `Node ${version}` }
    }
  }
}
