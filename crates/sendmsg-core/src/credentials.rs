//! Who is at the other end of a connected AF_UNIX socket.
//!
//! Linux answers with `SO_PEERCRED` (the peer's pid, uid and gid when it connected). Darwin has
//! `getpeereid` for the uid and gid and `LOCAL_PEERPID` for the pid. Both are the kernel's word,
//! not the peer's claim, which is what makes them fit for access checks.

use std::os::fd::AsFd;

use crate::error::SysResult;
use crate::platform;

/// A process's identity as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
  pub pid: i32,
  pub uid: u32,
  pub gid: u32,
}

/// The credentials of the peer of a connected AF_UNIX socket.
pub fn peer_credentials(fd: impl AsFd) -> SysResult<Credentials> {
  let (pid, uid, gid) = platform::peer_credentials(fd.as_fd())?;
  Ok(Credentials { pid, uid, gid })
}

/// Asks the kernel to attach the sender's credentials (SCM_CREDENTIALS) to every message this
/// socket receives (`SO_PASSCRED`, Linux). Elsewhere there is no such option: `ENOPROTOOPT`.
pub fn set_pass_credentials(fd: impl AsFd, on: bool) -> SysResult<()> {
  platform::set_pass_credentials(fd.as_fd(), on)
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
