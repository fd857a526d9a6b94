//! The Twisted-shaped synchronous API: `sendmsg`, `recvmsg`, `getSocketFamily`, `socketpair`.
//!
//! Arguments arrive already checked and normalised by the TypeScript layer (`lib/sync.ts`):
//! data as a list of byte views, ancillary data as `[level, type, bytes]` triples, integers in range.
//! These calls block when the socket is blocking: that is their contract.

use std::cell::Cell;
use std::os::fd::{AsRawFd, IntoRawFd};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendmsg_core::cmsg::{self, ControlBuffer};
use sendmsg_core::message::{self, ReceivedCmsg};
use sendmsg_core::socket;

use crate::{errors, outgoing, socket_ops};

thread_local! {
  /// Reused across calls on one thread; large one-off requests do not stay cached.
  static SCRATCH: Cell<(Vec<u8>, ControlBuffer)> = Cell::new((Vec::new(), ControlBuffer::default()));
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
  let iov = outgoing::iovecs(&chunks);
  let mut control = outgoing::control(&env, &ancillary)?;
  message::send(fd, &iov, &mut control, flags, None)
    .map(|sent| sent as f64)
    .map_err(|err| errors::throw_send(&env, err))
}

/// Receives one message of at most `max_size` bytes with room for `cmsg_size` bytes of control
/// payload (the buffer is `CMSG_SPACE(cmsg_size)`, as in Twisted). Returns `{ data, ancillary,
/// flags }`: the control messages as `[level, type, bytes]`, descriptors as native-endian 32-bit
/// numbers, now owned by the caller.
///
/// The Buffers are copies made by Node (`napi_create_buffer_copy`), not external buffers: those
/// cost a global handle and a finalizer each, several microseconds per call.
#[napi(
  ts_return_type = "{ data: Buffer; ancillary: Array<[number, number, Buffer]>; flags: number }"
)]
pub fn recvmsg<'env>(
  env: &'env Env,
  fd: i32,
  max_size: u32,
  cmsg_size: u32,
  flags: i32,
) -> Result<Object<'env>> {
  let control_len = cmsg::cmsg_space(cmsg_size as usize)
    .ok_or_else(|| errors::throw_range_error(env, "ERR_OUT_OF_RANGE", "cmsgSize is too large"))?;
  // Taken out of the thread's cell for the call: building the result may run user code (a setter
  // on Object.prototype) that calls recvmsg again, which then finds no borrow and uses a fresh
  // scratch of its own.
  let mut scratch = SCRATCH.take();
  let result = (|| {
    let (data, control) = &mut scratch;
    let max_size = max_size as usize;
    if data.len() < max_size {
      // A fresh calloc'd buffer, not a resize: a large maxSize must not cost a memset per call.
      *data = sendmsg_core::alloc::zeroed(max_size).ok_or_else(|| errors::out_of_memory(env))?;
    }
    if control.len() != control_len {
      control
        .resize(control_len)
        .map_err(|_| errors::out_of_memory(env))?;
    }
    let received = message::recv(fd, &mut data[..max_size], control, flags, false);
    let result = received
      .map_err(|err| errors::throw_sys(env, err))
      .and_then(|received| {
        message_object(env, &data[..received.len], received.control, received.flags)
      });
    if data.len() > SCRATCH_KEEP {
      *data = Vec::new();
    }
    if control.len() > SCRATCH_KEEP {
      *control = ControlBuffer::default();
    }
    result
  })();
  SCRATCH.set(scratch);
  result
}

/// `{ data, ancillary, flags }`. Descriptors are handed over as numbers only once every value is
/// built, so a failure on the way closes them instead of losing them.
fn message_object<'env>(
  env: &'env Env,
  data: &[u8],
  control: Vec<ReceivedCmsg>,
  flags: i32,
) -> Result<Object<'env>> {
  let mut object = Object::new(env)?;
  object.set_named_property("data", BufferSlice::copy_from(env, data)?)?;
  let mut ancillary = env.create_array(control.len() as u32)?;
  for (i, item) in control.iter().enumerate() {
    let payload: Vec<u8> = match item {
      ReceivedCmsg::Fds { fds, .. } => fds
        .iter()
        .flat_map(|owned| owned.as_raw_fd().to_ne_bytes())
        .collect(),
      ReceivedCmsg::Data { data, .. } => data.clone(),
    };
    let mut triple = env.create_array(3)?;
    triple.set(0, item.level())?;
    triple.set(1, item.kind())?;
    triple.set(2, BufferSlice::copy_from(env, payload)?)?;
    ancillary.set(i as u32, triple)?;
  }
  object.set_named_property("ancillary", ancillary)?;
  object.set_named_property("flags", flags)?;
  // Everything is built: the caller owns the descriptors from here on.
  for item in control {
    if let ReceivedCmsg::Fds { fds, .. } = item {
      fds.into_iter().for_each(|owned| {
        let _ = owned.into_raw_fd();
      });
    }
  }
  Ok(object)
}

/// The address family of a socket (`AF_UNIX`, `AF_INET`, ...).
#[napi]
pub fn get_socket_family(env: Env, fd: i32) -> Result<i32> {
  socket::family(fd).map_err(|err| errors::throw_sys(&env, err))
}

/// A connected pair of AF_UNIX sockets of `sock_type` (`SOCK_STREAM`, ...), both close-on-exec.
#[napi]
pub fn socketpair(env: Env, sock_type: i32, nonblocking: bool) -> Result<Vec<i32>> {
  let kind = socket_ops::kind_of(&env, sock_type)?;
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

/// A new descriptor for the same socket or file, close-on-exec.
#[napi]
pub fn dup(env: Env, fd: i32) -> Result<i32> {
  sendmsg_core::fd::dup_cloexec(socket_ops::borrow(fd))
    .map(IntoRawFd::into_raw_fd)
    .map_err(|err| errors::throw_sys(&env, err))
}

/// Tries to take an exclusive `flock(2)` lock on `fd` without waiting; `false` when another open
/// file holds one. Closing the descriptor releases it (so does the process's death).
#[napi]
pub fn try_lock_exclusive(env: Env, fd: i32) -> Result<bool> {
  sendmsg_core::fd::try_lock_exclusive(socket_ops::borrow(fd))
    .map_err(|err| errors::throw_sys(&env, err))
}
