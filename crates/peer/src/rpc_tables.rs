//! [`RpcTables`]: one connection's two RPC tables (the pure ones of `rpc`) behind locks, and
//! what happens to their entries: outbound waiters are told their outcome over a oneshot,
//! inbound slots are freed, and every outcome is counted and logged. Each lock is a
//! `std::sync::Mutex` held for a few table operations and never across an `.await`; oneshot
//! sends and logs happen after it is released, and no lock is taken while another is held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
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
    outbound: Mutex<OutboundRpcs<RpcWaiter>>,
    inbound: Mutex<InboundRpcs>,
    /// Time an application has to answer an inbound request.
    inbound_timeout: Duration,
    metrics: Arc<Metrics>,
    /// The connection's span, for events logged from the callers' tasks.
    span: Span,
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
            outbound: Mutex::new(OutboundRpcs::new(max_outbound)),
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
        let (inserted, expired, max) = {
            let mut rpcs = lock(&self.outbound);
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
        if lock(&self.outbound).cancel(id).is_some() {
            self.metrics.record_rpc_failure(reason);
            if reason == RpcFailure::Cancelled {
                debug!(parent: &self.span, request_id = %id, "rpc cancelled by its caller");
            }
        }
    }

    /// Expires every outbound RPC due at `now` and tells its caller.
    pub(crate) fn expire(&self, now: Instant) {
        let expired = {
            let mut rpcs = lock(&self.outbound);
            rpcs.handle_timeout(now);
            drain_outbound_expired(&mut rpcs)
        };
        self.deliver_timeouts(expired);
    }

    /// A response with `id` arrived: complete its RPC, or count it as unmatched.
    pub(crate) fn complete(&self, id: RequestId, payload: Bytes, now: Instant) {
        let (matched, expired) = {
            let mut rpcs = lock(&self.outbound);
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
        let failed = lock(&self.outbound).handle_not_supported(protocol);
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
        let waiters = lock(&self.outbound).close();
        lock(&self.inbound).close();
        for waiter in waiters {
            self.metrics.record_rpc_failure(RpcFailure::Disconnected);
            // A caller that gave up meanwhile needs no answer.
            let _ = waiter.tx.send(Err(Error::Disconnected));
        }
    }
}

fn drain_outbound_expired(rpcs: &mut OutboundRpcs<RpcWaiter>) -> Vec<(RequestId, RpcWaiter)> {
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}

fn drain_inbound_expired(rpcs: &mut InboundRpcs) -> Vec<InboundRpc> {
    std::iter::from_fn(|| rpcs.poll_expired()).collect()
}
