#!/usr/bin/env node
// The oldest glibc a Linux binary runs on is the highest GLIBC_x.y symbol version it imports
// (`readelf --dyn-syms`, which reads an ELF file of any architecture). This checks that against the floors README.md states ("Platforms"):
//
//   node scripts/check-glibc.mjs FILE.node --max 2.17   one binary (CI runs this on its gnu builds)
//   node scripts/check-glibc.mjs                        what npm test checks here:
//     - the binary built on this machine (npm run build) against HOST_BUILD_FLOOR: a build links
//       against the build machine's glibc, so it needs what that glibc's symbols say;
//     - a build with napi-rs's cross toolchain (--use-napi-cross, what CI publishes) against
//       PUBLISHED_FLOOR, when that toolchain is already on this machine: this script does not
//       download it (skipped, with the reason, otherwise).
//
// Ends with "N passed, N failed, N skipped". Dependency-free but for the napi CLI it calls.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { root, summaryLine } from './lib/suites.mjs'

/** What README.md states for the published linux-*-gnu binaries (napi-rs cross toolchain's sysroot). */
const PUBLISHED_FLOOR = '2.17'
/** What README.md states for a build from source on this project's machines (Debian 12, glibc 2.36). */
const HOST_BUILD_FLOOR = '2.34'

const CROSS_TARGET = 'x86_64-unknown-linux-gnu'

const compare = (a, b) => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number))
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/** The GLIBC versions `file` imports, each with the symbols that need it, highest first. */
function glibcRequirements(file) {
  const readelf = spawnSync('readelf', ['--dyn-syms', '--wide', file], { encoding: 'utf8' })
  if (readelf.error || readelf.status !== 0) {
    throw new Error(`readelf --dyn-syms ${file} failed: ${readelf.error?.message ?? readelf.stderr.trim()}`)
  }
  const byVersion = new Map()
  for (const [, symbol, version] of readelf.stdout.matchAll(/(\S+?)@+GLIBC_(\d+(?:\.\d+)+)/g)) {
    byVersion.set(version, [...(byVersion.get(version) ?? []), symbol])
  }
  return [...byVersion].sort(([a], [b]) => compare(b, a))
}

/** Checks one binary; prints what it needs and returns whether that is within `max`. */
function checkFloor(file, max, label = file) {
  const [highest] = glibcRequirements(file)
  if (!highest) {
    console.log(`ok: ${label} imports no versioned glibc symbol`)
    return true
  }
  const [version, symbols] = highest
  const within = compare(version, max) <= 0
  console.log(
    `${within ? 'ok' : 'FAIL'}: ${label} needs glibc ${version} (${symbols.join(', ')}); the stated floor is ${max}`,
  )
  return within
}

function crossToolchainPath() {
  const require = createRequire(join(root, 'package.json'))
  const { version } = require('@napi-rs/cross-toolchain')
  // Where `napi build --use-napi-cross` extracts it (the CLI's own layout).
  return join(homedir(), '.napi-rs', 'cross-toolchain', version, CROSS_TARGET)
}

function buildWithCrossToolchain(outputDir) {
  const napi = join(root, 'node_modules', '.bin', 'napi')
  const args = ['build', '--platform', '--release', '--target', CROSS_TARGET, '--use-napi-cross',
    '--manifest-path', 'crates/sendmsg-napi/Cargo.toml', '--package', 'sendmsg-napi',
    '--output-dir', outputDir, '--no-js']
  console.log(`building with the cross toolchain: napi ${args.join(' ')}`)
  // A target folder of its own: the toolchain's compiler settings differ from the host build's,
  // and sharing build-script outputs with it would rebuild both every time.
  const env = { ...process.env, CARGO_TARGET_DIR: join(root, 'target', 'napi-cross') }
  const build = spawnSync(napi, args, { cwd: root, stdio: 'inherit', env })
  return build.status === 0
}

function checkThisMachine() {
  const totals = { passed: 0, failed: 0, skipped: 0 }
  const record = (ok) => (ok ? totals.passed++ : totals.failed++)
  const skip = (why) => {
    console.log(`skipped: ${why}`)
    totals.skipped++
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    skip(`glibc floors are checked on linux-x64 only, not ${process.platform}-${process.arch}`)
    skip('the cross-toolchain build is checked on linux-x64 only')
    return totals
  }
  if (spawnSync('readelf', ['--version']).error) {
    skip('readelf (binutils) is not installed')
    skip('readelf (binutils) is not installed')
    return totals
  }
  const hostBuild = join(root, 'sendmsg.linux-x64-gnu.node')
  if (existsSync(hostBuild)) {
    record(checkFloor(hostBuild, HOST_BUILD_FLOOR, 'the binary built here'))
  } else {
    console.log(`FAIL: ${hostBuild} is missing: run npm run build`)
    record(false)
  }

  const toolchain = crossToolchainPath()
  if (!existsSync(join(toolchain, 'package.json'))) {
    skip(`napi-rs's cross toolchain is not at ${toolchain}; CI's gnu builds check the ${PUBLISHED_FLOOR} floor`)
    return totals
  }
  const outputDir = join(root, '.cache', 'glibc-floor')
  if (!buildWithCrossToolchain(outputDir)) record(false)
  else record(checkFloor(join(outputDir, 'sendmsg.linux-x64-gnu.node'), PUBLISHED_FLOOR, 'the cross-toolchain build'))
  return totals
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file] = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--') && all[i - 1] !== '--max')
  if (file) {
    const maxAt = process.argv.indexOf('--max')
    const max = maxAt > 0 ? process.argv[maxAt + 1] : PUBLISHED_FLOOR
    process.exit(checkFloor(file, max) ? 0 : 1)
  }
  const totals = checkThisMachine()
  console.log(summaryLine(totals))
  process.exit(totals.failed === 0 ? 0 : 1)
}
