//! The receiving direction of a UDP socket: drain datagrams with their metadata, and read ICMP
//! errors from the error queue.
//!
//! Datagrams are received in batches by the core's `RecvBatch` (`recvmmsg`), straight into
//! Buffers of a [`SlotPool`] (a long datagram or GRO run is handed to JavaScript in the Buffer it
//! arrived in, without a copy; a short one is copied into the slab), and delivered one `message`
//! call each, as for AF_UNIX sockets (receive.rs), with their metadata as arguments. A GRO run is
//! delivered whole with its stride, or one datagram per call (`split_segments`), as views of it.
//!
//! An ICMP error leaves the socket polling POLLERR until the error queue is read; libuv reports
//! it as a failed poll, and `EventSocket::ready` calls [`drain_errors`]; the poller thread
//! reports it as readable, and a drain that finds nothing to read calls it. A receive can
//! also meet the error as the socket's pending error (ECONNREFUSED and friends): that is not the
//! end of the socket, so the queue is read and receiving goes on.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::sys;
use nix::errno::Errno;
use sendmsg_core::batch::RecvBatch;
use sendmsg_core::udp::errqueue::{self, ErrorOrigin, QueuedError};
use sendmsg_core::udp::send::is_icmp_errno;
use sendmsg_core::udp::{recv, RecvMeta};
use sendmsg_core::SysError;

use super::super::delivery::SlotPool;
use super::super::socket::{int32, Event, EventSocket, Reading};
use crate::errors;
use crate::js_call::value;

/// Datagrams (or GRO runs) per batched receive.
const BATCH_MESSAGES: usize = 64;
/// Receive-batch data kept per thread at most.
const BATCH_BYTES: usize = 4 << 20;
/// Datagrams handled per readiness event before the loop gets a turn.
const EVENT_BUDGET: usize = 1024;
/// ICMP errors read per readiness event; more are read on the next (the poll fires again).
const ERROR_BUDGET: usize = 64;

thread_local! {
  static UDP_BATCH: RefCell<RecvBatch> = RefCell::new(RecvBatch::default());
  /// Where datagrams are received: Buffers, the long ones handed out without a copy.
  static SLOTS: RefCell<SlotPool> = RefCell::new(SlotPool::default());
}

/// Strings made for addresses during one drain, reused while the address repeats (a peer sends
/// many datagrams in a row).
#[derive(Default)]
struct AddressStrings {
  last: Option<(IpAddr, sys::napi_value)>,
}

impl AddressStrings {
  fn get(&mut self, env: sys::napi_env, address: Option<IpAddr>) -> sys::napi_value {
    let Some(address) = address else {
      return value::undefined(env);
    };
    match self.last {
      Some((last, string)) if last == address => string,
      _ => {
        let string = value::string(env, &address.to_string());
        self.last = Some((address, string));
        string
      }
    }
  }
}

pub fn drain(socket: &Rc<EventSocket>) {
  let Some(state) = socket.udp.as_ref() else {
    return;
  };
  let mut batch = UDP_BATCH.take();
  let mut pool = SLOTS.take();
  let mut budget = EVENT_BUDGET;
  let slot_size = socket.slot_size;
  let per_batch = BATCH_MESSAGES.min((BATCH_BYTES / slot_size).max(1));
  // Both live in the readiness call's handle scope, which outlasts this drain.
  let mut sources = AddressStrings::default();
  let mut locals = AddressStrings::default();
  let mut placed = Vec::with_capacity(per_batch);
  while budget > 0 && socket.reading() == Reading::Started && socket.is_open() {
    let capacity = per_batch.min(budget);
    if recv::prepare(&mut batch, capacity, slot_size).is_err() {
      socket.fail_reading(SysError::new("recvmsg", Errno::ENOMEM));
      break;
    }
    let Some((slots, lent_len)) = pool.slots(socket.env, capacity, slot_size) else {
      socket.fail_reading(SysError::new("recvmsg", Errno::ENOMEM));
      break;
    };
    // SAFETY: the pool's Buffers, which JavaScript has not seen; the messages are taken out of
    // them (below) before any JavaScript runs.
    let result = unsafe { batch.recv_into(socket.fd, capacity, slots, lent_len) };
    let received = match result {
      Ok(received) => received,
      Err(err) if is_icmp_errno(err.errno) => {
        // An earlier datagram's ICMP error, reported by this receive: read the queue for its
        // details and go on receiving.
        report_pending(socket, err.errno);
        budget -= 1;
        continue;
      }
      Err(err) => {
        socket.fail_reading(err);
        break;
      }
    };
    if received == 0 {
      // Readable with nothing to read: a reactor that reports POLLERR as readiness (the poller
      // thread) means a queued ICMP error. Read it, or the poll reports it again at once.
      if budget == EVENT_BUDGET {
        drain_errors(socket);
      }
      break;
    }
    // Every message is handed out (copied or its Buffer given) and read before JavaScript sees
    // the first: after that, the batch's view of the slots is not touched again.
    placed.clear();
    for i in 0..received {
      let message = batch.message(i);
      let meta = recv::meta_of(&message);
      let Some((slab, offset)) = pool.hand_out(socket.env, i, message.data, message.lent) else {
        break;
      };
      placed.push((slab, offset, meta, message.flags));
    }
    pool.refill();
    if placed.len() < received {
      socket.fail_reading(SysError::new("recvmsg", Errno::ENOMEM));
      break;
    }
    for &(slab, offset, meta, flags) in &placed {
      if !socket.is_open() {
        break;
      }
      let source = sources.get(socket.env, meta.source.map(|address| address.ip()));
      let local = locals.get(socket.env, meta.dst_ip);
      if state.split_segments && meta.stride > 0 && meta.stride < meta.len {
        for k in 0..meta.segments() {
          let start = k * meta.stride;
          let len = meta.stride.min(meta.len - start);
          let meta = RecvMeta {
            len,
            stride: len,
            ..meta
          };
          if !deliver(socket, slab, offset + start, flags, &meta, source, local) {
            break;
          }
        }
      } else if !deliver(socket, slab, offset, flags, &meta, source, local) {
        break;
      }
    }
    budget -= received.min(budget);
    if received < capacity {
      break;
    }
  }
  batch.release();
  UDP_BATCH.set(batch);
  SLOTS.set(pool);
}

/// Environment teardown: the receive Buffers' references belong to the environment going away.
pub fn forget_for_teardown() {
  SLOTS.take().forget_for_teardown();
}

fn double(env: sys::napi_env, n: f64) -> sys::napi_value {
  let mut value = std::ptr::null_mut();
  // SAFETY: env is live.
  unsafe { sys::napi_create_double(env, n, &mut value) };
  value
}

/// One `message` call, for `meta.len` bytes at `offset` in `slab`: `(slab, offset, length, flags, address, port, ecn, stride, localAddress,
/// interfaceIndex, ttl, seconds, nanoseconds, trafficClass)`, -1 where the kernel said nothing.
/// False when the socket can take no more (closed, or out of memory).
fn deliver(
  socket: &Rc<EventSocket>,
  slab: sys::napi_value,
  offset: usize,
  flags: i32,
  meta: &RecvMeta,
  source: sys::napi_value,
  local: sys::napi_value,
) -> bool {
  let env = socket.env;
  let optional = |n: Option<i64>| n.map_or(-1.0, |n| n as f64);
  let args = [
    slab,
    int32(env, offset as i32),
    int32(env, meta.len as i32),
    int32(env, flags),
    source,
    int32(
      env,
      meta.source.map_or(0, |address| i32::from(address.port())),
    ),
    int32(env, meta.ecn.map_or(-1, |ecn| ecn as i32)),
    int32(env, meta.stride as i32),
    local,
    int32(env, meta.interface.map_or(-1, |index| index as i32)),
    int32(env, meta.ttl.map_or(-1, i32::from)),
    double(env, optional(meta.timestamp.map(|stamp| stamp.seconds))),
    int32(
      env,
      meta.timestamp.map_or(0, |stamp| stamp.nanoseconds as i32),
    ),
    int32(env, meta.traffic_class.map_or(-1, i32::from)),
  ];
  // Held across the call: the handler may close the socket.
  let Some(js) = socket.js() else {
    return false;
  };
  js.call(Event::Message, &args);
  socket.is_open()
}

/// Reads the error queue until it is empty (or the budget is spent), one `icmpError` per entry.
pub fn drain_errors(socket: &Rc<EventSocket>) {
  let mut reported = 0;
  for _ in 0..ERROR_BUDGET {
    if !socket.is_open() {
      return;
    }
    // The datagram's payload is not delivered: an empty buffer takes none of it.
    match errqueue::read_error(socket.fd, &mut []) {
      Ok(Some(error)) => {
        if error.errno != Errno::UnknownErrno {
          emit(socket, Some(&error), error.errno);
          reported += 1;
        }
      }
      Ok(None) => break,
      Err(err) => {
        socket.emit_error(err);
        break;
      }
    }
  }
  // A pending error no queue entry explained (there is no error queue on this system, or it
  // was not enabled): take it, so that the poll stops reporting it, and report it bare.
  // SAFETY: the socket owns fd and is open.
  let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.fd) };
  if let Ok(errno) = sendmsg_core::socket::take_error(borrowed) {
    if errno != 0 && reported == 0 && socket.is_open() {
      emit(socket, None, Errno::from_raw(errno));
    }
  }
}

/// A receive met `errno`, an earlier datagram's ICMP error: read the queue for it, or report it
/// bare where there is none.
fn report_pending(socket: &Rc<EventSocket>, errno: Errno) {
  let before = socket.is_open();
  drain_errors(socket);
  if before && !sendmsg_core::udp::socket::has_error_queue() {
    emit(socket, None, errno);
  }
}

fn origin_name(origin: ErrorOrigin) -> &'static str {
  match origin {
    ErrorOrigin::Local => "local",
    ErrorOrigin::Icmp => "icmp",
    ErrorOrigin::Icmp6 => "icmp6",
    ErrorOrigin::Other(_) => "other",
  }
}

/// Calls `icmpError` with a Node-style error (`code`, `errno`, `syscall`) carrying the details.
fn emit(socket: &Rc<EventSocket>, error: Option<&QueuedError>, errno: Errno) {
  let env = Env::from_raw(socket.env);
  let Ok(mut object) = errors::sys_error_value(&env, SysError::new("recvmsg", errno)) else {
    return;
  };
  if let Some(error) = error {
    let _ = object.set_named_property("origin", origin_name(error.origin));
    let _ = object.set_named_property("icmpType", u32::from(error.icmp_type));
    let _ = object.set_named_property("icmpCode", u32::from(error.icmp_code));
    if let Some(mtu) = error.mtu {
      let _ = object.set_named_property("mtu", mtu);
    }
    if let Some(offender) = error.offender {
      let _ = object.set_named_property("offender", offender.to_string());
    }
    if let Some(destination) = error.destination {
      let _ = object.set_named_property("address", destination.ip().to_string());
      let _ = object.set_named_property("port", u32::from(destination.port()));
    }
  }
  socket.call(Event::IcmpError, &[object.raw()]);
}
