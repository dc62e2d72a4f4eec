//! [`EdgeTable`]: the edges this node knows, with the update rules and the limits, and the
//! two steps an incoming batch goes through before it is applied:
//!
//! 1. [`EdgeTable::precheck`] (cheap, on the actor): drops a message over
//!    `max_edges_per_message` whole, then per edge refuses bad shapes, nonces too far ahead,
//!    stale or duplicate nonces, and edges that would take the table over its budgets
//!    (total edges, edges per peer, peers). No signature is checked; what is left is what
//!    needs verifying.
//! 2. [`verify_batch`] (pure CPU, for a blocking pool): checks the signatures, stopping at
//!    the first bad one (the sender gets banned, so the rest is not worth the work).
//! 3. [`EdgeTable::apply`]: inserts what verified, newer nonce wins, checking the budgets
//!    again (other batches may have landed in between), and returns what changed, to be
//!    broadcast.
//!
//! Removed edges stay as tombstones (so an older active nonce cannot come back) until
//! [`EdgeTable::prune_tombstones`]. Edges unreachable from the local node are tracked
//! ([`EdgeTable::note_reachability`]) and taken out by [`EdgeTable::take_unreachable`] (see
//! [`crate::prune`]).

use std::collections::{HashMap, HashSet};

use netcore::PeerId;

use crate::config::{RoutingConfig, duration_ms};
use crate::edge::{Edge, EdgeKey};
use crate::error::Error;
use crate::prune::{Component, components_of};
use crate::summary::{BucketDigest, SummaryBuckets, bucket_of};
use crate::xeddsa::VerifyingKey;

/// The limits the table enforces (from [`RoutingConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphLimits {
    /// Edges per ROUTING_SYNC message.
    pub max_edges_per_message: usize,
    /// Edges in the table.
    pub max_edges: usize,
    /// Edges with a given peer at one end.
    pub max_edges_per_peer: usize,
    /// Peers in the table.
    pub max_peers: usize,
    /// How far ahead of the clock a nonce may be, ms.
    pub max_nonce_future_ms: u64,
    /// How long tombstones are kept, ms.
    pub tombstone_keep_ms: u64,
}

impl From<&RoutingConfig> for GraphLimits {
    fn from(config: &RoutingConfig) -> Self {
        Self {
            max_edges_per_message: config.max_edges_per_message,
            max_edges: config.max_edges,
            max_edges_per_peer: config.max_edges_per_peer,
            max_peers: config.max_peers,
            max_nonce_future_ms: config.max_nonce_future_ms(),
            tombstone_keep_ms: duration_ms(config.tombstone_keep),
        }
    }
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self::from(&RoutingConfig::default())
    }
}

/// What [`EdgeTable::precheck`] did with a batch, for the caller's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrecheckOutcome {
    /// Edges in the message.
    pub received: usize,
    /// The message had more than `max_edges_per_message` edges and was dropped whole.
    pub message_too_large: bool,
    /// Edges with unordered ends or a proof not matching the nonce (misbehaviour).
    pub malformed: usize,
    /// Edges with a nonce too far in the future.
    pub future_nonce: usize,
    /// Edges at or below the nonce we hold (ignored).
    pub stale: usize,
    /// Edges repeated within the batch (the highest nonce kept).
    pub duplicate: usize,
    /// Edges dropped because the table would exceed `max_edges`.
    pub over_max_edges: usize,
    /// Edges dropped because an end would exceed `max_edges_per_peer`.
    pub over_max_edges_per_peer: usize,
    /// Edges dropped because the table would exceed `max_peers`.
    pub over_max_peers: usize,
    /// Edges left to verify.
    pub to_verify: usize,
}

impl PrecheckOutcome {
    /// Whether the sender sent something no honest node sends (a message over the limit,
    /// malformed edges, nonces too far ahead): the caller may ban it.
    pub fn is_misbehaviour(&self) -> bool {
        self.message_too_large || self.malformed > 0 || self.future_nonce > 0
    }

    /// Edges dropped for a budget.
    pub fn over_budget(&self) -> usize {
        self.over_max_edges + self.over_max_edges_per_peer + self.over_max_peers
    }
}

/// The result of [`EdgeTable::precheck`].
#[derive(Clone, Debug, Default)]
pub struct Precheck {
    /// The edges that need their signatures verified, at most one per key.
    pub to_verify: Vec<Edge>,
    /// What happened to the others.
    pub outcome: PrecheckOutcome,
}

/// The result of [`verify_batch`].
#[derive(Clone, Debug, Default)]
pub struct VerifiedBatch {
    /// Edges whose signatures verified.
    pub valid: Vec<Edge>,
    /// The first edge with a bad signature, and why; verification stopped there.
    pub bad: Option<(Edge, Error)>,
    /// Edges after the bad one, not checked.
    pub unchecked: usize,
}

/// Signers' keys [`verify_batch`] keeps converted (about 250 bytes each).
const VERIFY_KEY_CACHE_ENTRIES: usize = 4_096;

/// Verifies the signatures of `edges` (from [`Precheck::to_verify`]). Pure CPU and `Send`:
/// run it on a blocking pool. Stops at the first bad signature: the caller bans the sender.
/// Each signer's key is converted once per batch.
pub fn verify_batch(edges: Vec<Edge>) -> VerifiedBatch {
    let mut keys: HashMap<PeerId, Option<VerifyingKey>> = HashMap::new();
    let mut key_of = |peer: &PeerId| {
        // Bounded: a batch of strangers must not make the cache hold megabytes.
        if keys.len() >= VERIFY_KEY_CACHE_ENTRIES && !keys.contains_key(peer) {
            keys.clear();
        }
        *keys
            .entry(*peer)
            .or_insert_with(|| VerifyingKey::from_peer_id(peer))
    };
    let mut batch = VerifiedBatch {
        valid: Vec::with_capacity(edges.len()),
        ..VerifiedBatch::default()
    };
    let total = edges.len();
    for (index, edge) in edges.into_iter().enumerate() {
        match edge.verify_signatures_with(&mut key_of) {
            Ok(()) => batch.valid.push(edge),
            Err(error) => {
                batch.bad = Some((edge, error));
                batch.unchecked = total - index - 1;
                break;
            }
        }
    }
    batch
}

/// What [`EdgeTable::apply`] did, for metrics and the broadcast.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Edges inserted or replaced: broadcast these.
    pub changed: Vec<Edge>,
    /// Of those, active edges new to the table or replacing a tombstone, or newly removed
    /// ones: whether the next hops need a recompute.
    pub topology_changed: bool,
    /// Edges at or below the nonce held by now.
    pub stale: usize,
    /// Edges dropped for a budget.
    pub over_budget: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    edge: Edge,
    /// Its summary bucket (a hash of the key: kept so that a reconciliation does not hash
    /// every edge again).
    bucket: u8,
    /// When the edge was first seen unreachable from the local node, ms.
    unreachable_since: Option<u64>,
}

/// The edge table. Not thread-safe by design: one actor owns it.
#[derive(Clone, Debug)]
pub struct EdgeTable {
    local: PeerId,
    limits: GraphLimits,
    edges: HashMap<EdgeKey, Entry>,
    /// Edges (active or removed) per peer; its length is the number of peers.
    degree: HashMap<PeerId, usize>,
    /// Active neighbours per peer.
    adjacency: HashMap<PeerId, Vec<PeerId>>,
    summary: SummaryBuckets,
    next_component_id: u64,
}

impl EdgeTable {
    /// An empty table for the node `local`.
    pub fn new(local: PeerId, limits: GraphLimits) -> Self {
        Self {
            local,
            limits,
            edges: HashMap::new(),
            degree: HashMap::new(),
            adjacency: HashMap::new(),
            summary: SummaryBuckets::default(),
            next_component_id: 0,
        }
    }

    /// The local node.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The limits.
    pub fn limits(&self) -> &GraphLimits {
        &self.limits
    }

    /// Edges held, tombstones included.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Peers with at least one edge.
    pub fn peer_count(&self) -> usize {
        self.degree.len()
    }

    /// An estimate of the heap bytes the table holds (hash-map slots at their capacity, the
    /// adjacency lists), for a gauge and for sizing the limits.
    pub fn memory_estimate(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per slot besides the slot itself.
        let edges = self.edges.capacity() * (size_of::<EdgeKey>() + size_of::<Entry>() + 1);
        let degree = self.degree.capacity() * (size_of::<PeerId>() + size_of::<usize>() + 1);
        let adjacency = self.adjacency.capacity()
            * (size_of::<PeerId>() + size_of::<Vec<PeerId>>() + 1)
            + self
                .adjacency
                .values()
                .map(|list| list.capacity() * size_of::<PeerId>())
                .sum::<usize>();
        edges + degree + adjacency
    }

    /// The edge held for `key`.
    pub fn get(&self, key: &EdgeKey) -> Option<&Edge> {
        self.edges.get(key).map(|entry| &entry.edge)
    }

    /// Every edge held.
    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.values().map(|entry| &entry.edge)
    }

    /// The active neighbours of `peer`.
    pub fn active_neighbours(&self, peer: &PeerId) -> &[PeerId] {
        self.adjacency.get(peer).map_or(&[], Vec::as_slice)
    }

    /// The summary buckets (256 digests).
    pub fn summary_buckets(&self) -> &[BucketDigest] {
        self.summary.buckets()
    }

    /// The root digest: equal roots mean equal tables (up to a 128-bit collision).
    pub fn summary_root(&self) -> BucketDigest {
        self.summary.root()
    }

    /// The buckets that differ from a peer's.
    pub fn differing_buckets(&self, theirs: &[BucketDigest]) -> Vec<u8> {
        self.summary.differing(theirs)
    }

    /// The edges in `buckets`.
    pub fn edges_in_buckets(&self, buckets: &[u8]) -> Vec<Edge> {
        let mut wanted = [false; 256];
        for bucket in buckets {
            wanted[usize::from(*bucket)] = true;
        }
        self.edges
            .values()
            .filter(|entry| wanted[usize::from(entry.bucket)])
            .map(|entry| entry.edge)
            .collect()
    }

    /// Classifies an incoming batch without signature work; see the module docs.
    pub fn precheck(&self, edges: Vec<Edge>, now_ms: u64) -> Precheck {
        let mut outcome = PrecheckOutcome {
            received: edges.len(),
            ..PrecheckOutcome::default()
        };
        if edges.len() > self.limits.max_edges_per_message {
            outcome.message_too_large = true;
            return Precheck {
                to_verify: Vec::new(),
                outcome,
            };
        }
        // The highest nonce per key; shape errors out first.
        let mut best: HashMap<EdgeKey, usize> = HashMap::with_capacity(edges.len());
        let mut kept: Vec<Option<Edge>> = Vec::with_capacity(edges.len());
        for edge in edges {
            match edge.check_shape(now_ms, self.limits.max_nonce_future_ms) {
                Ok(()) => {}
                Err(Error::NonceInFuture { .. }) => {
                    outcome.future_nonce += 1;
                    continue;
                }
                Err(_) => {
                    outcome.malformed += 1;
                    continue;
                }
            }
            if self
                .get(&edge.key)
                .is_some_and(|held| held.nonce >= edge.nonce)
            {
                outcome.stale += 1;
                continue;
            }
            match best.get(&edge.key) {
                Some(&index) => {
                    outcome.duplicate += 1;
                    let slot = &mut kept[index];
                    if slot.is_some_and(|other| other.nonce < edge.nonce) {
                        *slot = Some(edge);
                    }
                }
                None => {
                    best.insert(edge.key, kept.len());
                    kept.push(Some(edge));
                }
            }
        }
        // Budgets, as if every earlier edge of the batch were accepted.
        let mut new_edges = 0usize;
        let mut new_peers: HashSet<PeerId> = HashSet::new();
        let mut added_degree: HashMap<PeerId, usize> = HashMap::new();
        let mut to_verify = Vec::with_capacity(kept.len());
        for edge in kept.into_iter().flatten() {
            if self.edges.contains_key(&edge.key) {
                to_verify.push(edge);
                continue;
            }
            if self.edges.len() + new_edges >= self.limits.max_edges {
                outcome.over_max_edges += 1;
                continue;
            }
            let ends = [edge.key.peer0(), edge.key.peer1()];
            let degree_of = |peer: &PeerId| {
                self.degree.get(peer).copied().unwrap_or(0)
                    + added_degree.get(peer).copied().unwrap_or(0)
            };
            if ends
                .iter()
                .any(|peer| degree_of(peer) >= self.limits.max_edges_per_peer)
            {
                outcome.over_max_edges_per_peer += 1;
                continue;
            }
            let unseen = ends
                .iter()
                .filter(|peer| !self.degree.contains_key(peer) && !new_peers.contains(peer))
                .count();
            if self.degree.len() + new_peers.len() + unseen > self.limits.max_peers {
                outcome.over_max_peers += 1;
                continue;
            }
            new_edges += 1;
            for peer in ends {
                *added_degree.entry(peer).or_default() += 1;
                if !self.degree.contains_key(&peer) {
                    new_peers.insert(peer);
                }
            }
            to_verify.push(edge);
        }
        outcome.to_verify = to_verify.len();
        Precheck { to_verify, outcome }
    }

    /// Inserts verified edges (newer nonce wins, budgets checked again).
    pub fn apply(&mut self, verified: Vec<Edge>) -> ApplyOutcome {
        let mut outcome = ApplyOutcome::default();
        for edge in verified {
            match self.insert(edge) {
                Insert::Changed { topology } => {
                    outcome.topology_changed |= topology;
                    outcome.changed.push(edge);
                }
                Insert::Stale => outcome.stale += 1,
                Insert::OverBudget => outcome.over_budget += 1,
            }
        }
        outcome
    }

    /// Inserts one edge whose signatures the caller vouches for: the local node's own
    /// edges, or edges restored from disk. Same rules as [`EdgeTable::apply`].
    pub fn insert_trusted(&mut self, edge: Edge) -> ApplyOutcome {
        self.apply(vec![edge])
    }

    fn insert(&mut self, edge: Edge) -> Insert {
        if let Some(entry) = self.edges.get_mut(&edge.key) {
            let old = entry.edge;
            if old.nonce >= edge.nonce {
                return Insert::Stale;
            }
            entry.edge = edge;
            self.summary.remove(&old.key, old.nonce);
            self.summary.add(&edge.key, edge.nonce);
            let topology = old.is_active() != edge.is_active();
            if topology {
                if edge.is_active() {
                    self.link(&edge.key);
                } else {
                    self.unlink(&edge.key);
                }
            }
            return Insert::Changed { topology };
        }
        let ends = [edge.key.peer0(), edge.key.peer1()];
        let new_peers = ends
            .iter()
            .filter(|peer| !self.degree.contains_key(peer))
            .count();
        if self.edges.len() >= self.limits.max_edges
            || self.degree.len() + new_peers > self.limits.max_peers
            || ends.iter().any(|peer| {
                self.degree.get(peer).copied().unwrap_or(0) >= self.limits.max_edges_per_peer
            })
        {
            return Insert::OverBudget;
        }
        for peer in ends {
            *self.degree.entry(peer).or_default() += 1;
        }
        self.summary.add(&edge.key, edge.nonce);
        self.edges.insert(
            edge.key,
            Entry {
                edge,
                bucket: bucket_of(&edge.key),
                unreachable_since: None,
            },
        );
        if edge.is_active() {
            self.link(&edge.key);
        }
        Insert::Changed {
            topology: edge.is_active(),
        }
    }

    fn link(&mut self, key: &EdgeKey) {
        self.adjacency
            .entry(key.peer0())
            .or_default()
            .push(key.peer1());
        self.adjacency
            .entry(key.peer1())
            .or_default()
            .push(key.peer0());
    }

    fn unlink(&mut self, key: &EdgeKey) {
        for (from, to) in [(key.peer0(), key.peer1()), (key.peer1(), key.peer0())] {
            if let Some(neighbours) = self.adjacency.get_mut(&from) {
                neighbours.retain(|peer| *peer != to);
                if neighbours.is_empty() {
                    self.adjacency.remove(&from);
                }
            }
        }
    }

    /// Takes `key` out of the table entirely (no tombstone), returning the edge.
    fn take(&mut self, key: &EdgeKey) -> Option<Edge> {
        let entry = self.edges.remove(key)?;
        let edge = entry.edge;
        self.summary.remove(&edge.key, edge.nonce);
        if edge.is_active() {
            self.unlink(key);
        }
        for peer in [key.peer0(), key.peer1()] {
            if let Some(count) = self.degree.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.degree.remove(&peer);
                }
            }
        }
        Some(edge)
    }

    /// Active edges of the local node whose other end it is not connected to (`connected`
    /// says who it is): edges from before a restart, or replayed from before a removal. The
    /// caller signs their removal (`Edge::remove`) and broadcasts it, as NEAR does.
    pub fn stale_local_edges(&self, connected: impl Fn(&PeerId) -> bool) -> Vec<Edge> {
        self.active_neighbours(&self.local)
            .iter()
            .filter(|peer| !connected(peer))
            .filter_map(|peer| EdgeKey::new(self.local, *peer))
            .filter_map(|key| self.get(&key).copied())
            .collect()
    }

    /// Drops tombstones whose removal nonce is older than `tombstone_keep`. Returns how many.
    pub fn prune_tombstones(&mut self, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.limits.tombstone_keep_ms);
        let old: Vec<EdgeKey> = self
            .edges
            .values()
            .filter(|entry| !entry.edge.is_active() && entry.edge.nonce < cutoff)
            .map(|entry| entry.edge.key)
            .collect();
        for key in &old {
            self.take(key);
        }
        old.len()
    }

    /// Records, after a next-hop recompute, which edges are reachable from the local node:
    /// an edge is if one of its ends is the local node or in `reachable`.
    pub fn note_reachability(&mut self, reachable: &HashSet<PeerId>, now_ms: u64) {
        let local = self.local;
        for entry in self.edges.values_mut() {
            let key = entry.edge.key;
            let is_reachable = [key.peer0(), key.peer1()]
                .iter()
                .any(|peer| *peer == local || reachable.contains(peer));
            if is_reachable {
                entry.unreachable_since = None;
            } else if entry.unreachable_since.is_none() {
                entry.unreachable_since = Some(now_ms);
            }
        }
    }

    /// Takes out every edge unreachable for at least `after_ms`, grouped by connected
    /// component, each with a fresh id, for the caller to store.
    pub fn take_unreachable(&mut self, now_ms: u64, after_ms: u64) -> Vec<Component> {
        let mut keys: Vec<EdgeKey> = self
            .edges
            .values()
            .filter(|entry| {
                entry
                    .unreachable_since
                    .is_some_and(|since| now_ms.saturating_sub(since) >= after_ms)
            })
            .map(|entry| entry.edge.key)
            .collect();
        // In key order, not the map's (which differs per process): the components' ids, and
        // so which one is forgotten first at the bound, follow their first edge.
        keys.sort_unstable();
        let edges: Vec<Edge> = keys.iter().filter_map(|key| self.take(key)).collect();
        let mut components = components_of(edges, self.next_component_id);
        components.sort_by_key(|component| component.id);
        self.next_component_id += components.len() as u64;
        components
    }

    /// Puts a stored component's edges back (a peer of it became reachable). Edges the
    /// table now holds at a higher nonce stay; budgets apply.
    pub fn restore(&mut self, component: Component) -> ApplyOutcome {
        self.apply(component.edges)
    }
}

enum Insert {
    Changed { topology: bool },
    Stale,
    OverBudget,
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::edge::EdgeProof;
    use crate::edge::test_keys::{active_edge, key};
    use crate::xeddsa::Signature;

    const NOW: u64 = 1_700_000_000_000;

    fn table_for(local: PeerId, limits: GraphLimits) -> EdgeTable {
        EdgeTable::new(local, limits)
    }

    /// A verified batch goes in; a newer nonce replaces an older one; an older one is stale;
    /// a removal leaves a tombstone the active edge cannot come back over.
    #[test]
    fn newer_nonce_wins_and_tombstones_stick() {
        let (a, b) = (key(1), key(2));
        let mut table = table_for(a.peer_id(), GraphLimits::default());
        let first = active_edge(&a, &b, NOW + 1);
        let check = table.precheck(vec![first], NOW);
        assert_eq!(check.outcome.to_verify, 1);
        let verified = verify_batch(check.to_verify);
        let outcome = table.apply(verified.valid);
        assert!(outcome.topology_changed);
        assert_eq!(table.active_neighbours(&a.peer_id()), &[b.peer_id()]);

        let removed = first.remove(&b, &mut StdRng::seed_from_u64(1)).unwrap();
        let outcome = table.apply(verify_batch(table.precheck(vec![removed], NOW).to_verify).valid);
        assert!(outcome.topology_changed);
        assert!(table.active_neighbours(&a.peer_id()).is_empty());
        assert_eq!(table.len(), 1);

        let again = table.precheck(vec![first], NOW);
        assert_eq!(again.outcome.stale, 1);
        assert!(again.to_verify.is_empty());
        assert_eq!(table.apply(vec![first]).stale, 1);

        let newer = active_edge(&a, &b, NOW + 3);
        assert_eq!(table.apply(vec![newer]).changed, vec![newer]);
        assert_eq!(table.active_neighbours(&b.peer_id()), &[a.peer_id()]);
    }

    /// Duplicates in a batch keep the highest nonce; malformed and future edges are counted
    /// as misbehaviour.
    #[test]
    fn precheck_classifies() {
        let (a, b, c) = (key(1), key(2), key(3));
        let table = table_for(a.peer_id(), GraphLimits::default());
        let low = active_edge(&a, &b, NOW + 1);
        let high = active_edge(&a, &b, NOW + 5);
        let future = active_edge(&a, &c, NOW + 10 * 60 * 1000 + 1);
        let mut malformed = active_edge(&b, &c, NOW + 1);
        malformed.nonce += 1;
        let check = table.precheck(vec![low, high, future, malformed], NOW);
        assert_eq!(check.to_verify, vec![high]);
        assert_eq!(check.outcome.duplicate, 1);
        assert_eq!(check.outcome.future_nonce, 1);
        assert_eq!(check.outcome.malformed, 1);
        assert!(check.outcome.is_misbehaviour());
    }

    /// Verification stops at the first bad signature and says which edge it was.
    #[test]
    fn verify_batch_stops_at_the_first_bad_signature() {
        let (a, b, c) = (key(1), key(2), key(3));
        let good = active_edge(&a, &b, NOW + 1);
        let mut bad = active_edge(&a, &c, NOW + 1);
        if let EdgeProof::Active { signature1, .. } = &mut bad.proof {
            *signature1 = Signature::from_bytes([7; 64]);
        }
        let after = active_edge(&b, &c, NOW + 1);
        let batch = verify_batch(vec![good, bad, after]);
        assert_eq!(batch.valid, vec![good]);
        assert_eq!(batch.bad.map(|(edge, _)| edge), Some(bad));
        assert_eq!(batch.unchecked, 1);
    }

    /// An edge signed with a key of `n` bytes that looks fine but whose signatures are junk:
    /// for hostile batches, where precheck must refuse without looking at signatures.
    fn junk_edge(a: u32, b: u32, nonce: u64) -> Edge {
        let peer = |n: u32| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            bytes[31] = 1;
            PeerId::new(bytes)
        };
        Edge {
            key: EdgeKey::new(peer(a), peer(b)).unwrap(),
            nonce,
            proof: EdgeProof::Active {
                signature0: Signature::from_bytes([0; 64]),
                signature1: Signature::from_bytes([0; 64]),
            },
        }
    }

    /// A hostile batch over every limit: the oversized message is dropped whole; within a
    /// message, edges over the total, per-peer and peer budgets are dropped before
    /// verification, so only what fits is left to verify.
    #[test]
    fn hostile_batches_are_refused_before_signature_work() {
        let limits = GraphLimits {
            max_edges_per_message: 100,
            max_edges: 50,
            max_edges_per_peer: 10,
            max_peers: 30,
            ..GraphLimits::default()
        };
        let table = table_for(PeerId::new([9; 32]), limits);
        let oversized: Vec<Edge> = (0..101).map(|i| junk_edge(i, i + 1000, NOW | 1)).collect();
        let check = table.precheck(oversized, NOW);
        assert!(check.outcome.message_too_large);
        assert!(check.to_verify.is_empty());

        // One hub with 40 spokes: only 10 fit the per-peer limit.
        let star: Vec<Edge> = (1..=40).map(|i| junk_edge(0, i, NOW | 1)).collect();
        let check = table.precheck(star, NOW);
        assert_eq!(check.outcome.to_verify, 10);
        assert_eq!(check.outcome.over_max_edges_per_peer, 30);

        // 60 disjoint edges, 120 peers: the peer budget (30) stops it at 15 edges.
        let disjoint: Vec<Edge> = (0..60)
            .map(|i| junk_edge(2 * i, 2 * i + 1, NOW | 1))
            .collect();
        let check = table.precheck(disjoint, NOW);
        assert_eq!(check.outcome.to_verify, 15);
        assert_eq!(check.outcome.over_max_peers, 45);

        // A ring over 30 peers then more edges among them: the total (50) stops it.
        let limits = GraphLimits {
            max_peers: 1000,
            ..limits
        };
        let table = table_for(PeerId::new([9; 32]), limits);
        let dense: Vec<Edge> = (0..30)
            .flat_map(|i| (1..=3).map(move |step| junk_edge(i, (i + step) % 30, NOW | 1)))
            .collect();
        let check = table.precheck(dense, NOW);
        assert_eq!(check.outcome.to_verify, 50);
        assert_eq!(check.outcome.over_max_edges, 40);
        // Nothing of it verifies (junk signatures) and nothing of it is in the table.
        assert!(verify_batch(check.to_verify).valid.is_empty());
        assert!(table.is_empty());
    }

    /// `apply` checks the budgets again: a full table takes no new key.
    #[test]
    fn apply_respects_budgets() {
        let (a, b, c) = (key(1), key(2), key(3));
        let limits = GraphLimits {
            max_edges: 1,
            ..GraphLimits::default()
        };
        let mut table = table_for(a.peer_id(), limits);
        assert_eq!(
            table
                .apply(vec![active_edge(&a, &b, NOW + 1)])
                .changed
                .len(),
            1
        );
        assert_eq!(
            table.apply(vec![active_edge(&a, &c, NOW + 1)]).over_budget,
            1
        );
        // Replacing an existing key is always fine.
        assert_eq!(
            table
                .apply(vec![active_edge(&a, &b, NOW + 3)])
                .changed
                .len(),
            1
        );
    }

    /// An active edge of ours to a peer we are not connected to is reported, and its
    /// removal (signed by us) replaces it.
    #[test]
    fn stale_local_edges_are_found_and_removed() {
        let (a, b, c) = (key(1), key(2), key(3));
        let mut table = table_for(a.peer_id(), GraphLimits::default());
        table.apply(vec![
            active_edge(&a, &b, NOW + 1),
            active_edge(&a, &c, NOW + 1),
            active_edge(&b, &c, NOW + 1),
        ]);
        let stale = table.stale_local_edges(|peer| *peer == b.peer_id());
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].key.other(&a.peer_id()), Some(c.peer_id()));
        let removal = stale[0].remove(&a, &mut StdRng::seed_from_u64(2)).unwrap();
        assert!(table.insert_trusted(removal).topology_changed);
        assert!(
            table
                .stale_local_edges(|peer| *peer == b.peer_id())
                .is_empty()
        );
    }

    /// Tombstones older than the keep time go; active edges and fresh tombstones stay; the
    /// summary and counts follow.
    #[test]
    fn tombstones_are_pruned_after_the_keep_time() {
        let (a, b, c) = (key(1), key(2), key(3));
        let mut table = table_for(a.peer_id(), GraphLimits::default());
        let mut rng = StdRng::seed_from_u64(0);
        let ab = active_edge(&a, &b, NOW + 1);
        let ac = active_edge(&a, &c, NOW + 1);
        table.apply(vec![ab, ac.remove(&a, &mut rng).unwrap()]);
        assert_eq!(table.prune_tombstones(NOW + 1000), 0);
        let hour = GraphLimits::default().tombstone_keep_ms;
        assert_eq!(table.prune_tombstones(NOW + hour + 10), 1);
        assert_eq!(table.len(), 1);
        assert_eq!(table.peer_count(), 2);
        let mut only_ab = table_for(a.peer_id(), GraphLimits::default());
        only_ab.apply(vec![ab]);
        assert_eq!(table.summary_root(), only_ab.summary_root());
    }
}
