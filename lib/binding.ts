// The native addon, through the loader that `napi build` generates (binding.js at the package
// root, reached through the package's "#binding" import so that the path is the same from the
// TypeScript sources and from the compiled dist/). Only this module touches it.
//
// The generated loader's own error ("Cannot find native binding") names neither the platform nor
// the package to install, so a failed load is rethrown here saying both, with the loader's error
// as `cause`.
import type NativeBinding = require('#binding')

import { stateError } from './errors'

/** The prebuilt binaries, by napi-rs target name; each is the npm package `sendmsg-<target>`. */
export const PREBUILT_TARGETS: readonly string[] = [
  'linux-x64-gnu',
  'linux-arm64-gnu',
  'linux-x64-musl',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
]

/** This process's napi-rs target name: platform, arch and, on Linux, the C library. */
export function runningTarget(): string {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  // Node reports the glibc it runs on; a Node built against musl has no such field.
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  return `linux-${process.arch}-${header?.glibcVersionRuntime === undefined ? 'musl' : 'gnu'}`
}

/** The error for a binding that would not load, saying what to install. */
export function bindingLoadError(cause: unknown): Error {
  const target = runningTarget()
  const platformPackage = `sendmsg-${target}`
  const override = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  const message = override
    ? `sendmsg could not load its native binary from NAPI_RS_NATIVE_LIBRARY_PATH (${override}); ` +
      `unset it to load the one for ${target} from ${platformPackage}.`
    : PREBUILT_TARGETS.includes(target)
      ? `sendmsg could not load its native binary for ${target} (platform ${process.platform}, arch ${process.arch}). ` +
        `It comes in the optional dependency ${platformPackage}: install it (npm install ${platformPackage}). ` +
        'If it is installed, remove node_modules and package-lock.json and install again: npm sometimes ' +
        'skips optional dependencies (https://github.com/npm/cli/issues/4828).'
      : `sendmsg has no prebuilt binary for ${target} (platform ${process.platform}, arch ${process.arch}): ` +
        `there is no package ${platformPackage}. Prebuilt targets: ${PREBUILT_TARGETS.join(', ')}.`
  return stateError('ERR_SENDMSG_NATIVE_BINARY', message, { cause })
}

function load(): typeof NativeBinding {
  try {
    return require('#binding')
  } catch (error) {
    throw bindingLoadError(error)
  }
}

export const native = load()

// Chooses the readiness backend of event-loop sockets now, by runtime (Bun and Deno get the
// binding's poller thread; Node gets libuv's poll unless SENDMSG_REACTOR=thread): the poller's
// process-lifetime descriptor then opens at load, not in the middle of the caller's work.
native.reactorBackend()
