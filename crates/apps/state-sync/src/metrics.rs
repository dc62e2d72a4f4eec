//! [`Metrics`]: state sync's counters.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// State sync's counters. Cheap to clone; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    blocks_served: Counter,
    blocks_fetched: Counter,
    bytes_fetched: Counter,
    rpc_failures: Counter,
}

impl Metrics {
    /// Counters registered into `registry`, as `state_sync_blocks_served_total`,
    /// `state_sync_blocks_fetched_total`, `state_sync_bytes_fetched_total` and
    /// `state_sync_rpc_failures_total`.
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

    pub(crate) fn rpc_failed(&self) {
        self.rpc_failures.inc();
    }
}
