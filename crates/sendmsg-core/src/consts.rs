//! Values the libc crate does not (yet) name on every target.

/// `SCM_PIDFD` (Linux 6.5+): a pidfd of the sender, installed like an SCM_RIGHTS descriptor.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const SCM_PIDFD: i32 = 0x04;
