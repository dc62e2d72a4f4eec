//! [`RoutingConfig`]: every limit and timing of the routing layer, with its default.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Messages on 67 and 68 waiting for the routing actor; more are dropped (and counted).
pub const MAX_PENDING_MESSAGES: usize = 1_024;
/// How long a neighbour that sends a bad signature or misbehaves stays banned.
pub const BAN_DURATION_MS: u64 = 60 * 60 * 1000;
/// Edges one ROUTING_SYNC message may carry (NEAR's limit).
pub const MAX_EDGES_PER_MESSAGE: usize = 50_000;
/// Edges (active or removed) the table holds in total.
pub const MAX_EDGES: usize = 1_000_000;
/// Edges (active or removed) the table holds with a given peer at one end.
pub const MAX_EDGES_PER_PEER: usize = 1_024;
/// Edges one sending peer may make us verify at once (its first reconciliation).
pub const VERIFY_BURST_PER_PEER: u32 = 100_000;
/// Edges per second one sending peer may make us verify after its burst.
pub const VERIFY_RATE_PER_PEER: u32 = 1_000;
/// Routed messages one neighbour may make us verify at once.
pub const ROUTED_VERIFY_BURST_PER_PEER: u32 = 2_000;
/// Routed messages per second one neighbour may make us verify after its burst.
pub const ROUTED_VERIFY_RATE_PER_PEER: u32 = 1_000;
/// Distinct peers the table holds edges of.
pub const MAX_PEERS: usize = 100_000;
/// How far ahead of our clock a nonce (milliseconds since the epoch) may be.
pub const MAX_NONCE_FUTURE_MS: u64 = 5 * 60 * 1000;
/// How long a removed edge is kept as a tombstone, counted from its removal nonce.
pub const TOMBSTONE_KEEP_MS: u64 = 60 * 60 * 1000;
/// How long an edge must have been unreachable from the local node before it is pruned.
pub const PRUNE_UNREACHABLE_AFTER_MS: u64 = 60 * 60 * 1000;
/// Quiet time after the last graph change before next hops are recomputed.
pub const RECOMPUTE_QUIET_MS: u64 = 100;
/// Longest a graph change waits for a recompute while changes keep coming.
pub const RECOMPUTE_MAX_DELAY_MS: u64 = 1_000;
/// Edges in one incremental broadcast.
pub const BROADCAST_MAX_EDGES: usize = 1_000;
/// Longest a new edge waits before its broadcast batch goes out.
pub const BROADCAST_MAX_DELAY_MS: u64 = 50;
/// Edges waiting for broadcast; the oldest is dropped (and counted) beyond this.
pub const BROADCAST_MAX_PENDING: usize = 50_000;
/// Hops a routed message may take (NEAR's default).
pub const ROUTED_TTL: u8 = 100;
/// Entries of the route-back table (NEAR's size).
pub const ROUTE_BACK_CAPACITY: usize = 100_000;
/// Route-back entries one previous hop may hold.
pub const ROUTE_BACK_PER_HOP: usize = 10_000;
/// How long a route-back entry lives.
pub const ROUTE_BACK_EXPIRY_MS: u64 = 2 * 60 * 1000;
/// Peers of pruned components the restore index remembers.
pub const MAX_PRUNED_PEERS: usize = 1_000_000;

/// The routing layer's settings. In config files: the field names below, durations in
/// milliseconds with a `_ms` suffix; every field optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Whether the network runs routing (offers protocols 67 and 68 and routes). Costs
    /// nothing with peers that do not offer them: they never see routing traffic.
    pub enabled: bool,
    /// Messages on 67 and 68 waiting for the routing actor; beyond it they are dropped.
    pub max_pending_messages: usize,
    /// How long a neighbour that sent a bad signature or broke a rule stays banned.
    #[serde(rename = "ban_duration_ms", with = "netcore::serde_duration_ms")]
    pub ban_duration: Duration,
    /// Edges one ROUTING_SYNC message may carry; a message with more is dropped whole
    /// before any signature work.
    pub max_edges_per_message: usize,
    /// Edges (active or removed) the table holds in total.
    pub max_edges: usize,
    /// Edges the table holds with a given peer at one end.
    pub max_edges_per_peer: usize,
    /// Distinct peers the table holds edges of.
    pub max_peers: usize,
    /// Edges one sending peer may make this node verify at once.
    pub verify_burst_per_peer: u32,
    /// Edges per second one sending peer may make this node verify after its burst.
    pub verify_rate_per_peer: u32,
    /// Routed messages one neighbour may make this node verify at once; beyond its bucket
    /// they are dropped before the signature check (`DropReason::OverBudget`).
    pub routed_verify_burst_per_peer: u32,
    /// Routed messages per second one neighbour may make this node verify after its burst.
    pub routed_verify_rate_per_peer: u32,
    /// How far ahead of the local clock a nonce may be.
    #[serde(rename = "max_nonce_future_ms", with = "netcore::serde_duration_ms")]
    pub max_nonce_future: Duration,
    /// How long a removed edge is kept, counted from its removal nonce.
    #[serde(rename = "tombstone_keep_ms", with = "netcore::serde_duration_ms")]
    pub tombstone_keep: Duration,
    /// How long an edge must be unreachable before it is pruned to disk.
    #[serde(
        rename = "prune_unreachable_after_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub prune_unreachable_after: Duration,
    /// Quiet time after the last change before next hops are recomputed.
    #[serde(rename = "recompute_quiet_ms", with = "netcore::serde_duration_ms")]
    pub recompute_quiet: Duration,
    /// Longest a change waits for a recompute.
    #[serde(rename = "recompute_max_delay_ms", with = "netcore::serde_duration_ms")]
    pub recompute_max_delay: Duration,
    /// Edges in one incremental broadcast.
    pub broadcast_max_edges: usize,
    /// Longest a new edge waits before its broadcast.
    #[serde(rename = "broadcast_max_delay_ms", with = "netcore::serde_duration_ms")]
    pub broadcast_max_delay: Duration,
    /// Edges waiting for broadcast before the oldest is dropped.
    pub broadcast_max_pending: usize,
    /// TTL a routed message starts with.
    pub routed_ttl: u8,
    /// Entries of the route-back table.
    pub route_back_capacity: usize,
    /// Route-back entries one previous hop may hold; its further requests are dropped.
    pub route_back_per_hop: usize,
    /// How long a route-back entry lives.
    #[serde(rename = "route_back_expiry_ms", with = "netcore::serde_duration_ms")]
    pub route_back_expiry: Duration,
    /// Peers of pruned components the restore index remembers.
    pub max_pruned_peers: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pending_messages: MAX_PENDING_MESSAGES,
            ban_duration: Duration::from_millis(BAN_DURATION_MS),
            max_edges_per_message: MAX_EDGES_PER_MESSAGE,
            max_edges: MAX_EDGES,
            max_edges_per_peer: MAX_EDGES_PER_PEER,
            max_peers: MAX_PEERS,
            verify_burst_per_peer: VERIFY_BURST_PER_PEER,
            verify_rate_per_peer: VERIFY_RATE_PER_PEER,
            routed_verify_burst_per_peer: ROUTED_VERIFY_BURST_PER_PEER,
            routed_verify_rate_per_peer: ROUTED_VERIFY_RATE_PER_PEER,
            max_nonce_future: Duration::from_millis(MAX_NONCE_FUTURE_MS),
            tombstone_keep: Duration::from_millis(TOMBSTONE_KEEP_MS),
            prune_unreachable_after: Duration::from_millis(PRUNE_UNREACHABLE_AFTER_MS),
            recompute_quiet: Duration::from_millis(RECOMPUTE_QUIET_MS),
            recompute_max_delay: Duration::from_millis(RECOMPUTE_MAX_DELAY_MS),
            broadcast_max_edges: BROADCAST_MAX_EDGES,
            broadcast_max_delay: Duration::from_millis(BROADCAST_MAX_DELAY_MS),
            broadcast_max_pending: BROADCAST_MAX_PENDING,
            routed_ttl: ROUTED_TTL,
            route_back_capacity: ROUTE_BACK_CAPACITY,
            route_back_per_hop: ROUTE_BACK_PER_HOP,
            route_back_expiry: Duration::from_millis(ROUTE_BACK_EXPIRY_MS),
            max_pruned_peers: MAX_PRUNED_PEERS,
        }
    }
}

impl RoutingConfig {
    /// Refuses settings that cannot work together: zero limits, and broadcasts larger than
    /// what peers accept in one message (they would drop every one of them).
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            (
                self.max_pending_messages,
                "max_pending_messages must be at least 1",
            ),
            (
                self.max_edges_per_message,
                "max_edges_per_message must be at least 1",
            ),
            (self.max_edges, "max_edges must be at least 1"),
            (
                self.max_edges_per_peer,
                "max_edges_per_peer must be at least 1",
            ),
            (
                self.broadcast_max_edges,
                "broadcast_max_edges must be at least 1",
            ),
            (
                self.broadcast_max_pending,
                "broadcast_max_pending must be at least 1",
            ),
            (
                self.route_back_capacity,
                "route_back_capacity must be at least 1",
            ),
            (
                self.route_back_per_hop,
                "route_back_per_hop must be at least 1",
            ),
        ];
        for (value, message) in positive {
            if value == 0 {
                return Err(Error::InvalidConfig(message));
            }
        }
        if self.verify_burst_per_peer == 0 {
            return Err(Error::InvalidConfig(
                "verify_burst_per_peer must be at least 1",
            ));
        }
        if self.routed_verify_burst_per_peer == 0 {
            return Err(Error::InvalidConfig(
                "routed_verify_burst_per_peer must be at least 1",
            ));
        }
        if self.max_peers < 2 {
            return Err(Error::InvalidConfig("max_peers must be at least 2"));
        }
        if self.broadcast_max_edges > self.max_edges_per_message {
            return Err(Error::InvalidConfig(
                "broadcast_max_edges must not exceed max_edges_per_message",
            ));
        }
        if self.routed_ttl == 0 {
            return Err(Error::InvalidConfig("routed_ttl must be at least 1"));
        }
        Ok(())
    }

    /// `max_nonce_future` in milliseconds, as nonces count.
    pub fn max_nonce_future_ms(&self) -> u64 {
        duration_ms(self.max_nonce_future)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty object is the defaults; names carry `_ms`; unknown fields are refused.
    #[test]
    fn config_reads_defaults_and_refuses_unknown_fields() {
        let config: RoutingConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, RoutingConfig::default());
        let config: RoutingConfig =
            serde_json::from_str(r#"{"max_edges": 10, "route_back_expiry_ms": 5}"#).unwrap();
        assert_eq!(config.max_edges, 10);
        assert_eq!(config.route_back_expiry, Duration::from_millis(5));
        assert!(serde_json::from_str::<RoutingConfig>(r#"{"max_edge": 1}"#).is_err());
        let text = serde_json::to_string(&RoutingConfig::default()).unwrap();
        assert!(text.contains("\"max_nonce_future_ms\":300000"));
    }

    /// The defaults are valid; contradictions and zero limits are refused.
    #[test]
    fn validate_refuses_contradictions() {
        RoutingConfig::default().validate().unwrap();
        let too_big_broadcast = RoutingConfig {
            broadcast_max_edges: 60_000,
            ..RoutingConfig::default()
        };
        assert!(too_big_broadcast.validate().is_err());
        let zero = RoutingConfig {
            max_edges: 0,
            ..RoutingConfig::default()
        };
        assert!(zero.validate().is_err());
        let no_ttl = RoutingConfig {
            routed_ttl: 0,
            ..RoutingConfig::default()
        };
        assert!(no_ttl.validate().is_err());
    }
}
