//! The receiving direction: drain a readable socket, deliver each message, accept connections.
//!
//! A readable socket is drained with batched receives until the kernel has nothing more or a
//! per-event budget is spent (the poll is level-triggered: what is left is read on the loop's next
//! turn); while its traffic is request/response, with one plain `recvmsg` per readiness instead
//! (`sendmsg_core::pace` decides which). Messages are delivered one by one, each in its own callback scope, so that promise
//! reactions and `process.nextTick` callbacks run between messages as they do between Node's own
//! 'data' events. A message's descriptors are held in [`received_fds`] under an id JavaScript gets;
//! once the delivery has ended (the handler and its microtasks have run) they are settled, unless
//! JavaScript kept the message for later (buffered it), in which case it settles them itself.

use std::cell::RefCell;
use std::rc::Rc;

use napi::sys;
use nix::errno::Errno;
use sendmsg_core::batch::{self, BatchMessage, RecvBatch};
use sendmsg_core::message::ReceivedCmsg;
use sendmsg_core::pace::Read;
use sendmsg_core::socket::{self, SocketKind};
use sendmsg_core::SysError;

use super::delivery;
use super::received_fds::{self, HeldId};
use super::socket::{int32, Delivery, Event, EventSocket, Reading};
use crate::js_call::{value, CallOutcome, HandleScope};
use crate::reactor;

/// Messages per batched receive.
const BATCH_MESSAGES: usize = 64;
/// Receive-batch data kept per thread at most; larger message sizes get fewer messages per batch.
const BATCH_BYTES: usize = 4 << 20;
/// Messages (or connections) handled per readiness event before the loop gets a turn.
const EVENT_BUDGET: usize = 1024;

thread_local! {
  /// Boxed, so that taking it out and putting it back moves a pointer, not the batch.
  static RECV_BATCH: RefCell<Option<Box<RecvBatch>>> = const { RefCell::new(None) };
}

pub fn drain(socket: &Rc<EventSocket>) {
  // Taken out for the duration, so that no borrow is held while JavaScript runs; put back,
  // allocations and all, at the end.
  let mut batch = RECV_BATCH.take().unwrap_or_default();
  // Where calls into JavaScript made here do not run their microtasks before returning (the
  // reactor's poller thread), 'message' handlers get one message per task, so that what a
  // handler queued runs before the next message; the rest is read in a later task.
  let one_per_task =
    socket.delivery() == Delivery::EachInScope && !reactor::calls_drain_microtasks(socket.env);
  let mut budget = if one_per_task { 1 } else { EVENT_BUDGET };
  let per_batch = BATCH_MESSAGES.min((BATCH_BYTES / socket.slot_size).max(1));
  // One message at a time while the traffic is request/response (see sendmsg_core::pace).
  let mut read = socket.pace.start_drain();
  let mut batched_total = 0;
  let mut exhausted = false;
  while budget > 0 && socket.reading() == Reading::Started && socket.is_open() {
    let capacity = per_batch.min(budget);
    let want_addresses = socket.kind == SocketKind::Datagram;
    let space = batch::default_control_space();
    if batch
      .ensure(capacity, socket.slot_size, space, want_addresses)
      .is_err()
    {
      socket.fail_reading(SysError::new("recvmsg", Errno::ENOMEM));
      break;
    }
    let count = match read {
      Read::One => 1,
      Read::Batches => capacity,
    };
    let received = match batch.recv(socket.fd, count) {
      Ok(received) => received,
      Err(err) => {
        socket.fail_reading(err);
        break;
      }
    };
    if received == 0 {
      exhausted = true;
      break;
    }
    // Whether more may be waiting: a batch that came back full; a single read that filled a
    // stream's buffer (one that did not took every byte there was, up to a descriptor boundary).
    let more = match read {
      Read::One => {
        socket.kind == SocketKind::Stream && batch.message(0).data.len() == socket.slot_size
      }
      Read::Batches => received == count,
    };
    deliver(socket, &mut batch, received);
    budget -= received.min(budget);
    if read == Read::Batches {
      batched_total += received;
    }
    if !more {
      exhausted = true;
      break;
    }
    if read == Read::One {
      socket.pace.more_waiting();
      read = Read::Batches;
    }
    if one_per_task {
      // The budget of one is spent: read on in a later task.
      defer_drain(socket);
    }
  }
  if read == Read::Batches {
    socket.pace.batches_drained(batched_total, exhausted);
  }
  // Closes the descriptors of messages never delivered (the socket closed mid-batch).
  batch.release();
  RECV_BATCH.set(Some(batch));
}

/// Zero bytes and no control data: the end of a stream. On a seqpacket socket the same shape is
/// also a legal empty message, so the peer's shutdown decides.
fn is_end(socket: &EventSocket, message: &BatchMessage<'_>) -> bool {
  if !message.data.is_empty()
    || message.fd_count > 0
    || message.has_pidfd
    || !message.other.is_empty()
  {
    return false;
  }
  match socket.kind {
    SocketKind::Stream => true,
    SocketKind::SeqPacket => socket::peer_has_shut_down(socket.fd),
    SocketKind::Datagram => false,
  }
}

/// The values of one message's delivery call, built while the batch is borrowed.
struct MessageArgs {
  slab: sys::napi_value,
  offset: usize,
  length: usize,
  flags: i32,
  fd_count: usize,
  has_pidfd: bool,
  address: sys::napi_value,
  ancillary: sys::napi_value,
}

fn message_args(env: sys::napi_env, message: &BatchMessage<'_>) -> Option<MessageArgs> {
  let (slab, offset) = delivery::place(env, message.data)?;
  let address = message
    .address
    .as_ref()
    .and_then(socket::address_bytes)
    .map(|bytes| value::string(env, &String::from_utf8_lossy(&bytes)))
    .unwrap_or_else(|| value::undefined(env));
  let ancillary = if message.other.is_empty() {
    value::undefined(env)
  } else {
    ancillary_value(env, message.other)
  };
  Some(MessageArgs {
    slab,
    offset,
    length: message.data.len(),
    flags: message.flags,
    fd_count: message.fd_count,
    has_pidfd: message.has_pidfd,
    address,
    ancillary,
  })
}

/// Where delivering one message leaves the batch.
enum Step {
  Next,
  /// The end of the stream, a failure, or the socket closed: no more messages from this batch.
  Stop,
}

/// Delivers a received batch: per message in its own callback scope, or (batched delivery, read
/// per message since JavaScript may switch during a delivery) with plain calls followed by one
/// `batch_end` call in a callback scope, which runs what all of them queued.
fn deliver(socket: &Rc<EventSocket>, batch: &mut RecvBatch, received: usize) {
  let mut plain_calls = 0;
  for i in 0..received {
    let batched = socket.delivery() == Delivery::Batched;
    if let Step::Stop = deliver_one(socket, batch, i, batched) {
      break;
    }
    plain_calls += usize::from(batched);
  }
  if plain_calls > 0 {
    if let Some(js) = socket.js() {
      js.call(Event::BatchEnd, &[]);
    }
  }
  // The end of the stream comes after the messages before it, whichever delivery they had.
  if socket.end_pending() && socket.is_open() {
    socket.call(Event::End, &[]);
  }
}

fn deliver_one(socket: &Rc<EventSocket>, batch: &mut RecvBatch, i: usize, batched: bool) -> Step {
  let env = socket.env;
  if !socket.is_open() {
    return Step::Stop;
  }
  let message = batch.message(i);
  if is_end(socket, &message) {
    socket.finish_reading_at_end();
    return Step::Stop;
  }
  let Some(args) = message_args(env, &message) else {
    socket.fail_reading(SysError::new("recvmsg", Errno::ENOMEM));
    return Step::Stop;
  };
  // One set for the message: its SCM_RIGHTS descriptors, then the sender's pidfd (SCM_PIDFD) if
  // one came, at index `fd_count`; settling the set closes whatever nobody took of either.
  let fds = (args.fd_count > 0 || args.has_pidfd).then(|| {
    let rights: Vec<_> = batch.take_fds(i).collect();
    received_fds::hold(rights.into_iter().chain(batch.take_pidfd(i)))
  });
  let fds_value = match fds {
    Some(id) => value::double(env, id as f64),
    None => value::undefined(env),
  };
  // Held across the call: the handler may close the socket, which drops its own reference.
  let Some(js) = socket.js() else {
    return Step::Stop;
  };
  let args = [
    args.slab,
    int32(env, args.offset as i32),
    int32(env, args.length as i32),
    int32(env, args.flags),
    fds_value,
    int32(env, args.fd_count as i32),
    value::boolean(env, args.has_pidfd),
    args.address,
    args.ancillary,
  ];
  let outcome = if batched {
    js.call_plain(env, Event::Message, &args)
  } else {
    js.call(Event::Message, &args)
  };
  // JavaScript returns true when it kept the message for a later delivery (a backlog, an
  // iterator, a batch), which then settles it. Otherwise the delivery is over once the call's
  // scope has closed and its microtasks have run, that is now.
  let kept = matches!(outcome, CallOutcome::Returned(result) if is_true(env, result));
  match (fds, kept) {
    (Some(id), false) => settle_after_microtasks(env, id),
    // Settled by JavaScript when its later delivery ends, or by the socket when it closes.
    (Some(id), true) => socket.note_kept(id),
    (None, _) => {}
  }
  Step::Next
}

/// Ends a message's delivery once the microtasks its handler queued have run: now where the call
/// into JavaScript ran them, in a later task where it could not (the poller thread).
fn settle_after_microtasks(env: sys::napi_env, id: HeldId) {
  if reactor::calls_drain_microtasks(env)
    || reactor::defer(env, Box::new(move || received_fds::settle(id))).is_err()
  {
    // Now, or the environment is going and nothing will run later.
    received_fds::settle(id);
  }
}

/// Reads on in a later task (one message per task: see `drain`).
fn defer_drain(socket: &Rc<EventSocket>) {
  let socket = Rc::clone(socket);
  let _ = reactor::defer(
    socket.env,
    Box::new(move || {
      if socket.is_open() && socket.reading() == Reading::Started {
        if let Some(_scope) = HandleScope::open(socket.env) {
          drain(&socket);
        }
      }
    }),
  );
}

pub fn accept_all(socket: &Rc<EventSocket>) {
  for _ in 0..EVENT_BUDGET {
    if !socket.is_open() || socket.reading() != Reading::Started {
      return;
    }
    match socket::accept(socket.fd) {
      Ok(Some(accepted)) => {
        // Owned by the handle until a socket takes it over; closed below if none did (a handler
        // that threw, or a worker terminated before it could).
        let connection = received_fds::hold([accepted]);
        socket.call(
          Event::Connection,
          &[value::double(socket.env, connection as f64)],
        );
        received_fds::settle(connection);
      }
      Ok(None) => return,
      Err(err) => {
        // EMFILE and friends: report and keep listening.
        socket.emit_error(err);
        return;
      }
    }
  }
}

fn ancillary_value(env: sys::napi_env, items: &[ReceivedCmsg]) -> sys::napi_value {
  let mut array = std::ptr::null_mut();
  // SAFETY: env is live; every value created belongs to it. (A setter someone defined on
  // Array.prototype may run here; nothing of this socket is borrowed, so it finds a consistent
  // socket whatever it does.)
  unsafe {
    sys::napi_create_array_with_length(env, items.len(), &mut array);
    for (i, item) in items.iter().enumerate() {
      let data = match item {
        ReceivedCmsg::Data { data, .. } => data.as_slice(),
        ReceivedCmsg::Fds { .. } => &[],
      };
      let mut triple = std::ptr::null_mut();
      sys::napi_create_array_with_length(env, 3, &mut triple);
      sys::napi_set_element(env, triple, 0, value::int32(env, item.level()));
      sys::napi_set_element(env, triple, 1, value::int32(env, item.kind()));
      sys::napi_set_element(env, triple, 2, value::buffer_copy(env, data));
      sys::napi_set_element(env, array, i as u32, triple);
    }
  }
  array
}

fn is_true(env: sys::napi_env, value: sys::napi_value) -> bool {
  let mut result = false;
  // SAFETY: env is live; a non-boolean value leaves result false.
  unsafe { sys::napi_get_value_bool(env, value, &mut result) == sys::Status::napi_ok && result }
}
