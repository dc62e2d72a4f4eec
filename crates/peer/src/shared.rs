//! [`Shared`]: the state of one connection that its handles, its responders and its two tasks
//! all touch, and the operations on it. Every lock here is a `std::sync::Mutex` held for a few
//! table operations and never across an `.await`; oneshot sends and logs happen after the lock
//! is released. No lock is taken while another is held.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, trace};
use wire::{NetworkMessage, ProtocolId, RequestId, RpcResponse, StreamLimits};

use crate::config::Config;
use crate::connection::ConnectionMetadata;
use crate::error::Error;
use crate::handle::DisconnectReason;
use crate::metrics::{DropReason, InboundRpcOutcome, Metrics, RpcFailure, UnmatchedResponse};
use crate::queue::{OutboundQueue, Priority, PushError};
use crate::rpc::{
    InboundRpcs, InboundSlot, InsertError, OutboundRpcs, RequestRefused, ResponseMatch,
    ResponseRefused,
};

/// A message waiting in the outbound queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) message: NetworkMessage,
    /// The lane it was queued on.
    pub(crate) lane: Priority,
    /// Whether it must be streamed (`wire::needs_stream`), decided once at push time.
    pub(crate) large: bool,
}

/// Whom to tell how an outbound RPC ended.
#[derive(Debug)]
pub(crate) struct RpcWaiter {
    tx: oneshot::Sender<Result<Bytes, Error>>,
    protocol: ProtocolId,
    timeout: Duration,
}

impl RpcWaiter {
    pub(crate) fn new(
        tx: oneshot::Sender<Result<Bytes, Error>>,
        protocol: ProtocolId,
        timeout: Duration,
    ) -> Self {
        Self {
            tx,
            protocol,
            timeout,
        }
    }
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

/// The state of one connection shared by its handles, responders, reader and writer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) metadata: ConnectionMetadata,
    pub(crate) config: Config,
    pub(crate) limits: StreamLimits,
    pub(crate) metrics: Metrics,
    /// The connection's span (peer, conn_id, origin), for events logged outside its tasks.
    pub(crate) span: Span,
    /// Cancelled when the peer starts closing; a child of the node's shutdown token.
    pub(crate) cancel: CancellationToken,
    /// Largest payload we can send: `max_message_size`, or less when the frame size allows
    /// fewer bytes in `max_fragments` fragments.
    max_payload: usize,
    queue: Mutex<QueueState>,
    /// Rung by a push that finds the writer idle. `Notify` keeps one permit when the writer is
    /// not waiting yet, so the ring is not lost if the writer has marked itself idle but not
    /// started waiting.
    doorbell: Notify,
    /// Rung (`notify_waiters`) by the writer when a lane that refused a push has drained to
    /// half of its bounds, and on close: what [`Self::push_wait`] waits on.
    room: Notify,
    outbound_rpcs: Mutex<OutboundRpcs<RpcWaiter>>,
    inbound_rpcs: Mutex<InboundRpcs>,
    /// Why the peer is closing; the first reason recorded wins.
    reason: OnceLock<DisconnectReason>,
    /// `Some(reason)` once both tasks have ended.
    closed_tx: watch::Sender<Option<DisconnectReason>>,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        limits: StreamLimits,
        metadata: ConnectionMetadata,
        metrics: Metrics,
        span: Span,
        cancel: CancellationToken,
    ) -> Self {
        let threshold = limits.fragment_threshold();
        let max_payload = limits
            .max_message_size()
            .min(threshold.saturating_mul(limits.max_fragments() + 1));
        Self {
            queue: Mutex::new(QueueState {
                lanes: OutboundQueue::with_byte_budget(
                    config.outbound_lane_capacity,
                    config.max_queued_bytes,
                ),
                writer_idle: false,
            }),
            outbound_rpcs: Mutex::new(OutboundRpcs::new(config.max_concurrent_outbound_rpcs)),
            inbound_rpcs: Mutex::new(InboundRpcs::new(config.max_concurrent_inbound_rpcs)),
            metadata,
            config,
            limits,
            metrics,
            span,
            cancel,
            max_payload,
            doorbell: Notify::new(),
            room: Notify::new(),
            reason: OnceLock::new(),
            closed_tx: watch::Sender::new(None),
        }
    }

    // Outbound queue.

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
        match self.try_push(lane, message) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => {
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
        let mut message = match self.try_push(lane, message) {
            Ok(()) => return Ok(()),
            Err(PushError::Closed(_)) => return Err(Error::Disconnected),
            Err(PushError::Full(message)) => message,
        };
        // Armed while we wait: a caller that gives up has dropped its message after all.
        let mut give_up = GiveUp {
            shared: self,
            lane,
            armed: true,
        };
        loop {
            let notified = self.room.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            match self.try_push(lane, message) {
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

    /// Queues `message` on `lane` and wakes the writer if it is idle; counts nothing.
    fn try_push(
        &self,
        lane: Priority,
        message: NetworkMessage,
    ) -> Result<(), PushError<NetworkMessage>> {
        let large = wire::needs_stream(&message, &self.limits);
        let bytes = message.payload_len();
        let (pushed, ring) = {
            let mut state = lock(&self.queue);
            let item = Outbound {
                message,
                lane,
                large,
            };
            let pushed = state.lanes.push_sized(lane, item, bytes);
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

    /// Messages queued in both lanes.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.queue).lanes.total_len()
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

    // Outbound RPCs.

    /// Registers an outbound RPC and allocates its id. Expired entries are purged first.
    pub(crate) fn start_rpc(
        &self,
        protocol: ProtocolId,
        now: Instant,
        deadline: Instant,
        waiter: RpcWaiter,
    ) -> Result<RequestId, Error> {
        let (inserted, expired, max) = {
            let mut rpcs = lock(&self.outbound_rpcs);
            rpcs.handle_timeout(now);
            let expired = drain_outbound_expired(&mut rpcs);
            (
                rpcs.insert(protocol, deadline, waiter),
                expired,
                rpcs.max_pending(),
            )
        };
        self.deliver_timeouts(expired);
        inserted.map_err(|err| match err {
            InsertError::TooMany => {
                self.metrics.record_rpc_failure(RpcFailure::TooManyPending);
                Error::TooManyPendingRpcs { max }
            }
            InsertError::Closed => {
                self.metrics.record_rpc_failure(RpcFailure::Disconnected);
                Error::Disconnected
            }
        })
    }

    /// Forgets an RPC whose caller gave up (`reason` says why); counted if it was pending.
    pub(crate) fn abandon_rpc(&self, id: RequestId, reason: RpcFailure) {
        if lock(&self.outbound_rpcs).cancel(id).is_some() {
            self.metrics.record_rpc_failure(reason);
            if reason == RpcFailure::Cancelled {
                debug!(parent: &self.span, request_id = %id, "rpc cancelled by its caller");
            }
        }
    }

    /// Expires every outbound RPC due at `now` and tells its caller.
    pub(crate) fn expire_rpcs(&self, now: Instant) {
        let expired = {
            let mut rpcs = lock(&self.outbound_rpcs);
            rpcs.handle_timeout(now);
            drain_outbound_expired(&mut rpcs)
        };
        self.deliver_timeouts(expired);
    }

    /// A response with `id` arrived: complete its RPC, or count it as unmatched.
    pub(crate) fn complete_rpc(&self, id: RequestId, payload: Bytes, now: Instant) {
        let (matched, expired) = {
            let mut rpcs = lock(&self.outbound_rpcs);
            let matched = rpcs.handle_response(id, now);
            (matched, drain_outbound_expired(&mut rpcs))
        };
        self.deliver_timeouts(expired);
        let unmatched = match matched {
            ResponseMatch::Matched(waiter) => match waiter.tx.send(Ok(payload)) {
                Ok(()) => return,
                // The caller dropped its future after we matched: as good as unknown.
                Err(_) => UnmatchedResponse::Unknown,
            },
            ResponseMatch::Expired => UnmatchedResponse::Expired,
            ResponseMatch::Unknown => UnmatchedResponse::Unknown,
        };
        self.metrics.record_unmatched_response(unmatched);
        debug!(parent: &self.span, request_id = %id, reason = %unmatched, "rpc response matches no pending request");
    }

    /// The remote does not serve RPCs on `protocol`: fail the oldest pending one. Returns
    /// whether one was pending.
    pub(crate) fn fail_not_supported(&self, protocol: ProtocolId) -> bool {
        let failed = lock(&self.outbound_rpcs).handle_not_supported(protocol);
        let Some((id, waiter)) = failed else {
            return false;
        };
        self.metrics
            .record_rpc_failure(RpcFailure::RemoteNotSupported);
        debug!(parent: &self.span, request_id = %id, %protocol, "remote does not support the rpc protocol");
        // The caller may have given up meanwhile; nothing else to do then.
        let _ = waiter.tx.send(Err(Error::RemoteNotSupported(protocol)));
        true
    }

    fn deliver_timeouts(&self, expired: Vec<(RequestId, RpcWaiter)>) {
        for (id, waiter) in expired {
            self.metrics.record_rpc_failure(RpcFailure::Timeout);
            debug!(parent: &self.span, request_id = %id, protocol = %waiter.protocol, timeout = ?waiter.timeout, "rpc timed out");
            let error = Error::Timeout {
                protocol: waiter.protocol,
                timeout: waiter.timeout,
            };
            // The caller may be gone; its cancel found the entry expired already.
            let _ = waiter.tx.send(Err(error));
        }
    }

    // Inbound RPCs.

    /// Admits an inbound request arriving at `now`, if fewer than the maximum are pending.
    /// Returns its slot and deadline.
    pub(crate) fn accept_inbound_rpc(
        &self,
        request_id: RequestId,
        protocol: ProtocolId,
        now: Instant,
    ) -> Result<(InboundSlot, Instant), RequestRefused> {
        let deadline = deadline_after(now, self.config.inbound_rpc_timeout);
        let (accepted, expired) = {
            let mut rpcs = lock(&self.inbound_rpcs);
            let accepted = rpcs.handle_request(request_id, protocol, now, deadline);
            (accepted, drain_inbound_expired(&mut rpcs))
        };
        self.count_inbound_expired(expired);
        accepted.map(|slot| (slot, deadline))
    }

    /// Sends the application's answer to the inbound request in `slot`, if its deadline has
    /// not passed.
    pub(crate) fn respond_inbound_rpc(
        &self,
        slot: InboundSlot,
        request_id: RequestId,
        protocol: ProtocolId,
        payload: Bytes,
    ) -> Result<(), Error> {
        if let Err(err) = self.check_payload(payload.len()) {
            self.drop_inbound_rpc(slot);
            return Err(err);
        }
        let now = Instant::now();
        let (answered, expired) = {
            let mut rpcs = lock(&self.inbound_rpcs);
            let answered = rpcs.handle_response(slot, now);
            (answered, drain_inbound_expired(&mut rpcs))
        };
        self.count_inbound_expired(expired);
        match answered {
            Ok(rpc) => {
                let response = NetworkMessage::RpcResponse(RpcResponse {
                    request_id: rpc.request_id,
                    priority: Priority::High.wire_byte(),
                    raw_response: payload,
                });
                // Responses always take the high lane: a remote is waiting on each one.
                let pushed = self.push(Priority::High, response);
                let outcome = if pushed.is_ok() {
                    InboundRpcOutcome::Answered
                } else {
                    InboundRpcOutcome::Unanswered
                };
                self.metrics.record_inbound_rpc(outcome);
                pushed
            }
            Err(ResponseRefused::Expired) => {
                self.metrics.record_inbound_rpc(InboundRpcOutcome::Late);
                debug!(parent: &self.span, %request_id, %protocol, "inbound rpc answered after its deadline");
                Err(Error::InboundRpcExpired {
                    protocol,
                    request_id,
                    timeout: self.config.inbound_rpc_timeout,
                })
            }
            Err(ResponseRefused::Closed) => Err(Error::Disconnected),
        }
    }

    /// The application dropped an inbound request unanswered: free its slot.
    pub(crate) fn drop_inbound_rpc(&self, slot: InboundSlot) {
        let dropped = lock(&self.inbound_rpcs).handle_drop(slot);
        if let Some(rpc) = dropped {
            self.metrics
                .record_inbound_rpc(InboundRpcOutcome::Unanswered);
            // Common and harmless (an application chose not to answer): debug, not warn.
            debug!(parent: &self.span, request_id = %rpc.request_id, protocol = %rpc.protocol, "inbound rpc dropped unanswered");
        }
    }

    fn count_inbound_expired(&self, expired: Vec<crate::rpc::InboundRpc>) {
        for rpc in expired {
            self.metrics.record_inbound_rpc(InboundRpcOutcome::Expired);
            debug!(parent: &self.span, request_id = %rpc.request_id, protocol = %rpc.protocol, "inbound rpc expired unanswered");
        }
    }

    // Lifecycle.

    /// Starts closing the peer for `reason`, unless it is closing already (the first reason
    /// wins): refuses new messages and RPCs, fails every pending outbound RPC with
    /// [`Error::Disconnected`], frees the inbound slots, and cancels the peer's tasks. The
    /// writer then drains what is queued within `writer_close_timeout`.
    pub(crate) fn begin_close(&self, reason: DisconnectReason) {
        if self.reason.set(reason).is_ok() {
            debug!(parent: &self.span, %reason, "peer disconnecting");
            lock(&self.queue).lanes.close();
            // Callers waiting for room retry, find the queue closed and fail.
            self.room.notify_waiters();
            let waiters = lock(&self.outbound_rpcs).close();
            lock(&self.inbound_rpcs).close();
            for waiter in waiters {
                self.metrics.record_rpc_failure(RpcFailure::Disconnected);
                // A caller that gave up meanwhile needs no answer.
                let _ = waiter.tx.send(Err(Error::Disconnected));
            }
        }
        self.cancel.cancel();
    }

    /// Both tasks have ended: publish the reason to [`PeerHandle::closed`] waiters.
    ///
    /// [`PeerHandle::closed`]: crate::PeerHandle::closed
    fn finish(&self) {
        // Normally a reason is recorded before the tasks end; without one, the runtime dropped
        // them (it is shutting down).
        self.begin_close(DisconnectReason::Shutdown);
        let reason = self
            .disconnect_reason()
            .unwrap_or(DisconnectReason::Shutdown);
        self.metrics.record_disconnect(reason);
        tracing::info!(parent: &self.span, %reason, "peer disconnected");
        self.closed_tx.send_replace(Some(reason));
    }

    /// Why the peer is closing or closed; `None` while it runs.
    pub(crate) fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.reason.get().copied()
    }

    /// A receiver that sees `Some(reason)` once both tasks have ended.
    pub(crate) fn subscribe_closed(&self) -> watch::Receiver<Option<DisconnectReason>> {
        self.closed_tx.subscribe()
    }
}

/// Counts the message of a [`Shared::push_wait`] whose caller gave up while it waited.
struct GiveUp<'a> {
    shared: &'a Shared,
    lane: Priority,
    armed: bool,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .metrics
                .record_outbound_dropped(self.lane, DropReason::Full, 1);
            debug!(parent: &self.shared.span, lane = %self.lane, "gave up waiting for outbound room, message dropped");
        }
    }
}

/// Held by both tasks; when the last one drops it (its task has ended, normally or not), the
/// peer is closed for good.
#[derive(Debug)]
pub(crate) struct TaskExit(Arc<Shared>);

impl TaskExit {
    pub(crate) fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Self(shared))
    }
}

impl Drop for TaskExit {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// `now + timeout`, or about a century from now if that overflows (a caller asking for
/// `Duration::MAX` means "no timeout").
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(FAR_FUTURE_SECS))
}

/// Locks a table. A panic while a lock was held cannot leave a table half-updated (each
/// update is a single map or queue operation), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn drain_outbound_expired(rpcs: &mut OutboundRpcs<RpcWaiter>) -> Vec<(RequestId, RpcWaiter)> {
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}

fn drain_inbound_expired(rpcs: &mut InboundRpcs) -> Vec<crate::rpc::InboundRpc> {
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}

/// What "no timeout" turns into: 100 years.
const FAR_FUTURE_SECS: u64 = 100 * 365 * 24 * 60 * 60;
