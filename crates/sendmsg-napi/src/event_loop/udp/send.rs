//! The sending direction of a UDP socket: the transport that lib/send-queue.ts drives for a
//! `UdpSocket` (its queue, promises and writability are the same as for AF_UNIX sockets).
//!
//! Each call returns how many datagrams (transmits) went whole; zero means the socket is full,
//! and the socket then waits for writability itself. A UDP socket's own send buffer is what
//! fills, so writability is a readiness event here (unlike an AF_UNIX datagram to a full
//! receiver). Malformed metadata is refused before any system call, as a RangeError.

use std::net::SocketAddr;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendmsg_core::udp::send::{SendProgress, UdpSendError};
use sendmsg_core::udp::{Ecn, Transmit};

use super::super::socket::{EventSocket, Writing};
use super::{udp_of, Resume, UdpState};
use crate::errors;

/// One datagram's metadata as JavaScript passes it: -1 for "not given".
struct Meta<'a> {
  host: Option<&'a str>,
  port: u32,
  ecn: i32,
  segment_size: i32,
  source: Option<&'a str>,
}

/// Why JavaScript's metadata cannot be used: thrown for the first datagram of a call; a later
/// datagram's ends the batch before it, and is thrown when it comes first.
struct Refusal {
  code: &'static str,
  message: String,
}

impl Refusal {
  fn new(code: &'static str, message: impl Into<String>) -> Self {
    Self {
      code,
      message: message.into(),
    }
  }

  fn throw(self, env: &Env) -> Error {
    errors::throw_range_error(env, self.code, &self.message)
  }
}

fn ip(host: &str) -> std::result::Result<std::net::IpAddr, Refusal> {
  host.parse().map_err(|_| {
    Refusal::new(
      "ERR_INVALID_ARG_VALUE",
      format!("The address must be an IP address. Received '{host}'"),
    )
  })
}

fn transmit<'a>(
  state: &UdpState,
  contents: &'a [u8],
  meta: &Meta<'_>,
) -> std::result::Result<Transmit<'a>, Refusal> {
  let destination = match meta.host {
    Some(host) => {
      let port = u16::try_from(meta.port)
        .map_err(|_| Refusal::new("ERR_SOCKET_BAD_PORT", "Port should be > 0 and < 65536"))?;
      Some(SocketAddr::new(ip(host)?, port))
    }
    None => None,
  };
  let ecn = match meta.ecn {
    -1 => None,
    n => Some(
      u8::try_from(n)
        .ok()
        .and_then(Ecn::from_u8)
        .ok_or_else(|| Refusal::new("ERR_OUT_OF_RANGE", "ecn must be 0, 1, 2 or 3"))?,
    ),
  };
  let segment_size = match meta.segment_size {
    -1 => None,
    n => Some(
      usize::try_from(n)
        .map_err(|_| Refusal::new("ERR_OUT_OF_RANGE", "segmentSize must be a positive integer"))?,
    ),
  };
  let src_ip = meta.source.map(ip).transpose()?;
  Ok(Transmit {
    destination,
    contents: resumed(state, contents),
    ecn,
    segment_size,
    src_ip,
  })
}

/// The part of `contents` still to send, when it is the transmit a full socket cut short.
fn resumed<'a>(state: &UdpState, contents: &'a [u8]) -> &'a [u8] {
  match state.resume.get() {
    Some(resume) if resume.data == contents.as_ptr() && resume.len == contents.len() => {
      &contents[resume.bytes..]
    }
    _ => contents,
  }
}

/// Sends `transmits` (the first `originals` are JavaScript's buffers, before any resume) and
/// turns the progress into the count JavaScript expects.
fn send(
  env: &Env,
  socket: &EventSocket,
  state: &UdpState,
  transmits: &[Transmit<'_>],
  originals: &[&[u8]],
) -> Result<f64> {
  let result = state.sender.borrow_mut().send(socket.fd, transmits);
  match result {
    Ok(SendProgress {
      transmits: done,
      bytes,
    }) => {
      let previous = state.resume.take();
      if let Some(next) = originals.get(done).filter(|_| bytes > 0) {
        // Part of the next transmit went: remember how much, for when it is offered again.
        let already = previous
          .filter(|resume| done == 0 && resume.data == next.as_ptr() && resume.len == next.len())
          .map_or(0, |resume| resume.bytes);
        state.resume.set(Some(Resume {
          data: next.as_ptr(),
          len: next.len(),
          bytes: already + bytes,
        }));
      } else if done == 0 {
        state.resume.set(previous);
      }
      if done == 0 {
        socket
          .set_writing(Writing::AwaitingWritable)
          .map_err(|err| errors::throw_sys(env, err))?;
      }
      Ok(done as f64)
    }
    Err(UdpSendError::Meta(err)) => {
      state.resume.set(None);
      Err(errors::throw_range_error(
        env,
        "ERR_INVALID_ARG_VALUE",
        &format!("The datagram's metadata is malformed: {err}"),
      ))
    }
    Err(UdpSendError::Sys(err)) => {
      state.resume.set(None);
      Err(errors::throw_sys(env, err))
    }
  }
}

/// Sends one datagram (or, with `segmentSize`, one GSO buffer): 1 when it went, 0 when the socket
/// is full.
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, data: Uint8Array, host: string | undefined | null, port: number, ecn: number, segmentSize: number, source: string | undefined | null"
)]
#[allow(clippy::too_many_arguments)]
pub fn udp_send(
  env: Env,
  socket: Unknown<'_>,
  data: &[u8],
  host: Option<String>,
  port: u32,
  ecn: i32,
  segment_size: i32,
  source: Option<String>,
) -> Result<f64> {
  let (socket, state) = udp_of(&env, socket, "sendmsg")?;
  let meta = Meta {
    host: host.as_deref(),
    port,
    ecn,
    segment_size,
    source: source.as_deref(),
  };
  let transmit = transmit(state, data, &meta).map_err(|refusal| refusal.throw(&env))?;
  send(&env, socket, state, &[transmit], &[data])
}

/// Sends `count` queued datagrams from `queue[from]` on in one call (lib/send-queue.ts `QueuedSend`,
/// its `meta` a lib/udp.ts `DatagramMeta`).
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, queue: ReadonlyArray<{ parts: Uint8Array[]; meta: { host: string | undefined; port: number; ecn: number; segmentSize: number; source: string | undefined } }>, from: number, count: number"
)]
pub fn udp_send_queued(
  env: Env,
  socket: Unknown<'_>,
  queue: Array<'_>,
  from: u32,
  count: u32,
) -> Result<f64> {
  let (socket, state) = udp_of(&env, socket, "sendmsg")?;
  let mut originals: Vec<&[u8]> = Vec::with_capacity(count as usize);
  let mut metas = Vec::with_capacity(count as usize);
  for i in from..from + count {
    let entry: Object<'_> = queue.get(i)?.ok_or_else(|| {
      errors::throw_type_error(
        &env,
        "ERR_INVALID_ARG_VALUE",
        "the send queue is shorter than said",
      )
    })?;
    let parts: Vec<&[u8]> = entry.get_named_property("parts")?;
    let meta: Object<'_> = entry.get_named_property("meta")?;
    let host: Option<String> = meta.get_named_property("host")?;
    let port: u32 = meta.get_named_property("port")?;
    let ecn: i32 = meta.get_named_property("ecn")?;
    let segment_size: i32 = meta.get_named_property("segmentSize")?;
    let source: Option<String> = meta.get_named_property("source")?;
    // lib/udp.ts queues one part per datagram.
    originals.push(parts.first().copied().unwrap_or(&[]));
    metas.push((host, port, ecn, segment_size, source));
  }
  let mut transmits = Vec::with_capacity(metas.len());
  for (contents, (host, port, ecn, segment_size, source)) in originals.iter().zip(&metas) {
    let meta = Meta {
      host: host.as_deref(),
      port: *port,
      ecn: *ecn,
      segment_size: *segment_size,
      source: source.as_deref(),
    };
    match transmit(state, contents, &meta) {
      Ok(transmit) => transmits.push(transmit),
      Err(refusal) if transmits.is_empty() => return Err(refusal.throw(&env)),
      // Sent up to it; it is first in the next call, and refused then.
      Err(_) => break,
    }
  }
  send(&env, socket, state, &transmits, &originals)
}
