//! AF_INET/AF_INET6 datagram sockets, and the options that make the kernel attach metadata.

use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self as nix_socket, AddressFamily, SockType, SockaddrStorage};

use crate::error::{SysError, SysResult, Syscall};
use crate::platform as crate_platform;

pub use super::address::socket_addr;
use super::address::RawAddress;
use super::meta::Family;
use super::platform::{self, get_int, set_int};

/// A new UDP socket, close-on-exec (and non-blocking when asked).
pub fn udp_socket(family: Family, nonblocking: bool) -> SysResult<OwnedFd> {
  let address_family = match family {
    Family::V4 => AddressFamily::Inet,
    Family::V6 => AddressFamily::Inet6,
  };
  let fd = nix_socket::socket(
    address_family,
    SockType::Datagram,
    crate_platform::new_socket_flags(nonblocking),
    None,
  )
  .syscall("socket")?;
  crate_platform::finish_new_socket(&fd, nonblocking)?;
  Ok(fd)
}

/// The family of a UDP socket; EPROTOTYPE for a socket that is not IP datagrams (a descriptor
/// handed in by someone else is checked before anything is set on it).
pub fn family_of(fd: BorrowedFd<'_>) -> SysResult<Family> {
  let kind = crate::socket::raw_type(fd)?;
  let family = crate::socket::family(fd.as_raw_fd())?;
  match (kind, family) {
    (libc::SOCK_DGRAM, libc::AF_INET) => Ok(Family::V4),
    (libc::SOCK_DGRAM, libc::AF_INET6) => Ok(Family::V6),
    _ => Err(SysError::new("getsockopt", Errno::EPROTOTYPE)),
  }
}

/// An IPv4 address given to an IPv6 socket is reached through its mapped form.
pub fn for_family(address: SocketAddr, family: Family) -> SocketAddr {
  match (address, family) {
    (SocketAddr::V4(v4), Family::V6) => {
      SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
    }
    _ => address,
  }
}

pub fn bind(fd: RawFd, address: SocketAddr) -> SysResult<()> {
  let raw = RawAddress::new(address);
  // SAFETY: the address lives across the call, its length given.
  if unsafe { libc::bind(fd, raw.as_ptr(), raw.len()) } == -1 {
    return Err(SysError::last("bind"));
  }
  Ok(())
}

/// Fixes the peer: sends without a destination go there, and only its datagrams are received.
pub fn connect(fd: RawFd, address: SocketAddr) -> SysResult<()> {
  let raw = RawAddress::new(address);
  // SAFETY: as in `bind`.
  if unsafe { libc::connect(fd, raw.as_ptr(), raw.len()) } == -1 {
    return Err(SysError::last("connect"));
  }
  Ok(())
}

/// Forgets the peer (`connect` to `AF_UNSPEC`).
pub fn disconnect(fd: RawFd) -> SysResult<()> {
  // SAFETY: a zeroed sockaddr with family AF_UNSPEC, its length given.
  let mut address: libc::sockaddr = unsafe { std::mem::zeroed() };
  address.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
  // SAFETY: as above; the address lives across the call.
  let rc = unsafe {
    libc::connect(
      fd,
      &address,
      std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
    )
  };
  if rc == -1 {
    return Err(SysError::last("connect"));
  }
  Ok(())
}

pub fn local_address(fd: RawFd) -> SysResult<SocketAddr> {
  let address: SockaddrStorage = nix_socket::getsockname(fd).syscall("getsockname")?;
  socket_addr(&address).ok_or(SysError::new("getsockname", Errno::EAFNOSUPPORT))
}

/// The connected peer, or `None` when not connected.
pub fn peer_address(fd: RawFd) -> SysResult<Option<SocketAddr>> {
  match nix_socket::getpeername::<SockaddrStorage>(fd) {
    Ok(address) => Ok(socket_addr(&address)),
    Err(Errno::ENOTCONN) => Ok(None),
    Err(errno) => Err(SysError::new("getpeername", errno)),
  }
}

/// `IPV6_V6ONLY`: false makes an IPv6 socket dual-stack (the Linux default, not everywhere's).
pub fn set_v6_only(fd: RawFd, on: bool) -> SysResult<()> {
  set_int(
    fd,
    libc::IPPROTO_IPV6,
    libc::IPV6_V6ONLY,
    libc::c_int::from(on),
  )
  .syscall("setsockopt")
}

/// Which metadata to have the kernel attach to received datagrams.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceiveOptions {
  /// The TOS/traffic class, for ECN (IP_RECVTOS / IPV6_RECVTCLASS).
  pub ecn: bool,
  /// The local address and interface (IP_PKTINFO / IPV6_RECVPKTINFO).
  pub pktinfo: bool,
  /// The TTL / hop limit (IP_RECVTTL / IPV6_RECVHOPLIMIT).
  pub ttl: bool,
  /// The kernel's receive time (SO_TIMESTAMPNS).
  pub timestamps: bool,
  /// Coalesced receives (UDP_GRO).
  pub gro: bool,
  /// ICMP errors in the error queue (IP_RECVERR / IPV6_RECVERR).
  pub errors: bool,
}

/// What the kernel agreed to, of what was asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
  pub gro: bool,
  pub error_queue: bool,
}

/// Sets an IPv4 option, and on an IPv6 socket the IPv6 one; the IPv4 one is still set on an
/// IPv6 socket for its IPv4-mapped peers, where a v6-only socket may refuse it harmlessly.
fn set_both(fd: RawFd, family: Family, v4: i32, v6: i32) -> SysResult<()> {
  match family {
    Family::V4 => set_int(fd, libc::IPPROTO_IP, v4, 1).syscall("setsockopt"),
    Family::V6 => {
      set_int(fd, libc::IPPROTO_IPV6, v6, 1).syscall("setsockopt")?;
      let _ = set_int(fd, libc::IPPROTO_IP, v4, 1);
      Ok(())
    }
  }
}

/// Asks the kernel for the metadata in `options`. GRO and the error queue are best effort (a
/// kernel without them still works); the rest are errors when refused.
pub fn enable(fd: RawFd, family: Family, options: &ReceiveOptions) -> SysResult<Enabled> {
  if options.ecn {
    set_both(fd, family, libc::IP_RECVTOS, libc::IPV6_RECVTCLASS)?;
  }
  if options.pktinfo {
    set_both(
      fd,
      family,
      platform::IP_PKTINFO_OPTION,
      libc::IPV6_RECVPKTINFO,
    )?;
  }
  if options.ttl {
    set_both(fd, family, libc::IP_RECVTTL, libc::IPV6_RECVHOPLIMIT)?;
  }
  if options.timestamps {
    set_int(fd, libc::SOL_SOCKET, platform::TIMESTAMP_OPTION, 1).syscall("setsockopt")?;
  }
  Ok(Enabled {
    gro: options.gro && platform::enable_gro(fd, true),
    error_queue: options.errors
      && platform::HAS_ERROR_QUEUE
      && platform::enable_error_queue(fd, family == Family::V6).is_ok(),
  })
}

/// The socket's TOS byte (IPv4) or traffic class (IPv6), DSCP and ECN bits.
pub fn traffic_class(fd: RawFd, family: Family) -> SysResult<u8> {
  let value = match family {
    Family::V4 => get_int(fd, libc::IPPROTO_IP, libc::IP_TOS),
    Family::V6 => get_int(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
  }
  .syscall("getsockopt")?;
  Ok((value & 0xff) as u8)
}

/// Sets the TOS/traffic class of every datagram (and, on a dual-stack socket, the TOS of those to
/// IPv4 peers too).
pub fn set_traffic_class(fd: RawFd, family: Family, value: u8) -> SysResult<()> {
  let value = libc::c_int::from(value);
  match family {
    Family::V4 => set_int(fd, libc::IPPROTO_IP, libc::IP_TOS, value).syscall("setsockopt"),
    Family::V6 => {
      set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, value).syscall("setsockopt")?;
      let _ = set_int(fd, libc::IPPROTO_IP, libc::IP_TOS, value);
      Ok(())
    }
  }
}

/// Sets Don't Fragment on every datagram: a datagram too large for the path then fails (and an
/// ICMP "fragmentation needed" names the path's MTU) instead of being fragmented.
pub fn set_dont_fragment(fd: RawFd, family: Family) -> SysResult<()> {
  platform::set_dont_fragment(fd, family == Family::V6).syscall("setsockopt")
}

/// How many segments one send may carry: 64 when the kernel takes
/// `UDP_SEGMENT` on this socket, else 1. A device can still refuse at send time (EIO); the
/// sender falls back then.
pub fn gso_max_segments(fd: impl AsFd) -> usize {
  if platform::gso_supported(fd.as_fd().as_raw_fd()) {
    platform::MAX_GSO_SEGMENTS
  } else {
    1
  }
}

/// Whether ICMP errors can be read one by one from an error queue here (Linux); elsewhere they
/// are only the socket's pending error.
pub fn has_error_queue() -> bool {
  platform::HAS_ERROR_QUEUE
}

/// `SO_RCVBUF`: room for received datagrams not yet read (the kernel doubles it for its own
/// bookkeeping, and caps it at `net.core.rmem_max`). What arrives beyond it is dropped.
pub fn set_receive_buffer_size(fd: RawFd, bytes: u32) -> SysResult<()> {
  let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
  set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes).syscall("setsockopt")
}

/// `SO_SNDBUF`: room for datagrams sent and not yet on the wire (capped at `net.core.wmem_max`).
pub fn set_send_buffer_size(fd: RawFd, bytes: u32) -> SysResult<()> {
  let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
  set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes).syscall("setsockopt")
}
