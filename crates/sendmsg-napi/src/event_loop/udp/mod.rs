//! UDP sockets in the event loop: the native half of `UdpSocket` (lib/udp.ts).
//!
//! A UDP socket is an [`EventSocket`] like the AF_UNIX ones, with `Role::Udp` and a [`UdpState`]:
//! the same handle, the same readiness choke point, the same close and reference rules, and the
//! same JavaScript send queue (lib/send-queue.ts) over the transport in `send.rs`. What differs:
//! receiving decodes each datagram's metadata (`receive.rs`), POLLERR means an ICMP error is
//! queued (read by `receive::drain_errors`), and sends carry per-datagram metadata.

pub mod receive;
mod send;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendmsg_core::socket::SocketKind;
use sendmsg_core::udp::send::UdpSender;
use sendmsg_core::udp::socket::{self as udp_socket, ReceiveOptions};
use sendmsg_core::udp::{recv, Family};
use sendmsg_core::SysError;

use super::socket::{EventSocket, JsSide, Role};
use super::{adopt, open_event_socket, socket_events, socket_of, SocketEvents};
use crate::errors;

/// How far a transmit cut into datagrams by the sender (GSO refused by the device) got before the
/// socket filled: the rest is sent when the queue offers the same buffer again.
#[derive(Clone, Copy)]
pub struct Resume {
  data: *const u8,
  len: usize,
  bytes: usize,
}

/// What a UDP socket keeps besides what every event-loop socket keeps.
pub struct UdpState {
  pub family: Family,
  pub sender: RefCell<UdpSender>,
  pub resume: Cell<Option<Resume>>,
  /// GRO runs are delivered one datagram per message (true) or whole with their stride.
  pub split_segments: bool,
  pub gro: bool,
}

/// How to open a UDP socket in the event loop.
#[napi(object)]
pub struct UdpOpenOptions {
  /// The largest datagram received in one piece (a GRO run is received whole regardless).
  pub max_message_size: u32,
  /// Coalesce received datagrams (UDP_GRO) where the kernel can.
  pub gro: bool,
  /// Deliver a coalesced run one datagram per message.
  pub split_segments: bool,
  /// Receive each datagram's ECN bits and traffic class.
  pub ecn: bool,
  /// Receive the local address and interface of each datagram.
  pub pktinfo: bool,
  /// Receive each datagram's TTL / hop limit.
  pub ttl: bool,
  /// Receive the kernel's receive time of each datagram.
  pub timestamps: bool,
  /// Set Don't Fragment: too-large datagrams fail and report the path MTU instead.
  pub dont_fragment: bool,
  /// SO_RCVBUF, when given.
  pub recv_buffer_size: Option<u32>,
  /// SO_SNDBUF, when given.
  pub send_buffer_size: Option<u32>,
}

/// A new UDP socket (close-on-exec, non-blocking), for `udp_open`; the caller owns it until then.
#[napi]
pub fn udp_create(env: Env, ipv6: bool, ipv6_only: bool) -> Result<i32> {
  let family = if ipv6 { Family::V6 } else { Family::V4 };
  let fd = udp_socket::udp_socket(family, true).map_err(|err| errors::throw_sys(&env, err))?;
  if ipv6 {
    use std::os::fd::AsRawFd;
    udp_socket::set_v6_only(fd.as_raw_fd(), ipv6_only)
      .map_err(|err| errors::throw_sys(&env, err))?;
  }
  Ok(fd.into_raw_fd())
}

/// Opens a UDP socket in the event loop on the descriptor `source` names (as `socket_open` does:
/// a number when `index` is -1, else slot `index` of a held set; the socket's from then on, or
/// given back unchanged if opening fails).
#[napi(
  ts_args_type = "source: number, index: number, options: UdpOpenOptions, owner: object, events: { message: (this: any, slab: ArrayBuffer, offset: number, length: number, flags: number, address: string, port: number, ecn: number, stride: number, localAddress: string | undefined, interfaceIndex: number, ttl: number, seconds: number, nanoseconds: number, trafficClass: number) => boolean; writable: (this: any) => void; error: (this: any, error: Error) => void; icmpError: (this: any, error: Error) => void }",
  ts_return_type = "ExternalObject<'UnixSocket'>"
)]
pub fn udp_open<'env>(
  env: &'env Env,
  source: f64,
  index: i32,
  options: UdpOpenOptions,
  owner: Unknown<'env>,
  events: SocketEvents<'env>,
) -> Result<Unknown<'env>> {
  adopt(env, source, index, |fd| {
    open(env, fd, &options, owner, events)
  })
}

fn open<'env>(
  env: &'env Env,
  fd: OwnedFd,
  options: &UdpOpenOptions,
  owner: Unknown<'env>,
  events: SocketEvents<'env>,
) -> std::result::Result<Unknown<'env>, super::OpenError> {
  use std::os::fd::AsRawFd;
  // What can fail without touching the descriptor comes first (then whether it is UDP at all): a
  // descriptor given back (adoption refused) keeps its options as they were, unless a setsockopt
  // below fails, which leaves the options set before it (each one the caller asked for).
  let js =
    socket_events(env, events).and_then(|events| JsSide::new(env.raw(), owner.raw(), events));
  let js = match js {
    Ok(js) => js,
    Err(err) => return Err((err, Some(fd))),
  };
  let prepared = (|| {
    let family = udp_socket::family_of(fd.as_fd())?;
    let receive = ReceiveOptions {
      ecn: options.ecn,
      pktinfo: options.pktinfo,
      ttl: options.ttl,
      timestamps: options.timestamps,
      gro: options.gro,
      errors: true,
    };
    let enabled = udp_socket::enable(fd.as_raw_fd(), family, &receive)?;
    if options.dont_fragment {
      udp_socket::set_dont_fragment(fd.as_raw_fd(), family)?;
    }
    if let Some(bytes) = options.recv_buffer_size {
      udp_socket::set_receive_buffer_size(fd.as_raw_fd(), bytes)?;
    }
    if let Some(bytes) = options.send_buffer_size {
      udp_socket::set_send_buffer_size(fd.as_raw_fd(), bytes)?;
    }
    let mut sender = UdpSender::new(family, udp_socket::gso_max_segments(&fd) > 1);
    sender.set_peer(udp_socket::peer_address(fd.as_raw_fd())?);
    Ok::<_, SysError>(UdpState {
      family,
      sender: RefCell::new(sender),
      resume: Cell::new(None),
      split_segments: options.split_segments,
      gro: enabled.gro,
    })
  })();
  let state = match prepared {
    Ok(state) => state,
    Err(err) => return Err((errors::throw_sys(env, err), Some(fd))),
  };
  // A GRO run can be as long as the largest datagram.
  let slot_size = if state.gro {
    recv::MAX_RECEIVE.max(options.max_message_size as usize)
  } else {
    options.max_message_size as usize
  };
  open_event_socket(
    env,
    fd,
    SocketKind::Datagram,
    Role::Udp,
    slot_size,
    js,
    Some(state),
  )
}

/// A UDP socket's address, as Node's `dgram.Socket.address()` gives it.
#[napi(object)]
pub struct UdpAddress {
  pub address: String,
  pub family: String,
  pub port: u32,
}

impl From<SocketAddr> for UdpAddress {
  fn from(address: SocketAddr) -> Self {
    Self {
      address: address.ip().to_string(),
      family: if address.is_ipv4() { "IPv4" } else { "IPv6" }.to_owned(),
      port: u32::from(address.port()),
    }
  }
}

/// The UDP socket behind a handle, open; EBADF under `syscall`'s name once closed.
pub(super) fn udp_of<'a>(
  env: &Env,
  socket: Unknown<'_>,
  syscall: &'static str,
) -> Result<(&'a std::rc::Rc<EventSocket>, &'a UdpState)> {
  let socket = socket_of(env, socket)?;
  let Some(state) = socket.udp.as_ref() else {
    return Err(errors::throw_type_error(
      env,
      "ERR_INVALID_ARG_TYPE",
      "expected a UDP socket handle",
    ));
  };
  if !socket.is_open() {
    return Err(errors::throw_sys(
      env,
      SysError::new(syscall, nix::errno::Errno::EBADF),
    ));
  }
  Ok((socket, state))
}

/// An IP address from JavaScript (an IP literal; names are resolved by the TypeScript layer).
pub fn parse_ip(env: &Env, host: &str) -> Result<IpAddr> {
  host.parse().map_err(|_| {
    errors::throw_type_error(
      env,
      "ERR_INVALID_ARG_VALUE",
      &format!("The address must be an IP address. Received '{host}'"),
    )
  })
}

fn socket_address(env: &Env, state: &UdpState, host: &str, port: u32) -> Result<SocketAddr> {
  let port = u16::try_from(port).map_err(|_| {
    errors::throw_range_error(
      env,
      "ERR_SOCKET_BAD_PORT",
      "Port should be >= 0 and < 65536",
    )
  })?;
  let address = SocketAddr::new(parse_ip(env, host)?, port);
  if state.family == Family::V4 && address.is_ipv6() {
    return Err(errors::throw_sys(
      env,
      SysError::new("bind", nix::errno::Errno::EAFNOSUPPORT),
    ));
  }
  Ok(udp_socket::for_family(address, state.family))
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, host: string, port: number")]
pub fn udp_bind(env: Env, socket: Unknown<'_>, host: String, port: u32) -> Result<()> {
  let (socket, state) = udp_of(&env, socket, "getsockname")?;
  let address = socket_address(&env, state, &host, port)?;
  udp_socket::bind(socket.fd, address).map_err(|err| errors::throw_sys(&env, err))
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, host: string, port: number")]
pub fn udp_connect(env: Env, socket: Unknown<'_>, host: String, port: u32) -> Result<()> {
  let (socket, state) = udp_of(&env, socket, "getsockname")?;
  let address = socket_address(&env, state, &host, port)?;
  udp_socket::connect(socket.fd, address).map_err(|err| errors::throw_sys(&env, err))?;
  state.sender.borrow_mut().set_peer(Some(address));
  Ok(())
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_disconnect(env: Env, socket: Unknown<'_>) -> Result<()> {
  let (socket, state) = udp_of(&env, socket, "getsockname")?;
  udp_socket::disconnect(socket.fd).map_err(|err| errors::throw_sys(&env, err))?;
  state.sender.borrow_mut().set_peer(None);
  Ok(())
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_local_address(env: Env, socket: Unknown<'_>) -> Result<UdpAddress> {
  let (socket, _) = udp_of(&env, socket, "getsockname")?;
  udp_socket::local_address(socket.fd)
    .map(UdpAddress::from)
    .map_err(|err| errors::throw_sys(&env, err))
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_remote_address(env: Env, socket: Unknown<'_>) -> Result<Option<UdpAddress>> {
  let (socket, _) = udp_of(&env, socket, "getsockname")?;
  udp_socket::peer_address(socket.fd)
    .map(|peer| peer.map(UdpAddress::from))
    .map_err(|err| errors::throw_sys(&env, err))
}

/// The socket's TOS byte / traffic class (DSCP and ECN bits).
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_traffic_class(env: Env, socket: Unknown<'_>) -> Result<u32> {
  let (socket, state) = udp_of(&env, socket, "getsockname")?;
  udp_socket::traffic_class(socket.fd, state.family)
    .map(u32::from)
    .map_err(|err| errors::throw_sys(&env, err))
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, value: number")]
pub fn udp_set_traffic_class(env: Env, socket: Unknown<'_>, value: u32) -> Result<()> {
  let (socket, state) = udp_of(&env, socket, "getsockname")?;
  let value = u8::try_from(value).map_err(|_| {
    errors::throw_range_error(
      &env,
      "ERR_OUT_OF_RANGE",
      "The TOS must be an integer from 0 to 255",
    )
  })?;
  udp_socket::set_traffic_class(socket.fd, state.family, value)
    .map_err(|err| errors::throw_sys(&env, err))
}

/// Datagrams one send may carry as one buffer: 64 with GSO, 1 without (or after a device refused
/// it), in which case a transmit with a segment size is cut by the sender.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_gso_segments(env: Env, socket: Unknown<'_>) -> Result<u32> {
  let (_, state) = udp_of(&env, socket, "getsockname")?;
  Ok(if state.sender.borrow().gso() {
    sendmsg_core::udp::MAX_SEGMENTS as u32
  } else {
    1
  })
}

/// Whether received datagrams may arrive coalesced (GRO was granted).
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn udp_gro(env: Env, socket: Unknown<'_>) -> Result<bool> {
  let (_, state) = udp_of(&env, socket, "getsockname")?;
  Ok(state.gro)
}
