//! The clock systemd reads for its own timestamps (`CLOCK_MONOTONIC`), for notifications that
//! carry a time it compares against its own, such as `MONOTONIC_USEC=`.

use nix::time::{clock_gettime, ClockId};

use crate::error::{SysResult, Syscall};

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `now(CLOCK_MONOTONIC)` gives it.
pub fn monotonic_usec() -> SysResult<u64> {
  let now = clock_gettime(ClockId::CLOCK_MONOTONIC).syscall("clock_gettime")?;
  // Both fields are non-negative for this clock.
  Ok(now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn monotonic_usec_never_goes_back() {
    let first = monotonic_usec().unwrap();
    let second = monotonic_usec().unwrap();
    assert!(first > 0 && second >= first);
  }
}
