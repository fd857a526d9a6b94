//! One `sendmsg(2)` or `recvmsg(2)`, with the guarantees the package makes around it:
//! received descriptors are owned and close-on-exec, none is lost when the kernel truncates the
//! control data, the caller's flags are not polluted by `MSG_CMSG_CLOEXEC`, and a closed peer is
//! an EPIPE rather than a SIGPIPE.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::cmsg::{self, ControlBuffer, RawCmsg};
use crate::error::{read_again_after_reset, SysError, SysResult};
use crate::msghdr::MessageHeader;
use crate::platform;
use crate::socket::{self, SocketKind};

/// A control message received, with any descriptors it carried owned by it: dropping it closes them.
#[derive(Debug)]
pub enum ReceivedCmsg {
  /// SCM_RIGHTS (or SCM_PIDFD): the descriptors the kernel installed in this process.
  Fds {
    level: i32,
    kind: i32,
    fds: Vec<OwnedFd>,
  },
  /// Anything else, as bytes.
  Data {
    level: i32,
    kind: i32,
    data: Vec<u8>,
  },
}

impl ReceivedCmsg {
  pub fn level(&self) -> i32 {
    match self {
      Self::Fds { level, .. } | Self::Data { level, .. } => *level,
    }
  }

  pub fn kind(&self) -> i32 {
    match self {
      Self::Fds { kind, .. } | Self::Data { kind, .. } => *kind,
    }
  }
}

/// Takes ownership of every descriptor in a control buffer `recvmsg` just filled, and copies the
/// rest out.
///
/// # Safety
/// `control` must be exactly the `msg_controllen` bytes the kernel wrote for this process: the
/// numbers in fd-carrying messages are then descriptors nobody else owns yet.
pub unsafe fn take_control(control: &[u8]) -> Vec<ReceivedCmsg> {
  cmsg::walk(control).map(|raw| own(raw)).collect()
}

/// # Safety
/// As [`take_control`], for one message of that buffer.
pub unsafe fn own(raw: RawCmsg<'_>) -> ReceivedCmsg {
  if raw.carries_fds() {
    let fds = raw
      .fds()
      // SAFETY: the caller vouches these were just installed for us.
      .map(|number| unsafe { OwnedFd::from_raw_fd(number) })
      .collect();
    ReceivedCmsg::Fds {
      level: raw.level,
      kind: raw.kind,
      fds,
    }
  } else {
    ReceivedCmsg::Data {
      level: raw.level,
      kind: raw.kind,
      data: raw.data.to_vec(),
    }
  }
}

/// What one `recvmsg` produced.
#[derive(Debug)]
pub struct ReceivedMessage {
  /// Bytes written into the data buffer (never more than its length, even with `MSG_TRUNC` in the
  /// request flags, where Linux returns the datagram's real length).
  pub len: usize,
  /// `msg_flags` as the kernel set them, minus the `MSG_CMSG_CLOEXEC` echo Linux adds.
  pub flags: i32,
  pub control: Vec<ReceivedCmsg>,
  /// The sender's address, when asked for and the kernel gave one.
  pub address: Option<SockaddrStorage>,
}

/// Why a send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
  /// The kernel refused.
  Sys(SysError),
  /// Descriptors with no data on a stream socket: Linux would report success and silently drop
  /// them (SCM_RIGHTS rides on the first byte), so the package refuses before the syscall.
  FdsWithoutData,
}

impl From<SysError> for SendError {
  fn from(err: SysError) -> Self {
    Self::Sys(err)
  }
}

impl std::fmt::Display for SendError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      Self::Sys(err) => err.fmt(f),
      Self::FdsWithoutData => f.write_str(
        "file descriptors need at least one byte of data on a stream socket (the kernel would drop them)",
      ),
    }
  }
}

impl std::error::Error for SendError {}

/// Refuses descriptors that would travel with no data on a socket of `kind`: on a stream they ride
/// on the first byte, and without one Linux reports success and silently drops them. The one
/// check of that rule, for every send path and for callers that check before queueing.
pub fn check_descriptors_have_data(
  kind: SocketKind,
  data_len: usize,
  carries_fds: bool,
) -> Result<(), SendError> {
  if carries_fds && data_len == 0 && kind == SocketKind::Stream {
    return Err(SendError::FdsWithoutData);
  }
  Ok(())
}

/// Sends `iov` and the pre-encoded `control` in one `sendmsg`, to `address` when given.
///
/// Retries on EINTR. `MSG_NOSIGNAL` is added where it exists; elsewhere the socket gets
/// `SO_NOSIGPIPE` first, so a closed peer is always EPIPE, never a signal. The socket's kind is
/// asked of the kernel only for an empty send with descriptors; a caller that knows the kind
/// calls [`send_with_kind`].
pub fn send(
  socket: RawFd,
  iov: &[IoSlice<'_>],
  control: &mut ControlBuffer,
  flags: i32,
  address: Option<&dyn SockaddrLike>,
) -> Result<usize, SendError> {
  if is_empty(iov) && carries_fds(control) {
    // SAFETY: the caller's descriptor is open for the duration of the call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(socket) };
    if let Some(kind) = socket::kind(borrowed)? {
      check_descriptors_have_data(kind, 0, true)?;
    }
  }
  send_checked(socket, iov, control, flags, address)
}

/// [`send`] on a socket the caller knows to be of `kind`: no system call but the send.
pub fn send_with_kind(
  socket: RawFd,
  kind: SocketKind,
  iov: &[IoSlice<'_>],
  control: &mut ControlBuffer,
  flags: i32,
  address: Option<&dyn SockaddrLike>,
) -> Result<usize, SendError> {
  if is_empty(iov) {
    check_descriptors_have_data(kind, 0, carries_fds(control))?;
  }
  send_checked(socket, iov, control, flags, address)
}

fn send_checked(
  socket: RawFd,
  iov: &[IoSlice<'_>],
  control: &mut ControlBuffer,
  flags: i32,
  address: Option<&dyn SockaddrLike>,
) -> Result<usize, SendError> {
  platform::prepare_send(socket)?;
  let header = MessageHeader::for_send(iov, control.as_msg_control(), control.len(), address);
  Ok(header.send(socket, flags | platform::SEND_FLAGS)?)
}

fn is_empty(iov: &[IoSlice<'_>]) -> bool {
  iov.iter().all(|slice| slice.is_empty())
}

fn carries_fds(control: &ControlBuffer) -> bool {
  cmsg::walk(control.as_bytes()).any(|raw| raw.carries_fds())
}

/// Receives one message into `buffer`, with `control` as the control buffer (its length is what the
/// kernel may fill). Retries on EINTR, and once on the ECONNRESET a dead peer leaves before its
/// last messages (so those are returned, then the end of the data); a receive that does not block
/// and finds nothing after it is EAGAIN as usual.
pub fn recv(
  socket: RawFd,
  buffer: &mut [u8],
  control: &mut ControlBuffer,
  flags: i32,
  want_address: bool,
) -> SysResult<ReceivedMessage> {
  let mut iov = [IoSliceMut::new(buffer)];
  recv_vectored(socket, &mut iov, control, flags, want_address)
}

/// Receives one message scattered over `iov`.
pub fn recv_vectored(
  socket: RawFd,
  iov: &mut [IoSliceMut<'_>],
  control: &mut ControlBuffer,
  flags: i32,
  want_address: bool,
) -> SysResult<ReceivedMessage> {
  let capacity: usize = iov.iter().map(|slice| slice.len()).sum();
  // SAFETY: a zeroed sockaddr_storage is valid.
  let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
  let mut header = MessageHeader::new(iov.as_mut_ptr().cast(), iov.len())
    .with_control(control.as_msg_control(), control.len());
  if want_address {
    header = header.with_name(
      (&mut address as *mut libc::sockaddr_storage).cast(),
      std::mem::size_of::<libc::sockaddr_storage>() as _,
    );
  }
  let received = read_again_after_reset(|| header.recv(socket, flags | platform::RECV_FLAGS))?;
  // SAFETY: these are the bytes the kernel just wrote for this process.
  let control_messages =
    unsafe { take_control(&control.as_bytes()[..header.control_len(control.len())]) };
  for message in &control_messages {
    if let ReceivedCmsg::Fds { fds, .. } = message {
      for owned in fds {
        platform::make_received_cloexec(owned)?;
      }
    }
  }
  let address = if want_address && header.name_len() > 0 {
    // SAFETY: the kernel wrote `name_len` bytes of a sockaddr.
    unsafe {
      SockaddrStorage::from_raw(
        (&address as *const libc::sockaddr_storage).cast(),
        Some(header.name_len()),
      )
    }
  } else {
    None
  };
  Ok(ReceivedMessage {
    len: received.min(capacity),
    flags: platform::clean_flags(header.flags()),
    control: control_messages,
    address,
  })
}
