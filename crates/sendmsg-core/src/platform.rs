//! Everything that differs between Linux and Darwin, in one place: the rest of the crate has no
//! `cfg(target_os)` of its own, and calls what this module exports under the same names on both.
//!
//! Linux: `MSG_NOSIGNAL` on sends; `MSG_CMSG_CLOEXEC` on receives, whose echo in `msg_flags`
//! (0x40000000) is removed before the flags reach the caller; descriptors created close-on-exec
//! and non-blocking atomically (`SOCK_CLOEXEC`, `accept4`, `pipe2`); `recvmmsg`/`sendmmsg`;
//! `POLLRDHUP`; `SO_PEERCRED`, `SO_PASSCRED`, `SCM_PIDFD`, `SO_PEERPIDFD`, `SO_PASSPIDFD`,
//! `SO_PASSRIGHTS` (the last three answer ENOPROTOOPT on kernels too old for them); abstract
//! socket names.
//! Darwin (and other BSDs): no `MSG_NOSIGNAL`, so the socket gets `SO_NOSIGPIPE` before a send;
//! no `MSG_CMSG_CLOEXEC`, so every received descriptor gets `FD_CLOEXEC` right after `recvmsg`
//! (`F_SETFD`, never `F_SETFL`, which would clobber `O_NONBLOCK`); flags set right after a
//! descriptor is created; a loop of `recvmsg`/`sendmsg` for many messages; `POLLHUP` only;
//! `getpeereid` and `LOCAL_PEERPID`; no pidfds, and no `SO_PASSRIGHTS` (ENOPROTOOPT, as an old
//! Linux answers); no abstract names.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{SockFlag, UnixAddr};

use crate::error::{SysResult, Syscall};
use crate::msghdr::MessageHeader;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
  use super::*;
  use crate::error::retry_interrupted;

  pub const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;
  pub const RECV_FLAGS: i32 = libc::MSG_CMSG_CLOEXEC;

  /// Stream sends at most this long go all or nothing: Linux cuts a unix stream send into chunks
  /// of `SO_SNDBUF / 2 - 64` bytes (at least 2240, as SO_SNDBUF cannot go below 4608), and a
  /// chunk that cannot be queued fails whole with EAGAIN when nothing was sent yet.
  pub const ATOMIC_STREAM_SEND: usize = 2048;

  /// `POLLRDHUP` says the peer shut down its sending side, even while its last data is unread.
  pub const PEER_SHUT_DOWN_EVENTS: libc::c_short = libc::POLLRDHUP | libc::POLLHUP;

  // The `*mmsg` calls take our headers as their `mmsghdr`s.
  const _: () = assert!(
    std::mem::size_of::<MessageHeader>() == std::mem::size_of::<libc::mmsghdr>()
      && std::mem::align_of::<MessageHeader>() == std::mem::align_of::<libc::mmsghdr>()
      && std::mem::offset_of!(MessageHeader, len) == std::mem::offset_of!(libc::mmsghdr, msg_len)
  );

  pub fn prepare_send(_socket: RawFd) -> SysResult<()> {
    Ok(())
  }

  /// Nothing to do: `MSG_CMSG_CLOEXEC` made it so.
  pub fn make_received_cloexec(_fd: &OwnedFd) -> SysResult<()> {
    Ok(())
  }

  pub fn clean_flags(flags: i32) -> i32 {
    flags & !libc::MSG_CMSG_CLOEXEC
  }

  /// SCM_PIDFD (6.5+) carries a pidfd the kernel installed, to be owned like SCM_RIGHTS.
  pub fn is_pidfd(kind: i32) -> bool {
    kind == crate::consts::SCM_PIDFD
  }

  pub fn new_socket_flags(nonblocking: bool) -> SockFlag {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
      flags |= SockFlag::SOCK_NONBLOCK;
    }
    flags
  }

  /// Nothing to do: [`new_socket_flags`] set everything at creation.
  pub fn finish_new_socket(_fd: &OwnedFd, _nonblocking: bool) -> SysResult<()> {
    Ok(())
  }

  /// One pending connection, close-on-exec and non-blocking from the start.
  pub fn accept(listener: RawFd) -> nix::Result<OwnedFd> {
    use nix::sys::socket::accept4;
    let accepted = accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)?;
    // SAFETY: accept4 returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(accepted) })
  }

  pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).syscall("pipe2")
  }

  pub fn abstract_address(name: &[u8]) -> SysResult<UnixAddr> {
    UnixAddr::new_abstract(name).syscall("bind")
  }

  pub fn abstract_name(address: &UnixAddr) -> Option<&[u8]> {
    address.as_abstract()
  }

  /// `(pid, uid, gid)` from `SO_PEERCRED`.
  pub fn peer_credentials(fd: BorrowedFd<'_>) -> SysResult<(i32, u32, u32)> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let credentials = getsockopt(&fd, PeerCredentials).syscall("getsockopt")?;
    Ok((credentials.pid(), credentials.uid(), credentials.gid()))
  }

  pub fn set_pass_credentials(fd: BorrowedFd<'_>, on: bool) -> SysResult<()> {
    use nix::sys::socket::{setsockopt, sockopt::PassCred};
    setsockopt(&fd, PassCred, &on).syscall("setsockopt")
  }

  /// `SO_PEERPIDFD` (6.5+): a pidfd of the process that connected, close-on-exec as every pidfd.
  pub fn peer_pidfd(fd: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    use nix::sys::socket::{getsockopt, sockopt::PeerPidfd};
    getsockopt(&fd, PeerPidfd).syscall("getsockopt")
  }

  /// `SO_PASSPIDFD` (6.5+): a pidfd of the sender (SCM_PIDFD) with every message received.
  pub fn set_pass_pidfd(fd: BorrowedFd<'_>, on: bool) -> SysResult<()> {
    set_flag_option(fd, libc::SO_PASSPIDFD, on)
  }

  /// `SO_PASSRIGHTS` (6.16+): off, senders of SCM_RIGHTS to this socket get EPERM.
  pub fn set_pass_rights(fd: BorrowedFd<'_>, on: bool) -> SysResult<()> {
    set_flag_option(fd, crate::consts::SO_PASSRIGHTS, on)
  }

  pub fn pass_rights(fd: BorrowedFd<'_>) -> SysResult<bool> {
    flag_option(fd, crate::consts::SO_PASSRIGHTS)
  }

  /// The pid a pidfd refers to, in this process's pid namespace, from the `Pid:` line of its
  /// `/proc/self/fdinfo` entry: -1 once the process has exited, 0 when it lives in a namespace this
  /// process cannot see. Not a pidfd (no such line): EBADF.
  pub fn pidfd_pid(fd: BorrowedFd<'_>) -> SysResult<i32> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let info = std::fs::read_to_string(path).map_err(|err| {
      let errno = err
        .raw_os_error()
        .map_or(nix::errno::Errno::EIO, nix::errno::Errno::from_raw);
      crate::SysError::new("open", errno)
    })?;
    info
      .lines()
      .find_map(|line| line.strip_prefix("Pid:"))
      .and_then(|pid| pid.trim().parse().ok())
      .ok_or(crate::SysError::new("read", nix::errno::Errno::EBADF))
  }

  /// An `int` socket option that is on or off, at `SOL_SOCKET` (nix names neither of these).
  fn set_flag_option(fd: BorrowedFd<'_>, name: libc::c_int, on: bool) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::from(on);
    // SAFETY: a c_int option read from a live local.
    let rc = unsafe {
      libc::setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        name,
        (&value as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
      )
    };
    if rc == -1 {
      return Err(crate::SysError::last("setsockopt"));
    }
    Ok(())
  }

  fn flag_option(fd: BorrowedFd<'_>, name: libc::c_int) -> SysResult<bool> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into a live local.
    let rc = unsafe {
      libc::getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        name,
        (&mut value as *mut libc::c_int).cast(),
        &mut len,
      )
    };
    if rc == -1 {
      return Err(crate::SysError::last("getsockopt"));
    }
    Ok(value != 0)
  }

  /// One `recvmmsg` into `headers`: how many messages arrived.
  pub fn recv_many(socket: RawFd, headers: &mut [MessageHeader], flags: i32) -> SysResult<usize> {
    // SAFETY: MessageHeader has mmsghdr's layout (asserted above); the headers' builder keeps
    // their buffers alive for the call.
    retry_interrupted("recvmmsg", || unsafe {
      libc::recvmmsg(
        socket,
        headers.as_mut_ptr().cast::<libc::mmsghdr>(),
        headers.len() as _,
        flags as _,
        std::ptr::null_mut(),
      ) as isize
    })
  }

  /// One `sendmmsg` of `headers`: how many messages went.
  pub fn send_many(socket: RawFd, headers: &mut [MessageHeader], flags: i32) -> SysResult<usize> {
    // SAFETY: as in `recv_many`.
    retry_interrupted("sendmmsg", || unsafe {
      libc::sendmmsg(
        socket,
        headers.as_mut_ptr().cast::<libc::mmsghdr>(),
        headers.len() as _,
        flags as _,
      ) as isize
    })
  }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
  use super::*;
  use crate::error::SysError;
  use crate::fcntl;

  pub const SEND_FLAGS: i32 = 0;
  pub const RECV_FLAGS: i32 = 0;

  /// Darwin's `sosend` may queue part of a stream send whenever some room is free: no length is
  /// known to go all or nothing.
  pub const ATOMIC_STREAM_SEND: usize = 0;

  /// No `POLLRDHUP`: only a peer that closed (or shut down both ways) shows.
  pub const PEER_SHUT_DOWN_EVENTS: libc::c_short = libc::POLLHUP;

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

  pub fn make_received_cloexec(fd: &OwnedFd) -> SysResult<()> {
    fcntl::set_cloexec(fd)
  }

  pub fn clean_flags(flags: i32) -> i32 {
    flags
  }

  pub fn is_pidfd(_kind: i32) -> bool {
    false
  }

  /// Nothing can be set at creation: see [`finish_new_socket`].
  pub fn new_socket_flags(_nonblocking: bool) -> SockFlag {
    SockFlag::empty()
  }

  pub fn finish_new_socket(fd: &OwnedFd, nonblocking: bool) -> SysResult<()> {
    fcntl::set_cloexec(fd)?;
    if nonblocking {
      fcntl::set_nonblocking(fd, true)?;
    }
    Ok(())
  }

  pub fn accept(listener: RawFd) -> nix::Result<OwnedFd> {
    let accepted = nix::sys::socket::accept(listener)?;
    // SAFETY: accept returned a new descriptor that we own.
    let accepted = unsafe { OwnedFd::from_raw_fd(accepted) };
    finish_new_socket(&accepted, true).map_err(|err| err.errno)?;
    Ok(accepted)
  }

  pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let ends = nix::unistd::pipe().syscall("pipe")?;
    fcntl::set_cloexec(&ends.0)?;
    fcntl::set_cloexec(&ends.1)?;
    Ok(ends)
  }

  /// There is no abstract namespace.
  pub fn abstract_address(_name: &[u8]) -> SysResult<UnixAddr> {
    Err(SysError::new("bind", nix::errno::Errno::EAFNOSUPPORT))
  }

  pub fn abstract_name(_address: &UnixAddr) -> Option<&[u8]> {
    None
  }

  /// `(pid, uid, gid)` from `getpeereid` and `LOCAL_PEERPID`.
  #[cfg(any(target_os = "macos", target_os = "ios"))]
  pub fn peer_credentials(fd: BorrowedFd<'_>) -> SysResult<(i32, u32, u32)> {
    use nix::sys::socket::{getsockopt, sockopt::LocalPeerPid};
    let (uid, gid) = nix::unistd::getpeereid(fd).syscall("getpeereid")?;
    let pid = getsockopt(&fd, LocalPeerPid).syscall("getsockopt")?;
    Ok((pid, uid.as_raw(), gid.as_raw()))
  }

  /// Other BSDs answer through `LOCAL_PEERCRED`, which nothing here reads yet.
  #[cfg(not(any(target_os = "macos", target_os = "ios")))]
  pub fn peer_credentials(_fd: BorrowedFd<'_>) -> SysResult<(i32, u32, u32)> {
    Err(SysError::new("getsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  /// No `SO_PASSCRED` outside Linux.
  pub fn set_pass_credentials(_fd: BorrowedFd<'_>, _on: bool) -> SysResult<()> {
    Err(SysError::new("setsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  /// No pidfds outside Linux: answered as a Linux older than 6.5 answers.
  pub fn peer_pidfd(_fd: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    Err(SysError::new("getsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  pub fn set_pass_pidfd(_fd: BorrowedFd<'_>, _on: bool) -> SysResult<()> {
    Err(SysError::new("setsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  /// No `SO_PASSRIGHTS` outside Linux 6.16+.
  pub fn set_pass_rights(_fd: BorrowedFd<'_>, _on: bool) -> SysResult<()> {
    Err(SysError::new("setsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  pub fn pass_rights(_fd: BorrowedFd<'_>) -> SysResult<bool> {
    Err(SysError::new("getsockopt", nix::errno::Errno::ENOPROTOOPT))
  }

  pub fn pidfd_pid(_fd: BorrowedFd<'_>) -> SysResult<i32> {
    Err(SysError::new("read", nix::errno::Errno::EBADF))
  }

  /// `recvmsg` into each header in turn, until one finds nothing (reported only if it was the
  /// first) or a stream ends (a zero-length read, after which nothing follows).
  pub fn recv_many(socket: RawFd, headers: &mut [MessageHeader], flags: i32) -> SysResult<usize> {
    let mut n = 0;
    while n < headers.len() {
      let len = match headers[n].recv(socket, flags) {
        Ok(len) => len,
        Err(_) if n > 0 => break,
        Err(err) => return Err(err),
      };
      headers[n].len = len as libc::c_uint;
      n += 1;
      if len == 0 {
        break;
      }
    }
    Ok(n)
  }

  /// `sendmsg` of each header in turn, until one fails (reported only if it was the first).
  pub fn send_many(socket: RawFd, headers: &mut [MessageHeader], flags: i32) -> SysResult<usize> {
    let mut n = 0;
    while n < headers.len() {
      match headers[n].send(socket, flags) {
        Ok(len) => headers[n].len = len as libc::c_uint,
        Err(_) if n > 0 => break,
        Err(err) => return Err(err),
      }
      n += 1;
    }
    Ok(n)
  }
}

pub(crate) use imp::*;
