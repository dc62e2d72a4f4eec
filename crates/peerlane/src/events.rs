//! [`NetworkEvents`]: an application's inbound messages and RPC requests, as a [`Stream`] of
//! decoded [`Event`]s, read from the application's queues, which the router (`router`) fills.
//!
//! ```text
//! peer reader task ── InboundRouter::route ──► Router: protocol → application's KeyedSender
//!                                                 │  key (PeerId, ProtocolId), never waits
//!                                                 ▼
//! application task ◄── Event<M> ◄── decode (ProtocolId::from_bytes) ◄── KeyedReceiver
//! ```
//!
//! Decoding happens on the application's side of the queue, in the application's task, so a
//! peer's reader never spends time on application types. Each queue weighs a message by its
//! payload against its byte budgets, and the router's `purge_lost_peers` removes what a peer
//! left queued once it disconnects. A payload that does not decode is
//! logged, counted (`peerlane_inbound_decode_failures_total`) and skipped; the stream goes on.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use netcore::PeerId;
use peer::{BudgetCharge, BudgetRelease, RpcResponder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wire::{NetworkId, ProtocolId};

use crate::error::Error;
use crate::metrics::{Metrics, QueueEvent};
use crate::peers::PeerNetworkId;
use crate::queue::{KeyedReceiver, KeyedSender, QueueConfig};
use crate::routing::{RoutedResponder, RoutingQueueError};

/// Something a peer sent the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<M> {
    /// A direct-send message.
    Message {
        /// Who sent it.
        peer: PeerNetworkId,
        /// The protocol it came on.
        protocol_id: ProtocolId,
        /// The decoded message.
        message: M,
    },
    /// An RPC request; answer it with `responder`. Dropping the responder sends nothing (the
    /// requester times out), as in AptosNet.
    RpcRequest {
        /// Who sent it.
        peer: PeerNetworkId,
        /// The protocol it came on; the response goes out on the same one.
        protocol_id: ProtocolId,
        /// The decoded request.
        request: M,
        /// Sends the response.
        responder: RpcReplier<M>,
    },
}

/// Answers one inbound RPC request with a value of the application's type, encoded for the
/// request's protocol.
pub struct RpcReplier<M> {
    protocol_id: ProtocolId,
    responder: Replier,
    _message: PhantomData<fn(M)>,
}

/// Where a response goes: back on the connection the request came on, or back along the
/// routed path of a routed request.
enum Replier {
    Peer(RpcResponder),
    Routed(RoutedResponder),
}

/// An application's inbound events on one or several networks: a [`Stream`] of [`Event`]s,
/// fair across peers and protocols (each (peer, protocol) pair has its own bounded queue,
/// popped round-robin), and fair across networks.
///
/// The stream ends when the networks it reads from are shut down and their queues are drained.
/// Dropping it drops what is queued; later messages for the application are dropped and counted
/// (`event="closed"`).
pub struct NetworkEvents<M> {
    /// One part per network, polled in turn starting after the one that gave the last event
    /// (a plain round robin: `SelectAll` would allocate per event).
    parts: Vec<EventsPart<M>>,
    next: usize,
}

/// The inbound item an application's queue holds, with its charge on the network's
/// [`InboundBudget`] (none when the budget is off), given back when the application takes the
/// item off the queue or the queue drops it.
pub(crate) enum Inbound {
    DirectSend(Bytes, Option<BudgetCharge>),
    Rpc(Bytes, RpcResponder, Option<BudgetCharge>),
    /// A request that came over routing (protocol 68), from its author.
    RoutedRpc(Bytes, RoutedResponder, Option<BudgetCharge>),
}

/// An application's queue on one network.
pub(crate) type AppQueue = KeyedSender<(PeerId, ProtocolId), Inbound>;

impl Inbound {
    /// Its charge on the network's budget, if it still holds one.
    fn charge_mut(&mut self) -> &mut Option<BudgetCharge> {
        match self {
            Self::DirectSend(_, charge)
            | Self::Rpc(_, _, charge)
            | Self::RoutedRpc(_, _, charge) => charge,
        }
    }

    /// What the item weighs against the queue's byte budgets: its payload.
    fn bytes(&self) -> usize {
        match self {
            Self::DirectSend(payload, _)
            | Self::Rpc(payload, _, _)
            | Self::RoutedRpc(payload, _, _) => payload.len(),
        }
    }
}

/// An application's queue on one network, weighing each message by its payload: the sending
/// half for the router, the receiving half for [`NetworkEvents`].
pub(crate) fn app_queue(
    config: QueueConfig,
) -> (AppQueue, KeyedReceiver<(PeerId, ProtocolId), Inbound>) {
    crate::queue::weighed_keyed_channel(config, Inbound::bytes)
}

/// The events of one network.
struct EventsPart<M> {
    network_id: NetworkId,
    rx: KeyedReceiver<(PeerId, ProtocolId), Inbound>,
    /// Items taken off the queue in one go (at most [`EVENTS_BATCH`]) and not yet decoded:
    /// one lock per batch rather than per message.
    batch: VecDeque<((PeerId, ProtocolId), Inbound)>,
    metrics: Metrics,
    _message: PhantomData<fn() -> M>,
}

/// Items an application takes off its queue per lock. They leave the queue's bound (the queue
/// has room for that many more) but are held here, so an application holds at most
/// `capacity_per_key` per key plus this many per network.
const EVENTS_BATCH: usize = 64;

/// The first messages of a batch taken off the queue, up to this many payload bytes, give their
/// budget charges back at once, as the batch leaves the queue: one update of the network's
/// shared budget per batch of small messages instead of one per message. Later messages of the
/// batch (large ones) hold theirs until the application takes them, so the budget counts at
/// most this many bytes fewer than are held, per application and network.
const EARLY_RELEASE_BYTES: usize = 64 * 1024;

impl<M> RpcReplier<M>
where
    M: Serialize,
{
    /// Sends `response` to the requester, encoded for the request's protocol.
    ///
    /// Fails with [`Error::Encode`] if the value does not encode, and with [`Error::Respond`]
    /// if the connection is gone or the request's deadline has passed.
    ///
    /// The response to a routed request goes back along the way the request came; it fails
    /// with [`Error::RoutingBusy`] if the routing queue is full and [`Error::ShutDown`] if
    /// the network is gone.
    pub fn reply(self, response: M) -> Result<(), Error> {
        let bytes = self
            .protocol_id
            .to_bytes(&response)
            .map_err(|source| Error::Encode {
                protocol: self.protocol_id,
                source,
            })?;
        match self.responder {
            Replier::Peer(responder) => responder.respond(bytes).map_err(|source| Error::Respond {
                protocol: self.protocol_id,
                source: Box::new(source),
            }),
            Replier::Routed(responder) => responder.respond(bytes).map_err(|error| match error {
                RoutingQueueError::Full => Error::RoutingBusy,
                RoutingQueueError::Closed => Error::ShutDown,
            }),
        }
    }

    /// The protocol the request came on.
    pub fn protocol_id(&self) -> ProtocolId {
        self.protocol_id
    }
}

impl<M> fmt::Debug for RpcReplier<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcReplier")
            .field("protocol_id", &self.protocol_id)
            .finish_non_exhaustive()
    }
}

impl<M> NetworkEvents<M>
where
    M: DeserializeOwned + Send + 'static,
{
    /// The events of one application on one network.
    pub(crate) fn new(
        network_id: NetworkId,
        rx: KeyedReceiver<(PeerId, ProtocolId), Inbound>,
        metrics: Metrics,
    ) -> Self {
        let parts = vec![EventsPart {
            network_id,
            rx,
            batch: VecDeque::new(),
            metrics,
            _message: PhantomData,
        }];
        Self { parts, next: 0 }
    }

    /// Payload bytes queued for the application and not taken yet, over its networks (what it
    /// has taken off the queues and not yet read is not counted: at most 64 messages per
    /// network).
    pub fn queued_bytes(&self) -> usize {
        self.parts.iter().map(|part| part.rx.bytes()).sum()
    }

    /// One stream over the events of several networks (validator, VFN, public), taking from
    /// each in turn.
    pub fn combine(events: impl IntoIterator<Item = Self>) -> Self {
        let parts = events.into_iter().flat_map(|each| each.parts).collect();
        Self { parts, next: 0 }
    }
}

impl<M> Stream for NetworkEvents<M>
where
    M: DeserializeOwned + Send + 'static,
{
    type Item = Event<M>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        let this = &mut *self;
        // Restarts only after a part ended and was removed, so it ends.
        loop {
            if this.parts.is_empty() {
                return Poll::Ready(None);
            }
            let mut removed = false;
            for tried in 0..this.parts.len() {
                let index = (this.next + tried) % this.parts.len();
                match Pin::new(&mut this.parts[index]).poll_next(cx) {
                    Poll::Ready(Some(event)) => {
                        this.next = index + 1;
                        return Poll::Ready(Some(event));
                    }
                    // That network is shut down and drained: forget it.
                    Poll::Ready(None) => {
                        this.parts.remove(index);
                        this.next = index;
                        removed = true;
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            if !removed {
                return Poll::Pending;
            }
        }
    }
}

impl<M> fmt::Debug for NetworkEvents<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkEvents").finish_non_exhaustive()
    }
}

impl<M> Stream for EventsPart<M>
where
    M: DeserializeOwned,
{
    type Item = Event<M>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        // Loops only over payloads that fail to decode, each of which is skipped.
        loop {
            if self.batch.is_empty() {
                let this = &mut *self;
                let taken =
                    std::task::ready!(this.rx.poll_recv_many(cx, &mut this.batch, EVENTS_BATCH));
                if taken == 0 {
                    return Poll::Ready(None);
                }
                account_batch(&this.metrics, &mut this.batch);
            }
            let Some(((peer_id, protocol_id), inbound)) = self.batch.pop_front() else {
                continue;
            };
            let peer = PeerNetworkId::new(self.network_id, peer_id);
            // The charge, dropped here: the application has taken the message.
            let (payload, responder) = match inbound {
                Inbound::DirectSend(payload, _charge) => (payload, None),
                Inbound::Rpc(payload, responder, _charge) => {
                    (payload, Some(Replier::Peer(responder)))
                }
                Inbound::RoutedRpc(payload, responder, _charge) => {
                    (payload, Some(Replier::Routed(responder)))
                }
            };
            let decoded = match protocol_id.from_bytes::<M>(&payload) {
                Ok(decoded) => decoded,
                Err(err) => {
                    self.metrics.record_decode_failure(protocol_id);
                    // Remote input: debug, not warn, so a peer cannot flood the logs.
                    tracing::debug!(
                        peer = %peer.peer_id,
                        protocol = %protocol_id,
                        len = payload.len(),
                        error = %err,
                        "inbound payload does not decode; skipped"
                    );
                    continue;
                }
            };
            let event = match responder {
                None => Event::Message {
                    peer,
                    protocol_id,
                    message: decoded,
                },
                Some(responder) => Event::RpcRequest {
                    peer,
                    protocol_id,
                    request: decoded,
                    responder: RpcReplier {
                        protocol_id,
                        responder,
                        _message: PhantomData,
                    },
                },
            };
            return Poll::Ready(Some(event));
        }
    }
}

/// Counts a batch as dequeued, one counter update per run of the same protocol, and gives back
/// the budget charges of its first [`EARLY_RELEASE_BYTES`] together.
fn account_batch(metrics: &Metrics, batch: &mut VecDeque<((PeerId, ProtocolId), Inbound)>) {
    let mut release = BudgetRelease::new();
    // Stops at the first charge that does not fit, so that the rest wait their turn.
    let mut releasing = true;
    let mut run: Option<(ProtocolId, u64)> = None;
    for ((_, protocol_id), inbound) in batch.iter_mut() {
        if releasing {
            let charge = inbound.charge_mut();
            let fits =
                |held: &mut BudgetCharge| release.bytes() + held.bytes() <= EARLY_RELEASE_BYTES;
            if let Some(held) = charge.take_if(fits) {
                release.absorb(held);
            } else if charge.is_some() {
                releasing = false;
            }
        }
        match &mut run {
            Some((protocol, n)) if protocol == protocol_id => *n += 1,
            _ => {
                if let Some((protocol, n)) = run {
                    metrics.record_queue_events(protocol, QueueEvent::Dequeued, n);
                }
                run = Some((*protocol_id, 1));
            }
        }
    }
    if let Some((protocol, n)) = run {
        metrics.record_queue_events(protocol, QueueEvent::Dequeued, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch taken off the queue gives back the charges of its first
    /// `EARLY_RELEASE_BYTES` at once; the messages after them hold theirs until taken.
    #[test]
    fn a_taken_batch_gives_back_its_first_charges_at_once() {
        let budget = peer::InboundBudget::new(0, &peer::Metrics::default());
        let key = (PeerId::ZERO, ProtocolId::MEMPOOL_DIRECT_SEND);
        let item = |bytes: usize| {
            let charge = budget.charge(bytes).expect("no limit");
            (key, Inbound::DirectSend(Bytes::new(), Some(charge)))
        };
        let small = EARLY_RELEASE_BYTES / 4;
        let mut batch: VecDeque<_> = [small, small, small, 2 * small, 10]
            .into_iter()
            .map(item)
            .collect();
        assert_eq!(budget.held(), 5 * small + 10);
        account_batch(&Metrics::default(), &mut batch);
        // The first three fit; the fourth would go over, so it and the rest keep theirs.
        assert_eq!(budget.held(), 2 * small + 10);
        let held: Vec<bool> = batch
            .iter_mut()
            .map(|(_, inbound)| inbound.charge_mut().is_some())
            .collect();
        assert_eq!(held, [false, false, false, true, true]);
        drop(batch);
        assert_eq!(budget.held(), 0);
    }
}
