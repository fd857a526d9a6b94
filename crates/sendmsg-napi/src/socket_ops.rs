//! Creating, binding, listening on, connecting and describing AF_UNIX sockets, for the event-loop
//! layer (`lib/socket.ts`, `lib/server.ts`). Addresses arrive as bytes: a path, or an abstract
//! name after a NUL byte (Linux).

use std::os::fd::{BorrowedFd, IntoRawFd};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use nix::errno::Errno;
use sendmsg_core::socket::{self, SocketKind};
use sendmsg_core::SysError;

use crate::errors;

pub(crate) fn kind_of(env: &Env, sock_type: i32) -> Result<SocketKind> {
  SocketKind::from_raw(sock_type).ok_or_else(|| {
    errors::throw_type_error(env, "ERR_INVALID_ARG_VALUE", "unsupported socket type")
  })
}

/// SAFETY: the caller's descriptor stays open for the duration of the call.
pub(crate) fn borrow(fd: i32) -> BorrowedFd<'static> {
  unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A new non-blocking, close-on-exec AF_UNIX socket.
#[napi]
pub fn unix_socket(env: Env, sock_type: i32) -> Result<i32> {
  let kind = kind_of(&env, sock_type)?;
  socket::unix_socket(kind, true)
    .map(IntoRawFd::into_raw_fd)
    .map_err(|err| errors::throw_sys(&env, err))
}

#[napi]
pub fn bind_unix(env: Env, fd: i32, path: &[u8]) -> Result<()> {
  let address = socket::unix_address(path).map_err(|err| errors::throw_sys(&env, err))?;
  socket::bind(fd, &address).map_err(|err| errors::throw_sys(&env, err))
}

#[napi]
pub fn listen_unix(env: Env, fd: i32, backlog: i32) -> Result<()> {
  socket::listen(borrow(fd), backlog).map_err(|err| errors::throw_sys(&env, err))
}

/// Connects; `true` when connected, `false` when in progress (wait until writable, then
/// `takeSocketError`).
#[napi]
pub fn connect_unix(env: Env, fd: i32, path: &[u8]) -> Result<bool> {
  let address = socket::unix_address(path)
    .map_err(|err| errors::throw_sys(&env, SysError::new("connect", err.errno)))?;
  match socket::connect(fd, &address) {
    Ok(()) => Ok(true),
    Err(err) if err.errno == Errno::EINPROGRESS => Ok(false),
    Err(err) => Err(errors::throw_sys(&env, err)),
  }
}

/// Once a non-blocking connect's socket is writable: throws how the connect failed, if it did
/// (the socket's pending error, `SO_ERROR`).
#[napi]
pub fn finish_connect(env: Env, fd: i32) -> Result<()> {
  let errno = socket::take_error(borrow(fd)).map_err(|err| errors::throw_sys(&env, err))?;
  if errno == 0 {
    return Ok(());
  }
  Err(errors::throw_sys(
    &env,
    SysError::new("connect", Errno::from_raw(errno)),
  ))
}

/// What a descriptor is, for adopting it or making a Node object of it.
#[napi(object)]
pub struct SocketDescription {
  pub family: i32,
  #[napi(js_name = "type")]
  pub sock_type: i32,
  pub listening: bool,
  /// Whether it has a peer (a connected stream, or a datagram socket with a default peer).
  pub connected: bool,
  /// Whether it has a local address (an IP socket with a port, a named AF_UNIX socket).
  pub bound: bool,
}

#[napi]
pub fn describe_socket(env: Env, fd: i32) -> Result<SocketDescription> {
  let family = socket::family(fd).map_err(|err| errors::throw_sys(&env, err))?;
  let sock_type = socket::raw_type(borrow(fd)).map_err(|err| errors::throw_sys(&env, err))?;
  let listening = match SocketKind::from_raw(sock_type) {
    Some(kind) if kind.is_connection_oriented() => {
      socket::is_listening(borrow(fd)).map_err(|err| errors::throw_sys(&env, err))?
    }
    _ => false,
  };
  let connected =
    !listening && socket::is_connected(fd).map_err(|err| errors::throw_sys(&env, err))?;
  let bound = socket::is_bound(fd).map_err(|err| errors::throw_sys(&env, err))?;
  Ok(SocketDescription {
    family,
    sock_type,
    listening,
    connected,
    bound,
  })
}

/// `CLOCK_MONOTONIC` in microseconds (exact as a number for 285 years of uptime).
#[napi]
pub fn monotonic_usec(env: Env) -> Result<f64> {
  sendmsg_core::clock::monotonic_usec()
    .map(|usec| usec as f64)
    .map_err(|err| errors::throw_sys(&env, err))
}

/// The socket's own address as bytes; null when unnamed.
#[napi]
pub fn local_address(env: Env, fd: i32) -> Result<Option<Buffer>> {
  let address = socket::local_address(fd).map_err(|err| errors::throw_sys(&env, err))?;
  Ok(socket::address_bytes(&address).map(Buffer::from))
}

/// The connected peer's address as bytes; null when unnamed.
#[napi]
pub fn peer_address(env: Env, fd: i32) -> Result<Option<Buffer>> {
  let address = socket::peer_address(fd).map_err(|err| errors::throw_sys(&env, err))?;
  Ok(socket::address_bytes(&address).map(Buffer::from))
}

/// Closes a descriptor. EBADF is thrown; EINTR is not (the descriptor is gone either way).
#[napi]
pub fn close_fd(env: Env, fd: i32) -> Result<()> {
  sendmsg_core::fd::close(fd).map_err(|err| errors::throw_sys(&env, err))
}

/// The kernel's word on who the peer of a connected AF_UNIX socket is.
#[napi(object)]
pub struct PeerCredentials {
  pub pid: i32,
  pub uid: u32,
  pub gid: u32,
}

#[napi]
pub fn peer_credentials(env: Env, fd: i32) -> Result<PeerCredentials> {
  let credentials = sendmsg_core::credentials::peer_credentials(borrow(fd))
    .map_err(|err| errors::throw_sys(&env, err))?;
  Ok(PeerCredentials {
    pid: credentials.pid,
    uid: credentials.uid,
    gid: credentials.gid,
  })
}

/// `SO_PASSCRED` (Linux): the kernel attaches the sender's credentials to every message received.
#[napi]
pub fn set_pass_credentials(env: Env, fd: i32, on: bool) -> Result<()> {
  sendmsg_core::credentials::set_pass_credentials(borrow(fd), on)
    .map_err(|err| errors::throw_sys(&env, err))
}

/// `SO_PEERPIDFD` (Linux 6.5+): a pidfd of the peer, held in a set of its own as a kept
/// ReceivedFd's is (the set's id): one owner and closer for it, as for every received descriptor.
#[napi]
pub fn peer_pidfd(env: Env, fd: i32) -> Result<f64> {
  let pidfd = sendmsg_core::credentials::peer_pidfd(borrow(fd))
    .map_err(|err| errors::throw_feature(&env, err))?;
  crate::event_loop::hold_own(&env, pidfd)
}

/// `SO_PASSPIDFD` (Linux 6.5+): the kernel attaches a pidfd of the sender to every message.
#[napi]
pub fn set_pass_pidfd(env: Env, fd: i32, on: bool) -> Result<()> {
  sendmsg_core::credentials::set_pass_pidfd(borrow(fd), on)
    .map_err(|err| errors::throw_feature(&env, err))
}

/// `SO_PASSRIGHTS` (Linux 6.16+): off, senders of descriptors to this socket get EPERM.
#[napi]
pub fn set_pass_rights(env: Env, fd: i32, on: bool) -> Result<()> {
  socket::set_pass_rights(borrow(fd), on).map_err(|err| errors::throw_feature(&env, err))
}

/// Whether the socket accepts descriptors (`SO_PASSRIGHTS`, Linux 6.16+).
#[napi]
pub fn pass_rights(env: Env, fd: i32) -> Result<bool> {
  socket::pass_rights(borrow(fd)).map_err(|err| errors::throw_feature(&env, err))
}

/// The pid a pidfd names: -1 once the process exited, 0 when outside this pid namespace.
#[napi]
pub fn pidfd_pid(env: Env, fd: i32) -> Result<i32> {
  sendmsg_core::credentials::pidfd_pid(borrow(fd)).map_err(|err| errors::throw_sys(&env, err))
}

/// Sets `FD_CLOEXEC` on a descriptor this process inherited (systemd's listening sockets).
#[napi]
pub fn set_cloexec(env: Env, fd: i32) -> Result<()> {
  sendmsg_core::fd::set_cloexec(borrow(fd)).map_err(|err| errors::throw_sys(&env, err))
}
