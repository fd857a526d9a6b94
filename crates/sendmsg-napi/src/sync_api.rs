//! The Twisted-shaped synchronous API: `sendmsg`, `recvmsg`, `getSocketFamily`, `socketpair`.
//!
//! Arguments arrive already checked and normalised by the TypeScript layer (`lib/sync.ts`):
//! data as a list of byte views, ancillary data as `[level, type, bytes]` triples, integers in range.
//! These calls block when the socket is blocking: that is their contract.

use std::cell::RefCell;
use std::io::IoSlice;
use std::os::fd::IntoRawFd;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendmsg_core::cmsg::{self, ControlBuffer, OutgoingCmsg};
use sendmsg_core::message::{self, ReceivedCmsg};
use sendmsg_core::socket::{self, SocketKind};

use crate::errors;

thread_local! {
  /// Reused across calls on one thread; large one-off requests do not stay cached.
  static SCRATCH: RefCell<(Vec<u8>, ControlBuffer)> = RefCell::new((Vec::new(), ControlBuffer::default()));
}

const SCRATCH_KEEP: usize = 1 << 20;

/// Sends `chunks` as one message with `ancillary` control messages. Returns the bytes sent.
#[napi(js_name = "sendmsg")]
pub fn sendmsg(
  env: Env,
  fd: i32,
  chunks: Vec<&[u8]>,
  ancillary: Vec<(i32, i32, &[u8])>,
  flags: i32,
) -> Result<f64> {
  let iov: Vec<IoSlice<'_>> = chunks.iter().map(|chunk| IoSlice::new(chunk)).collect();
  let items: Vec<OutgoingCmsg<'_>> = ancillary
    .iter()
    .map(|&(level, kind, data)| OutgoingCmsg { level, kind, data })
    .collect();
  let mut control = ControlBuffer::default();
  cmsg::encode_into(&mut control, &items).map_err(|err| errors::throw_encode(&env, err))?;
  message::send(fd, &iov, &mut control, flags, None)
    .map(|sent| sent as f64)
    .map_err(|err| errors::throw_send(&env, err))
}

/// One received message: the data, the control messages as `[level, type, bytes]` (descriptors
/// as native-endian 32-bit numbers, now owned by the caller), and `msg_flags`.
#[napi(object)]
pub struct ReceivedMessage {
  pub data: Buffer,
  pub ancillary: Vec<(i32, i32, Buffer)>,
  pub flags: i32,
}

/// Receives one message of at most `max_size` bytes with room for `cmsg_size` bytes of control
/// payload (the buffer is `CMSG_SPACE(cmsg_size)`, as in Twisted).
#[napi]
pub fn recvmsg(
  env: Env,
  fd: i32,
  max_size: u32,
  cmsg_size: u32,
  flags: i32,
) -> Result<ReceivedMessage> {
  let control_len = cmsg::cmsg_space(cmsg_size as usize)
    .ok_or_else(|| errors::throw_range_error(&env, "ERR_OUT_OF_RANGE", "cmsgSize is too large"))?;
  SCRATCH.with(|scratch| {
    let mut scratch = scratch.borrow_mut();
    let (data, control) = &mut *scratch;
    let max_size = max_size as usize;
    if data.len() < max_size {
      data
        .try_reserve(max_size - data.len())
        .map_err(|_| errors::out_of_memory(&env))?;
      data.resize(max_size, 0);
    }
    control
      .resize(control_len)
      .map_err(|_| errors::out_of_memory(&env))?;
    let result = message::recv(fd, &mut data[..max_size], control, flags, false);
    let bytes = result
      .as_ref()
      .map(|received| data[..received.len].to_vec())
      .unwrap_or_default();
    if data.len() > SCRATCH_KEEP {
      *data = Vec::new();
    }
    if control.len() > SCRATCH_KEEP {
      *control = ControlBuffer::default();
    }
    let received = result.map_err(|err| errors::throw_sys(&env, err))?;
    Ok(ReceivedMessage {
      data: bytes.into(),
      ancillary: received.control.into_iter().map(into_triple).collect(),
      flags: received.flags,
    })
  })
}

/// Hands the descriptors over as numbers: the caller owns them from here on.
fn into_triple(item: ReceivedCmsg) -> (i32, i32, Buffer) {
  match item {
    ReceivedCmsg::Fds { level, kind, fds } => {
      let bytes: Vec<u8> = fds
        .into_iter()
        .flat_map(|owned| owned.into_raw_fd().to_ne_bytes())
        .collect();
      (level, kind, bytes.into())
    }
    ReceivedCmsg::Data { level, kind, data } => (level, kind, data.into()),
  }
}

/// The address family of a socket (`AF_UNIX`, `AF_INET`, ...).
#[napi]
pub fn get_socket_family(env: Env, fd: i32) -> Result<i32> {
  socket::family(fd).map_err(|err| errors::throw_sys(&env, err))
}

/// A connected pair of AF_UNIX sockets of `sock_type` (`SOCK_STREAM`, ...), both close-on-exec.
#[napi]
pub fn socketpair(env: Env, sock_type: i32, nonblocking: bool) -> Result<Vec<i32>> {
  let kind = SocketKind::from_raw(sock_type).ok_or_else(|| {
    errors::throw_type_error(&env, "ERR_INVALID_ARG_VALUE", "unsupported socket type")
  })?;
  let (a, b) = socket::socketpair(kind, nonblocking).map_err(|err| errors::throw_sys(&env, err))?;
  Ok(vec![a.into_raw_fd(), b.into_raw_fd()])
}

/// `CMSG_LEN(payload)`, or null when it does not fit.
#[napi(js_name = "CMSG_LEN")]
pub fn cmsg_len(payload: f64) -> Option<f64> {
  as_size(payload).and_then(cmsg::cmsg_len).map(|n| n as f64)
}

/// `CMSG_SPACE(payload)`, or null when it does not fit.
#[napi(js_name = "CMSG_SPACE")]
pub fn cmsg_space(payload: f64) -> Option<f64> {
  as_size(payload)
    .and_then(cmsg::cmsg_space)
    .map(|n| n as f64)
}

fn as_size(value: f64) -> Option<usize> {
  (value >= 0.0 && value.fract() == 0.0 && value <= cmsg::MAX_CONTROL_LEN as f64)
    .then_some(value as usize)
}

/// A pipe as `[read, write]` descriptor numbers, both close-on-exec.
#[napi]
pub fn pipe(env: Env) -> Result<Vec<i32>> {
  let (read, write) = sendmsg_core::fd::pipe().map_err(|err| errors::throw_sys(&env, err))?;
  Ok(vec![read.into_raw_fd(), write.into_raw_fd()])
}
