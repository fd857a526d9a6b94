//! Who is at the other end of a connected AF_UNIX socket.
//!
//! Linux answers with `SO_PEERCRED` (the peer's pid, uid and gid when it connected). Darwin has
//! `getpeereid` for the uid and gid and `LOCAL_PEERPID` for the pid. Both are the kernel's word,
//! not the peer's claim, which is what makes them fit for access checks.

use std::os::fd::AsFd;

use crate::error::{SysResult, Syscall};

/// A process's identity as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
  pub pid: i32,
  pub uid: u32,
  pub gid: u32,
}

/// The credentials of the peer of a connected AF_UNIX socket.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_credentials(fd: impl AsFd) -> SysResult<Credentials> {
  use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
  let credentials = getsockopt(&fd.as_fd(), PeerCredentials).syscall("getsockopt")?;
  Ok(Credentials {
    pid: credentials.pid(),
    uid: credentials.uid(),
    gid: credentials.gid(),
  })
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
pub fn peer_credentials(fd: impl AsFd) -> SysResult<Credentials> {
  use nix::sys::socket::{getsockopt, sockopt::LocalPeerPid};
  let fd = fd.as_fd();
  let (uid, gid) = nix::unistd::getpeereid(fd).syscall("getpeereid")?;
  let pid = getsockopt(&fd, LocalPeerPid).syscall("getsockopt")?;
  Ok(Credentials {
    pid,
    uid: uid.as_raw(),
    gid: gid.as_raw(),
  })
}

/// Asks the kernel to attach the sender's credentials (SCM_CREDENTIALS) to every message this
/// socket receives (`SO_PASSCRED`, Linux). Elsewhere there is no such option: `ENOPROTOOPT`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn set_pass_credentials(fd: impl AsFd, on: bool) -> SysResult<()> {
  use nix::sys::socket::{setsockopt, sockopt::PassCred};
  setsockopt(&fd.as_fd(), PassCred, &on).syscall("setsockopt")
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn set_pass_credentials(_fd: impl AsFd, _on: bool) -> SysResult<()> {
  Err(crate::SysError::new(
    "setsockopt",
    nix::errno::Errno::ENOPROTOOPT,
  ))
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::socket::{socketpair, SocketKind};

  #[test]
  fn the_peer_of_a_socketpair_is_this_process() {
    let (a, _b) = socketpair(SocketKind::Stream, false).unwrap();
    let credentials = peer_credentials(&a).unwrap();
    assert_eq!(credentials.pid, std::process::id() as i32);
    assert_eq!(credentials.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(credentials.gid, nix::unistd::getegid().as_raw());
  }
}
