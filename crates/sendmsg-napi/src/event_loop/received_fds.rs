//! The one owner of received descriptors until somebody takes them.
//!
//! Every descriptor that arrives in a message (or is accepted by a server) is held here as an
//! `OwnedFd`, in a `ReceivedFds` shared by the delivery code and the message's JavaScript handle.
//! Whatever is neither taken nor closed is closed by Rust's drop: when the message's delivery
//! ends (`settle`), when JavaScript lets go of the message (garbage collection), and when the
//! environment goes away (a worker ending finalizes every handle). There is no other closer.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use super::handle::{handle_value, new_handle, HandleKind, Handled};
use crate::errors;

/// The descriptors of one message, in arrival order; a slot is `None` once taken or closed.
pub struct ReceivedFds {
  slots: RefCell<Vec<Option<OwnedFd>>>,
}

impl ReceivedFds {
  pub fn new(fds: impl IntoIterator<Item = OwnedFd>) -> Rc<Self> {
    Rc::new(Self {
      slots: RefCell::new(fds.into_iter().map(Some).collect()),
    })
  }

  /// The number in slot `index`, or -1 when it was taken or closed.
  pub fn number(&self, index: usize) -> RawFd {
    self
      .slots
      .borrow()
      .get(index)
      .and_then(Option::as_ref)
      .map_or(-1, AsRawFd::as_raw_fd)
  }

  /// Takes slot `index` out: the caller owns it from now on.
  pub fn take(&self, index: usize) -> Option<OwnedFd> {
    self
      .slots
      .borrow_mut()
      .get_mut(index)
      .and_then(Option::take)
  }

  /// Puts a descriptor taken from slot `index` back (an adoption that failed gives it back).
  pub fn restore(&self, index: usize, fd: OwnedFd) {
    if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
      *slot = Some(fd);
    }
  }

  /// The end of the message's delivery: closes every descriptor still here.
  pub fn settle(&self) {
    // Taken out before dropping, so that no borrow is held while descriptors close.
    let slots = std::mem::take(&mut *self.slots.borrow_mut());
    drop(slots);
  }
}

/// What JavaScript holds: a message's descriptors.
pub struct FdsHandle(pub Rc<ReceivedFds>);

impl Handled for FdsHandle {
  const KIND: &'static HandleKind = &HandleKind("received descriptors");
}

/// A handle JavaScript can hold for `fds`.
pub fn new_fds_handle(env: sys::napi_env, fds: Rc<ReceivedFds>) -> Result<sys::napi_value> {
  new_handle(env, FdsHandle(fds))
}

fn fds_of<'a>(env: &Env, handle: Unknown<'_>) -> Result<&'a Rc<ReceivedFds>> {
  handle_value::<FdsHandle>(env, handle.raw()).map(|handle| &handle.0)
}

/// The descriptor number in slot `index`; -1 once taken or closed.
#[napi(ts_args_type = "fds: ExternalObject<'ReceivedFds'>, index: number")]
pub fn received_fd_number(env: Env, fds: Unknown<'_>, index: u32) -> Result<i32> {
  Ok(fds_of(&env, fds)?.number(index as usize))
}

/// Hands slot `index` over to the caller: its number, or -1 when already taken or closed.
#[napi(ts_args_type = "fds: ExternalObject<'ReceivedFds'>, index: number")]
pub fn received_fd_take(env: Env, fds: Unknown<'_>, index: u32) -> Result<i32> {
  Ok(
    fds_of(&env, fds)?
      .take(index as usize)
      .map_or(-1, IntoRawFd::into_raw_fd),
  )
}

/// Closes slot `index` now (nothing when already taken or closed).
#[napi(ts_args_type = "fds: ExternalObject<'ReceivedFds'>, index: number")]
pub fn received_fd_close(env: Env, fds: Unknown<'_>, index: u32) -> Result<()> {
  drop(fds_of(&env, fds)?.take(index as usize));
  Ok(())
}

/// Moves slot `index` into a handle of its own, which its message's settling does not close;
/// null when already taken or closed.
#[napi(
  ts_args_type = "fds: ExternalObject<'ReceivedFds'>, index: number",
  ts_return_type = "ExternalObject<'ReceivedFds'> | null"
)]
pub fn received_fd_keep<'env>(
  env: &'env Env,
  fds: Unknown<'env>,
  index: u32,
) -> Result<Option<Unknown<'env>>> {
  let Some(owned) = fds_of(env, fds)?.take(index as usize) else {
    return Ok(None);
  };
  let handle = new_fds_handle(env.raw(), ReceivedFds::new([owned]))?;
  // SAFETY: a value just made in this env.
  Ok(Some(unsafe {
    Unknown::from_raw_unchecked(env.raw(), handle)
  }))
}

/// Closes every descriptor of the handle still there: the end of a message's delivery.
#[napi(ts_args_type = "fds: ExternalObject<'ReceivedFds'>")]
pub fn received_fds_settle(env: Env, fds: Unknown<'_>) -> Result<()> {
  fds_of(&env, fds)?.settle();
  Ok(())
}

/// Takes ownership of a descriptor number the caller gives up: a handle of one slot.
#[napi(ts_return_type = "ExternalObject<'ReceivedFds'>")]
pub fn received_fd_adopt(env: &Env, fd: i32) -> Result<Unknown<'_>> {
  let owned = owned_from_number(env, fd)?;
  let handle = new_fds_handle(env.raw(), ReceivedFds::new([owned]))?;
  // SAFETY: a value just made in this env.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), handle) })
}

/// The descriptor `fd` as owned, for a caller that gives it up; a RangeError when it cannot be
/// one (the TypeScript layer has checked it is an integer).
pub fn owned_from_number(env: &Env, fd: i32) -> Result<OwnedFd> {
  if fd < 0 {
    return Err(errors::throw_range_error(
      env,
      "ERR_OUT_OF_RANGE",
      "a descriptor is a non-negative integer",
    ));
  }
  // SAFETY: the caller gives up fd.
  Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The descriptors behind a handle, for a socket that adopts one of them.
pub fn fds_behind(env: &Env, fds: sys::napi_value) -> Result<Rc<ReceivedFds>> {
  Ok(handle_value::<FdsHandle>(env, fds)?.0.clone())
}
