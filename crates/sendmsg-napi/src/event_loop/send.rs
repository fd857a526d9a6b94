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
  if result.is_ok() {
    socket.pace.note_sent();
  }
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

/// Sends `partCounts.length` queued messages, none of which carries control messages other than
/// descriptors, laid out by JavaScript (lib/send-queue.ts `#sendBatch`) as named flat arrays: two
/// Node-API calls per message instead of a dozen property reads.
///
/// - `parts`: every message's data still to send, in order; message i owns the next
///   `partCounts[i]` of them (a stream message the kernel took part of lists what is left).
/// - `fds`: every message's descriptors, in order; message i owns the next `fdCounts[i]`.
/// - `addresses`: per message, its destination (datagram sockets), or absent for all.
#[napi(
  ts_args_type = "socket: ExternalObject<'UnixSocket'>, parts: Uint8Array[], partCounts: Uint32Array, fds: Int32Array, fdCounts: Uint32Array, addresses?: Array<Uint8Array | undefined> | undefined | null"
)]
pub fn socket_send_queued(
  env: Env,
  socket: Unknown<'_>,
  parts: Vec<&[u8]>,
  part_counts: &[u32],
  fds: &[i32],
  fd_counts: &[u32],
  addresses: Option<Vec<Option<&[u8]>>>,
) -> Result<f64> {
  let socket = open_socket(&env, socket)?;
  let malformed = || {
    errors::throw_type_error(
      &env,
      "ERR_INVALID_ARG_VALUE",
      "the send batch's counts do not fit its arrays",
    )
  };
  if part_counts.len() != fd_counts.len()
    || addresses
      .as_ref()
      .is_some_and(|list| list.len() != part_counts.len())
  {
    return Err(malformed());
  }
  let iovecs: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
  let destinations: Vec<Option<UnixAddr>> = match &addresses {
    Some(list) => list
      .iter()
      .map(|address| outgoing::destination(&env, *address))
      .collect::<Result<_>>()?,
    None => Vec::new(),
  };
  let mut outgoing = Vec::with_capacity(part_counts.len());
  let (mut part, mut fd) = (0usize, 0usize);
  for (i, (&part_count, &fd_count)) in part_counts.iter().zip(fd_counts).enumerate() {
    let (part_end, fd_end) = (part + part_count as usize, fd + fd_count as usize);
    let (Some(message_parts), Some(message_fds)) =
      (iovecs.get(part..part_end), fds.get(fd..fd_end))
    else {
      return Err(malformed());
    };
    outgoing.push(Outgoing {
      parts: message_parts,
      fds: message_fds,
      address: destinations
        .get(i)
        .and_then(Option::as_ref)
        .map(|address| address as &dyn SockaddrLike),
    });
    (part, fd) = (part_end, fd_end);
  }
  if part != iovecs.len() || fd != fds.len() {
    return Err(malformed());
  }
  let sent = SEND_SCRATCH.with_borrow_mut(|scratch| match socket.kind {
    SocketKind::Stream => batch::send_stream(socket.fd, &outgoing, scratch),
    _ => batch::send_datagrams(socket.fd, &outgoing, scratch),
  });
  match sent {
    Ok(0) if !outgoing.is_empty() => wait_for_room(socket, outgoing[0].address.is_some()),
    Ok(progress) => {
      socket.pace.note_sent();
      Ok(progress as f64)
    }
    Err(err) => Err(errors::throw_sys(&env, err)),
  }
}
