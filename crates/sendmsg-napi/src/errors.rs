//! Errors as Node writes them: system errors carry `code`, a negative `errno` and `syscall`;
//! argument errors are TypeError/RangeError with Node's `ERR_*` codes.
//!
//! Every helper throws into the environment and returns the `PendingException` marker that
//! napi-rs passes through without throwing again.

use napi::bindgen_prelude::*;
use napi::sys;
use sendmsg_core::cmsg::EncodeError;
use sendmsg_core::message::SendError;
use sendmsg_core::SysError;

fn pending() -> Error {
  Error::new(Status::PendingException, String::new())
}

/// Builds the JS error object for a system error without throwing it (the event-loop layer
/// hands such objects to callbacks).
pub fn sys_error_value(env: &Env, err: SysError) -> Result<Object<'_>> {
  let mut object = env.create_error(Error::new(Status::GenericFailure, err.to_string()))?;
  object.set_named_property("errno", err.node_errno())?;
  object.set_named_property("code", err.code())?;
  object.set_named_property("syscall", err.syscall)?;
  Ok(object)
}

/// Throws a system error.
pub fn throw_sys(env: &Env, err: SysError) -> Error {
  match sys_error_value(env, err) {
    Ok(object) => {
      // SAFETY: a live value of this env.
      unsafe { sys::napi_throw(env.raw(), object.raw()) };
      pending()
    }
    Err(err) => err,
  }
}

pub fn throw_type_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_type_error(message, Some(code)) {
    Ok(()) => pending(),
    Err(err) => err,
  }
}

pub fn throw_range_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_range_error(message, Some(code)) {
    Ok(()) => pending(),
    Err(err) => err,
  }
}

pub fn throw_send(env: &Env, err: SendError) -> Error {
  match err {
    SendError::Sys(sys) => throw_sys(env, sys),
    SendError::FdsWithoutData => throw_type_error(
      env,
      "ERR_INVALID_ARG_VALUE",
      &format!("The argument 'data' must not be empty: {err}"),
    ),
  }
}

pub fn throw_encode(env: &Env, err: EncodeError) -> Error {
  match err {
    EncodeError::TooLarge => throw_range_error(
      env,
      "ERR_OUT_OF_RANGE",
      "The ancillary data is too large for one message",
    ),
    EncodeError::OutOfMemory => out_of_memory(env),
  }
}

/// An error about the state of things rather than an argument, with a code of the package's own.
pub fn throw_state_error(env: &Env, code: &str, message: &str) -> Error {
  match env.throw_error(message, Some(code)) {
    Ok(()) => pending(),
    Err(err) => err,
  }
}

pub fn out_of_memory(env: &Env) -> Error {
  match env.throw_error(
    "Memory allocation failed",
    Some("ERR_MEMORY_ALLOCATION_FAILED"),
  ) {
    Ok(()) => pending(),
    Err(err) => err,
  }
}
