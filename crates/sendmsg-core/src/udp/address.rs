//! IP socket addresses to and from their C form. (nix's IP address types sit behind its `net`
//! feature, which the rest of the crate does not need; these few conversions are simpler here.)

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// A `sockaddr_in`/`sockaddr_in6` in a `sockaddr_storage`, ready for `bind`, `connect` and
/// `msg_name`.
#[derive(Clone, Copy)]
pub struct RawAddress {
  storage: libc::sockaddr_storage,
  len: libc::socklen_t,
}

impl RawAddress {
  pub fn new(address: SocketAddr) -> Self {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
      SocketAddr::V4(v4) => {
        // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
        let sin = unsafe {
          &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
        };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = v4.port().to_be();
        sin.sin_addr = libc::in_addr {
          s_addr: u32::from_ne_bytes(v4.ip().octets()),
        };
        size_of::<libc::sockaddr_in>()
      }
      SocketAddr::V6(v6) => {
        // SAFETY: as above, for sockaddr_in6.
        let sin6 = unsafe {
          &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
        };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = v6.port().to_be();
        sin6.sin6_flowinfo = v6.flowinfo();
        sin6.sin6_addr = libc::in6_addr {
          s6_addr: v6.ip().octets(),
        };
        sin6.sin6_scope_id = v6.scope_id();
        size_of::<libc::sockaddr_in6>()
      }
    };
    Self {
      storage,
      len: len as libc::socklen_t,
    }
  }

  pub fn as_ptr(&self) -> *const libc::sockaddr {
    (&self.storage as *const libc::sockaddr_storage).cast()
  }

  pub fn len(&self) -> libc::socklen_t {
    self.len
  }

  pub fn is_empty(&self) -> bool {
    self.len == 0
  }
}

/// The IP address in `len` bytes at `address`; `None` for another family or a short length.
///
/// # Safety
/// `address` must point at `len` readable bytes.
pub unsafe fn from_raw(address: *const libc::sockaddr, len: usize) -> Option<SocketAddr> {
  if len < size_of::<libc::sa_family_t>() + 2 {
    return None;
  }
  // SAFETY: at least the family field is readable (checked above); unaligned reads throughout.
  let family = i32::from(unsafe { std::ptr::read_unaligned(address).sa_family });
  match family {
    libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
      // SAFETY: len covers a sockaddr_in.
      let sin = unsafe { std::ptr::read_unaligned(address.cast::<libc::sockaddr_in>()) };
      Some(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(sin.sin_port),
      )))
    }
    libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
      // SAFETY: len covers a sockaddr_in6.
      let sin6 = unsafe { std::ptr::read_unaligned(address.cast::<libc::sockaddr_in6>()) };
      Some(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(sin6.sin6_addr.s6_addr),
        u16::from_be(sin6.sin6_port),
        sin6.sin6_flowinfo,
        sin6.sin6_scope_id,
      )))
    }
    _ => None,
  }
}

/// The IP address nix received; `None` for another family.
pub fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
  // SAFETY: the storage holds `len()` bytes of the address it was made from.
  unsafe { from_raw(address.as_ptr(), address.len() as usize) }
}

/// The IP address in a byte buffer holding a sockaddr (an error's offender, say).
pub fn from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
  // SAFETY: the slice's bytes are readable.
  unsafe { from_raw(bytes.as_ptr().cast(), bytes.len()) }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn round_trips() {
    for text in [
      "127.0.0.1:4433",
      "[::1]:9",
      "[fe80::1%3]:443",
      "[::ffff:10.0.0.1]:53",
    ] {
      let address: SocketAddr = text.parse().unwrap();
      let raw = RawAddress::new(address);
      assert_eq!(
        unsafe { from_raw(raw.as_ptr(), raw.len() as usize) },
        Some(address)
      );
    }
    assert_eq!(from_bytes(&[0; 1]), None);
  }
}
