//! Sockets in the event loop: the native half of `UnixSocket` and `UnixServer` (lib/socket/).
//!
//! Follow a message out: `UnixSocket.send()` queues it (lib/socket/send-queue.ts) and calls
//! [`send::socket_send`] or [`send::socket_send_queued`], which hand it to the core
//! (`sendmsg_core::message::send`, `sendmsg_core::batch`), which makes the system call.
//! Follow one in: the reactor reports the socket readable to [`socket::EventSocket::ready`],
//! [`receive::drain`] receives a batch through the core and calls JavaScript's `message` event
//! once per message, with the message's descriptors held in [`received_fds`] under an id.
//!
//! JavaScript holds a socket as an `ExternalObject<'UnixSocket'>` and calls the plain functions
//! below with it; the socket calls JavaScript back through the [`SocketEvents`] it was opened with.

mod delivery;
mod handle;
mod receive;
mod received_fds;
mod send;
mod socket;
mod teardown;
mod udp;

use std::os::fd::{IntoRawFd, OwnedFd};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use nix::errno::Errno;
use sendmsg_core::socket::{self as core_socket, SocketKind};
use sendmsg_core::SysError;

use crate::errors;
use crate::js_call::Reference;
use handle::{handle_value, new_handle, HandleKind, Handled};
pub(crate) use received_fds::hold_own;
use socket::{EventSocket, Events, JsSide, Role, Writing};

/// An AF_UNIX socket type, as the TypeScript layer names it.
#[napi(string_enum = "lowercase")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
  Stream,
  Seqpacket,
  Dgram,
}

impl From<SocketType> for SocketKind {
  fn from(socket_type: SocketType) -> Self {
    match socket_type {
      SocketType::Stream => SocketKind::Stream,
      SocketType::Seqpacket => SocketKind::SeqPacket,
      SocketType::Dgram => SocketKind::Datagram,
    }
  }
}

/// How to open a socket in the event loop.
#[napi(object)]
pub struct SocketOpenOptions {
  #[napi(js_name = "type")]
  pub socket_type: SocketType,
  /// A listening socket: it accepts connections instead of receiving messages.
  pub listening: bool,
  /// The largest message (or stream chunk) received in one piece.
  pub max_message_size: u32,
}

/// What a socket calls, each with `this` = the owner it was opened with. `message` returns
/// whether JavaScript kept the message for a later delivery (then it settles its descriptors).
#[napi(object, object_to_js = false)]
pub struct SocketEvents<'a> {
  #[napi(
    ts_type = "(this: any, slab: ArrayBuffer, offset: number, length: number, flags: number, fds: number | undefined, fdCount: number, pidfd: boolean, address: string | undefined, ancillary: Array<[number, number, Buffer]> | undefined) => boolean"
  )]
  pub message: Option<Unknown<'a>>,
  /// Batched delivery: called after the messages of one receive, in a callback scope.
  #[napi(ts_type = "(this: any) => void")]
  pub batch_end: Option<Unknown<'a>>,
  #[napi(ts_type = "(this: any) => void")]
  pub writable: Option<Unknown<'a>>,
  #[napi(ts_type = "(this: any) => void")]
  pub end: Option<Unknown<'a>>,
  #[napi(ts_type = "(this: any, error: Error) => void")]
  pub error: Option<Unknown<'a>>,
  #[napi(ts_type = "(this: any, connection: number) => void")]
  pub connection: Option<Unknown<'a>>,
  /// UDP: an ICMP error from the error queue, as a Node-style error with its details.
  #[napi(ts_type = "(this: any, error: Error) => void")]
  pub icmp_error: Option<Unknown<'a>>,
}

/// What JavaScript holds: the socket, closed when JavaScript lets go of it.
struct SocketHandle(Rc<EventSocket>);

impl Handled for SocketHandle {
  const KIND: &'static HandleKind = &HandleKind("UnixSocket");
}

impl Drop for SocketHandle {
  /// Collected while idle (or the environment is going): nothing else can close it now.
  fn drop(&mut self) {
    self.0.close();
  }
}

fn socket_of<'a>(env: &Env, socket: Unknown<'_>) -> Result<&'a Rc<EventSocket>> {
  handle_value::<SocketHandle>(env, socket.raw()).map(|handle| &handle.0)
}

fn function_ref(env: &Env, value: Option<Unknown<'_>>) -> Result<Option<Reference>> {
  value
    .filter(|value| matches!(value.get_type(), Ok(ValueType::Function)))
    .map(|value| Reference::new(env.raw(), value.raw(), true))
    .transpose()
}

/// Where an adopted descriptor came from, so that a failed adoption gives it back unchanged.
enum Source {
  /// A number the caller holds: given back by simply not closing it.
  Number,
  /// Slot `index` of held set `id` (an accepted connection, a ReceivedFd).
  Held(received_fds::HeldId, usize),
}

impl Source {
  fn give_back(self, fd: OwnedFd) {
    match self {
      Source::Number => {
        let _ = fd.into_raw_fd();
      }
      Source::Held(id, index) => received_fds::restore(id, index, fd),
    }
  }
}

/// Opens something on the descriptor `source` names (see [`take_source`]) with `open`, which owns
/// it if it succeeds and hands it back with its error otherwise; a descriptor handed back goes
/// back where it came from. The one adoption path of every socket kind.
pub(super) fn adopt<T>(
  env: &Env,
  source: f64,
  index: i32,
  open: impl FnOnce(OwnedFd) -> std::result::Result<T, OpenError>,
) -> Result<T> {
  let (fd, source) = take_source(env, source, index)?;
  open(fd).map_err(|(err, fd)| {
    if let Some(fd) = fd {
      source.give_back(fd);
    }
    err
  })
}

/// Takes over the descriptor `source` names: the descriptor number itself when `index` is -1,
/// otherwise slot `index` of the held set whose id `source` is.
fn take_source(env: &Env, source: f64, index: i32) -> Result<(OwnedFd, Source)> {
  if index < 0 {
    let fd = if source.fract() == 0.0 && (0.0..=i32::MAX as f64).contains(&source) {
      source as i32
    } else {
      -1
    };
    // Given back (not closed) if the adoption fails: see Source::give_back.
    return Ok((received_fds::owned_from_number(env, fd)?, Source::Number));
  }
  let id = received_fds::held_id(source);
  let fd = received_fds::take(id, index as usize).ok_or_else(|| {
    errors::throw_state_error(
      env,
      "ERR_SENDMSG_FD_RELEASED",
      "This descriptor was taken or closed",
    )
  })?;
  Ok((fd, Source::Held(id, index as usize)))
}

/// Opens a socket in the event loop on the descriptor `source` names (a descriptor number when
/// `index` is -1, otherwise slot `index` of the held set `source`), which it owns from then on. If
/// opening fails, the descriptor is given back as it was (the number stays the caller's, the slot
/// holds it again) and the error is thrown. `owner` is `this` for the `events` calls.
#[napi(
  ts_args_type = "source: number, index: number, options: SocketOpenOptions, owner: object, events: SocketEvents",
  ts_return_type = "ExternalObject<'UnixSocket'>"
)]
pub fn socket_open<'env>(
  env: &'env Env,
  source: f64,
  index: i32,
  options: SocketOpenOptions,
  owner: Unknown<'env>,
  events: SocketEvents<'env>,
) -> Result<Unknown<'env>> {
  adopt(env, source, index, |fd| {
    open(env, fd, options, owner, events)
  })
}

/// An open that failed: its error, and the descriptor when it is still to be given back.
pub(super) type OpenError = (Error, Option<OwnedFd>);

fn open<'env>(
  env: &'env Env,
  fd: OwnedFd,
  options: SocketOpenOptions,
  owner: Unknown<'env>,
  events: SocketEvents<'env>,
) -> std::result::Result<Unknown<'env>, OpenError> {
  let events = match socket_events(env, events) {
    Ok(events) => events,
    Err(err) => return Err((err, Some(fd))),
  };
  let js = match JsSide::new(env.raw(), owner.raw(), events) {
    Ok(js) => js,
    Err(err) => return Err((err, Some(fd))),
  };
  let role = if options.listening {
    Role::Listener
  } else {
    Role::Connection
  };
  let kind = options.socket_type.into();
  let slot_size = options.max_message_size as usize;
  open_event_socket(env, fd, kind, role, slot_size, js, None)
}

/// Opens `fd` in the event loop as a socket of `kind` and `role`, and gives JavaScript its handle.
fn open_event_socket<'env>(
  env: &'env Env,
  fd: OwnedFd,
  kind: SocketKind,
  role: Role,
  slot_size: usize,
  js: JsSide,
  udp: Option<udp::UdpState>,
) -> std::result::Result<Unknown<'env>, OpenError> {
  let socket = EventSocket::open(env, fd, kind, role, slot_size, js, udp)
    .map_err(|(err, fd)| (errors::throw_sys(env, err), Some(fd)))?;
  let tracked = teardown::track(env.raw(), &socket)
    .and_then(|()| new_handle(env.raw(), SocketHandle(socket.clone())));
  match tracked {
    // SAFETY: a value just made in this env.
    Ok(handle) => Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), handle) }),
    Err(err) => Err((err, socket.release())),
  }
}

fn socket_events(env: &Env, events: SocketEvents<'_>) -> Result<Events> {
  Ok(Events {
    message: function_ref(env, events.message)?,
    batch_end: function_ref(env, events.batch_end)?,
    writable: function_ref(env, events.writable)?,
    end: function_ref(env, events.end)?,
    error: function_ref(env, events.error)?,
    connection: function_ref(env, events.connection)?,
    icmp_error: function_ref(env, events.icmp_error)?,
  })
}

fn sys_result<T>(env: &Env, result: std::result::Result<T, SysError>) -> Result<T> {
  result.map_err(|err| errors::throw_sys(env, err))
}

/// Whether JavaScript wants messages (or connections) delivered now.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, on: boolean")]
pub fn socket_set_reading(env: Env, socket: Unknown<'_>, on: bool) -> Result<()> {
  let socket = socket_of(&env, socket)?;
  sys_result(&env, socket.set_reading(on))
}

/// Connects to `path`: true when connected, false when in progress (the socket then calls
/// `writable` once it is settled; see [`socket_finish_connect`]).
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, path: Uint8Array")]
pub fn socket_connect(env: Env, socket: Unknown<'_>, path: &[u8]) -> Result<bool> {
  let socket = socket_of(&env, socket)?;
  let address = core_socket::unix_address(path)
    .map_err(|err| errors::throw_sys(&env, SysError::new("connect", err.errno)))?;
  match core_socket::connect(socket.fd, &address) {
    Ok(()) => Ok(true),
    Err(err) if err.errno == Errno::EINPROGRESS || err.errno == Errno::EAGAIN => {
      sys_result(&env, socket.set_writing(Writing::AwaitingWritable))?;
      Ok(false)
    }
    Err(err) => Err(errors::throw_sys(&env, err)),
  }
}

/// Once a connect in progress is settled: throws how it failed, if it did (`SO_ERROR`).
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn socket_finish_connect(env: Env, socket: Unknown<'_>) -> Result<()> {
  let socket = socket_of(&env, socket)?;
  // SAFETY: the socket owns fd and is open (JavaScript asks only then).
  let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.fd) };
  let errno = sys_result(&env, core_socket::take_error(borrowed))?;
  if errno == 0 {
    return Ok(());
  }
  Err(errors::throw_sys(
    &env,
    SysError::new("connect", Errno::from_raw(errno)),
  ))
}

/// Ends the sending direction: the peer reads end-of-file after what was sent so far.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn socket_shutdown(env: Env, socket: Unknown<'_>) -> Result<()> {
  let socket = socket_of(&env, socket)?;
  if !socket.is_open() {
    return Ok(());
  }
  sys_result(&env, core_socket::shutdown_write(socket.fd))
}

/// Closes the descriptor; no event is delivered after this. Idempotent.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn socket_close(env: Env, socket: Unknown<'_>) -> Result<()> {
  socket_of(&env, socket)?.close();
  Ok(())
}

/// The descriptor's number (owned by the socket).
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>")]
pub fn socket_fd(env: Env, socket: Unknown<'_>) -> Result<i32> {
  let socket = socket_of(&env, socket)?;
  Ok(if socket.is_open() { socket.fd } else { -1 })
}

/// Batched delivery (one plain call per message and a `batchEnd` call after each receive) or one
/// call per message in its own callback scope.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, batched: boolean")]
pub fn socket_set_batched(env: Env, socket: Unknown<'_>, batched: bool) -> Result<()> {
  socket_of(&env, socket)?.set_delivery(if batched {
    socket::Delivery::Batched
  } else {
    socket::Delivery::EachInScope
  });
  Ok(())
}

/// Whether the socket keeps the event loop alive while it waits.
#[napi(ts_args_type = "socket: ExternalObject<'UnixSocket'>, referenced: boolean")]
pub fn socket_set_referenced(env: Env, socket: Unknown<'_>, referenced: bool) -> Result<()> {
  socket_of(&env, socket)?.set_referenced(referenced);
  Ok(())
}

/// Whether this runtime can run sockets in its event loop.
#[napi]
pub fn event_loop_available() -> bool {
  crate::reactor::available()
}
