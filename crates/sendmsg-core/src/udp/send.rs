//! Sending batches of [`Transmit`]s: one `sendmmsg` (a loop of `sendmsg` elsewhere) per call,
//! each transmit with its own metadata and, where GSO works, its own segment size.
//!
//! GSO can be refused at send time even where the option exists: a device without checksum
//! offload makes the kernel drop the whole buffer with EIO. Nothing of it was sent, so the same
//! transmit is sent again one datagram per segment, and the sender stops asking for GSO. A
//! transmit sent that way can be cut short by a full socket: the progress then says how many of
//! its bytes went (whole segments), and the caller resumes from there, so that no datagram is
//! lost or sent twice.

use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::cmsg::ControlBuffer;
use crate::error::{SysError, SysResult};
use crate::msghdr::MessageHeader;
use crate::platform as crate_platform;

use super::address::RawAddress;
use super::control::{self, SendContext};
use super::meta::{unmapped, Family, MetaError, Transmit};
use super::socket;

/// Flags of every send: never block, never raise SIGPIPE.
const SEND_NOW: i32 = libc::MSG_DONTWAIT | crate_platform::SEND_FLAGS;

/// Datagrams handed to one system call at most when segments are sent one by one.
const MAX_WIRE_MESSAGES: usize = 1024;

/// What a send achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendProgress {
  /// Transmits sent whole, from the first.
  pub transmits: usize,
  /// Bytes of the next transmit already sent (whole segments, GSO fallback only): resume it from
  /// there.
  pub bytes: usize,
}

/// Why nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpSendError {
  /// The first transmit's metadata is malformed; no system call was made.
  Meta(MetaError),
  /// The kernel refused the first transmit.
  Sys(SysError),
}

impl std::fmt::Display for UdpSendError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      Self::Meta(err) => err.fmt(f),
      Self::Sys(err) => err.fmt(f),
    }
  }
}

impl std::error::Error for UdpSendError {}

impl From<SysError> for UdpSendError {
  fn from(err: SysError) -> Self {
    Self::Sys(err)
  }
}

/// A socket's sending side: its family, whether GSO is in use, and reusable scratch space.
pub struct UdpSender {
  family: Family,
  gso: bool,
  /// The connected peer speaks IPv4 on the wire (for transmits without a destination).
  peer_is_v4: bool,
  controls: Vec<ControlBuffer>,
  addresses: Vec<Option<RawAddress>>,
  iovecs: Vec<libc::iovec>,
  headers: Vec<MessageHeader>,
  /// For each header, the transmit it belongs to.
  owners: Vec<usize>,
}

impl UdpSender {
  /// A sender for a socket of `family`; `gso` as probed ([`socket::gso_max_segments`] > 1).
  pub fn new(family: Family, gso: bool) -> Self {
    Self {
      family,
      gso,
      peer_is_v4: family == Family::V4,
      controls: Vec::new(),
      addresses: Vec::new(),
      iovecs: Vec::new(),
      headers: Vec::new(),
      owners: Vec::new(),
    }
  }

  pub fn family(&self) -> Family {
    self.family
  }

  /// Whether segment sizes go to the kernel (false once a device refused them).
  pub fn gso(&self) -> bool {
    self.gso
  }

  /// After a connect: which family the peer speaks on the wire.
  pub fn set_peer(&mut self, peer: Option<std::net::SocketAddr>) {
    self.peer_is_v4 = peer.map_or(self.family == Family::V4, |peer| {
      unmapped(peer.ip()).is_ipv4()
    });
  }

  /// Sends as many of `transmits` as the kernel takes now, without blocking. Zero progress
  /// means the socket is full. An error concerns the first transmit; one met after some were sent
  /// is left for the next call (as `sendmmsg` does), and so is a malformed transmit after the
  /// first: those before it are sent.
  pub fn send(
    &mut self,
    fd: RawFd,
    transmits: &[Transmit<'_>],
  ) -> Result<SendProgress, UdpSendError> {
    let usable = match transmits.iter().position(|t| t.check(self.family).is_err()) {
      Some(0) => {
        return Err(UdpSendError::Meta(
          transmits[0].check(self.family).unwrap_err(),
        ))
      }
      Some(n) => n,
      None => transmits.len(),
    };
    let transmits = &transmits[..usable];
    if transmits.is_empty() {
      return Ok(SendProgress::default());
    }
    crate_platform::prepare_send(fd)?;
    // The DSCP an ECN mark must keep: the socket's, read once per call, so that a TOS set by
    // anyone at any time is honoured.
    let traffic_class = if transmits.iter().any(|t| t.ecn.is_some()) {
      socket::traffic_class(fd, self.family)?
    } else {
      0
    };
    let result = self.send_stale_error_once(fd, transmits, traffic_class);
    match result {
      Err(err) if err.errno == Errno::EIO && self.gso && transmits[0].needs_segmentation() => {
        // Nothing of it went: send it again one datagram per segment, and stop asking for GSO.
        self.gso = false;
        Ok(
          self
            .send_once(fd, transmits, traffic_class)
            .or_else(would_block)?,
        )
      }
      other => Ok(other.or_else(would_block)?),
    }
  }

  /// A send, made again once if it met an ICMP error the kernel kept from an earlier datagram
  /// (a pending socket error is reported by whichever call comes next, and cleared by it).
  fn send_stale_error_once(
    &mut self,
    fd: RawFd,
    transmits: &[Transmit<'_>],
    traffic_class: u8,
  ) -> SysResult<SendProgress> {
    match self.send_once(fd, transmits, traffic_class) {
      Err(err) if is_icmp_errno(err.errno) => self.send_once(fd, transmits, traffic_class),
      other => other,
    }
  }

  /// One system call: one message per transmit with GSO, else one per segment.
  fn send_once(
    &mut self,
    fd: RawFd,
    transmits: &[Transmit<'_>],
    traffic_class: u8,
  ) -> SysResult<SendProgress> {
    let context = SendContext {
      peer_is_v4: self.peer_is_v4,
      traffic_class,
      gso: self.gso,
    };
    // Everything the headers point at is laid out first, then the headers: no vector below
    // grows once a pointer into it is taken.
    if self.controls.len() < transmits.len() {
      self
        .controls
        .resize_with(transmits.len(), ControlBuffer::default);
    }
    self.addresses.clear();
    for (transmit, control) in transmits.iter().zip(&mut self.controls) {
      control::encode(control, transmit, &context)
        .map_err(|_| SysError::new("sendmsg", Errno::ENOBUFS))?;
      let destination = transmit
        .destination
        .map(|destination| socket::for_family(destination, self.family))
        .map(RawAddress::new);
      self.addresses.push(destination);
    }
    self.iovecs.clear();
    self.owners.clear();
    for (i, transmit) in transmits.iter().enumerate() {
      let step = match transmit.segment_size {
        Some(size) if !self.gso && transmit.needs_segmentation() => size,
        _ => transmit.contents.len().max(1),
      };
      let mut offset = 0;
      loop {
        let end = (offset + step).min(transmit.contents.len());
        self.iovecs.push(libc::iovec {
          iov_base: transmit.contents[offset..end].as_ptr() as *mut libc::c_void,
          iov_len: end - offset,
        });
        self.owners.push(i);
        offset = end;
        if offset >= transmit.contents.len() || self.iovecs.len() >= MAX_WIRE_MESSAGES {
          break;
        }
      }
      if self.iovecs.len() >= MAX_WIRE_MESSAGES {
        break;
      }
    }
    self.headers.clear();
    for (iov, &owner) in self.iovecs.iter().zip(&self.owners) {
      let control = &mut self.controls[owner];
      let mut header =
        MessageHeader::new(iov, 1).with_control(control.as_msg_control(), control.len());
      if let Some(address) = &self.addresses[owner] {
        header = header.with_name(address.as_ptr().cast(), address.len());
      }
      self.headers.push(header);
    }
    let sent = crate_platform::send_many(fd, &mut self.headers, SEND_NOW)?;
    Ok(self.progress(transmits, sent))
  }

  /// Which transmits the first `sent` messages completed, and how far into the next they got.
  fn progress(&self, transmits: &[Transmit<'_>], sent: usize) -> SendProgress {
    let mut progress = SendProgress::default();
    for (k, &owner) in self.owners[..sent].iter().enumerate() {
      let last_of_owner = self.owners.get(k + 1) != Some(&owner);
      let ends_transmit = last_of_owner
        && self.iovecs[k].iov_base as usize + self.iovecs[k].iov_len
          == transmits[owner].contents.as_ptr() as usize + transmits[owner].contents.len();
      if ends_transmit {
        progress = SendProgress {
          transmits: owner + 1,
          bytes: 0,
        };
      } else {
        progress.bytes += self.iovecs[k].iov_len;
      }
    }
    progress
  }
}

fn would_block(err: SysError) -> SysResult<SendProgress> {
  if err.errno == Errno::EAGAIN {
    Ok(SendProgress::default())
  } else {
    Err(err)
  }
}

/// Errors an ICMP message leaves as a socket's pending error (Linux's icmp_err_convert: port,
/// host and net unreachable, fragmentation needed, protocol unreachable, source route failed,
/// parameter problem), which the next send or receive reports whatever it concerns.
pub fn is_icmp_errno(errno: Errno) -> bool {
  matches!(
    errno,
    Errno::ECONNREFUSED
      | Errno::EHOSTUNREACH
      | Errno::ENETUNREACH
      | Errno::EHOSTDOWN
      | Errno::EPROTO
      | Errno::EMSGSIZE
      | Errno::ENOPROTOOPT
      | Errno::EOPNOTSUPP
  )
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Lays out `transmits` as `send_once` would (without GSO: one message per segment) and asks
  /// what the first `sent` messages completed.
  fn progress_after(transmits: &[Transmit<'_>], sent: usize) -> SendProgress {
    let mut sender = UdpSender::new(Family::V4, false);
    for (i, transmit) in transmits.iter().enumerate() {
      let step = transmit
        .segment_size
        .unwrap_or(transmit.contents.len().max(1));
      let mut offset = 0;
      loop {
        let end = (offset + step).min(transmit.contents.len());
        sender.iovecs.push(libc::iovec {
          iov_base: transmit.contents[offset..end].as_ptr() as *mut libc::c_void,
          iov_len: end - offset,
        });
        sender.owners.push(i);
        offset = end;
        if offset >= transmit.contents.len() {
          break;
        }
      }
    }
    sender.progress(transmits, sent)
  }

  #[test]
  fn a_transmit_cut_short_reports_the_bytes_that_went() {
    let to = "127.0.0.1:9".parse().unwrap();
    let run = [0u8; 3000];
    let transmits = [
      Transmit::to(to, b"first"),
      Transmit {
        segment_size: Some(1000),
        ..Transmit::to(to, &run)
      },
      Transmit::to(to, b"last"),
    ];
    // Messages: first, run[0..1000], run[1000..2000], run[2000..3000], last.
    assert_eq!(
      progress_after(&transmits, 0),
      SendProgress {
        transmits: 0,
        bytes: 0
      }
    );
    assert_eq!(
      progress_after(&transmits, 1),
      SendProgress {
        transmits: 1,
        bytes: 0
      }
    );
    assert_eq!(
      progress_after(&transmits, 3),
      SendProgress {
        transmits: 1,
        bytes: 2000
      }
    );
    assert_eq!(
      progress_after(&transmits, 4),
      SendProgress {
        transmits: 2,
        bytes: 0
      }
    );
    assert_eq!(
      progress_after(&transmits, 5),
      SendProgress {
        transmits: 3,
        bytes: 0
      }
    );
    // An empty datagram is a whole transmit too.
    let empty = [Transmit::to(to, b""), Transmit::to(to, b"x")];
    assert_eq!(
      progress_after(&empty, 1),
      SendProgress {
        transmits: 1,
        bytes: 0
      }
    );
  }
}
