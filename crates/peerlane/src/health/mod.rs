//! [`HealthChecker`]: one actor per network that pings every connected peer every round and
//! disconnects a peer whose pings fail too many times in a row; it also answers the peers'
//! pings.
//!
//! ```text
//! ticker (interval_ms) ─► HealthState::handle_tick, poll_ping ─► NetworkClient::send_rpc(Ping)
//!                                                                   │ timeout_ms
//! HealthState::handle_response ◄── Pong(nonce) / timeout / error ◄──┘
//!     ├─► on success: PeersAndMetadata::record_rtt (PeerStats::last_rtt)
//!     └─► poll_disconnect ─► NetworkClient::disconnect ─► LostPeer
//! NetworkEvents<HealthCheckerMsg> ── Ping(n) ─► RpcReplier::reply(Pong(n))
//! PeersAndMetadata::subscribe ── NewPeer / LostPeer ─► handle_connected / handle_disconnected
//! ```
//!
//! The protocol is AptosNet's (`wire-format.md`, "Health checker" under "Protocol ids and payload encodings"): an RPC on `HealthCheckerRpc` (5) whose
//! request is [`HealthCheckerMsg::Ping`] with a random nonce and whose response is
//! [`HealthCheckerMsg::Pong`] with the same nonce, plain BCS. A ping fails when no pong comes
//! within `timeout_ms`, when the pong carries another nonce than that ping's, or when the RPC
//! fails otherwise.
//!
//! As in AptosNet, every round (every `interval_ms`) pings every connected peer, whether or
//! not its earlier pings have ended: with a timeout longer than the interval a peer has several
//! pings in flight, each with its own nonce. Their outcomes are counted in the order they come
//! in: a success resets the peer's count of failures, each failure adds one, and the
//! `failures_before_disconnect`th failure in a row disconnects it, once per connection. With
//! the defaults (5 s, 5 s, 3) a peer that is connected when the checker starts and never
//! answers is pinged at 5, 10 and 15 s, those pings time out at 10, 15 and 20 s, and it is
//! disconnected at 20 s: a peer that goes silent is noticed 15 to 20 s after its last answer.
//! With AptosNet's values (10 s, 20 s, 4) the same takes 60 s.
//!
//! - `message`: [`HealthCheckerMsg`], [`Ping`], [`Pong`], the bytes on the wire;
//! - `state`: [`HealthState`], the bookkeeping, without IO;
//! - `actor`: [`HealthChecker`], which drives it.
//!
//! Differences from AptosNet's health checker, all on purpose:
//! - A peer has at most `max_in_flight_per_peer` pings in flight, `⌈timeout_ms /
//!   interval_ms⌉ + 1` (3 with the defaults): a round that would exceed it skips the peer, with
//!   a debug log. Pings end by their timeout at the latest, so on schedule a peer has at most
//!   `⌈timeout_ms / interval_ms⌉` in flight once a round has pinged it; the extra one covers
//!   a round that starts at the instant an earlier ping times out, before its outcome is
//!   counted. So the cap bites only if rounds run far behind the pings' outcomes, and the
//!   pings in flight stay bounded by the cap times the number of peers. AptosNet has no cap.
//! - Only peers that offered `HealthCheckerRpc` in their handshake are pinged, so a peerlane
//!   node with health checking disabled is not disconnected for it. AptosNet nodes always
//!   offer it.
//! - A pong with the wrong nonce is a failure (AptosNet only logs it), and every failure counts,
//!   even one of a ping older than the last success (AptosNet ignores those).
//! - A ping that times out while other bytes came from the peer on the same connection
//!   (`PeerStats::bytes_received` grew) is `timeout_busy`: neither a failure nor a success. A
//!   pong stuck behind megabytes on a saturated link, or a peer too busy to answer in time,
//!   does not get the peer disconnected, which is what lets the timeout be short (5 s, where
//!   AptosNet waits 20 s). A live peerlane or AptosNet peer pings us too, so a connection is
//!   never silent for a whole timeout unless the peer or the path is gone.

mod actor;
mod message;
mod state;

pub(crate) use actor::{HealthChecker, Parts};
pub use message::{HealthCheckerMsg, Ping, Pong};

use crate::queue::{DEFAULT_CAPACITY_PER_KEY, QueueConfig, QueueStyle};

/// The health checker's inbound queue: LIFO, 1024 per peer, as AptosNet registers it. A peer
/// that pings faster than we answer gets its newest pings answered; the oldest are dropped and
/// time out on its side.
pub(crate) const QUEUE: QueueConfig = QueueConfig::new(QueueStyle::Lifo, DEFAULT_CAPACITY_PER_KEY);
