//! Many messages per system call, for sockets driven by an event loop: `recvmmsg`/`sendmmsg` on
//! Linux, a loop of `recvmsg`/`sendmsg` elsewhere. Both are non-blocking (`MSG_DONTWAIT`) and
//! report "would block" as zero messages rather than an error.
//!
//! A [`RecvBatch`] owns every descriptor the kernel installed the moment a receive returns, like
//! rustix's ancillary buffer: the caller takes a message's descriptors with
//! [`RecvBatch::take_fds`] (and a sender's pidfd, SCM_PIDFD, with [`RecvBatch::take_pidfd`]: kept
//! apart, so that a message's descriptors are exactly those its sender sent), and whatever it does
//! not take is closed by the next receive or when the batch is dropped.

use std::io::IoSlice;
use std::mem::size_of;
use std::ops::Range;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::cmsg::{self, ControlBuffer, FD_SIZE, MAX_FDS_PER_MESSAGE};
use crate::error::{read_again_after_reset, SysError, SysResult};
use crate::message::{check_descriptors_have_data, ReceivedCmsg};
use crate::msghdr::MessageHeader;
use crate::platform;
use crate::socket::SocketKind;

/// An allocation for receive buffers failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

/// Control room per received message: a full SCM_RIGHTS message, credentials and a pidfd.
pub fn default_control_space() -> usize {
  cmsg::space_for_payloads([MAX_FDS_PER_MESSAGE * FD_SIZE, 64, FD_SIZE]).expect("fits")
}

/// One received message's place in the batch.
#[derive(Clone, Debug, Default)]
struct Slot {
  len: usize,
  flags: i32,
  control_len: usize,
  name_len: usize,
  fds: Range<usize>,
  /// Where the sender's pidfd (SCM_PIDFD) is in `pidfds`, if one came.
  pidfd: Option<usize>,
  other: Range<usize>,
  /// Longer than its lent memory: the whole message is in the batch's own memory instead.
  spilled: bool,
}

/// Scratch space and results for receiving up to `capacity` messages in one call.
#[derive(Default)]
pub struct RecvBatch {
  capacity: usize,
  slot_size: usize,
  control_space: usize,
  want_addresses: bool,
  data: Vec<u8>,
  control: ControlBuffer,
  names: Vec<libc::sockaddr_storage>,
  iovecs: Vec<libc::iovec>,
  headers: Vec<MessageHeader>,
  slots: Vec<Slot>,
  received: usize,
  /// Slots `[0, dirty)` were written by the kernel and need their headers reset before reuse;
  /// the rest still hold what `prepare_slot` wrote. `usize::MAX` after a change of shape.
  dirty: usize,
  /// Descriptors of all received messages, each slot's a range of it; `None` once taken.
  fds: Vec<Option<OwnedFd>>,
  /// The senders' pidfds (SO_PASSPIDFD), at most one per message; `None` once taken.
  pidfds: Vec<Option<OwnedFd>>,
  /// Control messages that carry no descriptors (credentials, ...).
  other: Vec<ReceivedCmsg>,
  /// Memory lent by the caller for the last receive's data (`recv_into`): slot `i`'s at
  /// `lent[i]`, `lent_len` bytes; empty when the batch's own `data` is used.
  lent: Vec<*mut u8>,
  lent_len: usize,
}

/// A view of one received message.
pub struct BatchMessage<'a> {
  pub data: &'a [u8],
  /// `msg_flags` (MSG_TRUNC, MSG_CTRUNC, ...), without Linux's MSG_CMSG_CLOEXEC echo.
  pub flags: i32,
  /// How many descriptors arrived with SCM_RIGHTS (and are still to be taken or closed).
  pub fd_count: usize,
  /// Whether a pidfd of the sender (SCM_PIDFD) arrived.
  pub has_pidfd: bool,
  /// Control messages other than descriptors.
  pub other: &'a [ReceivedCmsg],
  /// The data is in the memory lent for its slot (`recv_into`), not in the batch's own.
  pub lent: bool,
  /// The sender's address when asked for and given.
  pub address: Option<SockaddrStorage>,
}

impl RecvBatch {
  /// Sizes the scratch space: `capacity` messages of at most `slot_size` bytes each, with
  /// `control_space` bytes of control buffer each. Reuses the allocations.
  pub fn ensure(
    &mut self,
    capacity: usize,
    slot_size: usize,
    control_space: usize,
    want_addresses: bool,
  ) -> Result<(), OutOfMemory> {
    self.release();
    if capacity == self.capacity
      && slot_size == self.slot_size
      && control_space == self.control_space
      && want_addresses == self.want_addresses
    {
      return Ok(());
    }
    self.dirty = usize::MAX;
    // Until the new shape is complete: a failed allocation below must not leave a shape that the
    // next call takes as ready (the control buffer, say, emptied).
    self.capacity = 0;
    let data_len = capacity.saturating_mul(slot_size);
    if self.data.len() < data_len {
      self.data = crate::alloc::zeroed(data_len).ok_or(OutOfMemory)?;
    }
    let control_len = capacity.saturating_mul(control_space);
    if self.control.len() < control_len {
      self.control.resize(control_len).map_err(|_| OutOfMemory)?;
    }
    if want_addresses && self.names.len() < capacity {
      self
        .names
        .try_reserve(capacity - self.names.len())
        .map_err(|_| OutOfMemory)?;
      // SAFETY: sockaddr_storage is plain data; all-zero is valid.
      self.names.resize(capacity, unsafe { std::mem::zeroed() });
    }
    // Two per slot: lent memory, and the batch's own for what does not fit in it.
    self.iovecs.resize(
      2 * capacity,
      libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
      },
    );
    self
      .headers
      .resize(capacity, MessageHeader::new(std::ptr::null(), 0));
    self.slots.resize(capacity, Slot::default());
    self.capacity = capacity;
    self.slot_size = slot_size;
    self.control_space = control_space;
    self.want_addresses = want_addresses;
    Ok(())
  }

  /// Closes the descriptors nobody took and forgets the previous results.
  pub fn release(&mut self) {
    self.fds.clear();
    self.pidfds.clear();
    self.other.clear();
    self.received = 0;
  }

  /// Receives up to `max` messages (at most the capacity) without blocking: one `recvmsg` when
  /// `max` is 1, otherwise one `recvmmsg` (Linux) or a loop of `recvmsg`. Returns how many;
  /// zero when nothing was waiting. The previous results are released first. The ECONNRESET a
  /// dead peer leaves before its last messages is never returned: the receive is made again.
  pub fn recv(&mut self, socket: RawFd, max: usize) -> SysResult<usize> {
    self.lend_nothing();
    self.recv_counted(socket, max)
  }

  /// Receives as [`recv`](Self::recv) does, but writes message `i`'s data into `slots[i]`
  /// (`slot_len` bytes each, at most the slot size; at most `slots.len()` messages): memory the
  /// caller then hands on as it is (to JavaScript, say) rather than copying the data out of the
  /// batch. A longer message is received into the batch's own memory ([`BatchMessage::lent`] is
  /// false), whole.
  ///
  /// # Safety
  /// Each of `slots` must be valid for writes of `slot_len` bytes, and neither read nor written
  /// by anyone else, until the next receive, [`release`](Self::release) or drop of the batch,
  /// after which the messages' bytes are the caller's.
  pub unsafe fn recv_into(
    &mut self,
    socket: RawFd,
    max: usize,
    slots: &[*mut u8],
    slot_len: usize,
  ) -> SysResult<usize> {
    let slot_len = slot_len.min(self.slot_size);
    if self.lent != slots || self.lent_len != slot_len {
      self.lent.clear();
      self.lent.extend_from_slice(slots);
      self.lent_len = slot_len;
      self.dirty = usize::MAX;
    }
    self.recv_counted(socket, max.min(slots.len()))
  }

  /// Back to the batch's own memory: a change moves every slot, so all are laid out again.
  fn lend_nothing(&mut self) {
    if !self.lent.is_empty() {
      self.lent.clear();
      self.dirty = usize::MAX;
    }
  }

  fn recv_counted(&mut self, socket: RawFd, max: usize) -> SysResult<usize> {
    self.release();
    let count = max.min(self.capacity);
    if count == 0 {
      return Ok(0);
    }
    let received = match read_again_after_reset(|| self.recv_raw(socket, count)) {
      Ok(n) => n,
      // Nothing waiting; or a second reset right after the first, which is news of nothing
      // received: both end this call with no messages, and the next one reads what there is.
      Err(err) if err.errno == Errno::EAGAIN || err.errno == Errno::ECONNRESET => 0,
      Err(err) => return Err(err),
    };
    self.received = received;
    self.own_control()?;
    Ok(received)
  }

  fn prepare_slot(&mut self, i: usize) -> MessageHeader {
    let own = self.data[i * self.slot_size..].as_mut_ptr();
    let iovecs = match self.lent.get(i) {
      Some(&lent) => {
        // The lent memory first, the rest of the slot's size in our own after it.
        self.iovecs[2 * i] = libc::iovec {
          iov_base: lent.cast(),
          iov_len: self.lent_len,
        };
        self.iovecs[2 * i + 1] = libc::iovec {
          iov_base: own.wrapping_add(self.lent_len).cast(),
          iov_len: self.slot_size - self.lent_len,
        };
        2
      }
      None => {
        self.iovecs[2 * i] = libc::iovec {
          iov_base: own.cast(),
          iov_len: self.slot_size,
        };
        1
      }
    };
    let mut header = MessageHeader::new(&self.iovecs[2 * i], iovecs);
    if self.control_space > 0 {
      let control = self.control.as_bytes_mut()[i * self.control_space..].as_mut_ptr();
      header = header.with_control(control.cast(), self.control_space);
    }
    if self.want_addresses {
      header = header.with_name(
        (&mut self.names[i] as *mut libc::sockaddr_storage).cast(),
        size_of::<libc::sockaddr_storage>() as _,
      );
    }
    header
  }

  fn record(&mut self, i: usize) {
    let header = &self.headers[i];
    let len = (header.len as usize).min(self.slot_size);
    let spilled = match self.lent.get(i) {
      Some(&lent) if len > self.lent_len => {
        // Its head is in the lent memory, its tail in ours right after where the head belongs:
        // bring the head over, and the message is whole in our memory.
        // SAFETY: the kernel wrote `lent_len` bytes there in this receive (recv_into's contract
        // keeps it valid); our slot holds `slot_size` bytes; the two do not overlap.
        unsafe {
          std::ptr::copy_nonoverlapping(
            lent,
            self.data[i * self.slot_size..].as_mut_ptr(),
            self.lent_len,
          )
        };
        true
      }
      _ => false,
    };
    self.slots[i] = Slot {
      len,
      spilled,
      flags: platform::clean_flags(header.flags()),
      control_len: header.control_len(self.control_space),
      name_len: if self.want_addresses {
        header.name_len() as usize
      } else {
        0
      },
      fds: 0..0,
      pidfd: None,
      other: 0..0,
    };
  }

  fn recv_raw(&mut self, socket: RawFd, count: usize) -> SysResult<usize> {
    // Only the slots the kernel wrote last time need resetting: a reply-sized receive touches one
    // or two of them, not all of them.
    for i in 0..self.dirty.min(self.capacity) {
      self.headers[i] = self.prepare_slot(i);
    }
    // Should the call fail, take every slot offered as written.
    self.dirty = count;
    let flags = libc::MSG_DONTWAIT | platform::RECV_FLAGS;
    let n = if count == 1 {
      // One message asked for: a plain `recvmsg`. `recvmmsg` would make the same receive and
      // then look for a second message, which a caller expecting one (a reply) pays for nothing.
      let header = &mut self.headers[0];
      header.len = header.recv(socket, flags)? as libc::c_uint;
      1
    } else {
      platform::recv_many(socket, &mut self.headers[..count], flags)?
    };
    for i in 0..n {
      self.record(i);
    }
    // The kernel wrote the headers of the messages it returned (the one it stopped at it left).
    self.dirty = n;
    Ok(n)
  }

  /// Takes ownership of every descriptor the kernel just installed, before anything else can fail.
  fn own_control(&mut self) -> SysResult<()> {
    for i in 0..self.received {
      let start = i * self.control_space;
      let control = &self.control.as_bytes()[start..start + self.slots[i].control_len];
      let fds_start = self.fds.len();
      let other_start = self.other.len();
      let mut pidfd = None;
      for raw in cmsg::walk(control) {
        if platform::is_pidfd(raw.kind) && raw.carries_fds() {
          // SAFETY: as for SCM_RIGHTS below. The kernel sends one; were there more, the first is
          // the message's and the others close right here.
          for owned in raw.fds().map(|n| unsafe { OwnedFd::from_raw_fd(n) }) {
            if pidfd.is_none() {
              pidfd = Some(self.pidfds.len());
              self.pidfds.push(Some(owned));
            }
          }
        } else if raw.carries_fds() {
          // SAFETY: the kernel installed these descriptors for us in this receive.
          self
            .fds
            .extend(raw.fds().map(|n| Some(unsafe { OwnedFd::from_raw_fd(n) })));
        } else {
          // SAFETY: not fd-carrying, so nothing is owned; this only copies the bytes.
          self.other.push(unsafe { crate::message::own(raw) });
        }
      }
      self.slots[i].fds = fds_start..self.fds.len();
      self.slots[i].pidfd = pidfd;
      self.slots[i].other = other_start..self.other.len();
    }
    for owned in self.fds.iter().chain(&self.pidfds).flatten() {
      platform::make_received_cloexec(owned)?;
    }
    Ok(())
  }

  /// How many messages the last receive returned.
  pub fn len(&self) -> usize {
    self.received
  }

  pub fn is_empty(&self) -> bool {
    self.received == 0
  }

  pub fn message(&self, i: usize) -> BatchMessage<'_> {
    assert!(i < self.received, "message {i} of {}", self.received);
    let slot = &self.slots[i];
    let address = if slot.name_len > 0 {
      // SAFETY: the kernel wrote `name_len` bytes of a sockaddr into this slot.
      unsafe {
        SockaddrStorage::from_raw(
          (&self.names[i] as *const libc::sockaddr_storage).cast(),
          Some(slot.name_len as _),
        )
      }
    } else {
      None
    };
    let lent = self.lent.get(i).filter(|_| !slot.spilled);
    let data = match lent {
      // SAFETY: the kernel wrote these bytes of the lent slot in the last receive, and its
      // lender keeps it valid and untouched until this batch is released (recv_into's contract).
      Some(&lent) => unsafe { std::slice::from_raw_parts(lent, slot.len) },
      None => &self.data[i * self.slot_size..i * self.slot_size + slot.len],
    };
    BatchMessage {
      data,
      lent: lent.is_some(),
      flags: slot.flags,
      fd_count: slot.fds.len(),
      has_pidfd: slot.pidfd.is_some(),
      other: &self.other[slot.other.clone()],
      address,
    }
  }

  /// Message `i`'s descriptor numbers, in order, while the batch still owns them.
  pub fn fd_numbers_of(&self, i: usize) -> impl ExactSizeIterator<Item = RawFd> + '_ {
    assert!(i < self.received);
    self.fds[self.slots[i].fds.clone()]
      .iter()
      .map(|owned| owned.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd))
  }

  /// Takes message `i`'s pidfd of its sender, if one came. Not taken, it closes on release.
  pub fn take_pidfd(&mut self, i: usize) -> Option<OwnedFd> {
    assert!(i < self.received);
    let index = self.slots[i].pidfd?;
    self.pidfds[index].take()
  }

  /// Takes message `i`'s descriptors, in order. Those not taken close on release.
  pub fn take_fds(&mut self, i: usize) -> impl Iterator<Item = OwnedFd> + '_ {
    assert!(i < self.received);
    let range = self.slots[i].fds.clone();
    self.fds[range].iter_mut().filter_map(Option::take)
  }
}

/// One message to send: its data in parts, the descriptors it carries, and where to (datagrams).
pub struct Outgoing<'a> {
  pub parts: &'a [IoSlice<'a>],
  pub fds: &'a [RawFd],
  pub address: Option<&'a dyn SockaddrLike>,
}

impl Outgoing<'_> {
  fn len(&self) -> usize {
    self.parts.iter().map(|part| part.len()).sum()
  }
}

/// Reusable control buffers for a send batch.
#[derive(Default)]
pub struct SendScratch {
  controls: Vec<ControlBuffer>,
  headers: Vec<MessageHeader>,
}

fn header_for(
  parts: &[IoSlice<'_>],
  control: &mut ControlBuffer,
  address: Option<&dyn SockaddrLike>,
) -> MessageHeader {
  MessageHeader::for_send(parts, control.as_msg_control(), control.len(), address)
}

fn encode_rights(scratch: &mut SendScratch, messages: &[Outgoing<'_>]) -> Result<(), SysError> {
  if scratch.controls.len() < messages.len() {
    scratch
      .controls
      .resize_with(messages.len(), ControlBuffer::default);
  }
  for (message, control) in messages.iter().zip(&mut scratch.controls) {
    cmsg::encode_rights_into(control, message.fds)
      .map_err(|_| SysError::new("sendmsg", Errno::ENOBUFS))?;
  }
  Ok(())
}

/// Sends whole messages on a datagram or seqpacket socket without blocking. Returns how many
/// were sent, in order; zero when the socket is full. An error after some were sent is left for
/// the next call to report, as `sendmmsg` does.
pub fn send_datagrams(
  socket: RawFd,
  messages: &[Outgoing<'_>],
  scratch: &mut SendScratch,
) -> SysResult<usize> {
  if messages.is_empty() {
    return Ok(0);
  }
  platform::prepare_send(socket)?;
  encode_rights(scratch, messages)?;
  let result = send_datagrams_raw(socket, messages, scratch);
  match result {
    Err(err) if err.errno == Errno::EAGAIN => Ok(0),
    other => other,
  }
}

fn send_datagrams_raw(
  socket: RawFd,
  messages: &[Outgoing<'_>],
  scratch: &mut SendScratch,
) -> SysResult<usize> {
  scratch.headers.clear();
  for (message, control) in messages.iter().zip(&mut scratch.controls) {
    scratch
      .headers
      .push(header_for(message.parts, control, message.address));
  }
  platform::send_many(socket, &mut scratch.headers, SEND_NOW)
}

/// Flags of every batch send: never block, never raise SIGPIPE.
const SEND_NOW: i32 = libc::MSG_DONTWAIT | platform::SEND_FLAGS;

/// The most iovecs one `sendmsg` takes (POSIX guarantees 16; Linux and Darwin take 1024).
const IOV_MAX: usize = 1024;

/// A run of a stream send: plain messages, ended by at most one message that carries descriptors.
///
/// A stream read that brings descriptors stops after the kernel buffer that carried them, so the
/// bytes of a later message must never share that buffer: the receiver would take them for part
/// of the message the descriptors came with. Plain messages before it may share it.
struct Run {
  iov: Range<usize>,
  /// The message whose descriptors this run carries: always its last.
  carrier: Option<usize>,
  len: usize,
}

/// Cuts `messages` into runs, their iovecs gathered in `iovecs`.
///
/// Plain messages join a descriptor-carrying one only while the run stays within
/// [`platform::ATOMIC_STREAM_SEND`]: the descriptors ride on the run's first byte, so a run cut
/// short by a full socket would have sent them before their message started, and the caller,
/// seeing that message unsent, would send them again.
fn plan_runs<'a>(
  messages: &[Outgoing<'a>],
  iovecs: &mut Vec<IoSlice<'a>>,
  runs: &mut Vec<Run>,
) -> SysResult<()> {
  let mut open: Option<Run> = None;
  for (i, message) in messages.iter().enumerate() {
    let len = message.len();
    let carries_fds = !message.fds.is_empty();
    // Callers refuse this earlier, with words; here it is only kept from the kernel.
    check_descriptors_have_data(SocketKind::Stream, len, carries_fds)
      .map_err(|_| SysError::new("sendmsg", Errno::EINVAL))?;
    let joins = open.as_ref().is_some_and(|run| {
      run.iov.len() + message.parts.len() <= IOV_MAX
        && (!carries_fds || run.len + len <= platform::ATOMIC_STREAM_SEND)
    });
    if !joins {
      runs.extend(open.take().filter(|run| run.len > 0));
    }
    let run = open.get_or_insert(Run {
      iov: iovecs.len()..iovecs.len(),
      carrier: None,
      len: 0,
    });
    iovecs.extend_from_slice(message.parts);
    run.iov.end = iovecs.len();
    run.len += len;
    if carries_fds {
      run.carrier = Some(i);
      runs.extend(open.take());
    }
  }
  runs.extend(open.filter(|run| run.len > 0));
  Ok(())
}

/// Sends messages on a stream socket without blocking, in as few system calls as the descriptors
/// allow: a message that carries descriptors ends its `sendmsg` (a stream read that brings them
/// stops after it, so no later byte may share it), plain messages before it may join it, and on
/// Linux consecutive short runs go out together in one `sendmmsg`. Returns the bytes sent, which
/// may end inside a message; zero when the socket is full.
pub fn send_stream(
  socket: RawFd,
  messages: &[Outgoing<'_>],
  scratch: &mut SendScratch,
) -> SysResult<usize> {
  platform::prepare_send(socket)?;
  let mut iovecs: Vec<IoSlice<'_>> = Vec::new();
  let mut runs: Vec<Run> = Vec::new();
  plan_runs(messages, &mut iovecs, &mut runs)?;
  if scratch.controls.len() < runs.len().min(SEND_GROUP) {
    scratch
      .controls
      .resize_with(runs.len().min(SEND_GROUP), ControlBuffer::default);
  }

  let mut total = 0;
  let mut r = 0;
  while r < runs.len() {
    let group = atomic_group(&runs[r..]);
    let result = if group > 1 {
      send_runs_together(socket, messages, &iovecs, &runs[r..r + group], scratch)
    } else {
      send_run(
        socket,
        messages,
        &iovecs,
        &runs[r],
        &mut scratch.controls[0],
      )
    };
    let (sent, complete) = match result {
      Ok(progress) => progress,
      // Report what went out; the error recurs on the next call.
      Err(_) if total > 0 => return Ok(total),
      Err(err) => return Err(err),
    };
    total += sent;
    if complete < group.max(1) {
      return Ok(total);
    }
    r += group.max(1);
  }
  Ok(total)
}

impl Run {
  fn fds<'a>(&self, messages: &[Outgoing<'a>]) -> &'a [RawFd] {
    self.carrier.map_or(&[], |i| messages[i].fds)
  }
}

/// Runs that can share one `sendmmsg`.
const SEND_GROUP: usize = 64;

/// How many of the next runs can share one `sendmmsg`: those short enough to go all or nothing.
fn atomic_group(runs: &[Run]) -> usize {
  runs
    .iter()
    .take(SEND_GROUP)
    .take_while(|run| run.len <= platform::ATOMIC_STREAM_SEND)
    .count()
}

/// One run in one `sendmsg`. Returns the bytes sent and 1 if the run went whole, else 0.
fn send_run(
  socket: RawFd,
  messages: &[Outgoing<'_>],
  iovecs: &[IoSlice<'_>],
  run: &Run,
  control: &mut ControlBuffer,
) -> SysResult<(usize, usize)> {
  cmsg::encode_rights_into(control, run.fds(messages))
    .map_err(|_| SysError::new("sendmsg", Errno::ENOBUFS))?;
  let result = header_for(&iovecs[run.iov.clone()], control, None).send(socket, SEND_NOW);
  match result {
    Ok(n) => Ok((n, usize::from(n == run.len))),
    Err(err) if err.errno == Errno::EAGAIN => Ok((0, 0)),
    Err(err) => Err(err),
  }
}

/// Short runs in one `sendmmsg`; each is all or nothing (see [`platform::ATOMIC_STREAM_SEND`]).
/// Returns the bytes sent and how many runs went whole. An error after some went is left for the
/// next call.
fn send_runs_together(
  socket: RawFd,
  messages: &[Outgoing<'_>],
  iovecs: &[IoSlice<'_>],
  runs: &[Run],
  scratch: &mut SendScratch,
) -> SysResult<(usize, usize)> {
  scratch.headers.clear();
  for (run, control) in runs.iter().zip(&mut scratch.controls) {
    cmsg::encode_rights_into(control, run.fds(messages))
      .map_err(|_| SysError::new("sendmsg", Errno::ENOBUFS))?;
    scratch
      .headers
      .push(header_for(&iovecs[run.iov.clone()], control, None));
  }
  let sent = match platform::send_many(socket, &mut scratch.headers, SEND_NOW) {
    Ok(sent) => sent,
    Err(err) if err.errno == Errno::EAGAIN => return Ok((0, 0)),
    Err(err) => return Err(err),
  };
  let mut bytes = 0;
  for (header, run) in scratch.headers[..sent].iter().zip(runs) {
    bytes += header.len as usize;
    if header.len as usize != run.len {
      // Cannot happen for runs this short; if it did, stop where the stream is exact.
      return Ok((bytes, 0));
    }
  }
  Ok((bytes, sent))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn runs_of(messages: &[Outgoing<'_>]) -> Vec<(usize, Option<usize>)> {
    let (mut iovecs, mut runs) = (Vec::new(), Vec::new());
    plan_runs(messages, &mut iovecs, &mut runs).unwrap();
    runs.iter().map(|run| (run.len, run.carrier)).collect()
  }

  #[test]
  fn a_message_with_descriptors_ends_its_run() {
    let (short, long) = ([IoSlice::new(b"ab")], [IoSlice::new(&[0; 4000])]);
    let fds = [0];
    let plain = |parts| Outgoing {
      parts,
      fds: &[],
      address: None,
    };
    let carrying = |parts| Outgoing {
      parts,
      fds: &fds,
      address: None,
    };
    // Plain messages after descriptors start a new run.
    assert_eq!(
      runs_of(&[carrying(&short), plain(&short), plain(&short)]),
      [(2, Some(0)), (4, None)]
    );
    // Plain messages before descriptors join them where the run goes all or nothing.
    let joined = if platform::ATOMIC_STREAM_SEND >= 4 {
      vec![(4, Some(1)), (2, None)]
    } else {
      vec![(2, None), (2, Some(1)), (2, None)]
    };
    assert_eq!(
      runs_of(&[plain(&short), carrying(&short), plain(&short)]),
      joined
    );
    // A run too long to go whole leaves the descriptors on their own message's first byte.
    assert_eq!(
      runs_of(&[plain(&long), carrying(&short)]),
      [(4000, None), (2, Some(1))]
    );
    assert_eq!(
      runs_of(&[plain(&short), carrying(&long)]),
      [(2, None), (4000, Some(1))]
    );
  }

  #[test]
  fn default_control_space_holds_a_full_message() {
    let space = default_control_space();
    assert!(space >= cmsg::cmsg_space(253 * 4).unwrap());
  }
}
