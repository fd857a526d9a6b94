//! What every send path builds from its JavaScript arguments: the iovecs, the encoded control
//! messages, and the destination address. One place, so the sync API and the event-loop sockets
//! refuse the same things in the same words.

use std::io::IoSlice;

use napi::bindgen_prelude::*;
use nix::sys::socket::UnixAddr;
use sendmsg_core::cmsg::{self, ControlBuffer, OutgoingCmsg};
use sendmsg_core::socket;
use sendmsg_core::SysError;

use crate::errors;

/// Iovecs over the caller's buffers (no copy).
pub fn iovecs<'a>(parts: &'a [&'a [u8]]) -> Vec<IoSlice<'a>> {
  parts.iter().map(|part| IoSlice::new(part)).collect()
}

/// `[level, type, data]` triples laid out as a control buffer.
pub fn control(env: &Env, ancillary: &[(i32, i32, &[u8])]) -> Result<ControlBuffer> {
  let items: Vec<OutgoingCmsg<'_>> = ancillary
    .iter()
    .map(|&(level, kind, data)| OutgoingCmsg { level, kind, data })
    .collect();
  let mut buffer = ControlBuffer::default();
  cmsg::encode_into(&mut buffer, &items).map_err(|err| errors::throw_encode(env, err))?;
  Ok(buffer)
}

/// A datagram's destination, from the bytes of a path or an abstract name.
pub fn destination(env: &Env, address: Option<&[u8]>) -> Result<Option<UnixAddr>> {
  address
    .map(socket::unix_address)
    .transpose()
    .map_err(|err| errors::throw_sys(env, SysError::new("sendmsg", err.errno)))
}
