//! [`ExtensionsConfig`]: settings of peerlane's own protocols (64–66), with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Shortest time between two chain status announcements to one peer: at most 4 per second
/// per peer (AElf announces every block; a burst of blocks costs one message per interval,
/// the latest status).
pub const CHAIN_STATUS_INTERVAL_MS: u64 = 250;

/// Peers in one peer exchange answer at most (asked and served).
pub const PEER_EXCHANGE_MAX_PEERS: usize = 16;

/// How often we ask one connected peer for peers.
pub const PEER_EXCHANGE_INTERVAL_MS: u64 = 60_000;

/// Shortest time between two answered peer exchange requests from one peer; requests in
/// between are refused. One caller thus learns at most 16 peers per 10 s.
pub const PEER_EXCHANGE_MIN_REQUEST_INTERVAL_MS: u64 = 10_000;

/// How recently we must have been connected to a peer to hand it out.
pub const PEER_EXCHANGE_RECENT_WINDOW_MS: u64 = 3_600_000;

/// Recently connected peers remembered for peer exchange at most; the oldest go first.
pub const PEER_EXCHANGE_MAX_RECENT: usize = 1024;

/// Deadline of one peer exchange request.
pub const PEER_EXCHANGE_TIMEOUT_MS: u64 = 5_000;

/// Refused connections being sent a disconnect notice at once; more are closed without one.
pub const MAX_PENDING_NOTICES: usize = 64;

/// How long writing one disconnect notice to a refused connection may take.
pub const NOTICE_WRITE_TIMEOUT_MS: u64 = 1_000;

/// Settings of the chain status (65), disconnect notices (64) and peer exchange (66). Every
/// field is optional in a config file (`[extensions]` of a network) and defaults to the
/// constant of the same name; durations are `_ms` fields in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtensionsConfig {
    /// Shortest time between two chain status announcements to one peer; the status sent is
    /// the latest. Default [`CHAIN_STATUS_INTERVAL_MS`].
    #[serde(
        rename = "chain_status_interval_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub chain_status_interval: Duration,
    /// Whether this node asks its peers for peers (it always answers). Default `true` on the
    /// public network; the builder ignores it on the validator network, which knows its peers
    /// from the chain.
    pub peer_exchange: bool,
    /// Peers per peer exchange answer, asked and served. Default [`PEER_EXCHANGE_MAX_PEERS`].
    pub peer_exchange_max_peers: usize,
    /// How often to ask one connected peer for peers. Default [`PEER_EXCHANGE_INTERVAL_MS`].
    #[serde(
        rename = "peer_exchange_interval_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub peer_exchange_interval: Duration,
    /// Shortest time between two answered requests from one peer. Default
    /// [`PEER_EXCHANGE_MIN_REQUEST_INTERVAL_MS`].
    #[serde(
        rename = "peer_exchange_min_request_interval_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub peer_exchange_min_request_interval: Duration,
    /// How recently we must have been connected to a peer to hand it out. Default
    /// [`PEER_EXCHANGE_RECENT_WINDOW_MS`].
    #[serde(
        rename = "peer_exchange_recent_window_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub peer_exchange_recent_window: Duration,
    /// Recently connected peers remembered for answers. Default
    /// [`PEER_EXCHANGE_MAX_RECENT`].
    pub peer_exchange_max_recent: usize,
    /// Deadline of one request we send. Default [`PEER_EXCHANGE_TIMEOUT_MS`].
    #[serde(
        rename = "peer_exchange_timeout_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub peer_exchange_timeout: Duration,
    /// Whether loopback, private and link-local addresses from peer exchange answers are
    /// kept: only for a private network (tests, a LAN). Default `false`.
    pub private_network: bool,
    /// Refused connections being sent a disconnect notice at once. Default
    /// [`MAX_PENDING_NOTICES`].
    pub max_pending_notices: usize,
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        Self {
            chain_status_interval: Duration::from_millis(CHAIN_STATUS_INTERVAL_MS),
            peer_exchange: true,
            peer_exchange_max_peers: PEER_EXCHANGE_MAX_PEERS,
            peer_exchange_interval: Duration::from_millis(PEER_EXCHANGE_INTERVAL_MS),
            peer_exchange_min_request_interval: Duration::from_millis(
                PEER_EXCHANGE_MIN_REQUEST_INTERVAL_MS,
            ),
            peer_exchange_recent_window: Duration::from_millis(PEER_EXCHANGE_RECENT_WINDOW_MS),
            peer_exchange_max_recent: PEER_EXCHANGE_MAX_RECENT,
            peer_exchange_timeout: Duration::from_millis(PEER_EXCHANGE_TIMEOUT_MS),
            private_network: false,
            max_pending_notices: MAX_PENDING_NOTICES,
        }
    }
}
