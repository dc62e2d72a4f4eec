//! [`NetworkEvents`]: an application's inbound messages and RPC requests, as a [`Stream`] of
//! decoded [`Event`]s; and the router that fills the applications' queues.
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
//! payload against its byte budgets, and [`purge_lost_peers`] removes what a peer left queued
//! once it disconnects. A payload that does not decode is
//! logged, counted (`peerlane_inbound_decode_failures_total`) and skipped; the stream goes on.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use netcore::PeerId;
use peer::{
    BudgetCharge, HeldBack, InboundBudget, InboundEvent, InboundRouter, RouteError, RpcResponder,
    TryRouteError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wire::{NetworkId, ProtocolId};

use crate::error::Error;
use crate::intake::Intake;
use crate::metrics::{Metrics, QueueEvent};
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};
use crate::queue::{Dropped, KeyedReceiver, KeyedSender, Overflow, QueueConfig};
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

/// Routes a network's inbound messages to the applications' queues by protocol.
pub(crate) struct Router {
    /// Indexed by protocol id: an array look-up per message rather than a hash.
    apps: Box<[Option<Route>]>,
    /// Each application's queue once, for [`InboundRouter::flush`].
    queues: Vec<AppQueue>,
    metrics: Metrics,
    /// Charged for every message queued; `None` when the budget is off.
    budget: Option<InboundBudget>,
    /// Reads protocols 64 and 65 before any queue; `None` in routers without it (tests).
    intake: Option<Intake>,
}

/// Where one protocol's messages go.
struct Route {
    queue: AppQueue,
    /// `Some(max_wait)` when the queue applies back-pressure.
    wait: Option<Duration>,
}

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
                count_dequeued(&this.metrics, &this.batch);
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

/// Counts a batch as dequeued: one counter update per run of the same protocol.
fn count_dequeued(metrics: &Metrics, batch: &VecDeque<((PeerId, ProtocolId), Inbound)>) {
    let mut run: Option<(ProtocolId, u64)> = None;
    for ((_, protocol_id), _) in batch {
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

impl Router {
    /// A router over the applications' queues, by protocol, charging `budget` (if any) for
    /// what it queues.
    pub(crate) fn new(
        apps: HashMap<ProtocolId, AppQueue>,
        metrics: Metrics,
        budget: Option<InboundBudget>,
    ) -> Self {
        let mut routes: Box<[Option<Route>]> = (0..=u8::MAX).map(|_| None).collect();
        let mut queues: Vec<AppQueue> = Vec::new();
        for (protocol, queue) in apps {
            let config = queue.config();
            let wait = (config.overflow == Overflow::Wait).then_some(config.max_wait);
            if !queues.iter().any(|known| known.same_channel(&queue)) {
                queues.push(queue.clone());
            }
            routes[usize::from(protocol.as_u8())] = Some(Route { queue, wait });
        }
        Self {
            apps: routes,
            queues,
            metrics,
            budget,
            intake: None,
        }
    }

    /// Removes from every application's queue what the peers `gone` picks left there, counted
    /// as `purged`; returns how many messages it removed.
    pub(crate) fn purge(&self, mut gone: impl FnMut(PeerId) -> bool) -> usize {
        let mut purged = 0;
        for queue in &self.queues {
            for ((_, protocol_id), n) in queue.purge(|(peer_id, _)| gone(*peer_id)) {
                self.metrics
                    .record_queue_events(protocol_id, QueueEvent::Purged, n as u64);
                purged += n;
            }
        }
        purged
    }

    /// Reads the event here if it belongs to peerlane's own direct sends (64, 65, 67, 68; see
    /// [`Intake`]), else hands it back.
    fn take_internal(&self, event: InboundEvent) -> Option<InboundEvent> {
        match &self.intake {
            Some(intake) if intake.takes(event.protocol_id()) => {
                intake.handle(event);
                None
            }
            _ => Some(event),
        }
    }

    /// Queues a routed message for the application of `protocol_id`, with its author as the
    /// sender (a request with `responder`), never waiting: a full queue drops it, counted as
    /// any inbound message. Returns whether an application has the protocol.
    pub(crate) fn deliver_routed(
        &self,
        author: PeerId,
        protocol_id: ProtocolId,
        payload: Bytes,
        responder: Option<RoutedResponder>,
    ) -> bool {
        let Ok(route) = self.route_of(protocol_id) else {
            return false;
        };
        let charge = self
            .budget
            .as_ref()
            .map(|budget| budget.force_charge(payload.len()));
        let inbound = match responder {
            None => Inbound::DirectSend(payload, charge),
            Some(responder) => Inbound::RoutedRpc(payload, responder, charge),
        };
        let pushed = route
            .queue
            .push_without_waiting((author, protocol_id), inbound);
        let _ = self.outcome(protocol_id, pushed);
        true
    }

    /// Reads protocols 64 and 65 with `intake` from now on, before any queue.
    pub(crate) fn with_intake(mut self, intake: Intake) -> Self {
        self.intake = Some(intake);
        self
    }

    fn route_of(&self, protocol_id: ProtocolId) -> Result<&Route, RouteError> {
        self.apps[usize::from(protocol_id.as_u8())]
            .as_ref()
            .ok_or(RouteError::UnknownProtocol)
    }

    /// Counts what a push did, and tells the peer whether the message was taken.
    fn outcome(
        &self,
        protocol_id: ProtocolId,
        pushed: Result<(), Dropped<Inbound>>,
    ) -> Result<(), RouteError> {
        match pushed {
            Ok(()) => {
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Enqueued);
                Ok(())
            }
            Err(Dropped::Oldest(_)) => {
                // The new message is queued; the oldest of its (peer, protocol) queue made room.
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Enqueued);
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::DroppedOldest);
                Ok(())
            }
            Err(Dropped::Evicted(evicted)) => {
                // Queued; the oldest of its (peer, protocol) queue made room under a byte budget.
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Enqueued);
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::OverBudget);
                self.metrics.record_queue_events(
                    protocol_id,
                    QueueEvent::DroppedOldest,
                    evicted.len() as u64,
                );
                Ok(())
            }
            Err(Dropped::OverBudget(_)) => {
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::OverBudget);
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::DroppedNewest);
                Err(RouteError::QueueFull)
            }
            // `Full` only comes from `try_route`, which handles it; here it is a drop like any.
            Err(Dropped::Newest(_) | Dropped::Full(_)) => {
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::DroppedNewest);
                Err(RouteError::QueueFull)
            }
            Err(Dropped::Closed(_)) => {
                // The application stopped reading: to the peer it is as if its queue is full.
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Closed);
                Err(RouteError::QueueFull)
            }
        }
    }
}

/// An inbound event as the key and item of an application's queue, with its budget charge.
fn split(event: InboundEvent, charge: Option<BudgetCharge>) -> ((PeerId, ProtocolId), Inbound) {
    match event {
        InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        } => ((sender, protocol_id), Inbound::DirectSend(payload, charge)),
        InboundEvent::RpcRequest {
            sender,
            protocol_id,
            payload,
            responder,
        } => (
            (sender, protocol_id),
            Inbound::Rpc(payload, responder, charge),
        ),
    }
}

/// The inverse of [`split`]: an item handed back to the peer for back-pressure. Its charge is
/// given back; the item is charged again when it is routed. A routed request did not come
/// from a peer's reader, so it cannot go back to one: handed back as is.
fn join(
    (sender, protocol_id): (PeerId, ProtocolId),
    inbound: Inbound,
) -> Result<InboundEvent, Inbound> {
    match inbound {
        Inbound::DirectSend(payload, _charge) => Ok(InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        }),
        Inbound::Rpc(payload, responder, _charge) => Ok(InboundEvent::RpcRequest {
            sender,
            protocol_id,
            payload,
            responder,
        }),
        routed @ Inbound::RoutedRpc(..) => Err(routed),
    }
}

impl InboundRouter for Router {
    /// Never waits: a full back-pressure queue drops the newest here, like a FIFO queue (the
    /// reader calls this once it has waited `max_wait_ms`).
    fn route(&self, event: InboundEvent) -> Result<(), RouteError> {
        let Some(event) = self.take_internal(event) else {
            return Ok(());
        };
        let route = self.route_of(event.protocol_id())?;
        // Charged whatever the budget holds: the reader waited for room already.
        let charge = self
            .budget
            .as_ref()
            .map(|budget| budget.force_charge(event.payload().len()));
        let (key, inbound) = split(event, charge);
        let pushed = route.queue.push_without_waiting(key, inbound);
        self.outcome(key.1, pushed)
    }

    fn try_route(&self, event: InboundEvent) -> Result<(), TryRouteError> {
        let Some(event) = self.take_internal(event) else {
            return Ok(());
        };
        let route = self
            .route_of(event.protocol_id())
            .map_err(TryRouteError::Refused)?;
        let charge = match &self.budget {
            None => None,
            Some(budget) => match budget.charge(event.payload().len()) {
                Some(charge) => Some(charge),
                // The node holds its budget of undelivered bytes: the reader stops reading
                // until applications take some, then routes this one without waiting.
                None => {
                    return Err(TryRouteError::Full(Box::new(HeldBack {
                        event,
                        room: Box::pin(budget.room()),
                    })));
                }
            },
        };
        let (key, inbound) = split(event, charge);
        // Woken in `flush`, once per burst.
        match (route.queue.push_deferred(key, inbound), route.wait) {
            (Err(Dropped::Full(inbound)), Some(max_wait)) => {
                let event = match join(key, inbound) {
                    Ok(event) => event,
                    Err(inbound) => {
                        return self
                            .outcome(key.1, Err(Dropped::Newest(inbound)))
                            .map_err(TryRouteError::Refused);
                    }
                };
                self.metrics.record_queue_event(key.1, QueueEvent::Waited);
                let room = route.queue.wait_for_room(key);
                let room = Box::pin(async move {
                    // Either way the reader then routes the message without waiting.
                    let _ = tokio::time::timeout(max_wait, room).await;
                });
                Err(TryRouteError::Full(Box::new(HeldBack { event, room })))
            }
            (pushed, _) => self.outcome(key.1, pushed).map_err(TryRouteError::Refused),
        }
    }

    fn flush(&self) {
        for queue in &self.queues {
            queue.wake_deferred();
        }
    }
}

/// Purges what a peer left in the applications' queues once it disconnects, so that the keys
/// held stay within the connected peers × protocols however often peers reconnect (under new
/// PeerIds or the same). Subscribed before the peer manager registers anyone; runs until
/// `notifications` end (the network is gone).
///
/// A peer that is connected again by the time its `LostPeer` is read keeps its messages: they
/// may be from the new connection. After notifications were lost (this task fell behind), every
/// key of a peer that is not connected is purged, so none is missed for long.
pub(crate) async fn purge_lost_peers(
    router: std::sync::Arc<Router>,
    mut notifications: ConnectionNotifications,
    peers: PeersAndMetadata,
    network_id: NetworkId,
) {
    let is_gone = |peer_id| !peers.is_connected(PeerNetworkId::new(network_id, peer_id));
    let mut lost = notifications.lost();
    while let Some(notification) = notifications.recv().await {
        if notifications.lost() != lost {
            lost = notifications.lost();
            router.purge(is_gone);
        }
        if let ConnectionNotification::LostPeer(metadata, lost_on, _) = notification {
            let peer_id = metadata.remote_peer_id;
            if lost_on == network_id && is_gone(peer_id) {
                let purged = router.purge(|queued| queued == peer_id);
                if purged > 0 {
                    tracing::debug!(%network_id, %peer_id, purged, "purged a lost peer's queued messages");
                }
            }
        }
    }
}
