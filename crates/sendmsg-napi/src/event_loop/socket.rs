//! One socket in the event loop: its states, its JavaScript side, and the readiness choke point.
//!
//! The reactor tells [`EventSocket::ready`] that the descriptor is readable or writable; that is
//! the one place that reads (see `receive.rs`), reports writability, and re-arms: interest is
//! derived from the states below by [`EventSocket::interest_changed`] after every change, and
//! nothing else asks the reactor for anything.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::sys;
use nix::errno::Errno;
use sendmsg_core::pace::Pace;
use sendmsg_core::socket::SocketKind;
use sendmsg_core::SysError;

use super::received_fds::{self, HeldId};
use crate::errors;
use crate::js_call::{value, AsyncContext, CallOutcome, HandleScope, Reference};
use crate::reactor::{Ready, Watcher};

/// What the socket is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
  /// Sends and receives messages.
  Connection,
  /// Accepts connections (a listening stream or seqpacket socket).
  Listener,
  /// Sends and receives UDP datagrams with their metadata, and reads ICMP errors from the error
  /// queue (see `udp/`); its state is [`EventSocket::udp`].
  Udp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lifecycle {
  Open,
  /// The descriptor is closed and JavaScript is never called again.
  Closed,
}

/// The receiving direction, as JavaScript asked for it and as the peer left it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reading {
  /// JavaScript wants no messages now (paused, no listener, backlog full).
  Stopped,
  Started,
  /// End of file or a receive error was delivered: nothing more will be read.
  Finished,
}

/// The sending direction, as far as readiness is concerned (JavaScript owns the queue).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Writing {
  /// Nothing waits for the kernel.
  Idle,
  /// The kernel was full (or a connect is in progress): JavaScript is told when it is writable.
  AwaitingWritable,
  /// A datagram addressed to a receiver whose queue is full. The kernel gives no readiness event
  /// for another socket's queue (an unconnected socket always polls writable), so JavaScript
  /// retries on a timer instead.
  AwaitingRetry,
}

/// How received messages reach JavaScript.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Delivery {
  /// One call per message, each in its own callback scope: what 'message' events promise (a
  /// handler's microtasks run before the next message).
  EachInScope,
  /// One plain call per message, then `batch_end` in a callback scope: for consumers that only
  /// collect messages (an async iterator, 'messages' batches), which saves a microtask checkpoint
  /// and async-hooks bookkeeping per message.
  Batched,
}

/// The JavaScript functions a socket calls, each with `this` = the owner (UnixSocket or
/// UnixServer). They are the owner class's static functions, so holding them keeps no socket alive.
pub struct Events {
  pub message: Option<Reference>,
  pub batch_end: Option<Reference>,
  pub writable: Option<Reference>,
  pub end: Option<Reference>,
  pub error: Option<Reference>,
  pub connection: Option<Reference>,
  /// UDP: an ICMP error read from the error queue.
  pub icmp_error: Option<Reference>,
}

/// Which of [`Events`] to call.
#[derive(Clone, Copy)]
pub enum Event {
  Message,
  BatchEnd,
  Writable,
  End,
  Error,
  Connection,
  IcmpError,
}

/// What the socket needs to call into JavaScript; dropped on close (after any call in progress).
pub struct JsSide {
  /// Strong while the loop may call it, weak when idle, so that an idle socket nobody references
  /// is collected (and its handle's finalizer closes it).
  owner: RefCell<Reference>,
  events: Events,
  context: AsyncContext,
}

impl JsSide {
  pub fn new(env: sys::napi_env, owner: sys::napi_value, events: Events) -> Result<Self> {
    Ok(Self {
      owner: RefCell::new(Reference::new(env, owner, false)?),
      events,
      context: AsyncContext::new(env, owner, "UnixSocket")?,
    })
  }

  /// Calls `event` with `args`, in a callback scope (so the microtasks and nextTick callbacks it
  /// queues run before this returns).
  pub fn call(&self, event: Event, args: &[sys::napi_value]) -> CallOutcome {
    let Some((owner, function)) = self.target(event) else {
      return CallOutcome::NotCalled;
    };
    // SAFETY: every caller runs inside `ready`, which opened a handle scope; values are this env's.
    unsafe { self.context.call(owner, function, args) }
  }

  /// Calls `event` with `args` without a callback scope: the caller ends the run of such calls
  /// with a [`JsSide::call`].
  pub fn call_plain(
    &self,
    env: sys::napi_env,
    event: Event,
    args: &[sys::napi_value],
  ) -> CallOutcome {
    let Some((owner, function)) = self.target(event) else {
      return CallOutcome::NotCalled;
    };
    // SAFETY: as in `call`.
    unsafe { crate::js_call::call_plain(env, owner, function, args) }
  }

  fn target(&self, event: Event) -> Option<(sys::napi_value, sys::napi_value)> {
    let function = match event {
      Event::Message => &self.events.message,
      Event::BatchEnd => &self.events.batch_end,
      Event::Writable => &self.events.writable,
      Event::End => &self.events.end,
      Event::Error => &self.events.error,
      Event::Connection => &self.events.connection,
      Event::IcmpError => &self.events.icmp_error,
    };
    Some((
      self.owner.borrow().get()?,
      function.as_ref().and_then(Reference::get)?,
    ))
  }
}

pub struct EventSocket {
  pub env: sys::napi_env,
  /// The descriptor's number, valid while `lifecycle` is Open.
  pub fd: RawFd,
  owned: RefCell<Option<OwnedFd>>,
  pub kind: SocketKind,
  pub role: Role,
  /// The receive size of one message (or stream chunk).
  pub slot_size: usize,
  lifecycle: Cell<Lifecycle>,
  reading: Cell<Reading>,
  delivery: Cell<Delivery>,
  /// End of file was read and `end` not yet delivered.
  end_pending: Cell<bool>,
  writing: Cell<Writing>,
  referenced: Cell<bool>,
  watcher: RefCell<Option<Watcher>>,
  js: RefCell<Option<Rc<JsSide>>>,
  /// A UDP socket's own state (`Role::Udp`); None for the others.
  pub udp: Option<super::udp::UdpState>,
  /// Held sets of messages JavaScript kept for a later delivery (a backlog, an iterator, a
  /// batch): JavaScript settles them then, and closing settles whatever it has not, so that a
  /// socket dropped with a backlog (closed, collected, its worker ended) leaves nothing open.
  kept: RefCell<Vec<HeldId>>,
  /// `kept` drops the ids of sets already settled when it grows past this.
  prune_kept_at: Cell<usize>,
  /// Whether the next readiness is read one message at a time or in batches.
  pub pace: Pace,
}

impl EventSocket {
  /// Takes `fd` over (made non-blocking) and registers it with the reactor at once, so that a
  /// descriptor the loop already watches elsewhere is refused here, by the caller's call.
  pub fn open(
    env: &Env,
    fd: OwnedFd,
    kind: SocketKind,
    role: Role,
    slot_size: usize,
    js: JsSide,
    udp: Option<super::udp::UdpState>,
  ) -> std::result::Result<Rc<Self>, (SysError, OwnedFd)> {
    if let Err(err) = sendmsg_core::fd::set_nonblocking(&fd, true) {
      return Err((err, fd));
    }
    let socket = Rc::new(Self {
      env: env.raw(),
      fd: fd.as_raw_fd(),
      owned: RefCell::new(Some(fd)),
      kind,
      role,
      slot_size: slot_size.max(1),
      lifecycle: Cell::new(Lifecycle::Open),
      reading: Cell::new(Reading::Stopped),
      delivery: Cell::new(Delivery::EachInScope),
      end_pending: Cell::new(false),
      writing: Cell::new(Writing::Idle),
      referenced: Cell::new(true),
      watcher: RefCell::new(None),
      js: RefCell::new(Some(Rc::new(js))),
      udp,
      kept: RefCell::new(Vec::new()),
      prune_kept_at: Cell::new(64),
      pace: Pace::default(),
    });
    let target: Rc<dyn Ready> = socket.clone();
    match Watcher::new(env.raw(), socket.fd, target) {
      Ok(watcher) => *socket.watcher.borrow_mut() = Some(watcher),
      Err(status) => {
        // Never watched: the descriptor goes back to whoever gave it.
        let err = SysError::new("poll", Errno::from_raw(-status));
        return Err((err, socket.release().expect("just opened")));
      }
    }
    Ok(socket)
  }

  /// Undoes an open that could not be completed: stops watching and hands the descriptor back
  /// instead of closing it. None when the socket was closed meanwhile.
  pub fn release(&self) -> Option<OwnedFd> {
    if self.lifecycle.replace(Lifecycle::Closed) == Lifecycle::Closed {
      return None;
    }
    if let Some(watcher) = self.watcher.take() {
      watcher.close();
    }
    self.js.take();
    self.owned.take()
  }

  pub fn is_open(&self) -> bool {
    self.lifecycle.get() == Lifecycle::Open
  }

  pub fn reading(&self) -> Reading {
    self.reading.get()
  }

  pub fn delivery(&self) -> Delivery {
    self.delivery.get()
  }

  pub fn set_delivery(&self, delivery: Delivery) {
    self.delivery.set(delivery);
  }

  pub fn writing(&self) -> Writing {
    self.writing.get()
  }

  /// JavaScript's wish to receive (or not). A finished direction stays finished.
  pub fn set_reading(&self, on: bool) -> std::result::Result<(), SysError> {
    let next = match (self.reading.get(), on) {
      (Reading::Finished, _) => Reading::Finished,
      (_, true) => Reading::Started,
      (_, false) => Reading::Stopped,
    };
    self.reading.set(next);
    self.interest_changed()
  }

  pub fn set_writing(&self, writing: Writing) -> std::result::Result<(), SysError> {
    self.writing.set(writing);
    self.interest_changed()
  }

  /// The receiving direction is over (end of file, or an error was reported).
  pub fn finish_reading(&self) {
    self.reading.set(Reading::Finished);
    let _ = self.interest_changed();
  }

  /// The peer's end of file was read: reading is over, and `end` is to be delivered once the
  /// messages before it are.
  pub fn finish_reading_at_end(&self) {
    self.end_pending.set(true);
    self.finish_reading();
  }

  /// Whether `end` is still to be delivered (and from now on, it is not).
  pub fn end_pending(&self) -> bool {
    self.end_pending.replace(false)
  }

  /// Re-arms the reactor from the states: the only caller of `set_interest`.
  pub fn interest_changed(&self) -> std::result::Result<(), SysError> {
    if !self.is_open() {
      return Ok(());
    }
    let readable = self.reading.get() == Reading::Started;
    let writable = self.writing.get() == Writing::AwaitingWritable;
    // While the loop may call it, keep the JavaScript side alive; a retry timer in JavaScript
    // keeps it alive by itself.
    if let Some(js) = self.js.borrow().as_ref() {
      js.owner.borrow_mut().set_strong(readable || writable);
    }
    match self.watcher.borrow().as_ref() {
      Some(watcher) => watcher
        .set_interest(readable, writable)
        .map_err(|status| SysError::new("poll", Errno::from_raw(-status))),
      None => Ok(()),
    }
  }

  pub fn set_referenced(&self, referenced: bool) {
    self.referenced.set(referenced);
    if let Some(watcher) = self.watcher.borrow().as_ref() {
      watcher.set_ref(referenced);
    }
  }

  /// Closes the descriptor and stops every call into JavaScript. Idempotent.
  pub fn close(&self) {
    if self.lifecycle.replace(Lifecycle::Closed) == Lifecycle::Closed {
      return;
    }
    // Closing the watcher stops polling at once, so the descriptor can go right after.
    if let Some(watcher) = self.watcher.take() {
      watcher.close();
    }
    drop(self.owned.take());
    // Dropped now, or when a call in progress returns (it holds a clone).
    self.js.take();
    for id in self.kept.take() {
      received_fds::settle(id);
    }
  }

  /// JavaScript kept the message of held set `id` for a later delivery.
  pub fn note_kept(&self, id: HeldId) {
    let mut kept = self.kept.borrow_mut();
    if kept.len() >= self.prune_kept_at.get() {
      kept.retain(|&id| received_fds::is_held(id));
      self.prune_kept_at.set((kept.len() * 2).max(64));
    }
    kept.push(id);
  }

  /// Environment teardown: as `close`, but the JavaScript references are left to the environment,
  /// which is freeing them itself.
  pub fn close_for_teardown(&self) {
    if let Some(js) = self.js.take() {
      std::mem::forget(js);
    }
    self.close();
  }

  /// The JavaScript side, held by the caller across a call that may close the socket.
  pub fn js(&self) -> Option<Rc<JsSide>> {
    self.js.borrow().clone()
  }

  pub fn call(&self, event: Event, args: &[sys::napi_value]) -> CallOutcome {
    match self.js() {
      Some(js) => js.call(event, args),
      None => CallOutcome::NotCalled,
    }
  }

  /// Reports a receive (or accept) error: reading is over, JavaScript gets `error`.
  pub fn fail_reading(&self, err: SysError) {
    self.finish_reading();
    self.emit_error(err);
  }

  pub fn emit_error(&self, err: SysError) {
    let env = Env::from_raw(self.env);
    if let Ok(error) = errors::sys_error_value(&env, err) {
      self.call(Event::Error, &[error.raw()]);
    }
  }
}

impl Ready for EventSocket {
  fn ready(self: Rc<Self>, readable: bool, writable: bool, error: Option<i32>) {
    if !self.is_open() {
      return;
    }
    let Some(_scope) = HandleScope::open(self.env) else {
      return;
    };
    let (readable, writable) = match error {
      None => (readable, writable),
      // libuv reports POLLERR as a failed poll (UV_EBADF) and stops the handle. On a connected
      // socket, POLLERR is the socket's own pending error (ECONNRESET when the peer died with
      // our data unread): poll again and let the receive and the sends meet that error in their
      // own system calls, where it is reported as what it is. Each of them makes progress or
      // finishes its direction, so this cannot spin. A listening socket has no such error.
      Some(status) => match self.role {
        Role::Connection if self.interest_changed().is_ok() => (true, true),
        // On a UDP socket POLLERR means an ICMP error is queued: read the queue (which clears
        // it, so the next poll does not fire for it again), then carry on as above.
        Role::Udp => {
          super::udp::receive::drain_errors(&self);
          if self.interest_changed().is_err() || !self.is_open() {
            return;
          }
          (true, true)
        }
        _ => {
          self.fail_reading(SysError::new("poll", Errno::from_raw(-status)));
          return;
        }
      },
    };
    if readable && self.reading.get() == Reading::Started {
      match self.role {
        Role::Connection => super::receive::drain(&self),
        Role::Listener => super::receive::accept_all(&self),
        Role::Udp => super::udp::receive::drain(&self),
      }
    }
    if writable && self.writing.get() == Writing::AwaitingWritable && self.is_open() {
      self.writing.set(Writing::Idle);
      let _ = self.interest_changed();
      self.call(Event::Writable, &[]);
    }
  }
}

/// Makes an argument value list shorter to write.
pub fn int32(env: sys::napi_env, n: i32) -> sys::napi_value {
  value::int32(env, n)
}
