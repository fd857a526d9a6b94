//! The sending direction: JavaScript owns the queue and its promises (lib/socket/send-queue.ts);
//! these calls hand the kernel what it offers, in as few system calls as the socket type allows
//! (the core decides how messages share system calls), without blocking.
//!
//! Each returns the progress made: bytes on a stream (possibly ending inside a message), whole
//! messages otherwise. Zero progress means the kernel is full: the socket then waits for
//! writability itself (or, for a datagram addressed to a full receiver, leaves JavaScript to retry
//! on a timer; see [`Writing::AwaitingRetry`]), and JavaScript asks [`socket_writing`] which.
//! An error is thrown as a Node-style error; the progress made before it is reported by this
//! call, the error by the next one, as `sendmmsg` does.

use std::cell::RefCell;
use std::io::IoSlice;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use nix::errno::Errno;
use nix::sys::socket::{SockaddrLike, UnixAddr};
use sendmsg_core::batch::{self, Outgoing, SendScratch};
use sendmsg_core::cmsg::{self, ControlBuffer};
use sendmsg_core::message::{self, SendError};
use sendmsg_core::socket::SocketKind;
use sendmsg_core::SysError;

use super::socket::{EventSocket, Writing};
use super::socket_of;
use crate::{errors, outgoing};

thread_local! {
  static SEND_SCRATCH: RefCell<SendScratch> = RefCell::new(SendScratch::default());
  static SEND_CONTROL: RefCell<ControlBuffer> = RefCell::new(ControlBuffer::default());
}

/// Where the socket's writing stands, for JavaScript to know what to wait for after a send that
/// made no progress.
#[napi(string_enum = "camelCase")]
pub enum WritingState {
  Idle,
  AwaitingWritable,
  AwaitingRetry,
}

#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn socket_writing(env: Env, socket: Unknown<'_>) -> Result<WritingState> {
  Ok(match socket_of(&env, socket)?.writing() {
    Writing::Idle => WritingState::Idle,
    Writing::AwaitingWritable => WritingState::AwaitingWritable,
    Writing::AwaitingRetry => WritingState::AwaitingRetry,
  })
}

fn open_socket<'a>(env: &Env, socket: Unknown<'_>) -> Result<&'a std::rc::Rc<EventSocket>> {
  let socket = socket_of(env, socket)?;
  if !socket.is_open() {
    return Err(errors::throw_sys(
      env,
      SysError::new("sendmsg", Errno::EBADF),
    ));
  }
  // A call is a retry, or a send after one: the timer's wait is over.
  if socket.writing() == Writing::AwaitingRetry {
    let _ = socket.set_writing(Writing::Idle);
  }
  Ok(socket)
}

/// The kernel took nothing: wait for it as the message's kind requires.
fn wait_for_room(socket: &EventSocket, addressed: bool) -> Result<f64> {
  let writing = if addressed && socket.kind == SocketKind::Datagram {
    Writing::AwaitingRetry
  } else {
    Writing::AwaitingWritable
  };
  socket
    .set_writing(writing)
    .map_err(|err| errors::throw_sys(&Env::from_raw(socket.env), err))?;
  Ok(0.0)
}

/// Sends one message of one buffer, with descriptors, a destination (datagrams) and other
/// control messages, as the single queued message (a request, a reply) is sent.
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, data: Uint8Array, fds?: number[] | undefined | null, address?: Uint8Array | undefined | null, ancillary?: Array<[number, number, Uint8Array]> | undefined | null"
)]
pub fn socket_send(
  env: Env,
  socket: Unknown<'_>,
  data: &[u8],
  fds: Option<Vec<i32>>,
  address: Option<&[u8]>,
  ancillary: Option<Vec<(i32, i32, &[u8])>>,
) -> Result<f64> {
  let socket = open_socket(&env, socket)?;
  let destination = outgoing::destination(&env, address)?;
  let fds = fds.unwrap_or_default();
  let result = match ancillary {
    None => SEND_CONTROL.with_borrow_mut(|control| {
      cmsg::encode_rights_into(control, &fds)
        .map_err(|_| SendError::Sys(SysError::new("sendmsg", Errno::ENOBUFS)))?;
      send_one(socket, data, control, destination.as_ref())
    }),
    Some(items) => {
      let mut items = items;
      let packed: Vec<u8> = fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect();
      if !fds.is_empty() {
        items.push((libc::SOL_SOCKET, libc::SCM_RIGHTS, &packed));
      }
      let mut control = outgoing::control(&env, &items)?;
      send_one(socket, data, &mut control, destination.as_ref())
    }
  };
  match result {
    Ok(sent) if socket.kind == SocketKind::Stream => Ok(sent as f64),
    Ok(_) => Ok(1.0),
    Err(SendError::Sys(err)) if err.errno == Errno::EAGAIN => {
      wait_for_room(socket, destination.is_some())
    }
    Err(err) => Err(errors::throw_send(&env, err)),
  }
}

fn send_one(
  socket: &EventSocket,
  data: &[u8],
  control: &mut ControlBuffer,
  destination: Option<&UnixAddr>,
) -> std::result::Result<usize, SendError> {
  message::send_with_kind(
    socket.fd,
    socket.kind,
    &[IoSlice::new(data)],
    control,
    libc::MSG_DONTWAIT,
    destination.map(|address| address as &dyn SockaddrLike),
  )
}

/// The property names of a queued message (lib/send-queue.ts `QueuedSend`), made once per call:
/// a key used for many lookups is internalized by the engine once, not at every lookup.
struct QueueKeys {
  parts: sys::napi_value,
  fds: sys::napi_value,
  address: sys::napi_value,
  sent: sys::napi_value,
}

impl QueueKeys {
  fn new(env: sys::napi_env) -> Self {
    let key = |name: &str| crate::js_call::value::string(env, name);
    Self {
      parts: key("parts"),
      fds: key("fds"),
      address: key("address"),
      sent: key("sent"),
    }
  }
}

/// The queued messages of one call, read into flat buffers: no allocation per message.
#[derive(Default)]
struct QueuedBatch<'a> {
  /// Every message's remaining data, in order; `spans[i]` says which are message i's.
  iovecs: Vec<IoSlice<'a>>,
  /// Every message's descriptors, in order.
  fds: Vec<i32>,
  /// Per message: its iovecs, its descriptors, and its destination (an index into `addresses`).
  spans: Vec<(
    std::ops::Range<usize>,
    std::ops::Range<usize>,
    Option<usize>,
  )>,
  addresses: Vec<UnixAddr>,
}

fn get(
  env: sys::napi_env,
  object: sys::napi_value,
  key: sys::napi_value,
) -> Option<sys::napi_value> {
  let mut value = std::ptr::null_mut();
  // SAFETY: env is live; object and key belong to it. A getter that throws leaves an exception
  // pending, which the caller's failure path reports.
  let status = unsafe { sys::napi_get_property(env, object, key, &mut value) };
  (status == sys::Status::napi_ok).then_some(value)
}

fn is_undefined(env: sys::napi_env, value: sys::napi_value) -> bool {
  let mut kind = sys::ValueType::napi_undefined;
  // SAFETY: a value of env.
  unsafe { sys::napi_typeof(env, value, &mut kind) };
  kind == sys::ValueType::napi_undefined || kind == sys::ValueType::napi_null
}

fn bytes_of<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a [u8]> {
  // SAFETY: a value of env; `&[u8]` accepts only a Uint8Array and borrows its memory, which the
  // queue keeps alive for the duration of the call.
  unsafe { <&[u8] as FromNapiValue>::from_napi_value(env, value) }.ok()
}

fn array_length(env: sys::napi_env, array: sys::napi_value) -> Option<u32> {
  let mut length = 0;
  // SAFETY: a value of env; a non-array fails.
  let status = unsafe { sys::napi_get_array_length(env, array, &mut length) };
  (status == sys::Status::napi_ok).then_some(length)
}

fn element(env: sys::napi_env, array: sys::napi_value, index: u32) -> Option<sys::napi_value> {
  let mut value = std::ptr::null_mut();
  // SAFETY: a value of env.
  let status = unsafe { sys::napi_get_element(env, array, index, &mut value) };
  (status == sys::Status::napi_ok).then_some(value)
}

impl<'a> QueuedBatch<'a> {
  /// Reads `queue[from..from + count]`; None when an entry is not what the queue holds.
  fn read(env: &Env, queue: sys::napi_value, from: u32, count: u32) -> Result<Option<Self>> {
    let raw = env.raw();
    let keys = QueueKeys::new(raw);
    let mut batch = Self::default();
    batch.spans.reserve(count as usize);
    for i in from..from + count {
      let Some(entry) = element(raw, queue, i) else {
        return Ok(None);
      };
      let (Some(parts), Some(fds), Some(address), Some(sent)) = (
        get(raw, entry, keys.parts),
        get(raw, entry, keys.fds),
        get(raw, entry, keys.address),
        get(raw, entry, keys.sent),
      ) else {
        return Ok(None);
      };
      let mut skip = 0u32;
      // SAFETY: a value of env; a non-number leaves skip 0 and fails.
      if unsafe { sys::napi_get_value_uint32(raw, sent, &mut skip) } != sys::Status::napi_ok {
        return Ok(None);
      }
      let mut skip = skip as usize;
      let iov_start = batch.iovecs.len();
      for k in 0..array_length(raw, parts).unwrap_or(0) {
        let Some(part) = element(raw, parts, k).and_then(|part| bytes_of(raw, part)) else {
          return Ok(None);
        };
        // A stream message the kernel took part of goes on from byte `sent`.
        if skip >= part.len() {
          skip -= part.len();
          continue;
        }
        batch.iovecs.push(IoSlice::new(&part[skip..]));
        skip = 0;
      }
      let fd_start = batch.fds.len();
      // Descriptors ride with a message's first byte only.
      if !is_undefined(raw, fds) && (sent_is_zero(raw, sent)) {
        for k in 0..array_length(raw, fds).unwrap_or(0) {
          let mut fd = -1;
          let number = element(raw, fds, k);
          // SAFETY: a value of env; a non-number fails.
          if number.is_none_or(
            |n| unsafe { sys::napi_get_value_int32(raw, n, &mut fd) } != sys::Status::napi_ok,
          ) {
            return Ok(None);
          }
          batch.fds.push(fd);
        }
      }
      let destination = if is_undefined(raw, address) {
        None
      } else {
        let Some(path) = bytes_of(raw, address) else {
          return Ok(None);
        };
        batch
          .addresses
          .push(outgoing::destination(env, Some(path))?.expect("given"));
        Some(batch.addresses.len() - 1)
      };
      batch.spans.push((
        iov_start..batch.iovecs.len(),
        fd_start..batch.fds.len(),
        destination,
      ));
    }
    Ok(Some(batch))
  }

  fn outgoing(&self) -> Vec<Outgoing<'_>> {
    self
      .spans
      .iter()
      .map(|(iovecs, fds, address)| Outgoing {
        parts: &self.iovecs[iovecs.clone()],
        fds: &self.fds[fds.clone()],
        address: address.map(|i| &self.addresses[i] as &dyn SockaddrLike),
      })
      .collect()
  }
}

fn sent_is_zero(env: sys::napi_env, sent: sys::napi_value) -> bool {
  let mut value = 1u32;
  // SAFETY: a value of env.
  unsafe { sys::napi_get_value_uint32(env, sent, &mut value) };
  value == 0
}

/// Sends `count` queued messages from `queue[from]` on, none of which carries control messages
/// other than descriptors. A partly sent stream message goes on from where it stopped, without
/// its descriptors (they went with its first byte).
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, queue: ReadonlyArray<{ parts: Uint8Array[]; fds: readonly number[] | undefined; address: Uint8Array | undefined; sent: number }>, from: number, count: number"
)]
pub fn socket_send_queued(
  env: Env,
  socket: Unknown<'_>,
  queue: Unknown<'_>,
  from: u32,
  count: u32,
) -> Result<f64> {
  let socket = open_socket(&env, socket)?;
  let Some(batch) = QueuedBatch::read(&env, queue.raw(), from, count)? else {
    return Err(errors::throw_type_error(
      &env,
      "ERR_INVALID_ARG_VALUE",
      "the send queue holds something that is not a queued message",
    ));
  };
  let outgoing = batch.outgoing();
  let sent = SEND_SCRATCH.with_borrow_mut(|scratch| match socket.kind {
    SocketKind::Stream => batch::send_stream(socket.fd, &outgoing, scratch),
    _ => batch::send_datagrams(socket.fd, &outgoing, scratch),
  });
  match sent {
    Ok(0) if !outgoing.is_empty() => wait_for_room(socket, outgoing[0].address.is_some()),
    Ok(progress) => Ok(progress as f64),
    Err(err) => Err(errors::throw_sys(&env, err)),
  }
}
