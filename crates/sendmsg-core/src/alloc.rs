//! Receive buffers that cost only what is received into them.

/// A zeroed buffer straight from the allocator (calloc): its pages stay untouched, so only the
/// bytes the kernel really writes are ever committed, however large the buffer. `None` if the
/// allocation fails (sizes can come from a caller's `maxSize`).
pub fn zeroed(len: usize) -> Option<Vec<u8>> {
  if len == 0 {
    return Some(Vec::new());
  }
  let layout = std::alloc::Layout::array::<u8>(len).ok()?;
  // SAFETY: non-zero size; on success the memory is `len` zeroed bytes owned by the Vec, with the
  // layout Vec<u8> itself would use.
  unsafe {
    let ptr = std::alloc::alloc_zeroed(layout);
    (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, len, len))
  }
}

#[cfg(test)]
mod tests {
  #[test]
  fn a_huge_buffer_is_cheap_until_written() {
    let buffer = super::zeroed(1 << 30).expect("1 GiB of untouched pages");
    assert_eq!(buffer.len(), 1 << 30);
    assert!(buffer[..4096].iter().all(|&b| b == 0));
  }
}
