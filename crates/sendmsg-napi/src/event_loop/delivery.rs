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
  let mut kind = 0;
  let mut length = 0;
  let mut pointer = std::ptr::null_mut();
  let mut array_buffer = std::ptr::null_mut();
  let mut offset = 0;
  // SAFETY: `buffer` is a Buffer (a Uint8Array) of this env.
  let status = unsafe {
    sys::napi_get_typedarray_info(
      env,
      buffer,
      &mut kind,
      &mut length,
      &mut pointer,
      &mut array_buffer,
      &mut offset,
    )
  };
  (status == sys::Status::napi_ok && !array_buffer.is_null()).then_some((array_buffer, offset))
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
