//! [`KeyedQueue`]: the pure keyed fair queue. One bounded queue per key, popped round-robin
//! across keys, a drop policy per queue and counters of what happened. No locks, no wakers,
//! no tokio: [`keyed_channel`](super::keyed_channel) wraps it for use across tasks.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

use crate::queue::{Overflow, QueueConfig, QueueStyle};

/// An item a push dropped, and why. The dropped item is handed back so the caller can log or
/// answer it (a dropped RPC request's responder, for example, is dropped with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped<T> {
    /// The key's [`QueueStyle::Fifo`] queue was full: the pushed item was not queued.
    Newest(T),
    /// The key's [`QueueStyle::Lifo`] queue was full: the pushed item was queued and this, the
    /// oldest item of the key, was dropped to make room.
    Oldest(T),
    /// The key's [`Overflow::Wait`] queue was full: the pushed item was not queued and nothing
    /// was dropped. Wait for room and push it again.
    Full(T),
    /// The receiver is gone: the pushed item was not queued.
    Closed(T),
}

/// What a keyed queue has done since it was created.
///
/// Invariants: `pushed = enqueued + dropped_newest + closed + full`, and
/// `len = enqueued − dequeued − dropped_oldest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Items that were queued.
    pub enqueued: u64,
    /// Items that were popped.
    pub dequeued: u64,
    /// Pushed items dropped because their [`QueueStyle::Fifo`] key queue was full.
    pub dropped_newest: u64,
    /// Queued items dropped to make room in a full [`QueueStyle::Lifo`] key queue.
    pub dropped_oldest: u64,
    /// Pushed items refused because the receiver was gone ([`keyed_channel`](super::keyed_channel)
    /// only).
    pub closed: u64,
    /// Pushes refused without dropping because their [`Overflow::Wait`] key queue was full
    /// (the producer waits and pushes again, so one item may count several times).
    pub full: u64,
}

/// The sans-IO keyed queue: one bounded queue per key, popped round-robin.
///
/// Calling protocol: [`push`](Self::push) from the producer side, [`pop`](Self::pop) from the
/// consumer side, in any interleaving; getters have no side effects.
///
/// Fairness: keys with queued items form a ring. A pop takes one item from the key at the head
/// and moves that key to the tail (or out of the ring if its queue is now empty). A key that
/// becomes non-empty joins at the tail. So between two pops from the same key, every other key
/// that was non-empty throughout is popped exactly once.
pub struct KeyedQueue<K, T> {
    config: QueueConfig,
    /// Only non-empty queues are kept: a key leaves the map with its last item.
    queues: HashMap<K, VecDeque<T>>,
    /// The keys of `queues`, in the order they are popped.
    ring: VecDeque<K>,
    len: usize,
    counters: QueueCounters,
}

impl<T> Dropped<T> {
    /// The dropped item.
    pub fn into_inner(self) -> T {
        match self {
            Self::Newest(item) | Self::Oldest(item) | Self::Closed(item) | Self::Full(item) => item,
        }
    }

    /// `"newest"`, `"oldest"`, `"closed"` or `"full"`, for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Newest(_) => "newest",
            Self::Oldest(_) => "oldest",
            Self::Closed(_) => "closed",
            Self::Full(_) => "full",
        }
    }
}

impl<K, T> KeyedQueue<K, T>
where
    K: Hash + Eq + Clone,
{
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            queues: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
            counters: QueueCounters::default(),
        }
    }

    /// Queues `item` under `key`. When the key's queue is full, drops according to the style
    /// and returns what it dropped, or with [`Overflow::Wait`] hands the item back as
    /// [`Dropped::Full`]; the counters say the same.
    pub fn push(&mut self, key: K, item: T) -> Result<(), Dropped<T>> {
        self.push_with(key, item, self.config.overflow)
    }

    /// Queues `item` under `key`, dropping as the style says when the key's queue is full,
    /// whatever the configured [`Overflow`]: what a producer does once it has waited long
    /// enough.
    pub fn push_without_waiting(&mut self, key: K, item: T) -> Result<(), Dropped<T>> {
        self.push_with(key, item, Overflow::Drop)
    }

    /// Whether `key` holds at most half its capacity (the low-water mark a waiting producer
    /// resumes at).
    pub fn is_half_empty(&self, key: &K) -> bool {
        self.len_of(key) <= self.config.capacity_per_key.get() / 2
    }

    fn push_with(&mut self, key: K, item: T, overflow: Overflow) -> Result<(), Dropped<T>> {
        let capacity = self.config.capacity_per_key.get();
        let queue = match self.queues.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.ring.push_back(entry.key().clone());
                entry.insert(VecDeque::new())
            }
        };
        if queue.len() < capacity {
            queue.push_back(item);
            self.len += 1;
            self.counters.enqueued += 1;
            return Ok(());
        }
        // Full: the queue is non-empty, so the key is in the ring already.
        if overflow == Overflow::Wait {
            self.counters.full += 1;
            return Err(Dropped::Full(item));
        }
        match self.config.style {
            QueueStyle::Fifo => {
                self.counters.dropped_newest += 1;
                Err(Dropped::Newest(item))
            }
            QueueStyle::Lifo => {
                // Non-empty (it is full and the capacity is at least 1).
                let oldest = queue.pop_front().expect("a full queue has a front");
                queue.push_back(item);
                self.counters.enqueued += 1;
                self.counters.dropped_oldest += 1;
                Err(Dropped::Oldest(oldest))
            }
        }
    }

    /// Takes the next item: from the key whose turn it is, the oldest item (FIFO) or the newest
    /// (LIFO). `None` when the queue is empty.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let key = self.ring.pop_front()?;
        let Entry::Occupied(mut entry) = self.queues.entry(key) else {
            unreachable!("every key in the ring has a queue");
        };
        let queue = entry.get_mut();
        let item = match self.config.style {
            QueueStyle::Fifo => queue.pop_front(),
            QueueStyle::Lifo => queue.pop_back(),
        }
        .expect("queues in the map are never empty");
        let key = if queue.is_empty() {
            entry.remove_entry().0
        } else {
            let key = entry.key().clone();
            self.ring.push_back(key.clone());
            key
        };
        self.len -= 1;
        self.counters.dequeued += 1;
        Some((key, item))
    }

    /// Takes up to `max` items into `out`, in the order [`pop`](Self::pop) would give them;
    /// returns how many. One hash look-up per run of items from the same key when only one key
    /// has items (the common case of one busy peer), one per item otherwise.
    pub fn pop_many(&mut self, out: &mut VecDeque<(K, T)>, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            if self.ring.len() == 1 {
                taken += self.pop_run(out, max - taken);
                break;
            }
            let Some(item) = self.pop() else {
                break;
            };
            out.push_back(item);
            taken += 1;
        }
        taken
    }

    /// [`pop_many`](Self::pop_many) when one key holds every item: takes up to `max` of its
    /// items with one look-up.
    fn pop_run(&mut self, out: &mut VecDeque<(K, T)>, max: usize) -> usize {
        let Some(key) = self.ring.front().cloned() else {
            return 0;
        };
        let Some(queue) = self.queues.get_mut(&key) else {
            unreachable!("every key in the ring has a queue");
        };
        let n = max.min(queue.len());
        for _ in 0..n {
            let item = match self.config.style {
                QueueStyle::Fifo => queue.pop_front(),
                QueueStyle::Lifo => queue.pop_back(),
            }
            .expect("n is at most the queue's length");
            out.push_back((key.clone(), item));
        }
        if queue.is_empty() {
            self.queues.remove(&key);
            self.ring.clear();
        }
        self.len -= n;
        self.counters.dequeued += n as u64;
        n
    }

    /// Items queued, over all keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items queued under `key`.
    pub fn len_of(&self, key: &K) -> usize {
        self.queues.get(key).map_or(0, VecDeque::len)
    }

    /// Keys with at least one queued item (the only keys the queue keeps).
    pub fn num_keys(&self) -> usize {
        self.queues.len()
    }

    /// What the queue has done so far.
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }

    /// The configuration.
    pub fn config(&self) -> QueueConfig {
        self.config
    }
}

impl<K, T> KeyedQueue<K, T> {
    /// Takes every queued item out; the counters are kept.
    pub(super) fn take_all(&mut self) -> HashMap<K, VecDeque<T>> {
        self.ring.clear();
        self.len = 0;
        std::mem::take(&mut self.queues)
    }
}

impl<K, T> KeyedQueue<K, T> {
    /// Counts a push refused because the receiver is gone: the channel's business, counted
    /// here so that the counters stay in one place.
    pub(super) fn count_closed(&mut self) {
        self.counters.closed += 1;
    }
}

impl<K, T> fmt::Debug for KeyedQueue<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedQueue")
            .field("config", &self.config)
            .field("len", &self.len)
            .field("keys", &self.queues.len())
            .field("counters", &self.counters)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use std::collections::{HashMap, VecDeque};
    use std::num::NonZeroUsize;

    use proptest::prelude::*;

    use super::*;
    use crate::queue::QueueStyle;

    fn config(style: QueueStyle, capacity: usize) -> QueueConfig {
        QueueConfig::new(style, NonZeroUsize::new(capacity).unwrap())
    }

    fn drain<K: Hash + Eq + Clone, T>(queue: &mut KeyedQueue<K, T>) -> Vec<(K, T)> {
        std::iter::from_fn(|| queue.pop()).collect()
    }

    /// A full FIFO key drops the pushed item and keeps what it had, in order.
    #[test]
    fn full_fifo_queue_drops_the_newest_item() {
        let mut queue = KeyedQueue::new(config(QueueStyle::Fifo, 2));
        assert_eq!(queue.push('a', 1), Ok(()));
        assert_eq!(queue.push('a', 2), Ok(()));
        assert_eq!(queue.push('a', 3), Err(Dropped::Newest(3)));
        assert_eq!(drain(&mut queue), vec![('a', 1), ('a', 2)]);
        let counters = queue.counters();
        assert_eq!((counters.enqueued, counters.dropped_newest), (2, 1));
    }

    /// A full LIFO key drops its oldest item to make room, and pops newest first.
    #[test]
    fn full_lifo_queue_drops_the_oldest_item_and_pops_newest_first() {
        let mut queue = KeyedQueue::new(config(QueueStyle::Lifo, 2));
        assert_eq!(queue.push('a', 1), Ok(()));
        assert_eq!(queue.push('a', 2), Ok(()));
        assert_eq!(queue.push('a', 3), Err(Dropped::Oldest(1)));
        assert_eq!(drain(&mut queue), vec![('a', 3), ('a', 2)]);
        let counters = queue.counters();
        assert_eq!((counters.enqueued, counters.dropped_oldest), (3, 1));
    }

    /// Keys take turns: a key with many items does not delay a key with one.
    #[test]
    fn pops_take_turns_across_keys() {
        let mut queue = KeyedQueue::new(config(QueueStyle::Fifo, 10));
        for i in 0..4 {
            queue.push('a', i).unwrap();
        }
        queue.push('b', 10).unwrap();
        queue.push('c', 20).unwrap();
        let keys: String = drain(&mut queue).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, "abcaaa");
    }

    /// An emptied key is forgotten: the queue keeps no state for keys without items.
    #[test]
    fn empty_key_queues_are_removed() {
        let mut queue = KeyedQueue::new(config(QueueStyle::Fifo, 4));
        for key in 0..100 {
            queue.push(key, ()).unwrap();
        }
        assert_eq!(queue.num_keys(), 100);
        drain(&mut queue);
        assert_eq!(queue.num_keys(), 0);
        assert!(queue.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8),
        Pop,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![3 => (0u8..5).prop_map(Op::Push), 2 => Just(Op::Pop)],
            0..300,
        )
    }

    fn style() -> impl Strategy<Value = QueueStyle> {
        prop_oneof![Just(QueueStyle::Fifo), Just(QueueStyle::Lifo)]
    }

    proptest! {
        /// Against a model (one bounded deque per key): no key ever holds more than its
        /// capacity, every push is either queued or counted as dropped, each key's items come
        /// out in FIFO or LIFO order, and the counters add up.
        #[test]
        fn queue_matches_a_bounded_per_key_model(
            style in style(),
            capacity in 1usize..5,
            ops in ops(),
        ) {
            let mut queue = KeyedQueue::new(config(style, capacity));
            let mut model: HashMap<u8, VecDeque<u32>> = HashMap::new();
            let mut pushed = 0u64;
            for (seq, op) in ops.into_iter().enumerate() {
                let seq = seq as u32;
                match op {
                    Op::Push(key) => {
                        pushed += 1;
                        let items = model.entry(key).or_default();
                        let result = queue.push(key, seq);
                        if items.len() < capacity {
                            prop_assert_eq!(result, Ok(()));
                            items.push_back(seq);
                        } else if style == QueueStyle::Fifo {
                            prop_assert_eq!(result, Err(Dropped::Newest(seq)));
                        } else {
                            let oldest = items.pop_front().unwrap();
                            prop_assert_eq!(result, Err(Dropped::Oldest(oldest)));
                            items.push_back(seq);
                        }
                    }
                    Op::Pop => {
                        let popped = queue.pop();
                        match popped {
                            None => prop_assert!(model.values().all(VecDeque::is_empty)),
                            Some((key, item)) => {
                                let items = model.get_mut(&key).unwrap();
                                let expected = match style {
                                    QueueStyle::Fifo => items.pop_front(),
                                    QueueStyle::Lifo => items.pop_back(),
                                };
                                prop_assert_eq!(Some(item), expected);
                            }
                        }
                    }
                }
                for (key, items) in &model {
                    prop_assert!(queue.len_of(key) <= capacity);
                    prop_assert_eq!(queue.len_of(key), items.len());
                }
                let counters = queue.counters();
                prop_assert_eq!(pushed, counters.enqueued + counters.dropped_newest);
                prop_assert_eq!(
                    queue.len() as u64,
                    counters.enqueued - counters.dequeued - counters.dropped_oldest
                );
                prop_assert_eq!(
                    queue.num_keys(),
                    model.values().filter(|items| !items.is_empty()).count()
                );
            }
        }

        /// Round robin: with every key kept non-empty, the keys are popped in a fixed cycle,
        /// so in any window of `keys` consecutive pops each key appears exactly once.
        #[test]
        fn every_busy_key_is_popped_once_per_round(
            style in style(),
            keys in 1u8..8,
            rounds in 1usize..6,
            extra in prop::collection::vec(0u8..8, 0..20),
        ) {
            let mut queue = KeyedQueue::new(config(style, 64));
            for key in 0..keys {
                for _ in 0..rounds {
                    queue.push(key, ()).unwrap();
                }
            }
            // Extra items on some keys only make those keys last longer, never jump the turn.
            for key in extra.into_iter().filter(|key| *key < keys) {
                queue.push(key, ()).unwrap();
            }
            let order: Vec<u8> = drain(&mut queue).into_iter().map(|(key, _)| key).collect();
            for window in order[..usize::from(keys) * rounds].chunks(usize::from(keys)) {
                let distinct: HashSet<u8> = window.iter().copied().collect();
                prop_assert_eq!(distinct.len(), usize::from(keys));
            }
        }
    }
}
