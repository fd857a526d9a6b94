//! Small operations on descriptors the package owns or is handed.

use std::os::fd::OwnedFd;

use crate::error::SysResult;
use crate::platform;

pub use crate::fcntl::{dup_cloexec, is_cloexec, set_cloexec, set_nonblocking};

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
  platform::pipe()
}
