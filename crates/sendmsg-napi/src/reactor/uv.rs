//! libuv's `uv_poll_t`, on the loop of the environment that created the socket.
//!
//! The functions are looked up with `dlsym` in the running process (Node exports them) instead of
//! being linked: a runtime that lacks them is then detected ([`available`]) rather than crashing
//! at load time. `uv_poll_t` is allocated with `uv_handle_size`, so no libuv struct layout is
//! assumed; the handle's `data` field is reached through `uv_handle_{get,set}_data`.
//!
//! Rules kept here: one poll handle per descriptor; the handle is closed (`uv_close`, which stops
//! polling at once) before its descriptor is; its memory is freed in the close callback.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void, CStr};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::OnceLock;

use napi::sys;

use super::Ready;

type PollCallback = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type CloseCallback = unsafe extern "C" fn(handle: *mut c_void);

const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;
const UV_WRITABLE: c_int = 2;

struct Uv {
  handle_size: unsafe extern "C" fn(c_int) -> usize,
  poll_init: unsafe extern "C" fn(*mut sys::uv_loop_s, *mut c_void, c_int) -> c_int,
  poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCallback) -> c_int,
  poll_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
  close: unsafe extern "C" fn(*mut c_void, CloseCallback),
  ref_: unsafe extern "C" fn(*mut c_void),
  unref: unsafe extern "C" fn(*mut c_void),
  set_data: unsafe extern "C" fn(*mut c_void, *mut c_void),
  get_data: unsafe extern "C" fn(*const c_void) -> *mut c_void,
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
  // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the whole process.
  let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
  (!address.is_null()).then_some(address)
}

// Each transmute takes its target type from the `Uv` field it fills: spelling the signature out
// again at every call would only give it a second place to go wrong.
#[allow(clippy::missing_transmute_annotations)]
fn uv() -> Option<&'static Uv> {
  static UV: OnceLock<Option<Uv>> = OnceLock::new();
  UV.get_or_init(|| {
    // SAFETY: each symbol has the C signature of the libuv function of that name.
    unsafe {
      Some(Uv {
        handle_size: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_handle_size")?),
        poll_init: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_poll_init")?),
        poll_start: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_poll_start")?),
        poll_stop: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_poll_stop")?),
        close: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_close")?),
        ref_: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_ref")?),
        unref: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_unref")?),
        set_data: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_handle_set_data")?),
        get_data: std::mem::transmute::<*mut c_void, _>(symbol(c"uv_handle_get_data")?),
      })
    }
  })
  .as_ref()
}

/// Whether this process has libuv's poll functions (Bun's are present but panic: see `super::backend`).
pub fn available() -> bool {
  uv().is_some()
}

/// What the handle's `data` points at: the target of the readiness calls, owned until the
/// handle's close callback.
type Target = Rc<dyn Ready>;

fn layout(uv: &Uv) -> std::alloc::Layout {
  // SAFETY: plain query.
  let size = unsafe { (uv.handle_size)(UV_POLL) };
  std::alloc::Layout::from_size_align(size.max(1), 16).expect("uv_poll_t layout")
}

thread_local! {
  /// Handles of this thread's loop not yet through their close callback.
  static OPEN: Cell<usize> = const { Cell::new(0) };
  /// Run once OPEN drops to zero (environment teardown waits on it).
  static ALL_CLOSED: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Runs `done` once every handle of this thread is through its close callback (at once if none).
pub fn when_all_closed(done: Box<dyn FnOnce()>) {
  if OPEN.get() == 0 {
    done();
  } else {
    ALL_CLOSED.set(Some(done));
  }
}

/// A poll handle watching one descriptor.
pub struct Watcher {
  handle: NonNull<c_void>,
}

impl Watcher {
  /// Starts watching `fd` on the loop of `env` (not yet for any event). Errors are negative
  /// libuv statuses, e.g. `UV_EEXIST` when the descriptor is already watched.
  pub fn new(env: sys::napi_env, fd: i32, target: Target) -> Result<Self, i32> {
    let uv = uv().ok_or(-libc::ENOSYS)?;
    let mut event_loop = std::ptr::null_mut();
    // SAFETY: env is live on this thread.
    if unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) } != sys::Status::napi_ok {
      return Err(-libc::ENOSYS);
    }
    // SAFETY: layout has a non-zero size.
    let handle = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout(uv)) }.cast::<c_void>())
      .ok_or(-libc::ENOMEM)?;
    // SAFETY: a fresh handle of the right size for a loop of this thread.
    let status = unsafe { (uv.poll_init)(event_loop, handle.as_ptr(), fd) };
    if status != 0 {
      // Not initialised, so never added to the loop: free it directly.
      unsafe { std::alloc::dealloc(handle.as_ptr().cast(), layout(uv)) };
      return Err(status);
    }
    OPEN.set(OPEN.get() + 1);
    let data = Box::into_raw(Box::new(target));
    // SAFETY: initialised handle.
    unsafe { (uv.set_data)(handle.as_ptr(), data.cast()) };
    Ok(Self { handle })
  }

  /// Polls for the given events, or stops polling when there are none (an idle handle keeps no
  /// loop alive).
  pub fn set_interest(&self, readable: bool, writable: bool) -> Result<(), i32> {
    let uv = uv().expect("a watcher exists, so libuv does");
    let events = if readable { UV_READABLE } else { 0 } | if writable { UV_WRITABLE } else { 0 };
    // SAFETY: the handle is initialised and not closed (close consumes self).
    let status = unsafe {
      if events == 0 {
        (uv.poll_stop)(self.handle.as_ptr())
      } else {
        (uv.poll_start)(self.handle.as_ptr(), events, on_poll)
      }
    };
    if status == 0 {
      Ok(())
    } else {
      Err(status)
    }
  }

  /// Whether an active handle keeps the loop alive.
  pub fn set_ref(&self, referenced: bool) {
    let uv = uv().expect("a watcher exists, so libuv does");
    // SAFETY: initialised handle.
    unsafe {
      if referenced {
        (uv.ref_)(self.handle.as_ptr())
      } else {
        (uv.unref)(self.handle.as_ptr())
      }
    }
  }

  /// Stops polling now and frees the handle once libuv is done with it. The descriptor may be
  /// closed as soon as this returns.
  pub fn close(self) {
    let uv = uv().expect("a watcher exists, so libuv does");
    // SAFETY: initialised handle, closed once (self is consumed).
    unsafe { (uv.close)(self.handle.as_ptr(), on_close) };
  }
}

unsafe extern "C" fn on_poll(handle: *mut c_void, status: c_int, events: c_int) {
  let uv = uv().expect("libuv calls us, so it exists");
  // SAFETY: data was set to a boxed Target at creation and lives until on_close.
  let target = unsafe { &*((uv.get_data)(handle) as *const Target) };
  // A clone, so the target outlives a call that closes the watcher.
  let target = Rc::clone(target);
  // A panic must not unwind into libuv (that aborts the process): report it and carry on.
  let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    if status < 0 {
      target.ready(false, false, Some(status));
    } else {
      target.ready(events & UV_READABLE != 0, events & UV_WRITABLE != 0, None);
    }
  }));
  if outcome.is_err() {
    eprintln!("sendmsg: internal error in a socket's readiness callback (a bug: please report it)");
  }
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
  let uv = uv().expect("libuv calls us, so it exists");
  // SAFETY: the box created in `new`, released exactly once here, then the handle's memory.
  unsafe {
    drop(Box::from_raw((uv.get_data)(handle) as *mut Target));
    std::alloc::dealloc(handle.cast(), layout(uv));
  }
  OPEN.set(OPEN.get() - 1);
  if OPEN.get() == 0 {
    if let Some(done) = ALL_CLOSED.take() {
      done();
    }
  }
}
