//! Descriptor flags through `fcntl(2)`: the primitives under both the public [`crate::fd`]
//! module and the platform layer, which sets them where a descriptor cannot be created with them.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

use crate::error::{SysResult, Syscall};

/// Sets `FD_CLOEXEC`, keeping the other descriptor flags.
pub fn set_cloexec(fd: impl AsFd) -> SysResult<()> {
  let fd = fd.as_fd();
  let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).syscall("fcntl")?);
  if !flags.contains(FdFlag::FD_CLOEXEC) {
    fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).syscall("fcntl")?;
  }
  Ok(())
}

/// Whether `FD_CLOEXEC` is set.
pub fn is_cloexec(fd: impl AsFd) -> SysResult<bool> {
  let flags = FdFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFD).syscall("fcntl")?);
  Ok(flags.contains(FdFlag::FD_CLOEXEC))
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> SysResult<()> {
  let fd = fd.as_fd();
  let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).syscall("fcntl")?);
  let wanted = if nonblocking {
    flags | OFlag::O_NONBLOCK
  } else {
    flags & !OFlag::O_NONBLOCK
  };
  if wanted != flags {
    fcntl(fd, FcntlArg::F_SETFL(wanted)).syscall("fcntl")?;
  }
  Ok(())
}

/// A new descriptor for the same open file, close-on-exec (`F_DUPFD_CLOEXEC`).
pub fn dup_cloexec(fd: impl AsFd) -> SysResult<OwnedFd> {
  let new = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(0)).syscall("fcntl")?;
  // SAFETY: fcntl returned a new descriptor that we own.
  Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
