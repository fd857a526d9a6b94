#!/usr/bin/env node
// The dependency-free first step of `npm test` and `npm run demo`, so that each works as the very
// first command on a fresh clone: installs the npm packages when they are missing (npm install's
// `prepare` script then builds), otherwise builds. With --build-only (the `prepare` script) it only
// builds. Building is incremental: cargo and tsc redo only what changed.
//
// Uses nothing but Node itself.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (result.error) {
    console.error(`setup: could not run ${command}: ${result.error.message}`)
    process.exit(1)
  }
  if (result.status !== 0) process.exit(result.status ?? 1)
}

function requireTool(command, hint) {
  const result = spawnSync(command, ['--version'], { stdio: 'ignore' })
  if (result.error || result.status !== 0) {
    console.error(`setup: '${command}' was not found on PATH. ${hint}`)
    process.exit(1)
  }
}

requireTool('cargo', 'Building from source needs a Rust toolchain (https://rustup.rs) and a C compiler.')

const buildOnly = process.argv.includes('--build-only')
const installed = existsSync(join(root, 'node_modules', '.bin', 'napi'))
if (!buildOnly && !installed) {
  console.log('setup: installing npm packages (the prepare script builds the addon)')
  run('npm', ['install', '--no-audit', '--no-fund'])
} else {
  run('npm', ['run', '--silent', 'build'])
}
