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
    /// The pushed item would have taken its key or the whole queue over its byte budget
    /// ([`QueueConfig::max_bytes_per_key`], [`QueueConfig::max_bytes`]): it was not queued.
    /// In a [`QueueStyle::Lifo`] queue only when dropping the key's own items could not make
    /// room (the other keys hold the queue's budget).
    OverBudget(T),
    /// A [`QueueStyle::Lifo`] key queue made room for the pushed item, which was queued, by
    /// dropping these, its oldest items, because of a byte budget (or of its item count and a
    /// byte budget together).
    Evicted(Vec<T>),
}

/// What a keyed queue has done since it was created.
///
/// Invariants: `pushed = enqueued + dropped_newest + closed + full`, and
/// `len = enqueued − dequeued − dropped_oldest − purged`.
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
    /// Pushes that hit a byte budget (per key or for the whole queue); what they dropped is
    /// counted in `dropped_newest` or `dropped_oldest` as well.
    pub over_budget: u64,
    /// Queued items removed by [`KeyedQueue::purge`] (their producer is gone).
    pub purged: u64,
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
    queues: HashMap<K, Lane<T>>,
    /// The keys of `queues`, in the order they are popped.
    ring: VecDeque<K>,
    len: usize,
    /// What the queued items weigh together, by `weigh`.
    bytes: usize,
    /// The bytes an item counts for against the byte budgets.
    weigh: fn(&T) -> usize,
    counters: QueueCounters,
}

/// One key's items and what they weigh.
struct Lane<T> {
    items: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// The weight of every item of a queue made with [`KeyedQueue::new`]: the byte budgets never
/// bind.
fn weightless<T>(_: &T) -> usize {
    0
}

impl<T> Dropped<T> {
    /// The dropped items (one, but for [`Dropped::Evicted`]).
    pub fn into_items(self) -> Vec<T> {
        match self {
            Self::Newest(item)
            | Self::Oldest(item)
            | Self::Closed(item)
            | Self::Full(item)
            | Self::OverBudget(item) => vec![item],
            Self::Evicted(items) => items,
        }
    }

    /// `"newest"`, `"oldest"`, `"closed"`, `"full"`, `"over_budget"` or `"evicted"`, for logs
    /// and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Newest(_) => "newest",
            Self::Oldest(_) => "oldest",
            Self::Closed(_) => "closed",
            Self::Full(_) => "full",
            Self::OverBudget(_) => "over_budget",
            Self::Evicted(_) => "evicted",
        }
    }
}

impl<K, T> KeyedQueue<K, T>
where
    K: Hash + Eq + Clone,
{
    /// An empty queue whose items weigh nothing: only the item counts bound it.
    pub fn new(config: QueueConfig) -> Self {
        Self::with_weigher(config, weightless)
    }

    /// An empty queue whose items weigh `weigh(item)` bytes against its byte budgets.
    pub fn with_weigher(config: QueueConfig, weigh: fn(&T) -> usize) -> Self {
        Self {
            config,
            queues: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
            bytes: 0,
            weigh,
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
            && self.bytes_of(key) <= self.config.max_bytes_per_key.get() / 2
    }

    fn push_with(&mut self, key: K, item: T, overflow: Overflow) -> Result<(), Dropped<T>> {
        let capacity = self.config.capacity_per_key.get();
        let max_key_bytes = self.config.max_bytes_per_key.get();
        let max_bytes = self.config.max_bytes.get();
        let weight = (self.weigh)(&item);
        let (key_len, key_bytes) = self
            .queues
            .get(&key)
            .map_or((0, 0), |lane| (lane.items.len(), lane.bytes));
        // An empty key (queue) always takes one item, so that a message larger than a budget
        // still gets through when nothing else is held.
        let key_over = key_len > 0 && key_bytes.saturating_add(weight) > max_key_bytes;
        let queue_over = self.bytes > 0 && self.bytes.saturating_add(weight) > max_bytes;
        if key_len < capacity && !key_over && !queue_over {
            self.insert(key, item, weight);
            return Ok(());
        }
        // Over the queue's budget because of other keys: dropping this key's items would take
        // from nobody else, so the pushed item goes (whatever the style or overflow: waiting
        // for other keys to drain is not this producer's business).
        let others = self.bytes - key_bytes;
        if queue_over && others > 0 && others.saturating_add(weight) > max_bytes {
            self.counters.over_budget += 1;
            self.counters.dropped_newest += 1;
            return Err(Dropped::OverBudget(item));
        }
        let over_budget = key_over || queue_over;
        // Waits only for what a pop from this key makes room for: a non-empty key over its
        // count or its byte budget.
        if overflow == Overflow::Wait && (key_len >= capacity || key_over) {
            self.counters.full += 1;
            return Err(Dropped::Full(item));
        }
        if over_budget {
            self.counters.over_budget += 1;
        }
        match self.config.style {
            QueueStyle::Fifo => {
                self.counters.dropped_newest += 1;
                if over_budget {
                    Err(Dropped::OverBudget(item))
                } else {
                    Err(Dropped::Newest(item))
                }
            }
            QueueStyle::Lifo => {
                let mut evicted = Vec::new();
                if let Some(lane) = self.queues.get_mut(&key) {
                    while let Some(oldest) = lane.items.front() {
                        let fits = lane.items.len() < capacity
                            && lane.bytes.saturating_add(weight) <= max_key_bytes
                            && self.bytes.saturating_add(weight) <= max_bytes;
                        if fits {
                            break;
                        }
                        let oldest_weight = (self.weigh)(oldest);
                        evicted.extend(lane.items.pop_front());
                        lane.bytes -= oldest_weight;
                        self.bytes -= oldest_weight;
                        self.len -= 1;
                    }
                }
                self.counters.dropped_oldest += evicted.len() as u64;
                // The key stays in the ring even if emptied: the item goes in at once.
                self.insert(key, item, weight);
                match (over_budget, evicted.len()) {
                    (false, 1) => Err(Dropped::Oldest(evicted.remove(0))),
                    _ => Err(Dropped::Evicted(evicted)),
                }
            }
        }
    }

    /// Queues `item`, of `weight` bytes, under `key`: the caller checked that it fits.
    fn insert(&mut self, key: K, item: T, weight: usize) {
        let lane = match self.queues.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.ring.push_back(entry.key().clone());
                entry.insert(Lane::default())
            }
        };
        lane.items.push_back(item);
        lane.bytes += weight;
        self.bytes += weight;
        self.len += 1;
        self.counters.enqueued += 1;
    }

    /// Removes every item of the keys `purge` picks (a producer that is gone: a disconnected
    /// peer), counted as `purged`, and hands them back so that the caller drops them where it
    /// likes. The keys leave the ring.
    pub fn purge(&mut self, mut purge: impl FnMut(&K) -> bool) -> Vec<(K, VecDeque<T>)> {
        let keys: Vec<K> = self.ring.iter().filter(|key| purge(key)).cloned().collect();
        if keys.is_empty() {
            return Vec::new();
        }
        self.ring.retain(|key| !keys.contains(key));
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(lane) = self.queues.remove(&key) {
                self.len -= lane.items.len();
                self.bytes -= lane.bytes;
                self.counters.purged += lane.items.len() as u64;
                removed.push((key, lane.items));
            }
        }
        removed
    }

    /// Takes the next item: from the key whose turn it is, the oldest item (FIFO) or the newest
    /// (LIFO). `None` when the queue is empty.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let key = self.ring.pop_front()?;
        let Entry::Occupied(mut entry) = self.queues.entry(key) else {
            unreachable!("every key in the ring has a queue");
        };
        let lane = entry.get_mut();
        let item = match self.config.style {
            QueueStyle::Fifo => lane.items.pop_front(),
            QueueStyle::Lifo => lane.items.pop_back(),
        }
        .expect("queues in the map are never empty");
        let weight = (self.weigh)(&item);
        lane.bytes -= weight;
        self.bytes -= weight;
        let key = if lane.items.is_empty() {
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
        let Some(lane) = self.queues.get_mut(&key) else {
            unreachable!("every key in the ring has a queue");
        };
        let n = max.min(lane.items.len());
        for _ in 0..n {
            let item = match self.config.style {
                QueueStyle::Fifo => lane.items.pop_front(),
                QueueStyle::Lifo => lane.items.pop_back(),
            }
            .expect("n is at most the queue's length");
            let weight = (self.weigh)(&item);
            lane.bytes -= weight;
            self.bytes -= weight;
            out.push_back((key.clone(), item));
        }
        if lane.items.is_empty() {
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
        self.queues.get(key).map_or(0, |lane| lane.items.len())
    }

    /// What the queued items weigh, over all keys.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the items queued under `key` weigh.
    pub fn bytes_of(&self, key: &K) -> usize {
        self.queues.get(key).map_or(0, |lane| lane.bytes)
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
    pub(super) fn take_all(&mut self) -> Vec<VecDeque<T>> {
        self.ring.clear();
        self.len = 0;
        self.bytes = 0;
        std::mem::take(&mut self.queues)
            .into_values()
            .map(|lane| lane.items)
            .collect()
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
            .field("bytes", &self.bytes)
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

    /// A queue of byte strings weighed by their length, with room for 100 items per key,
    /// 10 bytes per key and 25 bytes in all.
    fn weighed(style: QueueStyle) -> KeyedQueue<char, Vec<u8>> {
        let config = config(style, 100).with_max_bytes(
            NonZeroUsize::new(10).unwrap(),
            NonZeroUsize::new(25).unwrap(),
        );
        KeyedQueue::with_weigher(config, Vec::len)
    }

    /// FIFO: an item that would take its key over the key's byte budget is dropped and
    /// counted; the key holds at most its budget whatever its item count allows.
    #[test]
    fn fifo_key_over_its_byte_budget_drops_the_pushed_item() {
        let mut queue = weighed(QueueStyle::Fifo);
        assert_eq!(queue.push('a', vec![1; 6]), Ok(()));
        assert_eq!(queue.push('a', vec![2; 4]), Ok(()));
        assert_eq!(
            queue.push('a', vec![3; 1]),
            Err(Dropped::OverBudget(vec![3]))
        );
        assert_eq!((queue.bytes_of(&'a'), queue.bytes()), (10, 10));
        let counters = queue.counters();
        assert_eq!((counters.over_budget, counters.dropped_newest), (1, 1));
        queue.pop();
        assert_eq!(queue.bytes(), 4);
    }

    /// LIFO: the key's oldest items make room, as many as it takes.
    #[test]
    fn lifo_key_over_its_byte_budget_drops_its_oldest_items() {
        let mut queue = weighed(QueueStyle::Lifo);
        for byte in 1..=5 {
            queue.push('a', vec![byte; 2]).unwrap();
        }
        assert_eq!(
            queue.push('a', vec![6; 5]),
            Err(Dropped::Evicted(vec![vec![1; 2], vec![2; 2], vec![3; 2]]))
        );
        assert_eq!(queue.bytes_of(&'a'), 9);
        assert_eq!(queue.counters().dropped_oldest, 3);
        assert_eq!(drain(&mut queue).len(), 3);
        assert_eq!(queue.bytes(), 0);
    }

    /// The queue's budget: a key cannot push out another key's items, in either style; an
    /// empty key takes an item larger than its budget.
    #[test]
    fn a_full_queue_drops_the_pushed_item_rather_than_another_keys() {
        for style in [QueueStyle::Fifo, QueueStyle::Lifo] {
            let mut queue = weighed(style);
            queue.push('a', vec![0; 10]).unwrap();
            queue.push('b', vec![0; 10]).unwrap();
            assert_eq!(
                queue.push('c', vec![0; 12]),
                Err(Dropped::OverBudget(vec![0; 12]))
            );
            assert_eq!(queue.push('c', vec![0; 5]), Ok(()));
            // Over the queue's budget with c's own bytes: FIFO drops the pushed item, LIFO
            // c's oldest.
            let (expected, bytes) = match style {
                QueueStyle::Fifo => (Dropped::OverBudget(vec![9]), 25),
                QueueStyle::Lifo => (Dropped::Evicted(vec![vec![0; 5]]), 21),
            };
            assert_eq!(queue.push('c', vec![9; 1]), Err(expected));
            assert_eq!((queue.len(), queue.bytes()), (3, bytes));
        }
        let mut queue = weighed(QueueStyle::Fifo);
        assert_eq!(queue.push('a', vec![0; 30]), Ok(()));
    }

    /// A purge removes the picked keys with their items and bytes, and counts them; the other
    /// keys keep their turns.
    #[test]
    fn purge_removes_the_picked_keys_and_counts_them() {
        let mut queue = weighed(QueueStyle::Fifo);
        queue.push('a', vec![0; 3]).unwrap();
        queue.push('b', vec![0; 2]).unwrap();
        queue.push('a', vec![0; 3]).unwrap();
        let removed = queue.purge(|key| *key == 'a');
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].1.len(), 2);
        assert_eq!((queue.len(), queue.bytes(), queue.num_keys()), (1, 2, 1));
        assert_eq!(queue.counters().purged, 2);
        assert_eq!(drain(&mut queue), vec![('b', vec![0; 2])]);
        assert!(queue.purge(|_| true).is_empty());
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
                        - counters.purged
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
