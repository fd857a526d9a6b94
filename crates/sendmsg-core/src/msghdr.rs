//! The one place a `msghdr` is filled in and handed to `sendmsg(2)`/`recvmsg(2)`: every send and
//! receive path of the crate, one message or many, builds its headers here.
//!
//! The rules kept here: an empty control buffer is a null pointer with length 0 (Darwin refuses
//! anything else); the length fields are `size_t` on glibc but `int`/`socklen_t` on musl and
//! Darwin, hence the inferred casts; an interrupted call is made again.

use std::io::IoSlice;

use nix::sys::socket::SockaddrLike;

use crate::error::{retry_interrupted, SysResult};

/// A `msghdr` and the byte count the kernel reports for it. The layout is Linux's `mmsghdr`, so a
/// slice of them is what `recvmmsg`/`sendmmsg` take; elsewhere a loop of `recvmsg`/`sendmsg`
/// walks the same slice.
///
/// The header holds raw pointers into buffers it does not own: whoever builds one keeps those
/// buffers alive, and unmoved, until the call that uses it returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MessageHeader {
  pub(crate) header: libc::msghdr,
  /// Bytes sent or received for this message by the last `*mmsg` call (or its loop).
  pub(crate) len: libc::c_uint,
}

impl MessageHeader {
  /// A header over `iov_count` iovecs at `iov`, with no control buffer and no address.
  pub(crate) fn new(iov: *const libc::iovec, iov_count: usize) -> Self {
    // SAFETY: msghdr is plain data, all-zero is valid: null pointers, zero lengths.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iov as *mut libc::iovec;
    header.msg_iovlen = iov_count as _;
    Self { header, len: 0 }
  }

  /// A header for sending `iov` (IoSlice is guaranteed ABI-compatible with iovec on Unix) with
  /// `control_len` bytes of control messages at `control`, to `address` when given.
  pub(crate) fn for_send(
    iov: &[IoSlice<'_>],
    control: *mut libc::c_void,
    control_len: usize,
    address: Option<&dyn SockaddrLike>,
  ) -> Self {
    let header = Self::new(iov.as_ptr().cast(), iov.len()).with_control(control, control_len);
    match address {
      Some(address) => header.with_name(address.as_ptr().cast(), address.len()),
      None => header,
    }
  }

  /// `len` bytes of control buffer at `control`; a null pointer when `len` is 0.
  pub(crate) fn with_control(mut self, control: *mut libc::c_void, len: usize) -> Self {
    self.set_control(control, len);
    self
  }

  /// An address of `len` bytes at `name`: the destination of a send, or room for the sender's.
  pub(crate) fn with_name(mut self, name: *const libc::c_void, len: libc::socklen_t) -> Self {
    self.set_name(name, len);
    self
  }

  /// Sets the control buffer again: a receive writes the length back, so a retry must reset it.
  pub(crate) fn set_control(&mut self, control: *mut libc::c_void, len: usize) {
    if len == 0 {
      self.header.msg_control = std::ptr::null_mut();
      self.header.msg_controllen = 0;
    } else {
      self.header.msg_control = control;
      self.header.msg_controllen = len as _;
    }
  }

  /// Sets the address again (see [`set_control`](Self::set_control)).
  pub(crate) fn set_name(&mut self, name: *const libc::c_void, len: libc::socklen_t) {
    self.header.msg_name = name as *mut libc::c_void;
    self.header.msg_namelen = len;
  }

  /// `msg_flags` as the kernel set them.
  pub(crate) fn flags(&self) -> i32 {
    self.header.msg_flags
  }

  /// Control bytes the kernel wrote, never more than the buffer it was given (`capacity`).
  // `msg_controllen` is a size_t on glibc but a socklen_t on musl and Darwin: the cast is needed there.
  #[allow(clippy::unnecessary_cast)]
  pub(crate) fn control_len(&self, capacity: usize) -> usize {
    (self.header.msg_controllen as usize).min(capacity)
  }

  /// Address bytes the kernel wrote.
  pub(crate) fn name_len(&self) -> libc::socklen_t {
    self.header.msg_namelen
  }

  /// One `sendmsg`, again while a signal interrupts it: the bytes sent.
  pub(crate) fn send(&self, socket: libc::c_int, flags: i32) -> SysResult<usize> {
    // SAFETY: the builder of this header keeps every buffer it points at alive for the call.
    retry_interrupted("sendmsg", || unsafe {
      libc::sendmsg(socket, &self.header, flags)
    })
  }

  /// One `recvmsg`, again while a signal interrupts it: the bytes received. The kernel writes
  /// the control length, address length and flags back into the header.
  pub(crate) fn recv(&mut self, socket: libc::c_int, flags: i32) -> SysResult<usize> {
    let (control, control_len) = (self.header.msg_control, self.header.msg_controllen);
    let (name, name_len) = (self.header.msg_name, self.header.msg_namelen);
    retry_interrupted("recvmsg", || {
      // An interrupted call may have written them: the kernel gets the full room every time.
      self.header.msg_control = control;
      self.header.msg_controllen = control_len;
      self.header.msg_name = name;
      self.header.msg_namelen = name_len;
      self.header.msg_flags = 0;
      // SAFETY: as in `send`.
      unsafe { libc::recvmsg(socket, &mut self.header, flags) }
    })
  }
}
