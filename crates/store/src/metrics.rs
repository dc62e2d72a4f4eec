//! [`Metrics`]: what the store wrote, how long it took, and what it dropped. Recorded by the
//! glue ([`Store`](crate::Store), [`PeerStore`](crate::PeerStore),
//! [`ComponentTable`](crate::ComponentTable)), never by the pure
//! [`PeerTable`](crate::PeerTable), which returns [`Changes`](crate::Changes) instead.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_store_writes_total` | counter | none |
//! | `peerlane_store_write_failures_total` | counter | none |
//! | `peerlane_store_write_seconds` | histogram | none |
//! | `peerlane_store_records_skipped_corrupt_total` | counter | `table` ([`Table`]) |
//! | `peerlane_store_peers` | gauge | none |
//! | `peerlane_store_evictions_total` | counter | `reason` ([`EvictionReason`]) |
//! | `peerlane_store_peers_refused_total` | counter | none |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

netcore::metric_label_enum! {
    /// A table of the store: the `table` label of
    /// `peerlane_store_records_skipped_corrupt_total`.
    pub enum Table {
        /// Peers, keyed by network and PeerId.
        Peers => "peers",
        /// Banned IP addresses and prefixes.
        IpBans => "ip_bans",
        /// Routing components: opaque records grouped by component id.
        Components => "components",
    }
}

netcore::metric_label_enum! {
    /// Why a record left the store without being asked to: the `reason` label of
    /// `peerlane_store_evictions_total`.
    pub enum EvictionReason {
        /// A peer not seen for `peer_store.expire_after_ms` (7 days).
        Expired => "expired",
        /// A peer made room for a better one at `peer_store.max_peers`.
        Capacity => "capacity",
        /// An IP ban made room for a new one at `peer_store.max_ip_bans`.
        IpBanCapacity => "ip_ban_capacity",
        /// The oldest routing component made room at `ComponentTable`'s bound.
        ComponentLimit => "component_limit",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: Table,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: EvictionReason,
}

/// Counters, gauges and the latency histogram of the store. Cloning gives another handle on
/// the same metrics.
///
/// [`Metrics::default`] is unregistered (for tests and for callers without a registry);
/// [`Metrics::register`] creates the metrics and registers them.
#[derive(Clone, Debug)]
pub struct Metrics {
    writes: Counter,
    write_failures: Counter,
    write_seconds: Histogram,
    skipped_corrupt: Family<TableLabels, Counter>,
    peers: Gauge,
    evictions: Family<ReasonLabels, Counter>,
    peers_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            writes: Counter::default(),
            write_failures: Counter::default(),
            // 50 µs .. ~1.6 s: an in-memory commit is tens of µs, an fsync'd one milliseconds.
            write_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            skipped_corrupt: Family::default(),
            peers: Gauge::default(),
            evictions: Family::default(),
            peers_refused: Counter::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_store_writes",
            "Write transactions committed to the store",
            metrics.writes.clone(),
        );
        registry.register(
            "peerlane_store_write_failures",
            "Write transactions that failed (nothing of them was applied)",
            metrics.write_failures.clone(),
        );
        registry.register(
            "peerlane_store_write_seconds",
            "Time from the start of a write transaction to the return of its commit",
            metrics.write_seconds.clone(),
        );
        registry.register(
            "peerlane_store_records_skipped_corrupt",
            "Records that did not decode, skipped and dropped, by table",
            metrics.skipped_corrupt.clone(),
        );
        registry.register(
            "peerlane_store_peers",
            "Peers in the peer store",
            metrics.peers.clone(),
        );
        registry.register(
            "peerlane_store_evictions",
            "Records dropped by a bound or expiry, by reason",
            metrics.evictions.clone(),
        );
        registry.register(
            "peerlane_store_peers_refused",
            "New peers not stored because the store was full of peers that rank higher",
            metrics.peers_refused.clone(),
        );
        metrics
    }

    pub(crate) fn record_write(&self, elapsed: Duration, ok: bool) {
        if ok {
            self.writes.inc();
            self.write_seconds.observe(elapsed.as_secs_f64());
        } else {
            self.write_failures.inc();
        }
    }

    pub(crate) fn record_corrupt(&self, table: Table) {
        self.skipped_corrupt
            .get_or_create(&TableLabels { table })
            .inc();
    }

    pub(crate) fn record_eviction(&self, reason: EvictionReason) {
        self.evictions.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn record_refused(&self, count: u64) {
        self.peers_refused.inc_by(count);
    }

    pub(crate) fn set_peers(&self, count: usize) {
        self.peers.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Write transactions committed so far.
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// Write transactions that failed so far.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.get()
    }

    /// Records of `table` skipped as corrupt so far.
    pub fn records_skipped_corrupt(&self, table: Table) -> u64 {
        self.skipped_corrupt
            .get(&TableLabels { table })
            .map_or(0, |counter| counter.get())
    }

    /// Peers in the peer store, as last set.
    pub fn peers(&self) -> i64 {
        self.peers.get()
    }

    /// Records evicted for `reason` so far.
    pub fn evictions(&self, reason: EvictionReason) -> u64 {
        self.evictions
            .get(&ReasonLabels { reason })
            .map_or(0, |counter| counter.get())
    }

    /// New peers refused at the bound so far.
    pub fn peers_refused(&self) -> u64 {
        self.peers_refused.get()
    }
}
