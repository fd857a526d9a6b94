// Loading the native binary: when it cannot be loaded, the error names the platform and the
// package to install, and keeps the loader's own error as its cause.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { parseTriple } from '@napi-rs/cli'

import { bindingLoadError, PREBUILT_TARGETS, runningTarget } from '../dist/lib/binding.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  name: string
  napi: { targets: string[] }
}

// Loads the package in a plain Node child (not under the specs' TypeScript loader, which is a
// napi-rs addon that would obey the variable too) and reports what it threw.
function loadWithMissingBinary(how: 'require' | 'import') {
  const load = how === 'require' ? `Promise.resolve().then(() => require('sendmsg'))` : `import('sendmsg')`
  const script = `${load}.then(
    () => console.log(JSON.stringify({ loaded: true })),
    (e) => console.log(JSON.stringify({ code: e.code, message: e.message, cause: String(e.cause?.message) })))`
  const child = spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/sendmsg.node' },
    encoding: 'utf8',
  })
  return JSON.parse(child.stdout) as { loaded?: true; code?: string; message?: string; cause?: string }
}

for (const how of ['require', 'import'] as const) {
  test(`a binary that will not load is a clear error, with the loader's as cause (${how})`, (t) => {
    const result = loadWithMissingBinary(how)
    t.is(result.loaded, undefined)
    t.is(result.code, 'ERR_SENDMSG_NATIVE_BINARY')
    t.regex(result.message!, /NAPI_RS_NATIVE_LIBRARY_PATH \(\/nonexistent\/sendmsg\.node\)/)
    t.true(result.message!.includes(`sendmsg-${runningTarget()}`))
    t.regex(result.cause!, /Cannot find native binding/, "napi-rs's loader error is the cause")
  })
}

test('the error for a supported platform names it and the package to install', (t) => {
  const saved = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  delete process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  try {
    const cause = new Error('Cannot find native binding')
    const error = bindingLoadError(cause)
    const target = runningTarget()
    t.true(PREBUILT_TARGETS.includes(target), `${target} is a prebuilt target`)
    t.is(error.cause, cause)
    t.is((error as Error & { code?: string }).code, 'ERR_SENDMSG_NATIVE_BINARY')
    t.true(error.message.includes(`npm install ${manifest.name}-${target}`))
    t.true(error.message.includes(`platform ${process.platform}, arch ${process.arch}`))
  } finally {
    if (saved !== undefined) process.env.NAPI_RS_NATIVE_LIBRARY_PATH = saved
  }
})

test('the running target says which C library on Linux', (t) => {
  const target = runningTarget()
  if (process.platform === 'linux') t.regex(target, new RegExp(`^linux-${process.arch}-(gnu|musl)$`))
  else t.is(target, `${process.platform}-${process.arch}`)
})

test('the error for a platform without a binary says so and lists those there are', (t) => {
  const arch = Object.getOwnPropertyDescriptor(process, 'arch')!
  Object.defineProperty(process, 'arch', { ...arch, value: 'riscv64' })
  try {
    const message = bindingLoadError(new Error('x')).message
    t.regex(message, /has no prebuilt binary for \S+-riscv64/)
    t.true(message.includes(PREBUILT_TARGETS.join(', ')))
  } finally {
    Object.defineProperty(process, 'arch', arch)
  }
})

test("the prebuilt targets are package.json's napi targets", (t) => {
  const fromConfig = manifest.napi.targets.map((triple) => parseTriple(triple).platformArchABI)
  t.deepEqual([...PREBUILT_TARGETS].sort(), fromConfig.sort())
})
