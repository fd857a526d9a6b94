//! Environment teardown (a worker ending, or the process exiting): every socket of the thread is
//! closed, and the environment finishes once the reactor is through with their watchers.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::sys;

use super::delivery;
use super::received_fds;
use super::socket::EventSocket;
use crate::reactor;

thread_local! {
  static LIVE: RefCell<Vec<Weak<EventSocket>>> = const { RefCell::new(Vec::new()) };
  /// Collected sockets are pruned from LIVE when it doubles from this size, not on every open.
  static PRUNE_AT: Cell<usize> = const { Cell::new(16) };
  static HOOK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Closes every socket of the thread; the reactor lets the environment finish once their
/// watchers are through closing (see `reactor::register_teardown`, which picks the hook's shape).
fn on_env_teardown() {
  for socket in LIVE.take().iter().filter_map(Weak::upgrade) {
    socket.close_for_teardown();
  }
  // Whatever is still held: messages in flight to JavaScript, kept or adopted descriptors.
  received_fds::settle_all();
  delivery::forget_for_teardown();
  super::udp::receive::forget_for_teardown();
  HOOK_REGISTERED.set(false);
}

/// Makes sure this thread's sockets and held descriptors are closed when `env` is torn down.
pub fn ensure_hook(env: sys::napi_env) -> Result<()> {
  if !HOOK_REGISTERED.get() {
    reactor::register_teardown(env, on_env_teardown).map_err(|_| {
      Error::new(
        Status::GenericFailure,
        "could not register the environment cleanup hook",
      )
    })?;
    HOOK_REGISTERED.set(true);
  }
  Ok(())
}

/// Closes `socket` at environment teardown if it is still open then.
pub fn track(env: sys::napi_env, socket: &Rc<EventSocket>) -> Result<()> {
  ensure_hook(env)?;
  LIVE.with_borrow_mut(|live| {
    if live.len() >= PRUNE_AT.get() {
      live.retain(|weak| weak.strong_count() > 0);
      PRUNE_AT.set((live.len() * 2).max(16));
    }
    live.push(Rc::downgrade(socket));
  });
  Ok(())
}
