//! [`keyed_channel`]: the [`KeyedQueue`] shared across tasks. A cloneable [`KeyedSender`]
//! whose [`push`](KeyedSender::push) never waits (a peer's reader task calls it), a
//! [`KeyedReceiver`] that is a [`Stream`] (the application awaits it), the wake-ups between
//! them, and back-pressure: a producer that found its key full waits for room.

use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use tokio::sync::Notify;

use crate::queue::{Dropped, KeyedQueue, QueueConfig, QueueCounters};

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
    weighed_keyed_channel(config, |_| 0)
}

/// A [`keyed_channel`] whose items weigh `weigh(item)` bytes against the queue's byte budgets
/// ([`QueueConfig::max_bytes_per_key`], [`QueueConfig::max_bytes`]).
pub fn weighed_keyed_channel<K, T>(
    config: QueueConfig,
    weigh: fn(&T) -> usize,
) -> (KeyedSender<K, T>, KeyedReceiver<K, T>)
where
    K: Hash + Eq + Clone,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: KeyedQueue::with_weigher(config, weigh),
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

impl<K, T> KeyedSender<K, T>
where
    K: Hash + Eq + Clone,
{
    /// Queues `item` under `key` without waiting; see [`KeyedQueue::push`](crate::queue::KeyedQueue::push). Fails with
    /// [`Dropped::Closed`] once the receiver is gone, and with [`Dropped::Full`] when the key's
    /// [`Overflow::Wait`] queue is full (then [`wait_for_room`](Self::wait_for_room) and push
    /// again, or use [`push_wait`](Self::push_wait)). Wakes the receiver.
    pub fn push(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        self.push_with(key, item, false)
    }

    /// Like [`push`](Self::push), but a full key queue drops as its style says even with
    /// [`Overflow::Wait`]: what a producer does once it has waited
    /// [`QueueConfig::max_wait`].
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
            state.queue.count_closed();
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

    /// [`push_deferred`](Self::push_deferred) for each of `items` under `key`, in order, under
    /// one lock: for a burst from one producer to one key. `outcome` gets each push's result
    /// and says whether to go on; the items after a `false` are not taken from `items`.
    /// `outcome` runs under the queue's lock: it must not touch this queue.
    pub fn push_many_deferred(
        &self,
        key: &K,
        items: impl Iterator<Item = T>,
        mut outcome: impl FnMut(Result<(), Dropped<T>>) -> bool,
    ) {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            for item in items {
                state.queue.count_closed();
                if !outcome(Err(Dropped::Closed(item))) {
                    break;
                }
            }
            return;
        }
        let mut owed = false;
        state.queue.push_run(key, items, |result| {
            owed |= !matches!(result, Err(Dropped::Full(_)));
            outcome(result)
        });
        // As in `push_deferred`: owed only to a receiver that waits.
        if owed && state.waker.is_some() && !self.shared.wake_owed.load(Ordering::Relaxed) {
            self.shared.wake_owed.store(true, Ordering::Release);
        }
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
            state.queue.count_closed();
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

    /// Removes every item queued under the keys `purge` picks (see
    /// [`KeyedQueue::purge`](crate::queue::KeyedQueue::purge)) and returns how many it removed
    /// per key. The items are dropped outside the lock.
    pub fn purge(&self, purge: impl FnMut(&K) -> bool) -> Vec<(K, usize)> {
        let removed = self.shared.lock().queue.purge(purge);
        removed
            .into_iter()
            .map(|(key, items)| (key, items.len()))
            .collect()
    }

    /// What the queued items weigh, over all keys.
    pub fn bytes(&self) -> usize {
        self.shared.lock().queue.bytes()
    }

    /// What the items queued under `key` weigh.
    pub fn bytes_of(&self, key: &K) -> usize {
        self.shared.lock().queue.bytes_of(key)
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
    /// most [`QueueConfig::max_wait`]; then it drops as the style says. With
    /// [`Overflow::Drop`] it never waits. Fails like [`push`](Self::push) otherwise.
    ///
    /// Cancel-safe only in that a cancelled call has queued nothing.
    pub async fn push_wait(&self, key: K, item: T) -> Result<(), Dropped<T>> {
        let mut item = match self.push(key.clone(), item) {
            Err(Dropped::Full(item)) => item,
            done => return done,
        };
        let deadline = tokio::time::Instant::now() + self.config().max_wait;
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

    /// What the queued items weigh, over all keys.
    pub fn bytes(&self) -> usize {
        self.shared.lock().queue.bytes()
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
    use std::num::NonZeroUsize;

    use futures::StreamExt;

    use super::*;

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
        assert_eq!(start.elapsed(), config.max_wait);

        let waiter = tokio::spawn(tx.wait_for_room(1));
        tokio::task::yield_now().await;
        drop(rx);
        waiter.await.unwrap();
    }
}
