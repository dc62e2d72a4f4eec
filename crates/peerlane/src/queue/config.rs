//! How a keyed queue is bounded and drained: [`QueueConfig`], its [`QueueStyle`] and
//! [`Overflow`], and their defaults.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a full queue drops, and in which order a queue is drained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStyle {
    /// First in, first out. When full, the pushed item is dropped (drop newest): what is
    /// already queued keeps its place. For protocols where order matters (consensus, RPC).
    #[default]
    Fifo,
    /// Last in, first out. When full, the oldest item is dropped to make room (drop oldest), and
    /// pops take the newest first. For protocols where only fresh data is worth processing
    /// (mempool broadcasts, observer updates).
    Lifo,
}

/// What a push onto a full key queue does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop as the [`QueueStyle`] says (FIFO: the pushed item, LIFO: the oldest one), as
    /// AptosNet does. The producer never waits.
    #[default]
    Drop,
    /// Back-pressure: drop nothing; the producer waits for room, for at most
    /// [`QueueConfig::max_wait`] per item, and only then drops the pushed item (counted as
    /// `dropped_newest`).
    ///
    /// In the facade the producer is the peer's reader task: while it waits it reads nothing
    /// from that peer, so TCP flow control slows the remote sender down (its outbound lane fills
    /// and refuses with `QueueFull`) instead of messages being lost. The trade-off: a slow
    /// consumer of one protocol then delays every message of that peer, on every protocol and
    /// for every application, RPC responses included (they are read from the same socket; they
    /// never wait for queue room themselves, as they go to the RPC table). Other peers are not
    /// delayed. `max_wait_ms` bounds how long one message can hold the peer up, so a consumer
    /// that stopped reading cannot stall the peer's other protocols forever.
    Wait,
}

/// How one keyed queue is bounded and drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// What a full key queue drops, and the pop order. Default [`QueueStyle::Fifo`].
    pub style: QueueStyle,
    /// Items held per key. Default [`DEFAULT_CAPACITY_PER_KEY`] (1024). Memory: up to this many
    /// messages per (peer, protocol) pair the application has not taken yet.
    pub capacity_per_key: NonZeroUsize,
    /// Whether a full key queue drops ([`Overflow::Drop`], the default) or makes the producer
    /// wait for room ([`Overflow::Wait`], back-pressure; read its trade-off first).
    pub overflow: Overflow,
    /// With [`Overflow::Wait`]: how long a producer waits for room for one item before that
    /// item is dropped and counted. Default [`DEFAULT_MAX_WAIT_MS`]. Ignored with
    /// [`Overflow::Drop`]. In config files `max_wait_ms`, in milliseconds.
    #[serde(rename = "max_wait_ms", with = "netcore::serde_duration_ms")]
    pub max_wait: Duration,
    /// Payload bytes held per key. Default [`DEFAULT_MAX_BYTES_PER_KEY`] (16 MiB). A message
    /// that would take its (peer, protocol) queue over drops as the style says (FIFO: that
    /// message; LIFO: the key's oldest messages), or with [`Overflow::Wait`] makes the
    /// producer wait. An empty key takes one message whatever its size.
    pub max_bytes_per_key: NonZeroUsize,
    /// Payload bytes held by the whole queue (one application on one network). Default
    /// [`DEFAULT_MAX_BYTES`] (128 MiB). A message that would take it over because of other
    /// keys is dropped whatever the style (one peer cannot evict another's messages).
    pub max_bytes: NonZeroUsize,
}

/// Items held per key unless configured: AptosNet's channel capacity (architecture.md,
/// "Channel and queue inventory").
pub const DEFAULT_CAPACITY_PER_KEY: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

/// Payload bytes held per key unless configured: 16 MiB, a few of the largest messages
/// applications send in practice (blocks, state-sync chunks of at most 6 MiB), so that one
/// peer's protocol cannot hold more than that however many messages it sends; 1024 messages of
/// up to 64 MiB would be 64 GiB.
pub const DEFAULT_MAX_BYTES_PER_KEY: NonZeroUsize = NonZeroUsize::new(16 * 1024 * 1024).unwrap();

/// Payload bytes held by one application's queue on one network unless configured: 128 MiB,
/// half the network's `peer.inbound_byte_budget` (256 MiB), so that one application that
/// stops reading drops its own messages once it holds this much instead of spending the whole
/// network budget, which would stop every peer's reader, and every other application with it.
pub const DEFAULT_MAX_BYTES: NonZeroUsize = NonZeroUsize::new(128 * 1024 * 1024).unwrap();

/// How long a producer waits for room in a full [`Overflow::Wait`] queue unless configured:
/// 1 s, long enough to ride out a busy consumer, short enough that a stalled one does not hold
/// a peer's other protocols up for long.
pub const DEFAULT_MAX_WAIT_MS: u64 = 1_000;

impl Default for QueueConfig {
    fn default() -> Self {
        Self::new(QueueStyle::default(), DEFAULT_CAPACITY_PER_KEY)
    }
}

impl QueueConfig {
    /// A config with `style` and room for `capacity_per_key` items per key, that drops when
    /// full ([`Overflow::Drop`]).
    pub const fn new(style: QueueStyle, capacity_per_key: NonZeroUsize) -> Self {
        Self {
            style,
            capacity_per_key,
            overflow: Overflow::Drop,
            max_wait: Duration::from_millis(DEFAULT_MAX_WAIT_MS),
            max_bytes_per_key: DEFAULT_MAX_BYTES_PER_KEY,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// A FIFO config with room for `capacity_per_key` items per key and back-pressure
    /// ([`Overflow::Wait`], for at most [`DEFAULT_MAX_WAIT_MS`] per item).
    pub const fn backpressure(capacity_per_key: NonZeroUsize) -> Self {
        Self::new(QueueStyle::Fifo, capacity_per_key).with_overflow(Overflow::Wait)
    }

    /// The same config with `overflow`.
    pub const fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The same config with byte budgets of `per_key` per key and `total` for the queue.
    pub const fn with_max_bytes(mut self, per_key: NonZeroUsize, total: NonZeroUsize) -> Self {
        self.max_bytes_per_key = per_key;
        self.max_bytes = total;
        self
    }

    /// The same config with a producer waiting at most `max_wait` for room
    /// ([`Overflow::Wait`] only).
    pub const fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }
}

impl Overflow {
    /// `"drop"` or `"wait"`, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Wait => "wait",
        }
    }
}

impl QueueStyle {
    /// `"fifo"` or `"lifo"`, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::Lifo => "lifo",
        }
    }
}
