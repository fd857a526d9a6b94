//! Environment teardown (a worker ending, or the process exiting): every socket of the thread is
//! closed, and the environment finishes once the reactor is through with their watchers.
//! Received descriptors need nothing here: their handles are finalized by the environment itself.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::sys;

use super::delivery;
use super::socket::EventSocket;
use crate::reactor;

thread_local! {
  static LIVE: RefCell<Vec<Weak<EventSocket>>> = const { RefCell::new(Vec::new()) };
  /// Collected sockets are pruned from LIVE when it doubles from this size, not on every open.
  static PRUNE_AT: Cell<usize> = const { Cell::new(16) };
  static HOOK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C" fn on_env_teardown(
  handle: sys::napi_async_cleanup_hook_handle,
  _arg: *mut std::ffi::c_void,
) {
  for socket in LIVE.take().iter().filter_map(Weak::upgrade) {
    socket.close_for_teardown();
  }
  delivery::forget_for_teardown();
  HOOK_REGISTERED.set(false);
  let handle = handle as usize;
  reactor::when_all_closed(Box::new(move || {
    // SAFETY: the handle napi gave this hook, removed once.
    unsafe { sys::napi_remove_async_cleanup_hook(handle as sys::napi_async_cleanup_hook_handle) };
  }));
}

/// Closes `socket` at environment teardown if it is still open then.
pub fn track(env: sys::napi_env, socket: &Rc<EventSocket>) -> Result<()> {
  if !HOOK_REGISTERED.get() {
    let mut handle = std::ptr::null_mut();
    // SAFETY: env is live; the hook is a plain function with no state.
    let status = unsafe {
      sys::napi_add_async_cleanup_hook(
        env,
        Some(on_env_teardown),
        std::ptr::null_mut(),
        &mut handle,
      )
    };
    if status != sys::Status::napi_ok {
      return Err(Error::new(
        Status::GenericFailure,
        "could not register the environment cleanup hook",
      ));
    }
    HOOK_REGISTERED.set(true);
  }
  LIVE.with_borrow_mut(|live| {
    if live.len() >= PRUNE_AT.get() {
      live.retain(|weak| weak.strong_count() > 0);
      PRUNE_AT.set((live.len() * 2).max(16));
    }
    live.push(Rc::downgrade(socket));
  });
  Ok(())
}
