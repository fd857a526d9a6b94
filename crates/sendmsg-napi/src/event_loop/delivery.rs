//! Where received message data goes on its way to JavaScript: a per-thread slab.
//!
//! Each message's `Buffer` is a view of an ArrayBuffer that message data is bump-allocated into,
//! so a message costs no allocation of its own; a full slab is simply replaced (the views keep the
//! old one alive). Messages are delivered one at a time on the JavaScript thread, so one slab per
//! thread serves every socket.

use std::cell::RefCell;

use napi::sys;

use crate::js_call::Reference;

/// Message data is copied into slabs of this size (larger messages get a buffer of their own).
const SLAB_SIZE: usize = 64 << 10;

thread_local! {
  static SLAB: RefCell<Option<Slab>> = const { RefCell::new(None) };
}

struct Slab {
  buffer: Reference,
  data: *mut u8,
  used: usize,
}

/// A new ArrayBuffer of `length` bytes: its memory and its value.
fn new_array_buffer(env: sys::napi_env, length: usize) -> Option<(*mut u8, sys::napi_value)> {
  let mut data = std::ptr::null_mut();
  let mut buffer = std::ptr::null_mut();
  // SAFETY: env is live on this thread.
  let status = unsafe { sys::napi_create_arraybuffer(env, length, &mut data, &mut buffer) };
  (status == sys::Status::napi_ok).then_some((data.cast(), buffer))
}

/// A new Buffer holding a copy of `data`: its ArrayBuffer and the offset of the copy in it.
fn copied_array_buffer(env: sys::napi_env, data: &[u8]) -> Option<(sys::napi_value, usize)> {
  let buffer = crate::js_call::value::buffer_copy(env, data);
  if buffer.is_null() {
    return None;
  }
  array_buffer_of(env, buffer)
}

/// Whether JavaScript has detached `buffer` (transferred it to a worker, say): its memory then
/// belongs to another buffer and must not be written through a kept pointer.
fn is_detached(env: sys::napi_env, buffer: sys::napi_value) -> bool {
  let mut detached = true;
  // SAFETY: buffer is an ArrayBuffer value of this env.
  let status = unsafe { sys::napi_is_detached_arraybuffer(env, buffer, &mut detached) };
  status != sys::Status::napi_ok || detached
}

/// Copies `data` into the slab; returns the ArrayBuffer holding it and the offset.
pub fn place(env: sys::napi_env, data: &[u8]) -> Option<(sys::napi_value, usize)> {
  if data.len() > SLAB_SIZE / 4 {
    // A large message gets its own buffer rather than pinning most of a slab: a Node Buffer made
    // as a copy (malloc and memcpy; an ArrayBuffer would be zero-filled first, which costs as
    // much as the copy for GRO-sized messages), handed over as its ArrayBuffer and offset.
    return copied_array_buffer(env, data);
  }
  SLAB.with_borrow_mut(|kept| {
    let reusable = kept.as_ref().and_then(|slab| {
      let buffer = slab.buffer.get()?;
      (SLAB_SIZE - slab.used >= data.len() && !is_detached(env, buffer)).then_some(buffer)
    });
    let buffer = match reusable {
      Some(buffer) => buffer,
      None => {
        let (memory, buffer) = new_array_buffer(env, SLAB_SIZE)?;
        *kept = Some(Slab {
          buffer: Reference::new(env, buffer, true).ok()?,
          data: memory,
          used: 0,
        });
        buffer
      }
    };
    let slab = kept.as_mut()?;
    let offset = slab.used;
    // SAFETY: offset + len <= SLAB_SIZE (checked above) and the slab is attached; nothing else
    // writes this region.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), slab.data.add(offset), data.len()) };
    slab.used += data.len();
    Some((buffer, offset))
  })
}

/// Environment teardown: the environment frees its own references, so ours must not be deleted
/// after it.
pub fn forget_for_teardown() {
  if let Some(slab) = SLAB.take() {
    std::mem::forget(slab);
  }
}

// Receiving straight into JavaScript memory ----------------------------------------------------
//
// Copying a 38 KB GRO run out of the receive batch into a new Buffer was a quarter of a UDP
// receiver's time. Instead, UDP datagrams are received into Buffers made beforehand, one per slot
// of the batch (a [`SlotPool`]): a long message is handed to JavaScript as the Buffer it arrived
// in, and the kernel's copy is the only one. A short one is copied into the slab as before (a
// cache-hot copy, and a Buffer is not pinned for a 1,200-byte datagram); its slot is used again.
// A slot's memory is written only while JavaScript has never seen it, and never after.
//
// Tried first and measured slower: one large arena per many receives, handed out as views (its
// fresh memory cost a page fault every 4 KB, more than the copy saved), and memory of our own
// lent as an external ArrayBuffer (Node frees those only in full mark-compact collections, which
// then ran every few milliseconds). A Buffer of at most 64 KB comes from malloc's recycled heap.

/// Messages at least this long are handed out in the Buffer they arrived in; shorter ones are
/// copied into the slab.
const HAND_OVER_AT: usize = SLAB_SIZE / 4;

/// A Buffer JavaScript has not seen yet: its ArrayBuffer, the offset of its memory there, and
/// the memory.
struct PoolSlot {
  buffer: Reference,
  offset: usize,
  data: *mut u8,
}

impl PoolSlot {
  fn new(env: sys::napi_env, size: usize) -> Option<Self> {
    let mut data = std::ptr::null_mut();
    let mut node_buffer = std::ptr::null_mut();
    // SAFETY: env is live on this thread. A Node Buffer's memory is not zero-filled: only what
    // the kernel wrote is ever handed out.
    let status = unsafe { sys::napi_create_buffer(env, size, &mut data, &mut node_buffer) };
    if status != sys::Status::napi_ok || data.is_null() {
      return None;
    }
    let (buffer, offset) = array_buffer_of(env, node_buffer)?;
    Some(Self {
      buffer: Reference::new(env, buffer, true).ok()?,
      offset,
      data: data.cast(),
    })
  }
}

/// A Buffer's ArrayBuffer and its offset there.
fn array_buffer_of(
  env: sys::napi_env,
  node_buffer: sys::napi_value,
) -> Option<(sys::napi_value, usize)> {
  let mut kind = 0;
  let mut length = 0;
  let mut pointer = std::ptr::null_mut();
  let mut array_buffer = std::ptr::null_mut();
  let mut offset = 0;
  // SAFETY: `node_buffer` is a Buffer (a Uint8Array) of this env.
  let status = unsafe {
    sys::napi_get_typedarray_info(
      env,
      node_buffer,
      &mut kind,
      &mut length,
      &mut pointer,
      &mut array_buffer,
      &mut offset,
    )
  };
  (status == sys::Status::napi_ok && !array_buffer.is_null()).then_some((array_buffer, offset))
}

/// Buffers to receive into, all of one size, none ever seen by JavaScript.
///
/// Their size adapts: it starts at [`HAND_OVER_AT`] (shorter messages are copied anyway) and
/// grows to the longest message seen (in 4 KB steps, up to the socket's largest), since a message
/// longer than its Buffer is received whole into the batch's own memory and copied. So a Buffer
/// handed over is about as long as what it holds, and little of it is left to zero.
#[derive(Default)]
pub struct SlotPool {
  /// The largest message a receive takes (the batch's slot size): Buffers are never longer.
  limit: usize,
  /// The length of the Buffers.
  size: usize,
  /// Set by a message longer than `size`: the length to use from the next receive on.
  grow_to: usize,
  slots: Vec<PoolSlot>,
  pointers: Vec<*mut u8>,
}

impl SlotPool {
  /// The memory of `count` Buffers to receive into (made as needed), and their length. `None`
  /// when no Buffer can be made (out of memory).
  pub fn slots(
    &mut self,
    env: sys::napi_env,
    count: usize,
    limit: usize,
  ) -> Option<(&[*mut u8], usize)> {
    if self.limit != limit {
      self.slots.clear();
      self.limit = limit;
      self.size = HAND_OVER_AT.min(limit);
      self.grow_to = 0;
    }
    while self.slots.len() < count {
      self.slots.push(PoolSlot::new(env, self.size)?);
    }
    self.pointers.clear();
    self
      .pointers
      .extend(self.slots[..count].iter().map(|slot| slot.data));
    Some((&self.pointers, self.size))
  }

  /// Hands out message `i` of the last receive (`len` bytes; `lent`: in slot `i`'s Buffer, else
  /// `data` is where the batch has it): the ArrayBuffer holding it and its offset there. A long
  /// message in its Buffer leaves in it (the slot is replaced at the next receive); anything else
  /// is copied into the slab. Call for every message of a receive before any JavaScript runs, in
  /// any order; then [`refill`](Self::refill).
  pub fn hand_out(
    &mut self,
    env: sys::napi_env,
    i: usize,
    data: &[u8],
    lent: bool,
  ) -> Option<(sys::napi_value, usize)> {
    let len = data.len();
    if !lent {
      if len > self.size {
        self.grow_to = self.grow_to.max(len.next_multiple_of(4096).min(self.limit));
      }
      return place(env, data);
    }
    let slot = &self.slots[i];
    if len < HAND_OVER_AT {
      return place(env, data);
    }
    let buffer = slot.buffer.get()?;
    // The rest of the Buffer is uninitialized memory, reachable through the view's `.buffer`:
    // it must not show whatever the process had there before.
    // SAFETY: len <= size; the slot's memory is live (held) and not yet seen by JavaScript.
    unsafe { std::ptr::write_bytes(slot.data.add(len), 0, self.size - len) };
    self.pointers[i] = std::ptr::null_mut();
    Some((buffer, slot.offset))
  }

  /// Environment teardown: the environment frees its own references, so ours must not be
  /// deleted after it.
  pub fn forget_for_teardown(self) {
    std::mem::forget(self);
  }

  /// Forgets the slots handed out (JavaScript has them now), and the rest too when a message
  /// longer than them came: longer ones are made from then on.
  pub fn refill(&mut self) {
    if self.grow_to > self.size {
      self.size = self.grow_to;
      self.slots.clear();
      return;
    }
    let mut i = 0;
    self.slots.retain(|_| {
      let kept = self
        .pointers
        .get(i)
        .is_none_or(|pointer| !pointer.is_null());
      i += 1;
      kept
    });
  }
}
