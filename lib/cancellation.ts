// Giving up on a wait, the way Node's own promise APIs do: an AbortSignal rejects with Node's
// AbortError (`code: 'ABORT_ERR'`, the signal's reason as `cause`), a `timeout` with
// ERR_SENDMSG_TIMEOUT; and the option checks every options object of the package goes through, so
// that a misspelt `timout` is an error rather than a wait that never ends.
import { INT32_MAX, invalidArgType, invalidArgValue, stateError, validateInteger } from './errors'

/** Node's AbortError (what its own promise APIs reject with when a signal aborts them). */
/** @internal */
export function abortError(reason?: unknown): Error & { code: 'ABORT_ERR' } {
  const error = stateError('ABORT_ERR', 'The operation was aborted', reason === undefined ? undefined : { cause: reason })
  error.name = 'AbortError'
  return error as Error & { code: 'ABORT_ERR' }
}

/** @internal */
export function timeoutError(message: string): Error & { code: 'ERR_SENDMSG_TIMEOUT' } {
  return stateError('ERR_SENDMSG_TIMEOUT', message) as Error & { code: 'ERR_SENDMSG_TIMEOUT' }
}

/**
 * The options object a function was given, refusing option names it does not know: a misspelt
 * `timout` would otherwise do nothing. `undefined` is no options.
 */
/** @internal */
export function checkOptionNames(options: unknown, name: string, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw invalidArgType(name, 'of type object', options)
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw invalidArgValue(name, key, `has an unknown option '${key}' (known: ${known.join(', ')})`)
  }
  return options as Record<string, unknown>
}

/**
 * The cancellation options every waiting function of the package takes.
 *
 * @example const options: WaitOptions = { signal: AbortSignal.timeout(10_000), timeout: 5000 }
 */
export interface WaitOptions {
  /** Gives up with an AbortError (`code: 'ABORT_ERR'`) when aborted, at once if it already is. */
  signal?: AbortSignal
  /** Gives up with `ERR_SENDMSG_TIMEOUT` after this many milliseconds. */
  timeout?: number
}

/** @internal */
export const WAIT_OPTIONS = ['signal', 'timeout'] as const

/** A checked `signal` and `timeout` (milliseconds, as setTimeout takes them). */
/** @internal */
export function waitOptions(options: Record<string, unknown>, name: string): WaitOptions {
  const { signal, timeout } = options
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType(`${name}.signal`, 'an instance of AbortSignal', signal)
  if (timeout !== undefined) validateInteger(timeout, `${name}.timeout`, 0, INT32_MAX)
  return { signal: signal as AbortSignal | undefined, timeout: timeout as number | undefined }
}

/**
 * One `signal` for everything an operation waits for: aborted with an AbortError when the
 * caller's signal aborts, or with ERR_SENDMSG_TIMEOUT when `timeout` ms have passed. Without
 * either it does nothing and costs nothing.
 */
/** @internal */
export class Deadline {
  readonly signal: AbortSignal | undefined
  readonly #controller: AbortController | undefined
  readonly #callerSignal: AbortSignal | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(options: WaitOptions, timedOut: () => Error) {
    const { signal, timeout } = options
    if (signal === undefined && timeout === undefined) return
    const controller = (this.#controller = new AbortController())
    this.signal = controller.signal
    this.#callerSignal = signal
    if (signal?.aborted) controller.abort(abortError(signal.reason))
    else signal?.addEventListener('abort', this.#onAbort, { once: true })
    if (timeout !== undefined && !controller.signal.aborted) this.#timer = setTimeout(() => controller.abort(timedOut()), timeout)
  }

  readonly #onAbort = (): void => this.#controller!.abort(abortError(this.#callerSignal!.reason))

  /**
   * `promise`, or the deadline's reason if it ends first; what the promise brings later is handed
   * to `discard` (something that cannot be cancelled, such as a connect, is still cleaned up).
   */
  race<T>(promise: Promise<T>, discard: (late: T) => void): Promise<T> {
    const signal = this.signal
    if (signal === undefined) return promise
    return new Promise<T>((resolve, reject) => {
      const onEnd = () => reject(signal.reason)
      if (signal.aborted) onEnd()
      else signal.addEventListener('abort', onEnd, { once: true })
      promise.then(
        (value) => {
          signal.removeEventListener('abort', onEnd)
          if (signal.aborted) discard(value)
          else resolve(value)
        },
        (error) => {
          signal.removeEventListener('abort', onEnd)
          reject(error)
        },
      )
    })
  }

  /** Throws the reason if it ended. */
  check(): void {
    if (this.signal?.aborted) throw this.signal.reason
  }

  /** What to reject with: the deadline's reason when it ended (next() wraps it), else `error`. */
  reason(error: unknown): unknown {
    return this.signal?.aborted ? this.signal.reason : error
  }

  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#callerSignal?.removeEventListener('abort', this.#onAbort)
  }
}
