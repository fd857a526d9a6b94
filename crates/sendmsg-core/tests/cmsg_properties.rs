//! Properties of control-message encoding and of the walker over received control buffers.
//!
//! The walker reads bytes the kernel wrote, but it must stay sound whatever they say: a truncated
//! buffer (MSG_CTRUNC), a misaligned slice, or plain garbage must never make it panic, read out of
//! bounds or loop forever. Encoding must agree with libc's own `CMSG_*` macros and walk back to
//! exactly what was encoded.

use std::mem::size_of;

use proptest::collection::vec;
use proptest::prelude::*;
use sendmsg_core::cmsg::{self, ControlBuffer, OutgoingCmsg, FD_SIZE};

/// Arbitrary control messages to send: any level and type, payloads up to a few hundred bytes.
fn items() -> impl Strategy<Value = Vec<(i32, i32, Vec<u8>)>> {
  vec((any::<i32>(), any::<i32>(), vec(any::<u8>(), 0..300)), 0..8)
}

fn encode(items: &[(i32, i32, Vec<u8>)]) -> ControlBuffer {
  let outgoing: Vec<OutgoingCmsg<'_>> = items
    .iter()
    .map(|(level, kind, data)| OutgoingCmsg {
      level: *level,
      kind: *kind,
      data,
    })
    .collect();
  let mut buffer = ControlBuffer::default();
  cmsg::encode_into(&mut buffer, &outgoing).expect("small items fit");
  buffer
}

/// libc's CMSG_FIRSTHDR/CMSG_NXTHDR over the same bytes: the reference the walker must agree with
/// on well-formed buffers.
fn walk_with_libc(buffer: &mut ControlBuffer) -> Vec<(i32, i32, Vec<u8>)> {
  // SAFETY: a zeroed msghdr is valid; the control pointer and length describe `buffer`.
  let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
  msg.msg_control = buffer.as_msg_control();
  msg.msg_controllen = buffer.len() as _;
  let mut seen = Vec::new();
  // SAFETY: the macros stay inside msg_control/msg_controllen for well-formed buffers, which is
  // what encode_into produces.
  unsafe {
    let mut header = libc::CMSG_FIRSTHDR(&msg);
    while !header.is_null() {
      let len = (*header).cmsg_len as usize - cmsg::header_len();
      let data = std::slice::from_raw_parts(libc::CMSG_DATA(header), len).to_vec();
      seen.push(((*header).cmsg_level, (*header).cmsg_type, data));
      header = libc::CMSG_NXTHDR(&msg, header);
    }
  }
  seen
}

/// Whether `inner` lies entirely inside `outer` (by address, not by value).
fn within(outer: &[u8], inner: &[u8]) -> bool {
  let (start, end) = (
    outer.as_ptr() as usize,
    outer.as_ptr() as usize + outer.len(),
  );
  let (inner_start, inner_end) = (
    inner.as_ptr() as usize,
    inner.as_ptr() as usize + inner.len(),
  );
  inner.is_empty() || (start <= inner_start && inner_end <= end)
}

/// Walks `bytes` and checks what any walk must satisfy, whatever the bytes: every payload is a
/// slice of the buffer, the payloads never overlap and come in order, and there are no more items
/// than headers fit.
fn walk_checked(bytes: &[u8]) -> Vec<(i32, i32, Vec<u8>)> {
  let mut walked = Vec::new();
  let mut last_end = bytes.as_ptr() as usize;
  for item in cmsg::walk(bytes) {
    assert!(within(bytes, item.data), "payload outside the buffer");
    if !item.data.is_empty() {
      assert!(
        item.data.as_ptr() as usize >= last_end,
        "payloads overlap or go backwards"
      );
      last_end = item.data.as_ptr() as usize + item.data.len();
    }
    // Fd-carrying payloads decode to whole numbers only.
    assert_eq!(item.fds().count(), item.data.len() / FD_SIZE);
    walked.push((item.level, item.kind, item.data.to_vec()));
    assert!(
      walked.len() <= bytes.len() / cmsg::header_len(),
      "more items than headers fit"
    );
  }
  walked
}

proptest! {
  #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

  #[test]
  fn encoded_items_walk_back_unchanged_and_match_libc(items in items()) {
    let mut buffer = encode(&items);
    let expected_len: usize = items.iter().map(|(_, _, data)| cmsg::cmsg_space(data.len()).unwrap()).sum();
    prop_assert_eq!(buffer.len(), expected_len);
    prop_assert_eq!(cmsg::encoded_len(&items.iter().map(|(l, k, d)| OutgoingCmsg { level: *l, kind: *k, data: d }).collect::<Vec<_>>()), Ok(expected_len));
    prop_assert_eq!(walk_checked(buffer.as_bytes()), items.clone());
    prop_assert_eq!(walk_with_libc(&mut buffer), items);
  }

  #[test]
  fn rights_encode_to_one_item_that_walks_back_to_the_same_descriptors(fds in vec(any::<i32>(), 0..300)) {
    let mut buffer = ControlBuffer::default();
    cmsg::encode_rights_into(&mut buffer, &fds).unwrap();
    let walked: Vec<_> = cmsg::walk(buffer.as_bytes()).collect();
    if fds.is_empty() {
      prop_assert!(buffer.is_empty());
      prop_assert!(walked.is_empty());
    } else {
      prop_assert_eq!(buffer.len(), cmsg::cmsg_space(fds.len() * FD_SIZE).unwrap());
      prop_assert_eq!(walked.len(), 1);
      prop_assert!(walked[0].carries_fds());
      prop_assert_eq!(walked[0].fds().collect::<Vec<_>>(), fds);
    }
  }

  #[test]
  fn a_truncated_buffer_walks_to_a_prefix_of_what_was_encoded(items in items(), cut in any::<prop::sample::Index>()) {
    let buffer = encode(&items);
    let cut = cut.index(buffer.len() + 1);
    let walked = walk_checked(&buffer.as_bytes()[..cut]);
    prop_assert!(walked.len() <= items.len());
    for (i, (level, kind, data)) in walked.iter().enumerate() {
      let (want_level, want_kind, want_data) = &items[i];
      prop_assert_eq!(level, want_level);
      prop_assert_eq!(kind, want_kind);
      if i + 1 < walked.len() {
        prop_assert_eq!(data, want_data);
      } else {
        // Only the last item can be cut short, and only to a prefix of its payload.
        prop_assert!(want_data.starts_with(data));
      }
    }
    // Every item whose whole payload lies before the cut is found.
    let mut complete = 0;
    let mut offset = 0;
    for (_, _, data) in &items {
      if offset + cmsg::cmsg_len(data.len()).unwrap() > cut {
        break;
      }
      complete += 1;
      offset += cmsg::cmsg_space(data.len()).unwrap();
    }
    prop_assert!(walked.len() >= complete);
  }

  #[test]
  fn truncated_rights_hand_over_exactly_the_whole_numbers_that_fit(fds in vec(any::<i32>(), 1..64), room in 0usize..300) {
    let mut buffer = ControlBuffer::default();
    cmsg::encode_rights_into(&mut buffer, &fds).unwrap();
    // What the kernel leaves when the receiver's control buffer is `room` bytes short of the rest.
    let cut = (cmsg::header_len() + room).min(buffer.len());
    let walked: Vec<_> = cmsg::walk(&buffer.as_bytes()[..cut]).collect();
    prop_assert_eq!(walked.len(), 1);
    let whole = (cut - cmsg::header_len()) / FD_SIZE;
    prop_assert_eq!(walked[0].fds().collect::<Vec<_>>(), fds[..whole.min(fds.len())].to_vec());
  }

  #[test]
  fn the_walker_survives_arbitrary_bytes_at_any_alignment(bytes in vec(any::<u8>(), 0..2048), skew in 0usize..16) {
    // A slice at an odd offset of a Vec<u8>: nothing about it is aligned for cmsghdr.
    let mut storage = vec![0u8; skew];
    storage.extend_from_slice(&bytes);
    walk_checked(&storage[skew..]);
  }

  #[test]
  fn the_walker_survives_hostile_lengths(
    headers in vec((prop_oneof![Just(0usize), Just(usize::MAX), Just(usize::MAX - 7), 0usize..64, any::<usize>()], any::<i32>(), any::<i32>()), 0..16),
    tail in vec(any::<u8>(), 0..64),
    skew in 0usize..8,
  ) {
    // Well-formed headers with lengths chosen to hurt: zero, shorter than a header, huge, near
    // overflow when aligned. `cmsg_len` is a size_t on Linux and a socklen_t on Darwin.
    let mut storage = vec![0xa5u8; skew];
    for (len, level, kind) in &headers {
      // SAFETY: a zeroed cmsghdr is valid plain data.
      let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
      header.cmsg_len = *len as _;
      header.cmsg_level = *level;
      header.cmsg_type = *kind;
      // SAFETY: reading the bytes of a plain-data struct.
      let raw = unsafe { std::slice::from_raw_parts((&header as *const libc::cmsghdr).cast::<u8>(), size_of::<libc::cmsghdr>()) };
      storage.extend_from_slice(raw);
      storage.extend_from_slice(&tail[..tail.len().min(*len % 32)]);
    }
    storage.extend_from_slice(&tail);
    walk_checked(&storage[skew..]);
  }
}
