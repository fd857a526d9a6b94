//! The one owner of received descriptors until somebody takes them.
//!
//! Every descriptor that arrives in a message (or is accepted by a server, or is a peer's pidfd
//! asked for with `peerPidfd`) is held here, in a
//! per-thread table of sets: one set per message, under an id that is never reused. JavaScript
//! names a descriptor by its set's id and its index (`Message`, `ReceivedFd` in lib/), and takes,
//! closes or keeps it through the functions below. Whatever is neither taken nor closed is closed
//! by Rust's drop when its set is settled: at the end of the message's delivery; when the socket
//! that kept it for later closes (or is collected); when JavaScript collects a `keep()`-ed or
//! adopted descriptor; and, for all that is left, when the environment goes away (a worker ends).
//! There is no other closer.
//!
//! A table rather than a JavaScript object per message: a message delivered to a handler and
//! settled right after (the common case) then costs no allocation on the JavaScript heap, no
//! global handle and no finalizer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::errors;

/// The id of a set of held descriptors. Ids count up and are never reused, so a stale id (a
/// `ReceivedFd` whose message settled long ago) finds nothing rather than someone else's set.
/// JavaScript holds it as a number: exact below 2^53, far more sets than a thread receives.
pub type HeldId = u64;

#[derive(Default)]
struct HeldFds {
  next: HeldId,
  sets: HashMap<HeldId, Vec<Option<OwnedFd>>>,
}

thread_local! {
  static HELD: RefCell<HeldFds> = RefCell::new(HeldFds::default());
}

/// Holds `fds` as a new set; returns its id.
pub fn hold(fds: impl IntoIterator<Item = OwnedFd>) -> HeldId {
  let set: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
  HELD.with_borrow_mut(|held| {
    held.next += 1;
    held.sets.insert(held.next, set);
    held.next
  })
}

/// The number in slot `index` of set `id`, or -1 when it was taken, closed or settled.
pub fn number(id: HeldId, index: usize) -> RawFd {
  HELD.with_borrow(|held| {
    held
      .sets
      .get(&id)
      .and_then(|set| set.get(index))
      .and_then(Option::as_ref)
      .map_or(-1, AsRawFd::as_raw_fd)
  })
}

/// Takes slot `index` of set `id` out: the caller owns it from now on.
pub fn take(id: HeldId, index: usize) -> Option<OwnedFd> {
  HELD.with_borrow_mut(|held| {
    held
      .sets
      .get_mut(&id)
      .and_then(|set| set.get_mut(index))
      .and_then(Option::take)
  })
}

/// Puts a descriptor taken from slot `index` back (an adoption that failed gives it back). If the
/// set was settled meanwhile, it is closed instead.
pub fn restore(id: HeldId, index: usize, fd: OwnedFd) {
  let unplaced =
    HELD.with_borrow_mut(
      |held| match held.sets.get_mut(&id).and_then(|set| set.get_mut(index)) {
        Some(slot) => {
          *slot = Some(fd);
          None
        }
        None => Some(fd),
      },
    );
  drop(unplaced);
}

/// The end of a set's life: closes every descriptor still in it. Nothing when already settled.
pub fn settle(id: HeldId) {
  // Removed first and dropped outside the borrow: closing runs no JavaScript, but a borrow held
  // across system calls is one more thing to reason about.
  let removed = HELD.with_borrow_mut(|held| held.sets.remove(&id));
  drop(removed);
}

/// Whether set `id` is still held.
pub fn is_held(id: HeldId) -> bool {
  HELD.with_borrow(|held| held.sets.contains_key(&id))
}

/// Environment teardown: closes every descriptor still held on this thread.
pub fn settle_all() {
  let all = HELD.with_borrow_mut(|held| std::mem::take(&mut held.sets));
  drop(all);
}

fn id_of(id: f64) -> HeldId {
  // Ids are positive integers JavaScript got from this module; anything else finds no set.
  if id.is_finite() && id >= 0.0 {
    id as HeldId
  } else {
    0
  }
}

/// The descriptor number in slot `index` of set `id`; -1 once taken, closed or settled.
#[napi]
pub fn received_fd_number(id: f64, index: u32) -> i32 {
  number(id_of(id), index as usize)
}

/// Hands slot `index` of set `id` over to the caller: its number, or -1 when already gone.
#[napi]
pub fn received_fd_take(id: f64, index: u32) -> i32 {
  take(id_of(id), index as usize).map_or(-1, IntoRawFd::into_raw_fd)
}

/// Closes slot `index` of set `id` now (nothing when already gone).
#[napi]
pub fn received_fd_close(id: f64, index: u32) {
  drop(take(id_of(id), index as usize));
}

/// Moves slot `index` of set `id` into a set of its own, which its message's settling does not
/// close: the new set's id, or null when the descriptor is already gone.
#[napi]
pub fn received_fd_keep(env: Env, id: f64, index: u32) -> Result<Option<f64>> {
  // Kept descriptors may outlive every socket: the environment's end must find them.
  super::teardown::ensure_hook(env.raw())?;
  Ok(take(id_of(id), index as usize).map(|fd| hold([fd]) as f64))
}

/// Closes every descriptor of set `id` still there: the end of a message's delivery.
#[napi]
pub fn received_fds_settle(id: f64) {
  settle(id_of(id));
}

/// Takes ownership of a descriptor number the caller gives up: the id of a set of one.
#[napi]
pub fn received_fd_adopt(env: Env, fd: i32) -> Result<f64> {
  let owned = owned_from_number(&env, fd)?;
  hold_own(&env, owned)
}

/// Holds `fd` in a set of its own (a kept ReceivedFd's kind, which only JavaScript's collection,
/// its own close or the environment's end settles): the set's id.
pub fn hold_own(env: &Env, fd: OwnedFd) -> Result<f64> {
  // A failure here drops, and so closes, the descriptor: it is never left owned by nobody.
  super::teardown::ensure_hook(env.raw())?;
  Ok(hold([fd]) as f64)
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

/// The id JavaScript passed, for the socket code.
pub fn held_id(id: f64) -> HeldId {
  id_of(id)
}
