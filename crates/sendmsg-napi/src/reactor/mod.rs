//! Readiness: the one seam between a socket and the event loop that tells it when to read or
//! write. Today it is libuv's poll handle on the JavaScript thread (Node). Runtimes that load
//! Node-API addons without libuv (Bun, Deno) need another implementation of the same surface:
//! `Watcher::new`, `set_interest`, `set_ref`, `close`, and calls into [`Ready`].

mod uv;

pub use uv::{available, when_all_closed, Watcher};

/// What a watched descriptor reports.
pub trait Ready {
  /// Called on the JavaScript thread when the descriptor is readable and/or writable, or with
  /// `error` (a negative libuv status) when polling failed.
  fn ready(self: std::rc::Rc<Self>, readable: bool, writable: bool, error: Option<i32>);
}
