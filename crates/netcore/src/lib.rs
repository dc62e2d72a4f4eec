//! netcore: byte-level plumbing for peerlane. It knows sockets, addresses and frames, and
//! nothing about encryption, messages or peers.
//!
//! # How data flows
//!
//! ```text
//! NetworkAddress ──► Transport::dial / listen_on ──► socket (TCP or memsocket)
//!                          │ and_then(upgrade)            │
//!                          ▼                              ▼
//!                    upgraded socket  ◄──────────  framing: u16 / u32 length prefixes
//! ```
//!
//! A [`NetworkAddress`] names where a node listens and which Noise key (a [`PublicKey`]) and
//! handshake version it expects; [`PeerId`] and [`PublicKey`] are the two 32-byte identities
//! every layer above shares. A [`Transport`] turns an address into a socket: [`TcpTransport`]
//! for real networks, [`MemoryTransport`] (over [`memsocket`]) for tests; it looks only at
//! the address's base and leaves the Noise key and handshake version to the upgrades.
//! [`TransportExt::and_then`] layers an upgrade (the Noise handshake, the AptosNet handshake)
//! on any transport, and [`TransportExt::boxed`] erases the resulting stack's type into a
//! [`BoxedTransport`]. Above the socket, [`framing`] cuts the byte stream into
//! length-prefixed frames, checking every declared length against a maximum before it
//! allocates.
//!
//! [`hex32`] is the one parser of 64 hex digits (an optional `0x` first) into 32 bytes, for
//! the identities above and for private keys in config files.
//!
//! For the config structs of every layer, [`serde_duration_ms`] reads and writes a
//! `Duration` as whole milliseconds, [`metric_label_enum!`] declares the enums that are
//! Prometheus label values, and [`metric_label_value!`] makes label values of types declared
//! elsewhere that have `as_str`. For logs a remote peer can trigger at will, [`LogLimiter`] (and
//! its shared form [`SharedLogLimiter`]) lets N lines per interval through and counts the rest.
//!
//! Types to read first: [`NetworkAddress`], [`Transport`], [`FrameCodec`].

mod address;
mod byte_string;
mod error;
pub mod framing;
pub mod hex32;
mod log_limiter;
pub mod memsocket;
mod metric_label;
mod peer_id;
mod public_key;
pub mod serde_duration_ms;
pub mod transport;

pub use address::{DnsName, NetworkAddress, Protocol};
pub use error::Error;
pub use framing::{FrameCodec, IDLE_BUFFER_KEEP, LengthPrefix};
pub use log_limiter::{LogLimiter, SharedLogLimiter};
pub use memsocket::{MemoryListener, MemorySocket};
pub use peer_id::PeerId;
pub use public_key::PublicKey;
#[doc(hidden)]
pub use public_key::low_order_points;
pub use transport::{
    BoxedTransport, ConnectionOrigin, Endpoint, Keepalive, MemoryTransport, TcpConfig,
    TcpTransport, Transport, TransportExt,
};

/// What [`metric_label_enum!`] and [`metric_label_value!`] expand to use, so that its callers need no dependency of
/// their own. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use prometheus_client;
}
