//! What travels with a datagram: [`Transmit`] on the way out, [`RecvMeta`] on the way in.
//!
//! A `Transmit` is checked ([`Transmit::check`]) before any system call: the kernel would refuse
//! some of these mistakes with a bare EINVAL, and silently misroute others (a source address of
//! the wrong family is ignored by some kernels).

use std::net::{IpAddr, SocketAddr};

use super::ecn::Ecn;

/// The largest UDP payload: 65,535 minus the UDP header and the smallest IPv4 header.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The most datagrams one transmit may be cut into: the kernel's `UDP_MAX_SEGMENTS`, kept as the
/// limit everywhere so that a transmit valid on one system is valid on all (where GSO is missing
/// the sender cuts it itself).
pub const MAX_SEGMENTS: usize = 64;

/// Which IP version a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
  V4,
  /// IPv6; dual-stack unless the socket is `IPV6_V6ONLY`, reaching IPv4 peers as `::ffff:a.b.c.d`.
  V6,
}

/// One datagram to send, or with `segment_size` a run of equal datagrams sent as one buffer
/// (GSO: the kernel, or the device, cuts `contents` every `segment_size` bytes; the last may be
/// shorter).
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
  /// Where to; `None` on a connected socket.
  pub destination: Option<SocketAddr>,
  pub contents: &'a [u8],
  /// The ECN mark; `None` leaves the socket's TOS/traffic class as it is.
  pub ecn: Option<Ecn>,
  /// GSO: the size of each datagram `contents` is cut into.
  pub segment_size: Option<usize>,
  /// The local address to send from (IP_PKTINFO / IPV6_PKTINFO): on a socket bound to a
  /// wildcard address, answer from the address the request came to.
  pub src_ip: Option<IpAddr>,
}

/// Why a [`Transmit`] was refused before any system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaError {
  /// `segment_size` is zero.
  ZeroSegmentSize,
  /// `segment_size` is larger than a UDP datagram can be.
  SegmentTooLarge,
  /// `contents` would be cut into more than [`MAX_SEGMENTS`] datagrams.
  TooManySegments,
  /// `contents` is larger than a UDP datagram (or a GSO buffer) can be.
  TooLarge,
  /// An IPv6 destination on an IPv4 socket.
  DestinationFamily,
  /// A destination with port 0.
  DestinationPort,
  /// A source address of another family than the destination, or a multicast/broadcast one.
  SourceAddress,
}

impl std::fmt::Display for MetaError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str(match self {
      Self::ZeroSegmentSize => "the segment size must be at least 1",
      Self::SegmentTooLarge => "the segment size is larger than a UDP datagram (65,507 bytes)",
      Self::TooManySegments => "the data would be cut into more than 64 segments",
      Self::TooLarge => "the data is larger than a UDP datagram (65,507 bytes)",
      Self::DestinationFamily => "an IPv6 destination cannot be reached from an IPv4 socket",
      Self::DestinationPort => "the destination port must not be 0",
      Self::SourceAddress => {
        "the source address must be a unicast address of the destination's family"
      }
    })
  }
}

impl std::error::Error for MetaError {}

/// `address` as IPv4 when it is one or an IPv4-mapped IPv6 address: what the kernel puts on the
/// wire, and so which control messages (IP_* or IPV6_*) apply.
pub fn unmapped(address: IpAddr) -> IpAddr {
  match address {
    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
    v4 => v4,
  }
}

impl Transmit<'_> {
  /// A plain datagram to `destination`.
  pub fn to(destination: SocketAddr, contents: &[u8]) -> Transmit<'_> {
    Transmit {
      destination: Some(destination),
      contents,
      ecn: None,
      segment_size: None,
      src_ip: None,
    }
  }

  /// How many datagrams this puts on the wire.
  pub fn segments(&self) -> usize {
    match self.segment_size {
      Some(size) if size > 0 => self.contents.len().div_ceil(size).max(1),
      _ => 1,
    }
  }

  /// Whether the kernel should segment it (GSO): a segment size shorter than the contents.
  pub fn needs_segmentation(&self) -> bool {
    self
      .segment_size
      .is_some_and(|size| size < self.contents.len())
  }

  /// Refuses what the kernel must never see, for a socket of `family`.
  pub fn check(&self, family: Family) -> Result<(), MetaError> {
    if let Some(size) = self.segment_size {
      if size == 0 {
        return Err(MetaError::ZeroSegmentSize);
      }
      if size > MAX_UDP_PAYLOAD {
        return Err(MetaError::SegmentTooLarge);
      }
      if self.segments() > MAX_SEGMENTS {
        return Err(MetaError::TooManySegments);
      }
      // The whole GSO buffer is one IP packet's worth of payload to the kernel.
      if self.contents.len() > MAX_UDP_PAYLOAD {
        return Err(MetaError::TooLarge);
      }
    } else if self.contents.len() > MAX_UDP_PAYLOAD {
      return Err(MetaError::TooLarge);
    }
    if let Some(destination) = self.destination {
      if destination.port() == 0 {
        return Err(MetaError::DestinationPort);
      }
      if family == Family::V4 && destination.is_ipv6() {
        return Err(MetaError::DestinationFamily);
      }
    }
    if let Some(source) = self.src_ip {
      let source = unmapped(source);
      let unicast = match source {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
      };
      let same_family = match self.destination {
        Some(destination) => unmapped(destination.ip()).is_ipv4() == source.is_ipv4(),
        None => family == Family::V6 || source.is_ipv4(),
      };
      if !unicast || !same_family {
        return Err(MetaError::SourceAddress);
      }
    }
    Ok(())
  }
}

/// When the kernel received a datagram (SO_TIMESTAMPNS): time since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
  pub seconds: i64,
  pub nanoseconds: u32,
}

/// What came with a received datagram (or, with GRO, a run of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
  /// The sender.
  pub source: Option<SocketAddr>,
  /// Bytes received.
  pub len: usize,
  /// GRO: the size of each datagram coalesced into these bytes (the last may be shorter);
  /// `len` when nothing was coalesced.
  pub stride: usize,
  pub ecn: Option<Ecn>,
  /// The whole TOS byte / traffic class the ECN bits came in (DSCP included).
  pub traffic_class: Option<u8>,
  /// The local address the datagram was sent to (IP_PKTINFO / IPV6_PKTINFO).
  pub dst_ip: Option<IpAddr>,
  /// The interface it arrived on (PKTINFO).
  pub interface: Option<u32>,
  pub timestamp: Option<Timestamp>,
  /// IPv4 TTL or IPv6 hop limit (IP_RECVTTL / IPV6_RECVHOPLIMIT).
  pub ttl: Option<u8>,
  /// The datagram was longer than the receive buffer (MSG_TRUNC).
  pub truncated: bool,
}

impl RecvMeta {
  /// How many datagrams these bytes hold.
  pub fn segments(&self) -> usize {
    if self.stride == 0 {
      1
    } else {
      self.len.div_ceil(self.stride).max(1)
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn at(address: &str) -> SocketAddr {
    address.parse().unwrap()
  }

  #[test]
  fn malformed_metadata_is_refused() {
    let data = [0u8; 3000];
    let base = Transmit::to(at("127.0.0.1:9"), &data);
    assert_eq!(base.check(Family::V4), Ok(()));
    let gso = |size| Transmit {
      segment_size: Some(size),
      ..base
    };
    assert_eq!(gso(0).check(Family::V4), Err(MetaError::ZeroSegmentSize));
    assert_eq!(gso(1200).check(Family::V4), Ok(()));
    assert_eq!(gso(1200).segments(), 3);
    assert_eq!(gso(40).check(Family::V4), Err(MetaError::TooManySegments));
    assert_eq!(
      gso(70_000).check(Family::V4),
      Err(MetaError::SegmentTooLarge)
    );
    let big = vec![0u8; 70_000];
    assert_eq!(
      Transmit::to(at("127.0.0.1:9"), &big).check(Family::V4),
      Err(MetaError::TooLarge)
    );
    assert_eq!(
      Transmit::to(at("[::1]:9"), &data).check(Family::V4),
      Err(MetaError::DestinationFamily)
    );
    assert_eq!(
      Transmit::to(at("127.0.0.1:0"), &data).check(Family::V4),
      Err(MetaError::DestinationPort)
    );
    let from = |ip: &str| Transmit {
      src_ip: Some(ip.parse().unwrap()),
      ..base
    };
    assert_eq!(from("127.0.0.2").check(Family::V4), Ok(()));
    assert_eq!(from("::1").check(Family::V4), Err(MetaError::SourceAddress));
    assert_eq!(
      from("224.0.0.1").check(Family::V4),
      Err(MetaError::SourceAddress)
    );
    // Dual-stack: an IPv4-mapped destination is answered from an IPv4 (or mapped) source.
    let mapped = Transmit {
      src_ip: Some("::ffff:127.0.0.2".parse().unwrap()),
      ..Transmit::to(at("[::ffff:127.0.0.1]:9"), &data)
    };
    assert_eq!(mapped.check(Family::V6), Ok(()));
  }
}
