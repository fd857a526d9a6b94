//! Values the libc crate does not (yet) name on every target.

/// `SCM_PIDFD` (Linux 6.5+): a pidfd of the sender, installed like an SCM_RIGHTS descriptor.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const SCM_PIDFD: i32 = 0x04;

/// `SO_PASSRIGHTS` (Linux 6.16+): off, the socket refuses SCM_RIGHTS (the sender gets EPERM).
/// libc names it only for sparc (0x5c); 83 is asm-generic's value, which x86, arm, riscv and every
/// other target the package builds for use (parisc and sparc differ, and it builds for neither).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const SO_PASSRIGHTS: i32 = 83;
