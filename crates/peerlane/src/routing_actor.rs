//! [`RoutingActor`]: the task that drives one network's [`RoutingNode`]. It owns the node and
//! carries out its actions; the data flow is in the `routing` module's docs. Kept apart from
//! that module, which the router and the intake use, so that neither imports the other.
//!
//! Bounds: the intake queue (`routing.max_pending_messages`, drops counted), the command
//! queue ([`ROUTING_COMMAND_QUEUE`]), pending routed RPCs ([`MAX_PENDING_ROUTED_RPCS`]), and
//! the node's own (edges, verify budgets, route-back table). Signature verification of edge
//! batches runs on the blocking pool, at most [`MAX_VERIFY_BATCHES`] at once; the node's
//! budgets are checked before a batch is handed out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use netcore::{ConnectionOrigin, PeerId, SharedLogLimiter};
use peer::ConnectionId;
use routing::{
    Action, BanReason, BatchId, Channel, DropReason, Edge, Now, Outcome, RoutedKind, RoutedMessage,
    RoutingConfig, RoutingNode, VerifiedBatch, verify_batch,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{NetworkId, ProtocolId};

use crate::disconnect_notice::DisconnectCode;
use crate::intake::Intake;
use crate::peer_manager::{BanList, PeerManagerHandle};
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};
use crate::record_events::{BanCause, RecordEvent, RecordEvents};
use crate::router::Router;
use crate::routing::storage::ComponentStorage;
use crate::routing::{
    Command, InboundRouting, MAX_PENDING_ROUTED_RPCS, RouteEntry, RoutedResponder, RoutingHandle,
    RoutingMetrics, RoutingSnapshot, RpcOutcome, SendRefused,
};

/// Edge verification batches running at once; more wait in the actor (the node's verify
/// budgets bound how many there can be).
pub const MAX_VERIFY_BATCHES: usize = 2;

/// Edges waiting for a verification slot, all neighbours together (about 200 bytes each, so
/// about 40 MB): each neighbour's verify budget bounds its own share, this bounds the sum
/// when many neighbours send at once. A batch beyond it is dropped unverified and counted as
/// over budget; the edges come again with a later reconciliation.
pub const MAX_EDGES_AWAITING_VERIFICATION: usize = 200_000;

/// Log lines per minute about what neighbours send on 67 and 68.
const LOG_LINES_PER_MINUTE: u32 = 10;

/// What the actor needs from the network.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) node: RoutingNode,
    pub(crate) config: RoutingConfig,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) notifications: ConnectionNotifications,
    pub(crate) router: Arc<Router>,
    pub(crate) banned: BanList,
    /// Where the bans set here are published for a peer store.
    pub(crate) record_events: RecordEvents,
    pub(crate) manager: PeerManagerHandle,
    pub(crate) metrics: RoutingMetrics,
    pub(crate) inbound: mpsc::Receiver<InboundRouting>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) handle: RoutingHandle,
    pub(crate) storage: ComponentStorage,
    pub(crate) shutdown: CancellationToken,
    /// The network's tasks (the ban's disconnect runs on it).
    pub(crate) tracker: TaskTracker,
    /// Where edge signatures are checked: tokio's blocking pool, or the runtime's own tasks
    /// (a simulated network, whose runs must not depend on the OS scheduler).
    pub(crate) verify_on: VerifyOn,
    /// The time of day: the OS's, or a simulator's.
    pub(crate) wall_clock: fn() -> SystemTime,
    /// The id of the first routed request (random, so that ids do not repeat across
    /// restarts; seeded on a simulator).
    pub(crate) first_request_id: u64,
}

/// Where the routing actor checks edge signatures ([`NetworkBuilder::on_simulator`]).
///
/// [`NetworkBuilder::on_simulator`]: crate::NetworkBuilder::on_simulator
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerifyOn {
    /// Threads of tokio's blocking pool: the runtime's workers never wait for a check.
    BlockingPool,
    /// Tasks of the runtime that runs the network: a single-threaded simulator's clock does
    /// not move while a check runs, so a run replays from its seed.
    Runtime,
}

struct PendingRpc {
    target: PeerId,
    outcome: oneshot::Sender<RpcOutcome>,
    deadline: tokio::time::Instant,
}

/// The routing task of one network.
pub(crate) struct RoutingActor {
    parts: Parts,
    /// The connection each neighbour is known by, to tell a replaced connection from a
    /// notification seen twice.
    connections: HashMap<PeerId, ConnectionId>,
    pending: HashMap<u64, PendingRpc>,
    next_request_id: u64,
    verifying: JoinSet<(BatchId, VerifiedBatch)>,
    /// Batches waiting for a free verification slot, and their edges.
    waiting: std::collections::VecDeque<(BatchId, Vec<Edge>)>,
    waiting_edges: usize,
    log: SharedLogLimiter,
}

/// The time now, on both clocks.
/// Milliseconds since the Unix epoch at `at` (0 before it).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::RoutingSync => "RoutingSync",
        Channel::Routed => "Routed",
    }
}

fn protocol_of(channel: Channel) -> ProtocolId {
    match channel {
        Channel::RoutingSync => ProtocolId::ROUTING_SYNC,
        Channel::Routed => ProtocolId::ROUTED,
    }
}

impl RoutingActor {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            next_request_id: parts.first_request_id,
            parts,
            connections: HashMap::new(),
            pending: HashMap::new(),
            verifying: JoinSet::new(),
            waiting: std::collections::VecDeque::new(),
            waiting_edges: 0,
            log: SharedLogLimiter::new(LOG_LINES_PER_MINUTE, Duration::from_secs(60)),
        }
    }

    /// The time for the routing node: tokio's clock and the time of day.
    fn now(&self) -> Now {
        Now {
            instant: tokio::time::Instant::now().into_std(),
            unix_ms: unix_ms((self.parts.wall_clock)()),
        }
    }

    /// Runs until the network shuts down.
    pub(crate) async fn run(mut self) {
        let mut lost = self.parts.notifications.lost();
        loop {
            let wake = tokio::time::Instant::from_std(self.parts.node.next_wakeup());
            tokio::select! {
                () = self.parts.shutdown.cancelled() => break,
                notification = self.parts.notifications.recv() => {
                    let Some(notification) = notification else { break };
                    if self.parts.notifications.lost() != lost {
                        lost = self.parts.notifications.lost();
                        self.resync();
                    }
                    self.on_notification(notification);
                }
                Some(message) = self.parts.inbound.recv() => self.on_inbound(message),
                Some(command) = self.parts.commands.recv() => self.on_command(command),
                Some(done) = self.verifying.join_next(), if !self.verifying.is_empty() => {
                    if let Ok((batch, result)) = done {
                        let actions = self.parts.node.verified(batch, result, self.now());
                        self.carry_out(actions);
                    }
                    self.start_verifications();
                }
                () = tokio::time::sleep_until(wake) => {
                    let started = std::time::Instant::now();
                    let actions = self.parts.node.tick(self.now());
                    let recomputed = actions.iter().any(|action| {
                        matches!(action, Action::Outcome(Outcome::Recomputed { .. }))
                    });
                    let took = started.elapsed();
                    self.carry_out_timed(actions, recomputed.then_some(took));
                    self.expire_rpcs();
                }
            }
        }
        self.verifying.abort_all();
    }

    fn on_notification(&mut self, notification: ConnectionNotification) {
        match notification {
            ConnectionNotification::NewPeer(metadata, network_id)
                if network_id == self.parts.network_id =>
            {
                self.peer_up(
                    metadata.remote_peer_id,
                    metadata.connection_id,
                    metadata.origin,
                    speaks_routing(metadata.application_protocols),
                );
            }
            ConnectionNotification::LostPeer(metadata, network_id, _)
                if network_id == self.parts.network_id =>
            {
                let peer = metadata.remote_peer_id;
                if self.connections.get(&peer) == Some(&metadata.connection_id) {
                    self.connections.remove(&peer);
                    let actions = self.parts.node.disconnected(peer, self.now());
                    self.carry_out(actions);
                }
            }
            _ => {}
        }
        self.count_neighbours();
    }

    fn count_neighbours(&self) {
        self.parts
            .metrics
            .set_neighbours(self.parts.node.neighbours().len());
    }

    fn peer_up(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        origin: ConnectionOrigin,
        speaks: bool,
    ) {
        if self.connections.get(&peer) == Some(&connection) {
            return;
        }
        self.connections.insert(peer, connection);
        let dialed = origin == ConnectionOrigin::Outbound;
        let actions = self.parts.node.connected(peer, speaks, dialed, self.now());
        self.carry_out(actions);
        self.count_neighbours();
    }

    /// After lost notifications: brings the neighbours in line with who is connected.
    fn resync(&mut self) {
        // Ordered, so that a simulated run replays (a HashMap's order differs per process).
        let connected: BTreeMap<PeerId, _> = self
            .parts
            .peers
            .connected_peers_and_metadata()
            .into_iter()
            .filter(|(peer, _)| peer.network_id == self.parts.network_id)
            .map(|(peer, metadata)| (peer.peer_id, metadata))
            .collect();
        let mut gone: Vec<PeerId> = self
            .connections
            .keys()
            .filter(|peer| !connected.contains_key(peer))
            .copied()
            .collect();
        gone.sort_unstable();
        for peer in gone {
            self.connections.remove(&peer);
            let actions = self.parts.node.disconnected(peer, self.now());
            self.carry_out(actions);
        }
        for (peer, metadata) in connected {
            self.peer_up(
                peer,
                metadata.connection_id,
                metadata.origin,
                speaks_routing(metadata.application_protocols),
            );
        }
    }

    fn on_inbound(&mut self, message: InboundRouting) {
        // The intake can be ahead of the connection notification: look the peer up.
        if !self.connections.contains_key(&message.from) {
            let peer = PeerNetworkId::new(self.parts.network_id, message.from);
            if let Some(metadata) = self.parts.peers.metadata(peer) {
                self.peer_up(
                    message.from,
                    metadata.connection_id,
                    metadata.origin,
                    speaks_routing(metadata.application_protocols),
                );
            }
        }
        let actions =
            self.parts
                .node
                .received(message.from, message.channel, &message.bytes, self.now());
        self.carry_out(actions);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send {
                target,
                protocol,
                body,
                verdict,
            } => {
                let result = self.originate(target, RoutedKind::DirectSend, protocol, body);
                let _ = verdict.send(result);
            }
            Command::Rpc {
                target,
                protocol,
                body,
                timeout,
                outcome,
            } => {
                if self.pending.len() >= MAX_PENDING_ROUTED_RPCS {
                    self.expire_rpcs();
                }
                if self.pending.len() >= MAX_PENDING_ROUTED_RPCS {
                    let _ = outcome.send(RpcOutcome::Refused(SendRefused::Busy));
                    return;
                }
                let request_id = self.next_request_id;
                self.next_request_id = self.next_request_id.wrapping_add(1);
                match self.originate(target, RoutedKind::Request { request_id }, protocol, body) {
                    Ok(()) => {
                        self.pending.insert(
                            request_id,
                            PendingRpc {
                                target,
                                outcome,
                                deadline: tokio::time::Instant::now() + timeout,
                            },
                        );
                    }
                    Err(refused) => {
                        let _ = outcome.send(RpcOutcome::Refused(refused));
                    }
                }
            }
            Command::Reply {
                request,
                request_id,
                protocol,
                body,
            } => {
                match self
                    .parts
                    .node
                    .reply(request, request_id, protocol.as_u8(), body, self.now())
                {
                    Ok(actions) => {
                        self.parts.metrics.record_routed("sent");
                        self.carry_out(actions);
                    }
                    Err(reason) => self.parts.metrics.record_routed_dropped(reason.as_str()),
                }
            }
            Command::Snapshot {
                offset,
                limit,
                reply,
            } => {
                let node = &self.parts.node;
                let snapshot = RoutingSnapshot {
                    edges: node.table().len(),
                    reachable: node.reachable_count(),
                    neighbours: node.neighbours(),
                    last_recompute_unix_ms: node.last_recompute().map(|at| at.unix_ms),
                    routes: node
                        .routes(offset, limit)
                        .into_iter()
                        .map(|route| RouteEntry {
                            target: route.target,
                            distance: route.distance,
                            next_hops: route.next_hops,
                        })
                        .collect(),
                };
                let _ = reply.send(snapshot);
            }
        }
    }

    fn originate(
        &mut self,
        target: PeerId,
        kind: RoutedKind,
        protocol: ProtocolId,
        body: Bytes,
    ) -> Result<(), SendRefused> {
        match self
            .parts
            .node
            .send(target, kind, protocol.as_u8(), body, self.now())
        {
            Ok(actions) => {
                self.parts.metrics.record_routed("sent");
                self.carry_out(actions);
                Ok(())
            }
            Err(reason) => {
                self.parts.metrics.record_routed_dropped(reason.as_str());
                Err(match reason {
                    DropReason::NoRoute => SendRefused::NoRoute,
                    _ => SendRefused::Busy,
                })
            }
        }
    }

    /// Fails the routed RPCs past their deadline (their callers have stopped waiting).
    fn expire_rpcs(&mut self) {
        let now = tokio::time::Instant::now();
        self.pending
            .retain(|_, pending| pending.deadline > now && !pending.outcome.is_closed());
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        self.carry_out_timed(actions, None);
    }

    /// Carries out `actions`; `recompute` is how long the tick that recomputed took.
    fn carry_out_timed(&mut self, actions: Vec<Action>, recompute: Option<Duration>) {
        for action in actions {
            match action {
                Action::Send { to, channel, bytes } => self.send(to, channel, bytes),
                Action::Deliver(message) => self.deliver(message),
                Action::Verify { batch, edges } => {
                    if self.waiting_edges + edges.len() > MAX_EDGES_AWAITING_VERIFICATION {
                        // Many neighbours each within their own budget: this batch is dropped
                        // unverified (no ban), as if over its sender's budget.
                        self.parts
                            .metrics
                            .record_edges_rejected("over_verify_budget", edges.len());
                        let none = VerifiedBatch::default();
                        let more = self.parts.node.verified(batch, none, self.now());
                        self.carry_out(more);
                        continue;
                    }
                    self.waiting_edges += edges.len();
                    self.waiting.push_back((batch, edges));
                    self.start_verifications();
                }
                Action::Ban { peer, reason } => self.ban(peer, &reason),
                Action::StoreComponent(component) => self.parts.storage.put(component),
                Action::LoadComponents(ids) => {
                    for id in ids {
                        if let Some(component) = self.parts.storage.take(id) {
                            let more = self.parts.node.component_loaded(component, self.now());
                            self.carry_out(more);
                        }
                    }
                }
                Action::ForgetComponents(ids) => {
                    for id in ids {
                        self.parts.storage.forget(id);
                    }
                }
                Action::Outcome(outcome) => self.record(outcome, recompute),
            }
        }
    }

    fn start_verifications(&mut self) {
        while self.verifying.len() < MAX_VERIFY_BATCHES {
            let Some((batch, edges)) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_edges -= edges.len();
            match self.parts.verify_on {
                VerifyOn::BlockingPool => {
                    self.verifying
                        .spawn_blocking(move || (batch, verify_batch(edges)));
                }
                VerifyOn::Runtime => {
                    self.verifying
                        .spawn(async move { (batch, verify_batch(edges)) });
                }
            }
        }
    }

    fn send(&self, to: PeerId, channel: Channel, bytes: Bytes) {
        let peer = PeerNetworkId::new(self.parts.network_id, to);
        let protocol = protocol_of(channel);
        let sent = self
            .parts
            .peers
            .sender(peer)
            .is_some_and(|(protocols, handle)| {
                // Never to a peer that did not advertise it (AptosNet peers).
                protocols.contains(protocol) && handle.send_direct(protocol, bytes).is_ok()
            });
        if !sent && channel == Channel::Routed {
            self.parts.metrics.record_routed_dropped("send_failed");
        }
    }

    fn deliver(&mut self, message: RoutedMessage) {
        let protocol = ProtocolId::from_wire(message.protocol);
        let author = message.author;
        match message.kind {
            RoutedKind::Response { request_id } => {
                // Only the request's target may answer it.
                match self.pending.remove(&request_id) {
                    Some(pending) if pending.target == author => {
                        let _ = pending.outcome.send(RpcOutcome::Response(message.body));
                    }
                    Some(pending) => {
                        self.pending.insert(request_id, pending);
                        self.parts
                            .metrics
                            .record_routed_dropped("unknown_route_back");
                    }
                    None => self
                        .parts
                        .metrics
                        .record_routed_dropped("unknown_route_back"),
                }
            }
            RoutedKind::DirectSend | RoutedKind::Request { .. } if Intake::handles(protocol) => {
                // peerlane's own protocols are never routed.
                self.parts.metrics.record_routed_dropped("unknown_protocol");
            }
            RoutedKind::DirectSend => {
                if !self
                    .parts
                    .router
                    .deliver_routed(author, protocol, message.body, None)
                {
                    self.parts.metrics.record_routed_dropped("unknown_protocol");
                }
            }
            RoutedKind::Request { request_id } => {
                let responder = RoutedResponder {
                    handle: self.parts.handle.clone(),
                    request: message.hash(),
                    request_id,
                    protocol,
                };
                if !self.parts.router.deliver_routed(
                    author,
                    protocol,
                    message.body,
                    Some(responder),
                ) {
                    self.parts.metrics.record_routed_dropped("unknown_protocol");
                }
            }
        }
    }

    /// Bans `peer` for `routing.ban_duration_ms` through the network's ban list, and closes
    /// its connection with a notice saying why.
    fn ban(&self, peer: PeerId, reason: &BanReason) {
        self.parts.metrics.record_ban(reason.as_str());
        let duration = self.parts.config.ban_duration;
        let until = SystemTime::now() + duration;
        let cause = match reason {
            BanReason::BadEdgeSignature(_) => BanCause::InvalidEdge,
            _ => BanCause::RoutingMisbehaviour,
        };
        self.parts.record_events.publish(RecordEvent::Banned {
            peer_id: peer,
            cause,
            until: Some(until),
        });
        self.parts
            .banned
            .insert_until(peer, Some(tokio::time::Instant::now() + duration));
        tracing::warn!(
            network = %self.parts.network_id,
            %peer,
            reason = reason.as_str(),
            "peer {peer} banned for {duration:?}: {reason}"
        );
        let notice = match reason {
            BanReason::BadEdgeSignature(_) | BanReason::BadRoutedSignature => {
                DisconnectCode::BadSignature
            }
            BanReason::Misbehaviour(_) | BanReason::BadProposal(_) => {
                DisconnectCode::banned_until(Some(until))
            }
        };
        let manager = self.parts.manager.clone();
        // Not awaited here: the actor goes on while the connection closes.
        self.parts.tracker.spawn(async move {
            let _ = manager
                .disconnect_because(peer, "banned", Some(notice))
                .await;
        });
    }

    fn record(&self, outcome: Outcome, recompute: Option<Duration>) {
        let metrics = &self.parts.metrics;
        match outcome {
            Outcome::EdgesReceived {
                precheck,
                over_verify_budget,
            } => {
                metrics.record_edges_received(precheck.received);
                if precheck.message_too_large {
                    metrics.record_edges_rejected("message_too_large", precheck.received);
                }
                metrics.record_edges_rejected("malformed", precheck.malformed);
                metrics.record_edges_rejected("future_nonce", precheck.future_nonce);
                metrics.record_edges_rejected("stale", precheck.stale);
                metrics.record_edges_rejected("duplicate", precheck.duplicate);
                metrics.record_edges_rejected("over_max_edges", precheck.over_max_edges);
                metrics.record_edges_rejected(
                    "over_max_edges_per_peer",
                    precheck.over_max_edges_per_peer,
                );
                metrics.record_edges_rejected("over_max_peers", precheck.over_max_peers);
                metrics.record_edges_rejected("over_verify_budget", over_verify_budget);
            }
            Outcome::EdgesVerified {
                valid,
                rejected,
                applied: _,
            } => {
                metrics.record_edges_verified(valid);
                if rejected > 0 {
                    metrics.record_edges_rejected("bad_signature", 1);
                    metrics.record_edges_rejected("unchecked", rejected - 1);
                }
                metrics.set_edges(self.parts.node.table().len());
            }
            Outcome::Recomputed { reachable, edges } => {
                let seconds = recompute.map_or(0.0, |took| took.as_secs_f64());
                metrics.record_recompute(seconds, reachable, edges);
            }
            Outcome::Broadcast { edges, .. } => metrics.record_broadcast(edges),
            Outcome::BroadcastDropped => metrics.record_broadcast_dropped(),
            Outcome::RoutedForwarded => metrics.record_routed("forwarded"),
            Outcome::RoutedDelivered => metrics.record_routed("delivered"),
            Outcome::RoutedDropped(reason) => {
                metrics.record_routed_dropped(reason.as_str());
                if let Some(suppressed) = self.log.allow(std::time::Instant::now()) {
                    tracing::debug!(
                        reason = reason.as_str(),
                        suppressed,
                        "routed message dropped"
                    );
                }
            }
            Outcome::Malformed(channel) => metrics.record_malformed(channel_name(channel)),
            Outcome::Restored { applied, .. } => metrics.record_pruned("restored", applied),
            Outcome::Pruned { edges, .. } => metrics.record_pruned("pruned", edges),
            Outcome::TombstonesDropped(n) => metrics.record_pruned("tombstone_dropped", n),
        }
    }
}

/// Whether a peer's negotiated protocols include both routing protocols.
fn speaks_routing(protocols: wire::ProtocolIdSet) -> bool {
    protocols.contains(ProtocolId::ROUTING_SYNC) && protocols.contains(ProtocolId::ROUTED)
}
