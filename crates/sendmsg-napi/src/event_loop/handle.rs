//! Native values that JavaScript holds as opaque `External`s: a socket.
//!
//! An External costs one allocation and a finalizer, and reading it back is a pointer load: no
//! `napi_unwrap` (a private-property lookup) and no registry behind a lock, which is what the
//! per-message calls would otherwise pay. The finalizer drops the value, so whatever it owns is
//! released when JavaScript lets go of it, and also when the environment is torn down (a worker
//! ending), because Node finalizes every External of an environment before it goes.
//!
//! Each value sits behind a tag naming its kind, so that one kind of handle passed where another
//! is expected is refused instead of being misread. Only this binding makes these Externals, and
//! the TypeScript layer keeps them in private fields.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;

/// What a kind of handle is called in errors; its address is the tag.
pub struct HandleKind(pub &'static str);

/// A Rust type that JavaScript may hold as a handle.
pub trait Handled: 'static {
  const KIND: &'static HandleKind;
}

#[repr(C)]
struct Tagged<T> {
  kind: *const HandleKind,
  value: T,
}

/// Wraps `value` in a new External; it is dropped when the External is finalized.
pub fn new_handle<T: Handled>(env: sys::napi_env, value: T) -> Result<sys::napi_value> {
  let tagged = Box::into_raw(Box::new(Tagged {
    kind: T::KIND as *const HandleKind,
    value,
  }));
  let mut result = ptr::null_mut();
  // SAFETY: env is live; the finalizer below is the only place that frees `tagged`.
  let status = unsafe {
    sys::napi_create_external(
      env,
      tagged.cast(),
      Some(finalize::<T>),
      ptr::null_mut(),
      &mut result,
    )
  };
  if status != sys::Status::napi_ok {
    // SAFETY: not handed to the engine, so still ours.
    drop(unsafe { Box::from_raw(tagged) });
    return Err(Error::new(
      Status::from(status),
      "could not create a handle".to_owned(),
    ));
  }
  Ok(result)
}

unsafe extern "C" fn finalize<T: Handled>(
  _env: sys::napi_env,
  data: *mut c_void,
  _hint: *mut c_void,
) {
  // SAFETY: `data` is the box made in `new_handle::<T>`, finalized once.
  drop(unsafe { Box::from_raw(data.cast::<Tagged<T>>()) });
}

/// The value behind a handle of kind `T`; a TypeError when `value` is not one.
///
/// The reference lives as long as the External, which the caller's argument keeps alive for the
/// duration of the call; callers that keep the value longer clone what they need out of it.
pub fn handle_value<'a, T: Handled>(env: &Env, value: sys::napi_value) -> Result<&'a T> {
  let mut data = ptr::null_mut();
  // SAFETY: env is live; a value that is not an External makes this fail, not misbehave.
  let status = unsafe { sys::napi_get_value_external(env.raw(), value, &mut data) };
  if status != sys::Status::napi_ok || data.is_null() {
    return Err(wrong_handle::<T>(env));
  }
  let tagged = data.cast::<Tagged<T>>().cast_const();
  // SAFETY: every External reaching this binding's handle parameters was made by `new_handle`
  // (the TypeScript layer holds them privately), so the tag is readable; it is compared before
  // the value is touched.
  if !std::ptr::eq(unsafe { (*tagged).kind }, T::KIND) {
    return Err(wrong_handle::<T>(env));
  }
  // SAFETY: the tag says this is a Tagged<T>, alive while the External is.
  Ok(unsafe { &(*tagged).value })
}

fn wrong_handle<T: Handled>(env: &Env) -> Error {
  crate::errors::throw_type_error(
    env,
    "ERR_INVALID_ARG_TYPE",
    &format!("expected a {} handle", T::KIND.0),
  )
}
