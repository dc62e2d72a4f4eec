//! [`Config`]: state sync's limits and timers.

use std::time::Duration;

/// State sync's limits and timers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most blocks in one response served, and asked for in one request. Default 100.
    pub max_blocks_per_response: usize,
    /// Most bytes of blocks ([`Block::wire_size`](crate::Block::wire_size)) in one response
    /// served; a single larger block still goes out alone. Default 6 MiB: responses of several
    /// MiB are streamed by the stack in frames, and stay under the 8 MiB a node accepts from
    /// a peer it does not trust (`peer::Config::max_untrusted_message_size`), envelope
    /// included.
    pub max_response_bytes: usize,
    /// Most `GetBlocks` requests served from the archive at once (each a disk read of at most
    /// one response on the store's archive thread, one read at a time, held until it is
    /// sent). A request for archived
    /// heights beyond it is answered with no blocks (the requester asks another peer).
    /// Default 4: at most 24 MiB of responses read from the disk at a time.
    pub max_concurrent_archive_reads: usize,
    /// How long a block request may take before another peer is asked. Default 10 s.
    pub rpc_timeout: Duration,
    /// How long a peer whose request failed is passed over. Default 5 s.
    pub retry_after: Duration,
    /// How often the actor looks for newly connected peers (to announce its height to them)
    /// and retries a stalled catch-up. Default 200 ms.
    pub tick_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_blocks_per_response: 100,
            max_response_bytes: 6 * 1024 * 1024,
            max_concurrent_archive_reads: 4,
            rpc_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            tick_interval: Duration::from_millis(200),
        }
    }
}
