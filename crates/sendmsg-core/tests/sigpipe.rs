//! A closed peer must be an EPIPE error, never a SIGPIPE death, even in a process that has not
//! ignored SIGPIPE (Rust's runtime ignores it at startup, so this test restores the default first).
//! A separate test binary, because a failure here kills the whole process.

use std::io::IoSlice;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use sendmsg_core::cmsg::ControlBuffer;
use sendmsg_core::message::{self, SendError};
use sendmsg_core::socket::{socketpair, SocketKind};

#[test]
fn sending_to_a_closed_peer_with_sigpipe_at_its_default_is_epipe() {
  unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
  for kind in [SocketKind::Stream, SocketKind::SeqPacket] {
    let (a, b) = socketpair(kind, false).unwrap();
    drop(b);
    let err = message::send(
      a.as_raw_fd(),
      &[IoSlice::new(b"x")],
      &mut ControlBuffer::default(),
      0,
      None,
    )
    .unwrap_err();
    match err {
      SendError::Sys(sys) => assert_eq!(sys.errno, Errno::EPIPE),
      other => panic!("unexpected {other:?}"),
    }
  }
}
