//! A socket that lives in the event loop: the native half of `UnixSocket`/`UnixServer`
//! (`lib/socket.ts`, `lib/server.ts`).
//!
//! Receiving: when the loop reports the socket readable, [`SocketInner::read_ready`] drains it
//! with batched receives until EAGAIN or a per-event budget, and delivers the messages one by one,
//! each in its own callback scope so that promise reactions and `process.nextTick` callbacks run
//! between messages, as they do between Node's own 'data' events. Message data is copied into a
//! per-thread slab (see [`Delivery`]), so a message costs no allocation of its own. A message's
//! descriptors become JavaScript's when it is delivered; the dispatcher returns the ones nobody
//! claimed and they are closed here. Descriptors of messages never delivered (the socket closed
//! mid-batch) are closed by the batch.
//!
//! Sending: JavaScript keeps the queue and calls [`NativeSocket::send`] with as many queued
//! messages as it has; they go out in as few system calls as the socket type allows.
//!
//! The dispatcher protocol (`dispatch.call(owner, event, ...args)`):
//! - `EVENT_MESSAGE, slab: ArrayBuffer, offset, length, flags, fdCount, fds: Int32Array,
//!   address?: string, ancillary?: [level, type, Buffer][]`: the data is `slab[offset..+length]`,
//!   the descriptors are `fds[0..fdCount]` (a shared array, valid during the call only). If the
//!   call throws, JavaScript has already dealt with every descriptor.
//! - `EVENT_SETTLE`, right after an EVENT_MESSAGE call that carried descriptors returned, that is
//!   once the handler and the microtasks it queued have run (so `await once(sock, 'message')`
//!   followed by `take()` works): returns what to close, `true` for all of the message's
//!   descriptors, an array of numbers, or undefined for none. A plain call: it runs no user code.
//! - `EVENT_WRITABLE`, `EVENT_END`, `EVENT_ERROR, error`, `EVENT_CONNECTION, fd`.

use std::cell::{Cell, RefCell};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::rc::{Rc, Weak};

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
use sendmsg_core::batch::{self, Outgoing, RecvBatch, SendScratch};
use sendmsg_core::cmsg::{self, ControlBuffer};
use sendmsg_core::message::{self, ReceivedCmsg};
use sendmsg_core::socket::{self, SocketKind};
use sendmsg_core::SysError;

use crate::js_call::{value, AsyncContext, CallOutcome, HandleScope, Reference};
use crate::reactor::{self, Ready, Watcher};
use crate::{errors, outgoing, socket_ops};

pub const EVENT_MESSAGE: i32 = 0;
pub const EVENT_WRITABLE: i32 = 1;
pub const EVENT_END: i32 = 2;
pub const EVENT_ERROR: i32 = 3;
pub const EVENT_CONNECTION: i32 = 4;
pub const EVENT_SETTLE: i32 = 5;

/// Messages per batched receive.
const BATCH_MESSAGES: usize = 64;
/// Receive-batch data kept per thread at most; larger message sizes get fewer messages per batch.
const BATCH_BYTES: usize = 4 << 20;
/// Messages (or connections) handled per readiness event before the loop gets a turn; the poll is
/// level-triggered, so what is left is handled on the next iteration.
const EVENT_BUDGET: usize = 1024;

/// Message data is copied into slabs of this size (larger messages get a buffer of their own).
const SLAB_SIZE: usize = 64 << 10;

/// Per-thread delivery buffers, shared by every socket of the thread: messages are delivered one
/// at a time and JavaScript reads the descriptor numbers before returning, so one of each serves.
///
/// - The slab: an ArrayBuffer that message data is bump-allocated into; each message's Buffer is
///   a view of it, and a full slab is simply replaced (views keep the old one alive).
/// - The descriptor array: an Int32Array the numbers of the message being delivered are written to.
#[derive(Default)]
struct Delivery {
  slab: Option<JsBytes>,
  slab_used: usize,
  fds: Option<JsBytes>,
}

/// A JavaScript ArrayBuffer or Int32Array this thread keeps, with its memory.
struct JsBytes {
  reference: Reference,
  data: *mut u8,
  capacity: usize,
  typed_array: bool,
}

/// A new ArrayBuffer of `length` bytes: its memory and its value.
fn new_array_buffer(env: sys::napi_env, length: usize) -> Option<(*mut u8, sys::napi_value)> {
  let mut data = std::ptr::null_mut();
  let mut buffer = std::ptr::null_mut();
  // SAFETY: env is live on this thread.
  let status = unsafe { sys::napi_create_arraybuffer(env, length, &mut data, &mut buffer) };
  (status == sys::Status::napi_ok).then_some((data.cast(), buffer))
}

impl JsBytes {
  fn array_buffer(env: sys::napi_env, capacity: usize) -> Option<(Self, sys::napi_value)> {
    let (data, buffer) = new_array_buffer(env, capacity)?;
    let reference = Reference::new(env, buffer, true).ok()?;
    let bytes = Self {
      reference,
      data,
      capacity,
      typed_array: false,
    };
    Some((bytes, buffer))
  }

  fn int32_array(env: sys::napi_env, length: usize) -> Option<(Self, sys::napi_value)> {
    let (data, buffer) = new_array_buffer(env, length * 4)?;
    let mut array = std::ptr::null_mut();
    // SAFETY: a fresh ArrayBuffer of exactly length * 4 bytes.
    let status = unsafe {
      sys::napi_create_typedarray(
        env,
        sys::TypedarrayType::int32_array,
        length,
        buffer,
        0,
        &mut array,
      )
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    let reference = Reference::new(env, array, true).ok()?;
    let bytes = Self {
      reference,
      data,
      capacity: length,
      typed_array: true,
    };
    Some((bytes, array))
  }

  /// The kept value, unless JavaScript has detached its memory (transferred the ArrayBuffer to a
  /// worker, say): `data` would then point into memory that another buffer owns.
  fn attached(&self, env: sys::napi_env) -> Option<sys::napi_value> {
    let value = self.reference.get()?;
    let mut buffer = value;
    if self.typed_array {
      // SAFETY: value is the Int32Array this reference holds; the other outputs may be null.
      let status = unsafe {
        sys::napi_get_typedarray_info(
          env,
          value,
          std::ptr::null_mut(),
          std::ptr::null_mut(),
          std::ptr::null_mut(),
          &mut buffer,
          std::ptr::null_mut(),
        )
      };
      if status != sys::Status::napi_ok {
        return None;
      }
    }
    let mut detached = true;
    // SAFETY: buffer is an ArrayBuffer value of this env.
    let status = unsafe { sys::napi_is_detached_arraybuffer(env, buffer, &mut detached) };
    (status == sys::Status::napi_ok && !detached).then_some(value)
  }
}

impl Delivery {
  /// Copies `data` into the slab; returns the slab and the offset.
  fn place(&mut self, env: sys::napi_env, data: &[u8]) -> Option<(sys::napi_value, usize)> {
    if data.len() > SLAB_SIZE / 4 {
      // A large message gets its own buffer rather than pinning most of a slab.
      let (memory, buffer) = new_array_buffer(env, data.len())?;
      // SAFETY: a fresh buffer of data.len() bytes.
      unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), memory, data.len()) };
      return Some((buffer, 0));
    }
    let kept = self
      .slab
      .as_ref()
      .filter(|slab| slab.capacity - self.slab_used >= data.len())
      .and_then(|slab| slab.attached(env));
    let buffer = match kept {
      Some(buffer) => buffer,
      None => {
        let (slab, buffer) = JsBytes::array_buffer(env, SLAB_SIZE)?;
        self.slab = Some(slab);
        self.slab_used = 0;
        buffer
      }
    };
    let slab = self.slab.as_ref()?;
    let offset = self.slab_used;
    // SAFETY: offset + len <= capacity, checked above, and the slab is attached; nothing else
    // writes this region.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), slab.data.add(offset), data.len()) };
    self.slab_used += data.len();
    Some((buffer, offset))
  }

  /// Writes the descriptor numbers into the shared array; returns it.
  fn put_fds(
    &mut self,
    env: sys::napi_env,
    fds: impl ExactSizeIterator<Item = RawFd>,
  ) -> Option<sys::napi_value> {
    let count = fds.len();
    let kept = self
      .fds
      .as_ref()
      .filter(|array| array.capacity >= count)
      .and_then(|array| array.attached(env));
    let array_value = match kept {
      Some(value) => value,
      None => {
        let (array, value) = JsBytes::int32_array(env, count.max(cmsg::MAX_FDS_PER_MESSAGE))?;
        self.fds = Some(array);
        value
      }
    };
    let array = self.fds.as_ref()?;
    for (i, fd) in fds.enumerate() {
      // SAFETY: i < count <= capacity; the memory is 4-byte aligned (an ArrayBuffer's start) and
      // attached.
      unsafe { array.data.cast::<i32>().add(i).write(fd) };
    }
    Some(array_value)
  }
}

/// The event codes, for the TypeScript side of the protocol.
#[napi(object)]
pub struct EventSocketProtocol {
  pub event_message: i32,
  pub event_writable: i32,
  pub event_end: i32,
  pub event_error: i32,
  pub event_connection: i32,
  pub event_settle: i32,
}

#[napi]
pub fn event_socket_protocol() -> EventSocketProtocol {
  EventSocketProtocol {
    event_message: EVENT_MESSAGE,
    event_writable: EVENT_WRITABLE,
    event_end: EVENT_END,
    event_error: EVENT_ERROR,
    event_connection: EVENT_CONNECTION,
    event_settle: EVENT_SETTLE,
  }
}

thread_local! {
  static RECV_BATCH: RefCell<RecvBatch> = RefCell::new(RecvBatch::default());
  static DELIVERY: RefCell<Delivery> = RefCell::new(Delivery::default());
  static SEND_SCRATCH: RefCell<SendScratch> = RefCell::new(SendScratch::default());
  static SEND_CONTROL: RefCell<ControlBuffer> = RefCell::new(ControlBuffer::default());
  static LIVE: RefCell<Vec<Weak<SocketInner>>> = const { RefCell::new(Vec::new()) };
  static TEARDOWN_HOOK: Cell<bool> = const { Cell::new(false) };
  /// The accepted descriptor being handed to JavaScript, until a NativeSocket takes it over (then
  /// -1): how the accept loop learns whether it still owns it.
  static HANDED_OVER: Cell<RawFd> = const { Cell::new(-1) };
}

/// What the socket needs to call into JavaScript; dropped on close (after any call in progress).
struct JsSide {
  owner: RefCell<Reference>,
  dispatch: Reference,
  context: AsyncContext,
}

pub struct SocketInner {
  env: sys::napi_env,
  fd: Cell<RawFd>,
  kind: SocketKind,
  listening: bool,
  slot_size: usize,
  want_addresses: bool,
  reading: Cell<bool>,
  want_writable: Cell<bool>,
  referenced: Cell<bool>,
  closed: Cell<bool>,
  watcher: RefCell<Option<Watcher>>,
  js: RefCell<Option<Rc<JsSide>>>,
}

impl SocketInner {
  fn interest_changed(self: &Rc<Self>) -> std::result::Result<(), SysError> {
    if self.closed.get() {
      return Ok(());
    }
    let readable = self.reading.get();
    let writable = self.want_writable.get();
    // While the loop may call us, keep the JavaScript side alive; when idle, let it be collected
    // (its finalizer then closes the socket).
    if let Some(js) = self.js.borrow().as_ref() {
      js.owner.borrow_mut().set_strong(readable || writable);
    }
    let mut watcher = self.watcher.borrow_mut();
    if watcher.is_none() {
      if !(readable || writable) {
        return Ok(());
      }
      let target: Rc<dyn Ready> = self.clone();
      let created = Watcher::new(self.env, self.fd.get(), target).map_err(uv_error)?;
      created.set_ref(self.referenced.get());
      *watcher = Some(created);
    }
    watcher
      .as_ref()
      .expect("created above")
      .set_interest(readable, writable)
      .map_err(uv_error)
  }

  fn set_referenced(&self, referenced: bool) {
    self.referenced.set(referenced);
    if let Some(watcher) = self.watcher.borrow().as_ref() {
      watcher.set_ref(referenced);
    }
  }

  /// Closes the descriptor and stops all calls into JavaScript. Idempotent.
  fn close(&self) {
    if self.closed.replace(true) {
      return;
    }
    // Closing the handle stops polling at once, so the descriptor can go right after.
    if let Some(watcher) = self.watcher.take() {
      watcher.close();
    }
    let fd = self.fd.replace(-1);
    if fd >= 0 {
      // SAFETY: the socket owns fd, and nothing polls it any more.
      unsafe { libc::close(fd) };
    }
    // Dropped now, or when a dispatch in progress returns.
    self.js.take();
  }

  /// Environment teardown: as `close`, but the JavaScript references are left to the environment,
  /// which is freeing them itself.
  fn close_for_teardown(&self) {
    if let Some(js) = self.js.take() {
      std::mem::forget(js);
    }
    self.close();
  }

  /// Calls the dispatcher with `this = owner`, in a callback scope.
  fn call(&self, args: &[sys::napi_value]) -> CallOutcome {
    // Cloned out first: the call may close the socket, which takes the cell.
    let js = self.js.borrow().clone();
    match js {
      Some(js) => self.call_on(&js, args, true),
      None => CallOutcome::NotCalled,
    }
  }

  /// Calls the dispatcher through `js`, which the caller holds: a delivery keeps it across its two
  /// calls even if the handler closes the socket in between.
  fn call_on(&self, js: &JsSide, args: &[sys::napi_value], scope: bool) -> CallOutcome {
    let (Some(owner), Some(dispatch)) = (js.owner.borrow().get(), js.dispatch.get()) else {
      return CallOutcome::NotCalled;
    };
    // SAFETY: a handle scope is open (every caller runs inside `ready`), values are this env's.
    unsafe {
      if scope {
        js.context.call(owner, dispatch, args)
      } else {
        crate::js_call::call_plain(self.env, owner, dispatch, args)
      }
    }
  }

  fn emit_error(&self, err: SysError) {
    let env = Env::from_raw(self.env);
    if let Ok(error) = errors::sys_error_value(&env, err) {
      self.call(&[value::int32(self.env, EVENT_ERROR), error.raw()]);
    }
  }

  fn read_ready(self: &Rc<Self>) {
    // Taken out for the duration, so that a reentrant receive on this thread cannot find it
    // borrowed; it is put back, allocations and all, at the end.
    let mut batch = RECV_BATCH.take();
    let mut budget = EVENT_BUDGET;
    let per_batch = BATCH_MESSAGES.min((BATCH_BYTES / self.slot_size.max(1)).max(1));
    while budget > 0 && self.reading.get() && !self.closed.get() {
      let capacity = per_batch.min(budget);
      if batch
        .ensure(
          capacity,
          self.slot_size,
          batch::default_control_space(),
          self.want_addresses,
        )
        .is_err()
      {
        self.stop_reading_with(SysError::new("recvmsg", Errno::ENOMEM));
        break;
      }
      let received = match batch.recv(self.fd.get(), capacity) {
        Ok(received) => received,
        Err(err) => {
          self.stop_reading_with(err);
          break;
        }
      };
      if received == 0 {
        break;
      }
      self.deliver(&mut batch, received);
      budget -= received.min(budget);
      if received < capacity {
        break;
      }
    }
    batch.release();
    RECV_BATCH.set(batch);
  }

  fn stop_reading_with(self: &Rc<Self>, err: SysError) {
    self.reading.set(false);
    let _ = self.interest_changed();
    self.emit_error(err);
  }

  /// Zero bytes and no control data: the end of a stream. On a seqpacket socket the same shape is
  /// also a legal empty message, so the peer's shutdown decides.
  fn is_end(&self, message: &batch::BatchMessage<'_>) -> bool {
    if !message.data.is_empty() || message.fd_count > 0 || !message.other.is_empty() {
      return false;
    }
    match self.kind {
      SocketKind::Stream => true,
      SocketKind::SeqPacket => peer_has_shut_down(self.fd.get()),
      SocketKind::Datagram => false,
    }
  }

  fn deliver(self: &Rc<Self>, batch: &mut RecvBatch, received: usize) {
    let env = self.env;
    let event = value::int32(env, EVENT_MESSAGE);
    for i in 0..received {
      if self.closed.get() {
        // The remaining messages' descriptors close with the batch.
        return;
      }
      let message = batch.message(i);
      if self.is_end(&message) {
        self.reading.set(false);
        let _ = self.interest_changed();
        self.call(&[value::int32(env, EVENT_END)]);
        return;
      }
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
      let (flags, length, fd_count) = (message.flags, message.data.len(), message.fd_count);
      let placed = DELIVERY.with_borrow_mut(|delivery| {
        let (slab, offset) = delivery.place(env, message.data)?;
        let fds = delivery.put_fds(env, batch.fd_numbers_of(i))?;
        Some((slab, offset, fds))
      });
      let Some((slab, offset, fds)) = placed else {
        self.stop_reading_with(SysError::new("recvmsg", Errno::ENOMEM));
        return;
      };
      // Cloned out first (the handler may close the socket, which takes the cell), and held
      // across both calls of this delivery.
      let js = self.js.borrow().clone();
      let Some(js) = js else {
        // Closed: the remaining messages' descriptors close with the batch.
        return;
      };
      let delivered = self.call_on(
        &js,
        &[
          event,
          slab,
          value::int32(env, offset as i32),
          value::int32(env, length as i32),
          value::int32(env, flags),
          value::int32(env, fd_count as i32),
          fds,
          address,
          ancillary,
        ],
        true,
      );
      // Which descriptors nobody claimed is decided now, after the handler's microtasks; also
      // when the call threw, which may have been a nextTick callback after the handler returned.
      let result = match delivered {
        CallOutcome::Returned(_) | CallOutcome::Threw if fd_count > 0 => {
          self.call_on(&js, &[value::int32(env, EVENT_SETTLE)], false)
        }
        other => other,
      };
      match result {
        CallOutcome::Returned(value) if is_true(env, value) => {
          // Nobody looked at them: close them all.
          batch.take_fds(i).for_each(drop);
        }
        CallOutcome::Returned(value) => {
          // JavaScript owns them now; it lists any it wants closed.
          batch.take_fds(i).for_each(|owned| {
            let _ = owned.into_raw_fd();
          });
          close_listed(env, value);
        }
        // Settling threw: what JavaScript did with them is unknown, and closing a descriptor
        // twice could close somebody else's.
        CallOutcome::Threw => batch.take_fds(i).for_each(|owned| {
          let _ = owned.into_raw_fd();
        }),
        // Never delivered: they are still ours to close.
        CallOutcome::NotCalled => batch.take_fds(i).for_each(drop),
      }
    }
  }

  fn accept_ready(&self) {
    let env = self.env;
    for _ in 0..EVENT_BUDGET {
      if self.closed.get() || !self.reading.get() {
        return;
      }
      match socket::accept(self.fd.get()) {
        Ok(Some(accepted)) => {
          let fd = accepted.as_raw_fd();
          HANDED_OVER.set(fd);
          // Whatever the call's outcome: a worker being terminated can stop JavaScript before it
          // wraps the descriptor, and then nobody else would close it.
          let _ = self.call(&[value::int32(env, EVENT_CONNECTION), value::int32(env, fd)]);
          if HANDED_OVER.replace(-1) == -1 {
            // A NativeSocket owns it now.
            let _ = accepted.into_raw_fd();
          }
        }
        Ok(None) => return,
        Err(err) => {
          // EMFILE and friends: report and keep listening.
          self.emit_error(err);
          return;
        }
      }
    }
  }
}

impl Ready for SocketInner {
  fn ready(self: Rc<Self>, readable: bool, writable: bool, error: Option<i32>) {
    if self.closed.get() {
      return;
    }
    let Some(_scope) = HandleScope::open(self.env) else {
      return;
    };
    let (readable, writable) = match error {
      None => (readable, writable),
      // libuv reports POLLERR as a failed poll (UV_EBADF) and stops the handle. On a socket,
      // POLLERR is the socket's own pending error: ECONNRESET when the peer died with messages
      // unread. Poll again and let the receive and the send below meet that error in their own
      // system calls, so that it is reported as what it is, where it belongs (a receive error,
      // or the sends' rejections: EPIPE), rather than as an 'error' about polling. Each of them
      // either makes progress or fails and drops its interest, so this cannot spin. (A listening
      // socket has no such error: there, a failed poll is reported as one.)
      Some(status) => match self.listening {
        false if self.interest_changed().is_ok() => (true, true),
        _ => {
          self.stop_reading_with(uv_error(status));
          return;
        }
      },
    };
    if readable && self.reading.get() {
      if self.listening {
        self.accept_ready();
      } else {
        self.read_ready();
      }
    }
    if writable && self.want_writable.get() && !self.closed.get() {
      self.call(&[value::int32(self.env, EVENT_WRITABLE)]);
    }
  }
}

fn uv_error(status: i32) -> SysError {
  SysError::new("poll", Errno::from_raw(-status))
}

/// Whether the peer has shut down its sending side (Linux `POLLRDHUP`; elsewhere `POLLHUP`).
fn peer_has_shut_down(fd: RawFd) -> bool {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  let events = libc::POLLRDHUP | libc::POLLHUP;
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  let events = libc::POLLHUP;
  let mut pollfd = libc::pollfd {
    fd,
    events,
    revents: 0,
  };
  // SAFETY: one pollfd, no waiting.
  let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
  ready > 0 && pollfd.revents & events != 0
}

fn ancillary_value(env: sys::napi_env, items: &[ReceivedCmsg]) -> sys::napi_value {
  let mut array = std::ptr::null_mut();
  // SAFETY: env is live; every value created belongs to it.
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

/// Closes the descriptors in a JavaScript array (the dispatcher's unclaimed ones).
fn close_listed(env: sys::napi_env, list: sys::napi_value) {
  let mut is_array = false;
  // SAFETY: env is live; list is a value of it.
  unsafe {
    if sys::napi_is_array(env, list, &mut is_array) != sys::Status::napi_ok || !is_array {
      return;
    }
    let mut length = 0;
    sys::napi_get_array_length(env, list, &mut length);
    for i in 0..length {
      let mut element = std::ptr::null_mut();
      let mut fd = -1;
      if sys::napi_get_element(env, list, i, &mut element) == sys::Status::napi_ok
        && sys::napi_get_value_int32(env, element, &mut fd) == sys::Status::napi_ok
        && fd >= 0
      {
        libc::close(fd);
      }
    }
  }
}

/// Environment teardown (a worker exiting): close every socket of this thread, and let the
/// environment finish once libuv is through with their handles.
unsafe extern "C" fn on_env_teardown(
  handle: sys::napi_async_cleanup_hook_handle,
  _arg: *mut std::ffi::c_void,
) {
  for socket in LIVE.take().iter().filter_map(Weak::upgrade) {
    socket.close_for_teardown();
  }
  // The environment frees its own references; ours must not outlive it.
  std::mem::forget(DELIVERY.take());
  TEARDOWN_HOOK.set(false);
  let handle = handle as usize;
  reactor::when_all_closed(Box::new(move || {
    // SAFETY: the handle napi gave this hook, removed once.
    unsafe { sys::napi_remove_async_cleanup_hook(handle as sys::napi_async_cleanup_hook_handle) };
  }));
}

fn track(env: sys::napi_env, socket: &Rc<SocketInner>) -> Result<()> {
  if !TEARDOWN_HOOK.get() {
    let mut handle = std::ptr::null_mut();
    // SAFETY: env is live; the hook is a plain function with no state.
    let status = unsafe {
      sys::napi_add_async_cleanup_hook(
        env,
        Some(on_env_teardown),
        std::ptr::null_mut(),
        &mut handle,
      )
    };
    if status != sys::Status::napi_ok {
      return Err(Error::new(
        Status::GenericFailure,
        "could not register the environment cleanup hook",
      ));
    }
    TEARDOWN_HOOK.set(true);
  }
  LIVE.with_borrow_mut(|live| {
    live.retain(|weak| weak.strong_count() > 0);
    live.push(Rc::downgrade(socket));
  });
  Ok(())
}

/// The native half of a socket in the event loop. Owns its descriptor.
#[napi]
pub struct NativeSocket {
  inner: Rc<SocketInner>,
}

#[napi]
impl NativeSocket {
  /// Takes ownership of `fd` (made non-blocking). `owner` is `this` for `dispatch` calls.
  #[napi(constructor)]
  pub fn new(
    env: Env,
    fd: i32,
    sock_type: i32,
    listening: bool,
    max_message_size: u32,
    owner: Unknown,
    dispatch: Unknown,
  ) -> Result<Self> {
    let kind = socket_ops::kind_of(&env, sock_type)?;
    if !reactor::available() {
      return Err(errors::throw_state_error(
        &env,
        "ERR_SENDMSG_NO_EVENT_LOOP",
        "this runtime does not expose libuv's poll functions, which event-loop sockets need",
      ));
    }
    sendmsg_core::fd::set_nonblocking(socket_ops::borrow(fd), true)
      .map_err(|err| errors::throw_sys(&env, err))?;
    let js = JsSide {
      owner: RefCell::new(Reference::new(env.raw(), owner.raw(), false)?),
      dispatch: Reference::new(env.raw(), dispatch.raw(), true)?,
      context: AsyncContext::new(env.raw(), owner.raw(), "UnixSocket")?,
    };
    let inner = Rc::new(SocketInner {
      env: env.raw(),
      fd: Cell::new(fd),
      kind,
      listening,
      slot_size: (max_message_size as usize).max(1),
      want_addresses: kind == SocketKind::Datagram,
      reading: Cell::new(false),
      want_writable: Cell::new(false),
      referenced: Cell::new(true),
      closed: Cell::new(false),
      watcher: RefCell::new(None),
      js: RefCell::new(Some(Rc::new(js))),
    });
    track(env.raw(), &inner)?;
    if HANDED_OVER.get() == fd {
      HANDED_OVER.set(-1);
    }
    Ok(Self { inner })
  }

  /// Starts delivering messages (or connections).
  #[napi]
  pub fn read_start(&self, env: Env) -> Result<()> {
    self.set_interest(&env, &self.inner.reading, true)
  }

  #[napi]
  pub fn read_stop(&self, env: Env) -> Result<()> {
    self.set_interest(&env, &self.inner.reading, false)
  }

  /// Asks for (or stops asking for) EVENT_WRITABLE.
  #[napi]
  pub fn watch_writable(&self, env: Env, on: bool) -> Result<()> {
    self.set_interest(&env, &self.inner.want_writable, on)
  }

  fn set_interest(&self, env: &Env, interest: &Cell<bool>, on: bool) -> Result<()> {
    interest.set(on);
    self
      .inner
      .interest_changed()
      .map_err(|err| errors::throw_sys(env, err))
  }

  /// Sends queued messages without blocking. `parts` holds the data of all of them in order;
  /// `plan` describes each: `[partCount, hasAddress, fdCount, ...fds]`; `addresses` holds the
  /// destinations of those with one. Returns the bytes sent on a stream socket, the whole
  /// messages sent otherwise; 0 when the socket is full.
  #[napi]
  pub fn send(
    &self,
    env: Env,
    parts: Vec<&[u8]>,
    plan: &[i32],
    addresses: Option<Vec<&[u8]>>,
  ) -> Result<f64> {
    let fd = self.open_fd(&env)?;
    let iov = outgoing::iovecs(&parts);
    let addresses: Vec<UnixAddr> = addresses
      .unwrap_or_default()
      .into_iter()
      .map(|path| outgoing::destination(&env, Some(path)).map(|address| address.expect("given")))
      .collect::<Result<_>>()?;
    let outgoing = plan_messages(&iov, plan, &addresses).ok_or_else(|| {
      errors::throw_type_error(&env, "ERR_INVALID_ARG_VALUE", "malformed send plan")
    })?;
    let sent = SEND_SCRATCH.with_borrow_mut(|scratch| match self.inner.kind {
      SocketKind::Stream => batch::send_stream(fd, &outgoing, scratch),
      _ => batch::send_datagrams(fd, &outgoing, scratch),
    });
    sent
      .map(|n| n as f64)
      .map_err(|err| errors::throw_sys(&env, err))
  }

  /// Sends one queued message without blocking: the common flush of a single message (a request,
  /// a reply), without the plan `send` takes. Returns the bytes sent on a stream (possibly fewer
  /// than all), 1 for a datagram, -1 when the socket is full.
  #[napi]
  pub fn send_one(
    &self,
    env: Env,
    data: &[u8],
    fds: Option<Vec<i32>>,
    address: Option<&[u8]>,
  ) -> Result<f64> {
    let fd = self.open_fd(&env)?;
    let address = outgoing::destination(&env, address)?;
    let result = SEND_CONTROL.with_borrow_mut(|control| {
      cmsg::encode_rights_into(control, fds.as_deref().unwrap_or_default())
        .map_err(|_| message::SendError::Sys(SysError::new("sendmsg", Errno::ENOBUFS)))?;
      message::send(
        fd,
        &[IoSlice::new(data)],
        control,
        libc::MSG_DONTWAIT,
        address
          .as_ref()
          .map(|a| a as &dyn nix::sys::socket::SockaddrLike),
      )
    });
    match result {
      Ok(sent) if self.inner.kind == SocketKind::Stream => Ok(sent as f64),
      Ok(_) => Ok(1.0),
      Err(message::SendError::Sys(err)) if err.errno == Errno::EAGAIN => Ok(-1.0),
      Err(err) => Err(errors::throw_send(&env, err)),
    }
  }

  /// Sends one message with arbitrary control messages, without blocking. Returns the bytes sent,
  /// -1 when the socket is full.
  #[napi]
  pub fn send_with_ancillary(
    &self,
    env: Env,
    parts: Vec<&[u8]>,
    ancillary: Vec<(i32, i32, &[u8])>,
    address: Option<&[u8]>,
  ) -> Result<f64> {
    let fd = self.open_fd(&env)?;
    let iov = outgoing::iovecs(&parts);
    let mut control = outgoing::control(&env, &ancillary)?;
    let address = outgoing::destination(&env, address)?;
    let result = message::send(
      fd,
      &iov,
      &mut control,
      libc::MSG_DONTWAIT,
      address
        .as_ref()
        .map(|a| a as &dyn nix::sys::socket::SockaddrLike),
    );
    match result {
      Ok(sent) => Ok(sent as f64),
      Err(message::SendError::Sys(err)) if err.errno == Errno::EAGAIN => Ok(-1.0),
      Err(err) => Err(errors::throw_send(&env, err)),
    }
  }

  /// Ends the sending direction: the peer reads end-of-file after the data sent so far.
  #[napi]
  pub fn shutdown(&self, env: Env) -> Result<()> {
    let fd = self.open_fd(&env)?;
    socket::shutdown_write(fd).map_err(|err| errors::throw_sys(&env, err))
  }

  /// Closes the descriptor; no event is delivered after this. Idempotent.
  #[napi]
  pub fn close(&self) {
    self.inner.close();
  }

  #[napi(js_name = "ref")]
  pub fn reference(&self) {
    self.inner.set_referenced(true);
  }

  #[napi]
  pub fn unref(&self) {
    self.inner.set_referenced(false);
  }

  fn open_fd(&self, env: &Env) -> Result<RawFd> {
    if self.inner.closed.get() {
      return Err(errors::throw_sys(
        env,
        SysError::new("sendmsg", Errno::EBADF),
      ));
    }
    Ok(self.inner.fd.get())
  }
}

impl Drop for NativeSocket {
  /// The JavaScript object was collected while idle: nothing else can close the descriptor.
  fn drop(&mut self) {
    self.inner.close();
  }
}

/// Splits the flat `parts` and `plan` into messages; `None` if the plan does not fit them.
fn plan_messages<'a>(
  parts: &'a [IoSlice<'a>],
  plan: &'a [i32],
  addresses: &'a [UnixAddr],
) -> Option<Vec<Outgoing<'a>>> {
  let mut messages = Vec::new();
  let (mut p, mut part, mut address) = (0, 0, 0);
  while p < plan.len() {
    let part_count = usize::try_from(*plan.get(p)?).ok()?;
    let has_address = *plan.get(p + 1)? != 0;
    let fd_count = usize::try_from(*plan.get(p + 2)?).ok()?;
    let fds = plan.get(p + 3..p + 3 + fd_count)?;
    p += 3 + fd_count;
    let message_parts = parts.get(part..part + part_count)?;
    part += part_count;
    let destination = if has_address {
      address += 1;
      Some(addresses.get(address - 1)? as &dyn nix::sys::socket::SockaddrLike)
    } else {
      None
    };
    messages.push(Outgoing {
      parts: message_parts,
      fds,
      address: destination,
    });
  }
  Some(messages)
}
