//! Creating AF_UNIX sockets and asking a socket what it is.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sys::socket::{
  self, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage, UnixAddr,
};

use crate::error::{retry_interrupted, Feature, FeatureError, SysResult, Syscall};
use crate::platform;

/// The three AF_UNIX socket types the package speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
  Stream,
  Datagram,
  SeqPacket,
}

/// The one table of the kinds: the `SO_TYPE` number, nix's type, and the name the JavaScript
/// layer uses for it.
const KINDS: [(SocketKind, i32, SockType, &str); 3] = [
  (
    SocketKind::Stream,
    libc::SOCK_STREAM,
    SockType::Stream,
    "stream",
  ),
  (
    SocketKind::Datagram,
    libc::SOCK_DGRAM,
    SockType::Datagram,
    "datagram",
  ),
  (
    SocketKind::SeqPacket,
    libc::SOCK_SEQPACKET,
    SockType::SeqPacket,
    "seqpacket",
  ),
];

impl SocketKind {
  pub const ALL: [SocketKind; 3] = [Self::Stream, Self::Datagram, Self::SeqPacket];

  fn row(self) -> &'static (SocketKind, i32, SockType, &'static str) {
    KINDS
      .iter()
      .find(|row| row.0 == self)
      .expect("every kind has a row")
  }

  /// From an `SO_TYPE` value; `None` for types the package does not handle.
  pub fn from_raw(raw: i32) -> Option<Self> {
    KINDS.iter().find(|row| row.1 == raw).map(|row| row.0)
  }

  /// The `SO_TYPE` value (`SOCK_STREAM`, ...).
  pub fn raw(self) -> i32 {
    self.row().1
  }

  pub fn sock_type(self) -> SockType {
    self.row().2
  }

  /// `"stream"`, `"datagram"` or `"seqpacket"`.
  pub fn name(self) -> &'static str {
    self.row().3
  }

  pub fn from_name(name: &str) -> Option<Self> {
    KINDS.iter().find(|row| row.3 == name).map(|row| row.0)
  }

  /// Whether sockets of this kind listen, accept and have one peer that can shut down.
  pub fn is_connection_oriented(self) -> bool {
    self != Self::Datagram
  }
}

/// A connected pair of AF_UNIX sockets, both close-on-exec.
pub fn socketpair(kind: SocketKind, nonblocking: bool) -> SysResult<(OwnedFd, OwnedFd)> {
  let (a, b) = socket::socketpair(
    AddressFamily::Unix,
    kind.sock_type(),
    None,
    platform::new_socket_flags(nonblocking),
  )
  .syscall("socketpair")?;
  platform::finish_new_socket(&a, nonblocking)?;
  platform::finish_new_socket(&b, nonblocking)?;
  Ok((a, b))
}

/// A new, unbound AF_UNIX socket, close-on-exec.
pub fn unix_socket(kind: SocketKind, nonblocking: bool) -> SysResult<OwnedFd> {
  let fd = socket::socket(
    AddressFamily::Unix,
    kind.sock_type(),
    platform::new_socket_flags(nonblocking),
    None,
  )
  .syscall("socket")?;
  platform::finish_new_socket(&fd, nonblocking)?;
  Ok(fd)
}

/// The address family of a socket (`AF_UNIX`, `AF_INET`, ...), from `getsockname` as Twisted does.
pub fn family(fd: RawFd) -> SysResult<i32> {
  let address: SockaddrStorage = socket::getsockname(fd).syscall("getsockname")?;
  // SAFETY: as_ptr points at the storage, whose family field the kernel filled.
  Ok(unsafe { (*address.as_ptr()).sa_family } as i32)
}

/// The socket type (`SOCK_STREAM`, ...), from `SO_TYPE`.
pub fn raw_type(fd: impl AsFd) -> SysResult<i32> {
  socket::getsockopt(&fd.as_fd(), sockopt::SockType)
    .map(|ty| ty as i32)
    .syscall("getsockopt")
}

/// The kind of a socket, from `SO_TYPE`; `None` for a type the package does not handle.
pub fn kind(fd: impl AsFd) -> SysResult<Option<SocketKind>> {
  raw_type(fd).map(SocketKind::from_raw)
}

/// An AF_UNIX address: a filesystem path, or on Linux an abstract name written with a leading
/// NUL byte (Node's convention). Elsewhere a leading NUL is `EAFNOSUPPORT`, there being no
/// abstract namespace.
pub fn unix_address(path: &[u8]) -> SysResult<UnixAddr> {
  match path.split_first() {
    Some((0, name)) => platform::abstract_address(name),
    Some(_) => UnixAddr::new(path).syscall("bind"),
    None => Err(crate::SysError::new("bind", nix::errno::Errno::EINVAL)),
  }
}

/// The bytes of an AF_UNIX address as [`unix_address`] reads them; `None` for an unnamed socket.
pub fn address_bytes(address: &SockaddrStorage) -> Option<Vec<u8>> {
  let unix = address.as_unix_addr()?;
  if let Some(path) = unix.path() {
    use std::os::unix::ffi::OsStrExt;
    return Some(path.as_os_str().as_bytes().to_vec());
  }
  platform::abstract_name(unix).map(|name| {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(name);
    bytes
  })
}

pub fn bind(fd: RawFd, address: &UnixAddr) -> SysResult<()> {
  socket::bind(fd, address).syscall("bind")
}

pub fn listen(fd: impl AsFd, backlog: i32) -> SysResult<()> {
  let backlog = socket::Backlog::new(backlog).unwrap_or(socket::Backlog::MAXCONN);
  socket::listen(&fd.as_fd(), backlog).syscall("listen")
}

/// Starts connecting. On a non-blocking socket `EINPROGRESS` (and, for a full Linux backlog,
/// `EAGAIN`) are returned as errors for the caller to wait on or report.
pub fn connect(fd: RawFd, address: &UnixAddr) -> SysResult<()> {
  socket::connect(fd, address).syscall("connect")
}

/// Accepts one pending connection without blocking: close-on-exec and non-blocking. `None` when
/// there is none.
pub fn accept(fd: RawFd) -> SysResult<Option<OwnedFd>> {
  loop {
    match platform::accept(fd) {
      Ok(accepted) => return Ok(Some(accepted)),
      Err(errno) => match errno {
        nix::errno::Errno::EINTR => continue,
        // A connection that went away before we took it: try the next one.
        nix::errno::Errno::ECONNABORTED => continue,
        nix::errno::Errno::EAGAIN => return Ok(None),
        errno => return Err(crate::SysError::new("accept", errno)),
      },
    }
  }
}

/// Ends the sending direction (`shutdown(SHUT_WR)`): the peer reads end-of-file after our data.
pub fn shutdown_write(fd: RawFd) -> SysResult<()> {
  match socket::shutdown(fd, socket::Shutdown::Write) {
    // The peer is already gone: nothing left to end.
    Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
    Err(errno) => Err(crate::SysError::new("shutdown", errno)),
  }
}

/// Whether the peer has shut down its sending side: a zero-timeout `poll` for `POLLRDHUP` and
/// `POLLHUP` on Linux, `POLLHUP` elsewhere. What tells a seqpacket end (zero bytes, no control
/// data) from a legal empty message. A failed poll answers `false`.
pub fn peer_has_shut_down(fd: RawFd) -> bool {
  let events = platform::PEER_SHUT_DOWN_EVENTS;
  let mut pollfd = libc::pollfd {
    fd,
    events,
    revents: 0,
  };
  // SAFETY: one pollfd, no waiting.
  let ready = retry_interrupted("poll", || unsafe { libc::poll(&mut pollfd, 1, 0) } as isize);
  matches!(ready, Ok(n) if n > 0) && pollfd.revents & events != 0
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it.
pub fn take_error(fd: impl AsFd) -> SysResult<i32> {
  socket::getsockopt(&fd.as_fd(), sockopt::SocketError).syscall("getsockopt")
}

/// Whether the socket is listening (`SO_ACCEPTCONN`).
pub fn is_listening(fd: impl AsFd) -> SysResult<bool> {
  socket::getsockopt(&fd.as_fd(), sockopt::AcceptConn).syscall("getsockopt")
}

/// The local address of a socket.
pub fn local_address(fd: RawFd) -> SysResult<SockaddrStorage> {
  socket::getsockname(fd).syscall("getsockname")
}

/// The address of the connected peer.
pub fn peer_address(fd: RawFd) -> SysResult<SockaddrStorage> {
  socket::getpeername(fd).syscall("getpeername")
}

/// Whether the socket has a local address: a port for IPv4 and IPv6 (an unbound UDP socket
/// reports port 0, the wildcard address), a path or abstract name for AF_UNIX. Other families
/// count as bound.
pub fn is_bound(fd: RawFd) -> SysResult<bool> {
  let address = local_address(fd)?;
  let raw = address.as_ptr();
  // SAFETY: the storage is a whole sockaddr_storage, which holds either struct, and its family
  // field says which one the kernel wrote. (Only the port is read: zero in any byte order.)
  Ok(match unsafe { (*raw).sa_family } as i32 {
    libc::AF_INET => (unsafe { (*raw.cast::<libc::sockaddr_in>()).sin_port }) != 0,
    libc::AF_INET6 => (unsafe { (*raw.cast::<libc::sockaddr_in6>()).sin6_port }) != 0,
    libc::AF_UNIX => address_bytes(&address).is_some(),
    _ => true,
  })
}

/// Whether the socket has a peer (`getpeername` succeeds).
pub fn is_connected(fd: RawFd) -> SysResult<bool> {
  match socket::getpeername::<SockaddrStorage>(fd) {
    Ok(_) => Ok(true),
    Err(nix::errno::Errno::ENOTCONN) => Ok(false),
    Err(errno) => Err(crate::SysError::new("getpeername", errno)),
  }
}

/// Whether the socket accepts descriptors (`SO_PASSRIGHTS`, Linux 6.16+; on by default). Off,
/// every SCM_RIGHTS sent to it fails in the sender's `sendmsg` with EPERM and nothing arrives; a
/// listening socket's setting is what the connections it accepts start with (measured on 6.18,
/// connections still in the backlog included). Before 6.16, or off Linux: ENOPROTOOPT, as
/// [`FeatureError::Unsupported`].
pub fn set_pass_rights(fd: impl AsFd, on: bool) -> Result<(), FeatureError> {
  platform::set_pass_rights(fd.as_fd(), on)
    .map_err(|err| FeatureError::of(Feature::PassRights, err))
}

/// The socket's `SO_PASSRIGHTS` (see [`set_pass_rights`]).
pub fn pass_rights(fd: impl AsFd) -> Result<bool, FeatureError> {
  platform::pass_rights(fd.as_fd()).map_err(|err| FeatureError::of(Feature::PassRights, err))
}
