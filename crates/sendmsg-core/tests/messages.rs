//! Real sockets: what the kernel does with our messages, and that no descriptor leaks.
//!
//! Every test holds `common::lock()` so that the open-descriptor counts of one test are not
//! disturbed by another test's sockets in a parallel thread.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use sendmsg_core::cmsg::{self, ControlBuffer, OutgoingCmsg, FD_SIZE};
use sendmsg_core::message::{self, ReceivedCmsg, SendError};
use sendmsg_core::socket::{socketpair, SocketKind};
use sendmsg_core::{fd, SysError};

mod common;
use common::{lock, open_fds};

fn pipe() -> (OwnedFd, OwnedFd) {
  nix::unistd::pipe().unwrap()
}

fn rights(fds: &[RawFd]) -> ControlBuffer {
  let mut buffer = ControlBuffer::default();
  cmsg::encode_rights_into(&mut buffer, fds).unwrap();
  buffer
}

fn send(socket: &OwnedFd, data: &[u8], control: &mut ControlBuffer) -> Result<usize, SendError> {
  message::send(socket.as_raw_fd(), &[IoSlice::new(data)], control, 0, None)
}

fn recv(
  socket: &OwnedFd,
  max: usize,
  control_payload: usize,
  flags: i32,
) -> message::ReceivedMessage {
  let mut data = vec![0u8; max];
  let mut control = ControlBuffer::zeroed(cmsg::cmsg_space(control_payload).unwrap()).unwrap();
  let mut received =
    message::recv(socket.as_raw_fd(), &mut data, &mut control, flags, false).unwrap();
  data.truncate(received.len);
  received.len = data.len();
  // Keep the bytes reachable for assertions through a side channel.
  RECEIVED.with(|cell| *cell.borrow_mut() = data);
  received
}

thread_local! {
  static RECEIVED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn last_data() -> Vec<u8> {
  RECEIVED.with(|cell| cell.borrow().clone())
}

fn fds_of(received: message::ReceivedMessage) -> Vec<OwnedFd> {
  received
    .control
    .into_iter()
    .flat_map(|item| match item {
      ReceivedCmsg::Fds { fds, .. } => fds,
      ReceivedCmsg::Data { .. } => Vec::new(),
    })
    .collect()
}

#[test]
fn plain_data_round_trip() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
  let sent = send(&a, b"Hello, world", &mut ControlBuffer::default()).unwrap();
  assert_eq!(sent, 12);
  let received = recv(&b, 1024, 0, 0);
  assert_eq!(last_data(), b"Hello, world");
  assert!(received.control.is_empty());
  assert_eq!(received.flags, 0);
}

#[test]
fn gathered_chunks_go_in_one_message() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Datagram, false).unwrap();
  let iov = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")];
  let sent = message::send(a.as_raw_fd(), &iov, &mut ControlBuffer::default(), 0, None).unwrap();
  assert_eq!(sent, 5);
  recv(&b, 64, 0, 0);
  assert_eq!(last_data(), b"abcde");
}

#[test]
fn a_copied_pipe_descriptor_reads_the_second_half() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
    let (read_end, write_end) = pipe();
    nix::unistd::write(&write_end, b"Hello, world").unwrap();
    send(&a, b"x", &mut rights(&[read_end.as_raw_fd()])).unwrap();
    let received = recv(&b, 16, 64, 0);
    let mut fds = fds_of(received);
    assert_eq!(fds.len(), 1);
    let copy = fds.pop().unwrap();
    assert_ne!(copy.as_raw_fd(), read_end.as_raw_fd());
    let mut first = [0u8; 6];
    let mut second = [0u8; 6];
    std::fs::File::from(read_end)
      .read_exact(&mut first)
      .unwrap();
    std::fs::File::from(copy).read_exact(&mut second).unwrap();
    assert_eq!(&first, b"Hello,");
    assert_eq!(&second, b" world");
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn received_descriptors_are_close_on_exec_and_flags_are_clean() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
  let (read_end, _write_end) = pipe();
  assert!(!fd::is_cloexec(&read_end).unwrap() || cfg!(not(target_os = "linux")));
  send(&a, b"x", &mut rights(&[read_end.as_raw_fd()])).unwrap();
  let received = recv(&b, 16, 64, 0);
  assert_eq!(
    received.flags, 0,
    "MSG_CMSG_CLOEXEC must not leak into the flags"
  );
  for owned in fds_of(received) {
    assert!(fd::is_cloexec(&owned).unwrap());
  }
}

#[test]
fn the_kernels_limit_of_253_descriptors_holds_and_254_is_einval() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::SeqPacket, false).unwrap();
    // 254 pipes whose read ends each hold their index: the copies must read back 0..253 in order.
    let read_ends: Vec<OwnedFd> = (0..254u16)
      .map(|i| {
        let (read_end, write_end) = pipe();
        nix::unistd::write(&write_end, &i.to_ne_bytes()).unwrap();
        read_end
      })
      .collect();
    let numbers: Vec<RawFd> = read_ends.iter().map(|d| d.as_raw_fd()).collect();

    let err = send(&a, b"x", &mut rights(&numbers)).unwrap_err();
    assert_eq!(err, SendError::Sys(SysError::new("sendmsg", Errno::EINVAL)));

    send(&a, b"x", &mut rights(&numbers[..253])).unwrap();
    let received = recv(&b, 16, 253 * FD_SIZE, 0);
    assert_eq!(received.flags & libc::MSG_CTRUNC, 0);
    let indices: Vec<u16> = fds_of(received)
      .into_iter()
      .map(|owned| {
        let mut marker = [0u8; 2];
        std::fs::File::from(owned).read_exact(&mut marker).unwrap();
        u16::from_ne_bytes(marker)
      })
      .collect();
    assert_eq!(indices, (0..253).collect::<Vec<u16>>());
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn descriptors_keep_their_order() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Datagram, false).unwrap();
  // Three pipes, each with its own marker byte: the received copies must read them back in order.
  let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe()).collect();
  for (i, (_, write_end)) in pipes.iter().enumerate() {
    nix::unistd::write(write_end, &[b'a' + i as u8]).unwrap();
  }
  let numbers: Vec<RawFd> = pipes.iter().rev().map(|(r, _)| r.as_raw_fd()).collect();
  send(&a, b"x", &mut rights(&numbers)).unwrap();
  let fds = fds_of(recv(&b, 16, 64, 0));
  let markers: Vec<u8> = fds
    .into_iter()
    .map(|owned| {
      let mut byte = [0u8];
      std::fs::File::from(owned).read_exact(&mut byte).unwrap();
      byte[0]
    })
    .collect();
  assert_eq!(markers, b"cba");
}

#[test]
fn truncated_control_data_leaks_nothing() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
    let (read_end, _write_end) = pipe();
    let numbers = vec![read_end.as_raw_fd(); 5];
    send(&a, b"x", &mut rights(&numbers)).unwrap();
    // CMSG_SPACE(4) has room for fewer than five descriptors.
    let received = recv(&b, 16, FD_SIZE, 0);
    assert_ne!(received.flags & libc::MSG_CTRUNC, 0);
    let fds = fds_of(received);
    let room = (cmsg::cmsg_space(FD_SIZE).unwrap() - cmsg::header_len()) / FD_SIZE;
    assert_eq!(
      fds.len(),
      room,
      "every descriptor the kernel installed is handed over"
    );
    assert!(fds.len() < 5);
  }
  assert_eq!(
    open_fds(),
    before,
    "the installed ones close on drop, the rest never arrive"
  );
}

#[test]
fn no_room_at_all_for_descriptors_leaks_nothing() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
    let (read_end, _write_end) = pipe();
    send(&a, b"x", &mut rights(&[read_end.as_raw_fd(); 3])).unwrap();
    let mut data = [0u8; 4];
    let mut control = ControlBuffer::default();
    let received = message::recv(b.as_raw_fd(), &mut data, &mut control, 0, false).unwrap();
    assert_eq!(received.len, 1);
    assert_ne!(received.flags & libc::MSG_CTRUNC, 0);
    assert!(received.control.is_empty());
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn peeking_installs_copies_that_are_owned_too() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::SeqPacket, false).unwrap();
    let (read_end, _write_end) = pipe();
    send(&a, b"peek", &mut rights(&[read_end.as_raw_fd(); 2])).unwrap();
    let peeked = recv(&b, 16, 64, libc::MSG_PEEK);
    assert_eq!(last_data(), b"peek");
    assert_eq!(fds_of(peeked).len(), 2);
    let received = recv(&b, 16, 64, 0);
    assert_eq!(last_data(), b"peek");
    assert_eq!(fds_of(received).len(), 2);
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn datagram_boundaries_are_kept_and_truncation_is_flagged() {
  let _guard = lock();
  for kind in [SocketKind::Datagram, SocketKind::SeqPacket] {
    let (a, b) = socketpair(kind, false).unwrap();
    send(&a, b"0123456789", &mut ControlBuffer::default()).unwrap();
    send(&a, b"ab", &mut ControlBuffer::default()).unwrap();
    let received = recv(&b, 4, 0, 0);
    assert_eq!(last_data(), b"0123");
    assert_ne!(received.flags & libc::MSG_TRUNC, 0);
    let received = recv(&b, 64, 0, 0);
    assert_eq!(last_data(), b"ab");
    assert_eq!(received.flags & libc::MSG_TRUNC, 0);
  }
}

#[cfg(target_os = "linux")]
#[test]
fn msg_trunc_in_the_request_never_overstates_the_data() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Datagram, false).unwrap();
  send(&a, b"0123456789", &mut ControlBuffer::default()).unwrap();
  let mut data = [0u8; 4];
  let received = message::recv(
    b.as_raw_fd(),
    &mut data,
    &mut ControlBuffer::default(),
    libc::MSG_TRUNC,
    false,
  )
  .unwrap();
  assert_eq!(received.len, 4);
  assert_ne!(received.flags & libc::MSG_TRUNC, 0);
}

#[test]
fn empty_datagrams_carry_descriptors_but_empty_stream_sends_are_refused() {
  let _guard = lock();
  let (read_end, _write_end) = pipe();
  let (a, b) = socketpair(SocketKind::Datagram, false).unwrap();
  assert_eq!(
    send(&a, b"", &mut rights(&[read_end.as_raw_fd()])).unwrap(),
    0
  );
  assert_eq!(fds_of(recv(&b, 16, 64, 0)).len(), 1);

  let (a, _b) = socketpair(SocketKind::Stream, false).unwrap();
  assert_eq!(
    send(&a, b"", &mut rights(&[read_end.as_raw_fd()])),
    Err(SendError::FdsWithoutData)
  );
  // Empty sends without descriptors are still the kernel's business.
  assert_eq!(send(&a, b"", &mut ControlBuffer::default()).unwrap(), 0);
}

#[test]
fn one_rule_says_when_descriptors_need_data_and_a_known_kind_costs_no_lookup() {
  let _guard = lock();
  for kind in SocketKind::ALL {
    let refused = kind == SocketKind::Stream;
    assert_eq!(
      message::check_descriptors_have_data(kind, 0, true).is_err(),
      refused,
      "{kind:?}"
    );
    assert!(message::check_descriptors_have_data(kind, 1, true).is_ok());
    assert!(message::check_descriptors_have_data(kind, 0, false).is_ok());
  }
  let (read_end, _write_end) = pipe();
  for kind in [SocketKind::Stream, SocketKind::SeqPacket] {
    let (a, b) = socketpair(kind, false).unwrap();
    let result = message::send_with_kind(
      a.as_raw_fd(),
      kind,
      &[IoSlice::new(b"")],
      &mut rights(&[read_end.as_raw_fd()]),
      0,
      None,
    );
    if kind == SocketKind::Stream {
      assert_eq!(result, Err(SendError::FdsWithoutData));
    } else {
      assert_eq!(result, Ok(0));
      assert_eq!(fds_of(recv(&b, 16, 64, 0)).len(), 1);
    }
  }
}

#[test]
fn the_socket_kind_table_agrees_with_the_kernel() {
  let _guard = lock();
  let names: Vec<&str> = SocketKind::ALL.iter().map(|kind| kind.name()).collect();
  assert_eq!(names, ["stream", "datagram", "seqpacket"]);
  for kind in SocketKind::ALL {
    assert_eq!(SocketKind::from_raw(kind.raw()), Some(kind));
    assert_eq!(SocketKind::from_name(kind.name()), Some(kind));
    assert_eq!(kind.sock_type() as i32, kind.raw());
    let (a, _b) = socketpair(kind, false).unwrap();
    assert_eq!(sendmsg_core::socket::kind(&a).unwrap(), Some(kind));
    assert_eq!(kind.is_connection_oriented(), kind != SocketKind::Datagram);
  }
  assert_eq!(SocketKind::from_raw(libc::SOCK_RAW), None);
  assert_eq!(SocketKind::from_name("raw"), None);
}

#[test]
fn arbitrary_triples_reach_the_kernel() {
  let _guard = lock();
  let (a, _b) = socketpair(SocketKind::Stream, false).unwrap();
  // An unknown SOL_SOCKET type is the kernel's EINVAL, surfaced untouched.
  let mut control = ControlBuffer::default();
  cmsg::encode_into(
    &mut control,
    &[OutgoingCmsg {
      level: libc::SOL_SOCKET,
      kind: 0x7777,
      data: b"abcd",
    }],
  )
  .unwrap();
  let err = send(&a, b"x", &mut control).unwrap_err();
  assert_eq!(err, SendError::Sys(SysError::new("sendmsg", Errno::EINVAL)));
}

#[test]
fn a_closed_peer_is_epipe() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Stream, false).unwrap();
  drop(b);
  let err = send(&a, b"x", &mut ControlBuffer::default()).unwrap_err();
  assert_eq!(err, SendError::Sys(SysError::new("sendmsg", Errno::EPIPE)));
}

#[test]
fn errors_name_the_call() {
  let _guard = lock();
  // A pipe is not a socket.
  let (read_end, mut write_end) = {
    let (r, w) = pipe();
    (r, std::fs::File::from(w))
  };
  write_end.write_all(b"x").unwrap();
  let mut control = ControlBuffer::default();
  let err = message::recv(read_end.as_raw_fd(), &mut [0u8; 4], &mut control, 0, false).unwrap_err();
  assert_eq!(err, SysError::new("recvmsg", Errno::ENOTSOCK));
  assert_eq!(
    err.to_string(),
    "ENOTSOCK: socket operation on non-socket, recvmsg"
  );
  let err = message::recv(-1, &mut [0u8; 4], &mut control, 0, false).unwrap_err();
  assert_eq!(err.code(), "EBADF");
}

#[test]
fn nonblocking_sockets_say_eagain() {
  let _guard = lock();
  let (_a, b) = socketpair(SocketKind::SeqPacket, true).unwrap();
  let err = message::recv(
    b.as_raw_fd(),
    &mut [0u8; 4],
    &mut ControlBuffer::default(),
    0,
    false,
  )
  .unwrap_err();
  assert_eq!(err.errno, Errno::EAGAIN);
}

#[test]
fn closing_a_raw_descriptor_releases_it_and_reports_ebadf() {
  let _guard = lock();
  let before = open_fds();
  let (read_end, write_end) = pipe();
  let number = std::os::fd::IntoRawFd::into_raw_fd(read_end);
  fd::close(number).unwrap();
  drop(write_end);
  assert_eq!(open_fds(), before);
  let err = fd::close(-1).unwrap_err();
  assert_eq!(err, SysError::new("close", Errno::EBADF));
}

#[test]
fn a_peer_that_shut_down_or_closed_shows_at_once() {
  let _guard = lock();
  for kind in [SocketKind::Stream, SocketKind::SeqPacket] {
    let (a, b) = socketpair(kind, true).unwrap();
    assert!(!sendmsg_core::socket::peer_has_shut_down(a.as_raw_fd()));
    send(&b, b"last words", &mut ControlBuffer::default()).unwrap();
    #[cfg(target_os = "linux")]
    {
      // POLLRDHUP: the sending side is shut, even with its data still unread here.
      sendmsg_core::socket::shutdown_write(b.as_raw_fd()).unwrap();
      assert!(sendmsg_core::socket::peer_has_shut_down(a.as_raw_fd()));
    }
    drop(b);
    assert!(sendmsg_core::socket::peer_has_shut_down(a.as_raw_fd()));
  }
}
