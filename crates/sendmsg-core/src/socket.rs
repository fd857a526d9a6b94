//! Creating AF_UNIX sockets and asking a socket what it is.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage};

use crate::error::{SysResult, Syscall};

/// The three AF_UNIX socket types the package speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
  Stream,
  Datagram,
  SeqPacket,
}

impl SocketKind {
  pub fn sock_type(self) -> SockType {
    match self {
      Self::Stream => SockType::Stream,
      Self::Datagram => SockType::Datagram,
      Self::SeqPacket => SockType::SeqPacket,
    }
  }

  /// From an `SO_TYPE` value; `None` for types the package does not handle.
  pub fn from_raw(raw: i32) -> Option<Self> {
    match raw {
      libc::SOCK_STREAM => Some(Self::Stream),
      libc::SOCK_DGRAM => Some(Self::Datagram),
      libc::SOCK_SEQPACKET => Some(Self::SeqPacket),
      _ => None,
    }
  }

  /// Whether message boundaries are kept (and so a zero-length message is a message).
  pub fn keeps_boundaries(self) -> bool {
    !matches!(self, Self::Stream)
  }
}

/// Flags for a new descriptor: close-on-exec always, and non-blocking when asked. Linux sets them
/// atomically at creation; elsewhere they are set right after (see [`finish_flags`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn creation_flags(nonblocking: bool) -> SockFlag {
  let mut flags = SockFlag::SOCK_CLOEXEC;
  if nonblocking {
    flags |= SockFlag::SOCK_NONBLOCK;
  }
  flags
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn creation_flags(_nonblocking: bool) -> SockFlag {
  SockFlag::empty()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn finish_flags(_fd: &OwnedFd, _nonblocking: bool) -> SysResult<()> {
  Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn finish_flags(fd: &OwnedFd, nonblocking: bool) -> SysResult<()> {
  crate::fd::set_cloexec(fd)?;
  if nonblocking {
    crate::fd::set_nonblocking(fd, true)?;
  }
  Ok(())
}

/// A connected pair of AF_UNIX sockets, both close-on-exec.
pub fn socketpair(kind: SocketKind, nonblocking: bool) -> SysResult<(OwnedFd, OwnedFd)> {
  let (a, b) = socket::socketpair(
    AddressFamily::Unix,
    kind.sock_type(),
    None,
    creation_flags(nonblocking),
  )
  .syscall("socketpair")?;
  finish_flags(&a, nonblocking)?;
  finish_flags(&b, nonblocking)?;
  Ok((a, b))
}

/// A new, unbound AF_UNIX socket, close-on-exec.
pub fn unix_socket(kind: SocketKind, nonblocking: bool) -> SysResult<OwnedFd> {
  let fd = socket::socket(
    AddressFamily::Unix,
    kind.sock_type(),
    creation_flags(nonblocking),
    None,
  )
  .syscall("socket")?;
  finish_flags(&fd, nonblocking)?;
  Ok(fd)
}

/// The address family of a socket (`AF_UNIX`, `AF_INET`, ...), from `getsockname` as Twisted does.
pub fn family(fd: RawFd) -> SysResult<i32> {
  let address: SockaddrStorage = socket::getsockname(fd).syscall("getsockname")?;
  // SAFETY: as_ptr points at the storage, whose family field the kernel filled.
  Ok(unsafe { (*address.as_ptr()).sa_family } as i32)
}

/// The socket type (`SOCK_STREAM`, ...), from `SO_TYPE`.
pub fn raw_type(fd: impl AsFd) -> SysResult<i32> {
  socket::getsockopt(&fd.as_fd(), sockopt::SockType)
    .map(|ty| ty as i32)
    .syscall("getsockopt")
}
