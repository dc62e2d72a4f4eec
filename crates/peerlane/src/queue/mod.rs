//! The keyed bounded queue between the network and the applications: one bounded queue per
//! key, round-robin across keys, a drop policy per queue and counters of what happened.
//!
//! - `config`: [`QueueConfig`], [`QueueStyle`], [`Overflow`] and their defaults;
//! - `keyed`: [`KeyedQueue`], the pure core: `push` and `pop`, no locks, no wakers, no tokio,
//!   testable on its own;
//! - `channel`: [`keyed_channel`] wraps it for use across tasks: a cloneable [`KeyedSender`]
//!   whose [`push`](KeyedSender::push) never waits (a peer's reader task calls it), and a
//!   [`KeyedReceiver`] that is a [`Stream`](futures::Stream) (the application awaits it).
//!
//! The facade keys every application's inbound queue by `(PeerId, ProtocolId)`, so a noisy peer
//! fills only its own queues and cannot delay what other peers send: pops visit the keys in turn.
//!
//! # Bounds
//!
//! - Each key holds at most [`QueueConfig::capacity_per_key`] items. When a key's queue is full,
//!   [`QueueStyle`] says what is dropped: the pushed item ([`QueueStyle::Fifo`]) or the oldest
//!   queued one ([`QueueStyle::Lifo`]). Either way [`push`](KeyedQueue::push) returns the
//!   dropped item in [`Dropped`] and the counters record it.
//! - Each key holds at most [`QueueConfig::max_bytes_per_key`] bytes, and the whole queue at
//!   most [`QueueConfig::max_bytes`], as weighed by the channel's weigher
//!   ([`weighed_keyed_channel`]; the facade weighs a message by its payload). An item that
//!   would take its key over drops as the style says, [`Dropped::OverBudget`] (FIFO) or
//!   [`Dropped::Evicted`] (LIFO, the key's oldest items), and is counted (`over_budget`). An
//!   item that would take the whole queue over because of other keys is dropped whatever the
//!   style: one key cannot evict another's items. An empty key, or an empty queue, takes one
//!   item whatever it weighs, so a message larger than a budget still passes alone.
//! - The number of keys is bounded by what the producers can name (for the facade: connected
//!   peers × protocols), because a key whose queue becomes empty is removed at once, and the
//!   keys of a producer that is gone are removed with their items by
//!   [`purge`](KeyedQueue::purge) (the facade purges a peer's keys when it disconnects).
//!
//! # Back-pressure
//!
//! With [`Overflow::Wait`] a full key queue drops nothing: [`KeyedSender::push`] hands the item
//! back as [`Dropped::Full`], and the producer waits for room
//! ([`KeyedSender::wait_for_room`], at most [`QueueConfig::max_wait`]) before pushing it
//! again. In the facade the producer is a peer's reader task, so while it waits it reads
//! nothing more from that peer's socket and TCP flow control pushes back to the sender, whose
//! outbound lane then fills and refuses with `QueueFull`. The price: every protocol of that
//! peer waits with it, which is why it is opt-in (see [`Overflow::Wait`]).

mod channel;
mod config;
mod keyed;

pub use channel::{KeyedReceiver, KeyedSender, keyed_channel, weighed_keyed_channel};
pub use config::{
    DEFAULT_CAPACITY_PER_KEY, DEFAULT_MAX_BYTES, DEFAULT_MAX_BYTES_PER_KEY, DEFAULT_MAX_WAIT_MS,
    Overflow, QueueConfig, QueueStyle,
};
pub use keyed::{Dropped, KeyedQueue, QueueCounters};
