//! Readiness: the one seam between a socket and the event loop that tells it when to read or
//! write. Two implementations of the same surface (`Watcher::new`, `set_interest`, `set_ref`,
//! `close`, calls into [`Ready`]):
//!
//! - [`uv`]: libuv's poll handle on the JavaScript thread's own loop (Node).
//! - [`thread`]: a poller thread of ours that hands readiness over through a Node-API threadsafe
//!   function (Bun and Deno, whose libuv functions are stubs or imitations).
//!
//! The backend is chosen once per process, by runtime rather than by probing symbols (Bun's
//! `uv_*` symbols exist and panic): Bun and Deno get the thread; Node gets libuv unless the
//! environment variable `SENDMSG_REACTOR=thread` asks for the thread (for tests and
//! measurements). `setReactorBackend` may choose before the first socket.
//!
//! What differs for the code above the seam: with the poller thread, a call into JavaScript made
//! inside `Ready::ready` does not run the microtasks it queued before returning (see
//! [`calls_drain_microtasks`]); what must happen after a handler's microtasks goes through
//! [`defer`]. Environment teardown goes through [`register_teardown`], which picks the hook shape
//! each backend (and Deno) needs.

use std::rc::Rc;
use std::sync::OnceLock;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

mod teardown;
mod thread;
mod uv;

pub use teardown::register_teardown;
pub use thread::defer;

/// What a watched descriptor reports.
pub trait Ready {
  /// Called on the JavaScript thread when the descriptor is readable and/or writable, or with
  /// `error` (a negative errno) when polling failed.
  fn ready(self: Rc<Self>, readable: bool, writable: bool, error: Option<i32>);
}

/// Which implementation watches descriptors in this process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
  /// libuv's `uv_poll_t` on the environment's loop.
  Uv,
  /// The poller thread and a threadsafe function per environment.
  Thread,
}

impl Backend {
  fn name(self) -> &'static str {
    match self {
      Backend::Uv => "uv",
      Backend::Thread => "thread",
    }
  }
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// The backend of this process, chosen on first use from the runtime `env` belongs to.
pub fn backend(env: sys::napi_env) -> Backend {
  *BACKEND.get_or_init(|| {
    // Deno runs queued threadsafe-function calls with no microtask checkpoint between them.
    thread::set_checkpoint_between_calls(!is_deno(env));
    started(choose(runtime_without_libuv(env)))
  })
}

/// Starts what `backend` needs that lives as long as the process (the poller thread and its
/// descriptor), so that it opens when the backend is chosen (at load: `lib/binding.ts` asks)
/// rather than in the middle of the first socket's work.
fn started(backend: Backend) -> Backend {
  if backend == Backend::Thread {
    // An error here (no epoll) is reported by the first Watcher::new.
    let _ = thread::available();
  }
  backend
}

/// The choice, given whether the runtime is one whose libuv cannot be used (Bun, Deno).
fn choose(runtime_without_libuv: bool) -> Backend {
  if runtime_without_libuv {
    return Backend::Thread;
  }
  // Read once: the backend never changes afterwards.
  match std::env::var("SENDMSG_REACTOR").as_deref() {
    Ok("thread") => Backend::Thread,
    _ if uv::available() => Backend::Uv,
    _ => Backend::Thread,
  }
}

/// Whether `env` runs in Bun or Deno: `process.versions.bun`, `process.versions.deno`, or a
/// global `Deno`.
fn runtime_without_libuv(env: sys::napi_env) -> bool {
  // SAFETY: env is live on this thread; every value read belongs to it. A missing property reads
  // as undefined, and a failed call leaves the output null, which `is_defined` treats as absent.
  unsafe {
    let mut global = std::ptr::null_mut();
    sys::napi_get_global(env, &mut global);
    if is_defined(env, property(env, global, c"Deno")) {
      return true;
    }
    let process = property(env, global, c"process");
    if !is_defined(env, process) {
      return false;
    }
    let versions = property(env, process, c"versions");
    if !is_defined(env, versions) {
      return false;
    }
    is_defined(env, property(env, versions, c"bun"))
      || is_defined(env, property(env, versions, c"deno"))
  }
}

/// Whether `env` runs in Deno (a global `Deno`, or `process.versions.deno`).
fn is_deno(env: sys::napi_env) -> bool {
  // SAFETY: as in `runtime_without_libuv`.
  unsafe {
    let mut global = std::ptr::null_mut();
    sys::napi_get_global(env, &mut global);
    let versions = property(env, property(env, global, c"process"), c"versions");
    is_defined(env, property(env, global, c"Deno"))
      || is_defined(env, property(env, versions, c"deno"))
  }
}

/// # Safety
/// `object` is null or a value of `env`, which is live on this thread.
unsafe fn property(
  env: sys::napi_env,
  object: sys::napi_value,
  name: &std::ffi::CStr,
) -> sys::napi_value {
  let mut result = std::ptr::null_mut();
  if !object.is_null() {
    // SAFETY: per the function's contract; a failure leaves result null.
    unsafe { sys::napi_get_named_property(env, object, name.as_ptr(), &mut result) };
  }
  result
}

/// # Safety
/// `value` is null or a value of `env`, which is live on this thread.
unsafe fn is_defined(env: sys::napi_env, value: sys::napi_value) -> bool {
  if value.is_null() {
    return false;
  }
  let mut kind = sys::ValueType::napi_undefined;
  // SAFETY: per the function's contract.
  let status = unsafe { sys::napi_typeof(env, value, &mut kind) };
  status == sys::Status::napi_ok
    && kind != sys::ValueType::napi_undefined
    && kind != sys::ValueType::napi_null
}

/// Whether each `napi_make_callback` made inside [`Ready::ready`] runs the `process.nextTick`
/// callbacks and microtasks it queued before it returns. True with libuv (the poll callback runs
/// with no JavaScript on the stack, so each call is the outermost callback scope). False with the
/// poller thread: readiness arrives inside a threadsafe function's call, which the runtime runs as
/// one task, so they all run after `ready` returns; use [`defer`] for what must come after them.
pub fn calls_drain_microtasks(env: sys::napi_env) -> bool {
  backend(env) == Backend::Uv
}

/// Whether event-loop sockets can work in this process: by the chosen backend once chosen,
/// otherwise by either (the choice is made with the first socket's environment).
pub fn available() -> bool {
  match BACKEND.get() {
    Some(Backend::Uv) => uv::available(),
    Some(Backend::Thread) => thread::available(),
    None => uv::available() || thread::available(),
  }
}

/// Runs `done` once every watcher of this thread is closed (at once if none).
pub fn when_all_closed(done: Box<dyn FnOnce()>) {
  match BACKEND.get() {
    Some(Backend::Thread) => thread::when_all_closed(done),
    Some(Backend::Uv) => uv::when_all_closed(done),
    // No watcher was ever made.
    None => done(),
  }
}

/// A watched descriptor, with whichever backend the process uses.
pub enum Watcher {
  Uv(uv::Watcher),
  Thread(thread::Watcher),
}

impl Watcher {
  /// Starts watching `fd` for `env` (not yet for any event). Errors are negative errno values,
  /// e.g. `-EEXIST` when the descriptor is already watched.
  pub fn new(env: sys::napi_env, fd: i32, target: Rc<dyn Ready>) -> std::result::Result<Self, i32> {
    match backend(env) {
      Backend::Uv => uv::Watcher::new(env, fd, target).map(Watcher::Uv),
      Backend::Thread => thread::Watcher::new(env, fd, target).map(Watcher::Thread),
    }
  }

  /// Watches for the given events, or for none (an idle watcher keeps no loop alive).
  pub fn set_interest(&self, readable: bool, writable: bool) -> std::result::Result<(), i32> {
    match self {
      Watcher::Uv(watcher) => watcher.set_interest(readable, writable),
      Watcher::Thread(watcher) => watcher.set_interest(readable, writable),
    }
  }

  /// Whether a watcher with interest keeps the loop alive.
  pub fn set_ref(&self, referenced: bool) {
    match self {
      Watcher::Uv(watcher) => watcher.set_ref(referenced),
      Watcher::Thread(watcher) => watcher.set_ref(referenced),
    }
  }

  /// Stops watching now; the descriptor may be closed as soon as this returns.
  pub fn close(self) {
    match self {
      Watcher::Uv(watcher) => watcher.close(),
      Watcher::Thread(watcher) => watcher.close(),
    }
  }
}

/// The readiness backend this process uses for event-loop sockets: `'uv'` (libuv's poll, Node)
/// or `'thread'` (a poller thread; Bun, Deno, or Node with `SENDMSG_REACTOR=thread`).
#[napi]
pub fn reactor_backend(env: Env) -> &'static str {
  backend(env.raw()).name()
}

/// Chooses the readiness backend before the first event-loop socket: `'thread'` always works;
/// `'uv'` only where libuv's poll is real (Node). Returns the backend in use, which is the one
/// already chosen if a socket was made before (the choice is made once per process).
#[napi]
pub fn set_reactor_backend(env: Env, name: String) -> Result<&'static str> {
  let wanted = match name.as_str() {
    "thread" => Backend::Thread,
    "uv" if !runtime_without_libuv(env.raw()) && uv::available() => Backend::Uv,
    "uv" => {
      return Err(Error::new(
        Status::InvalidArg,
        "this runtime has no usable libuv poll: only the 'thread' reactor works here",
      ))
    }
    _ => {
      return Err(Error::new(
        Status::InvalidArg,
        format!("unknown reactor backend {name:?}: expected 'uv' or 'thread'"),
      ))
    }
  };
  Ok(
    BACKEND
      .get_or_init(|| {
        thread::set_checkpoint_between_calls(!is_deno(env.raw()));
        started(wanted)
      })
      .name(),
  )
}
