//! Small operations on descriptors the package owns or is handed.

use std::os::fd::AsFd;

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

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> SysResult<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  let ends = nix::unistd::pipe2(OFlag::O_CLOEXEC).syscall("pipe2")?;
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  let ends = {
    let ends = nix::unistd::pipe().syscall("pipe")?;
    set_cloexec(&ends.0)?;
    set_cloexec(&ends.1)?;
    ends
  };
  Ok(ends)
}

/// A new descriptor for the same open file, close-on-exec (`F_DUPFD_CLOEXEC`).
pub fn dup_cloexec(fd: impl AsFd) -> SysResult<std::os::fd::OwnedFd> {
  use std::os::fd::FromRawFd;
  let new = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(0)).syscall("fcntl")?;
  // SAFETY: fcntl returned a new descriptor that we own.
  Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}
