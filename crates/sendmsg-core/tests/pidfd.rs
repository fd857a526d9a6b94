//! Linux 6.5+ pidfds of the peer and of each sender (SO_PEERPIDFD, SO_PASSPIDFD/SCM_PIDFD), and
//! 6.16+ sockets that refuse descriptors (SO_PASSRIGHTS): owned, close-on-exec, and never leaked.
//! On a Linux without them each test says so and checks nothing more; elsewhere there are no
//! pidfds to test (the "unsupported" answers are unit-tested in error.rs).
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use sendmsg_core::batch::{default_control_space, RecvBatch};
use sendmsg_core::cmsg::{self, ControlBuffer};
use sendmsg_core::credentials::{peer_pidfd, pidfd_pid, set_pass_pidfd};
use sendmsg_core::error::FeatureError;
use sendmsg_core::fd::is_cloexec;
use sendmsg_core::message::{self, ReceivedCmsg, SendError};
use sendmsg_core::socket::{pass_rights, set_pass_rights, socketpair, SocketKind};

mod common;
use common::{lock, open_fds};

/// Whether the kernel has the feature; prints why a test checks nothing more when it does not.
fn supported<T>(result: &Result<T, FeatureError>, what: &str) -> bool {
  match result {
    Err(FeatureError::Unsupported(..)) => {
      eprintln!("{what} unsupported on this system: skipped");
      false
    }
    _ => true,
  }
}

fn me() -> i32 {
  std::process::id() as i32
}

#[test]
fn every_message_brings_a_pidfd_of_its_sender_which_closes_unless_taken() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::Datagram, true).unwrap();
    let on = set_pass_pidfd(&b, true);
    if !supported(&on, "SO_PASSPIDFD") {
      return;
    }
    on.unwrap();
    let (pipe_read, _pipe_write) = sendmsg_core::fd::pipe().unwrap();

    // One receive: the pidfd is an SCM_PIDFD item of its own, owned like SCM_RIGHTS.
    let mut control = ControlBuffer::default();
    cmsg::encode_rights_into(&mut control, &[pipe_read.as_raw_fd()]).unwrap();
    message::send(
      a.as_raw_fd(),
      &[IoSlice::new(b"one")],
      &mut control,
      0,
      None,
    )
    .unwrap();
    let mut buffer = [0u8; 16];
    let mut room = ControlBuffer::zeroed(default_control_space()).unwrap();
    let received = message::recv(b.as_raw_fd(), &mut buffer, &mut room, 0, false).unwrap();
    let pidfds: Vec<&OwnedFd> = received
      .control
      .iter()
      .filter(|item| item.kind() == sendmsg_core::consts::SCM_PIDFD)
      .flat_map(|item| match item {
        ReceivedCmsg::Fds { fds, .. } => fds.iter(),
        ReceivedCmsg::Data { .. } => panic!("SCM_PIDFD as bytes"),
      })
      .collect();
    assert_eq!(pidfds.len(), 1);
    assert_eq!(pidfd_pid(pidfds[0]).unwrap(), me());
    assert!(is_cloexec(pidfds[0]).unwrap());
    drop(received);

    // A batch keeps the pidfd apart from the descriptors the sender sent.
    for text in [b"two", b"333"] {
      let mut control = ControlBuffer::default();
      cmsg::encode_rights_into(&mut control, &[pipe_read.as_raw_fd()]).unwrap();
      message::send(a.as_raw_fd(), &[IoSlice::new(text)], &mut control, 0, None).unwrap();
    }
    let mut batch = RecvBatch::default();
    batch.ensure(4, 16, default_control_space(), false).unwrap();
    assert_eq!(batch.recv(b.as_raw_fd(), 4).unwrap(), 2);
    let first = batch.message(0);
    assert_eq!((first.fd_count, first.has_pidfd), (1, true));
    let pidfd = batch.take_pidfd(0).expect("a pidfd");
    assert!(batch.take_pidfd(0).is_none(), "taken once");
    assert_eq!(pidfd_pid(&pidfd).unwrap(), me());
    assert!(is_cloexec(&pidfd).unwrap());
    // The second message's pidfd and every SCM_RIGHTS descriptor close with the batch's release.
    let with_all = open_fds();
    batch.release();
    assert_eq!(open_fds(), with_all - 3);
    drop(pidfd);
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn a_peer_pidfd_outlives_its_process_on_6_18_or_says_it_exited() {
  use nix::sys::socket::SockaddrLike;
  let _guard = lock();
  let before = open_fds();
  {
    let name = format!("sendmsg-core-pidfd-{}", me());
    let address = sendmsg_core::socket::unix_address(format!("\0{name}").as_bytes()).unwrap();
    let listener = sendmsg_core::socket::unix_socket(SocketKind::Stream, false).unwrap();
    sendmsg_core::socket::bind(listener.as_raw_fd(), &address).unwrap();
    sendmsg_core::socket::listen(&listener, 1).unwrap();
    // SAFETY: the child makes only async-signal-safe calls (socket, connect, _exit).
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
      unsafe {
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        libc::connect(s, address.as_ptr().cast(), address.len());
        libc::_exit(0);
      }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    let mut accepted = None;
    while accepted.is_none() {
      accepted = Some(nix::sys::socket::accept(listener.as_raw_fd()).unwrap());
    }
    // SAFETY: accept returned a new descriptor.
    let connection: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(accepted.unwrap()) };
    match peer_pidfd(&connection) {
      // 6.18+: a pidfd of the exited process, which says it is gone.
      Ok(pidfd) => assert_eq!(pidfd_pid(&pidfd).unwrap(), -1),
      Err(FeatureError::PeerExited(err)) => {
        eprintln!("a kernel before 6.18: an exited peer has no pidfd");
        assert_eq!(err.errno, Errno::EINVAL);
      }
      Err(err @ FeatureError::Unsupported(..)) => eprintln!("{err}: skipped"),
      Err(err) => panic!("{err}"),
    }
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn a_socket_that_refuses_rights_makes_their_sender_fail_with_eperm() {
  let _guard = lock();
  let before = open_fds();
  {
    let (a, b) = socketpair(SocketKind::SeqPacket, true).unwrap();
    let off = set_pass_rights(&b, false);
    if !supported(&off, "SO_PASSRIGHTS") {
      return;
    }
    off.unwrap();
    assert!(!pass_rights(&b).unwrap());
    assert!(pass_rights(&a).unwrap(), "on by default");
    let (pipe_read, _pipe_write) = sendmsg_core::fd::pipe().unwrap();
    let mut control = ControlBuffer::default();
    cmsg::encode_rights_into(&mut control, &[pipe_read.as_raw_fd()]).unwrap();
    let refused = message::send(a.as_raw_fd(), &[IoSlice::new(b"x")], &mut control, 0, None);
    assert!(matches!(refused, Err(SendError::Sys(err)) if err.errno == Errno::EPERM));
    // Nothing arrived; plain data still does.
    let mut empty = ControlBuffer::default();
    message::send(a.as_raw_fd(), &[IoSlice::new(b"y")], &mut empty, 0, None).unwrap();
    let mut buffer = [0u8; 4];
    let mut room = ControlBuffer::zeroed(default_control_space()).unwrap();
    let received = message::recv(b.as_raw_fd(), &mut buffer, &mut room, 0, false).unwrap();
    assert_eq!(&buffer[..received.len], b"y");
    assert!(received.control.is_empty());
  }
  assert_eq!(open_fds(), before);
}
