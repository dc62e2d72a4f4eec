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
    archived_blocks: Gauge,
    archived_bytes: Gauge,
    archive_writes: Counter,
    archive_blocks_written: Counter,
    archive_write_errors: Counter,
    archive_dropped_blocks: Counter,
    archive_reads: Counter,
    archive_blocks_read: Counter,
    archive_read_errors: Counter,
    archive_reads_refused: Counter,
}

impl Metrics {
    /// Counters registered into `registry`, as `state_sync_blocks_served_total`,
    /// `state_sync_blocks_fetched_total`, `state_sync_bytes_fetched_total`,
    /// `state_sync_rpc_failures_total`, `state_sync_snapshot_starts_total`,
    /// `state_sync_pruned_blocks_total` and the gauges `state_sync_retained_blocks`,
    /// `state_sync_retained_bytes` and `state_sync_lowest_height` (updated every tick); and
    /// for the archive the gauges `state_sync_archived_blocks`, `state_sync_archived_bytes`
    /// and the counters `state_sync_archive_writes_total`,
    /// `state_sync_archive_blocks_written_total`, `state_sync_archive_write_errors_total`,
    /// `state_sync_archive_dropped_blocks_total`, `state_sync_archive_reads_total`,
    /// `state_sync_archive_blocks_read_total`, `state_sync_archive_read_errors_total` and
    /// `state_sync_archive_reads_refused_total`.
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
        for (name, help, gauge) in [
            (
                "archived_blocks",
                "Blocks in the on-disk archive",
                &metrics.archived_blocks,
            ),
            (
                "archived_bytes",
                "Bytes of blocks in the on-disk archive",
                &metrics.archived_bytes,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        for (name, help, counter) in [
            (
                "archive_writes",
                "Archive write transactions (one per batch of blocks)",
                &metrics.archive_writes,
            ),
            (
                "archive_blocks_written",
                "Blocks written to the archive",
                &metrics.archive_blocks_written,
            ),
            (
                "archive_write_errors",
                "Archive writes that failed (retried at the next interval)",
                &metrics.archive_write_errors,
            ),
            (
                "archive_dropped_blocks",
                "Blocks pruned from memory before the archive took them (it fell a whole in-memory tier behind)",
                &metrics.archive_dropped_blocks,
            ),
            (
                "archive_reads",
                "GetBlocks requests served from the archive",
                &metrics.archive_reads,
            ),
            (
                "archive_blocks_read",
                "Blocks read from the archive for GetBlocks responses",
                &metrics.archive_blocks_read,
            ),
            (
                "archive_read_errors",
                "Archive reads that failed (answered with no blocks)",
                &metrics.archive_read_errors,
            ),
            (
                "archive_reads_refused",
                "GetBlocks requests for archived heights answered with no blocks: max_concurrent_archive_reads were under way",
                &metrics.archive_reads_refused,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
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

    /// Requests served from the archive.
    pub fn archive_reads(&self) -> u64 {
        self.archive_reads.get()
    }

    /// Blocks read from the archive for responses.
    pub fn archive_blocks_read(&self) -> u64 {
        self.archive_blocks_read.get()
    }

    /// Requests for archived heights refused at the concurrency bound.
    pub fn archive_reads_refused(&self) -> u64 {
        self.archive_reads_refused.get()
    }

    pub(crate) fn archive_read(&self, result: Result<usize, ()>) {
        match result {
            Ok(blocks) => {
                self.archive_reads.inc();
                self.archive_blocks_read.inc_by(blocks as u64);
            }
            Err(()) => {
                self.archive_read_errors.inc();
            }
        }
    }

    pub(crate) fn archive_read_refused(&self) {
        self.archive_reads_refused.inc();
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
        self.archived_blocks.set(gauge(retained.archived_blocks));
        self.archived_bytes.set(gauge(retained.archived_bytes));
        // The counters follow the store's own counts, which only grow.
        for (counter, count) in [
            (&self.pruned_blocks, retained.pruned),
            (&self.archive_writes, retained.archive_writes),
            (
                &self.archive_blocks_written,
                retained.archive_blocks_written,
            ),
            (&self.archive_write_errors, retained.archive_write_errors),
            (&self.archive_dropped_blocks, retained.archive_dropped),
        ] {
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }
}
