//! Everything that differs between Linux and Darwin around one send or receive, in one place.
//!
//! Linux: `MSG_NOSIGNAL` on sends; `MSG_CMSG_CLOEXEC` on receives, whose echo in `msg_flags`
//! (0x40000000) is removed before the flags reach the caller.
//! Darwin (and other BSDs): no `MSG_NOSIGNAL`, so the socket gets `SO_NOSIGPIPE` before a send;
//! no `MSG_CMSG_CLOEXEC`, so every received descriptor gets `FD_CLOEXEC` right after `recvmsg`
//! (`F_SETFD`, never `F_SETFL`, which would clobber `O_NONBLOCK`).

use std::os::fd::{OwnedFd, RawFd};

use crate::error::SysResult;
use crate::message::ReceivedCmsg;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
  use super::*;

  pub const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

  /// Stream sends at most this long go all or nothing: Linux cuts a unix stream send into chunks
  /// of `SO_SNDBUF / 2 - 64` bytes (at least 2240, as SO_SNDBUF cannot go below 4608), and a
  /// chunk that cannot be queued fails whole with EAGAIN when nothing was sent yet.
  pub const ATOMIC_STREAM_SEND: usize = 2048;
  pub const RECV_FLAGS: i32 = libc::MSG_CMSG_CLOEXEC;

  pub fn prepare_send(_socket: RawFd) -> SysResult<()> {
    Ok(())
  }

  pub fn after_receive(_control: &[ReceivedCmsg]) -> SysResult<()> {
    Ok(())
  }

  pub fn set_received_cloexec(_fd: &OwnedFd) -> SysResult<()> {
    Ok(())
  }

  pub fn clean_flags(flags: i32) -> i32 {
    flags & !libc::MSG_CMSG_CLOEXEC
  }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
  use super::*;
  use crate::error::SysError;

  pub const SEND_FLAGS: i32 = 0;

  /// Darwin's `sosend` may queue part of a stream send whenever some room is free: no length is
  /// known to go all or nothing.
  pub const ATOMIC_STREAM_SEND: usize = 0;
  pub const RECV_FLAGS: i32 = 0;

  /// nix has no `SO_NOSIGPIPE` option, hence the direct call.
  pub fn prepare_send(socket: RawFd) -> SysResult<()> {
    let one: libc::c_int = 1;
    // SAFETY: a c_int option read from a live local.
    let rc = unsafe {
      libc::setsockopt(
        socket,
        libc::SOL_SOCKET,
        libc::SO_NOSIGPIPE,
        (&one as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
      )
    };
    if rc == -1 {
      return Err(SysError::last("setsockopt"));
    }
    Ok(())
  }

  pub fn after_receive(control: &[ReceivedCmsg]) -> SysResult<()> {
    for message in control {
      if let ReceivedCmsg::Fds { fds, .. } = message {
        for owned in fds {
          set_received_cloexec(owned)?;
        }
      }
    }
    Ok(())
  }

  pub fn set_received_cloexec(fd: &OwnedFd) -> SysResult<()> {
    crate::fd::set_cloexec(fd)
  }

  pub fn clean_flags(flags: i32) -> i32 {
    flags
  }
}

pub(crate) use imp::*;
