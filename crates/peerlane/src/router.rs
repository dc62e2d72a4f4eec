//! [`Router`]: routes a network's inbound messages, on the peers' reader tasks, into the
//! applications' queues by protocol, charging the network's inbound budget; and
//! [`purge_lost_peers`], which empties the queues of a peer once it disconnects. The
//! application's side of the queues is in `events`.
//!
//! A message on one of peerlane's own protocols (64, 65, 67, 68) is read by the [`Intake`]
//! before any queue. A full queue drops (counted by [`QueueEvent`]) or, when the application
//! asked for back-pressure, hands the message back to the reader with a future that resolves
//! when there is room.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use netcore::PeerId;
use peer::{
    BudgetCharge, HeldBack, InboundBudget, InboundEvent, InboundRouter, RouteError, TryRouteError,
};
use wire::{NetworkId, ProtocolId};

use crate::events::{AppQueue, Inbound};
use crate::intake::Intake;
use crate::metrics::{Metrics, QueueEvent};
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};
use crate::queue::{Dropped, Overflow};
use crate::routing::RoutedResponder;

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
        let pushed = route.queue.push_deferred(key, inbound);
        if pushed.is_ok() {
            // The common case, without moving the result through `outcome`.
            self.metrics.record_queue_event(key.1, QueueEvent::Enqueued);
            return Ok(());
        }
        match (pushed, route.wait) {
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
