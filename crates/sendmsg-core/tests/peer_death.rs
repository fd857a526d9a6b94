//! A peer that exits while data we sent it is unread leaves a one-shot ECONNRESET on our socket,
//! which the kernel reports before the messages the peer sent before dying. The receive paths
//! must read again, so that the caller sees those messages and then the end, never the error.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use sendmsg_core::batch::{default_control_space, RecvBatch};
use sendmsg_core::cmsg::ControlBuffer;
use sendmsg_core::message;
use sendmsg_core::socket::{socketpair, SocketKind};

const MESSAGES: usize = 50;

fn numbered(i: usize) -> Vec<u8> {
  format!("message {i:02};").into_bytes()
}

/// Our end of a pair whose other end sent 50 messages, left what we wrote it unread, and closed.
fn socket_of_a_dead_peer(kind: SocketKind) -> OwnedFd {
  let (ours, peer) = socketpair(kind, true).unwrap();
  for i in 0..MESSAGES {
    let data = numbered(i);
    let sent = message::send(
      peer.as_raw_fd(),
      &[IoSlice::new(&data)],
      &mut ControlBuffer::default(),
      0,
      None,
    )
    .unwrap();
    assert_eq!(sent, data.len());
  }
  message::send(
    ours.as_raw_fd(),
    &[IoSlice::new(b"never read")],
    &mut ControlBuffer::default(),
    0,
    None,
  )
  .unwrap();
  drop(peer);
  ours
}

/// Reads with a batch until the end of the data (a zero-length message), keeping each message.
fn read_batches_until_the_end(socket: &OwnedFd) -> Vec<Vec<u8>> {
  let mut batch = RecvBatch::default();
  batch
    .ensure(8, 4096, default_control_space(), false)
    .unwrap();
  let mut messages = Vec::new();
  for _ in 0..1000 {
    let received = batch
      .recv(socket.as_raw_fd(), 8)
      .expect("no error reaches the caller");
    for i in 0..received {
      let data = batch.message(i).data;
      if data.is_empty() {
        return messages;
      }
      messages.push(data.to_vec());
    }
  }
  panic!("no end after {} messages", messages.len());
}

/// Reads one message at a time, non-blocking, until the end of the data.
fn read_singly_until_the_end(socket: &OwnedFd) -> Vec<Vec<u8>> {
  let mut messages = Vec::new();
  let mut control = ControlBuffer::zeroed(default_control_space()).unwrap();
  for _ in 0..1000 {
    let mut buffer = [0u8; 4096];
    let received = message::recv(
      socket.as_raw_fd(),
      &mut buffer,
      &mut control,
      libc::MSG_DONTWAIT,
      false,
    )
    .expect("no error reaches the caller");
    if received.len == 0 {
      return messages;
    }
    messages.push(buffer[..received.len].to_vec());
  }
  panic!("no end after {} messages", messages.len());
}

fn all_messages() -> Vec<Vec<u8>> {
  (0..MESSAGES).map(numbered).collect()
}

#[cfg(target_os = "linux")]
#[test]
fn the_kernel_does_report_the_reset_before_the_data() {
  // What the receive paths work around (measured on Linux): if this stops holding, the tests
  // below prove less.
  let ours = socket_of_a_dead_peer(SocketKind::SeqPacket);
  let mut buffer = [0u8; 64];
  // SAFETY: a plain read into a live buffer.
  let rc = unsafe {
    libc::recv(
      ours.as_raw_fd(),
      buffer.as_mut_ptr().cast(),
      buffer.len(),
      libc::MSG_DONTWAIT,
    )
  };
  assert_eq!(rc, -1);
  assert_eq!(Errno::last(), Errno::ECONNRESET);
}

#[test]
fn a_batch_on_a_stream_gets_a_dead_peers_data_then_the_end() {
  let ours = socket_of_a_dead_peer(SocketKind::Stream);
  let received = read_batches_until_the_end(&ours).concat();
  assert_eq!(received, all_messages().concat());
}

#[test]
fn a_batch_on_a_seqpacket_socket_gets_a_dead_peers_messages_then_the_end() {
  let ours = socket_of_a_dead_peer(SocketKind::SeqPacket);
  assert_eq!(read_batches_until_the_end(&ours), all_messages());
}

#[test]
fn single_receives_on_a_stream_get_a_dead_peers_data_then_the_end() {
  let ours = socket_of_a_dead_peer(SocketKind::Stream);
  let received = read_singly_until_the_end(&ours).concat();
  assert_eq!(received, all_messages().concat());
}

#[test]
fn single_receives_on_a_seqpacket_socket_get_a_dead_peers_messages_then_the_end() {
  let ours = socket_of_a_dead_peer(SocketKind::SeqPacket);
  assert_eq!(read_singly_until_the_end(&ours), all_messages());
}

#[test]
fn after_the_end_a_batch_keeps_reporting_the_end() {
  let ours = socket_of_a_dead_peer(SocketKind::SeqPacket);
  read_batches_until_the_end(&ours);
  let mut batch = RecvBatch::default();
  batch.ensure(2, 64, default_control_space(), false).unwrap();
  assert!(batch.recv(ours.as_raw_fd(), 2).unwrap() >= 1);
  assert!(batch.message(0).data.is_empty());
}
