//! The one error type of the syscall layer: which call failed and with what errno.
//!
//! The binding turns it into a Node-style error (`code`, negative `errno`, `syscall`); the
//! message text is built here so that the Rust tests and the JavaScript users read the same words.

use std::fmt;

use nix::errno::Errno;

/// A system call refused: `syscall` failed with `errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysError {
  pub errno: Errno,
  pub syscall: &'static str,
}

impl SysError {
  pub fn new(syscall: &'static str, errno: Errno) -> Self {
    Self { errno, syscall }
  }

  /// Captures `errno` right after a libc call returned -1.
  pub fn last(syscall: &'static str) -> Self {
    Self::new(syscall, Errno::last())
  }

  /// The symbolic name Node puts in `err.code`, for example `"EPIPE"`.
  pub fn code(&self) -> String {
    errno_code(self.errno)
  }

  /// Node's `err.errno` is the negated errno (libuv's convention).
  pub fn node_errno(&self) -> i32 {
    -(self.errno as i32)
  }
}

/// `"EPIPE"` for `Errno::EPIPE`. nix derives `Debug` from the C names, which is exactly what Node
/// reports; an unknown value prints as `UnknownErrno`, which we replace with something readable.
pub fn errno_code(errno: Errno) -> String {
  match errno {
    Errno::UnknownErrno => "UNKNOWN".to_owned(),
    _ => format!("{errno:?}"),
  }
}

/// The C library's description, as Node/libuv write it: lower-case first letter ("broken pipe").
/// (nix's own table has older BSD wording, "bad file number" where libc says "bad file descriptor".)
pub fn errno_description(errno: Errno) -> String {
  let mut buffer = [0u8; 256];
  // SAFETY: the XSI strerror_r writes a NUL-terminated string into the buffer it is given.
  let rc = unsafe { libc::strerror_r(errno as i32, buffer.as_mut_ptr().cast(), buffer.len()) };
  let desc = if rc == 0 {
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
  } else {
    errno.desc().to_owned()
  };
  let mut chars = desc.chars();
  match chars.next() {
    Some(first) => first.to_lowercase().chain(chars).collect(),
    None => String::new(),
  }
}

impl fmt::Display for SysError {
  /// Node's format for system errors: `EPIPE: broken pipe, sendmsg`.
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
      f,
      "{}: {}, {}",
      self.code(),
      errno_description(self.errno),
      self.syscall
    )
  }
}

impl std::error::Error for SysError {}

pub type SysResult<T> = Result<T, SysError>;

/// A socket option that only newer kernels have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
  /// `SO_PEERPIDFD`: a pidfd of the peer (Linux 6.5).
  PeerPidfd,
  /// `SO_PASSPIDFD`: a pidfd of the sender with every message (Linux 6.5).
  PassPidfd,
  /// `SO_PASSRIGHTS`: whether the socket accepts descriptors (Linux 6.16).
  PassRights,
}

impl Feature {
  /// The option's C name.
  pub fn option(self) -> &'static str {
    match self {
      Self::PeerPidfd => "SO_PEERPIDFD",
      Self::PassPidfd => "SO_PASSPIDFD",
      Self::PassRights => "SO_PASSRIGHTS",
    }
  }

  /// The first Linux release that has it.
  pub fn since(self) -> &'static str {
    match self {
      Self::PeerPidfd | Self::PassPidfd => "6.5",
      Self::PassRights => "6.16",
    }
  }
}

/// Why asking for a [`Feature`] failed, with the errno cases of older kernels told apart: they
/// are answers about the kernel (or the peer), not faults, and a caller decides on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
  /// ENOPROTOOPT: this kernel (or system) does not have the option.
  Unsupported(Feature, SysError),
  /// EINVAL from `SO_PEERPIDFD` before Linux 6.18: the peer has exited, and this kernel makes no
  /// pidfd of an exited process (6.18 does, and its pidfd then says the process is gone).
  PeerExited(SysError),
  /// Any other refusal, as the kernel gave it.
  Sys(SysError),
}

impl FeatureError {
  /// Reads `err`, the kernel's answer to a call on `feature`.
  pub fn of(feature: Feature, err: SysError) -> Self {
    match err.errno {
      Errno::ENOPROTOOPT => Self::Unsupported(feature, err),
      Errno::EINVAL if feature == Feature::PeerPidfd => Self::PeerExited(err),
      _ => Self::Sys(err),
    }
  }

  /// The system error under it.
  pub fn sys(&self) -> SysError {
    match *self {
      Self::Unsupported(_, err) | Self::PeerExited(err) | Self::Sys(err) => err,
    }
  }

  /// Node's `err.code`: the package's own for the two answers, the errno's name otherwise.
  pub fn code(&self) -> String {
    match self {
      Self::Unsupported(..) => "ERR_SENDMSG_UNSUPPORTED".to_owned(),
      Self::PeerExited(_) => "ERR_SENDMSG_PEER_EXITED".to_owned(),
      Self::Sys(err) => err.code(),
    }
  }
}

impl fmt::Display for FeatureError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Self::Unsupported(feature, err) => write!(
        f,
        "{} is not supported by this system: it needs Linux {} or later ({err})",
        feature.option(),
        feature.since()
      ),
      Self::PeerExited(err) => write!(
        f,
        "The peer process has exited, and this kernel gives no pidfd of an exited process (Linux 6.18 does) ({err})"
      ),
      Self::Sys(err) => err.fmt(f),
    }
  }
}

impl std::error::Error for FeatureError {}

/// Makes a libc call that returns -1 and sets errno on failure, again for as long as a signal
/// interrupts it (EINTR): its result, or its error under `syscall`'s name.
pub(crate) fn retry_interrupted(
  syscall: &'static str,
  mut call: impl FnMut() -> isize,
) -> SysResult<usize> {
  loop {
    let result = call();
    if result >= 0 {
      return Ok(result as usize);
    }
    let err = SysError::last(syscall);
    if err.errno != Errno::EINTR {
      return Err(err);
    }
  }
}

/// Makes a receive, and makes it again at once if it failed with ECONNRESET.
///
/// A peer that exits while data we sent it is unread leaves a one-shot ECONNRESET on our socket,
/// and the kernel reports it before the messages the peer queued before dying; the next receive
/// returns them, then the end of the data. Reported as an error, the reset would make the caller
/// give up on data that is there. Only one retry: the reset is consumed by being reported, so a
/// second one is a new event and is the caller's to see.
pub(crate) fn read_again_after_reset<T>(mut receive: impl FnMut() -> SysResult<T>) -> SysResult<T> {
  match receive() {
    Err(err) if err.errno == Errno::ECONNRESET => receive(),
    other => other,
  }
}

/// Adds the syscall name to a nix result.
pub(crate) trait Syscall<T> {
  fn syscall(self, name: &'static str) -> SysResult<T>;
}

impl<T> Syscall<T> for nix::Result<T> {
  fn syscall(self, name: &'static str) -> SysResult<T> {
    self.map_err(|errno| SysError::new(name, errno))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn message_reads_like_nodes_own() {
    let err = SysError::new("sendmsg", Errno::EPIPE);
    assert_eq!(err.to_string(), "EPIPE: broken pipe, sendmsg");
    assert_eq!(err.code(), "EPIPE");
    assert_eq!(err.node_errno(), -(libc::EPIPE));
    assert_eq!(
      SysError::new("recvmsg", Errno::EBADF).to_string(),
      "EBADF: bad file descriptor, recvmsg"
    );
  }

  #[test]
  fn older_kernels_answers_are_told_apart() {
    let unsupported = FeatureError::of(
      Feature::PeerPidfd,
      SysError::new("getsockopt", Errno::ENOPROTOOPT),
    );
    assert!(matches!(
      unsupported,
      FeatureError::Unsupported(Feature::PeerPidfd, _)
    ));
    assert_eq!(unsupported.code(), "ERR_SENDMSG_UNSUPPORTED");
    assert_eq!(
      unsupported.to_string(),
      "SO_PEERPIDFD is not supported by this system: it needs Linux 6.5 or later \
       (ENOPROTOOPT: protocol not available, getsockopt)"
    );
    let rights = FeatureError::of(
      Feature::PassRights,
      SysError::new("setsockopt", Errno::ENOPROTOOPT),
    );
    assert!(rights.to_string().contains("Linux 6.16"));

    // Before 6.18 an exited peer is EINVAL, for SO_PEERPIDFD only.
    let exited = FeatureError::of(
      Feature::PeerPidfd,
      SysError::new("getsockopt", Errno::EINVAL),
    );
    assert_eq!(exited.code(), "ERR_SENDMSG_PEER_EXITED");
    assert_eq!(exited.sys().errno, Errno::EINVAL);
    assert!(exited
      .to_string()
      .starts_with("The peer process has exited"));
    let other = FeatureError::of(
      Feature::PassPidfd,
      SysError::new("setsockopt", Errno::EINVAL),
    );
    assert_eq!(
      other,
      FeatureError::Sys(SysError::new("setsockopt", Errno::EINVAL))
    );
    assert_eq!(other.code(), "EINVAL");
    let no_peer = FeatureError::of(
      Feature::PeerPidfd,
      SysError::new("getsockopt", Errno::ENODATA),
    );
    assert_eq!(no_peer.code(), "ENODATA");
  }
}
