#!/usr/bin/env node
// The package as a user installs it: packed, published to a throwaway registry, installed from
// there into an empty project with no Rust toolchain on PATH, then used.
//
// 1. `npm pack` the root package (what `files` ships; dist/ and binding.js must be built: npm run
//    test:install builds first).
// 2. Stage the publish the way the CI publish job does, for the one target built here: the
//    platform package npm/<target>/ as `napi create-npm-dirs` made it, the binary moved in by
//    `napi artifacts`, and `napi prepublish -t npm` (limited to this target by a config file),
//    which publishes sendmsg-<target> and adds it to the root package as an exact-version
//    optionalDependency; then `npm publish` of the root package.
// 3. The registry is verdaccio on 127.0.0.1, with its storage in a temporary folder: sendmsg and
//    sendmsg-* live only there; anything else (typescript, @types/node) it fetches from the npm
//    registry this machine's npm uses. It is stopped at the end, also on failure.
// 4. In an empty project whose PATH has no cargo or rustc: `npm install sendmsg`; require() and
//    import of the package; fd passing between two processes (examples/pass-a-pipe.mjs); and a
//    TypeScript consumer type-checked against the shipped declarations (moduleResolution node16
//    and bundler, skipLibCheck off).
//
// Each step is one check; ends with "N passed, N failed, N skipped". SENDMSG_KEEP_INSTALL_TEST=1
// keeps the temporary folder for a look.
import { spawn, spawnSync } from 'node:child_process'
import { accessSync, chmodSync, constants, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

import { parseTriple } from '@napi-rs/cli'

import { root, summaryLine } from './lib/suites.mjs'

const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const totals = { passed: 0, failed: 0, skipped: 0 }

class StepFailed extends Error {}

/** Runs one check; a thrown error fails it and ends the test. */
function step(name, body) {
  try {
    const detail = body()
    totals.passed++
    console.log(`ok: ${name}${detail ? ` (${detail})` : ''}`)
  } catch (error) {
    totals.failed++
    console.log(`FAIL: ${name}\n${String(error.stack ?? error).replace(/^/gm, '    ')}`)
    throw new StepFailed(name)
  }
}

/**
 * Runs a command to completion; throws with its output if it fails. The time limit is no
 * assertion, only a guard against a hung step holding CI until its own limit.
 */
function run(command, args, options = {}) {
  const guard = { timeout: 10 * 60 * 1000, killSignal: 'SIGKILL' }
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...guard, ...options })
  if (result.error) throw result.error
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}\n${result.stdout}${result.stderr}`)
  }
  return result.stdout
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** verdaccio on 127.0.0.1:port, storing in `dir`; resolves once it answers. */
async function startRegistry(dir, port, upstream) {
  mkdirSync(join(dir, 'storage'), { recursive: true })
  const config = join(dir, 'config.yaml')
  writeFileSync(
    config,
    [
      `storage: ${join(dir, 'storage')}`,
      'auth:',
      '  htpasswd:',
      `    file: ${join(dir, 'htpasswd')}`,
      'uplinks:',
      '  upstream:',
      `    url: ${upstream}`,
      'packages:',
      // The package under test exists only here: no uplink, so a namesake upstream cannot mix in.
      "  'sendmsg':",
      '    access: $all',
      '    publish: $authenticated',
      "  'sendmsg-*':",
      '    access: $all',
      '    publish: $authenticated',
      "  '**':",
      '    access: $all',
      '    proxy: upstream',
      `listen: 127.0.0.1:${port}`,
      'web:',
      '  enable: false',
      'log: { type: stdout, format: pretty, level: warn }',
      '',
    ].join('\n'),
  )
  const verdaccio = join(root, 'node_modules', 'verdaccio', 'bin', 'verdaccio')
  const child = spawn(process.execPath, [verdaccio, '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
  const url = `http://127.0.0.1:${port}/`
  // Bounded wait for it to listen; it usually takes a second or two.
  for (let attempt = 0; attempt < 120; attempt++) {
    const result = await Promise.race([
      fetch(`${url}-/ping`).then((response) => response.ok, () => false),
      exited.then((code) => {
        throw new Error(`verdaccio exited with ${code} before it answered`)
      }),
    ])
    if (result) return { url, child }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  child.kill()
  throw new Error('verdaccio did not answer within 30 s')
}

/** A throwaway user on the throwaway registry; its token publishes. */
async function registryToken(url) {
  const name = 'sendmsg-install-test'
  const response = await fetch(`${url}-/user/org.couchdb.user:${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password: `pw-${process.pid}-${Date.now()}`, email: 'test@example.invalid' }),
  })
  const body = await response.json()
  if (!response.ok || !body.token) throw new Error(`could not add a user: ${response.status} ${JSON.stringify(body)}`)
  return body.token
}

/** The tools the consumer's steps run by name: npm (and npx), node (npm's `#!/usr/bin/env node`), sh. */
const CONSUMER_TOOLS = ['npm', 'npx', 'sh']

/**
 * PATH without any folder that holds cargo or rustc (what a user without Rust has), after `bin`: a
 * new folder of links to node and CONSUMER_TOOLS. Those stay reachable even when they share a
 * folder with cargo (a distribution's node and cargo both in /usr/bin), which is dropped whole.
 */
function pathWithoutRust(bin) {
  const folders = (process.env.PATH ?? '').split(delimiter).filter(Boolean)
  const hasRust = (folder) => ['cargo', 'rustc'].some((tool) => existsSync(join(folder, tool)))
  const executable = (file) => {
    try {
      accessSync(file, constants.X_OK)
      return statSync(file).isFile()
    } catch {
      return false
    }
  }
  mkdirSync(bin)
  symlinkSync(process.execPath, join(bin, 'node'))
  for (const tool of CONSUMER_TOOLS) {
    const found = folders.map((folder) => join(folder, tool)).find(executable)
    if (!found) throw new Error(`${tool} is not on PATH`)
    symlinkSync(found, join(bin, tool))
  }
  return [bin, ...folders.filter((folder) => !hasRust(folder))].join(delimiter)
}

// --- what the consumer project runs ---------------------------------------------------------

const CHECK_REQUIRE = `
const assert = require('node:assert')
const { closeSync, readSync, writeSync } = require('node:fs')
const { fdsFromAncillary, pipe, recvmsg, scmRights, sendmsg, socketpair, constants } = require('sendmsg')
const [a, b] = socketpair()
const [r, w] = pipe()
writeSync(w, 'through a passed descriptor')
sendmsg(a, 'x', [scmRights([r])])
const [copy] = fdsFromAncillary(recvmsg(b, 16).ancillary)
const buffer = Buffer.alloc(64)
const text = buffer.toString('utf8', 0, readSync(copy, buffer))
assert.strictEqual(text, 'through a passed descriptor')
assert.strictEqual(typeof constants.SCM_RIGHTS, 'number')
for (const fd of [a, b, r, w, copy]) closeSync(fd)
console.log(require.resolve('sendmsg'))
`

const CHECK_IMPORT = `
import assert from 'node:assert'
import { createRequire } from 'node:module'
import * as esm from 'sendmsg'
import { sendmsg, UnixSocket } from 'sendmsg'
assert.strictEqual(typeof sendmsg, 'function')
// One module instance for import and require: no dual-package hazard.
assert.strictEqual(createRequire(import.meta.url)('sendmsg').UnixSocket, esm.UnixSocket)
const [left, right] = UnixSocket.pair('stream')
const received = new Promise((resolve) => right.once('message', (msg) => resolve(msg.data.toString())))
await left.send('hello over the event loop')
assert.strictEqual(await received, 'hello over the event loop')
left.close()
right.close()
console.log(import.meta.resolve('sendmsg'))
`

// Uses both APIs and their types; nothing here runs, tsc only checks it.
const CONSUMER_TS = `
import { closeSync } from 'node:fs'
import {
  constants,
  fdsFromAncillary,
  recvmsg,
  ReceivedFd,
  scmRights,
  sendmsg,
  socketpair,
  UnixServer,
  UnixSocket,
  type AncillaryItem,
  type Message,
  type ReceivedMessage,
  type SocketType,
} from 'sendmsg'

const type: SocketType = 'seqpacket'
const [a, b] = socketpair(type)
const rights: AncillaryItem = scmRights([1])
const sent: number = sendmsg(a, ['x', Buffer.from('y')], [rights], 0)
const message: ReceivedMessage = recvmsg(b, 1024, 4096)
const fds: number[] = fdsFromAncillary(message.ancillary)
fds.forEach(closeSync)
const level: number = constants.SOL_SOCKET

export async function serve(path: string): Promise<void> {
  const server = UnixServer.listen(path, { type: 'seqpacket' })
  const client = await UnixSocket.connect(path, { type: 'seqpacket' })
  await client.send('hello', { fds: [a] })
  for await (const sock of server) {
    sock.on('message', (msg: Message) => {
      const first: ReceivedFd | undefined = msg.fds[0]
      const kept: number | undefined = first?.take()
      if (kept !== undefined) closeSync(kept)
    })
    break
  }
  client.close()
  server.close()
}

export const used = [sent, level]
`

function tsconfig(moduleKind, resolution) {
  return JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2023'],
        module: moduleKind,
        moduleResolution: resolution,
        types: ['node'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
      },
      include: ['*.ts', '*.mts'],
    },
    null,
    2,
  )
}

// --- the test --------------------------------------------------------------------------------

async function main() {
  const target = (await import(join(root, 'dist', 'lib', 'binding.js'))).runningTarget()
  const binaryName = manifest.napi.binaryName
  const binary = join(root, `${binaryName}.${target}.node`)
  const platformPackage = `${manifest.name}-${target}`
  if (!existsSync(binary)) {
    console.log(`skipped: no ${binaryName}.${target}.node built here to publish (run npm run build)`)
    totals.skipped++
    return
  }

  const temp = mkdtempSync(join(tmpdir(), 'sendmsg-install-'))
  const registryDir = join(temp, 'registry')
  const stage = join(temp, 'stage')
  const project = join(temp, 'project')
  let registry
  // An interrupted run must not leave the registry running.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      registry?.child.kill()
      rmSync(temp, { recursive: true, force: true })
      process.exit(1)
    })
  }
  try {
    const upstream = run('npm', ['config', 'get', 'registry'], { cwd: temp }).trim()
    registry = await startRegistry(registryDir, await freePort(), upstream)
    const token = await registryToken(registry.url)
    const host = registry.url.replace(/^http:/, '')
    const publishConfig = join(temp, 'publish.npmrc')
    writeFileSync(publishConfig, `registry=${registry.url}\n${host}:_authToken=${token}\n`)
    chmodSync(publishConfig, 0o600)
    const publishEnv = { ...process.env, npm_config_userconfig: publishConfig, npm_config_cache: join(temp, 'npm-cache') }
    console.log(`registry: ${registry.url} (verdaccio, storage in ${registryDir}; upstream ${upstream})`)

    let tarball
    step('npm pack of the root package', () => {
      tarball = run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', temp], { cwd: root }).trim().split('\n').at(-1)
      mkdirSync(stage)
      run('tar', ['-xzf', join(temp, tarball), '-C', stage])
      const shipped = readdirSync(join(stage, 'package'))
      if (shipped.some((file) => file.endsWith('.node'))) throw new Error(`the root package ships a binary: ${shipped}`)
      return `${tarball}: ${shipped.join(', ')}`
    })

    const staged = join(stage, 'package')
    step(`napi artifacts + prepublish: ${platformPackage} published, optionalDependency added`, () => {
      cpSync(join(root, 'npm', target), join(staged, 'npm', target), { recursive: true })
      mkdirSync(join(staged, 'artifacts', `bindings-${target}`), { recursive: true })
      copyFileSync(binary, join(staged, 'artifacts', `bindings-${target}`, `${binaryName}.${target}.node`))
      // The publish job's two steps, for the one target whose binary exists here.
      const oneTarget = join(temp, 'napi-one-target.json')
      const triple = manifest.napi.targets.find((t) => parseTriple(t).platformArchABI === target)
      writeFileSync(oneTarget, JSON.stringify({ ...manifest.napi, targets: [triple] }))
      const napi = join(root, 'node_modules', '.bin', 'napi')
      const napiArgs = ['--cwd', staged, '--config-path', oneTarget]
      run(napi, ['artifacts', ...napiArgs, '--output-dir', 'artifacts', '--npm-dir', 'npm'], { env: publishEnv })
      run(napi, ['prepublish', '-t', 'npm', '--no-gh-release', ...napiArgs], { env: publishEnv })
      const published = JSON.parse(readFileSync(join(staged, 'package.json'), 'utf8'))
      const pinned = published.optionalDependencies?.[platformPackage]
      if (pinned !== manifest.version) {
        throw new Error(`optionalDependencies is ${JSON.stringify(published.optionalDependencies)}, not ${platformPackage}@${manifest.version}`)
      }
      return `${platformPackage}@${pinned}`
    })

    step(`npm publish of ${manifest.name}`, () => {
      run('npm', ['publish', '--ignore-scripts'], { cwd: staged, env: publishEnv })
      const view = JSON.parse(run('npm', ['view', '--json', `${manifest.name}@${manifest.version}`], { cwd: temp, env: publishEnv }))
      return `optionalDependencies ${JSON.stringify(view.optionalDependencies)}`
    })

    // The user's side: a fresh project, the throwaway registry, no Rust.
    mkdirSync(project)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2))
    writeFileSync(join(project, '.npmrc'), `registry=${registry.url}\n`)
    const userEnv = {
      ...process.env,
      PATH: pathWithoutRust(join(temp, 'consumer-bin')),
      npm_config_userconfig: join(project, '.npmrc'),
      npm_config_cache: join(temp, 'npm-cache-user'),
      npm_config_audit: 'false',
      npm_config_fund: 'false',
    }
    for (const name of Object.keys(userEnv)) if (/^(CARGO|RUSTUP|NAPI_RS)_/.test(name)) delete userEnv[name]
    const inProject = { cwd: project, env: userEnv }

    step('no Rust toolchain on the consumer PATH', () => {
      const found = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { ...inProject, encoding: 'utf8' })
      if (found.status === 0) throw new Error(`found ${found.stdout.trim()}`)
      return 'command -v cargo and rustc fail'
    })

    step(`npm install ${manifest.name}`, () => {
      run('npm', ['install', manifest.name], inProject)
      const installed = join(project, 'node_modules')
      const own = readdirSync(join(installed, manifest.name))
      if (own.some((file) => file.endsWith('.node'))) throw new Error('a binary appeared in the root package: was it built?')
      const platform = JSON.parse(readFileSync(join(installed, platformPackage, 'package.json'), 'utf8'))
      if (!existsSync(join(installed, platformPackage, platform.main))) throw new Error(`${platformPackage} has no ${platform.main}`)
      return `${platformPackage}@${platform.version} installed with it`
    })

    step("require('sendmsg') passes a descriptor", () => {
      writeFileSync(join(project, 'check-require.cjs'), CHECK_REQUIRE)
      return run(process.execPath, ['check-require.cjs'], inProject).trim()
    })

    step("import { sendmsg } from 'sendmsg', one instance with require", () => {
      writeFileSync(join(project, 'check-import.mjs'), CHECK_IMPORT)
      return run(process.execPath, ['check-import.mjs'], inProject).trim()
    })

    step('a descriptor passed between two processes (examples/pass-a-pipe.mjs)', () => {
      copyFileSync(join(root, 'examples', 'pass-a-pipe.mjs'), join(project, 'pass-a-pipe.mjs'))
      const output = run(process.execPath, ['pass-a-pipe.mjs'], inProject)
      if (!/parent \d+ read: hello from child \d+/.test(output)) throw new Error(`unexpected output:\n${output}`)
      return output.trim().split('\n').at(-1)
    })

    step('TypeScript consumer type-checks (node16 and bundler resolution)', () => {
      const pinned = (name) => `${name}@${JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version}`
      run('npm', ['install', '--save-dev', pinned('typescript'), pinned('@types/node')], inProject)
      writeFileSync(join(project, 'consumer.ts'), CONSUMER_TS)
      writeFileSync(join(project, 'consumer.mts'), CONSUMER_TS)
      writeFileSync(join(project, 'tsconfig.node16.json'), tsconfig('node16', 'node16'))
      writeFileSync(join(project, 'tsconfig.bundler.json'), tsconfig('preserve', 'bundler'))
      const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc')
      for (const config of ['tsconfig.node16.json', 'tsconfig.bundler.json']) run(process.execPath, [tsc, '-p', config], inProject)
      return `${pinned('typescript')}, ${pinned('@types/node')}; consumer.ts (CommonJS) and consumer.mts (ESM)`
    })
  } catch (error) {
    if (!(error instanceof StepFailed)) {
      totals.failed++
      console.log(`FAIL: ${error.stack ?? error}`)
    }
  } finally {
    registry?.child.kill()
    if (process.env.SENDMSG_KEEP_INSTALL_TEST) console.log(`kept ${temp}`)
    else rmSync(temp, { recursive: true, force: true })
  }
}

await main()
console.log(summaryLine(totals))
process.exit(totals.failed === 0 ? 0 : 1)
