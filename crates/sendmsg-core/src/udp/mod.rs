//! UDP with packet metadata, in the style of quinn-udp: what travels with each datagram is typed
//! ([`Transmit`] out, [`RecvMeta`] in) rather than a list of raw control messages.
//!
//! - [`ecn`]: ECN codepoints, and writing them into a TOS/traffic-class byte without touching DSCP.
//! - [`meta`]: the two metadata types, and the checks that refuse malformed metadata before any
//!   system call.
//! - [`control`]: encoding a [`Transmit`]'s metadata as control messages, decoding received ones.
//! - [`socket`]: AF_INET/AF_INET6 datagram sockets, and the options that make the kernel attach
//!   each kind of metadata; GSO/GRO probing.
//! - [`send`]: batched sends (`sendmmsg`) with GSO, falling back to one datagram per segment when
//!   the kernel or device refuses segmentation (EIO), never losing a datagram.
//! - [`recv`]: reading metadata out of a received batch (the crate's `RecvBatch`, `recvmmsg`).
//! - [`errqueue`]: ICMP errors from the socket's error queue (`MSG_ERRQUEUE`, Linux).
//! - [`platform`]: every difference between Linux and Darwin for UDP, behind `cfg`.
//!
//! Every header goes through the crate's one `msghdr` builder, and many-message calls through the
//! crate's platform module, exactly as for AF_UNIX sockets.

pub mod address;
pub mod control;
pub mod ecn;
pub mod errqueue;
pub mod meta;
pub(crate) mod platform;
pub mod recv;
pub mod send;
pub mod socket;

pub use ecn::Ecn;
pub use meta::{Family, MetaError, RecvMeta, Timestamp, Transmit, MAX_SEGMENTS};
