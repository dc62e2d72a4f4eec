//! [`Router`]: routes a network's inbound messages, on the peers' reader tasks, into the
//! applications' queues by protocol, charging the network's inbound budget; and
//! [`purge_lost_peers`], which empties the queues of a peer once it disconnects. The
//! application's side of the queues is in `events`.
//!
//! A message on one of peerlane's own protocols (64, 65, 67, 68) is read by the [`Intake`]
//! before any queue. A full queue drops (counted by [`QueueEvent`]) or, when the application
//! asked for back-pressure, hands the message back to the reader with a future that resolves
//! when there is room.

use std::collections::{BTreeMap, VecDeque};
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
    /// Each application's queue once, for [`InboundRouter::flush`], in the order of their
    /// lowest protocol id: a flush wakes the applications in that order, the same in every
    /// process (so a simulated run replays).
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
        apps: BTreeMap<ProtocolId, AppQueue>,
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

    /// Whether the [`Intake`] reads `protocol_id` before any queue.
    fn is_internal(&self, protocol_id: ProtocolId) -> bool {
        self.intake
            .as_ref()
            .is_some_and(|intake| intake.takes(protocol_id))
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

    /// Queues the messages of one protocol at the front of `run` together: one budget charge
    /// and one lock for up to [`RUN_BYTES`] of them. Peerlane's own protocols go one by one,
    /// as `try_route` takes them.
    fn try_route_direct_sends(
        &self,
        sender: PeerId,
        run: &mut VecDeque<(ProtocolId, Bytes)>,
        refused: &mut dyn FnMut(ProtocolId, RouteError),
    ) -> Option<HeldBack> {
        while let Some(&(protocol_id, _)) = run.front() {
            let route = match self.route_of(protocol_id) {
                Ok(route) if !self.is_internal(protocol_id) => route,
                _ => {
                    let (protocol_id, payload) = run.pop_front()?;
                    if let Some(held) =
                        self.try_route_direct_send(sender, protocol_id, payload, refused)
                    {
                        return Some(held);
                    }
                    continue;
                }
            };
            // The messages of this protocol at the front, up to RUN_BYTES (at least one).
            let mut count = 0;
            let mut bytes = 0;
            for (protocol, payload) in run.iter() {
                if *protocol != protocol_id || (count > 0 && bytes + payload.len() > RUN_BYTES) {
                    break;
                }
                count += 1;
                bytes += payload.len();
            }
            let mut charge = match &self.budget {
                None => None,
                Some(budget) => match budget.charge(bytes) {
                    Some(charge) => Some(charge),
                    // The node holds its budget of undelivered bytes, as in `try_route`: the
                    // reader stops reading until applications take some.
                    None => {
                        let (protocol_id, payload) = run.pop_front()?;
                        let event = InboundEvent::DirectSend {
                            sender,
                            protocol_id,
                            payload,
                        };
                        return Some(HeldBack {
                            event,
                            room: Box::pin(budget.room()),
                        });
                    }
                },
            };
            let key = (sender, protocol_id);
            let mut taken = 0;
            let items = std::iter::from_fn(|| {
                if taken == count {
                    return None;
                }
                taken += 1;
                let (_, payload) = run.pop_front()?;
                let share = charge
                    .as_mut()
                    .map(|charge| charge.split_off(payload.len()));
                Some(Inbound::DirectSend(payload, share))
            });
            let mut enqueued = 0;
            let mut handed_back = None;
            route
                .queue
                .push_many_deferred(&key, items, |pushed| match pushed {
                    Ok(()) => {
                        enqueued += 1;
                        true
                    }
                    Err(Dropped::Full(inbound)) if route.wait.is_some() => {
                        handed_back = Some(inbound);
                        false
                    }
                    dropped => {
                        if let Err(err) = self.outcome(protocol_id, dropped) {
                            refused(protocol_id, err);
                        }
                        true
                    }
                });
            if enqueued > 0 {
                self.metrics
                    .record_queue_events(protocol_id, QueueEvent::Enqueued, enqueued);
            }
            if let (Some(inbound), Some(max_wait)) = (handed_back, route.wait) {
                // What `charge` still holds is for the messages left in `run`: given back now,
                // they are charged again when routed. The handed-back message's share goes
                // back with it (`join`).
                drop(charge);
                let event = match join(key, inbound) {
                    Ok(event) => event,
                    // Only a routed request cannot go back, and a run holds none.
                    Err(inbound) => {
                        if let Err(err) = self.outcome(protocol_id, Err(Dropped::Newest(inbound))) {
                            refused(protocol_id, err);
                        }
                        continue;
                    }
                };
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Waited);
                let room = route.queue.wait_for_room(key);
                let room = Box::pin(async move {
                    // Either way the reader then routes the message without waiting.
                    let _ = tokio::time::timeout(max_wait, room).await;
                });
                return Some(HeldBack { event, room });
            }
        }
        None
    }

    fn flush(&self) {
        for queue in &self.queues {
            queue.wake_deferred();
        }
    }
}

/// The most payload bytes of one protocol [`Router`] charges and queues together from a
/// reader's run of DirectSends: what the budget may go over by, besides one message.
const RUN_BYTES: usize = 64 * 1024;

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

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::events::app_queue;
    use crate::queue::QueueConfig;

    const DIRECT: ProtocolId = ProtocolId::MEMPOOL_DIRECT_SEND;
    const OTHER: ProtocolId = ProtocolId::STATE_SYNC_DIRECT_SEND;

    fn run_of(protocols: &[ProtocolId]) -> VecDeque<(ProtocolId, Bytes)> {
        protocols
            .iter()
            .enumerate()
            .map(|(i, &protocol)| (protocol, Bytes::from(vec![i as u8; 10])))
            .collect()
    }

    /// A run goes into the queue in order, charged to the budget; an unknown protocol in it is
    /// refused and the rest still routed; a full back-pressure queue hands back the first
    /// message that does not fit and leaves the rest of the run, uncharged.
    #[test]
    fn a_run_is_queued_in_order_until_a_full_queue_hands_one_back() {
        let config = QueueConfig {
            capacity_per_key: NonZeroUsize::new(3).unwrap(),
            overflow: Overflow::Wait,
            ..QueueConfig::default()
        };
        let (queue, mut rx) = app_queue(config);
        let budget = InboundBudget::new(0, &peer::Metrics::default());
        let metrics = Metrics::default();
        let router = Router::new(
            BTreeMap::from([(DIRECT, queue)]),
            metrics.clone(),
            Some(budget.clone()),
        );
        let refused = Mutex::new(Vec::new());
        let mut run = run_of(&[DIRECT, OTHER, DIRECT, DIRECT, DIRECT, DIRECT]);
        let held = router.try_route_direct_sends(PeerId::ZERO, &mut run, &mut |protocol, err| {
            refused.lock().unwrap().push((protocol, err));
        });
        assert_eq!(
            *refused.lock().unwrap(),
            [(OTHER, RouteError::UnknownProtocol)]
        );
        let held = held.expect("the fourth message for the full key is handed back");
        let InboundEvent::DirectSend { payload, .. } = &held.event else {
            panic!("{:?}", held.event)
        };
        assert_eq!(payload[0], 4);
        assert_eq!(run.len(), 1, "the sixth message waits in the run");
        assert_eq!(run[0].1[0], 5);
        // Three queued messages of 10 bytes are charged; the handed-back one and the rest not.
        assert_eq!(budget.held(), 30);
        assert_eq!(metrics.inbound_queue(DIRECT, QueueEvent::Enqueued), 3);
        assert_eq!(metrics.inbound_queue(DIRECT, QueueEvent::Waited), 1);
        drop(held);

        let mut batch = VecDeque::new();
        let taken = futures::executor::block_on(futures::future::poll_fn(|cx| {
            rx.poll_recv_many(cx, &mut batch, 64)
        }));
        assert_eq!(taken, 3);
        let firsts: Vec<u8> = batch
            .iter()
            .map(|(_, inbound)| match inbound {
                Inbound::DirectSend(payload, _) => payload[0],
                _ => panic!("not a direct send"),
            })
            .collect();
        assert_eq!(firsts, [0, 2, 3]);
        drop(batch);
        assert_eq!(budget.held(), 0);
    }

    /// Records the name of the receiver it wakes.
    struct NamedWaker {
        name: &'static str,
        woken: Arc<Mutex<Vec<&'static str>>>,
    }

    impl futures::task::ArcWake for NamedWaker {
        fn wake_by_ref(this: &Arc<Self>) {
            this.woken.lock().unwrap().push(this.name);
        }
    }

    /// A flush wakes the applications in the order of their lowest protocol id, whatever
    /// order their messages came in: the same order in every process, so that which
    /// application runs first after a burst (and whose reply leaves first) does not depend on
    /// a hash map's per-process order.
    #[test]
    fn a_flush_wakes_the_applications_in_protocol_order() {
        let protocols = [
            ("consensus", ProtocolId::CONSENSUS_RPC_BCS),
            ("health", ProtocolId::HEALTH_CHECKER_RPC),
            ("mempool", ProtocolId::MEMPOOL_DIRECT_SEND),
            ("state sync", ProtocolId::STATE_SYNC_DIRECT_SEND),
        ];
        let woken = Arc::new(Mutex::new(Vec::new()));
        let mut apps = BTreeMap::new();
        let mut receivers = Vec::new();
        for (name, protocol) in protocols {
            let (queue, mut rx) = app_queue(QueueConfig::default());
            apps.insert(protocol, queue);
            // Parked on its queue, as an application's task waiting for messages.
            let waker = futures::task::waker(Arc::new(NamedWaker {
                name,
                woken: woken.clone(),
            }));
            let mut batch = VecDeque::new();
            let polled =
                rx.poll_recv_many(&mut std::task::Context::from_waker(&waker), &mut batch, 1);
            assert!(polled.is_pending());
            receivers.push(rx);
        }
        let router = Router::new(apps, Metrics::default(), None);
        // Messages in the reverse of protocol order, as one read's burst.
        for (_, protocol) in protocols.iter().rev() {
            let event = InboundEvent::DirectSend {
                sender: PeerId::ZERO,
                protocol_id: *protocol,
                payload: Bytes::from_static(b"x"),
            };
            assert!(router.try_route(event).is_ok());
        }
        assert!(woken.lock().unwrap().is_empty(), "woken only on flush");
        router.flush();
        let mut by_protocol = protocols;
        by_protocol.sort_by_key(|(_, protocol)| *protocol);
        let expected: Vec<&str> = by_protocol.iter().map(|(name, _)| *name).collect();
        assert_eq!(*woken.lock().unwrap(), expected);
    }
}
