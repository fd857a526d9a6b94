//! Control-message geometry, encoding and walking.
//!
//! Outgoing control messages are arbitrary `(level, type, bytes)` triples (Twisted's contract),
//! which nix's typed `ControlMessage` cannot express, so they are laid out here by hand.
//! Received buffers are walked byte by byte rather than with `CMSG_NXTHDR`: the walker must stay
//! sound on truncated (MSG_CTRUNC) and even hostile buffers, and it is what finds the fds that
//! nix's `cmsgs()` hides behind ENOBUFS when the kernel truncated the control data.

use std::mem::size_of;
use std::os::fd::RawFd;

/// Alignment of control-message headers and payloads: `CMSG_ALIGN` is `size_t` on Linux and
/// 32-bit on Darwin; asking libc keeps the platform knowledge in one place.
fn alignment() -> usize {
  // SAFETY: pure arithmetic macros.
  unsafe { (libc::CMSG_SPACE(1) - libc::CMSG_SPACE(0)) as usize }
}

/// Bytes from the start of a control message to its payload (`CMSG_LEN(0)`).
pub fn header_len() -> usize {
  // SAFETY: pure arithmetic macro.
  unsafe { libc::CMSG_LEN(0) as usize }
}

fn align_up(n: usize) -> Option<usize> {
  let align = alignment();
  n.checked_add(align - 1).map(|n| n & !(align - 1))
}

/// The largest control buffer handed to the kernel. `msg_controllen` is a `socklen_t` on Darwin and
/// Linux refuses anything past `INT_MAX`; keeping both under `i32::MAX` gives one rule everywhere.
pub const MAX_CONTROL_LEN: usize = i32::MAX as usize;

/// `CMSG_LEN(payload)`: header plus payload, no trailing padding. `None` if it would not fit.
pub fn cmsg_len(payload: usize) -> Option<usize> {
  header_len()
    .checked_add(payload)
    .filter(|&n| n <= MAX_CONTROL_LEN)
}

/// `CMSG_SPACE(payload)`: the room one control message takes in a buffer, padding included.
/// `None` if it would not fit under [`MAX_CONTROL_LEN`].
pub fn cmsg_space(payload: usize) -> Option<usize> {
  align_up(header_len())
    .and_then(|header| align_up(payload).and_then(|p| p.checked_add(header)))
    .filter(|&n| n <= MAX_CONTROL_LEN)
}

/// The largest payload whose `CMSG_SPACE` still fits: the upper bound for a `cmsgSize` argument.
pub fn max_cmsg_payload() -> usize {
  let header = align_up(header_len()).expect("header fits");
  (MAX_CONTROL_LEN - header) & !(alignment() - 1)
}

/// Size of one file descriptor inside an SCM_RIGHTS payload.
pub const FD_SIZE: usize = size_of::<RawFd>();

/// The kernel's limit of descriptors in one message (Linux `SCM_MAX_FD`). Darwin has no fixed
/// limit but the same number keeps a message portable; it sizes buffers, it refuses nothing.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// A byte buffer aligned for `cmsghdr`, as `msg_control` requires.
#[derive(Default)]
pub struct ControlBuffer {
  words: Vec<u64>,
  len: usize,
}

impl ControlBuffer {
  /// A zeroed buffer of `len` bytes. Allocation failure is reported, not aborted on: `len` can
  /// come from a caller's `cmsgSize`.
  pub fn zeroed(len: usize) -> Result<Self, std::collections::TryReserveError> {
    let mut buffer = Self::default();
    buffer.resize(len)?;
    Ok(buffer)
  }

  /// Makes the buffer `len` bytes long and zero, reusing its allocation.
  pub fn resize(&mut self, len: usize) -> Result<(), std::collections::TryReserveError> {
    let words = len.div_ceil(size_of::<u64>());
    // Emptied first, so that a failed reservation leaves an empty buffer rather than a `len`
    // that `words` no longer backs (as_bytes relies on it).
    self.len = 0;
    self.words.clear();
    self.words.try_reserve(words)?;
    self.words.resize(words, 0);
    self.len = len;
    Ok(())
  }

  pub fn len(&self) -> usize {
    self.len
  }

  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  pub fn as_bytes(&self) -> &[u8] {
    // SAFETY: `words` holds at least `len` initialised bytes.
    unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
  }

  pub fn as_bytes_mut(&mut self) -> &mut [u8] {
    // SAFETY: as above, uniquely borrowed.
    unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
  }

  /// The pointer for `msg_control`: null when empty, which Darwin requires.
  pub fn as_msg_control(&mut self) -> *mut libc::c_void {
    if self.len == 0 {
      std::ptr::null_mut()
    } else {
      self.words.as_mut_ptr().cast()
    }
  }
}

/// One control message to send.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingCmsg<'a> {
  pub level: i32,
  pub kind: i32,
  pub data: &'a [u8],
}

/// Why a list of control messages cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
  /// The messages together need more than [`MAX_CONTROL_LEN`] bytes.
  TooLarge,
  /// The allocation for the buffer failed.
  OutOfMemory,
}

/// Bytes the messages take once laid out, padding included.
pub fn encoded_len(items: &[OutgoingCmsg<'_>]) -> Result<usize, EncodeError> {
  space_for_payloads(items.iter().map(|item| item.data.len()))
}

/// Bytes control messages with these payload sizes take once laid out.
pub fn space_for_payloads(payloads: impl IntoIterator<Item = usize>) -> Result<usize, EncodeError> {
  payloads.into_iter().try_fold(0usize, |total, payload| {
    cmsg_space(payload)
      .and_then(|space| total.checked_add(space))
      .filter(|&n| n <= MAX_CONTROL_LEN)
      .ok_or(EncodeError::TooLarge)
  })
}

/// Lays `items` out into `buffer` (resized to fit; empty when `items` is).
pub fn encode_into(
  buffer: &mut ControlBuffer,
  items: &[OutgoingCmsg<'_>],
) -> Result<(), EncodeError> {
  let total = encoded_len(items)?;
  buffer.resize(total).map_err(|_| EncodeError::OutOfMemory)?;
  let bytes = buffer.as_bytes_mut();
  let mut offset = 0;
  for item in items {
    write_cmsg(&mut bytes[offset..], item.level, item.kind, item.data);
    offset += cmsg_space(item.data.len()).expect("checked by encoded_len");
  }
  Ok(())
}

/// Lays out one SCM_RIGHTS message carrying `fds` (no allocation beyond the buffer's own).
pub fn encode_rights_into(buffer: &mut ControlBuffer, fds: &[RawFd]) -> Result<(), EncodeError> {
  if fds.is_empty() {
    buffer.resize(0).map_err(|_| EncodeError::OutOfMemory)?;
    return Ok(());
  }
  let payload = fds
    .len()
    .checked_mul(FD_SIZE)
    .ok_or(EncodeError::TooLarge)?;
  let space = cmsg_space(payload).ok_or(EncodeError::TooLarge)?;
  buffer.resize(space).map_err(|_| EncodeError::OutOfMemory)?;
  let bytes = buffer.as_bytes_mut();
  write_header(bytes, libc::SOL_SOCKET, libc::SCM_RIGHTS, payload);
  for (slot, fd) in bytes[header_len()..].chunks_exact_mut(FD_SIZE).zip(fds) {
    slot.copy_from_slice(&fd.to_ne_bytes());
  }
  Ok(())
}

fn write_header(bytes: &mut [u8], level: i32, kind: i32, payload: usize) {
  // SAFETY: a zeroed cmsghdr is valid (plain integers and, on some libcs, padding).
  let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
  header.cmsg_len = cmsg_len(payload).expect("checked by the caller") as _;
  header.cmsg_level = level;
  header.cmsg_type = kind;
  assert!(bytes.len() >= size_of::<libc::cmsghdr>());
  // SAFETY: bounds checked above; unaligned write needs no alignment.
  unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast::<libc::cmsghdr>(), header) };
}

fn write_cmsg(bytes: &mut [u8], level: i32, kind: i32, data: &[u8]) {
  write_header(bytes, level, kind, data.len());
  let start = header_len();
  bytes[start..start + data.len()].copy_from_slice(data);
}

/// A control message as found in a received buffer, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawCmsg<'a> {
  pub level: i32,
  pub kind: i32,
  pub data: &'a [u8],
}

impl<'a> RawCmsg<'a> {
  /// Whether the payload is a list of descriptors the kernel installed in this process.
  pub fn carries_fds(&self) -> bool {
    carries_fds(self.level, self.kind)
  }

  /// The descriptor numbers in an fd-carrying payload (a trailing partial number is ignored).
  pub fn fds(&self) -> impl Iterator<Item = RawFd> + 'a {
    fds_in(self.data)
  }
}

/// SCM_RIGHTS everywhere; on Linux also SCM_PIDFD (6.5+), whose payload is a pidfd the kernel
/// installed: both must be owned, or they leak.
pub fn carries_fds(level: i32, kind: i32) -> bool {
  level == libc::SOL_SOCKET && (kind == libc::SCM_RIGHTS || crate::platform::is_pidfd(kind))
}

/// Native-endian descriptor numbers packed in `data`.
pub fn fds_in(data: &[u8]) -> impl Iterator<Item = RawFd> + '_ {
  data
    .chunks_exact(FD_SIZE)
    .map(|chunk| RawFd::from_ne_bytes(chunk.try_into().expect("FD_SIZE chunk")))
}

/// Walks the control messages in the first `msg_controllen` bytes of a received buffer.
///
/// Never reads out of bounds whatever the bytes say: a header that does not fit ends the walk, a
/// length shorter than a header ends it, and a length running past the end is clamped (that is what
/// a truncated last message looks like).
pub fn walk(buffer: &[u8]) -> CmsgWalker<'_> {
  CmsgWalker { buffer, offset: 0 }
}

pub struct CmsgWalker<'a> {
  buffer: &'a [u8],
  offset: usize,
}

impl<'a> Iterator for CmsgWalker<'a> {
  type Item = RawCmsg<'a>;

  fn next(&mut self) -> Option<RawCmsg<'a>> {
    let rest = self.buffer.get(self.offset..)?;
    let header_len = header_len();
    if rest.len() < size_of::<libc::cmsghdr>() || rest.len() < header_len {
      self.offset = self.buffer.len();
      return None;
    }
    // SAFETY: at least size_of::<cmsghdr>() bytes remain; the read is unaligned-safe.
    let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(rest.as_ptr().cast()) };
    let declared = header.cmsg_len as usize;
    if declared < header_len {
      self.offset = self.buffer.len();
      return None;
    }
    let end = declared.min(rest.len());
    let data = &rest[header_len..end];
    self.offset = align_up(declared)
      .and_then(|step| self.offset.checked_add(step))
      .unwrap_or(self.buffer.len());
    Some(RawCmsg {
      level: header.cmsg_level,
      kind: header.cmsg_type,
      data,
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_failed_resize_leaves_an_empty_buffer() {
    let mut buffer = ControlBuffer::zeroed(64).unwrap();
    assert!(buffer.resize(usize::MAX - 7).is_err());
    assert_eq!(buffer.len(), 0);
    assert!(buffer.as_bytes().is_empty());
    assert!(buffer.as_msg_control().is_null());
  }

  #[test]
  fn geometry_matches_libc() {
    for n in [0usize, 1, 3, 4, 7, 8, 12, 16, 1012, 4096] {
      let space = unsafe { libc::CMSG_SPACE(n as u32) } as usize;
      let len = unsafe { libc::CMSG_LEN(n as u32) } as usize;
      assert_eq!(cmsg_space(n), Some(space), "CMSG_SPACE({n})");
      assert_eq!(cmsg_len(n), Some(len), "CMSG_LEN({n})");
    }
  }

  #[test]
  fn space_for_one_fd_holds_two_on_64_bit_linux() {
    // The field notes' trap: CMSG_SPACE(4) is 24 bytes, room for (24 - 16) / 4 = 2 fds.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    assert_eq!(cmsg_space(FD_SIZE), Some(24));
  }

  #[test]
  fn overflowing_sizes_are_refused() {
    assert_eq!(cmsg_space(usize::MAX), None);
    assert_eq!(cmsg_space(MAX_CONTROL_LEN), None);
    assert!(cmsg_space(max_cmsg_payload()).is_some());
    assert!(cmsg_space(max_cmsg_payload() + 1).is_none());
    assert_eq!(cmsg_len(usize::MAX), None);
  }

  #[test]
  fn encodes_like_the_c_macros_and_walks_back() {
    let items = [
      OutgoingCmsg {
        level: 1,
        kind: 2,
        data: b"abc",
      },
      OutgoingCmsg {
        level: 3,
        kind: 4,
        data: b"",
      },
      OutgoingCmsg {
        level: 5,
        kind: 6,
        data: &[9; 17],
      },
    ];
    let mut buffer = ControlBuffer::default();
    encode_into(&mut buffer, &items).unwrap();
    assert_eq!(
      buffer.len(),
      cmsg_space(3).unwrap() + cmsg_space(0).unwrap() + cmsg_space(17).unwrap()
    );

    // Cross-check with libc's CMSG_FIRSTHDR/CMSG_NXTHDR over the same bytes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = buffer.as_msg_control();
    msg.msg_controllen = buffer.len() as _;
    let mut seen = Vec::new();
    unsafe {
      let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
      while !cmsg.is_null() {
        let data = libc::CMSG_DATA(cmsg);
        let n = (*cmsg).cmsg_len as usize - header_len();
        seen.push((
          (*cmsg).cmsg_level,
          (*cmsg).cmsg_type,
          std::slice::from_raw_parts(data, n).to_vec(),
        ));
        cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
      }
    }
    let walked: Vec<_> = walk(buffer.as_bytes())
      .map(|c| (c.level, c.kind, c.data.to_vec()))
      .collect();
    assert_eq!(walked, seen);
    assert_eq!(walked.len(), 3);
    assert_eq!(walked[0], (1, 2, b"abc".to_vec()));
    assert_eq!(walked[1], (3, 4, vec![]));
    assert_eq!(walked[2], (5, 6, vec![9; 17]));
  }

  #[test]
  fn empty_list_encodes_to_a_null_control_pointer() {
    let mut buffer = ControlBuffer::zeroed(64).unwrap();
    encode_into(&mut buffer, &[]).unwrap();
    assert!(buffer.is_empty());
    assert!(buffer.as_msg_control().is_null());
  }

  #[test]
  fn rights_encoding_round_trips() {
    let mut buffer = ControlBuffer::default();
    encode_rights_into(&mut buffer, &[3, 4, 1000]).unwrap();
    let items: Vec<_> = walk(buffer.as_bytes()).collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].carries_fds());
    assert_eq!(items[0].fds().collect::<Vec<_>>(), vec![3, 4, 1000]);
  }

  #[test]
  fn walker_clamps_a_truncated_last_message() {
    let mut buffer = ControlBuffer::default();
    encode_rights_into(&mut buffer, &[10, 11, 12, 13]).unwrap();
    // Cut the buffer inside the payload, as a too-small control buffer would.
    let cut = header_len() + 2 * FD_SIZE + 1;
    let items: Vec<_> = walk(&buffer.as_bytes()[..cut]).collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].fds().collect::<Vec<_>>(), vec![10, 11]);
  }

  #[test]
  fn walker_stops_on_garbage() {
    assert_eq!(walk(&[]).count(), 0);
    assert_eq!(walk(&[0xff; 7]).count(), 0);
    // A header claiming a length shorter than itself ends the walk.
    let mut bytes = vec![0u8; 64];
    assert_eq!(walk(&bytes).count(), 0);
    // A huge declared length is clamped to the buffer and the walk ends after it.
    bytes[..size_of::<usize>()].fill(0xff);
    let items: Vec<_> = walk(&bytes).collect();
    assert!(items.len() <= 1);
  }

  #[test]
  fn encoding_refuses_what_cannot_fit() {
    assert!(space_for_payloads([16; 4]).is_ok());
    assert_eq!(
      space_for_payloads([MAX_CONTROL_LEN]),
      Err(EncodeError::TooLarge)
    );
    let half = MAX_CONTROL_LEN / 2;
    assert_eq!(space_for_payloads([half, half]), Err(EncodeError::TooLarge));
    assert_eq!(
      space_for_payloads([usize::MAX, 1]),
      Err(EncodeError::TooLarge)
    );
  }
}
