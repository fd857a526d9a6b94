//! The syscall layer of the `sendmsg` npm package: `sendmsg(2)`/`recvmsg(2)` with arbitrary
//! control messages, and ownership of every descriptor the kernel installs.
//!
//! - [`cmsg`]: control-message geometry, encoding, and a walker that stays sound on truncated
//!   and hostile buffers.
//! - [`message`]: one send or receive; received descriptors come back owned and close-on-exec.
//! - [`batch`]: many messages per call (`recvmmsg`/`sendmmsg`), non-blocking, for event loops.
//! - [`pace`]: whether an event loop reads a readable socket one message at a time or in batches.
//! - [`socket`]: AF_UNIX socket creation and queries; [`socket::SocketKind`] is the one table of
//!   socket types.
//! - [`credentials`]: who the peer is (SO_PEERCRED, getpeereid).
//! - [`fd`]: descriptor flags, pipes, closing.
//! - [`clock`]: `CLOCK_MONOTONIC`, the clock systemd compares notification timestamps against.
//! - [`udp`]: UDP with typed packet metadata (ECN, PKTINFO, GSO/GRO, timestamps, TTL, ICMP
//!   errors), on the same `msghdr` builder and batches.
//!
//! Inside, modules use each other one way only (checked by `tests/layering.rs`): `error`, then
//! `fcntl` (descriptor flags), `msghdr` (the one `msghdr` builder), `platform` (every difference
//! between Linux and Darwin), `cmsg`, `fd`, `socket`, `credentials`, `message`, `batch`.
//!
//! Nothing here knows about JavaScript; the napi binding crate converts at its edge.

pub mod alloc;
pub mod batch;
pub mod clock;
pub mod cmsg;
pub mod consts;
pub mod credentials;
pub mod error;
mod fcntl;
pub mod fd;
pub mod message;
mod msghdr;
pub mod pace;
mod platform;
pub mod socket;
pub mod udp;

pub use error::{SysError, SysResult};
