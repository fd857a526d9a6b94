//! Many messages per call: ownership of received descriptors, batching, and full sockets.

use std::io::{IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use sendmsg_core::batch::{self, default_control_space, Outgoing, RecvBatch, SendScratch};
use sendmsg_core::socket::{socketpair, SocketKind};

mod common;
use common::{lock, open_fds};

fn pipe_with(marker: &[u8]) -> OwnedFd {
  let (read_end, write_end) = nix::unistd::pipe().unwrap();
  nix::unistd::write(&write_end, marker).unwrap();
  read_end
}

fn read_marker(fd: OwnedFd, len: usize) -> Vec<u8> {
  let mut buffer = vec![0; len];
  std::fs::File::from(fd).read_exact(&mut buffer).unwrap();
  buffer
}

#[test]
fn a_batch_receives_many_datagrams_and_closes_descriptors_nobody_took() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Datagram, true).unwrap();
    let pipes: Vec<OwnedFd> = (0..3u8).map(|i| pipe_with(&[b'a' + i])).collect();
    let numbers: Vec<RawFd> = pipes.iter().map(AsRawFd::as_raw_fd).collect();
    let parts = [
      [IoSlice::new(b"zero")],
      [IoSlice::new(b"one")],
      [IoSlice::new(b"two")],
    ];
    let messages: Vec<Outgoing<'_>> = (0..3)
      .map(|i| Outgoing {
        parts: &parts[i],
        fds: &numbers[i..=i],
        address: None,
      })
      .collect();
    let mut scratch = SendScratch::default();
    assert_eq!(
      batch::send_datagrams(a.as_raw_fd(), &messages, &mut scratch).unwrap(),
      3
    );

    let mut received = RecvBatch::default();
    received
      .ensure(8, 64, default_control_space(), false)
      .unwrap();
    assert_eq!(received.recv(b.as_raw_fd(), 8).unwrap(), 3);
    assert_eq!(received.message(1).data, b"one");
    assert_eq!(received.message(1).fd_count, 1);
    // Take only the middle message's descriptor; it must be the second pipe.
    let taken: Vec<OwnedFd> = received.take_fds(1).collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(received.take_fds(1).count(), 0, "taken once");
    // The other two close when the batch is reused.
    assert_eq!(
      received.recv(b.as_raw_fd(), 8).unwrap(),
      0,
      "nothing waiting is not an error"
    );
    assert_eq!(read_marker(taken.into_iter().next().unwrap(), 1), b"b");
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn dropping_a_batch_closes_what_it_still_owns() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::SeqPacket, true).unwrap();
    let pipe = pipe_with(b"x");
    let parts = [IoSlice::new(b"m")];
    let fds = [pipe.as_raw_fd(); 5];
    let messages = [Outgoing {
      parts: &parts,
      fds: &fds,
      address: None,
    }];
    batch::send_datagrams(a.as_raw_fd(), &messages, &mut SendScratch::default()).unwrap();
    let mut received = RecvBatch::default();
    received
      .ensure(4, 16, default_control_space(), false)
      .unwrap();
    assert_eq!(received.recv(b.as_raw_fd(), 4).unwrap(), 1);
    assert_eq!(received.message(0).fd_count, 5);
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn a_full_datagram_socket_sends_nothing_rather_than_failing() {
  let _guard = lock();
  let (a, _b) = socketpair(SocketKind::Datagram, true).unwrap();
  let big = vec![0u8; 16 * 1024];
  let parts = [IoSlice::new(&big)];
  let messages: Vec<Outgoing<'_>> = (0..64)
    .map(|_| Outgoing {
      parts: &parts,
      fds: &[],
      address: None,
    })
    .collect();
  let mut scratch = SendScratch::default();
  let mut total = 0;
  loop {
    let sent = batch::send_datagrams(a.as_raw_fd(), &messages, &mut scratch).unwrap();
    total += sent;
    if sent < messages.len() {
      break;
    }
  }
  assert!(total > 0);
  assert_eq!(
    batch::send_datagrams(a.as_raw_fd(), &messages, &mut scratch).unwrap(),
    0
  );
}

/// Sends `messages` on a fresh stream pair and reads them back in batches: each read's bytes and
/// how many descriptors came with it (the descriptors are closed).
fn stream_reads(messages: &[Outgoing<'_>]) -> Vec<(Vec<u8>, usize)> {
  let (a, b) = socketpair(SocketKind::Stream, true).unwrap();
  let total: usize = messages
    .iter()
    .map(|m| m.parts.iter().map(|p| p.len()).sum::<usize>())
    .sum();
  let sent = batch::send_stream(a.as_raw_fd(), messages, &mut SendScratch::default()).unwrap();
  assert_eq!(sent, total);
  drop(a);
  let mut received = RecvBatch::default();
  received
    .ensure(8, 1 << 16, default_control_space(), false)
    .unwrap();
  let mut reads = Vec::new();
  loop {
    let n = received.recv(b.as_raw_fd(), 8).unwrap();
    for i in 0..n {
      let message = received.message(i);
      if message.data.is_empty() {
        return reads;
      }
      reads.push((message.data.to_vec(), message.fd_count));
    }
  }
}

fn outgoing<'a>(parts: &'a [IoSlice<'a>], fds: &'a [RawFd]) -> Outgoing<'a> {
  Outgoing {
    parts,
    fds,
    address: None,
  }
}

#[test]
fn a_stream_read_that_brings_descriptors_ends_with_the_message_that_carried_them() {
  let _guard = lock();
  let first = pipe_with(b"1");
  let second = pipe_with(b"2");
  let (p0, p1, p2) = (
    [IoSlice::new(b"aa")],
    [IoSlice::new(b"bb")],
    [IoSlice::new(b"cc")],
  );
  let (f0, f2) = ([first.as_raw_fd()], [second.as_raw_fd()]);
  let messages = [outgoing(&p0, &f0), outgoing(&p1, &[]), outgoing(&p2, &f2)];
  let (a, b) = socketpair(SocketKind::Stream, true).unwrap();
  let sent = batch::send_stream(a.as_raw_fd(), &messages, &mut SendScratch::default()).unwrap();
  assert_eq!(sent, 6);

  // The kernel ends a stream read after a message that carries descriptors, and plain data
  // before one may share its read: "aa" with the first pipe, then "bbcc" with the second.
  let mut received = RecvBatch::default();
  received
    .ensure(4, 64, default_control_space(), false)
    .unwrap();
  let count = received.recv(b.as_raw_fd(), 4).unwrap();
  assert_eq!(count, 2);
  assert_eq!(received.message(0).data, b"aa");
  assert_eq!(received.message(1).data, b"bbcc");
  let fd0 = received.take_fds(0).next().unwrap();
  let fd1 = received.take_fds(1).next().unwrap();
  assert_eq!(read_marker(fd0, 1), b"1");
  assert_eq!(read_marker(fd1, 1), b"2");
}

#[test]
fn bytes_of_a_later_message_never_share_a_send_with_descriptors() {
  let _guard = lock();
  let pipe = pipe_with(b"x");
  let fds = [pipe.as_raw_fd()];
  let (x, junk) = ([IoSlice::new(b"X")], [IoSlice::new(b"junk")]);
  // Two short runs: the path that sends runs together in one sendmmsg.
  assert_eq!(
    stream_reads(&[outgoing(&x, &fds), outgoing(&junk, &[])]),
    vec![(b"X".to_vec(), 1), (b"junk".to_vec(), 0)]
  );
  // A long plain message after: the path that sends one run per sendmsg.
  let long = vec![b'j'; 10_000];
  let long_parts = [IoSlice::new(&long)];
  let reads = stream_reads(&[outgoing(&x, &fds), outgoing(&long_parts, &[])]);
  assert_eq!(reads[0], (b"X".to_vec(), 1));
  assert_eq!(reads[1..].iter().map(|(_, n)| n).sum::<usize>(), 0);
  assert_eq!(
    reads[1..].iter().map(|(data, _)| data.len()).sum::<usize>(),
    long.len()
  );
}

#[test]
fn plain_messages_before_descriptors_may_join_their_read_but_nothing_after_does() {
  let _guard = lock();
  let pipe = pipe_with(b"x");
  let fds = [pipe.as_raw_fd()];
  let (fd_part, plain_part) = ([IoSlice::new(b"F")], [IoSlice::new(b"p")]);
  let mut messages = Vec::new();
  for _ in 0..40 {
    messages.push(outgoing(&plain_part, &[]));
    messages.push(outgoing(&fd_part, &fds));
    messages.push(outgoing(&plain_part, &[]));
  }
  let reads = stream_reads(&messages);
  let mut descriptors = 0;
  for (data, fd_count) in &reads {
    if *fd_count > 0 {
      assert_eq!(
        *fd_count, 1,
        "one message's descriptors per read: {reads:?}"
      );
      assert_eq!(
        data.last(),
        Some(&b'F'),
        "bytes after descriptors: {reads:?}"
      );
    }
    descriptors += fd_count;
  }
  assert_eq!(descriptors, 40);
  assert_eq!(reads.concat_bytes(), b"pFp".repeat(40));
}

trait ConcatBytes {
  fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(Vec<u8>, usize)> {
  fn concat_bytes(&self) -> Vec<u8> {
    self.iter().flat_map(|(data, _)| data.clone()).collect()
  }
}

#[test]
fn a_full_stream_reports_how_far_it_got() {
  let _guard = lock();
  let (a, _b) = socketpair(SocketKind::Stream, true).unwrap();
  let big = vec![7u8; 1 << 20];
  let parts = [IoSlice::new(&big)];
  let messages = [Outgoing {
    parts: &parts,
    fds: &[],
    address: None,
  }];
  let sent = batch::send_stream(a.as_raw_fd(), &messages, &mut SendScratch::default()).unwrap();
  assert!(
    sent > 0 && sent < big.len(),
    "a partial write of {sent} bytes"
  );
  assert_eq!(
    batch::send_stream(a.as_raw_fd(), &messages, &mut SendScratch::default()).unwrap(),
    0
  );
}

#[test]
fn datagrams_carry_their_senders_address() {
  let _guard = lock();
  let dir = std::env::temp_dir().join(format!("sendmsg-batch-{}", std::process::id()));
  std::fs::create_dir_all(&dir).unwrap();
  let (server_path, client_path) = (dir.join("server"), dir.join("client"));
  let _ = std::fs::remove_file(&server_path);
  let _ = std::fs::remove_file(&client_path);
  let server = sendmsg_core::socket::unix_socket(SocketKind::Datagram, true).unwrap();
  let client = sendmsg_core::socket::unix_socket(SocketKind::Datagram, true).unwrap();
  use std::os::unix::ffi::OsStrExt;
  let server_address =
    sendmsg_core::socket::unix_address(server_path.as_os_str().as_bytes()).unwrap();
  let client_address =
    sendmsg_core::socket::unix_address(client_path.as_os_str().as_bytes()).unwrap();
  sendmsg_core::socket::bind(server.as_raw_fd(), &server_address).unwrap();
  sendmsg_core::socket::bind(client.as_raw_fd(), &client_address).unwrap();
  let parts = [IoSlice::new(b"hi")];
  let messages = [Outgoing {
    parts: &parts,
    fds: &[],
    address: Some(&server_address),
  }];
  assert_eq!(
    batch::send_datagrams(client.as_raw_fd(), &messages, &mut SendScratch::default()).unwrap(),
    1
  );
  let mut received = RecvBatch::default();
  received
    .ensure(2, 16, default_control_space(), true)
    .unwrap();
  assert_eq!(received.recv(server.as_raw_fd(), 2).unwrap(), 1);
  let address = received.message(0).address.expect("an address");
  assert_eq!(
    sendmsg_core::socket::address_bytes(&address).unwrap(),
    client_path.as_os_str().as_bytes()
  );
  std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_names_round_trip() {
  use nix::sys::socket::SockaddrLike;
  let address = sendmsg_core::socket::unix_address(b"\0sendmsg-test").unwrap();
  // SAFETY: a valid sockaddr_un of the stated length.
  let storage = unsafe {
    nix::sys::socket::SockaddrStorage::from_raw(address.as_ptr().cast(), Some(address.len()))
  }
  .unwrap();
  assert_eq!(
    sendmsg_core::socket::address_bytes(&storage).unwrap(),
    b"\0sendmsg-test"
  );
}

#[test]
fn a_full_stream_stops_between_messages_that_carry_descriptors_never_inside_one() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Stream, true).unwrap();
    let pipe = pipe_with(b"x");
    let fds = [pipe.as_raw_fd()];
    let payload = [7u8; 100];
    let parts = [IoSlice::new(&payload)];
    // Far more than the socket holds: short runs, each with a descriptor.
    let messages: Vec<Outgoing<'_>> = (0..5000)
      .map(|_| Outgoing {
        parts: &parts,
        fds: &fds,
        address: None,
      })
      .collect();
    let mut scratch = SendScratch::default();
    let mut sent = 0;
    loop {
      let n = batch::send_stream(a.as_raw_fd(), &messages[sent / 100..], &mut scratch).unwrap();
      assert_eq!(
        n % 100,
        0,
        "stopped inside a message after {} bytes",
        sent + n
      );
      if n == 0 {
        break;
      }
      sent += n;
    }
    assert!(sent > 0 && sent < 5000 * 100);
    // Every message that went arrives whole with its one descriptor.
    let mut received = RecvBatch::default();
    received
      .ensure(64, 4096, default_control_space(), false)
      .unwrap();
    let mut bytes = 0;
    let mut descriptors = 0;
    loop {
      let n = received.recv(b.as_raw_fd(), 64).unwrap();
      if n == 0 {
        break;
      }
      for i in 0..n {
        bytes += received.message(i).data.len();
        descriptors += received.message(i).fd_count;
      }
    }
    assert_eq!(bytes, sent);
    assert_eq!(descriptors, sent / 100);
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn a_batch_receives_into_memory_the_caller_lends_and_back_into_its_own() {
  let _guard = lock();
  let (a, b) = socketpair(SocketKind::Datagram, true).unwrap();
  let send = |payloads: &[&[u8]]| {
    for payload in payloads {
      nix::sys::socket::send(a.as_raw_fd(), payload, nix::sys::socket::MsgFlags::empty()).unwrap();
    }
  };
  let mut received = RecvBatch::default();
  received.ensure(4, 16, 0, false).unwrap();
  let mut first = [0u8; 8];
  let mut second = [0u8; 8];
  send(&[b"lent one", b"too long for 8", b"left over"]);
  let slots = [first.as_mut_ptr(), second.as_mut_ptr()];
  // SAFETY: both arrays outlive the batch's use of them (released below) and are not touched
  // meanwhile.
  let n = unsafe { received.recv_into(b.as_raw_fd(), 4, &slots, 8) }.unwrap();
  assert_eq!(n, 2, "no more messages than slots lent");
  assert_eq!(received.message(0).data, b"lent one");
  assert!(received.message(0).lent);
  // Longer than the lent memory: whole, in the batch's own.
  assert_eq!(received.message(1).data, b"too long for 8");
  assert!(!received.message(1).lent);
  received.release();
  assert_eq!(&first, b"lent one");
  // The next plain receive uses the batch's own memory again, not the lent slots.
  first.fill(0);
  assert_eq!(received.recv(b.as_raw_fd(), 4).unwrap(), 1);
  assert_eq!(received.message(0).data, b"left over");
  assert!(!received.message(0).lent);
  assert_eq!(first, [0u8; 8]);
}
