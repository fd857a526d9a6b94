//! A [`Transmit`]'s metadata as control messages, and received control messages as [`RecvMeta`].
//!
//! Which family's messages apply is decided by the address on the wire, not by the socket: an
//! IPv6 socket sending to an IPv4-mapped address goes out as IPv4, and Linux reads `IP_TOS` and
//! `IP_PKTINFO` for it (and ignores `IPV6_TCLASS`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cmsg::{self, ControlBuffer, EncodeError, OutgoingCmsg};

use super::ecn::Ecn;
use super::meta::{unmapped, RecvMeta, Timestamp, Transmit};
use super::platform::{self, bytes_of, read_value, In6Pktinfo};

/// What the encoder needs to know about the socket a transmit leaves from.
#[derive(Clone, Copy, Debug)]
pub struct SendContext {
  /// The connected peer is an IPv4 (or IPv4-mapped) address: used when a transmit has no
  /// destination of its own.
  pub peer_is_v4: bool,
  /// The socket's TOS/traffic class, whose DSCP bits an ECN mark keeps.
  pub traffic_class: u8,
  /// Whether to pass `segment_size` to the kernel (GSO works); otherwise the sender splits.
  pub gso: bool,
}

fn in_addr(address: Ipv4Addr) -> libc::in_addr {
  libc::in_addr {
    s_addr: u32::from_ne_bytes(address.octets()),
  }
}

fn in6_addr(address: Ipv6Addr) -> libc::in6_addr {
  libc::in6_addr {
    s6_addr: address.octets(),
  }
}

/// Lays out `transmit`'s metadata into `control` (emptied when there is none).
pub fn encode(
  control: &mut ControlBuffer,
  transmit: &Transmit<'_>,
  context: &SendContext,
) -> Result<(), EncodeError> {
  let wire_v4 = transmit
    .destination
    .map_or(context.peer_is_v4, |destination| {
      unmapped(destination.ip()).is_ipv4()
    });
  // The payloads live here until the buffer is written.
  let tos;
  let pktinfo_v4;
  let pktinfo_v6;
  let segment: u16;
  let mut items: [OutgoingCmsg<'_>; 3] = [OutgoingCmsg {
    level: 0,
    kind: 0,
    data: &[],
  }; 3];
  let mut count = 0;
  if let Some(ecn) = transmit.ecn {
    tos = platform::tos_payload(ecn.apply_to(context.traffic_class));
    items[count] = if wire_v4 {
      OutgoingCmsg {
        level: libc::IPPROTO_IP,
        kind: libc::IP_TOS,
        data: bytes_of(&tos),
      }
    } else {
      OutgoingCmsg {
        level: libc::IPPROTO_IPV6,
        kind: libc::IPV6_TCLASS,
        data: bytes_of(&tos),
      }
    };
    count += 1;
  }
  if let Some(source) = transmit.src_ip {
    items[count] = match unmapped(source) {
      IpAddr::V4(v4) => {
        pktinfo_v4 = platform::ip_pktinfo(in_addr(v4));
        OutgoingCmsg {
          level: libc::IPPROTO_IP,
          kind: platform::IP_PKTINFO,
          data: bytes_of(&pktinfo_v4),
        }
      }
      IpAddr::V6(v6) => {
        pktinfo_v6 = In6Pktinfo {
          addr: in6_addr(v6),
          ifindex: 0,
        };
        OutgoingCmsg {
          level: libc::IPPROTO_IPV6,
          kind: libc::IPV6_PKTINFO,
          data: bytes_of(&pktinfo_v6),
        }
      }
    };
    count += 1;
  }
  if context.gso && transmit.needs_segmentation() {
    // Checked against MAX_UDP_PAYLOAD by Transmit::check, so it fits a u16.
    segment = transmit.segment_size.unwrap_or(0).min(u16::MAX as usize) as u16;
    items[count] = OutgoingCmsg {
      level: platform::SOL_UDP,
      kind: platform::UDP_SEGMENT,
      data: bytes_of(&segment),
    };
    count += 1;
  }
  cmsg::encode_into(control, &items[..count])
}

/// Room for every control message [`decode`] understands, per received datagram.
pub fn receive_space() -> usize {
  use std::mem::size_of;
  cmsg::space_for_payloads([
    size_of::<libc::c_int>(),     // TOS / traffic class
    size_of::<In6Pktinfo>(),      // PKTINFO (the larger of the two)
    size_of::<libc::c_int>(),     // TTL / hop limit
    size_of::<libc::timespec>(),  // timestamp
    size_of::<libc::c_int>(),     // GRO stride
    size_of::<libc::c_int>() * 4, // slack for a message this does not know
  ])
  .expect("fits")
}

fn set_traffic_class(meta: &mut RecvMeta, class: Option<u8>) {
  if let Some(class) = class {
    meta.traffic_class = Some(class);
    meta.ecn = Some(Ecn::from_bits(class));
  }
}

/// Reads one received control message into `meta`; messages it does not know are left alone.
pub fn decode(meta: &mut RecvMeta, level: i32, kind: i32, data: &[u8]) {
  match level {
    libc::IPPROTO_IP => match kind {
      k if k == platform::RECEIVED_TOS => set_traffic_class(meta, platform::received_tos(data)),
      k if k == platform::IP_PKTINFO => {
        if let Some((address, interface)) = platform::received_ip_pktinfo(data) {
          meta.dst_ip = Some(IpAddr::V4(Ipv4Addr::from(address.s_addr.to_ne_bytes())));
          meta.interface = Some(interface);
        }
      }
      k if k == platform::RECEIVED_TTL => meta.ttl = platform::received_ttl(data),
      _ => {}
    },
    libc::IPPROTO_IPV6 => match kind {
      libc::IPV6_TCLASS => set_traffic_class(
        meta,
        read_value::<libc::c_int>(data).map(|class| class as u8),
      ),
      libc::IPV6_PKTINFO => {
        if let Some(info) = read_value::<In6Pktinfo>(data) {
          meta.dst_ip = Some(IpAddr::V6(Ipv6Addr::from(info.addr.s6_addr)));
          meta.interface = Some(info.ifindex);
        }
      }
      libc::IPV6_HOPLIMIT => {
        meta.ttl = read_value::<libc::c_int>(data).map(|hops| hops.clamp(0, 255) as u8)
      }
      _ => {}
    },
    libc::SOL_SOCKET if kind == platform::RECEIVED_TIMESTAMP => {
      meta.timestamp = platform::received_timestamp(data).map(|(seconds, nanoseconds)| Timestamp {
        seconds,
        nanoseconds,
      })
    }
    l if l == platform::SOL_UDP && kind == platform::UDP_GRO => {
      // An int in the kernels that send it; read as much as there is.
      let stride = read_value::<libc::c_int>(data)
        .map(|n| n as usize)
        .or_else(|| read_value::<u16>(data).map(usize::from));
      if let Some(stride) = stride.filter(|&n| n > 0) {
        meta.stride = stride;
      }
    }
    _ => {}
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::cmsg::walk;

  fn encoded(transmit: &Transmit<'_>, context: &SendContext) -> Vec<(i32, i32, Vec<u8>)> {
    let mut control = ControlBuffer::default();
    encode(&mut control, transmit, context).unwrap();
    walk(control.as_bytes())
      .map(|c| (c.level, c.kind, c.data.to_vec()))
      .collect()
  }

  const CONTEXT: SendContext = SendContext {
    peer_is_v4: true,
    traffic_class: 0x88, // DSCP AF41 (34 << 2)
    gso: true,
  };

  #[test]
  fn ecn_is_written_over_the_dscp_and_for_the_wire_family() {
    let data = [0u8; 10];
    let v4 = Transmit {
      ecn: Some(Ecn::Ect0),
      ..Transmit::to("127.0.0.1:9".parse().unwrap(), &data)
    };
    let items = encoded(&v4, &CONTEXT);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].0, items[0].1), (libc::IPPROTO_IP, libc::IP_TOS));
    assert_eq!(items[0].2, (0x8a as libc::c_int).to_ne_bytes());
    let mapped = Transmit {
      destination: Some("[::ffff:127.0.0.1]:9".parse().unwrap()),
      ..v4
    };
    assert_eq!(encoded(&mapped, &CONTEXT)[0].1, libc::IP_TOS);
    let v6 = Transmit {
      destination: Some("[::1]:9".parse().unwrap()),
      ecn: Some(Ecn::Ce),
      ..v4
    };
    let items = encoded(&v6, &CONTEXT);
    assert_eq!(
      (items[0].0, items[0].1),
      (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    );
    assert_eq!(items[0].2, (0x8b as libc::c_int).to_ne_bytes());
  }

  #[test]
  fn source_and_segments_round_trip_shapes() {
    let data = [0u8; 3000];
    let transmit = Transmit {
      segment_size: Some(1200),
      src_ip: Some("127.0.0.2".parse().unwrap()),
      ..Transmit::to("127.0.0.1:9".parse().unwrap(), &data)
    };
    let items = encoded(&transmit, &CONTEXT);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].1, platform::IP_PKTINFO);
    assert_eq!(items[1].1, platform::UDP_SEGMENT);
    assert_eq!(items[1].2, 1200u16.to_ne_bytes());
    // Without GSO the sender splits: no segment message.
    let plain = encoded(
      &transmit,
      &SendContext {
        gso: false,
        ..CONTEXT
      },
    );
    assert_eq!(plain.len(), 1);
    // Nothing to say: no control buffer at all.
    let mut control = ControlBuffer::zeroed(8).unwrap();
    encode(
      &mut control,
      &Transmit::to("127.0.0.1:9".parse().unwrap(), &data),
      &CONTEXT,
    )
    .unwrap();
    assert!(control.is_empty());
  }

  #[test]
  fn decoding_ignores_short_and_unknown_messages() {
    let mut meta = RecvMeta {
      source: None,
      len: 10,
      stride: 10,
      ecn: None,
      traffic_class: None,
      dst_ip: None,
      interface: None,
      timestamp: None,
      ttl: None,
      truncated: false,
    };
    decode(&mut meta, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &[1]);
    decode(&mut meta, libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 3]);
    decode(&mut meta, 12345, 1, &[0; 64]);
    assert_eq!(meta.ecn, None);
    assert_eq!(meta.dst_ip, None);
    decode(&mut meta, libc::IPPROTO_IP, platform::RECEIVED_TOS, &[0x8b]);
    assert_eq!(meta.ecn, Some(Ecn::Ce));
  }
}
