//! Walks arbitrary bytes as a received control buffer, at any alignment: the walker must never
//! panic, read outside the buffer, overlap payloads or yield more items than headers fit.
//! (Memory errors are the sanitizer's to find; the assertions check the walk's own promises.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use sendmsg_core::cmsg;

fuzz_target!(|input: &[u8]| {
  let Some((&skew, bytes)) = input.split_first() else {
    return;
  };
  // A slice at an odd offset: nothing about it is aligned for cmsghdr.
  let skew = usize::from(skew % 16);
  let mut storage = vec![0u8; skew];
  storage.extend_from_slice(bytes);
  let buffer = &storage[skew..];
  let (start, end) = (buffer.as_ptr() as usize, buffer.as_ptr() as usize + buffer.len());
  let mut last_end = start;
  let mut count = 0;
  for item in cmsg::walk(buffer) {
    count += 1;
    assert!(count <= buffer.len() / cmsg::header_len(), "more items than headers fit");
    if !item.data.is_empty() {
      let data_start = item.data.as_ptr() as usize;
      assert!(data_start >= last_end && data_start + item.data.len() <= end, "payload outside the buffer or overlapping");
      last_end = data_start + item.data.len();
    }
    assert_eq!(item.fds().count(), item.data.len() / cmsg::FD_SIZE);
  }
});
