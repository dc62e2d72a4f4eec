//! peerlane: the facade applications link against (in progress).

mod queue;

pub use queue::{
    DEFAULT_CAPACITY_PER_KEY, Dropped, KeyedQueue, KeyedReceiver, KeyedSender, QueueConfig,
    QueueCounters, QueueStyle, channel,
};
