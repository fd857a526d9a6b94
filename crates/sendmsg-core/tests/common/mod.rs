//! What the integration tests that count descriptors share (`mod common;` in each).
//!
//! Every test that counts this process's open descriptors holds `lock()`, so that its counts are
//! not disturbed by another test's sockets in a parallel thread of the same test binary.

use std::sync::{Mutex, MutexGuard};

static FD_LOCK: Mutex<()> = Mutex::new(());

/// One descriptor-counting test at a time; a test that panicked while holding it does not poison
/// the others.
pub fn lock() -> MutexGuard<'static, ()> {
  FD_LOCK
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The number of descriptors open in this process now.
pub fn open_fds() -> usize {
  let dir = if cfg!(target_os = "linux") {
    "/proc/self/fd"
  } else {
    "/dev/fd"
  };
  std::fs::read_dir(dir).unwrap().count()
}
