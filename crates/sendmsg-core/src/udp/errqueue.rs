//! ICMP errors from a socket's error queue (`IP_RECVERR`/`IPV6_RECVERR`, read with
//! `MSG_ERRQUEUE`, Linux): which datagram met which error, reported by whom, and for "packet too
//! big" the path's MTU.
//!
//! While the queue holds an error the socket polls with POLLERR, so whoever waits on it must read
//! the queue until it is empty (or the poll fires again at once). Reading it also clears the
//! socket's pending error that the same ICMP message set.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::cmsg::{self, ControlBuffer};
use crate::error::{SysError, SysResult};
use crate::msghdr::MessageHeader;

use super::address::{from_bytes, from_raw};
use super::platform::{self, read_value};

/// Where an error came from (`ee_origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorOrigin {
  /// The local stack (a datagram larger than the known path MTU, for one).
  Local,
  Icmp,
  Icmp6,
  Other(u8),
}

/// One error the kernel queued for a datagram this socket sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedError {
  /// ECONNREFUSED (port unreachable), EMSGSIZE (packet too big), EHOSTUNREACH, ...
  pub errno: Errno,
  pub origin: ErrorOrigin,
  /// The ICMP type and code (meaningful for the ICMP origins).
  pub icmp_type: u8,
  pub icmp_code: u8,
  /// For EMSGSIZE, the MTU of the path.
  pub mtu: Option<u32>,
  /// The node that reported it (a router, or the destination host).
  pub offender: Option<IpAddr>,
  /// The destination of the datagram that met it.
  pub destination: Option<SocketAddr>,
  /// Bytes of that datagram's payload returned with it.
  pub payload_len: usize,
}

/// `struct sock_extended_err` (linux/errqueue.h), laid out here so this compiles everywhere.
#[repr(C)]
#[derive(Clone, Copy)]
struct ExtendedErr {
  errno: u32,
  origin: u8,
  icmp_type: u8,
  icmp_code: u8,
  pad: u8,
  info: u32,
  data: u32,
}

const SO_EE_ORIGIN_LOCAL: u8 = 1;
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Reads one queued error without blocking, its datagram's payload into `payload`. `None` when
/// the queue is empty (and always where there is no error queue).
pub fn read_error(fd: RawFd, payload: &mut [u8]) -> SysResult<Option<QueuedError>> {
  if !platform::HAS_ERROR_QUEUE {
    return Ok(None);
  }
  // The error message with the offender's address after it, and the metadata the socket asked
  // for, which the kernel attaches to the returned datagram as to a received one.
  let space = cmsg::space_for_payloads([
    std::mem::size_of::<ExtendedErr>() + std::mem::size_of::<libc::sockaddr_in6>()
  ])
  .expect("fits")
    + super::control::receive_space();
  let mut control =
    ControlBuffer::zeroed(space).map_err(|_| SysError::new("recvmsg", Errno::ENOMEM))?;
  // SAFETY: a zeroed sockaddr_storage is valid.
  let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
  let mut iov = [IoSliceMut::new(payload)];
  let mut header = MessageHeader::new(iov.as_mut_ptr().cast(), 1)
    .with_control(control.as_msg_control(), control.len())
    .with_name(
      (&mut name as *mut libc::sockaddr_storage).cast(),
      std::mem::size_of::<libc::sockaddr_storage>() as _,
    );
  let received = match header.recv(fd, platform::MSG_ERRQUEUE | libc::MSG_DONTWAIT) {
    Ok(received) => received,
    Err(err) if err.errno == Errno::EAGAIN => return Ok(None),
    Err(err) => return Err(err),
  };
  // SAFETY: the kernel wrote name_len bytes of a sockaddr into `name`.
  let destination = unsafe {
    from_raw(
      (&name as *const libc::sockaddr_storage).cast(),
      header.name_len() as usize,
    )
  };
  let control_len = header.control_len(control.len());
  let mut found = None;
  for raw in cmsg::walk(&control.as_bytes()[..control_len]) {
    let is_error = (raw.level == libc::IPPROTO_IP && raw.kind == platform::IP_RECVERR)
      || (raw.level == libc::IPPROTO_IPV6 && raw.kind == platform::IPV6_RECVERR);
    if !is_error {
      continue;
    }
    if let Some(extended) = read_value::<ExtendedErr>(raw.data) {
      found = Some(decode(
        &extended,
        &raw.data[std::mem::size_of::<ExtendedErr>()..],
        destination,
        received,
      ));
    }
  }
  // A queue entry without an error message (a transmit timestamp, say) is reported as nothing.
  Ok(found.or(Some(QueuedError {
    errno: Errno::UnknownErrno,
    origin: ErrorOrigin::Other(0),
    icmp_type: 0,
    icmp_code: 0,
    mtu: None,
    offender: None,
    destination,
    payload_len: received,
  })))
}

fn decode(
  err: &ExtendedErr,
  offender: &[u8],
  destination: Option<SocketAddr>,
  payload_len: usize,
) -> QueuedError {
  let origin = match err.origin {
    SO_EE_ORIGIN_LOCAL => ErrorOrigin::Local,
    SO_EE_ORIGIN_ICMP => ErrorOrigin::Icmp,
    SO_EE_ORIGIN_ICMP6 => ErrorOrigin::Icmp6,
    other => ErrorOrigin::Other(other),
  };
  let errno = Errno::from_raw(err.errno as i32);
  // SO_EE_OFFENDER: a sockaddr right after the error, family AF_UNSPEC when unknown.
  let offender = from_bytes(offender).map(|address| address.ip());
  QueuedError {
    errno,
    origin,
    icmp_type: err.icmp_type,
    icmp_code: err.icmp_code,
    mtu: (errno == Errno::EMSGSIZE && err.info > 0).then_some(err.info),
    offender,
    destination,
    payload_len,
  }
}
