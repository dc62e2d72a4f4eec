//! [`RpcTables`]: one connection's two RPC tables (the pure ones of `rpc`) behind locks, and
//! what happens to their entries: outbound waiters are told their outcome over a oneshot,
//! inbound slots are freed, and every outcome is counted and logged. Each lock is a
//! `std::sync::Mutex` held for a few table operations and never across an `.await`; oneshot
//! sends and logs happen after it is released, and no lock is taken while another is held.
//!
//! Outbound deadlines are kept by one timer per connection, the reader's, rather than one per
//! RPC: the tables keep the time that timer is set for ([`RpcTables::timer_deadline`]), at or
//! before every pending deadline, and ring [`RpcTables::timer_moved`] when a new request is
//! due earlier. When it fires, [`RpcTables::expire_due`] times out what is due and sets the next
//! time. With one timeout for all requests a new one is never due earliest, so the busy path
//! only compares two instants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tracing::{Span, debug};
use wire::{ProtocolId, RequestId};

use crate::deadline_table::{Refused, deadline_after};
use crate::error::Error;
use crate::lock::lock;
use crate::metrics::{InboundRpcOutcome, Metrics, RpcFailure, UnmatchedResponse};
use crate::rpc::{
    InboundRpc, InboundRpcs, InboundSlot, OutboundRpcs, ResponseMatch, ResponseRefused,
};

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

/// The RPCs of one connection in flight both ways.
#[derive(Debug)]
pub(crate) struct RpcTables {
    outbound: Mutex<Outbound>,
    /// Rung when a new request is due before the time the reader's timer is set for.
    timer_moved: Notify,
    inbound: Mutex<InboundRpcs>,
    /// Time an application has to answer an inbound request.
    inbound_timeout: Duration,
    metrics: Arc<Metrics>,
    /// The connection's span, for events logged from the callers' tasks.
    span: Span,
}

/// The outbound table and the time the reader's timer is set for (at or before every pending
/// deadline; `None` when nothing is pending).
#[derive(Debug)]
struct Outbound {
    rpcs: OutboundRpcs<RpcWaiter>,
    timer: Option<Instant>,
}

impl RpcTables {
    /// Empty tables admitting `max_outbound` and `max_inbound` RPCs at once.
    pub(crate) fn new(
        max_outbound: usize,
        max_inbound: usize,
        inbound_timeout: Duration,
        metrics: Arc<Metrics>,
        span: Span,
    ) -> Self {
        Self {
            outbound: Mutex::new(Outbound {
                rpcs: OutboundRpcs::new(max_outbound),
                timer: None,
            }),
            timer_moved: Notify::new(),
            inbound: Mutex::new(InboundRpcs::new(max_inbound)),
            inbound_timeout,
            metrics,
            span,
        }
    }

    // Outbound RPCs.

    /// Registers an outbound RPC and allocates its id. Expired entries are purged first.
    pub(crate) fn start(
        &self,
        protocol: ProtocolId,
        now: Instant,
        deadline: Instant,
        waiter: RpcWaiter,
    ) -> Result<RequestId, Error> {
        let (inserted, expired, max, timer_moved) = {
            let mut outbound = lock(&self.outbound);
            let rpcs = &mut outbound.rpcs;
            rpcs.handle_timeout(now);
            let expired = drain_outbound_expired(rpcs);
            let inserted = rpcs.insert(protocol, deadline, waiter);
            let max = rpcs.max_pending();
            let timer_moved =
                inserted.is_ok() && outbound.timer.is_none_or(|timer| deadline < timer);
            if timer_moved {
                outbound.timer = Some(deadline);
            }
            (inserted, expired, max, timer_moved)
        };
        if timer_moved {
            self.timer_moved.notify_one();
        }
        self.deliver_timeouts(expired);
        inserted.map_err(|err| match err {
            Refused::TooMany => {
                self.metrics.record_rpc_failure(RpcFailure::TooManyPending);
                Error::TooManyPendingRpcs { max }
            }
            Refused::Closed => {
                self.metrics.record_rpc_failure(RpcFailure::Disconnected);
                Error::Disconnected
            }
        })
    }

    /// Forgets an RPC whose caller gave up (`reason` says why); counted if it was pending.
    pub(crate) fn abandon(&self, id: RequestId, reason: RpcFailure) {
        if lock(&self.outbound).rpcs.cancel(id).is_some() {
            self.metrics.record_rpc_failure(reason);
            if reason == RpcFailure::Cancelled {
                debug!(parent: &self.span, request_id = %id, "rpc cancelled by its caller");
            }
        }
    }

    /// The connection's timer fired at `now`: expires every outbound RPC due, tells its
    /// caller, and returns when the timer should fire next (`None`: nothing is pending).
    pub(crate) fn expire_due(&self, now: Instant) -> Option<Instant> {
        let (expired, timer) = {
            let mut outbound = lock(&self.outbound);
            outbound.rpcs.handle_timeout(now);
            let expired = drain_outbound_expired(&mut outbound.rpcs);
            outbound.timer = outbound.rpcs.due_from();
            (expired, outbound.timer)
        };
        self.deliver_timeouts(expired);
        timer
    }

    /// When the connection's timer should fire: at or before every pending deadline. Read it
    /// again after [`timer_moved`](Self::timer_moved) rings.
    pub(crate) fn timer_deadline(&self) -> Option<Instant> {
        lock(&self.outbound).timer
    }

    /// Rung (a permit is stored if nobody waits) when [`timer_deadline`](Self::timer_deadline)
    /// moved earlier.
    pub(crate) fn timer_moved(&self) -> &Notify {
        &self.timer_moved
    }

    /// A response with `id` arrived: complete its RPC, or count it as unmatched.
    pub(crate) fn complete(&self, id: RequestId, payload: Bytes, now: Instant) {
        let (matched, expired) = {
            let rpcs = &mut lock(&self.outbound).rpcs;
            let matched = rpcs.handle_response(id, now);
            (matched, drain_outbound_expired(rpcs))
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
        let failed = lock(&self.outbound).rpcs.handle_not_supported(protocol);
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
    pub(crate) fn accept_inbound(
        &self,
        request_id: RequestId,
        protocol: ProtocolId,
        now: Instant,
    ) -> Result<(InboundSlot, Instant), Refused> {
        let deadline = deadline_after(now, self.inbound_timeout);
        let (accepted, expired) = {
            let mut rpcs = lock(&self.inbound);
            let accepted = rpcs.handle_request(request_id, protocol, now, deadline);
            (accepted, drain_inbound_expired(&mut rpcs))
        };
        self.count_inbound_expired(expired);
        accepted.map(|slot| (slot, deadline))
    }

    /// The application answers the inbound request in `slot` at `now`: frees the slot and
    /// hands back the request, or refuses an answer past the deadline (counted as late). The
    /// caller sends the response and counts how that went.
    pub(crate) fn answer_inbound(
        &self,
        slot: InboundSlot,
        request_id: RequestId,
        protocol: ProtocolId,
        now: Instant,
    ) -> Result<InboundRpc, Error> {
        let (answered, expired) = {
            let mut rpcs = lock(&self.inbound);
            let answered = rpcs.handle_response(slot, now);
            (answered, drain_inbound_expired(&mut rpcs))
        };
        self.count_inbound_expired(expired);
        answered.map_err(|refused| match refused {
            ResponseRefused::Expired => {
                self.metrics.record_inbound_rpc(InboundRpcOutcome::Late);
                debug!(parent: &self.span, %request_id, %protocol, "inbound rpc answered after its deadline");
                Error::InboundRpcExpired {
                    protocol,
                    request_id,
                    timeout: self.inbound_timeout,
                }
            }
            ResponseRefused::Closed => Error::Disconnected,
        })
    }

    /// The application dropped an inbound request unanswered: free its slot.
    pub(crate) fn drop_inbound(&self, slot: InboundSlot) {
        let dropped = lock(&self.inbound).handle_drop(slot);
        if let Some(rpc) = dropped {
            self.metrics
                .record_inbound_rpc(InboundRpcOutcome::Unanswered);
            // Common and harmless (an application chose not to answer): debug, not warn.
            debug!(parent: &self.span, request_id = %rpc.request_id, protocol = %rpc.protocol, "inbound rpc dropped unanswered");
        }
    }

    fn count_inbound_expired(&self, expired: Vec<InboundRpc>) {
        for rpc in expired {
            self.metrics.record_inbound_rpc(InboundRpcOutcome::Expired);
            debug!(parent: &self.span, request_id = %rpc.request_id, protocol = %rpc.protocol, "inbound rpc expired unanswered");
        }
    }

    /// The peer is closing: refuses new RPCs both ways, fails every pending outbound RPC with
    /// [`Error::Disconnected`], and frees the inbound slots.
    pub(crate) fn close(&self) {
        let waiters = {
            let mut outbound = lock(&self.outbound);
            outbound.timer = None;
            outbound.rpcs.close()
        };
        lock(&self.inbound).close();
        for waiter in waiters {
            self.metrics.record_rpc_failure(RpcFailure::Disconnected);
            // A caller that gave up meanwhile needs no answer.
            let _ = waiter.tx.send(Err(Error::Disconnected));
        }
    }
}

// Both check first: nearly always nothing expired, and an empty `Vec` costs nothing to make.

fn drain_outbound_expired(rpcs: &mut OutboundRpcs<RpcWaiter>) -> Vec<(RequestId, RpcWaiter)> {
    if !rpcs.has_expired() {
        return Vec::new();
    }
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}

fn drain_inbound_expired(rpcs: &mut InboundRpcs) -> Vec<InboundRpc> {
    if !rpcs.has_expired() {
        return Vec::new();
    }
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}
