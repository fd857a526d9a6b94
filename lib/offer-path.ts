// Where an offer of listeners lives on disk: a socket file born mode 0600 in a directory only its
// owner may enter, made so that a file left behind by a crashed offerer never blocks the next
// offer, and so that a live offer is never displaced.
//
// Every offerer of a directory works under an exclusive flock(2) of that directory, which the
// kernel drops when the holder dies, so a crash never leaves the lock behind. Holding it, the
// offerer binds a fresh temporary name in the directory and looks at the offer's path:
//   - nothing there, or a socket that refuses connections (ECONNREFUSED: nobody listens, the file
//     is stale): the temporary socket is renamed over the path. rename(2) replaces the file in
//     one step, so there is no moment without a file at the path for another process to bind;
//   - a socket that accepts (or whose backlog is full): a live offer; it is left alone and the
//     new offer fails with EADDRINUSE;
//   - anything else (a regular file, a directory, a link): never removed; EADDRINUSE.
// Two offerers racing on one stale path are serialized by the lock: the second either finds the
// lock taken (EADDRINUSE at once: someone is placing an offer there) or, after the first, finds
// its live offer. An offer's close() removes its file while it still listens (lib/server.ts),
// so that no one holding the lock can take it for stale in between.
import { randomBytes } from 'node:crypto'
import { closeSync, constants as fsConstants, fstatSync, lstatSync, mkdirSync, openSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { getSystemErrorMap } from 'node:util'

import { native } from './binding'
import { constants } from './constants'
import { stateError, type NodeError } from './errors'
import { refuseRightsIfSupported } from './pass-rights'
import { listenNow, moveBoundFile, type UnixServer } from './server'

/** How many fresh temporary names are tried before giving up (a clash needs 2^32 bad luck). */
const TEMPORARY_NAME_TRIES = 4

function unsafeDirectory(message: string): Error {
  return stateError('ERR_SENDMSG_UNSAFE_DIRECTORY', message)
}

/**
 * The error for a path the offer may not take, worded as Node words a listen's EADDRINUSE, with
 * the reason after it: `listen EADDRINUSE: address already in use /run/app/handoff.sock (a live
 * offer answers there)`.
 */
function addressInUse(path: string, reason: string): NodeError & { errno: number; syscall: string; address: string } {
  const errno = -osConstants.errno.EADDRINUSE
  const description = getSystemErrorMap().get(errno)?.[1] ?? 'address already in use'
  const error = stateError('EADDRINUSE', `listen EADDRINUSE: ${description} ${path} (${reason})`)
  for (const [key, value] of [['errno', errno], ['syscall', 'listen'], ['address', path]] as const) {
    Object.defineProperty(error, key, { value, enumerable: true, configurable: true, writable: true })
  }
  return error as NodeError & { errno: number; syscall: string; address: string }
}

/**
 * Refuses a path that goes through a symbolic link another user owns (root's and ours are
 * trusted): its owner can re-point it whenever they like, and everything below it with it. Each
 * prefix of the path as given is what the kernel resolves on the way, so each is looked at as
 * given; a prefix that does not exist yet is one mkdir makes, ours.
 */
function refuseForeignLinks(dir: string): void {
  const uid = process.getuid!()
  const parts = dir.split('/')
  for (let end = 1; end <= parts.length; end++) {
    const prefix = parts.slice(0, end).join('/')
    if (prefix === '' || prefix === '.') continue
    let stat
    try {
      stat = lstatSync(prefix)
    } catch {
      return
    }
    if (stat.isSymbolicLink() && stat.uid !== uid && stat.uid !== 0) {
      throw unsafeDirectory(`${prefix} is a symbolic link of user ${stat.uid}, who could re-point it: an offer's path may go through links of root or this user only`)
    }
  }
}

/**
 * Makes sure `dir` exists, belongs to us, and no one else may enter it; returns its identity.
 * The directory itself is never a symbolic link: whoever owns a link can re-point it between
 * our check and the bind, and systemd's mkdir_safe refuses links for the same reason. (The
 * directories above it are the caller's choice, as with systemd's RuntimeDirectory.)
 */
function privateDirectory(dir: string): { dev: number; ino: number } {
  refuseForeignLinks(dir)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = lstatSync(dir)
  if (stat.isSymbolicLink()) {
    throw unsafeDirectory(`${dir} is a symbolic link (owner ${stat.uid}): an offer's directory must be a real directory, never a link someone could re-point`)
  }
  if (!stat.isDirectory() || stat.uid !== process.getuid!() || (stat.mode & 0o077) !== 0) {
    throw unsafeDirectory(
      `${dir} must be a directory of this user that no one else may enter (mode 0700); it is mode 0${(stat.mode & 0o777).toString(8)}, owner ${stat.uid}`,
    )
  }
  return { dev: stat.dev, ino: stat.ino }
}

/** Whether `dir` is still the directory `identity` names, and no link. */
function sameDirectory(dir: string, identity: { dev: number; ino: number }): boolean {
  try {
    const now = lstatSync(dir)
    return !now.isSymbolicLink() && now.dev === identity.dev && now.ino === identity.ino
  } catch {
    return false
  }
}

/**
 * Takes the directory's offer lock, or fails with EADDRINUSE when another process holds it (it
 * is placing an offer there right now). The descriptor returned holds the lock; closing it
 * releases it. The directory opened must be the one checked: O_NOFOLLOW, and the same inode.
 */
function lockDirectory(dir: string, identity: { dev: number; ino: number }, path: string): number {
  const fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW)
  try {
    const stat = fstatSync(fd)
    if (stat.dev !== identity.dev || stat.ino !== identity.ino) throw unsafeDirectory(`${dir} was replaced while the offer was being made`)
    if (!native.tryLockExclusive(fd)) throw addressInUse(path, 'another process is placing an offer at this path right now')
    return fd
  } catch (error) {
    closeSync(fd)
    throw error
  }
}

/**
 * Binds and listens at `path` with the socket file born mode 0600, so that no chmod by path ever
 * follows (a path resolved again after the bind is a path someone may have re-pointed). bind(2)
 * gives the file the process umask's mode on macOS, and on Linux the socket inode's mode masked
 * by the umask (measured on 6.18: fchmod 0600 before bind gives a 0600 file, after bind it changes
 * only the socket's inode); the umask is the one lever that works on both, and that works with
 * UnixServer.listen binding for us. It is process-wide, but JavaScript runs on one thread and the
 * bind between the two umask calls is synchronous, so no other JavaScript sees it; a file the
 * libuv threadpool happens to create in those microseconds gets a narrower mode, never a wider
 * one. A worker thread may not set the umask: there the file keeps the process umask's mode, and
 * the 0700 directory is what keeps other users out.
 */
function listenPrivately(path: string): UnixServer {
  let previous: number | undefined
  try {
    previous = process.umask(0o177)
  } catch {
    // ERR_WORKER_UNSUPPORTED_OPERATION in a worker thread.
  }
  try {
    // Descriptors are refused from before the first connection (Linux 6.16+): the offer's peers
    // ask and listen, and one that pushes descriptors at the supervisor gets EPERM, so it cannot
    // fill the supervisor's descriptor table. Older kernels: the frame channel closes them.
    return listenNow(path, undefined, refuseRightsIfSupported)
  } finally {
    if (previous !== undefined) process.umask(previous)
  }
}

/**
 * Listens privately at a fresh name in `dir`, to be renamed over the offer's path (whose last
 * component is `name`). The name is `.offer-` and 8 random hex digits; where that would make the
 * path too long for a socket address (108 bytes on Linux, 104 on macOS) while the offer's own path
 * fits, it is as long as `name` (at least 5 characters: a dot and random hex digits), so that any
 * path a taker can connect to can be offered.
 */
function listenAtTemporaryName(dir: string, name: string): UnixServer {
  let short = false
  for (let attempt = 1; ; attempt++) {
    const random = randomBytes(8).toString('hex')
    const temporary = short ? `.${random.slice(0, Math.max(4, name.length - 1))}` : `.offer-${random.slice(0, 8)}`
    try {
      return listenPrivately(join(dir, temporary))
    } catch (error) {
      const code = (error as { code?: unknown }).code
      if (code === 'ENAMETOOLONG' && !short) short = true
      else if (code !== 'EADDRINUSE' || attempt >= TEMPORARY_NAME_TRIES) throw error
    }
  }
}

/**
 * What is at the offer's path, as far as replacing it goes: 'free' (nothing, or a stale socket
 * nobody listens on) or the reason it must be left alone. A socket is proven stale only by
 * connecting and being refused; a connection accepted, a full backlog (EAGAIN) or any other
 * answer means someone may be listening, and a live offer is never displaced.
 */
function inspectPath(path: string): 'free' | string {
  let stat
  try {
    stat = lstatSync(path)
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return 'free'
    throw error
  }
  if (!stat.isSocket()) {
    const kind = stat.isFile() ? 'a regular file' : stat.isDirectory() ? 'a directory' : stat.isSymbolicLink() ? 'a symbolic link' : 'not a socket'
    return `${kind} is there, which an offer never removes`
  }
  const probe = native.unixSocket(constants.SOCK_STREAM)
  try {
    native.connectUnix(probe, Buffer.from(path))
    return 'a live offer answers there'
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return 'free'
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return 'a live offer is there (its backlog is full)'
    return `a socket is there that could not be proven stale (connect: ${String(code)})`
  } finally {
    native.closeFd(probe)
  }
}

/**
 * Listens at the offer's `path`, mode 0600, in a private directory (made if missing), replacing
 * a stale socket file a crashed offerer left there and never a live one: see the top of this
 * module. Throws ERR_SENDMSG_UNSAFE_DIRECTORY for a directory others may enter or re-point, and
 * EADDRINUSE (Node's wording, the reason in parentheses) when the path is taken.
 */
/** @internal */
export function listenAtOfferPath(path: string): UnixServer {
  const dir = dirname(path)
  if (basename(path) === '') throw unsafeDirectory(`${path} names no file`)
  const identity = privateDirectory(dir)
  const lock = lockDirectory(dir, identity, path)
  try {
    const server = listenAtTemporaryName(dir, basename(path))
    try {
      const state = inspectPath(path)
      if (state !== 'free') throw addressInUse(path, state)
      moveBoundFile(server, path)
      // The bind and the rename resolved the path again: make sure they went where the check looked.
      if (!sameDirectory(dir, identity)) throw unsafeDirectory(`${dir} was replaced while the offer was being made`)
      return server
    } catch (error) {
      server.close()
      throw error
    }
  } finally {
    closeSync(lock)
  }
}
