//! Every difference between Linux and Darwin for UDP, in one place (as `crate::platform` is for
//! the rest of the crate). Only Linux is built and tested here; the Darwin half is written from
//! its headers and kept to what `libc` names there.
//!
//! Linux: GSO (`UDP_SEGMENT`, up to 64 segments) and GRO (`UDP_GRO`); the TOS control message
//! received as `IP_TOS` (one byte); `IP_TTL`; `SO_TIMESTAMPNS` (nanoseconds); the error queue
//! (`IP_RECVERR`, `MSG_ERRQUEUE`). Darwin: no GSO/GRO (one segment); `IP_RECVTOS` and
//! `IP_RECVTTL` come back under their own names; `SO_TIMESTAMP` (microseconds); no error queue
//! (an ICMP error is only the socket's pending error).

use std::os::fd::RawFd;

pub(crate) use imp::*;

/// A control message payload as raw bytes of a C value.
pub(crate) fn bytes_of<T: Copy>(value: &T) -> &[u8] {
  // SAFETY: T is a plain C struct or integer (Copy, no padding read as meaningful); the slice
  // covers exactly its bytes and borrows it.
  unsafe { std::slice::from_raw_parts((value as *const T).cast(), std::mem::size_of::<T>()) }
}

/// Reads a C value from the start of a control message payload, if it is long enough.
pub(crate) fn read_value<T: Copy>(data: &[u8]) -> Option<T> {
  (data.len() >= std::mem::size_of::<T>())
    // SAFETY: enough bytes; read_unaligned needs no alignment; T is plain data valid for any bits.
    .then(|| unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

/// An integer option, set.
pub(crate) fn set_int(
  fd: RawFd,
  level: i32,
  name: i32,
  value: libc::c_int,
) -> Result<(), nix::errno::Errno> {
  // SAFETY: a c_int option read from a live local for the duration of the call.
  let rc = unsafe {
    libc::setsockopt(
      fd,
      level,
      name,
      (&value as *const libc::c_int).cast(),
      std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    )
  };
  if rc == -1 {
    Err(nix::errno::Errno::last())
  } else {
    Ok(())
  }
}

/// An integer option, read.
pub(crate) fn get_int(fd: RawFd, level: i32, name: i32) -> Result<libc::c_int, nix::errno::Errno> {
  let mut value: libc::c_int = 0;
  let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
  // SAFETY: room for a c_int, its length passed in and written back.
  let rc = unsafe {
    libc::getsockopt(
      fd,
      level,
      name,
      (&mut value as *mut libc::c_int).cast(),
      &mut len,
    )
  };
  if rc == -1 {
    Err(nix::errno::Errno::last())
  } else {
    Ok(value)
  }
}

/// The payload of an outgoing IPv4 PKTINFO: send from `source`. (The same `struct in_pktinfo` on
/// Linux and Darwin; only the option that carries it differs, in `imp`.)
pub(crate) fn ip_pktinfo(source: libc::in_addr) -> libc::in_pktinfo {
  libc::in_pktinfo {
    ipi_ifindex: 0,
    ipi_spec_dst: source,
    ipi_addr: libc::in_addr { s_addr: 0 },
  }
}

/// `(local address, interface)` of a received IPv4 PKTINFO.
pub(crate) fn received_ip_pktinfo(data: &[u8]) -> Option<(libc::in_addr, u32)> {
  read_value::<libc::in_pktinfo>(data).map(|info| (info.ipi_addr, info.ipi_ifindex as u32))
}

/// `struct in6_pktinfo` (RFC 3542), which the libc crate does not name on every Linux target.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct In6Pktinfo {
  pub addr: libc::in6_addr,
  pub ifindex: libc::c_uint,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
  use super::*;

  /// `UDP_MAX_SEGMENTS` in the kernel: a GSO buffer is cut into at most this many datagrams.
  pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

  pub const SOL_UDP: i32 = libc::SOL_UDP;
  /// `UDP_SEGMENT` (4.18+): a `u16` segment size, per message or as a socket default.
  pub const UDP_SEGMENT: i32 = 103;
  /// `UDP_GRO` (5.0+): as an option, coalesce received datagrams; as a control message, the
  /// stride of a coalesced receive.
  pub const UDP_GRO: i32 = 104;
  /// `SO_TIMESTAMPNS` (the "old" one, whose `timespec` has a 64-bit `time_t` on the 64-bit
  /// targets this is built for); the control message has the same number.
  pub const SO_TIMESTAMPNS: i32 = 35;

  /// The TOS byte is sent as an `int` and received as one byte under `IP_TOS`.
  pub const RECEIVED_TOS: i32 = libc::IP_TOS;
  pub const RECEIVED_TTL: i32 = libc::IP_TTL;
  pub const TIMESTAMP_OPTION: i32 = SO_TIMESTAMPNS;
  pub const RECEIVED_TIMESTAMP: i32 = SO_TIMESTAMPNS;
  /// IPv4 PKTINFO, both as the option that asks for it and as the control message.
  pub const IP_PKTINFO_OPTION: i32 = libc::IP_PKTINFO;
  pub const IP_PKTINFO: i32 = libc::IP_PKTINFO;

  pub const HAS_ERROR_QUEUE: bool = true;
  pub const MSG_ERRQUEUE: i32 = libc::MSG_ERRQUEUE;
  /// The control messages an error-queue read carries its `sock_extended_err` in.
  pub const IP_RECVERR: i32 = libc::IP_RECVERR;
  pub const IPV6_RECVERR: i32 = libc::IPV6_RECVERR;

  /// The payload of an outgoing TOS/traffic-class control message.
  pub fn tos_payload(tos: u8) -> libc::c_int {
    libc::c_int::from(tos)
  }

  /// The TOS byte of a received `IP_TOS` message.
  pub fn received_tos(data: &[u8]) -> Option<u8> {
    data.first().copied()
  }

  /// The TTL of a received `IP_TTL` message (an int).
  pub fn received_ttl(data: &[u8]) -> Option<u8> {
    read_value::<libc::c_int>(data).map(|ttl| ttl.clamp(0, 255) as u8)
  }

  /// `(seconds, nanoseconds)` of a received timestamp.
  // `time_t` is i64 on the 64-bit targets but not on every Linux one: the cast is needed there.
  #[allow(clippy::unnecessary_cast)]
  pub fn received_timestamp(data: &[u8]) -> Option<(i64, u32)> {
    read_value::<libc::timespec>(data).map(|ts| (ts.tv_sec as i64, ts.tv_nsec as u32))
  }

  /// Whether the kernel takes a `UDP_SEGMENT` control message: the option exists on the socket.
  /// Reading it changes nothing (setting it would set a default segment size for every send).
  pub fn gso_supported(fd: RawFd) -> bool {
    get_int(fd, SOL_UDP, UDP_SEGMENT).is_ok()
  }

  /// Asks for coalesced receives; false when the kernel has no GRO for UDP.
  pub fn enable_gro(fd: RawFd, on: bool) -> bool {
    set_int(fd, SOL_UDP, UDP_GRO, libc::c_int::from(on)).is_ok()
  }

  /// Sets the Don't Fragment bit on every datagram (path MTU discovery, as QUIC needs).
  pub fn set_dont_fragment(fd: RawFd, v6: bool) -> Result<(), nix::errno::Errno> {
    set_int(
      fd,
      libc::IPPROTO_IP,
      libc::IP_MTU_DISCOVER,
      libc::IP_PMTUDISC_DO,
    )
    .or_else(|err| if v6 { Ok(()) } else { Err(err) })?;
    if v6 {
      set_int(
        fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
      )?;
    }
    Ok(())
  }

  /// Queue ICMP errors for [`MSG_ERRQUEUE`] reads.
  pub fn enable_error_queue(fd: RawFd, v6: bool) -> Result<(), nix::errno::Errno> {
    if v6 {
      set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
      // For IPv4 peers of a dual-stack socket; refused on a v6-only one, which has none.
      let _ = set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
      Ok(())
    } else {
      set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
  use super::*;

  /// No segmentation offload: every datagram is its own send.
  pub(crate) const MAX_GSO_SEGMENTS: usize = 1;

  /// Never sent or received here (no GSO/GRO); values that match no control message.
  pub const SOL_UDP: i32 = libc::IPPROTO_UDP;
  pub const UDP_SEGMENT: i32 = -1;
  pub const UDP_GRO: i32 = -1;

  pub const RECEIVED_TOS: i32 = libc::IP_RECVTOS;
  pub const RECEIVED_TTL: i32 = libc::IP_RECVTTL;
  pub const TIMESTAMP_OPTION: i32 = libc::SO_TIMESTAMP;
  pub const RECEIVED_TIMESTAMP: i32 = libc::SCM_TIMESTAMP;
  pub const IP_PKTINFO_OPTION: i32 = libc::IP_PKTINFO;
  pub const IP_PKTINFO: i32 = libc::IP_PKTINFO;

  pub const HAS_ERROR_QUEUE: bool = false;
  pub const MSG_ERRQUEUE: i32 = 0;
  pub const IP_RECVERR: i32 = -1;
  pub const IPV6_RECVERR: i32 = -1;

  pub fn tos_payload(tos: u8) -> libc::c_int {
    libc::c_int::from(tos)
  }

  pub fn received_tos(data: &[u8]) -> Option<u8> {
    data.first().copied()
  }

  /// Darwin's `IP_RECVTTL` message is one byte.
  pub fn received_ttl(data: &[u8]) -> Option<u8> {
    data.first().copied()
  }

  /// `SCM_TIMESTAMP` is a `timeval` (microseconds).
  pub fn received_timestamp(data: &[u8]) -> Option<(i64, u32)> {
    read_value::<libc::timeval>(data).map(|tv| (tv.tv_sec as i64, tv.tv_usec as u32 * 1000))
  }

  pub fn gso_supported(_fd: RawFd) -> bool {
    false
  }

  pub fn enable_gro(_fd: RawFd, _on: bool) -> bool {
    false
  }

  pub fn set_dont_fragment(fd: RawFd, v6: bool) -> Result<(), nix::errno::Errno> {
    if v6 {
      set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    } else {
      set_int(fd, libc::IPPROTO_IP, libc::IP_DONTFRAG, 1)
    }
  }

  /// No error queue: ICMP errors surface as the socket's pending error only.
  pub fn enable_error_queue(_fd: RawFd, _v6: bool) -> Result<(), nix::errno::Errno> {
    Ok(())
  }
}
