//! The keyed bounded queue between the network and the applications: one bounded queue per
//! key, round-robin across keys, a drop policy per queue and counters of what happened.
//!
//! [`KeyedQueue`] is the pure core: `push` and `pop`, no locks, no wakers, testable on its own.
//! [`keyed_channel`] wraps it for use across tasks: a cloneable [`KeyedSender`] whose
//! [`push`](KeyedSender::push) never waits (a peer's reader task calls it), and a
//! [`KeyedReceiver`] that is a [`Stream`] (the application awaits it).
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
//! - The number of keys is bounded by what the producers can name (for the facade: connected
//!   peers × protocols), because a key whose queue becomes empty is removed at once.
//!
//! # Back-pressure
//!
//! With [`Overflow::Wait`] a full key queue drops nothing: [`KeyedSender::push`] hands the item
//! back as [`Dropped::Full`], and the producer waits for room
//! ([`KeyedSender::wait_for_room`], at most [`QueueConfig::max_wait_ms`]) before pushing it
//! again. In the facade the producer is a peer's reader task, so while it waits it reads
//! nothing more from that peer's socket and TCP flow control pushes back to the sender, whose
//! outbound lane then fills and refuses with `QueueFull`. The price: every protocol of that
//! peer waits with it, which is why it is opt-in (see [`Overflow::Wait`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

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
    /// [`QueueConfig::max_wait_ms`] per item, and only then drops the pushed item (counted as
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
    /// With [`Overflow::Wait`]: how long a producer waits for room for one item, in
    /// milliseconds, before that item is dropped and counted. Default
    /// [`DEFAULT_MAX_WAIT_MS`]. Ignored with [`Overflow::Drop`].
    pub max_wait_ms: u64,
}

/// Items held per key unless configured: AptosNet's channel capacity (architecture.md,
/// "Defaults").
pub const DEFAULT_CAPACITY_PER_KEY: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

/// How long a producer waits for room in a full [`Overflow::Wait`] queue unless configured:
/// 1 s, long enough to ride out a busy consumer, short enough that a stalled one does not hold
/// a peer's other protocols up for long.
pub const DEFAULT_MAX_WAIT_MS: u64 = 1_000;

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
    /// Pushed items refused because the receiver was gone ([`keyed_channel`] only).
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

/// The producer half of a [`keyed_channel`]: cloneable, and [`push`](Self::push) never waits, so it
/// can be called from any task or thread.
pub struct KeyedSender<K, T> {
    shared: Arc<Shared<K, T>>,
}

/// The consumer half of a [`keyed_channel`]: a [`Stream`] of `(key, item)`, round-robin across keys.
///
/// The stream ends once every [`KeyedSender`] is dropped and the queue is drained. Dropping the
/// receiver drops every queued item; later pushes fail with [`Dropped::Closed`].
pub struct KeyedReceiver<K, T> {
    shared: Arc<Shared<K, T>>,
}

/// A keyed queue shared between any number of [`KeyedSender`]s and one [`KeyedReceiver`].
pub fn keyed_channel<K, T>(config: QueueConfig) -> (KeyedSender<K, T>, KeyedReceiver<K, T>)
where
    K: Hash + Eq + Clone,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: KeyedQueue::new(config),
            senders: 1,
            receiver_alive: true,
            waker: None,
            room_wanted: false,
        }),
        room: Notify::new(),
        wake_owed: AtomicBool::new(false),
    });
    (
        KeyedSender {
            shared: shared.clone(),
        },
        KeyedReceiver { shared },
    )
}

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
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
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

    /// The same config with a producer waiting at most `max_wait_ms` for room
    /// ([`Overflow::Wait`] only).
    pub const fn with_max_wait_ms(mut self, max_wait_ms: u64) -> Self {
        self.max_wait_ms = max_wait_ms;
        self
    }

    /// [`max_wait_ms`](Self::max_wait_ms) as a duration.
    pub const fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
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

    /// Whether a push under `key` would be queued without dropping anything.
    pub fn has_room(&self, key: &K) -> bool {
        self.len_of(key) < self.config.capacity_per_key.get()
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
    fn take_all(&mut self) -> HashMap<K, VecDeque<T>> {
        self.ring.clear();
        self.len = 0;
        std::mem::take(&mut self.queues)
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

impl<K, T> KeyedSender<K, T>
where
    K: Hash + Eq + Clone,
{
    /// Queues `item` under `key` without waiting; see [`KeyedQueue::push`]. Fails with
    /// [`Dropped::Closed`] once the receiver is gone, and with [`Dropped::Full`] when the key's
    /// [`Overflow::Wait`] queue is full (then [`wait_for_room`](Self::wait_for_room) and push
    /// again, or use [`push_wait`](Self::push_wait)). Wakes the receiver.
    pub fn push(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        self.push_with(key, item, false)
    }

    /// Like [`push`](Self::push), but a full key queue drops as its style says even with
    /// [`Overflow::Wait`]: what a producer does once it has waited
    /// [`QueueConfig::max_wait_ms`].
    pub fn push_without_waiting(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        self.push_with(key, item, true)
    }

    /// Like [`push`](Self::push), but does not wake the receiver: it only notes that a wake-up
    /// is owed, and [`wake_deferred`](Self::wake_deferred) delivers it. A producer that pushes
    /// a burst (a peer's reader, with every message decoded from one socket read) wakes the
    /// receiver once for the burst rather than once per item. The producer must call
    /// `wake_deferred` before it waits for anything, or the receiver may sleep on a non-empty
    /// queue.
    pub fn push_deferred(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            state.queue.counters.closed += 1;
            return Err(Dropped::Closed(item));
        }
        let result = state.queue.push(key, item);
        // The receiver registers a waker only when it found the queue empty: while it is busy,
        // pushes owe it nothing.
        if state.waker.is_some()
            && !matches!(result, Err(Dropped::Full(_)))
            && !self.shared.wake_owed.load(Ordering::Relaxed)
        {
            self.shared.wake_owed.store(true, Ordering::Release);
        }
        result
    }

    /// Wakes the receiver if a [`push_deferred`](Self::push_deferred) owes it a wake-up.
    /// Costs one atomic load when none is owed.
    pub fn wake_deferred(&self) {
        if self.shared.wake_owed.load(Ordering::Acquire)
            && self.shared.wake_owed.swap(false, Ordering::AcqRel)
        {
            let waker = self.shared.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    fn push_with(&self, key: K, item: T, without_waiting: bool) -> Result<(), Dropped<T>> {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            state.queue.counters.closed += 1;
            return Err(Dropped::Closed(item));
        }
        let result = if without_waiting {
            state.queue.push_without_waiting(key, item)
        } else {
            state.queue.push(key, item)
        };
        // A refused push queued nothing: no need to wake the receiver for it.
        let waker = match result {
            Err(Dropped::Full(_)) => None,
            _ => state.waker.take(),
        };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }

    /// Whether `self` and `other` push into the same channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The queue's configuration.
    pub fn config(&self) -> QueueConfig {
        self.shared.lock().queue.config()
    }
}

impl<K, T> KeyedSender<K, T>
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Send + 'static,
{
    /// Resolves once `key`'s queue is at most half full, or the receiver is gone; at once if
    /// it is already. Half rather than one free slot, so that a producer that waited then has
    /// room for a burst instead of waiting again at the next item (one wake-up per item when
    /// the consumer is the slower side). Does not reserve the room: another producer may take
    /// it first, and then the next push is refused again.
    ///
    /// Cancel-safe. Does not borrow the sender, so it can be handed to another task.
    pub fn wait_for_room(&self, key: K) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                // Registered before the check, so a pop between the check and the await is
                // not missed.
                let notified = shared.room.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut state = shared.lock();
                    if !state.receiver_alive || state.queue.is_half_empty(&key) {
                        return;
                    }
                    state.room_wanted = true;
                }
                notified.await;
            }
        }
    }

    /// Queues `item` under `key`, waiting for room in a full [`Overflow::Wait`] queue for at
    /// most [`QueueConfig::max_wait_ms`]; then it drops as the style says. With
    /// [`Overflow::Drop`] it never waits. Fails like [`push`](Self::push) otherwise.
    ///
    /// Cancel-safe only in that a cancelled call has queued nothing.
    pub async fn push_wait(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        let mut item = match self.push(key.clone(), item) {
            Err(Dropped::Full(item)) => item,
            done => return done,
        };
        let deadline = tokio::time::Instant::now() + self.config().max_wait();
        loop {
            let room = self.wait_for_room(key.clone());
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.push_without_waiting(key, item);
            }
            item = match self.push(key.clone(), item) {
                Err(Dropped::Full(item)) => item,
                done => return done,
            };
        }
    }

    /// What the queue has done so far.
    pub fn counters(&self) -> QueueCounters {
        self.shared.lock().queue.counters()
    }

    /// Whether the receiver has been dropped.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }
}

impl<K, T> Clone for KeyedSender<K, T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, T> Drop for KeyedSender<K, T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        // The last sender leaving ends the stream once it is drained: wake the receiver so it
        // sees that.
        let waker = (state.senders == 0).then(|| state.waker.take()).flatten();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<K, T> fmt::Debug for KeyedSender<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSender").finish_non_exhaustive()
    }
}

impl<K, T> KeyedReceiver<K, T>
where
    K: Hash + Eq + Clone,
{
    /// The next item, waiting for one; `None` once every sender is gone and the queue is
    /// drained.
    ///
    /// Cancel-safe: an item is taken only when the future completes.
    pub async fn recv(&mut self) -> Option<(K, T)> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<(K, T)> {
        let mut state = self.shared.lock();
        let item = state.queue.pop();
        let room = item.is_some() && std::mem::take(&mut state.room_wanted);
        drop(state);
        if room {
            self.shared.room.notify_waiters();
        }
        item
    }

    /// Polls for up to `max` items at once, into `out` (one lock for the lot): `Ready(n)`
    /// with `n > 0` items taken, `Ready(0)` once every sender is gone and the queue is drained
    /// (or `max` is 0), `Pending` when it is empty.
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<(K, T)>,
        max: usize,
    ) -> Poll<usize> {
        let mut state = self.shared.lock();
        let taken = state.queue.pop_many(out, max);
        if taken > 0 || max == 0 {
            let room = std::mem::take(&mut state.room_wanted);
            drop(state);
            if room {
                self.shared.room.notify_waiters();
            }
            return Poll::Ready(taken);
        }
        if state.senders == 0 {
            return Poll::Ready(0);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Polls for the next item; see [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<(K, T)>> {
        let mut state = self.shared.lock();
        if let Some(item) = state.queue.pop() {
            let room = std::mem::take(&mut state.room_wanted);
            drop(state);
            if room {
                self.shared.room.notify_waiters();
            }
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Items queued, over all keys.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the queue has done so far.
    pub fn counters(&self) -> QueueCounters {
        self.shared.lock().queue.counters()
    }
}

impl<K, T> Stream for KeyedReceiver<K, T>
where
    K: Hash + Eq + Clone,
{
    type Item = (K, T);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<K, T> Drop for KeyedReceiver<K, T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        // Queued items may hold resources (an RPC responder): release them now rather than
        // when the last sender goes.
        let dropped = state.queue.take_all();
        drop(state);
        // Producers waiting for room find the receiver gone and stop waiting.
        self.shared.room.notify_waiters();
        // Dropped outside the lock: an item's destructor may do anything.
        drop(dropped);
    }
}

impl<K, T> fmt::Debug for KeyedReceiver<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedReceiver").finish_non_exhaustive()
    }
}

/// The state both halves of a [`keyed_channel`] share.
struct Shared<K, T> {
    state: Mutex<State<K, T>>,
    /// Rung by a pop when a producer waits for room ([`State::room_wanted`]).
    room: Notify,
    /// A [`KeyedSender::push_deferred`] queued an item for a waiting receiver and has not
    /// woken it yet. Outside the lock, so that checking it costs no lock.
    wake_owed: AtomicBool,
}

struct State<K, T> {
    queue: KeyedQueue<K, T>,
    /// Live [`KeyedSender`]s.
    senders: usize,
    receiver_alive: bool,
    /// The receiver's waker while it waits for an item.
    waker: Option<Waker>,
    /// Set by a producer that found its key full and waits on [`Shared::room`]; the next pop
    /// clears it and rings, so pops cost nothing extra while nobody waits.
    room_wanted: bool,
}

impl<K, T> Shared<K, T> {
    fn lock(&self) -> MutexGuard<'_, State<K, T>> {
        // Nothing in this module panics while holding the lock, and the state is consistent
        // between statements anyway: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use futures::StreamExt;
    use proptest::prelude::*;

    use super::*;

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

    /// The receiver wakes on a push from another task and the stream ends when the senders
    /// are gone and the queue is drained.
    #[tokio::test]
    async fn receiver_wakes_on_push_and_ends_after_the_last_sender() {
        let (tx, mut rx) = keyed_channel::<u8, u32>(QueueConfig::default());
        let tx2 = tx.clone();
        let producer = tokio::spawn(async move {
            tx2.push(1, 7).unwrap();
        });
        assert_eq!(rx.next().await, Some((1, 7)));
        producer.await.unwrap();
        tx.push(2, 8).unwrap();
        drop(tx);
        assert_eq!(rx.next().await, Some((2, 8)));
        assert_eq!(rx.next().await, None);
    }

    /// Once the receiver is dropped, pushes hand the item back as closed, and queued items
    /// are released.
    #[test]
    fn pushes_after_the_receiver_is_dropped_fail_as_closed() {
        let (tx, rx) = keyed_channel::<u8, Arc<()>>(QueueConfig::default());
        let item = Arc::new(());
        tx.push(1, item.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1, "queued items are dropped");
        assert!(matches!(tx.push(1, item), Err(Dropped::Closed(_))));
        assert_eq!(tx.counters().closed, 1);
        assert!(tx.is_closed());
    }

    /// A full back-pressure key refuses without dropping; `push_wait` waits for the pop that
    /// makes room, then queues; a waiter stops waiting when the receiver goes; after
    /// `max_wait_ms` the pushed item is dropped as the newest.
    #[tokio::test(start_paused = true)]
    async fn backpressure_queue_waits_for_room_instead_of_dropping() {
        let config = QueueConfig::backpressure(NonZeroUsize::new(1).unwrap());
        let (tx, mut rx) = keyed_channel::<u8, u32>(config);
        tx.push(1, 10).unwrap();
        assert_eq!(tx.push(1, 11), Err(Dropped::Full(11)));
        tx.push(2, 20).unwrap();
        let producer = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push_wait(1, 12).await }
        });
        tokio::task::yield_now().await;
        assert!(!producer.is_finished());
        assert_eq!(rx.next().await, Some((1, 10)));
        producer.await.unwrap().unwrap();
        assert_eq!(rx.next().await, Some((2, 20)));
        assert_eq!(rx.next().await, Some((1, 12)));
        let counters = rx.counters();
        // Refused twice: the plain push of 11, and the first try of `push_wait(12)`.
        assert_eq!((counters.full, counters.dropped_newest), (2, 0));

        // Nobody pops: the wait ends at `max_wait_ms` and the item is dropped.
        tx.push(1, 13).unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(tx.push_wait(1, 14).await, Err(Dropped::Newest(14)));
        assert_eq!(start.elapsed(), config.max_wait());

        let waiter = tokio::spawn(tx.wait_for_room(1));
        tokio::task::yield_now().await;
        drop(rx);
        waiter.await.unwrap();
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
