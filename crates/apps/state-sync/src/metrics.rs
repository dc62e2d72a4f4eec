//! [`Metrics`]: state sync's counters.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::Retained;

/// State sync's counters. Cheap to clone; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    blocks_served: Counter,
    blocks_fetched: Counter,
    bytes_fetched: Counter,
    rpc_failures: Counter,
    snapshot_starts: Counter,
    retained_blocks: Gauge,
    retained_bytes: Gauge,
    lowest_height: Gauge,
    pruned_blocks: Counter,
}

impl Metrics {
    /// Counters registered into `registry`, as `state_sync_blocks_served_total`,
    /// `state_sync_blocks_fetched_total`, `state_sync_bytes_fetched_total`,
    /// `state_sync_rpc_failures_total`, `state_sync_snapshot_starts_total`,
    /// `state_sync_pruned_blocks_total` and the gauges `state_sync_retained_blocks`,
    /// `state_sync_retained_bytes` and `state_sync_lowest_height` (updated every tick).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("state_sync");
        registry.register(
            "blocks_served",
            "Blocks sent in GetBlocks responses",
            metrics.blocks_served.clone(),
        );
        registry.register(
            "blocks_fetched",
            "Blocks fetched from peers and appended",
            metrics.blocks_fetched.clone(),
        );
        registry.register(
            "bytes_fetched",
            "Payload bytes of the blocks fetched from peers",
            metrics.bytes_fetched.clone(),
        );
        registry.register(
            "rpc_failures",
            "GetBlocks requests that failed: error, time-out, or an unusable response",
            metrics.rpc_failures.clone(),
        );
        registry.register(
            "snapshot_starts",
            "Times the store started from a peer's lowest block because no peer held the next height",
            metrics.snapshot_starts.clone(),
        );
        registry.register(
            "pruned_blocks",
            "Blocks pruned from the in-memory store past its retention",
            metrics.pruned_blocks.clone(),
        );
        registry.register(
            "retained_blocks",
            "Blocks held in the in-memory store",
            metrics.retained_blocks.clone(),
        );
        registry.register(
            "retained_bytes",
            "Bytes of blocks held in the in-memory store",
            metrics.retained_bytes.clone(),
        );
        registry.register(
            "lowest_height",
            "The lowest height the store holds and serves (0 when empty)",
            metrics.lowest_height.clone(),
        );
        metrics
    }

    /// Blocks sent in responses.
    pub fn blocks_served(&self) -> u64 {
        self.blocks_served.get()
    }

    /// Blocks fetched and appended.
    pub fn blocks_fetched(&self) -> u64 {
        self.blocks_fetched.get()
    }

    /// Payload bytes fetched and appended.
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched.get()
    }

    /// Failed block requests.
    pub fn rpc_failures(&self) -> u64 {
        self.rpc_failures.get()
    }

    pub(crate) fn served(&self, blocks: usize) {
        self.blocks_served.inc_by(blocks as u64);
    }

    pub(crate) fn fetched(&self, blocks: u64, bytes: u64) {
        self.blocks_fetched.inc_by(blocks);
        self.bytes_fetched.inc_by(bytes);
    }

    /// Times the store started from a peer's lowest block.
    pub fn snapshot_starts(&self) -> u64 {
        self.snapshot_starts.get()
    }

    pub(crate) fn rpc_failed(&self) {
        self.rpc_failures.inc();
    }

    pub(crate) fn started_from_snapshot(&self) {
        self.snapshot_starts.inc();
    }

    pub(crate) fn retained(&self, retained: Retained) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.retained_blocks.set(gauge(retained.blocks as u64));
        self.retained_bytes.set(gauge(retained.bytes as u64));
        self.lowest_height.set(gauge(retained.lowest_height));
        // The counter follows the store's own count, which only grows.
        let pruned = self.pruned_blocks.get();
        self.pruned_blocks
            .inc_by(retained.pruned.saturating_sub(pruned));
    }
}
