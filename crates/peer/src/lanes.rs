//! [`Lanes`]: one connection's outbound queue (the pure [`OutboundQueue`] behind a lock), with
//! the wake-ups around it: the writer's doorbell, rung by a push that finds it idle, and the
//! room signal that [`Lanes::push_wait`] callers wait on. The lock is a `std::sync::Mutex` held
//! for a few queue operations and never across an `.await`; wake-ups and logs happen after it
//! is released.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{Span, debug, trace};
use wire::{NetworkMessage, StreamLimits};

use crate::error::Error;
use crate::lock::lock;
use crate::metrics::{DropReason, Metrics};
use crate::priority::Priority;
use crate::queue::{OutboundQueue, PushError};

/// A message waiting in the outbound queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) message: NetworkMessage,
    /// The lane it was queued on.
    pub(crate) lane: Priority,
    /// Whether it must be streamed (`wire::needs_stream`), decided once at push time.
    pub(crate) large: bool,
}

/// The outbound lanes, and whether the writer is waiting for a push.
#[derive(Debug)]
struct QueueState {
    lanes: OutboundQueue<Outbound>,
    /// Set by the writer, under this lock, when it found the lanes empty and is about to
    /// wait; cleared by the push that rings the doorbell. Because both happen under the lock
    /// that guards the lanes, a push either lands before the writer's emptiness check (which
    /// then sees it) or sees the flag (and rings). Pushes to a busy writer skip the doorbell.
    writer_idle: bool,
}

/// One connection's two outbound lanes, pushed to by handles, responders and the reader, and
/// drained by the writer. Counts what it drops.
#[derive(Debug)]
pub(crate) struct Lanes {
    limits: StreamLimits,
    /// Largest payload we can send: `max_message_size`, or less when the frame size allows
    /// fewer bytes in `max_fragments` fragments.
    max_payload: usize,
    metrics: Arc<Metrics>,
    /// The connection's span, for events logged from the callers' tasks.
    span: Span,
    queue: Mutex<QueueState>,
    /// Rung by a push that finds the writer idle. `Notify` keeps one permit when the writer is
    /// not waiting yet, so the ring is not lost if the writer has marked itself idle but not
    /// started waiting.
    doorbell: Notify,
    /// Rung (`notify_waiters`) by the writer when a lane that refused a push has drained to
    /// half of its bounds, and on close: what [`Self::push_wait`] waits on.
    room: Notify,
    /// Set when several tasks that are likely to push soon were woken together (the reader
    /// answered several of our RPCs in one read); taken by the writer before it flushes, as
    /// the sign that waiting for them is worth a yield. See the writer's "Batching".
    burst_expected: AtomicBool,
}

impl Lanes {
    /// Empty lanes of `capacity` messages and `max_bytes` payload bytes each, for messages
    /// sent within `limits`.
    pub(crate) fn new(
        capacity: usize,
        max_bytes: usize,
        limits: StreamLimits,
        metrics: Arc<Metrics>,
        span: Span,
    ) -> Self {
        let threshold = limits.fragment_threshold();
        let max_payload = limits
            .max_message_size()
            .min(threshold.saturating_mul(limits.max_fragments() + 1));
        Self {
            limits,
            max_payload,
            metrics,
            span,
            queue: Mutex::new(QueueState {
                lanes: OutboundQueue::with_byte_budget(capacity, max_bytes),
                writer_idle: false,
            }),
            doorbell: Notify::new(),
            room: Notify::new(),
            burst_expected: AtomicBool::new(false),
        }
    }

    /// Refuses a payload we could not send.
    pub(crate) fn check_payload(&self, len: usize) -> Result<(), Error> {
        if len > self.max_payload {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    /// Queues `message` on `lane` and wakes the writer if it is idle. A full lane is counted.
    pub(crate) fn push(&self, lane: Priority, message: NetworkMessage) -> Result<(), Error> {
        self.push_to(Budget::Lane(lane), message)
    }

    /// Queues an RPC response on the high lane, held to the responses' own bounds
    /// ([`OutboundQueue::push_response`]). A refusal is counted as a high-lane drop.
    pub(crate) fn push_response(&self, message: NetworkMessage) -> Result<(), Error> {
        self.push_to(Budget::Responses, message)
    }

    fn push_to(&self, budget: Budget, message: NetworkMessage) -> Result<(), Error> {
        match self.try_push(budget, message) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => {
                let lane = budget.lane();
                self.metrics
                    .record_outbound_dropped(lane, DropReason::Full, 1);
                Err(Error::QueueFull { lane })
            }
            Err(PushError::Closed(_)) => Err(Error::Disconnected),
        }
    }

    /// Queues `message` on `lane`, waiting for room while the lane is full; fails with
    /// [`Error::Disconnected`] once the peer is closing. Nothing is counted as dropped unless
    /// the caller gives up (drops the future) while waiting.
    ///
    /// No wake-up is lost: after a refusal we register for [`Self::room`] and only then push
    /// again, and a refused push marks its lane (under the queue lock) for the writer to signal
    /// once it has drained. The first try registers nothing: registering takes the `Notify`'s
    /// lock, which would cost every push while the lane has room.
    pub(crate) async fn push_wait(
        &self,
        lane: Priority,
        message: NetworkMessage,
    ) -> Result<(), Error> {
        self.push_wait_to(Budget::Lane(lane), message).await
    }

    /// [`Self::push_response`], waiting for room while the responses' budget is full, as
    /// [`Self::push_wait`] does for a lane.
    pub(crate) async fn push_response_wait(&self, message: NetworkMessage) -> Result<(), Error> {
        self.push_wait_to(Budget::Responses, message).await
    }

    async fn push_wait_to(&self, budget: Budget, message: NetworkMessage) -> Result<(), Error> {
        let lane = budget.lane();
        let mut message = match self.try_push(budget, message) {
            Ok(()) => return Ok(()),
            Err(PushError::Closed(_)) => return Err(Error::Disconnected),
            Err(PushError::Full(message)) => message,
        };
        // Armed while we wait: a caller that gives up has dropped its message after all.
        let mut give_up = GiveUp {
            lanes: self,
            lane,
            armed: true,
        };
        loop {
            let notified = self.room.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            match self.try_push(budget, message) {
                Ok(()) => {
                    give_up.armed = false;
                    return Ok(());
                }
                Err(PushError::Closed(_)) => {
                    give_up.armed = false;
                    return Err(Error::Disconnected);
                }
                Err(PushError::Full(item)) => message = item,
            }
            trace!(parent: &self.span, %lane, "outbound lane full, waiting for room");
            notified.await;
        }
    }

    /// Queues `message` within `budget` and wakes the writer if it is idle; counts nothing.
    fn try_push(
        &self,
        budget: Budget,
        message: NetworkMessage,
    ) -> Result<(), PushError<NetworkMessage>> {
        let large = wire::needs_stream(&message, &self.limits);
        let bytes = message.payload_len();
        let lane = budget.lane();
        let (pushed, ring) = {
            let mut state = lock(&self.queue);
            let item = Outbound {
                message,
                lane,
                large,
            };
            let pushed = match budget {
                Budget::Lane(lane) => state.lanes.push_sized(lane, item, bytes),
                Budget::Responses => state.lanes.push_response(item, bytes),
            };
            let ring = pushed.is_ok() && std::mem::take(&mut state.writer_idle);
            (pushed, ring)
        };
        match pushed {
            Ok(()) => {
                if ring {
                    self.doorbell.notify_one();
                }
                Ok(())
            }
            Err(PushError::Full(item)) => Err(PushError::Full(item.message)),
            Err(PushError::Closed(item)) => Err(PushError::Closed(item.message)),
        }
    }

    /// The oldest queued message `accept` takes, high lane first.
    pub(crate) fn pop_where(&self, accept: impl FnMut(&Outbound) -> bool) -> Option<Outbound> {
        let (popped, room) = {
            let mut state = lock(&self.queue);
            let popped = state.lanes.pop_where(accept).map(|(_, item)| item);
            (popped, state.lanes.take_room())
        };
        if room {
            self.room.notify_waiters();
        }
        popped
    }

    /// Moves up to `max` messages into `out`, in the order `pop` would give them.
    pub(crate) fn pop_batch(&self, out: &mut VecDeque<Outbound>, max: usize) {
        let room = {
            let mut state = lock(&self.queue);
            state.lanes.pop_into(out, max);
            state.lanes.take_room()
        };
        if room {
            self.room.notify_waiters();
        }
    }

    /// Tells the writer that several tasks were just woken together and will likely push
    /// soon: its next flush waits for them (one yield).
    pub(crate) fn expect_burst(&self) {
        self.burst_expected.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::expect_burst`] was called since the last call; clears it.
    pub(crate) fn take_burst_hint(&self) -> bool {
        // A load first: the common case (no burst) then writes nothing to the shared line.
        self.burst_expected.load(Ordering::Relaxed)
            && self.burst_expected.swap(false, Ordering::Relaxed)
    }

    /// Messages queued in both lanes.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.queue).lanes.total_len()
    }

    /// For the writer, once it has written everything: resolves at once if a message was
    /// queued meanwhile, else after the next push. May resolve spuriously. Cancel-safe.
    pub(crate) async fn wait_for_push(&self) {
        {
            let mut state = lock(&self.queue);
            if !state.lanes.is_empty() {
                return;
            }
            state.writer_idle = true;
        }
        self.doorbell.notified().await;
    }

    /// Refuses every later push; what is queued stays for the writer to drain. Callers
    /// waiting for room retry, find the queue closed and fail.
    pub(crate) fn close(&self) {
        lock(&self.queue).lanes.close();
        self.room.notify_waiters();
    }

    /// Empties the queue when the writer stops, counting what was left, and the messages the
    /// writer had taken but not written (`taken`), as dropped.
    pub(crate) fn drop_queued(&self, taken: impl Iterator<Item = Outbound>) -> usize {
        let [mut high, mut low] = lock(&self.queue).lanes.clear();
        for item in taken {
            match item.lane {
                Priority::High => high += 1,
                Priority::Low => low += 1,
            }
        }
        for (lane, count) in [(Priority::High, high), (Priority::Low, low)] {
            self.metrics
                .record_outbound_dropped(lane, DropReason::Closed, count as u64);
        }
        high + low
    }
}

/// Whose bounds a pushed message is held to.
#[derive(Clone, Copy, Debug)]
enum Budget {
    /// Its lane's.
    Lane(Priority),
    /// The RPC responses' own, on the high lane.
    Responses,
}

impl Budget {
    /// The lane the message goes out on.
    fn lane(self) -> Priority {
        match self {
            Self::Lane(lane) => lane,
            Self::Responses => Priority::High,
        }
    }
}

/// Counts the message of a [`Lanes::push_wait`] whose caller gave up while it waited.
struct GiveUp<'a> {
    lanes: &'a Lanes,
    lane: Priority,
    armed: bool,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.lanes
                .metrics
                .record_outbound_dropped(self.lane, DropReason::Full, 1);
            debug!(parent: &self.lanes.span, lane = %self.lane, "gave up waiting for outbound room, message dropped");
        }
    }
}
