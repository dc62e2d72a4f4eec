//! [`KeyedQueue`]: the pure keyed fair queue. One bounded queue per key, popped round-robin
//! across keys, a drop policy per queue and counters of what happened. No locks, no wakers,
//! no tokio: [`keyed_channel`](super::keyed_channel) wraps it for use across tasks.

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
///
/// Cost: a key is hashed when it gains its first item, when it loses its last, and when a push
/// names another key than the push before it; a run of pushes under one key (one peer's burst)
/// and every pop find the key's queue by index.
pub struct KeyedQueue<K, T> {
    config: QueueConfig,
    /// The slot in `lanes` of each key with queued items: a key leaves with its last item.
    slots: HashMap<K, usize>,
    /// The queues of the keys in `slots`, by slot; `None` is a free slot, listed in `free`.
    /// There are never more slots than keys were ever queued at once.
    lanes: Vec<Option<Lane<K, T>>>,
    free: Vec<usize>,
    /// The slots of the keys with queued items, in the order they are popped.
    ring: VecDeque<usize>,
    /// The slot the last push went to, while its key has items.
    last_push: Option<usize>,
    /// The buffer of the last key that was emptied by pops, for the next key that gains an
    /// item: a key that empties and fills again (a peer whose messages the application keeps
    /// up with) then does not grow a buffer anew each time. At most [`MAX_SPARE_BYTES`].
    spare: VecDeque<T>,
    len: usize,
    /// What the queued items weigh together, by `weigh`.
    bytes: usize,
    /// The bytes an item counts for against the byte budgets.
    weigh: fn(&T) -> usize,
    counters: QueueCounters,
}

/// The largest buffer a queue keeps for reuse once its key is empty (see `KeyedQueue::spare`):
/// room for a key of the default capacity of the facade's items.
const MAX_SPARE_BYTES: usize = 128 << 10;

/// One key's items and what they weigh.
struct Lane<K, T> {
    key: K,
    items: VecDeque<T>,
    bytes: usize,
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
            slots: HashMap::new(),
            lanes: Vec::new(),
            free: Vec::new(),
            ring: VecDeque::new(),
            last_push: None,
            spare: VecDeque::new(),
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

    /// Queues `items` under `key` in order, exactly as [`push`](Self::push) would one by one,
    /// handing each push's result to `outcome`, which says whether to go on (the items after
    /// a `false` are not taken). For a producer's burst to one key: the key's queue is found
    /// once, and an item that fits goes straight in; anything else takes `push`'s path.
    pub fn push_run(
        &mut self,
        key: &K,
        items: impl Iterator<Item = T>,
        mut outcome: impl FnMut(Result<(), Dropped<T>>) -> bool,
    ) {
        let capacity = self.config.capacity_per_key.get();
        let max_key_bytes = self.config.max_bytes_per_key.get();
        let max_bytes = self.config.max_bytes.get();
        let mut slot = self.slot_of(key);
        for item in items {
            let weight = (self.weigh)(&item);
            // What `push_with` checks, for a key that has items (a new key takes its path,
            // which gives it a slot); an item that fits is appended to the key's queue in
            // place, with no copy of the key and no second look-up of its slot.
            let queue_fits = self.bytes == 0 || self.bytes.saturating_add(weight) <= max_bytes;
            if let Some(slot) = slot
                && queue_fits
            {
                let lane = self.lanes[slot]
                    .as_mut()
                    .expect("a slot in use holds a queue");
                if lane.items.len() < capacity && lane.bytes.saturating_add(weight) <= max_key_bytes
                {
                    lane.items.push_back(item);
                    lane.bytes += weight;
                    self.count_insert(slot, weight);
                    if !outcome(Ok(())) {
                        break;
                    }
                    continue;
                }
            }
            let result = self.push_with(key.clone(), item, self.config.overflow);
            slot = self.slot_of(key);
            if !outcome(result) {
                break;
            }
        }
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
        let slot = self.slot_of(&key);
        let (key_len, key_bytes) = slot.map_or((0, 0), |slot| {
            let lane = self.lane(slot);
            (lane.items.len(), lane.bytes)
        });
        // An empty key (queue) always takes one item, so that a message larger than a budget
        // still gets through when nothing else is held.
        let key_over = key_len > 0 && key_bytes.saturating_add(weight) > max_key_bytes;
        let queue_over = self.bytes > 0 && self.bytes.saturating_add(weight) > max_bytes;
        if key_len < capacity && !key_over && !queue_over {
            self.insert(slot, key, item, weight);
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
                if let Some(lane) = slot.and_then(|slot| self.lanes[slot].as_mut()) {
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
                // The key keeps its slot even if emptied: the item goes in at once.
                self.insert(slot, key, item, weight);
                match (over_budget, evicted.len()) {
                    (false, 1) => Err(Dropped::Oldest(evicted.remove(0))),
                    _ => Err(Dropped::Evicted(evicted)),
                }
            }
        }
    }

    /// The slot of `key`, if it has items: the last push's slot when the key is the same,
    /// without hashing it.
    fn slot_of(&self, key: &K) -> Option<usize> {
        if let Some(slot) = self.last_push
            && self.lane(slot).key == *key
        {
            return Some(slot);
        }
        self.slots.get(key).copied()
    }

    /// The queue in `slot`, which holds a key.
    fn lane(&self, slot: usize) -> &Lane<K, T> {
        self.lanes[slot]
            .as_ref()
            .expect("a slot in use holds a queue")
    }

    /// Queues `item`, of `weight` bytes, under `key`, whose slot is `slot` if it has items:
    /// the caller checked that it fits.
    fn insert(&mut self, slot: Option<usize>, key: K, item: T, weight: usize) {
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let lane = Lane {
                    key: key.clone(),
                    items: std::mem::take(&mut self.spare),
                    bytes: 0,
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.lanes[slot] = Some(lane);
                        slot
                    }
                    None => {
                        self.lanes.push(Some(lane));
                        self.lanes.len() - 1
                    }
                };
                self.slots.insert(key, slot);
                self.ring.push_back(slot);
                slot
            }
        };
        let lane = self.lanes[slot]
            .as_mut()
            .expect("a slot in use holds a queue");
        lane.items.push_back(item);
        lane.bytes += weight;
        self.count_insert(slot, weight);
    }

    /// The queue-wide accounting of an item of `weight` bytes just queued in `slot`.
    #[inline]
    fn count_insert(&mut self, slot: usize, weight: usize) {
        self.last_push = Some(slot);
        self.bytes += weight;
        self.len += 1;
        self.counters.enqueued += 1;
    }

    /// Keeps the emptied buffer `items` for the next new key, unless it is too large.
    fn keep_spare(&mut self, items: VecDeque<T>) {
        if items.capacity().saturating_mul(size_of::<T>()) <= MAX_SPARE_BYTES {
            self.spare = items;
        }
    }

    /// Frees `slot` (its key has no items left, or is purged) and hands its queue back. The
    /// caller takes the slot out of the ring.
    fn free_slot(&mut self, slot: usize) -> Lane<K, T> {
        let lane = self.lanes[slot]
            .take()
            .expect("a slot in use holds a queue");
        self.slots.remove(&lane.key);
        self.free.push(slot);
        if self.last_push == Some(slot) {
            self.last_push = None;
        }
        lane
    }

    /// Removes every item of the keys `purge` picks (a producer that is gone: a disconnected
    /// peer), counted as `purged`, and hands them back so that the caller drops them where it
    /// likes. The keys leave the ring.
    pub fn purge(&mut self, mut purge: impl FnMut(&K) -> bool) -> Vec<(K, VecDeque<T>)> {
        let picked: Vec<usize> = self
            .ring
            .iter()
            .copied()
            .filter(|slot| purge(&self.lane(*slot).key))
            .collect();
        if picked.is_empty() {
            return Vec::new();
        }
        self.ring.retain(|slot| !picked.contains(slot));
        let mut removed = Vec::with_capacity(picked.len());
        for slot in picked {
            let lane = self.free_slot(slot);
            self.len -= lane.items.len();
            self.bytes -= lane.bytes;
            self.counters.purged += lane.items.len() as u64;
            removed.push((lane.key, lane.items));
        }
        removed
    }

    /// Takes the next item: from the key whose turn it is, the oldest item (FIFO) or the newest
    /// (LIFO). `None` when the queue is empty.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let slot = self.ring.pop_front()?;
        let lane = self.lanes[slot]
            .as_mut()
            .expect("every slot in the ring holds a queue");
        let item = match self.config.style {
            QueueStyle::Fifo => lane.items.pop_front(),
            QueueStyle::Lifo => lane.items.pop_back(),
        }
        .expect("queues in the ring are never empty");
        let weight = (self.weigh)(&item);
        lane.bytes -= weight;
        self.bytes -= weight;
        let key = if lane.items.is_empty() {
            let lane = self.free_slot(slot);
            self.keep_spare(lane.items);
            lane.key
        } else {
            let key = lane.key.clone();
            self.ring.push_back(slot);
            key
        };
        self.len -= 1;
        self.counters.dequeued += 1;
        Some((key, item))
    }

    /// Takes up to `max` items into `out`, in the order [`pop`](Self::pop) would give them;
    /// returns how many.
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
        let Some(&slot) = self.ring.front() else {
            return 0;
        };
        let lane = self.lanes[slot]
            .as_mut()
            .expect("every slot in the ring holds a queue");
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
            out.push_back((lane.key.clone(), item));
        }
        if lane.items.is_empty() {
            let lane = self.free_slot(slot);
            self.keep_spare(lane.items);
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
        self.slot_of(key)
            .map_or(0, |slot| self.lane(slot).items.len())
    }

    /// What the queued items weigh, over all keys.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the items queued under `key` weigh.
    pub fn bytes_of(&self, key: &K) -> usize {
        self.slot_of(key).map_or(0, |slot| self.lane(slot).bytes)
    }

    /// Keys with at least one queued item (the only keys the queue keeps).
    pub fn num_keys(&self) -> usize {
        self.slots.len()
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
        self.slots.clear();
        self.free.clear();
        self.last_push = None;
        self.spare = VecDeque::new();
        self.len = 0;
        self.bytes = 0;
        std::mem::take(&mut self.lanes)
            .into_iter()
            .flatten()
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
            .field("keys", &self.slots.len())
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

    #[derive(Clone, Debug)]
    enum SlotOp {
        Push(u8),
        Pop,
        PopMany(usize),
        Purge(u8),
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
        /// `push_run` does exactly what pushing the same items one by one does: the same
        /// results, counters and contents, under item and byte limits, in both styles.
        #[test]
        fn a_run_pushes_as_single_pushes_do(
            style in style(),
            capacity in 1usize..6,
            runs in prop::collection::vec((0u8..3, prop::collection::vec(1usize..40, 0..8)), 0..12),
            pops in prop::collection::vec(0usize..4, 12),
        ) {
            let mut config = config(style, capacity);
            config.max_bytes_per_key = NonZeroUsize::new(60).unwrap();
            config.max_bytes = NonZeroUsize::new(100).unwrap();
            let mut single = KeyedQueue::with_weigher(config, |item: &(u32, usize)| item.1);
            let mut batched = KeyedQueue::with_weigher(config, |item: &(u32, usize)| item.1);
            let mut seq = 0u32;
            for ((key, weights), pops) in runs.into_iter().zip(pops) {
                let items: Vec<(u32, usize)> = weights
                    .into_iter()
                    .map(|weight| {
                        seq += 1;
                        (seq, weight)
                    })
                    .collect();
                let expected: Vec<_> = items.iter().map(|&item| single.push(key, item)).collect();
                let mut got = Vec::new();
                batched.push_run(&key, items.into_iter(), |result| {
                    got.push(result);
                    true
                });
                prop_assert_eq!(got, expected);
                for _ in 0..pops {
                    prop_assert_eq!(batched.pop(), single.pop());
                }
            }
            prop_assert_eq!(batched.counters(), single.counters());
            prop_assert_eq!(drain(&mut batched), drain(&mut single));
        }

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

        /// Against a model of the ring (the keys with items, in turn order) and each key's
        /// items, with purges and batch pops among the pushes and pops: every pop, batch or
        /// not, gives the model's next item, and each key's count and weight match the model
        /// after every step, however keys come, go and come back (their slots are reused).
        #[test]
        fn slots_follow_keys_through_purges_and_batch_pops(
            style in style(),
            ops in prop::collection::vec(
                prop_oneof![
                    4 => (0u8..6).prop_map(SlotOp::Push),
                    2 => Just(SlotOp::Pop),
                    1 => (1usize..10).prop_map(SlotOp::PopMany),
                    1 => (0u8..6).prop_map(SlotOp::Purge),
                ],
                0..300,
            ),
        ) {
            let mut queue = KeyedQueue::with_weigher(config(style, 1000), |item: &u32| {
                (*item % 7) as usize
            });
            let mut ring: VecDeque<u8> = VecDeque::new();
            let mut items: HashMap<u8, VecDeque<u32>> = HashMap::new();
            let model_pop = |ring: &mut VecDeque<u8>, items: &mut HashMap<u8, VecDeque<u32>>| {
                let key = ring.pop_front()?;
                let queued = items.get_mut(&key).unwrap();
                let item = match style {
                    QueueStyle::Fifo => queued.pop_front(),
                    QueueStyle::Lifo => queued.pop_back(),
                }
                .unwrap();
                if !queued.is_empty() {
                    ring.push_back(key);
                }
                Some((key, item))
            };
            let mut out = VecDeque::new();
            for (seq, op) in ops.into_iter().enumerate() {
                let seq = seq as u32;
                match op {
                    SlotOp::Push(key) => {
                        prop_assert_eq!(queue.push(key, seq), Ok(()));
                        let queued = items.entry(key).or_default();
                        if queued.is_empty() {
                            ring.push_back(key);
                        }
                        queued.push_back(seq);
                    }
                    SlotOp::Pop => {
                        prop_assert_eq!(queue.pop(), model_pop(&mut ring, &mut items));
                    }
                    SlotOp::PopMany(max) => {
                        let taken = queue.pop_many(&mut out, max);
                        let expected: Vec<(u8, u32)> =
                            std::iter::from_fn(|| model_pop(&mut ring, &mut items))
                                .take(max)
                                .collect();
                        prop_assert_eq!(taken, expected.len());
                        prop_assert_eq!(out.drain(..).collect::<Vec<_>>(), expected);
                    }
                    SlotOp::Purge(key) => {
                        let removed = queue.purge(|queued| *queued == key);
                        let expected = items.remove(&key).unwrap_or_default();
                        ring.retain(|queued| *queued != key);
                        if expected.is_empty() {
                            prop_assert!(removed.is_empty());
                        } else {
                            prop_assert_eq!(removed, vec![(key, expected)]);
                        }
                    }
                }
                let mut len = 0;
                let mut bytes = 0;
                for key in 0..6u8 {
                    let all: Vec<u32> = items.get(&key).into_iter().flatten().copied().collect();
                    let weight: usize = all.iter().map(|item| (*item % 7) as usize).sum();
                    prop_assert_eq!(queue.len_of(&key), all.len());
                    prop_assert_eq!(queue.bytes_of(&key), weight);
                    len += all.len();
                    bytes += weight;
                }
                prop_assert_eq!((queue.len(), queue.bytes()), (len, bytes));
                prop_assert_eq!(queue.num_keys(), ring.len());
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
