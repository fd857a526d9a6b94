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

/// Entry `i` of an optional list of optional strings.
fn text_at(list: &Option<Vec<Option<String>>>, i: usize) -> Option<&str> {
  list.as_ref().and_then(|list| list[i].as_deref())
}

/// Numbers per datagram in `udp_send_queued`'s `numbers`: port, ECN, segment size.
const NUMBERS_PER_DATAGRAM: usize = 3;

/// Sends `parts.length` queued datagrams in one call, laid out by JavaScript (lib/udp.ts
/// `udpTransport.sendQueued`) as flat arrays, the shape AF_UNIX batches have (`socketSendQueued`):
/// a few Node-API calls per batch instead of a property read per field and datagram.
///
/// - `parts`: each datagram's data (or GSO buffer), one buffer each.
/// - `numbers`: per datagram its port, ECN codepoint and segment size (-1: not given).
/// - `hosts`, `sources`: per datagram its destination and source address (IP literals), or
///   absent for all (a connected socket; no source asked).
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, parts: Uint8Array[], numbers: Int32Array, hosts?: Array<string | undefined> | undefined | null, sources?: Array<string | undefined> | undefined | null"
)]
pub fn udp_send_queued(
  env: Env,
  socket: Unknown<'_>,
  parts: Vec<&[u8]>,
  numbers: &[i32],
  hosts: Option<Vec<Option<String>>>,
  sources: Option<Vec<Option<String>>>,
) -> Result<f64> {
  let (socket, state) = udp_of(&env, socket, "sendmsg")?;
  let count = parts.len();
  let fits =
    |list: &Option<Vec<Option<String>>>| list.as_ref().is_none_or(|list| list.len() == count);
  if numbers.len() != count * NUMBERS_PER_DATAGRAM || !fits(&hosts) || !fits(&sources) {
    return Err(errors::throw_type_error(
      &env,
      "ERR_INVALID_ARG_VALUE",
      "the send batch's arrays do not fit each other",
    ));
  }
  let mut transmits = Vec::with_capacity(count);
  for (i, (contents, numbers)) in parts
    .iter()
    .zip(numbers.chunks_exact(NUMBERS_PER_DATAGRAM))
    .enumerate()
  {
    let meta = Meta {
      host: text_at(&hosts, i),
      port: u32::try_from(numbers[0]).unwrap_or(u32::MAX),
      ecn: numbers[1],
      segment_size: numbers[2],
      source: text_at(&sources, i),
    };
    match transmit(state, contents, &meta) {
      Ok(transmit) => transmits.push(transmit),
      Err(refusal) if transmits.is_empty() => return Err(refusal.throw(&env)),
      // Sent up to it; it is first in the next call, and refused then.
      Err(_) => break,
    }
  }
  send(&env, socket, state, &transmits, &parts)
}
