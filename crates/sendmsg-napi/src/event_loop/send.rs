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

/// One queued message as JavaScript keeps it (lib/socket/send-queue.ts `QueuedSend`), read
/// straight from the queue: no plan is built for the call.
struct Queued<'a> {
  parts: Vec<&'a [u8]>,
  fds: Vec<i32>,
  address: Option<UnixAddr>,
  /// Bytes of a stream message the kernel already took.
  sent: usize,
}

/// Reads `queue[from..from + count]`.
fn read_queue<'a>(env: &Env, queue: &Array<'a>, from: u32, count: u32) -> Result<Vec<Queued<'a>>> {
  let mut messages = Vec::with_capacity(count as usize);
  for i in from..from + count {
    let entry: Object<'a> = queue.get(i)?.ok_or_else(|| {
      errors::throw_type_error(
        env,
        "ERR_INVALID_ARG_VALUE",
        "the send queue is shorter than said",
      )
    })?;
    let parts: Vec<&'a [u8]> = entry.get_named_property("parts")?;
    let fds: Option<Vec<i32>> = entry.get_named_property("fds")?;
    let address: Option<&'a [u8]> = entry.get_named_property("address")?;
    let sent: u32 = entry.get_named_property("sent")?;
    messages.push(Queued {
      parts,
      fds: fds.unwrap_or_default(),
      address: outgoing::destination(env, address)?,
      sent: sent as usize,
    });
  }
  Ok(messages)
}

/// A stream message's parts from byte `sent` on.
fn remaining<'a>(parts: &[&'a [u8]], mut sent: usize) -> Vec<IoSlice<'a>> {
  let mut slices = Vec::with_capacity(parts.len());
  for part in parts {
    if sent >= part.len() {
      sent -= part.len();
      continue;
    }
    slices.push(IoSlice::new(&part[sent..]));
    sent = 0;
  }
  slices
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
  queue: Array<'_>,
  from: u32,
  count: u32,
) -> Result<f64> {
  let socket = open_socket(&env, socket)?;
  let queued = read_queue(&env, &queue, from, count)?;
  let iovecs: Vec<Vec<IoSlice<'_>>> = queued
    .iter()
    .map(|message| remaining(&message.parts, message.sent))
    .collect();
  let outgoing: Vec<Outgoing<'_>> = queued
    .iter()
    .zip(&iovecs)
    .map(|(message, parts)| Outgoing {
      parts,
      fds: if message.sent == 0 { &message.fds } else { &[] },
      address: message
        .address
        .as_ref()
        .map(|address| address as &dyn SockaddrLike),
    })
    .collect();
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
