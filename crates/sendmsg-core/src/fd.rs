//! Small operations on descriptors the package owns or is handed.

use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;

use crate::error::{SysError, SysResult};
use crate::platform;

pub use crate::fcntl::{dup_cloexec, is_cloexec, set_cloexec, set_nonblocking};

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
  platform::pipe()
}

/// Closes a descriptor the caller owns and gives up.
///
/// EINTR is success and is never retried: Linux (and Darwin) release the descriptor before
/// anything can interrupt the close, so by then its number may already belong to a descriptor
/// another thread just opened, which a second close would take from it. EBADF is reported.
pub fn close(fd: RawFd) -> SysResult<()> {
  // SAFETY: the caller gives up fd; nothing of ours refers to it afterwards.
  if unsafe { libc::close(fd) } == -1 {
    let err = SysError::last("close");
    if err.errno != Errno::EINTR {
      return Err(err);
    }
  }
  Ok(())
}
