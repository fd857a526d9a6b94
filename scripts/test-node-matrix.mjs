#!/usr/bin/env node
// Runs the ava suite under each Node version the package supports. The addon is Node-API, so the
// one build serves them all; what changes is the runtime around it.
//
//   node scripts/test-node-matrix.mjs                       every version in NODE_MATRIX
//   node scripts/test-node-matrix.mjs --other-than-current  all but the running Node's major (npm
//                                                           test has just run ava under it)
// Other arguments are passed on to ava.
//
// The other versions' binaries come from the npm registry's `node` package (it installs the
// official build for this platform), kept under .cache/node/<version>/. Ends with
// "N passed, N failed, N skipped". Dependency-free.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'

import { countAva, root, runAll } from './lib/suites.mjs'

// Exact versions, so a run is repeatable; each satisfies ava 7's engines (^20.19 || ^22.20 || ^24.12).
export const NODE_MATRIX = ['20.20.2', '22.23.3', '24.21.0']

const major = (version) => version.replace(/^v/, '').split('.')[0]

/** The path of a `node` binary of exactly `version`, installed from the npm registry when missing. */
function nodeBinary(version) {
  if (process.version === `v${version}`) return process.execPath
  const prefix = join(root, '.cache', 'node', version)
  const binary = join(prefix, 'node_modules', 'node', 'bin', 'node')
  if (!existsSync(binary)) {
    console.log(`installing node@${version} from the npm registry into ${prefix}`)
    mkdirSync(prefix, { recursive: true })
    const install = spawnSync(
      'npm',
      ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `node@${version}`],
      { stdio: 'inherit' },
    )
    if (install.status !== 0 || !existsSync(binary)) throw new Error(`could not install node@${version} into ${prefix}`)
  }
  return binary
}

const versions = process.argv.includes('--other-than-current')
  ? NODE_MATRIX.filter((version) => major(version) !== major(process.version))
  : NODE_MATRIX

const ava = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs')
const avaArgs = process.argv.slice(2).filter((arg) => arg !== '--other-than-current')
await runAll(
  versions.map((version) => {
    let command
    try {
      command = nodeBinary(version)
    } catch (error) {
      // runSuite reports a command that cannot be spawned as one failure.
      console.error(error.message)
      command = join(root, '.cache', 'node', version, 'missing')
    }
    return { name: `ava on Node ${version}`, command, args: [ava, ...avaArgs], cwd: root, count: countAva }
  }),
)
