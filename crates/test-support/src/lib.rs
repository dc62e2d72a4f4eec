//! Helpers shared by the workspace's tests, so that each crate's tests build nodes, keys and
//! waits the same way.
//!
//! # What is where
//!
//! - [`keys`]: deterministic x25519 keys and PeerIds from a small seed, so every run of a test
//!   uses the same identities.
//! - [`wait`]: [`within`] (a future, or a panic naming what did not happen) and
//!   [`eventually`] (poll a condition until it holds), both bounded by the tokio clock: on a
//!   paused clock the bounds cost no real time, on the real clock the event, not a duration,
//!   ends the wait.
//! - [`socket`]: [`CountingSocket`], an `AsyncRead + AsyncWrite` wrapper counting calls and
//!   bytes.
//! - `facade` (feature `facade`): nodes built through `peerlane::NetworkBuilder` over the
//!   memory transport or TCP + Noise, a connected pair of them, and "next event within a
//!   deadline" helpers for connection notifications and application events.
//!
//! # Layering
//!
//! The default features need only netcore and noise, so that the crates below peerlane can
//! use this crate in their tests. The `facade` feature depends on peerlane; only crates at or
//! above peerlane turn it on. A dev-dependency cycle (noise's tests use this crate, which
//! uses noise) is harmless for integration tests: they link the same noise library this crate
//! links, so there is one copy of every type.

pub mod keys;
pub mod socket;
pub mod wait;

#[cfg(feature = "facade")]
pub mod facade;

pub use keys::{key_from_byte, key_from_seed, peer_id_from_seed, public_key_from_seed};
pub use socket::CountingSocket;
pub use wait::{WAIT, eventually, eventually_within, within, within_for};

#[cfg(feature = "facade")]
pub use facade::{
    DIRECT, Msg, Net, Node, RPC, config, next_event, next_event_within, next_notification, node,
    node_with, transport, two_nodes,
};
