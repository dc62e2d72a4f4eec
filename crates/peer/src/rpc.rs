//! RPC bookkeeping for one connection, sans-IO: [`OutboundRpcs`] (requests we sent, waiting
//! for a response) and [`InboundRpcs`] (requests the applications are answering), both built
//! on a [`DeadlineTable`]. Time comes in as `now`; nothing here sleeps, spawns, sends or counts.
//!
//! Both tables follow one calling protocol:
//! 1. feed inputs with `handle_*` (a request, a response, a timeout, a cancel), passing `now`
//!    where time matters;
//! 2. after any `handle_*` call, drain [`OutboundRpcs::poll_expired`] /
//!    [`InboundRpcs::poll_expired`] until `None` and tell the owners of what expired;
//! 3. call `close` once on disconnect: it hands back everything pending and refuses new
//!    entries.
//!
//! The driver's only timing duty is to call `handle_timeout` when a caller is waiting on a
//! deadline: [`OutboundRpcs::due_from`] says when that is, at the earliest.

use tokio::time::Instant;
use wire::{ProtocolId, RequestId};

use crate::deadline_table::{DeadlineTable, Refused, RingKey, Taken};

/// The RPCs we sent on one connection and are waiting on: request id allocation, deadlines,
/// the concurrency cap, and matching responses to waiters (`T`, e.g. a oneshot sender).
///
/// Request ids are a per-connection u32 counter that wraps and skips ids whose place in the
/// table is taken (by a request still pending); a response carries its request's id back.
#[derive(Debug)]
pub(crate) struct OutboundRpcs<T> {
    pending: DeadlineTable<RequestId, PendingRpc<T>>,
    next_id: RequestId,
    /// Insertion counter, to find the oldest pending request of a protocol.
    next_seq: u64,
}

#[derive(Debug)]
struct PendingRpc<T> {
    protocol: ProtocolId,
    seq: u64,
    waiter: T,
}

/// What a response's request id matched.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ResponseMatch<T> {
    /// A pending request, now complete: hand the response to this waiter.
    Matched(T),
    /// A pending request whose deadline had passed: it is now in the expired queue, and the
    /// response is dropped.
    Expired,
    /// No pending request has this id (never sent, cancelled, or expired earlier).
    Unknown,
}

impl<T> OutboundRpcs<T> {
    /// An empty table admitting at most `max_pending` requests at once.
    pub(crate) fn new(max_pending: usize) -> Self {
        Self {
            pending: DeadlineTable::new(max_pending),
            next_id: RequestId(0),
            next_seq: 0,
        }
    }

    /// Records a request on `protocol` that expires at `deadline`, and allocates its id.
    /// Call [`handle_timeout`](Self::handle_timeout) first, so that expired requests do not
    /// hold slots.
    pub(crate) fn insert(
        &mut self,
        protocol: ProtocolId,
        deadline: Instant,
        waiter: T,
    ) -> Result<RequestId, Refused> {
        let seq = self.next_seq;
        let rpc = PendingRpc {
            protocol,
            seq,
            waiter,
        };
        let next_id = &mut self.next_id;
        let id = self.pending.insert_with(
            || {
                let id = *next_id;
                *next_id = id.next();
                id
            },
            deadline,
            rpc,
        )?;
        self.next_seq += 1;
        Ok(id)
    }

    /// A response with `id` arrived at `now`.
    pub(crate) fn handle_response(&mut self, id: RequestId, now: Instant) -> ResponseMatch<T> {
        match self.pending.take(id, now) {
            Taken::Live(rpc) => ResponseMatch::Matched(rpc.waiter),
            Taken::Expired => ResponseMatch::Expired,
            Taken::Missing => ResponseMatch::Unknown,
        }
    }

    /// The remote said it does not serve RPCs on `protocol`. It answers each request it cannot
    /// serve with one such error, in the order the requests arrived, so this completes the
    /// oldest pending request on `protocol`, if any.
    pub(crate) fn handle_not_supported(&mut self, protocol: ProtocolId) -> Option<(RequestId, T)> {
        let id = self
            .pending
            .iter()
            .filter(|(_, rpc)| rpc.protocol == protocol)
            .min_by_key(|(_, rpc)| rpc.seq)
            .map(|(id, _)| id)?;
        self.pending.remove(id).map(|rpc| (id, rpc.waiter))
    }

    /// Moves every request whose deadline is at or before `now` to the expired queue.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.pending.expire(now);
    }

    /// At or before every pending deadline (`None` when nothing was pending at the last scan):
    /// [`handle_timeout`](Self::handle_timeout) has nothing to do before it.
    pub(crate) fn due_from(&self) -> Option<Instant> {
        self.pending.due_from()
    }

    /// Whether an expired request waits for [`poll_expired`](Self::poll_expired).
    pub(crate) fn has_expired(&self) -> bool {
        self.pending.has_expired()
    }

    /// The next expired request, whose waiter should be told it timed out.
    pub(crate) fn poll_expired(&mut self) -> Option<(RequestId, T)> {
        self.pending
            .poll_expired()
            .map(|(id, rpc)| (id, rpc.waiter))
    }

    /// The caller of `id` gave up: forget the request. `None` if it had completed already.
    pub(crate) fn cancel(&mut self, id: RequestId) -> Option<T> {
        self.pending.remove(id).map(|rpc| rpc.waiter)
    }

    /// Refuses every later insert and returns every waiter still pending or expired but not
    /// yet polled, to be told the peer is gone.
    pub(crate) fn close(&mut self) -> Vec<T> {
        self.pending
            .close()
            .into_iter()
            .map(|rpc| rpc.waiter)
            .collect()
    }

    /// The earliest deadline among pending requests.
    #[cfg(test)]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// Requests waiting for a response.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The most requests waiting at once.
    pub(crate) fn max_pending(&self) -> usize {
        self.pending.max_live()
    }
}

/// The inbound RPCs handed to the applications and not yet answered: the concurrency cap and
/// the answer deadline.
///
/// Entries are keyed by an [`InboundSlot`] of our own rather than the remote's request id, so a
/// remote reusing an id cannot make two requests collide.
#[derive(Debug)]
pub(crate) struct InboundRpcs {
    pending: DeadlineTable<InboundSlot, InboundRpc>,
    next_slot: u64,
}

/// One inbound request's place in [`InboundRpcs`], held by its responder: our own counter,
/// so the remote has no say in where its requests land in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InboundSlot(u64);

impl RingKey for InboundSlot {
    fn ring_bits(self) -> u64 {
        self.0
    }
}

impl RingKey for RequestId {
    fn ring_bits(self) -> u64 {
        u64::from(self.0)
    }
}

/// An inbound request being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InboundRpc {
    /// The id the remote gave it; the response must carry it back.
    pub(crate) request_id: RequestId,
    /// Its protocol.
    pub(crate) protocol: ProtocolId,
}

/// Why [`InboundRpcs::handle_response`] refused an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseRefused {
    /// The deadline passed; the slot is free (now or earlier).
    Expired,
    /// The table was closed: the peer is disconnecting.
    Closed,
}

impl InboundRpcs {
    /// An empty table admitting at most `max_pending` requests at once.
    pub(crate) fn new(max_pending: usize) -> Self {
        Self {
            pending: DeadlineTable::new(max_pending),
            next_slot: 0,
        }
    }

    /// A request arrived at `now`, to be answered by `deadline`. Expired requests are purged
    /// first (drain [`poll_expired`](Self::poll_expired) afterwards), then the cap is checked.
    pub(crate) fn handle_request(
        &mut self,
        request_id: RequestId,
        protocol: ProtocolId,
        now: Instant,
        deadline: Instant,
    ) -> Result<InboundSlot, Refused> {
        if self.pending.is_closed() {
            return Err(Refused::Closed);
        }
        self.handle_timeout(now);
        let rpc = InboundRpc {
            request_id,
            protocol,
        };
        let next_slot = &mut self.next_slot;
        self.pending.insert_with(
            || {
                let slot = InboundSlot(*next_slot);
                *next_slot += 1;
                slot
            },
            deadline,
            rpc,
        )
    }

    /// The application answered the request in `slot` at `now`. On success the slot is free
    /// and the response may be sent.
    pub(crate) fn handle_response(
        &mut self,
        slot: InboundSlot,
        now: Instant,
    ) -> Result<InboundRpc, ResponseRefused> {
        if self.pending.is_closed() {
            return Err(ResponseRefused::Closed);
        }
        match self.pending.take(slot, now) {
            Taken::Live(rpc) => Ok(rpc),
            // Answering consumes the responder, so a missing slot was freed by its deadline.
            Taken::Expired | Taken::Missing => Err(ResponseRefused::Expired),
        }
    }

    /// The application dropped the request in `slot` without answering. Returns it if it was
    /// still pending (not expired, not closed).
    pub(crate) fn handle_drop(&mut self, slot: InboundSlot) -> Option<InboundRpc> {
        self.pending.remove(slot)
    }

    /// Frees every slot whose deadline is at or before `now`, queueing it for
    /// [`poll_expired`](Self::poll_expired).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.pending.expire(now);
    }

    /// Whether an expired request waits for [`poll_expired`](Self::poll_expired).
    pub(crate) fn has_expired(&self) -> bool {
        self.pending.has_expired()
    }

    /// The next request whose deadline passed unanswered.
    pub(crate) fn poll_expired(&mut self) -> Option<InboundRpc> {
        self.pending.poll_expired().map(|(_, rpc)| rpc)
    }

    /// Refuses every later request and answer, and forgets what was pending.
    pub(crate) fn close(&mut self) {
        self.pending.close();
    }

    /// Requests being answered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const P: ProtocolId = ProtocolId::CONSENSUS_RPC_BCS;
    const Q: ProtocolId = ProtocolId::STORAGE_SERVICE_RPC;
    const SEC: Duration = Duration::from_secs(1);

    /// Ids count up from 0, a response completes its request once, and a second response with
    /// the same id is unknown.
    #[test]
    fn responses_complete_their_request_once() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(10);
        assert_eq!(rpcs.insert(P, now + SEC, "a"), Ok(RequestId(0)));
        assert_eq!(rpcs.insert(P, now + SEC, "b"), Ok(RequestId(1)));
        assert_eq!(
            rpcs.handle_response(RequestId(1), now),
            ResponseMatch::Matched("b")
        );
        assert_eq!(
            rpcs.handle_response(RequestId(1), now),
            ResponseMatch::Unknown
        );
        assert_eq!(
            rpcs.handle_response(RequestId(7), now),
            ResponseMatch::Unknown
        );
        assert_eq!(rpcs.len(), 1);
        assert_eq!(rpcs.poll_expired(), None);
    }

    /// The counter wraps at u32::MAX and skips ids still waiting for a response.
    #[test]
    fn ids_wrap_and_skip_ids_in_use() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(10);
        rpcs.next_id = RequestId(u32::MAX);
        assert_eq!(rpcs.insert(P, now + SEC, 0), Ok(RequestId(u32::MAX)));
        assert_eq!(rpcs.insert(P, now + SEC, 1), Ok(RequestId(0)));
        assert_eq!(rpcs.insert(P, now + SEC, 2), Ok(RequestId(1)));
        // Around again: u32::MAX, 0 and 1 are still pending, so the next free id is 2.
        rpcs.next_id = RequestId(u32::MAX);
        assert_eq!(rpcs.insert(P, now + SEC, 3), Ok(RequestId(2)));
    }

    /// The cap refuses the next request at once, and a completed one frees its slot.
    #[test]
    fn cap_refuses_then_frees() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(2);
        rpcs.insert(P, now + SEC, ()).unwrap();
        let id = rpcs.insert(P, now + SEC, ()).unwrap();
        assert_eq!(rpcs.insert(P, now + SEC, ()), Err(Refused::TooMany));
        assert_eq!(rpcs.cancel(id), Some(()));
        assert_eq!(rpcs.cancel(id), None);
        assert!(rpcs.insert(P, now + SEC, ()).is_ok());
        assert_eq!(rpcs.max_pending(), 2);
    }

    /// `handle_timeout` expires exactly the requests at or past their deadline, and a
    /// response arriving after its deadline is refused as expired.
    #[test]
    fn deadlines_expire_requests_and_late_responses() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(10);
        let early = rpcs.insert(P, now + SEC, "early").unwrap();
        let late = rpcs.insert(P, now + 3 * SEC, "late").unwrap();
        let other = rpcs.insert(P, now + 5 * SEC, "other").unwrap();
        assert_eq!(rpcs.next_deadline(), Some(now + SEC));

        rpcs.handle_timeout(now + SEC);
        assert_eq!(rpcs.poll_expired(), Some((early, "early")));
        assert_eq!(rpcs.poll_expired(), None);
        assert_eq!(
            rpcs.handle_response(early, now + SEC),
            ResponseMatch::Unknown
        );

        assert_eq!(
            rpcs.handle_response(late, now + 4 * SEC),
            ResponseMatch::Expired
        );
        assert_eq!(rpcs.poll_expired(), Some((late, "late")));
        assert_eq!(
            rpcs.handle_response(other, now + 4 * SEC),
            ResponseMatch::Matched("other")
        );
        assert_eq!(rpcs.next_deadline(), None);
    }

    /// NotSupported completes the oldest pending request of its protocol, one per error.
    #[test]
    fn not_supported_matches_the_oldest_request_of_its_protocol() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(10);
        let first = rpcs.insert(Q, now + SEC, 1).unwrap();
        rpcs.insert(P, now + SEC, 2).unwrap();
        let third = rpcs.insert(Q, now + SEC, 3).unwrap();
        assert_eq!(rpcs.handle_not_supported(Q), Some((first, 1)));
        assert_eq!(rpcs.handle_not_supported(Q), Some((third, 3)));
        assert_eq!(rpcs.handle_not_supported(Q), None);
        assert_eq!(rpcs.len(), 1);
    }

    /// Closing hands back every waiter, expired-but-unpolled included, and refuses new ones.
    #[test]
    fn close_returns_every_waiter_and_refuses_more() {
        let now = Instant::now();
        let mut rpcs = OutboundRpcs::new(10);
        rpcs.insert(P, now + SEC, 1).unwrap();
        rpcs.insert(P, now + 2 * SEC, 2).unwrap();
        rpcs.handle_timeout(now + SEC);
        let mut waiters = rpcs.close();
        waiters.sort_unstable();
        assert_eq!(waiters, [1, 2]);
        assert_eq!(rpcs.insert(P, now, 3), Err(Refused::Closed));
        assert_eq!(rpcs.poll_expired(), None);
    }

    /// Inbound: the cap declines, an answer frees the slot, and a dropped responder frees it
    /// too.
    #[test]
    fn inbound_cap_declines_and_answers_free_slots() {
        let now = Instant::now();
        let mut rpcs = InboundRpcs::new(2);
        let a = rpcs
            .handle_request(RequestId(5), P, now, now + SEC)
            .unwrap();
        let b = rpcs
            .handle_request(RequestId(5), P, now, now + SEC)
            .unwrap();
        assert_ne!(a, b, "a reused remote id gets its own slot");
        assert_eq!(
            rpcs.handle_request(RequestId(6), P, now, now + SEC),
            Err(Refused::TooMany)
        );
        let answered = rpcs.handle_response(a, now).unwrap();
        assert_eq!(answered.request_id, RequestId(5));
        assert!(rpcs.handle_drop(b).is_some());
        assert_eq!(rpcs.len(), 0);
        assert!(rpcs.handle_request(RequestId(7), P, now, now + SEC).is_ok());
    }

    /// Inbound: at the deadline the slot is freed (by the next request or a late answer), the
    /// late answer is refused, and each expiry is reported once.
    #[test]
    fn inbound_deadline_frees_the_slot_and_refuses_late_answers() {
        let now = Instant::now();
        let mut rpcs = InboundRpcs::new(1);
        let a = rpcs
            .handle_request(RequestId(1), P, now, now + SEC)
            .unwrap();
        // At the deadline the next request purges the first one and takes its place.
        let b = rpcs
            .handle_request(RequestId(2), P, now + SEC, now + 2 * SEC)
            .unwrap();
        assert_eq!(
            rpcs.poll_expired().map(|r| r.request_id),
            Some(RequestId(1))
        );
        assert_eq!(
            rpcs.handle_response(a, now + SEC),
            Err(ResponseRefused::Expired)
        );
        assert_eq!(rpcs.handle_drop(a), None);
        // A late answer to a request still in the table expires it then and there.
        assert_eq!(
            rpcs.handle_response(b, now + 2 * SEC),
            Err(ResponseRefused::Expired)
        );
        assert_eq!(
            rpcs.poll_expired().map(|r| r.request_id),
            Some(RequestId(2))
        );
        assert_eq!(rpcs.poll_expired(), None);
        rpcs.close();
        assert_eq!(
            rpcs.handle_request(RequestId(3), P, now, now + SEC),
            Err(Refused::Closed)
        );
    }
}
