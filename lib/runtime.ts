// Which JavaScript runtime loaded the package, and the error for what that runtime cannot do.
// Bun and Deno load Node-API addons, but parts of their Node compatibility stop short of raw
// descriptors: the checks here turn a confusing failure inside their net/fs modules into an error
// that names the limit and the way around it.
import { stateError, type NodeError } from './errors'

/** The runtime: 'bun', 'deno' or 'node'. */
export type RuntimeName = 'bun' | 'deno' | 'node'

const versions = process.versions as NodeJS.ProcessVersions & { bun?: string; deno?: string }

/** The runtime running this process, read once. */
export const RUNTIME: RuntimeName =
  versions.bun !== undefined ? 'bun' : versions.deno !== undefined || typeof (globalThis as { Deno?: unknown }).Deno === 'object' ? 'deno' : 'node'

const RUNTIME_LABELS: Record<RuntimeName, string> = { bun: 'Bun', deno: 'Deno', node: 'Node.js' }

/**
 * The error for something this runtime cannot do: code ERR_SENDMSG_RUNTIME_UNSUPPORTED, a
 * message naming the runtime, what it lacks, and `workaround`.
 */
export function runtimeUnsupported(what: string, workaround: string): Error & NodeError {
  const version = RUNTIME === 'node' ? process.version : (versions[RUNTIME] ?? '')
  return stateError('ERR_SENDMSG_RUNTIME_UNSUPPORTED', `${RUNTIME_LABELS[RUNTIME]} ${version}: ${what}. ${workaround}`)
}
