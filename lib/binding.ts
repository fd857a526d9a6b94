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
  let header: { glibcVersionRuntime?: string } | undefined
  try {
    // Node reports the glibc it runs on; a Node built against musl has no such field.
    header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  } catch {
    // Deno without --allow-sys refuses the report (NotCapable). Deno itself is built for glibc
    // only, so that is the runtime's C library.
    return `linux-${process.arch}-gnu`
  }
  return `linux-${process.arch}-${header?.glibcVersionRuntime === undefined ? 'musl' : 'gnu'}`
}

/** The permissions Deno needs to load the addon, and why. */
const DENO_PERMISSIONS = '--allow-ffi (to load a native addon), --allow-read (to read it) and --allow-env (its loader reads NAPI_RS_NATIVE_LIBRARY_PATH)'

/**
 * Deno's refusal of a permission, if that is what `cause` is or holds (the generated loader chains
 * the errors of each path it tried through `cause`): the flag it asks for, or '' if none is named.
 */
function deniedDenoPermission(cause: unknown): string | undefined {
  for (let error = cause, depth = 0; error instanceof Error && depth < 64; error = error.cause, depth++) {
    // The loader's chain copies messages but not names: Deno's message is the reliable part
    // ("Requires ffi access to ..., run again with the --allow-ffi flag").
    const flag = /run again with the (--allow-[a-z-]+) flag/.exec(error.message)?.[1]
    if (flag !== undefined) return flag
    if (error.name === 'NotCapable' || error.name === 'PermissionDenied') return ''
  }
  return undefined
}

/** The error for a binding that would not load, saying what to install. */
export function bindingLoadError(cause: unknown): Error {
  const denied = deniedDenoPermission(cause)
  if (denied !== undefined) {
    const missing = denied === '' ? 'a permission' : `the permission ${denied}`
    return stateError(
      'ERR_SENDMSG_RUNTIME_PERMISSION',
      `sendmsg could not load its native binary because Deno denied ${missing}. ` +
        `Loading it needs ${DENO_PERMISSIONS}: run with those flags, or with -A.`,
      { cause },
    )
  }
  const target = runningTarget()
  const platformPackage = `sendmsg-${target}`
  let override: string | undefined
  try {
    override = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  } catch {
    // Deno without --allow-env: then the loader could not have used it either.
  }
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
