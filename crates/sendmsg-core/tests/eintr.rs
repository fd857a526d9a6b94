//! Signals during blocking calls: `message::recv` and `message::send` retry EINTR themselves.
//!
//! Node's signal handlers (libuv's) are installed with SA_RESTART, so the kernel restarts most
//! interrupted calls on its own; these tests install a handler *without* SA_RESTART, which makes the
//! kernel return EINTR, and check that the core's own retry hides it. A control test shows the raw
//! system call does return EINTR in this setup, so the retry is really what is being tested.
//! A separate test binary, because it installs a process-wide signal handler.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sendmsg_core::cmsg::ControlBuffer;
use sendmsg_core::message;
use sendmsg_core::socket::{socketpair, SocketKind};

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_signal: libc::c_int) {
  HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// SIGUSR1 interrupts blocking calls with EINTR from now on (no SA_RESTART).
fn install_interrupting_handler() {
  // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid.
  unsafe {
    let mut action: libc::sigaction = std::mem::zeroed();
    action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
    action.sa_flags = 0;
    libc::sigemptyset(&mut action.sa_mask);
    assert_eq!(
      libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
      0
    );
  }
}

/// A thread's kernel id (Linux; 0 elsewhere) and pthread handle, sent by the thread itself.
struct Blocked {
  tid: libc::c_long,
  thread: libc::pthread_t,
}

fn current() -> Blocked {
  #[cfg(target_os = "linux")]
  // SAFETY: gettid has no arguments and cannot fail.
  let tid = unsafe { libc::syscall(libc::SYS_gettid) };
  #[cfg(not(target_os = "linux"))]
  let tid = 0;
  // SAFETY: a plain query about the calling thread.
  Blocked {
    tid,
    thread: unsafe { libc::pthread_self() },
  }
}

/// Waits until the thread sits in the given system call (Linux: /proc/self/task/TID/syscall), so
/// that the signals interrupt the call itself rather than the code before it. Elsewhere, a pause.
fn wait_until_in_syscall(tid: libc::c_long, syscall: libc::c_long) {
  if !cfg!(target_os = "linux") {
    std::thread::sleep(Duration::from_millis(200));
    return;
  }
  let deadline = Instant::now() + Duration::from_secs(10);
  let path = format!("/proc/self/task/{tid}/syscall");
  loop {
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.split_whitespace().next() == Some(&syscall.to_string()) {
      return;
    }
    assert!(
      Instant::now() < deadline,
      "the thread never blocked in syscall {syscall}: {current}"
    );
    std::thread::sleep(Duration::from_millis(5));
  }
}

/// Interrupts the blocked thread `times` times, each time waiting for the handler to run and for
/// the thread to be back in the call.
fn interrupt(blocked: &Blocked, syscall: libc::c_long, times: usize) -> usize {
  let before = HANDLED.load(Ordering::SeqCst);
  for i in 1..=times {
    wait_until_in_syscall(blocked.tid, syscall);
    // SAFETY: the thread is alive (it is blocked, waiting for us).
    assert_eq!(
      unsafe { libc::pthread_kill(blocked.thread, libc::SIGUSR1) },
      0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while HANDLED.load(Ordering::SeqCst) < before + i {
      assert!(Instant::now() < deadline, "signal {i} was never handled");
      std::thread::sleep(Duration::from_millis(1));
    }
  }
  HANDLED.load(Ordering::SeqCst) - before
}

#[cfg(target_os = "linux")]
const SYS_RECVMSG: libc::c_long = libc::SYS_recvmsg;
#[cfg(target_os = "linux")]
const SYS_SENDMSG: libc::c_long = libc::SYS_sendmsg;
#[cfg(not(target_os = "linux"))]
const SYS_RECVMSG: libc::c_long = -1;
#[cfg(not(target_os = "linux"))]
const SYS_SENDMSG: libc::c_long = -1;

/// The tests share the one handler and counter: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn without_sa_restart_the_raw_call_does_return_eintr() {
  let _serial = SERIAL
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner());
  install_interrupting_handler();
  let (_a, b) = socketpair(SocketKind::SeqPacket, false).unwrap();
  let (ready, blocked) = mpsc::channel();
  let receiver = b.as_raw_fd();
  let thread = std::thread::spawn(move || {
    ready.send(current()).unwrap();
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
      iov_base: byte.as_mut_ptr().cast(),
      iov_len: 1,
    };
    // SAFETY: a zeroed msghdr is valid; the iovec and its buffer outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(receiver, &mut msg, 0) };
    (n, std::io::Error::last_os_error().raw_os_error())
  });
  let blocked = blocked.recv().unwrap();
  assert_eq!(interrupt(&blocked, SYS_RECVMSG, 1), 1);
  let (n, errno) = thread.join().unwrap();
  assert_eq!(
    (n, errno),
    (-1, Some(libc::EINTR)),
    "the setup makes blocking calls fail with EINTR"
  );
}

#[test]
fn a_blocking_receive_interrupted_by_signals_still_returns_the_message() {
  let _serial = SERIAL
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner());
  install_interrupting_handler();
  for kind in [
    SocketKind::Stream,
    SocketKind::SeqPacket,
    SocketKind::Datagram,
  ] {
    let (a, b) = socketpair(kind, false).unwrap();
    let (ready, blocked) = mpsc::channel();
    let receiver: RawFd = b.as_raw_fd();
    let thread = std::thread::spawn(move || {
      ready.send(current()).unwrap();
      let mut data = [0u8; 64];
      let mut control = ControlBuffer::zeroed(64).unwrap();
      let received = message::recv(receiver, &mut data, &mut control, 0, false);
      received.map(|message| data[..message.len].to_vec())
    });
    let blocked = blocked.recv().unwrap();
    assert_eq!(interrupt(&blocked, SYS_RECVMSG, 3), 3, "{kind:?}");
    message::send(
      a.as_raw_fd(),
      &[IoSlice::new(b"after the signals")],
      &mut ControlBuffer::default(),
      0,
      None,
    )
    .unwrap();
    let received = thread.join().unwrap();
    assert_eq!(
      received.as_deref(),
      Ok(&b"after the signals"[..]),
      "{kind:?}: EINTR was retried"
    );
  }
}

#[test]
fn a_blocking_send_interrupted_by_signals_still_sends_the_whole_message() {
  let _serial = SERIAL
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner());
  install_interrupting_handler();
  let (a, b) = socketpair(SocketKind::SeqPacket, false).unwrap();
  // Fill the socket so that the next send blocks.
  let chunk = [7u8; 4096];
  let mut queued = 0;
  while message::send(
    a.as_raw_fd(),
    &[IoSlice::new(&chunk)],
    &mut ControlBuffer::default(),
    libc::MSG_DONTWAIT,
    None,
  )
  .is_ok()
  {
    queued += 1;
  }
  let (ready, blocked) = mpsc::channel();
  let sender = a.as_raw_fd();
  let thread = std::thread::spawn(move || {
    ready.send(current()).unwrap();
    message::send(
      sender,
      &[IoSlice::new(b"last")],
      &mut ControlBuffer::default(),
      0,
      None,
    )
  });
  let blocked = blocked.recv().unwrap();
  assert_eq!(interrupt(&blocked, SYS_SENDMSG, 3), 3);
  // Make room: the blocked send completes, whole.
  let mut data = [0u8; 4096];
  let mut control = ControlBuffer::default();
  for _ in 0..queued {
    message::recv(b.as_raw_fd(), &mut data, &mut control, 0, false).unwrap();
  }
  assert_eq!(thread.join().unwrap(), Ok(4));
  let last = message::recv(b.as_raw_fd(), &mut data, &mut control, 0, false).unwrap();
  assert_eq!(&data[..last.len], b"last");
}
