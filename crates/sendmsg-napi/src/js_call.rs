//! Calling JavaScript from an event-loop callback, where no JavaScript is on the stack.
//!
//! Such a call needs its own handle scope, and must go through `napi_make_callback` with an async
//! context: that is what runs `process.nextTick` callbacks and promise reactions as soon as the
//! call returns, and what async_hooks (AsyncLocalStorage) see. An exception thrown by the callback
//! is reported as uncaught, the way Node reports one thrown by its own event handlers.

use std::ffi::c_void;
use std::ptr;

use napi::sys;

/// A handle scope for the duration of a loop callback.
pub struct HandleScope {
  env: sys::napi_env,
  scope: sys::napi_handle_scope,
}

impl HandleScope {
  pub fn open(env: sys::napi_env) -> Option<Self> {
    let mut scope = ptr::null_mut();
    // SAFETY: env is live on this thread.
    (unsafe { sys::napi_open_handle_scope(env, &mut scope) } == sys::Status::napi_ok)
      .then_some(Self { env, scope })
  }
}

impl Drop for HandleScope {
  fn drop(&mut self) {
    // SAFETY: opened by us on this thread, closed once.
    unsafe { sys::napi_close_handle_scope(self.env, self.scope) };
  }
}

/// A strong or weak reference to a JavaScript value, released on drop.
pub struct Reference {
  env: sys::napi_env,
  raw: sys::napi_ref,
  strong: bool,
}

impl Reference {
  pub fn new(env: sys::napi_env, value: sys::napi_value, strong: bool) -> napi::Result<Self> {
    let mut raw = ptr::null_mut();
    // SAFETY: value belongs to env.
    check(unsafe { sys::napi_create_reference(env, value, u32::from(strong), &mut raw) })?;
    Ok(Self { env, raw, strong })
  }

  /// The value, or `None` when a weak reference's value was collected.
  pub fn get(&self) -> Option<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: a live reference of env.
    let status = unsafe { sys::napi_get_reference_value(self.env, self.raw, &mut value) };
    (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
  }

  /// Makes the reference strong (keeps the value alive) or weak.
  pub fn set_strong(&mut self, strong: bool) {
    if strong == self.strong {
      return;
    }
    let mut count = 0;
    // SAFETY: a live reference of env.
    unsafe {
      if strong {
        sys::napi_reference_ref(self.env, self.raw, &mut count);
      } else {
        sys::napi_reference_unref(self.env, self.raw, &mut count);
      }
    }
    self.strong = strong;
  }
}

impl Drop for Reference {
  fn drop(&mut self) {
    // SAFETY: created by us, deleted once.
    unsafe { sys::napi_delete_reference(self.env, self.raw) };
  }
}

/// The async context of a resource that calls into JavaScript from the loop.
pub struct AsyncContext {
  env: sys::napi_env,
  raw: sys::napi_async_context,
}

impl AsyncContext {
  pub fn new(env: sys::napi_env, resource: sys::napi_value, name: &str) -> napi::Result<Self> {
    let mut name_value = ptr::null_mut();
    let mut raw = ptr::null_mut();
    // SAFETY: env is live; the name is valid UTF-8 with an explicit length.
    unsafe {
      check(sys::napi_create_string_utf8(
        env,
        name.as_ptr().cast(),
        name.len() as isize,
        &mut name_value,
      ))?;
      check(sys::napi_async_init(env, resource, name_value, &mut raw))?;
    }
    Ok(Self { env, raw })
  }

  /// Calls `func` with `this = recv` and `args` through `napi_make_callback`. A thrown exception
  /// is reported as uncaught.
  ///
  /// # Safety
  /// A handle scope must be open, and the values must belong to this environment.
  pub unsafe fn call(
    &self,
    recv: sys::napi_value,
    func: sys::napi_value,
    args: &[sys::napi_value],
  ) -> CallOutcome {
    let mut result = ptr::null_mut();
    let status = unsafe {
      sys::napi_make_callback(
        self.env,
        self.raw,
        recv,
        func,
        args.len(),
        args.as_ptr(),
        &mut result,
      )
    };
    if status == sys::Status::napi_ok {
      return CallOutcome::Returned(result);
    }
    if report_pending_exception(self.env) {
      CallOutcome::Threw
    } else {
      // The environment refused to run JavaScript (it is going away).
      CallOutcome::NotCalled
    }
  }
}

/// Calls `func` with `this = recv` without a callback scope, so no microtask checkpoint follows
/// it: for calls made in a row whose last one goes through [`AsyncContext::call`] (which then
/// runs what all of them queued). A thrown exception is reported as uncaught.
///
/// # Safety
/// A handle scope must be open, and the values must belong to this environment.
pub unsafe fn call_plain(
  env: sys::napi_env,
  recv: sys::napi_value,
  func: sys::napi_value,
  args: &[sys::napi_value],
) -> CallOutcome {
  let mut result = ptr::null_mut();
  let status =
    unsafe { sys::napi_call_function(env, recv, func, args.len(), args.as_ptr(), &mut result) };
  if status == sys::Status::napi_ok {
    return CallOutcome::Returned(result);
  }
  if report_pending_exception(env) {
    CallOutcome::Threw
  } else {
    CallOutcome::NotCalled
  }
}

impl Drop for AsyncContext {
  fn drop(&mut self) {
    // SAFETY: created by us, destroyed once.
    unsafe { sys::napi_async_destroy(self.env, self.raw) };
  }
}

/// What became of a call into JavaScript.
#[derive(Clone, Copy)]
pub enum CallOutcome {
  Returned(sys::napi_value),
  /// It threw; the exception went to Node's uncaught-exception handling.
  Threw,
  /// JavaScript never ran: closed, collected, or the environment is going away.
  NotCalled,
}

/// Hands a pending exception to Node's uncaught-exception machinery; whether there was one.
pub fn report_pending_exception(env: sys::napi_env) -> bool {
  let mut pending = false;
  // SAFETY: env is live on this thread.
  unsafe {
    if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
      let mut error = ptr::null_mut();
      if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
        sys::napi_fatal_exception(env, error);
      }
      return true;
    }
  }
  false
}

fn check(status: sys::napi_status) -> napi::Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi::Error::new(
      napi::Status::from(status),
      "Node-API call failed".to_owned(),
    ))
  }
}

/// Small constructors for argument values.
pub mod value {
  use super::*;

  pub fn int32(env: sys::napi_env, n: i32) -> sys::napi_value {
    let mut value = ptr::null_mut();
    // SAFETY: env is live.
    unsafe { sys::napi_create_int32(env, n, &mut value) };
    value
  }

  pub fn double(env: sys::napi_env, n: f64) -> sys::napi_value {
    let mut value = ptr::null_mut();
    // SAFETY: env is live.
    unsafe { sys::napi_create_double(env, n, &mut value) };
    value
  }

  pub fn boolean(env: sys::napi_env, b: bool) -> sys::napi_value {
    let mut value = ptr::null_mut();
    // SAFETY: env is live.
    unsafe { sys::napi_get_boolean(env, b, &mut value) };
    value
  }

  pub fn undefined(env: sys::napi_env) -> sys::napi_value {
    let mut value = ptr::null_mut();
    // SAFETY: env is live.
    unsafe { sys::napi_get_undefined(env, &mut value) };
    value
  }

  pub fn string(env: sys::napi_env, s: &str) -> sys::napi_value {
    let mut value = ptr::null_mut();
    // SAFETY: valid UTF-8 with an explicit length.
    unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut value) };
    value
  }

  pub fn buffer_copy(env: sys::napi_env, bytes: &[u8]) -> sys::napi_value {
    let mut value = ptr::null_mut();
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: copies bytes into a new Buffer.
    unsafe {
      sys::napi_create_buffer_copy(
        env,
        bytes.len(),
        bytes.as_ptr().cast(),
        &mut data,
        &mut value,
      )
    };
    value
  }
}
