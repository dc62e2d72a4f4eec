//! The routing core driven end to end by a small in-memory network, as the facade will drive
//! it: connections start with a proposal and its acceptance, the two ends reconcile their
//! tables, changed edges are broadcast in batches, every ROUTING_SYNC message goes through
//! its encoding, and routed requests and responses cross the network hop by hop.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use netcore::PeerId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use routing::{
    EdgeBatcher, EdgeProposal, EdgeTable, Forward, GraphLimits, NextHops, RouteBackTable,
    RoutedKind, RoutedMessage, RoutedTarget, RoutingConfig, RoutingSyncMessage, SigningKey,
    decode_routed, encode_routed, forward, reconcile, verify_batch,
};

const NOW_MS: u64 = 1_700_000_000_000;

struct Node {
    key: SigningKey,
    table: EdgeTable,
    batcher: EdgeBatcher,
    route_back: RouteBackTable,
    neighbours: Vec<PeerId>,
}

struct Network {
    nodes: Vec<Node>,
    index: HashMap<PeerId, usize>,
    /// (from, to, encoded ROUTING_SYNC message)
    wire: VecDeque<(usize, usize, Vec<u8>)>,
    config: RoutingConfig,
    now: Instant,
    rng: StdRng,
    bytes_sent: usize,
}

impl Network {
    fn new(size: usize) -> Self {
        let config = RoutingConfig::default();
        let nodes: Vec<Node> = (0..size)
            .map(|i| {
                let mut private_key = [0u8; 32];
                private_key[2] = i as u8 + 1;
                private_key[1] = 0x5a;
                let key = SigningKey::from_x25519_private_key(private_key);
                Node {
                    table: EdgeTable::new(key.peer_id(), GraphLimits::from(&config)),
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
                    neighbours: Vec::new(),
                    key,
                }
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.key.peer_id(), i))
            .collect();
        Self {
            nodes,
            index,
            wire: VecDeque::new(),
            config,
            now: Instant::now(),
            rng: StdRng::seed_from_u64(7),
            bytes_sent: 0,
        }
    }

    fn send(&mut self, from: usize, to: usize, message: &RoutingSyncMessage) {
        let bytes = message.encode();
        self.bytes_sent += bytes.len();
        self.wire.push_back((from, to, bytes));
    }

    /// `a` dials `b`: proposal, acceptance (both over the wire), then reconciliation.
    fn connect(&mut self, a: usize, b: usize) {
        let b_id = self.nodes[b].key.peer_id();
        let known = self.nodes[a]
            .table
            .edges()
            .find(|edge| edge.key.other(&self.nodes[a].key.peer_id()) == Some(b_id))
            .map(|edge| edge.nonce);
        let proposal =
            EdgeProposal::new(&self.nodes[a].key, b_id, NOW_MS, known, &mut self.rng).unwrap();
        self.send(a, b, &RoutingSyncMessage::EdgeProposal(proposal));
        let a_id = self.nodes[a].key.peer_id();
        self.nodes[a].neighbours.push(b_id);
        self.nodes[b].neighbours.push(a_id);
        self.settle_with(Some(proposal));
    }

    /// The connection between `a` and `b` ends: each end signs its removal (same nonce,
    /// either proof valid) and broadcasts it into its side of the network.
    fn disconnect(&mut self, a: usize, b: usize) {
        let (a_id, b_id) = (self.nodes[a].key.peer_id(), self.nodes[b].key.peer_id());
        let key = routing::EdgeKey::new(a_id, b_id).unwrap();
        for end in [a, b] {
            let edge = *self.nodes[end].table.get(&key).unwrap();
            let removal = edge.remove(&self.nodes[end].key, &mut self.rng).unwrap();
            self.local_change(end, removal);
        }
        self.nodes[a].neighbours.retain(|peer| *peer != b_id);
        self.nodes[b].neighbours.retain(|peer| *peer != a_id);
        self.settle_with(None);
    }

    fn local_change(&mut self, node: usize, edge: routing::Edge) {
        let now = self.now;
        let node = &mut self.nodes[node];
        if !node.table.insert_trusted(edge).changed.is_empty() {
            node.batcher.push(edge, now);
        }
    }

    /// Delivers messages and flushes batches until nothing moves.
    fn settle_with(&mut self, proposal: Option<EdgeProposal>) {
        for _ in 0..1000 {
            while let Some((from, to, bytes)) = self.wire.pop_front() {
                self.deliver(from, to, &bytes, proposal);
            }
            self.now += self.config.broadcast_max_delay;
            let mut any = false;
            for i in 0..self.nodes.len() {
                let now = self.now;
                if let Some(batch) = self.nodes[i].batcher.take_due(now) {
                    any = true;
                    let neighbours = self.nodes[i].neighbours.clone();
                    for peer in neighbours {
                        let to = self.index[&peer];
                        self.send(i, to, &RoutingSyncMessage::Edges(batch.clone()));
                    }
                }
            }
            if !any && self.wire.is_empty() {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8], proposal: Option<EdgeProposal>) {
        let message = RoutingSyncMessage::decode(bytes, self.config.max_edges_per_message).unwrap();
        let max_future = self.config.max_nonce_future_ms();
        match message {
            RoutingSyncMessage::EdgeProposal(proposal) => {
                let known = self.nodes[to]
                    .table
                    .get(&proposal.key)
                    .map(|edge| edge.nonce);
                let edge = proposal
                    .accept(
                        &self.nodes[to].key,
                        known,
                        NOW_MS,
                        max_future,
                        &mut self.rng,
                    )
                    .unwrap();
                self.local_change(to, edge);
                self.send(to, from, &RoutingSyncMessage::EdgeAccepted(edge));
                // The connection is up: both ends start reconciling.
                let root = reconcile::on_connect(&self.nodes[to].table);
                self.send(to, from, &root);
            }
            RoutingSyncMessage::EdgeAccepted(edge) => {
                proposal.unwrap().check_completion(&edge).unwrap();
                self.local_change(to, edge);
                let root = reconcile::on_connect(&self.nodes[to].table);
                self.send(to, from, &root);
            }
            RoutingSyncMessage::SummaryRoot(root) => {
                if let Some(reply) = reconcile::on_summary_root(&self.nodes[to].table, &root) {
                    self.send(to, from, &reply);
                }
            }
            RoutingSyncMessage::SummaryBuckets(buckets) => {
                let replies = reconcile::on_summary_buckets(
                    &self.nodes[to].table,
                    &buckets,
                    self.config.max_edges_per_message,
                );
                for reply in replies {
                    self.send(to, from, &reply);
                }
            }
            RoutingSyncMessage::Edges(edges) => {
                let now = self.now;
                let node = &mut self.nodes[to];
                let check = node.table.precheck(edges, NOW_MS);
                assert!(!check.outcome.is_misbehaviour());
                let verified = verify_batch(check.to_verify);
                assert!(verified.bad.is_none());
                for edge in node.table.apply(verified.valid).changed {
                    node.batcher.push(edge, now);
                }
            }
            RoutingSyncMessage::EdgeProposalStale { .. } => panic!("no stale proposals here"),
        }
    }

    /// Sends a routed message from `start` and carries it to its end; returns where it was
    /// delivered (or `None` if dropped) and the hops taken.
    fn route(
        &mut self,
        start: usize,
        message: RoutedMessage,
    ) -> (Option<(usize, RoutedMessage)>, usize) {
        let mut at = start;
        let mut from = self.nodes[start].key.peer_id();
        let mut message = message;
        let mut hops = 0;
        loop {
            let local = self.nodes[at].key.peer_id();
            let mut next_hops = NextHops::compute(&self.nodes[at].table);
            let node = &mut self.nodes[at];
            let outcome = forward(
                local,
                message,
                from,
                &mut next_hops,
                &mut node.route_back,
                self.now,
            );
            match outcome.forward {
                Forward::Deliver(delivered) => return (Some((at, delivered)), hops),
                Forward::Drop(_) => return (None, hops),
                Forward::Send {
                    next_hop,
                    message: next,
                } => {
                    assert!(
                        node.neighbours.contains(&next_hop),
                        "sent to a non-neighbour"
                    );
                    // Over the wire.
                    message = decode_routed(&encode_routed(&next)).unwrap();
                    from = local;
                    at = self.index[&next_hop];
                    hops += 1;
                }
            }
        }
    }
}

/// Six nodes in a line learn the whole graph; a request crosses five hops and its response
/// comes back; a removal propagates and the far end becomes unreachable; a new connection
/// restores reachability by the other way round.
#[test]
fn line_of_six_learns_routes_and_forwards() {
    let mut network = Network::new(6);
    for i in 0..5 {
        network.connect(i, i + 1);
    }
    let root = network.nodes[0].table.summary_root();
    for node in &network.nodes {
        assert_eq!(node.table.summary_root(), root);
        assert_eq!(node.table.len(), 5);
    }
    let hops = NextHops::compute(&network.nodes[0].table);
    let far = network.nodes[5].key.peer_id();
    assert_eq!(hops.distance(&far), Some(5));

    let request = RoutedMessage::new(
        &network.nodes[0].key,
        RoutedTarget::Peer(far),
        network.config.routed_ttl,
        1,
        RoutedKind::Request { request_id: 1 },
        7,
        Bytes::from_static(b"ping"),
        &mut network.rng,
    );
    let request_hash = request.hash();
    let (delivered, hops_taken) = network.route(0, request);
    let (at, delivered) = delivered.unwrap();
    assert_eq!((at, hops_taken), (5, 5));
    assert_eq!(delivered.ttl, network.config.routed_ttl - 4);
    let response = RoutedMessage::new(
        &network.nodes[5].key,
        RoutedTarget::RouteBack(request_hash),
        network.config.routed_ttl,
        2,
        RoutedKind::Response { request_id: 1 },
        7,
        Bytes::from_static(b"pong"),
        &mut network.rng,
    );
    let (delivered, _) = network.route(5, response);
    assert_eq!(delivered.unwrap().0, 0);

    // 2 drops its connection to 3: everyone learns it, 5 is unreachable from 0.
    network.disconnect(2, 3);
    for node in &network.nodes {
        assert_eq!(
            node.table.summary_root(),
            network.nodes[0].table.summary_root()
        );
    }
    assert_eq!(
        NextHops::compute(&network.nodes[0].table).distance(&far),
        None
    );
    let lost = RoutedMessage::new(
        &network.nodes[0].key,
        RoutedTarget::Peer(far),
        100,
        3,
        RoutedKind::DirectSend,
        7,
        Bytes::new(),
        &mut network.rng,
    );
    assert!(network.route(0, lost).0.is_none());

    // 0 connects to 5: the two halves merge again and 5 is one hop away; 3 is two.
    let sent_before = network.bytes_sent;
    network.connect(0, 5);
    let hops = NextHops::compute(&network.nodes[0].table);
    assert_eq!(hops.distance(&far), Some(1));
    assert_eq!(hops.distance(&network.nodes[3].key.peer_id()), Some(3));
    for node in &network.nodes {
        assert_eq!(
            node.table.summary_root(),
            network.nodes[0].table.summary_root()
        );
    }
    println!(
        "merge after reconnect: {} bytes of ROUTING_SYNC in the whole network",
        network.bytes_sent - sent_before
    );
    // Reconnecting nodes that were connected before takes a nonce above the removal.
    network.connect(2, 3);
    let key = routing::EdgeKey::new(
        network.nodes[2].key.peer_id(),
        network.nodes[3].key.peer_id(),
    )
    .unwrap();
    assert!(network.nodes[4].table.get(&key).unwrap().is_active());
}
