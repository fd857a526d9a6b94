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
import { join } from 'node:path'

import { NODE_MATRIX, nodeBinary } from './lib/runtimes.mjs'
import { countAva, root, runAll } from './lib/suites.mjs'

const major = (version) => version.replace(/^v/, '').split('.')[0]

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
