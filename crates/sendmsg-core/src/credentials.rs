//! Who is at the other end of a connected AF_UNIX socket.
//!
//! Linux answers with `SO_PEERCRED` (the peer's pid, uid and gid when it connected). Darwin has
//! `getpeereid` for the uid and gid and `LOCAL_PEERPID` for the pid. Both are the kernel's word,
//! not the peer's claim, which is what makes them fit for access checks.
//!
//! A pid alone can name another process by the time it is used: the peer exits and its number is
//! given to someone else. Linux 6.5+ also answers with a pidfd (`SO_PEERPIDFD`, and `SCM_PIDFD`
//! with every message once `SO_PASSPIDFD` is on): a descriptor for that very process, which never
//! comes to name another one. What was learnt about the pid (from `/proc/<pid>`, say) is about the
//! peer if [`pidfd_pid`] still gives that pid afterwards.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Feature, FeatureError, SysResult};
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

/// A pidfd of the peer of a connected AF_UNIX socket (the process that connected, or made the
/// pair), close-on-exec. ENOPROTOOPT (before Linux 6.5, or not Linux) and EINVAL (before 6.18, a
/// peer that has exited) come back as [`FeatureError`]'s answers; a socket with no peer is ENODATA.
pub fn peer_pidfd(fd: impl AsFd) -> Result<OwnedFd, FeatureError> {
  platform::peer_pidfd(fd.as_fd()).map_err(|err| FeatureError::of(Feature::PeerPidfd, err))
}

/// Asks the kernel to attach a pidfd of the sender (SCM_PIDFD) to every message this socket
/// receives (`SO_PASSPIDFD`, Linux 6.5+).
pub fn set_pass_pidfd(fd: impl AsFd, on: bool) -> Result<(), FeatureError> {
  platform::set_pass_pidfd(fd.as_fd(), on).map_err(|err| FeatureError::of(Feature::PassPidfd, err))
}

/// The pid a pidfd refers to, as this process sees it: -1 once the process has exited, 0 when it
/// is in a pid namespace this process cannot see. EBADF for a descriptor that is not a pidfd.
pub fn pidfd_pid(pidfd: impl AsFd) -> SysResult<i32> {
  platform::pidfd_pid(pidfd.as_fd())
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

  #[test]
  fn the_peer_pidfd_of_a_socketpair_is_this_process_and_close_on_exec() {
    let (a, _b) = socketpair(SocketKind::Stream, false).unwrap();
    match peer_pidfd(&a) {
      Ok(pidfd) => {
        assert_eq!(pidfd_pid(&pidfd).unwrap(), std::process::id() as i32);
        assert!(crate::fd::is_cloexec(&pidfd).unwrap());
      }
      // An older kernel, or not Linux: nothing else to see.
      Err(FeatureError::Unsupported(..)) => eprintln!("SO_PEERPIDFD unsupported here: skipped"),
      Err(err) => panic!("{err}"),
    }
  }

  #[test]
  fn a_descriptor_that_is_not_a_pidfd_has_no_pid() {
    let (a, _b) = socketpair(SocketKind::Stream, false).unwrap();
    assert_eq!(pidfd_pid(&a).unwrap_err().errno, nix::errno::Errno::EBADF);
  }
}
