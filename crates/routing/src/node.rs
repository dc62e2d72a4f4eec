//! [`RoutingNode`]: one node's whole routing state as a pure state machine. It owns the
//! [`EdgeTable`], [`NextHops`], [`RouteBackTable`], [`PrunedIndex`], the budgets and the
//! timers, takes inputs (a connection up or down, a message from a neighbour, the result of
//! a signature-verification batch, a routed send of the node's own, a tick) and returns
//! [`Action`]s for its driver to carry out. No tasks, no sockets, no clock: every input
//! carries [`Now`], and [`RoutingNode::next_wakeup`] says when to tick next.
//!
//! The facade's routing actor drives it over TCP; a simulation can drive thousands of them
//! in one loop, passing the [`Action::Send`] bytes between them.
//!
//! ```text
//! connected ───────► EdgeProposal (dialer) + SummaryRoot        ─► Action::Send (67)
//! disconnected ────► removal of the local edge                  ─► broadcast batch
//! received(67) ────► summaries answered; Edges: precheck, budget ─► Action::Verify
//! verified ────────► apply; bad signature                        ─► Action::Ban
//! received(68) ────► budget, forward()                           ─► Action::Send (68) / Deliver
//! send / reply ────► sign, forward()                             ─► Action::Send (68) / Deliver
//! tick ────────────► broadcast due, recompute due, prune due     ─► Send / Store / Load
//! ```
//!
//! Every drop and refusal comes out as an [`Action::Outcome`], so that the driver's counters
//! see everything without peeking inside.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use netcore::PeerId;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::budget::VerifyBudget;
use crate::config::RoutingConfig;
use crate::edge::{Edge, EdgeKey, EdgeProposal};
use crate::error::Error;
use crate::forward::{DropReason, Forward, forward};
use crate::graph::{ApplyOutcome, EdgeTable, GraphLimits, PrecheckOutcome, VerifiedBatch};
use crate::messages::{RoutingSyncMessage, decode_routed, encode_routed};
use crate::next_hops::NextHops;
use crate::nonce;
use crate::prune::{Component, ComponentId, PrunedIndex};
use crate::reconcile;
use crate::route_back::RouteBackTable;
use crate::routed::{RoutedHash, RoutedKind, RoutedMessage, RoutedTarget};
use crate::schedule::{EdgeBatcher, PushOutcome, RecomputeSchedule};
use crate::xeddsa::SigningKey;

/// How often the node looks for tombstones to drop and unreachable edges to prune.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// How many times one connection may answer our proposal with `EdgeProposalStale` before we
/// stop proposing (an honest peer needs one).
const MAX_PROPOSAL_RETRIES: u8 = 3;

/// The two routing protocols. Protocol ids: 67 and 68 (reserved in the `wire` crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// ROUTING_SYNC (67): [`RoutingSyncMessage`].
    RoutingSync,
    /// ROUTED (68): one [`RoutedMessage`].
    Routed,
}

impl Channel {
    /// The protocol id.
    pub const fn protocol_id(self) -> u8 {
        match self {
            Self::RoutingSync => 67,
            Self::Routed => 68,
        }
    }

    /// The channel of protocol id `id`, if it is one.
    pub const fn from_protocol_id(id: u8) -> Option<Self> {
        match id {
            67 => Some(Self::RoutingSync),
            68 => Some(Self::Routed),
            _ => None,
        }
    }
}

/// The time an input happens at: the monotonic clock for timers and the wall clock (ms since
/// the Unix epoch) for edge nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time (`tokio::time::Instant::now().into_std()` under a paused clock works).
    pub instant: Instant,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// `self` moved on by `by` on both clocks.
    pub fn after(self, by: Duration) -> Self {
        Self {
            instant: self.instant + by,
            unix_ms: self
                .unix_ms
                .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Identifies a verification batch between [`Action::Verify`] and [`RoutingNode::verified`].
pub type BatchId = u64;

/// Why a neighbour is banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// An edge in its `Edges` did not verify.
    BadEdgeSignature(Error),
    /// It sent what no honest node sends: a message over the edge limit, malformed edges,
    /// nonces too far ahead.
    Misbehaviour(&'static str),
    /// Its proposal or acceptance of our edge was invalid.
    BadProposal(Error),
    /// It forwarded a routed message whose author's signature does not verify.
    BadRoutedSignature,
}

impl BanReason {
    /// A short label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BadEdgeSignature(_) => "bad_edge_signature",
            Self::Misbehaviour(_) => "misbehaviour",
            Self::BadProposal(_) => "bad_proposal",
            Self::BadRoutedSignature => "bad_routed_signature",
        }
    }
}

impl std::fmt::Display for BanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadEdgeSignature(error) => {
                write!(f, "sent an edge with a bad signature: {error}")
            }
            Self::Misbehaviour(what) => write!(f, "routing misbehaviour: {what}"),
            Self::BadProposal(error) => write!(f, "invalid edge proposal: {error}"),
            Self::BadRoutedSignature => {
                write!(f, "forwarded a routed message with a bad signature")
            }
        }
    }
}

/// Something the node observed, for the driver's metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Edges received in an `Edges` message, and what the precheck and the verify budget
    /// did with them (`over_verify_budget`: dropped by [`VerifyBudget`]).
    EdgesReceived {
        /// The precheck's classification.
        precheck: PrecheckOutcome,
        /// Edges dropped for the sender's verify budget.
        over_verify_budget: usize,
    },
    /// A verification batch came back: `valid` edges verified, `rejected` did not (the first
    /// bad one and those after it, unchecked), `applied` changed the table.
    EdgesVerified {
        /// Edges whose signatures verified.
        valid: usize,
        /// Edges refused (bad signature, and the unchecked rest of the batch).
        rejected: usize,
        /// Edges that changed the table.
        applied: usize,
    },
    /// Next hops were recomputed: `reachable` peers, `edges` in the table.
    Recomputed {
        /// Peers reachable from the local node.
        reachable: usize,
        /// Edges in the table, tombstones included.
        edges: usize,
    },
    /// An incremental broadcast went out to `neighbours` neighbours (each without the
    /// edges it sent us).
    Broadcast {
        /// Edges in it.
        edges: usize,
        /// Neighbours it went to.
        neighbours: usize,
    },
    /// A pending broadcast edge was dropped for `broadcast_max_pending`.
    BroadcastDropped,
    /// A routed message from a neighbour was sent on to its next hop (the node's own
    /// messages are not counted here).
    RoutedForwarded,
    /// A routed message was delivered to the local node.
    RoutedDelivered,
    /// A routed message was dropped.
    RoutedDropped(DropReason),
    /// A message on 67 or 68 that did not decode, or came from a peer that is not a routing
    /// neighbour; dropped.
    Malformed(Channel),
    /// A stored component came back: `edges` in it, `applied` of them changed the table.
    Restored {
        /// Edges in the component.
        edges: usize,
        /// Edges that changed the table (the others it held at a newer nonce).
        applied: usize,
    },
    /// Unreachable components left memory.
    Pruned {
        /// Components stored.
        components: usize,
        /// Edges in them.
        edges: usize,
    },
    /// Tombstones dropped after `tombstone_keep`.
    TombstonesDropped(usize),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` to the neighbour `to` on `channel` (a direct send). A neighbour that is
    /// gone by then is simply skipped.
    Send {
        /// The neighbour.
        to: PeerId,
        /// 67 or 68.
        channel: Channel,
        /// The encoded message.
        bytes: Bytes,
    },
    /// A routed message for the local node: hand its body to the application of its
    /// protocol, with its author as the sender. A `Request` is answered with
    /// [`RoutingNode::reply`] (its hash: [`RoutedMessage::hash`]); a `Response` completes the
    /// node's own request of that id, if its author is the request's target.
    Deliver(RoutedMessage),
    /// Verify `edges` ([`crate::verify_batch`], on a blocking pool or another task) and pass
    /// the result to [`RoutingNode::verified`] with `batch`.
    Verify {
        /// Give it back with the result.
        batch: BatchId,
        /// The edges.
        edges: Vec<Edge>,
    },
    /// Disconnect and ban the neighbour `peer`.
    Ban {
        /// The neighbour.
        peer: PeerId,
        /// Why.
        reason: BanReason,
    },
    /// Keep this component (on disk if there is a store); it may be asked for again by
    /// [`Action::LoadComponents`].
    StoreComponent(Component),
    /// Load these stored components and pass each to [`RoutingNode::component_loaded`].
    LoadComponents(Vec<ComponentId>),
    /// These stored components will not be asked for again: delete them.
    ForgetComponents(Vec<ComponentId>),
    /// For metrics.
    Outcome(Outcome),
}

/// A routing neighbour: connected, and it advertised both routing protocols.
#[derive(Clone, Debug)]
struct Neighbour {
    /// Our proposal, while we wait for its acceptance (we dialed).
    proposal: Option<EdgeProposal>,
    retries: u8,
}

/// A snapshot of the routes for display (the admin API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    /// The target.
    pub target: PeerId,
    /// Hops to it.
    pub distance: u32,
    /// The neighbours that start a shortest path to it.
    pub next_hops: Vec<PeerId>,
}

/// One node's routing state; see the module docs.
#[derive(Debug)]
pub struct RoutingNode {
    key: SigningKey,
    local: PeerId,
    config: RoutingConfig,
    table: EdgeTable,
    next_hops: NextHops,
    schedule: RecomputeSchedule,
    batcher: EdgeBatcher,
    route_back: RouteBackTable,
    pruned: PrunedIndex,
    edge_budget: VerifyBudget,
    routed_budget: VerifyBudget,
    neighbours: HashMap<PeerId, Neighbour>,
    /// The neighbour each edge waiting for broadcast came from (with its nonce).
    sources: HashMap<EdgeKey, (u64, PeerId)>,
    /// Verification batches out, by id: who sent them.
    batches: HashMap<BatchId, PeerId>,
    next_batch: BatchId,
    /// The reachable set of the last recompute, to see who became reachable.
    reachable: HashSet<PeerId>,
    last_recompute: Option<Now>,
    next_housekeeping: Instant,
    rng: StdRng,
}

impl RoutingNode {
    /// A node signing with `key`, under `config` (validate it first), its random choices
    /// (signature randomness, routed nonces) from `seed`.
    pub fn new(key: SigningKey, config: RoutingConfig, seed: u64, now: Now) -> Self {
        let local = key.peer_id();
        Self {
            table: EdgeTable::new(local, GraphLimits::from(&config)),
            next_hops: NextHops::default(),
            schedule: RecomputeSchedule::new(config.recompute_quiet, config.recompute_max_delay),
            batcher: EdgeBatcher::new(
                config.broadcast_max_edges,
                config.broadcast_max_delay,
                config.broadcast_max_pending,
            ),
            route_back: RouteBackTable::new(
                config.route_back_capacity,
                config.route_back_per_hop,
                config.route_back_expiry,
            ),
            pruned: PrunedIndex::new(config.max_pruned_peers),
            edge_budget: VerifyBudget::new(
                config.verify_rate_per_peer,
                config.verify_burst_per_peer,
            ),
            routed_budget: VerifyBudget::new(
                config.routed_verify_rate_per_peer,
                config.routed_verify_burst_per_peer,
            ),
            neighbours: HashMap::new(),
            sources: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            reachable: HashSet::new(),
            last_recompute: None,
            next_housekeeping: now.instant + HOUSEKEEPING_INTERVAL,
            rng: StdRng::seed_from_u64(seed),
            key,
            local,
            config,
        }
    }

    /// The local node's PeerId.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The config.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// The edge table (read only).
    pub fn table(&self) -> &EdgeTable {
        &self.table
    }

    /// The routing neighbours, sorted.
    pub fn neighbours(&self) -> Vec<PeerId> {
        let mut neighbours: Vec<PeerId> = self.neighbours.keys().copied().collect();
        neighbours.sort_unstable();
        neighbours
    }

    /// Whether `peer` is a routing neighbour.
    pub fn is_neighbour(&self, peer: &PeerId) -> bool {
        self.neighbours.contains_key(peer)
    }

    /// Whether `target` is reachable by the last recompute.
    pub fn can_reach(&self, target: &PeerId) -> bool {
        self.next_hops.distance(target).is_some()
    }

    /// Peers reachable by the last recompute.
    pub fn reachable_count(&self) -> usize {
        self.next_hops.len()
    }

    /// When next hops were last recomputed.
    pub fn last_recompute(&self) -> Option<Now> {
        self.last_recompute
    }

    /// Live route-back entries.
    pub fn route_back_len(&self) -> usize {
        self.route_back.len()
    }

    /// Verification batches handed out and not yet back.
    pub fn batches_in_flight(&self) -> usize {
        self.batches.len()
    }

    /// The routes, sorted by target, skipping `offset` and at most `limit` of them.
    pub fn routes(&self, offset: usize, limit: usize) -> Vec<RouteView> {
        let mut targets: Vec<PeerId> = self.next_hops.reachable().collect();
        targets.sort_unstable();
        targets
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|target| {
                let mut next_hops = self.next_hops.first_hops(&target).to_vec();
                next_hops.sort_unstable();
                RouteView {
                    target,
                    distance: self.next_hops.distance(&target).unwrap_or(0),
                    next_hops,
                }
            })
            .collect()
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub fn next_wakeup(&self) -> Instant {
        [self.batcher.deadline(), self.schedule.deadline()]
            .into_iter()
            .flatten()
            .fold(self.next_housekeeping, Instant::min)
    }

    /// A connection to `peer` is up. `speaks_routing`: it advertised both 67 and 68 (a peer
    /// that did not is ignored: it never gets routing traffic). `dialed`: we opened the
    /// connection, so we propose the edge. Called again for a replaced connection, it
    /// starts over.
    pub fn connected(
        &mut self,
        peer: PeerId,
        speaks_routing: bool,
        dialed: bool,
        now: Now,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if !speaks_routing || peer == self.local {
            // A connection that replaced a routing one with one that is not: as if it ended.
            if self.neighbours.contains_key(&peer) {
                actions.extend(self.disconnected(peer, now));
            }
            return actions;
        }
        let mut neighbour = Neighbour {
            proposal: None,
            retries: 0,
        };
        if dialed {
            match self.propose(peer, None, now) {
                Ok((proposal, action)) => {
                    neighbour.proposal = Some(proposal);
                    actions.push(action);
                }
                Err(_) => return actions,
            }
        }
        self.neighbours.insert(peer, neighbour);
        actions.push(sync(peer, &reconcile::on_connect(&self.table)));
        actions
    }

    /// The connection to `peer` ended: the local node signs the removal of their edge and
    /// broadcasts it (both ends may; the second is stale everywhere).
    pub fn disconnected(&mut self, peer: PeerId, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.neighbours.remove(&peer).is_none() {
            return actions;
        }
        self.edge_budget.forget(&peer);
        self.routed_budget.forget(&peer);
        if let Some(edge) = EdgeKey::new(self.local, peer).and_then(|key| self.table.get(&key))
            && edge.is_active()
            && let Ok(removal) = edge.remove(&self.key, &mut self.rng)
        {
            let applied = self.table.insert_trusted(removal);
            self.changed(applied, now, &mut actions);
        }
        actions
    }

    /// A message from the neighbour `from` on `channel`.
    pub fn received(
        &mut self,
        from: PeerId,
        channel: Channel,
        bytes: &[u8],
        now: Now,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.neighbours.contains_key(&from) {
            actions.push(Action::Outcome(Outcome::Malformed(channel)));
            return actions;
        }
        match channel {
            Channel::RoutingSync => {
                match RoutingSyncMessage::decode(bytes, self.config.max_edges_per_message) {
                    Ok(message) => self.on_sync(from, message, now, &mut actions),
                    Err(Error::TooManyItems { .. }) => actions.push(Action::Ban {
                        peer: from,
                        reason: BanReason::Misbehaviour("a message over the edge limit"),
                    }),
                    Err(_) => actions.push(Action::Outcome(Outcome::Malformed(channel))),
                }
            }
            Channel::Routed => match decode_routed(bytes) {
                Ok(message) => {
                    if self.routed_budget.admit(from, 1, now.instant) == 0 {
                        actions.push(Action::Outcome(Outcome::RoutedDropped(
                            DropReason::OverBudget,
                        )));
                    } else {
                        self.route(message, from, now, &mut actions);
                    }
                }
                Err(_) => actions.push(Action::Outcome(Outcome::Malformed(channel))),
            },
        }
        actions
    }

    /// The result of the verification batch `batch` ([`Action::Verify`]).
    pub fn verified(&mut self, batch: BatchId, result: VerifiedBatch, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(sender) = self.batches.remove(&batch) else {
            return actions;
        };
        let rejected = usize::from(result.bad.is_some()) + result.unchecked;
        let valid = result.valid.len();
        let applied = self.table.apply(result.valid);
        actions.push(Action::Outcome(Outcome::EdgesVerified {
            valid,
            rejected,
            applied: applied.changed.len(),
        }));
        self.note_sources(&applied.changed, sender);
        self.changed(applied, now, &mut actions);
        if let Some((_, error)) = result.bad {
            actions.push(Action::Ban {
                peer: sender,
                reason: BanReason::BadEdgeSignature(error),
            });
        }
        actions
    }

    /// Sends a message of the node's own: signed, TTL `routed_ttl`, to `target`'s next hop
    /// (or delivered locally if `target` is the local node). `kind` is a direct send or a
    /// request (answered by a `Response` [`Action::Deliver`]). Fails with the
    /// [`DropReason`] (`NoRoute` when `target` is not reachable).
    pub fn send(
        &mut self,
        target: PeerId,
        kind: RoutedKind,
        protocol: u8,
        body: Bytes,
        now: Now,
    ) -> Result<Vec<Action>, DropReason> {
        self.originate(RoutedTarget::Peer(target), kind, protocol, body, now)
    }

    /// Answers the routed request of hash `request` (from a [`Action::Deliver`]) with
    /// `body`, back along the way it came. Fails with `UnknownRouteBack` once its
    /// route-back entry has expired.
    pub fn reply(
        &mut self,
        request: RoutedHash,
        request_id: u64,
        protocol: u8,
        body: Bytes,
        now: Now,
    ) -> Result<Vec<Action>, DropReason> {
        self.originate(
            RoutedTarget::RouteBack(request),
            RoutedKind::Response { request_id },
            protocol,
            body,
            now,
        )
    }

    /// A stored component, loaded after [`Action::LoadComponents`].
    pub fn component_loaded(&mut self, component: Component, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        let edges = component.edges.len();
        let applied = self.table.restore(component);
        actions.push(Action::Outcome(Outcome::Restored {
            edges,
            applied: applied.changed.len(),
        }));
        // Restored edges are old news to the neighbours (they were pruned for lack of
        // reachability, not changed), so only the next hops need them.
        if applied.topology_changed {
            self.schedule.changed(now.instant);
        }
        actions
    }

    /// Does what is due at `now`: the broadcast batch, the next-hop recompute (and what it
    /// reveals: local edges to remove, pruned components to load), and every
    /// [`HOUSEKEEPING_INTERVAL`] tombstones and pruning.
    pub fn tick(&mut self, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.schedule.take_due(now.instant) {
            self.recompute(now, &mut actions);
        }
        while let Some(batch) = self.batcher.take_due(now.instant) {
            self.broadcast(batch, &mut actions);
        }
        if now.instant >= self.next_housekeeping {
            self.next_housekeeping = now.instant + HOUSEKEEPING_INTERVAL;
            self.route_back.expire(now.instant);
            let dropped = self.table.prune_tombstones(now.unix_ms);
            if dropped > 0 {
                actions.push(Action::Outcome(Outcome::TombstonesDropped(dropped)));
            }
            let after = crate::config::duration_ms(self.config.prune_unreachable_after);
            let components = self.table.take_unreachable(now.unix_ms, after);
            if !components.is_empty() {
                actions.push(Action::Outcome(Outcome::Pruned {
                    components: components.len(),
                    edges: components.iter().map(|c| c.edges.len()).sum(),
                }));
            }
            for component in components {
                let eviction = self.pruned.insert(&component);
                actions.push(Action::StoreComponent(component));
                if !eviction.forgotten.is_empty() {
                    actions.push(Action::ForgetComponents(eviction.forgotten));
                }
            }
        }
        actions
    }

    /// Sends `batch` to every neighbour, leaving out of each neighbour's copy the edges it
    /// sent us (it has them: echoing them back would double the traffic of every link).
    fn broadcast(&mut self, batch: Vec<Edge>, actions: &mut Vec<Action>) {
        let sources: Vec<Option<PeerId>> = batch
            .iter()
            .map(|edge| {
                self.sources
                    .remove(&edge.key)
                    .filter(|(nonce, _)| *nonce == edge.nonce)
                    .map(|(_, source)| source)
            })
            .collect();
        let everyone = Bytes::from(RoutingSyncMessage::Edges(batch.clone()).encode());
        let neighbours = self.neighbours();
        let mut sent_to = 0;
        for peer in &neighbours {
            let bytes = if sources.contains(&Some(*peer)) {
                let theirs: Vec<Edge> = batch
                    .iter()
                    .zip(&sources)
                    .filter(|(_, source)| **source != Some(*peer))
                    .map(|(edge, _)| *edge)
                    .collect();
                if theirs.is_empty() {
                    continue;
                }
                Bytes::from(RoutingSyncMessage::Edges(theirs).encode())
            } else {
                everyone.clone()
            };
            sent_to += 1;
            actions.push(Action::Send {
                to: *peer,
                channel: Channel::RoutingSync,
                bytes,
            });
        }
        actions.push(Action::Outcome(Outcome::Broadcast {
            edges: batch.len(),
            neighbours: sent_to,
        }));
    }

    /// Remembers that `edges` came from `sender`, so that their broadcast skips it. Bounded:
    /// entries leave with their broadcast; past twice the broadcast bound (entries whose
    /// broadcast was dropped) the memory is cleared, which only costs some echoes.
    fn note_sources(&mut self, edges: &[Edge], sender: PeerId) {
        if self.sources.len() + edges.len() > 2 * self.config.broadcast_max_pending {
            self.sources.clear();
        }
        for edge in edges {
            self.sources.insert(edge.key, (edge.nonce, sender));
        }
    }

    fn recompute(&mut self, now: Now, actions: &mut Vec<Action>) {
        self.next_hops = NextHops::compute(&self.table);
        let reachable: HashSet<PeerId> = self.next_hops.reachable().collect();
        self.table.note_reachability(&reachable, now.unix_ms);
        self.last_recompute = Some(now);
        actions.push(Action::Outcome(Outcome::Recomputed {
            reachable: reachable.len(),
            edges: self.table.len(),
        }));
        // Our active edges to peers we are not connected to (from before a restart, or
        // replayed): remove them, as NEAR does.
        let neighbours = &self.neighbours;
        let stale = self
            .table
            .stale_local_edges(|peer| neighbours.contains_key(peer));
        for edge in stale {
            if let Ok(removal) = edge.remove(&self.key, &mut self.rng) {
                let applied = self.table.insert_trusted(removal);
                self.changed(applied, now, actions);
            }
        }
        let newly: Vec<PeerId> = reachable
            .iter()
            .filter(|peer| !self.reachable.contains(peer))
            .copied()
            .collect();
        let to_load = self.pruned.take_for(newly.iter());
        if !to_load.is_empty() {
            actions.push(Action::LoadComponents(to_load));
        }
        self.reachable = reachable;
    }

    fn on_sync(
        &mut self,
        from: PeerId,
        message: RoutingSyncMessage,
        now: Now,
        actions: &mut Vec<Action>,
    ) {
        match message {
            RoutingSyncMessage::SummaryRoot(root) => {
                if let Some(answer) = reconcile::on_summary_root(&self.table, &root) {
                    actions.push(sync(from, &answer));
                }
            }
            RoutingSyncMessage::SummaryBuckets(buckets) => {
                for answer in reconcile::on_summary_buckets(
                    &self.table,
                    &buckets,
                    self.config.broadcast_max_edges,
                ) {
                    actions.push(sync(from, &answer));
                }
            }
            RoutingSyncMessage::Edges(edges) => self.on_edges(from, edges, now, actions),
            RoutingSyncMessage::EdgeProposal(proposal) => {
                self.on_proposal(from, proposal, now, actions);
            }
            RoutingSyncMessage::EdgeAccepted(edge) => self.on_accepted(from, edge, now, actions),
            RoutingSyncMessage::EdgeProposalStale { known_nonce } => {
                self.on_stale(from, known_nonce, now, actions);
            }
        }
    }

    fn on_edges(&mut self, from: PeerId, edges: Vec<Edge>, now: Now, actions: &mut Vec<Action>) {
        let precheck = self.table.precheck(edges, now.unix_ms);
        let misbehaviour = precheck.outcome.is_misbehaviour();
        let mut to_verify = precheck.to_verify;
        let admitted = if misbehaviour {
            0
        } else {
            self.edge_budget.admit(from, to_verify.len(), now.instant)
        };
        let over_verify_budget = to_verify.len() - admitted;
        to_verify.truncate(admitted);
        actions.push(Action::Outcome(Outcome::EdgesReceived {
            precheck: precheck.outcome.clone(),
            over_verify_budget,
        }));
        if misbehaviour {
            let what = if precheck.outcome.message_too_large {
                "a message over the edge limit"
            } else if precheck.outcome.future_nonce > 0 {
                "an edge nonce too far in the future"
            } else {
                "a malformed edge"
            };
            actions.push(Action::Ban {
                peer: from,
                reason: BanReason::Misbehaviour(what),
            });
            return;
        }
        if to_verify.is_empty() {
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(batch, from);
        actions.push(Action::Verify {
            batch,
            edges: to_verify,
        });
    }

    fn on_proposal(
        &mut self,
        from: PeerId,
        proposal: EdgeProposal,
        now: Now,
        actions: &mut Vec<Action>,
    ) {
        // Only the other end may propose our edge.
        if proposal.key.end_of(&from) != Some(proposal.by) {
            actions.push(Action::Ban {
                peer: from,
                reason: BanReason::BadProposal(Error::NotAnEnd),
            });
            return;
        }
        let known = self.table.get(&proposal.key).map(|edge| edge.nonce);
        match proposal.accept(
            &self.key,
            known,
            now.unix_ms,
            self.config.max_nonce_future_ms(),
            &mut self.rng,
        ) {
            Ok(edge) => {
                actions.push(sync(from, &RoutingSyncMessage::EdgeAccepted(edge)));
                let applied = self.table.insert_trusted(edge);
                self.changed(applied, now, actions);
            }
            Err(Error::NonceNotNewer { known, .. }) => {
                actions.push(sync(
                    from,
                    &RoutingSyncMessage::EdgeProposalStale { known_nonce: known },
                ));
            }
            Err(error) => actions.push(Action::Ban {
                peer: from,
                reason: BanReason::BadProposal(error),
            }),
        }
    }

    fn on_accepted(&mut self, from: PeerId, edge: Edge, now: Now, actions: &mut Vec<Action>) {
        let pending = self
            .neighbours
            .get(&from)
            .and_then(|neighbour| neighbour.proposal);
        // An acceptance of another proposal than the one pending is stale, not hostile: the
        // connection it answered was replaced (simultaneous dials, a reconnect, two nodes
        // sharing a key). It is dropped and the pending proposal kept.
        let Some(proposal) = pending.filter(|p| p.key == edge.key && p.nonce == edge.nonce) else {
            actions.push(Action::Outcome(Outcome::Malformed(Channel::RoutingSync)));
            return;
        };
        if let Some(neighbour) = self.neighbours.get_mut(&from) {
            neighbour.proposal = None;
        }
        match proposal.check_completion(&edge) {
            Ok(()) => {
                let applied = self.table.insert_trusted(edge);
                self.changed(applied, now, actions);
            }
            // Its own signature does not verify: a forgery.
            Err(error @ Error::BadSignature { signer }) if signer == from => {
                actions.push(Action::Ban {
                    peer: from,
                    reason: BanReason::BadProposal(error),
                });
            }
            // Our half is not the one we sent: another holder of our key proposed at the same
            // nonce. Nothing the peer did wrong.
            Err(_) => actions.push(Action::Outcome(Outcome::Malformed(Channel::RoutingSync))),
        }
    }

    fn on_stale(&mut self, from: PeerId, known: u64, now: Now, actions: &mut Vec<Action>) {
        let pending = self
            .neighbours
            .get(&from)
            .is_some_and(|neighbour| neighbour.proposal.is_some());
        if !pending {
            actions.push(Action::Outcome(Outcome::Malformed(Channel::RoutingSync)));
            return;
        }
        if nonce::check_not_future(known, now.unix_ms, self.config.max_nonce_future_ms()).is_err() {
            actions.push(Action::Ban {
                peer: from,
                reason: BanReason::Misbehaviour("a stale-proposal nonce too far in the future"),
            });
            return;
        }
        let retries = self.neighbours.get(&from).map_or(0, |n| n.retries);
        if retries >= MAX_PROPOSAL_RETRIES {
            return;
        }
        if let Ok((proposal, action)) = self.propose(from, Some(known), now)
            && let Some(neighbour) = self.neighbours.get_mut(&from)
        {
            neighbour.proposal = Some(proposal);
            neighbour.retries += 1;
            actions.push(action);
        }
    }

    fn propose(
        &mut self,
        peer: PeerId,
        above: Option<u64>,
        now: Now,
    ) -> Result<(EdgeProposal, Action), Error> {
        let key = EdgeKey::new(self.local, peer).ok_or(Error::EdgeEndsNotOrdered)?;
        let held = self.table.get(&key).map(|edge| edge.nonce);
        let known = match (held, above) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let proposal = EdgeProposal::new(&self.key, peer, now.unix_ms, known, &mut self.rng)?;
        let action = sync(peer, &RoutingSyncMessage::EdgeProposal(proposal));
        Ok((proposal, action))
    }

    /// Records what an insert changed: to the broadcast, and the recompute if the topology
    /// changed.
    fn changed(&mut self, applied: ApplyOutcome, now: Now, actions: &mut Vec<Action>) {
        for edge in applied.changed {
            if self.batcher.push(edge, now.instant) == PushOutcome::DroppedOldest {
                actions.push(Action::Outcome(Outcome::BroadcastDropped));
            }
        }
        if applied.topology_changed {
            self.schedule.changed(now.instant);
        }
    }

    fn originate(
        &mut self,
        target: RoutedTarget,
        kind: RoutedKind,
        protocol: u8,
        body: Bytes,
        now: Now,
    ) -> Result<Vec<Action>, DropReason> {
        let message = RoutedMessage::new(
            &self.key,
            target,
            self.config.routed_ttl,
            self.rng.next_u64(),
            kind,
            protocol,
            body,
            &mut self.rng,
        );
        let mut actions = Vec::new();
        match self.route(message, self.local, now, &mut actions) {
            Some(reason) => Err(reason),
            None => Ok(actions),
        }
    }

    /// Runs [`forward`] and turns its decision into actions; returns the drop reason, if
    /// dropped.
    fn route(
        &mut self,
        message: RoutedMessage,
        from: PeerId,
        now: Now,
        actions: &mut Vec<Action>,
    ) -> Option<DropReason> {
        let outcome = forward(
            self.local,
            message,
            from,
            &mut self.next_hops,
            &mut self.route_back,
            now.instant,
        );
        match outcome.forward {
            Forward::Deliver(message) => {
                actions.push(Action::Outcome(Outcome::RoutedDelivered));
                actions.push(Action::Deliver(message));
                None
            }
            // A next hop that is gone since the last recompute: no route until the next.
            Forward::Send { next_hop, .. } if !self.neighbours.contains_key(&next_hop) => {
                actions.push(Action::Outcome(Outcome::RoutedDropped(DropReason::NoRoute)));
                Some(DropReason::NoRoute)
            }
            Forward::Send { next_hop, message } => {
                if from != self.local {
                    actions.push(Action::Outcome(Outcome::RoutedForwarded));
                }
                actions.push(Action::Send {
                    to: next_hop,
                    channel: Channel::Routed,
                    bytes: Bytes::from(encode_routed(&message)),
                });
                None
            }
            Forward::Drop(reason) => {
                actions.push(Action::Outcome(Outcome::RoutedDropped(reason)));
                if reason == DropReason::BadSignature && from != self.local {
                    actions.push(Action::Ban {
                        peer: from,
                        reason: BanReason::BadRoutedSignature,
                    });
                }
                Some(reason)
            }
        }
    }
}

/// A ROUTING_SYNC send to `to`.
fn sync(to: PeerId, message: &RoutingSyncMessage) -> Action {
    Action::Send {
        to,
        channel: Channel::RoutingSync,
        bytes: Bytes::from(message.encode()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::edge::test_keys::key;
    use crate::graph::verify_batch;

    const START_MS: u64 = 1_700_000_000_000;

    /// Nodes wired together by hand: messages go through a queue between their state
    /// machines, verification batches are verified inline, time moves only by `advance`.
    struct Net {
        nodes: Vec<RoutingNode>,
        now: Now,
        wire: VecDeque<(usize, usize, Channel, Bytes)>,
        delivered: Vec<(usize, RoutedMessage)>,
        banned: Vec<(usize, PeerId, BanReason)>,
        outcomes: Vec<(usize, Outcome)>,
        stored: HashMap<(usize, ComponentId), Component>,
        /// Bytes sent on 67 and 68, all nodes together.
        sent_bytes: usize,
    }

    impl Net {
        fn new(count: usize, config: RoutingConfig) -> Self {
            let now = Now {
                instant: Instant::now(),
                unix_ms: START_MS,
            };
            let nodes = (0..count)
                .map(|i| RoutingNode::new(key(i as u64 + 1), config.clone(), i as u64, now))
                .collect();
            Self {
                nodes,
                now,
                wire: VecDeque::new(),
                delivered: Vec::new(),
                banned: Vec::new(),
                outcomes: Vec::new(),
                stored: HashMap::new(),
                sent_bytes: 0,
            }
        }

        fn id(&self, index: usize) -> PeerId {
            self.nodes[index].local()
        }

        fn index(&self, peer: PeerId) -> usize {
            self.nodes.iter().position(|n| n.local() == peer).unwrap()
        }

        fn handle(&mut self, at: usize, actions: Vec<Action>) {
            for action in actions {
                match action {
                    Action::Send { to, channel, bytes } => {
                        let to = self.index(to);
                        self.sent_bytes += bytes.len();
                        self.wire.push_back((at, to, channel, bytes));
                    }
                    Action::Deliver(message) => self.delivered.push((at, message)),
                    Action::Verify { batch, edges } => {
                        let result = verify_batch(edges);
                        let now = self.now;
                        let more = self.nodes[at].verified(batch, result, now);
                        self.handle(at, more);
                    }
                    Action::Ban { peer, reason } => self.banned.push((at, peer, reason)),
                    Action::StoreComponent(component) => {
                        self.stored.insert((at, component.id), component);
                    }
                    Action::LoadComponents(ids) => {
                        for id in ids {
                            if let Some(component) = self.stored.remove(&(at, id)) {
                                let now = self.now;
                                let more = self.nodes[at].component_loaded(component, now);
                                self.handle(at, more);
                            }
                        }
                    }
                    Action::ForgetComponents(ids) => {
                        for id in ids {
                            self.stored.remove(&(at, id));
                        }
                    }
                    Action::Outcome(outcome) => self.outcomes.push((at, outcome)),
                }
            }
        }

        /// Delivers every message on the wire (and what they cause).
        fn drain(&mut self) {
            while let Some((from, to, channel, bytes)) = self.wire.pop_front() {
                let (from_id, now) = (self.id(from), self.now);
                let actions = self.nodes[to].received(from_id, channel, &bytes, now);
                self.handle(to, actions);
            }
        }

        fn connect(&mut self, a: usize, b: usize) {
            let (ida, idb, now) = (self.id(a), self.id(b), self.now);
            let actions = self.nodes[a].connected(idb, true, true, now);
            self.handle(a, actions);
            let actions = self.nodes[b].connected(ida, true, false, now);
            self.handle(b, actions);
        }

        fn disconnect(&mut self, a: usize, b: usize) {
            let (ida, idb, now) = (self.id(a), self.id(b), self.now);
            // Messages in flight between them are lost with the connection.
            self.wire
                .retain(|(f, t, _, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
            let actions = self.nodes[a].disconnected(idb, now);
            self.handle(a, actions);
            let actions = self.nodes[b].disconnected(ida, now);
            self.handle(b, actions);
        }

        /// Runs until nothing is on the wire and no timer is due within `for_at_most`;
        /// returns the time it took (simulated).
        fn settle(&mut self, for_at_most: Duration) -> Duration {
            let start = self.now.instant;
            loop {
                self.drain();
                let next = self
                    .nodes
                    .iter()
                    .map(RoutingNode::next_wakeup)
                    .min()
                    .unwrap();
                let housekeeping_only = self
                    .nodes
                    .iter()
                    .all(|n| n.batcher.is_empty() && n.schedule.deadline().is_none());
                if housekeeping_only || next > start + for_at_most {
                    return self.now.instant - start;
                }
                self.advance_to(next);
            }
        }

        fn advance_to(&mut self, at: Instant) {
            if at > self.now.instant {
                self.now = self.now.after(at - self.now.instant);
            }
            for i in 0..self.nodes.len() {
                let now = self.now;
                let actions = self.nodes[i].tick(now);
                self.handle(i, actions);
            }
        }

        fn all_reach_all(&self) -> bool {
            self.nodes.iter().all(|node| {
                self.nodes
                    .iter()
                    .all(|other| other.local() == node.local() || node.can_reach(&other.local()))
            })
        }

        fn send(
            &mut self,
            from: usize,
            to: usize,
            kind: RoutedKind,
            body: &'static [u8],
        ) -> Result<(), DropReason> {
            let (target, now) = (self.id(to), self.now);
            let actions = self.nodes[from].send(target, kind, 5, Bytes::from_static(body), now)?;
            self.handle(from, actions);
            self.drain();
            Ok(())
        }

        fn drops(&self, reason: DropReason) -> usize {
            self.outcomes
                .iter()
                .filter(|(_, o)| *o == Outcome::RoutedDropped(reason))
                .count()
        }
    }

    fn line(count: usize, config: RoutingConfig) -> Net {
        let mut net = Net::new(count, config);
        for i in 0..count - 1 {
            net.connect(i, i + 1);
        }
        net
    }

    /// A line of five converges: every node routes to every other; a request from the first
    /// reaches the last over three forwarders and its response comes back by the route-back
    /// entries; a direct send arrives with its author.
    #[test]
    fn line_converges_and_routes_back() {
        let mut net = line(5, RoutingConfig::default());
        let took = net.settle(Duration::from_secs(10));
        assert!(net.all_reach_all(), "not converged after {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");

        net.send(0, 4, RoutedKind::Request { request_id: 7 }, b"ping")
            .unwrap();
        let (at, request) = net.delivered.pop().unwrap();
        assert_eq!(at, 4);
        assert_eq!(request.author, net.id(0));
        assert_eq!(request.ttl, RoutingConfig::default().routed_ttl - 3);
        let now = net.now;
        let actions = net.nodes[4]
            .reply(request.hash(), 7, 5, Bytes::from_static(b"pong"), now)
            .unwrap();
        net.handle(4, actions);
        net.drain();
        let (at, response) = net.delivered.pop().unwrap();
        assert_eq!(at, 0);
        assert_eq!(response.kind, RoutedKind::Response { request_id: 7 });
        assert_eq!(response.author, net.id(4));
        assert_eq!(response.body, Bytes::from_static(b"pong"));
        // Every forwarder's entry was used once.
        assert!(net.nodes.iter().all(|n| n.route_back_len() == 0));

        net.send(4, 0, RoutedKind::DirectSend, b"hello").unwrap();
        let (at, message) = net.delivered.pop().unwrap();
        assert_eq!((at, message.author), (0, net.id(4)));
        assert!(net.banned.is_empty());
    }

    /// With a TTL of 2, a message to a node 4 hops away is dropped on the way for its TTL;
    /// 2 hops away it arrives.
    #[test]
    fn ttl_runs_out_on_the_way() {
        let config = RoutingConfig {
            routed_ttl: 2,
            ..RoutingConfig::default()
        };
        let mut net = line(5, config);
        net.settle(Duration::from_secs(10));
        net.send(0, 4, RoutedKind::DirectSend, b"far").unwrap();
        assert!(net.delivered.is_empty());
        assert_eq!(net.drops(DropReason::TtlExhausted), 1);
        net.send(0, 3, RoutedKind::DirectSend, b"near").unwrap();
        assert_eq!(net.delivered.len(), 1);
    }

    /// In a ring of six, cutting one link reroutes around the other side; in a line, cutting
    /// the middle leaves the two halves with no route.
    #[test]
    fn ring_reroutes_and_line_reports_no_route() {
        let mut net = line(6, RoutingConfig::default());
        net.connect(5, 0);
        net.settle(Duration::from_secs(10));
        assert!(net.all_reach_all());
        assert_eq!(
            net.nodes[0].table().get(&key_of(&net, 0, 1)).unwrap().nonce % 2,
            1
        );
        net.disconnect(0, 1);
        net.settle(Duration::from_secs(10));
        assert!(net.all_reach_all());
        net.send(0, 1, RoutedKind::DirectSend, b"around").unwrap();
        assert_eq!(net.delivered.pop().unwrap().0, 1);
        // Everyone holds the removal.
        assert!(net.nodes.iter().all(|n| {
            n.table()
                .get(&key_of(&net, 0, 1))
                .is_some_and(|e| !e.is_active())
        }));

        let mut net = line(5, RoutingConfig::default());
        net.settle(Duration::from_secs(10));
        net.disconnect(2, 3);
        net.settle(Duration::from_secs(10));
        assert!(!net.nodes[0].can_reach(&net.id(4)));
        assert_eq!(
            net.send(0, 4, RoutedKind::DirectSend, b"x"),
            Err(DropReason::NoRoute)
        );
        assert!(net.nodes[0].can_reach(&net.id(2)));
    }

    fn key_of(net: &Net, a: usize, b: usize) -> EdgeKey {
        EdgeKey::new(net.id(a), net.id(b)).unwrap()
    }

    /// A neighbour that sends an edge with a forged signature is banned with the reason; its
    /// valid edges before the forged one are kept.
    #[test]
    fn a_forged_edge_bans_its_sender() {
        let mut net = line(2, RoutingConfig::default());
        net.settle(Duration::from_secs(1));
        let (x, y) = (key(50), key(51));
        let mut forged = crate::edge::test_keys::active_edge(&x, &y, START_MS + 1);
        if let crate::edge::EdgeProof::Active { signature1, .. } = &mut forged.proof {
            *signature1 = crate::xeddsa::Signature::from_bytes([7; 64]);
        }
        let good = crate::edge::test_keys::active_edge(&key(52), &key(53), START_MS + 1);
        let bytes = RoutingSyncMessage::Edges(vec![good, forged]).encode();
        let (from, now) = (net.id(1), net.now);
        let actions = net.nodes[0].received(from, Channel::RoutingSync, &bytes, now);
        net.handle(0, actions);
        assert_eq!(net.banned.len(), 1);
        let (at, peer, reason) = &net.banned[0];
        assert_eq!((*at, *peer), (0, net.id(1)));
        assert!(matches!(reason, BanReason::BadEdgeSignature(_)));
        assert!(net.nodes[0].table().get(&good.key).is_some());
        assert!(net.nodes[0].table().get(&forged.key).is_none());
    }

    /// Edges learnt from a neighbour are broadcast to the other neighbours, not echoed back
    /// to it.
    #[test]
    fn broadcasts_skip_the_neighbour_an_edge_came_from() {
        let mut net = line(3, RoutingConfig::default());
        net.settle(Duration::from_secs(10));
        let far = crate::edge::test_keys::active_edge(&key(60), &key(61), START_MS + 1);
        let bytes = RoutingSyncMessage::Edges(vec![far]).encode();
        let (from, now) = (net.id(0), net.now);
        let actions = net.nodes[1].received(from, Channel::RoutingSync, &bytes, now);
        net.handle(1, actions);
        let due = net.nodes[1].next_wakeup();
        net.now = net.now.after(due - net.now.instant);
        let now = net.now;
        let sends: Vec<PeerId> = net.nodes[1]
            .tick(now)
            .into_iter()
            .filter_map(|action| match action {
                Action::Send { to, .. } => Some(to),
                _ => None,
            })
            .collect();
        assert_eq!(sends, vec![net.id(2)]);
    }

    /// An acceptance of another proposal than the pending one (a replaced connection) is
    /// dropped without a ban; an acceptance whose other signature is forged bans.
    #[test]
    fn stale_acceptances_are_dropped_and_forged_ones_ban() {
        let mut net = Net::new(2, RoutingConfig::default());
        let (id1, now) = (net.id(1), net.now);
        let actions = net.nodes[0].connected(id1, true, true, now);
        assert!(actions.iter().any(|a| matches!(a, Action::Send { .. })));
        let pending = net.nodes[0].neighbours[&id1].proposal.unwrap();
        let other = crate::edge::test_keys::active_edge(&key(1), &key(2), pending.nonce + 2);
        let bytes = RoutingSyncMessage::EdgeAccepted(other).encode();
        let actions = net.nodes[0].received(id1, Channel::RoutingSync, &bytes, now);
        assert_eq!(
            actions,
            vec![Action::Outcome(Outcome::Malformed(Channel::RoutingSync))]
        );
        let mut forged = crate::edge::test_keys::active_edge(&key(1), &key(2), pending.nonce);
        if let crate::edge::EdgeProof::Active {
            signature0,
            signature1,
        } = &mut forged.proof
        {
            let theirs = crate::xeddsa::Signature::from_bytes([3; 64]);
            if pending.by == crate::edge::EdgeEnd::Peer0 {
                *signature0 = pending.signature;
                *signature1 = theirs;
            } else {
                *signature1 = pending.signature;
                *signature0 = theirs;
            }
        }
        let bytes = RoutingSyncMessage::EdgeAccepted(forged).encode();
        let actions = net.nodes[0].received(id1, Channel::RoutingSync, &bytes, now);
        assert!(matches!(
            actions.as_slice(),
            [Action::Ban {
                reason: BanReason::BadProposal(_),
                ..
            }]
        ));
    }

    /// A peer that did not advertise the routing protocols gets nothing and what it sends
    /// on them is refused.
    #[test]
    fn a_peer_without_routing_gets_no_traffic() {
        let mut net = Net::new(2, RoutingConfig::default());
        let (id1, now) = (net.id(1), net.now);
        assert!(net.nodes[0].connected(id1, false, true, now).is_empty());
        let root = reconcile::on_connect(net.nodes[1].table()).encode();
        let actions = net.nodes[0].received(id1, Channel::RoutingSync, &root, now);
        assert_eq!(
            actions,
            vec![Action::Outcome(Outcome::Malformed(Channel::RoutingSync))]
        );
        let tick = net.nodes[0].tick(now.after(Duration::from_secs(120)));
        assert!(!tick.iter().any(|a| matches!(a, Action::Send { .. })));
    }

    /// A neighbour flooding routed messages gets its burst verified, the rest dropped for
    /// the budget before any signature work.
    #[test]
    fn routed_flood_is_dropped_over_budget() {
        let config = RoutingConfig {
            routed_verify_burst_per_peer: 3,
            routed_verify_rate_per_peer: 1,
            ..RoutingConfig::default()
        };
        let mut net = line(2, config);
        net.settle(Duration::from_secs(1));
        let message = RoutedMessage::new(
            &key(1),
            RoutedTarget::Peer(net.id(0)),
            10,
            1,
            RoutedKind::DirectSend,
            5,
            Bytes::new(),
            &mut StdRng::seed_from_u64(1),
        );
        let bytes = encode_routed(&message);
        let (from, now) = (net.id(1), net.now);
        for _ in 0..5 {
            let actions = net.nodes[0].received(from, Channel::Routed, &bytes, now);
            net.handle(0, actions);
        }
        assert_eq!(net.delivered.len(), 3);
        assert_eq!(net.drops(DropReason::OverBudget), 2);
    }

    /// A neighbour that forwards a routed message whose body was changed on the way is
    /// banned; the message is dropped.
    #[test]
    fn a_forwarded_forgery_bans_the_previous_hop() {
        let mut net = line(3, RoutingConfig::default());
        net.settle(Duration::from_secs(10));
        let mut message = RoutedMessage::new(
            &key(1),
            RoutedTarget::Peer(net.id(2)),
            10,
            1,
            RoutedKind::DirectSend,
            5,
            Bytes::from_static(b"pay 1"),
            &mut StdRng::seed_from_u64(1),
        );
        message.body = Bytes::from_static(b"pay 9");
        let (from, now) = (net.id(1), net.now);
        let actions = net.nodes[2].received(from, Channel::Routed, &encode_routed(&message), now);
        assert!(actions.contains(&Action::Outcome(Outcome::RoutedDropped(
            DropReason::BadSignature
        ))));
        assert!(actions.contains(&Action::Ban {
            peer: from,
            reason: BanReason::BadRoutedSignature,
        }));
        assert!(!actions.iter().any(|a| matches!(a, Action::Deliver(_))));
    }

    /// An island the node stops reaching leaves memory as a stored component after
    /// `prune_unreachable_after`, and comes back when a peer of it is reachable again.
    #[test]
    fn unreachable_edges_are_pruned_and_restored() {
        let config = RoutingConfig {
            prune_unreachable_after: Duration::from_secs(600),
            ..RoutingConfig::default()
        };
        let mut net = line(4, config);
        net.settle(Duration::from_secs(10));
        net.disconnect(1, 2);
        net.settle(Duration::from_secs(10));
        assert!(!net.nodes[0].can_reach(&net.id(3)));
        // Node 0 still holds the active edge 2–3, unreachable.
        let island = key_of(&net, 2, 3);
        assert!(net.nodes[0].table().get(&island).is_some());
        let later = net.now.instant + Duration::from_secs(1_300);
        net.advance_to(later);
        net.advance_to(later + HOUSEKEEPING_INTERVAL);
        assert!(net.nodes[0].table().get(&island).is_none());
        assert!(!net.stored.is_empty());
        // Reconnecting makes 2 reachable; its component is loaded back for node 0 (and the
        // reconciliation brings the rest).
        net.connect(1, 2);
        net.settle(Duration::from_secs(10));
        assert!(net.nodes[0].table().get(&island).is_some());
        assert!(net.all_reach_all());
        assert!(
            net.outcomes
                .iter()
                .any(|(at, o)| *at == 0 && matches!(o, Outcome::Restored { .. }))
        );
    }

    /// Reconnecting two converged nodes costs only the root summaries and the new edge.
    #[test]
    fn reconnecting_with_the_same_graph_is_cheap() {
        let mut net = line(3, RoutingConfig::default());
        net.settle(Duration::from_secs(10));
        net.disconnect(0, 1);
        net.settle(Duration::from_secs(10));
        let before = net.sent_bytes;
        net.connect(0, 1);
        net.settle(Duration::from_secs(10));
        assert!(net.all_reach_all());
        // Roots (2 x 22), proposal and acceptance, buckets and a few edges both ways, and the
        // new edge broadcast: far below the whole table each way per message.
        let spent = net.sent_bytes - before;
        assert!(spent < 30_000, "spent {spent} bytes");
    }
}
