//! Reading [`RecvMeta`] out of a received batch: the datagrams themselves are received by the
//! crate's [`RecvBatch`](crate::batch::RecvBatch) (`recvmmsg`), which owns whatever the kernel
//! installed, exactly as for AF_UNIX sockets.

use crate::batch::{BatchMessage, OutOfMemory, RecvBatch};
use crate::message::ReceivedCmsg;

use super::control;
use super::meta::RecvMeta;
use super::socket::socket_addr;

/// The metadata of one received message.
pub fn meta_of(message: &BatchMessage<'_>) -> RecvMeta {
  let mut meta = RecvMeta {
    source: message.address.as_ref().and_then(socket_addr),
    len: message.data.len(),
    stride: message.data.len(),
    ecn: None,
    traffic_class: None,
    dst_ip: None,
    interface: None,
    timestamp: None,
    ttl: None,
    truncated: message.flags & libc::MSG_TRUNC != 0,
  };
  for item in message.other {
    if let ReceivedCmsg::Data { level, kind, data } = item {
      control::decode(&mut meta, *level, *kind, data);
    }
  }
  meta
}

/// The largest datagram (or GRO run of them) one receive can bring.
pub const MAX_RECEIVE: usize = 65_535;

/// Sizes `batch` for `capacity` UDP receives of up to `slot_size` bytes each, with room for
/// every kind of metadata and the senders' addresses.
pub fn prepare(
  batch: &mut RecvBatch,
  capacity: usize,
  slot_size: usize,
) -> Result<(), OutOfMemory> {
  batch.ensure(capacity, slot_size, control::receive_space(), true)
}

/// The `index`th datagram of a GRO run: its bytes within `data`, cut every `stride` bytes.
pub fn segment(data: &[u8], stride: usize, index: usize) -> &[u8] {
  let stride = if stride == 0 {
    data.len().max(1)
  } else {
    stride
  };
  let start = (index * stride).min(data.len());
  &data[start..(start + stride).min(data.len())]
}
