//! [`RoutingMetrics`]: counters and gauges of routing (protocols 67 and 68). Every labelled
//! series exists at 0 from the start.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_routing_edges_received_total` | counter | none: edges in `Edges` messages |
//! | `peerlane_routing_edges_verified_total` | counter | none: edges whose signatures verified |
//! | `peerlane_routing_edges_rejected_total` | counter | `reason`: `bad_signature`, `unchecked` (after a bad one), `malformed`, `future_nonce`, `message_too_large`, `stale`, `duplicate`, `over_max_edges`, `over_max_edges_per_peer`, `over_max_peers`, `over_verify_budget` |
//! | `peerlane_routing_recompute_seconds` | histogram | none: next-hop recompute duration |
//! | `peerlane_routing_routed_total` | counter | `event`: `sent` (own), `forwarded`, `delivered` |
//! | `peerlane_routing_routed_dropped_total` | counter | `reason`: `ttl`, `no_route`, `budget`, `bad_signature`, `unknown_route_back`, `route_back_full`, `unknown_protocol`, `send_failed` |
//! | `peerlane_routing_inbound_dropped_total` | counter | `protocol` (`RoutingSync`, `Routed`): the routing actor's intake queue was full |
//! | `peerlane_routing_malformed_total` | counter | `protocol`: undecodable, or from a peer that is not a routing neighbour |
//! | `peerlane_routing_bans_total` | counter | `reason`: `bad_edge_signature`, `misbehaviour`, `bad_proposal`, `bad_routed_signature` |
//! | `peerlane_routing_broadcast_edges_total` | counter | none: edges sent in incremental broadcasts (once per batch) |
//! | `peerlane_routing_broadcast_dropped_total` | counter | none: pending broadcast edges dropped at `broadcast_max_pending` |
//! | `peerlane_routing_pruned_edges_total` | counter | `event`: `pruned`, `restored`, `tombstone_dropped` |
//! | `peerlane_routing_edges` | gauge | none: edges held, tombstones included |
//! | `peerlane_routing_reachable_peers` | gauge | none: peers reachable at the last recompute |
//! | `peerlane_routing_neighbours` | gauge | none: connected peers that speak routing |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use routing::DropReason;

/// Edge rejection reasons (the `reason` label of `peerlane_routing_edges_rejected_total`).
pub(crate) const EDGE_REJECTIONS: [&str; 11] = [
    "bad_signature",
    "unchecked",
    "malformed",
    "future_nonce",
    "message_too_large",
    "stale",
    "duplicate",
    "over_max_edges",
    "over_max_edges_per_peer",
    "over_max_peers",
    "over_verify_budget",
];
/// Routed drop reasons beyond [`DropReason`]'s.
const FACADE_DROPS: [&str; 2] = ["unknown_protocol", "send_failed"];
const BAN_REASONS: [&str; 4] = [
    "bad_edge_signature",
    "misbehaviour",
    "bad_proposal",
    "bad_routed_signature",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

/// Routing's counters; cloning gives another handle on the same ones. [`Default`] is
/// unregistered.
#[derive(Clone, Debug)]
pub struct RoutingMetrics {
    edges_received: Counter,
    edges_verified: Counter,
    edges_rejected: Family<ReasonLabels, Counter>,
    recompute_seconds: Histogram,
    routed: Family<EventLabels, Counter>,
    routed_dropped: Family<ReasonLabels, Counter>,
    inbound_dropped: Family<ProtocolLabels, Counter>,
    malformed: Family<ProtocolLabels, Counter>,
    bans: Family<ReasonLabels, Counter>,
    broadcast_edges: Counter,
    broadcast_dropped: Counter,
    pruned_edges: Family<EventLabels, Counter>,
    edges: Gauge,
    reachable: Gauge,
    neighbours: Gauge,
}

impl Default for RoutingMetrics {
    fn default() -> Self {
        let metrics = Self {
            edges_received: Counter::default(),
            edges_verified: Counter::default(),
            edges_rejected: Family::default(),
            // 100 µs to about 6.5 s.
            recompute_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_1, 3.0, 11),
            ),
            routed: Family::default(),
            routed_dropped: Family::default(),
            inbound_dropped: Family::default(),
            malformed: Family::default(),
            bans: Family::default(),
            broadcast_edges: Counter::default(),
            broadcast_dropped: Counter::default(),
            pruned_edges: Family::default(),
            edges: Gauge::default(),
            reachable: Gauge::default(),
            neighbours: Gauge::default(),
        };
        // Every series at 0 from the start, so that rates and alerts see them.
        for reason in EDGE_REJECTIONS {
            let _ = metrics
                .edges_rejected
                .get_or_create(&ReasonLabels { reason });
        }
        for event in ["sent", "forwarded", "delivered"] {
            let _ = metrics.routed.get_or_create(&EventLabels { event });
        }
        for reason in DropReason::ALL
            .iter()
            .map(|reason| reason.as_str())
            .chain(FACADE_DROPS)
        {
            let _ = metrics
                .routed_dropped
                .get_or_create(&ReasonLabels { reason });
        }
        for protocol in ["RoutingSync", "Routed"] {
            let _ = metrics
                .inbound_dropped
                .get_or_create(&ProtocolLabels { protocol });
            let _ = metrics
                .malformed
                .get_or_create(&ProtocolLabels { protocol });
        }
        for reason in BAN_REASONS {
            let _ = metrics.bans.get_or_create(&ReasonLabels { reason });
        }
        for event in ["pruned", "restored", "tombstone_dropped"] {
            let _ = metrics.pruned_edges.get_or_create(&EventLabels { event });
        }
        metrics
    }
}

impl RoutingMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_routing_edges_received",
            "Edges received in ROUTING_SYNC Edges messages",
            metrics.edges_received.clone(),
        );
        registry.register(
            "peerlane_routing_edges_verified",
            "Received edges whose signatures verified",
            metrics.edges_verified.clone(),
        );
        registry.register(
            "peerlane_routing_edges_rejected",
            "Received edges refused or dropped, by reason",
            metrics.edges_rejected.clone(),
        );
        registry.register(
            "peerlane_routing_recompute_seconds",
            "Time to recompute the next hops",
            metrics.recompute_seconds.clone(),
        );
        registry.register(
            "peerlane_routing_routed",
            "Routed messages sent, forwarded and delivered",
            metrics.routed.clone(),
        );
        registry.register(
            "peerlane_routing_routed_dropped",
            "Routed messages dropped, by reason",
            metrics.routed_dropped.clone(),
        );
        registry.register(
            "peerlane_routing_inbound_dropped",
            "Messages on 67 and 68 dropped because the routing actor's queue was full",
            metrics.inbound_dropped.clone(),
        );
        registry.register(
            "peerlane_routing_malformed",
            "Messages on 67 and 68 that did not decode or came from a peer that is not a routing neighbour",
            metrics.malformed.clone(),
        );
        registry.register(
            "peerlane_routing_bans",
            "Neighbours banned by routing, by reason",
            metrics.bans.clone(),
        );
        registry.register(
            "peerlane_routing_broadcast_edges",
            "Edges sent in incremental broadcasts",
            metrics.broadcast_edges.clone(),
        );
        registry.register(
            "peerlane_routing_broadcast_dropped",
            "Pending broadcast edges dropped at broadcast_max_pending",
            metrics.broadcast_dropped.clone(),
        );
        registry.register(
            "peerlane_routing_pruned_edges",
            "Edges pruned to storage, restored from it, and tombstones dropped",
            metrics.pruned_edges.clone(),
        );
        registry.register(
            "peerlane_routing_edges",
            "Edges held, tombstones included",
            metrics.edges.clone(),
        );
        registry.register(
            "peerlane_routing_reachable_peers",
            "Peers reachable at the last next-hop recompute",
            metrics.reachable.clone(),
        );
        registry.register(
            "peerlane_routing_neighbours",
            "Connected peers that speak routing",
            metrics.neighbours.clone(),
        );
        metrics
    }

    /// `peerlane_routing_edges_received_total`.
    pub fn edges_received(&self) -> u64 {
        self.edges_received.get()
    }

    /// `peerlane_routing_edges_verified_total`.
    pub fn edges_verified(&self) -> u64 {
        self.edges_verified.get()
    }

    /// `peerlane_routing_edges_rejected_total{reason}`.
    pub fn edges_rejected(&self, reason: &'static str) -> u64 {
        self.edges_rejected
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// `peerlane_routing_routed_total{event}` (`sent`, `forwarded`, `delivered`).
    pub fn routed(&self, event: &'static str) -> u64 {
        self.routed.get_or_create(&EventLabels { event }).get()
    }

    /// `peerlane_routing_routed_dropped_total{reason}`.
    pub fn routed_dropped(&self, reason: &'static str) -> u64 {
        self.routed_dropped
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// `peerlane_routing_inbound_dropped_total{protocol}`.
    pub fn inbound_dropped(&self, protocol: &'static str) -> u64 {
        self.inbound_dropped
            .get_or_create(&ProtocolLabels { protocol })
            .get()
    }

    /// `peerlane_routing_malformed_total{protocol}`.
    pub fn malformed(&self, protocol: &'static str) -> u64 {
        self.malformed
            .get_or_create(&ProtocolLabels { protocol })
            .get()
    }

    /// `peerlane_routing_bans_total{reason}`.
    pub fn bans(&self, reason: &'static str) -> u64 {
        self.bans.get_or_create(&ReasonLabels { reason }).get()
    }

    /// `peerlane_routing_broadcast_edges_total`.
    pub fn broadcast_edges(&self) -> u64 {
        self.broadcast_edges.get()
    }

    /// `peerlane_routing_pruned_edges_total{event}` (`pruned`, `restored`,
    /// `tombstone_dropped`).
    pub fn pruned_edges(&self, event: &'static str) -> u64 {
        self.pruned_edges
            .get_or_create(&EventLabels { event })
            .get()
    }

    /// `peerlane_routing_edges`.
    pub fn edges(&self) -> i64 {
        self.edges.get()
    }

    /// `peerlane_routing_reachable_peers`.
    pub fn reachable_peers(&self) -> i64 {
        self.reachable.get()
    }

    pub(crate) fn record_edges_received(&self, n: usize) {
        self.edges_received.inc_by(n as u64);
    }

    pub(crate) fn record_edges_verified(&self, n: usize) {
        self.edges_verified.inc_by(n as u64);
    }

    pub(crate) fn record_edges_rejected(&self, reason: &'static str, n: usize) {
        if n > 0 {
            self.edges_rejected
                .get_or_create(&ReasonLabels { reason })
                .inc_by(n as u64);
        }
    }

    pub(crate) fn record_recompute(&self, seconds: f64, reachable: usize, edges: usize) {
        self.recompute_seconds.observe(seconds);
        self.reachable.set(reachable as i64);
        self.edges.set(edges as i64);
    }

    pub(crate) fn set_edges(&self, edges: usize) {
        self.edges.set(edges as i64);
    }

    pub(crate) fn set_neighbours(&self, neighbours: usize) {
        self.neighbours.set(neighbours as i64);
    }

    pub(crate) fn record_routed(&self, event: &'static str) {
        self.routed.get_or_create(&EventLabels { event }).inc();
    }

    pub(crate) fn record_routed_dropped(&self, reason: &'static str) {
        self.routed_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn record_inbound_dropped(&self, protocol: &'static str) {
        self.inbound_dropped
            .get_or_create(&ProtocolLabels { protocol })
            .inc();
    }

    pub(crate) fn record_malformed(&self, protocol: &'static str) {
        self.malformed
            .get_or_create(&ProtocolLabels { protocol })
            .inc();
    }

    pub(crate) fn record_ban(&self, reason: &'static str) {
        self.bans.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn record_broadcast(&self, edges: usize) {
        self.broadcast_edges.inc_by(edges as u64);
    }

    pub(crate) fn record_broadcast_dropped(&self) {
        self.broadcast_dropped.inc();
    }

    pub(crate) fn record_pruned(&self, event: &'static str, edges: usize) {
        self.pruned_edges
            .get_or_create(&EventLabels { event })
            .inc_by(edges as u64);
    }
}
