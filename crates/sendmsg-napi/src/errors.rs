//! Errors as Node writes them: system errors carry `code`, a negative `errno` and `syscall`;
//! argument errors are TypeError/RangeError with Node's `ERR_*` codes.
//!
//! Every helper throws into the environment and returns the `PendingException` marker that
//! napi-rs passes through without throwing again.

use napi::bindgen_prelude::*;
use napi::sys;
use sendmsg_core::cmsg::EncodeError;
use sendmsg_core::error::FeatureError;
use sendmsg_core::message::SendError;
use sendmsg_core::SysError;

fn pending() -> Error {
  Error::new(Status::PendingException, String::new())
}

/// Builds the JS error object for a system error without throwing it (the event-loop layer
/// hands such objects to callbacks).
pub fn sys_error_value(env: &Env, err: SysError) -> Result<Object<'_>> {
  refusal_value(env, &err.to_string(), &err.code(), err)
}

/// An error object for a refusal of the kernel's: `message` and `code`, with the `errno` and
/// `syscall` of `err`.
fn refusal_value<'env>(
  env: &'env Env,
  message: &str,
  code: &str,
  err: SysError,
) -> Result<Object<'env>> {
  let mut object = env.create_error(Error::new(Status::GenericFailure, message.to_owned()))?;
  object.set_named_property("errno", err.node_errno())?;
  object.set_named_property("code", code)?;
  object.set_named_property("syscall", err.syscall)?;
  Ok(object)
}

fn throw_value(env: &Env, value: Result<Object<'_>>) -> Error {
  match value {
    Ok(object) => {
      // SAFETY: a live value of this env.
      unsafe { sys::napi_throw(env.raw(), object.raw()) };
      pending()
    }
    Err(err) => err,
  }
}

/// Throws the kernel's answer about a newer option: `ERR_SENDMSG_UNSUPPORTED` (ENOPROTOOPT),
/// `ERR_SENDMSG_PEER_EXITED` (EINVAL from SO_PEERPIDFD before 6.18), or the system error. Each
/// keeps the errno and the syscall of the refusal, as Node's system errors do.
pub fn throw_feature(env: &Env, err: FeatureError) -> Error {
  throw_value(
    env,
    refusal_value(env, &err.to_string(), &err.code(), err.sys()),
  )
}

/// Throws a system error.
pub fn throw_sys(env: &Env, err: SysError) -> Error {
  throw_value(env, sys_error_value(env, err))
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
