//! UDP with metadata on loopback: GSO, GRO, ECN with DSCP kept, PKTINFO both ways, timestamps,
//! TTL, ICMP errors from the error queue, the per-datagram fallback, and malformed metadata.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use sendmsg_core::batch::RecvBatch;
use sendmsg_core::udp::errqueue::{self, ErrorOrigin};
use sendmsg_core::udp::send::{SendProgress, UdpSendError, UdpSender};
use sendmsg_core::udp::socket::{self, ReceiveOptions};
use sendmsg_core::udp::{recv, Ecn, Family, MetaError, RecvMeta, Transmit};

mod common;
use common::{lock, open_fds};

const ALL: ReceiveOptions = ReceiveOptions {
  ecn: true,
  pktinfo: true,
  ttl: true,
  timestamps: true,
  gro: false,
  errors: true,
};

fn bound(family: Family, address: &str, options: ReceiveOptions) -> (OwnedFd, SocketAddr) {
  let fd = socket::udp_socket(family, true).unwrap();
  socket::bind(fd.as_raw_fd(), address.parse().unwrap()).unwrap();
  socket::enable(fd.as_raw_fd(), family, &options).unwrap();
  let local = socket::local_address(fd.as_raw_fd()).unwrap();
  (fd, local)
}

/// Receives until `count` datagrams (counting GRO segments) arrived or a second passed.
fn receive(fd: RawFd, count: usize) -> Vec<(Vec<u8>, RecvMeta)> {
  let mut batch = RecvBatch::default();
  recv::prepare(&mut batch, 16, recv::MAX_RECEIVE).unwrap();
  let mut out = Vec::new();
  let deadline = Instant::now() + Duration::from_secs(1);
  while out
    .iter()
    .map(|(_, meta): &(Vec<u8>, RecvMeta)| meta.segments())
    .sum::<usize>()
    < count
  {
    assert!(
      Instant::now() < deadline,
      "only {} datagrams arrived",
      out.len()
    );
    let n = batch.recv(fd, 16).unwrap();
    for i in 0..n {
      let message = batch.message(i);
      out.push((message.data.to_vec(), recv::meta_of(&message)));
    }
    if n == 0 {
      std::thread::sleep(Duration::from_millis(1));
    }
  }
  out
}

fn send_all(sender: &mut UdpSender, fd: RawFd, transmits: &[Transmit<'_>]) {
  let progress = sender.send(fd, transmits).unwrap();
  assert_eq!(
    progress,
    SendProgress {
      transmits: transmits.len(),
      bytes: 0
    }
  );
}

#[test]
fn gso_cuts_one_buffer_into_datagrams() {
  let _guard = lock();
  let before = open_fds();
  {
    let (rx, to) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
    let (tx, _) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
    assert_eq!(socket::gso_max_segments(&tx), 64);
    let mut sender = UdpSender::new(Family::V4, true);
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    send_all(
      &mut sender,
      tx.as_raw_fd(),
      &[Transmit {
        segment_size: Some(1200),
        ..Transmit::to(to, &data)
      }],
    );
    let got = receive(rx.as_raw_fd(), 3);
    let lens: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
    assert_eq!(lens, [1200, 1200, 600]);
    assert_eq!(got.concat_data(), data);
  }
  assert_eq!(open_fds(), before);
}

trait Concat {
  fn concat_data(&self) -> Vec<u8>;
}
impl Concat for Vec<(Vec<u8>, RecvMeta)> {
  fn concat_data(&self) -> Vec<u8> {
    self.iter().flat_map(|(d, _)| d.clone()).collect()
  }
}

#[test]
fn gro_hands_back_runs_with_their_stride() {
  let _guard = lock();
  let (rx, to) = bound(
    Family::V4,
    "127.0.0.1:0",
    ReceiveOptions {
      gro: true,
      ..Default::default()
    },
  );
  let (tx, _) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let mut sender = UdpSender::new(Family::V4, true);
  let data = vec![7u8; 1200 * 10];
  send_all(
    &mut sender,
    tx.as_raw_fd(),
    &[Transmit {
      segment_size: Some(1200),
      ..Transmit::to(to, &data)
    }],
  );
  let got = receive(rx.as_raw_fd(), 10);
  assert!(got.len() < 10, "coalesced: {} receives", got.len());
  for (bytes, meta) in &got {
    assert_eq!(meta.stride, 1200);
    assert_eq!(meta.len, bytes.len());
    assert_eq!(recv::segment(bytes, meta.stride, 0).len(), 1200);
  }
  assert_eq!(got.concat_data().len(), data.len());
}

#[test]
fn without_gso_a_transmit_goes_one_datagram_per_segment() {
  let _guard = lock();
  let (rx, to) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let (tx, _) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let mut sender = UdpSender::new(Family::V4, false);
  let data = vec![1u8; 2500];
  send_all(
    &mut sender,
    tx.as_raw_fd(),
    &[
      Transmit {
        segment_size: Some(1000),
        ..Transmit::to(to, &data)
      },
      Transmit::to(to, b"after"),
    ],
  );
  let lens: Vec<usize> = receive(rx.as_raw_fd(), 4)
    .iter()
    .map(|(d, _)| d.len())
    .collect();
  assert_eq!(lens, [1000, 1000, 500, 5]);
}

#[test]
fn ecn_marks_arrive_and_the_dscp_is_kept() {
  let _guard = lock();
  for (family, rx_at, tx_at) in [
    (Family::V4, "127.0.0.1:0", "127.0.0.1:0"),
    (Family::V6, "[::1]:0", "[::1]:0"),
    // Dual-stack: an IPv6 socket talking to an IPv4 one.
    (Family::V6, "[::]:0", "[::]:0"),
  ] {
    let (rx, mut to) = bound(family, rx_at, ALL);
    if rx_at == "[::]:0" {
      to = SocketAddr::new("127.0.0.1".parse().unwrap(), to.port());
    }
    let (tx, _) = bound(family, tx_at, ALL);
    let af41 = 34 << 2;
    socket::set_traffic_class(tx.as_raw_fd(), family, af41).unwrap();
    let mut sender = UdpSender::new(family, true);
    for ecn in [Ecn::Ect0, Ecn::Ce, Ecn::Ect1] {
      send_all(
        &mut sender,
        tx.as_raw_fd(),
        &[Transmit {
          ecn: Some(ecn),
          ..Transmit::to(to, b"x")
        }],
      );
      let got = receive(rx.as_raw_fd(), 1);
      assert_eq!(got[0].1.ecn, Some(ecn), "{family:?} {rx_at}");
      assert_eq!(
        got[0].1.traffic_class,
        Some(af41 | ecn as u8),
        "DSCP kept, {family:?} {rx_at}"
      );
    }
    // The socket's own TOS is untouched by per-datagram marks.
    assert_eq!(socket::traffic_class(tx.as_raw_fd(), family).unwrap(), af41);
  }
}

#[test]
fn pktinfo_names_the_local_address_and_answers_from_it() {
  let _guard = lock();
  // All of 127/8 is local: a wildcard socket sees which address was asked.
  let (server, at) = bound(Family::V4, "0.0.0.0:0", ALL);
  let (client, client_at) = bound(Family::V4, "127.0.0.1:0", ALL);
  let asked: SocketAddr = SocketAddr::new("127.0.0.5".parse().unwrap(), at.port());
  let mut sender = UdpSender::new(Family::V4, true);
  send_all(
    &mut sender,
    client.as_raw_fd(),
    &[Transmit::to(asked, b"ping")],
  );
  let (_, meta) = receive(server.as_raw_fd(), 1).remove(0);
  assert_eq!(meta.dst_ip, Some(asked.ip()));
  assert_eq!(
    meta.interface,
    Some(unsafe { libc::if_nametoindex(c"lo".as_ptr()) })
  );
  assert_eq!(meta.source, Some(client_at));
  assert_eq!(meta.ttl, Some(64));
  let stamp = meta.timestamp.expect("a timestamp");
  let now = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .unwrap();
  assert!((now.as_secs() as i64 - stamp.seconds).abs() <= 2);
  // Answer from the address asked.
  let mut answer = UdpSender::new(Family::V4, true);
  send_all(
    &mut answer,
    server.as_raw_fd(),
    &[Transmit {
      src_ip: meta.dst_ip,
      ..Transmit::to(client_at, b"pong")
    }],
  );
  let (data, reply) = receive(client.as_raw_fd(), 1).remove(0);
  assert_eq!(data, b"pong");
  assert_eq!(reply.source, Some(asked));
}

#[test]
fn ipv6_pktinfo_and_hop_limit() {
  let _guard = lock();
  let (server, at) = bound(Family::V6, "[::]:0", ALL);
  let (client, client_at) = bound(Family::V6, "[::1]:0", ALL);
  let to: SocketAddr = SocketAddr::new("::1".parse().unwrap(), at.port());
  let mut sender = UdpSender::new(Family::V6, true);
  send_all(
    &mut sender,
    client.as_raw_fd(),
    &[Transmit::to(to, b"ping")],
  );
  let (_, meta) = receive(server.as_raw_fd(), 1).remove(0);
  assert_eq!(
    meta.dst_ip,
    Some(IpAddr::from("::1".parse::<std::net::Ipv6Addr>().unwrap()))
  );
  assert_eq!(meta.ttl, Some(64));
  assert_eq!(meta.source, Some(client_at));
  let mut answer = UdpSender::new(Family::V6, true);
  send_all(
    &mut answer,
    server.as_raw_fd(),
    &[Transmit {
      src_ip: meta.dst_ip,
      ..Transmit::to(client_at, b"pong")
    }],
  );
  assert_eq!(receive(client.as_raw_fd(), 1)[0].1.source, Some(to));
}

#[test]
fn port_unreachable_is_read_from_the_error_queue() {
  let _guard = lock();
  let before = open_fds();
  {
    // A port nobody listens on: bind one, note it, close it.
    let closed = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default()).1;
    let (tx, _) = bound(Family::V4, "127.0.0.1:0", ALL);
    let mut sender = UdpSender::new(Family::V4, true);
    send_all(
      &mut sender,
      tx.as_raw_fd(),
      &[Transmit::to(closed, b"anyone?")],
    );
    let mut payload = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(1);
    let error = loop {
      if let Some(error) = errqueue::read_error(tx.as_raw_fd(), &mut payload).unwrap() {
        break error;
      }
      assert!(Instant::now() < deadline, "no error queued");
      std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(error.errno, Errno::ECONNREFUSED);
    assert_eq!(error.origin, ErrorOrigin::Icmp);
    assert_eq!((error.icmp_type, error.icmp_code), (3, 3));
    assert_eq!(error.destination, Some(closed));
    assert_eq!(error.offender, Some(closed.ip()));
    assert_eq!(&payload[..error.payload_len], b"anyone?");
    assert_eq!(
      errqueue::read_error(tx.as_raw_fd(), &mut payload).unwrap(),
      None
    );
    // The queue read cleared the socket's pending error: the next send is not refused.
    send_all(
      &mut sender,
      tx.as_raw_fd(),
      &[Transmit::to(closed, b"again")],
    );
  }
  assert_eq!(open_fds(), before);
}

#[test]
fn a_stale_icmp_error_does_not_fail_the_next_send() {
  let _guard = lock();
  let closed = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default()).1;
  let (rx, open) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let (tx, _) = bound(Family::V4, "127.0.0.1:0", ALL);
  let mut sender = UdpSender::new(Family::V4, true);
  send_all(
    &mut sender,
    tx.as_raw_fd(),
    &[Transmit::to(closed, b"lost")],
  );
  std::thread::sleep(Duration::from_millis(20));
  // The ICMP error is pending on the socket; a send elsewhere still goes.
  send_all(&mut sender, tx.as_raw_fd(), &[Transmit::to(open, b"fine")]);
  assert_eq!(receive(rx.as_raw_fd(), 1)[0].0, b"fine");
}

#[test]
fn malformed_metadata_is_refused_before_any_system_call() {
  let data = [0u8; 100];
  let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
  let mut sender = UdpSender::new(Family::V4, true);
  // -1 is no descriptor: a system call would say EBADF.
  let refused =
    |sender: &mut UdpSender, transmit: Transmit<'_>| sender.send(-1, &[transmit]).unwrap_err();
  assert_eq!(
    refused(
      &mut sender,
      Transmit {
        segment_size: Some(0),
        ..Transmit::to(to, &data)
      }
    ),
    UdpSendError::Meta(MetaError::ZeroSegmentSize)
  );
  assert_eq!(
    refused(
      &mut sender,
      Transmit {
        segment_size: Some(1),
        ..Transmit::to(to, &data)
      }
    ),
    UdpSendError::Meta(MetaError::TooManySegments)
  );
  assert_eq!(
    refused(&mut sender, Transmit::to("[::1]:9".parse().unwrap(), &data)),
    UdpSendError::Meta(MetaError::DestinationFamily)
  );
  assert_eq!(
    refused(
      &mut sender,
      Transmit {
        src_ip: Some("::1".parse().unwrap()),
        ..Transmit::to(to, &data)
      }
    ),
    UdpSendError::Meta(MetaError::SourceAddress)
  );
  match refused(&mut sender, Transmit::to(to, &data)) {
    UdpSendError::Sys(err) => assert_eq!(err.errno, Errno::EBADF),
    other => panic!("{other:?}"),
  }
}

#[test]
fn a_batch_goes_in_one_call_to_several_destinations() {
  let _guard = lock();
  let (a, at_a) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let (b, at_b) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let (tx, _) = bound(Family::V4, "127.0.0.1:0", ReceiveOptions::default());
  let mut sender = UdpSender::new(Family::V4, true);
  let transmits: Vec<Transmit<'_>> = (0..32)
    .map(|i| Transmit::to(if i % 2 == 0 { at_a } else { at_b }, b"batched"))
    .collect();
  send_all(&mut sender, tx.as_raw_fd(), &transmits);
  assert_eq!(receive(a.as_raw_fd(), 16).len(), 16);
  assert_eq!(receive(b.as_raw_fd(), 16).len(), 16);
}

#[test]
fn a_socket_is_bound_once_it_has_a_port_or_a_name() {
  for family in [Family::V4, Family::V6] {
    let fd = socket::udp_socket(family, true).unwrap();
    assert!(!sendmsg_core::socket::is_bound(fd.as_raw_fd()).unwrap());
    let any = if family == Family::V4 {
      "127.0.0.1:0"
    } else {
      "[::1]:0"
    };
    socket::bind(fd.as_raw_fd(), any.parse().unwrap()).unwrap();
    assert!(sendmsg_core::socket::is_bound(fd.as_raw_fd()).unwrap());
  }
  let (a, _b) =
    sendmsg_core::socket::socketpair(sendmsg_core::socket::SocketKind::Datagram, true).unwrap();
  assert!(!sendmsg_core::socket::is_bound(a.as_raw_fd()).unwrap());
  let named =
    sendmsg_core::socket::unix_socket(sendmsg_core::socket::SocketKind::Datagram, true).unwrap();
  let name = format!("\0sendmsg-core-bound-{}", std::process::id());
  sendmsg_core::socket::bind(
    named.as_raw_fd(),
    &sendmsg_core::socket::unix_address(name.as_bytes()).unwrap(),
  )
  .unwrap();
  assert!(sendmsg_core::socket::is_bound(named.as_raw_fd()).unwrap());
}
