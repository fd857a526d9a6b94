//! Environment teardown for code that owns watchers: run a hook that closes them, and let the
//! environment finish only once every watcher of the thread is through closing.
//!
//! Two shapes, by backend:
//! - libuv: a poll handle is freed in its close callback, a later loop turn, so the hook is a
//!   Node-API *async* cleanup hook, removed once the last handle is through (Node allows the
//!   removal from inside the hook; the environment waits for it).
//! - the poller thread: closing is synchronous, so a plain env cleanup hook suffices, and it is
//!   never removed. This is what keeps Deno working: there, removing an async cleanup hook from
//!   inside it frees the hook twice (the process aborts at exit with "double free").

use std::ffi::c_void;

use napi::sys;

use super::{backend, when_all_closed, Backend};

/// Runs `hook` on the environment's thread when `env` is torn down (a worker exiting, or the
/// process), then lets the environment finish once every watcher of the thread is closed. Call it
/// once per environment; the hook must close every watcher it owns.
pub fn register_teardown(env: sys::napi_env, hook: fn()) -> Result<(), i32> {
  let arg = hook as *mut c_void;
  let status = match backend(env) {
    // SAFETY: env is live on this thread; the hook is a plain function pointer.
    Backend::Thread => unsafe { sys::napi_add_env_cleanup_hook(env, Some(run_hook), arg) },
    Backend::Uv => {
      let mut handle = std::ptr::null_mut();
      // SAFETY: as above; the handle is removed once, by `run_async_hook`.
      unsafe { sys::napi_add_async_cleanup_hook(env, Some(run_async_hook), arg, &mut handle) }
    }
  };
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(-libc::ENOMEM)
  }
}

unsafe extern "C" fn run_hook(arg: *mut c_void) {
  // SAFETY: arg is the `fn()` registered in `register_teardown`.
  let hook: fn() = unsafe { std::mem::transmute::<*mut c_void, fn()>(arg) };
  hook();
}

unsafe extern "C" fn run_async_hook(handle: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
  // SAFETY: arg is the `fn()` registered in `register_teardown`.
  let hook: fn() = unsafe { std::mem::transmute::<*mut c_void, fn()>(arg) };
  hook();
  let handle = handle as usize;
  when_all_closed(Box::new(move || {
    // SAFETY: the handle Node gave this hook, removed once. Only the libuv backend (Node) gets
    // here, and Node allows the removal from inside the hook.
    unsafe { sys::napi_remove_async_cleanup_hook(handle as sys::napi_async_cleanup_hook_handle) };
  }));
}
