//! Small operations on descriptors the package owns or is handed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

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

/// Tries to take an exclusive `flock(2)` lock on the open file `fd` without waiting: `false` when
/// another open file description holds a lock on the same file. The lock belongs to the open file
/// description, so it is released when the last descriptor of it closes, including when the
/// process dies: a lock a crashed process held never outlives it.
pub fn try_lock_exclusive(fd: impl AsFd) -> SysResult<bool> {
  loop {
    // SAFETY: flock on a borrowed, open descriptor; LOCK_NB makes it return at once.
    if unsafe { libc::flock(fd.as_fd().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
      return Ok(true);
    }
    let err = SysError::last("flock");
    match err.errno {
      Errno::EINTR => continue,
      Errno::EWOULDBLOCK => return Ok(false),
      _ => return Err(err),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_second_open_file_waits_for_the_first_lock_and_gets_it_once_closed() {
    let dir = std::env::temp_dir();
    let first = std::fs::File::open(&dir).unwrap();
    let second = std::fs::File::open(&dir).unwrap();
    assert!(try_lock_exclusive(&first).unwrap());
    assert!(!try_lock_exclusive(&second).unwrap());
    drop(first);
    assert!(try_lock_exclusive(&second).unwrap());
  }
}
