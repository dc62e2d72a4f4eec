//! Convergence of many [`RoutingNode`]s wired together through their public API only, as a
//! simulation would drive them: every action carried out, every verification batch handed
//! back verified, time advanced from one event (a wake-up or a message arriving) to the
//! next. Figures (simulated time, bytes of ROUTING_SYNC per node, edge-table memory) are
//! printed; run in release:
//!
//! `cargo test -p routing --release --test convergence -- --ignored --nocapture`
//!
//! `configured_network_converges_and_heals` takes its size from the environment
//! (`CONVERGENCE_NODES`, `CONVERGENCE_DEGREE`, `CONVERGENCE_LATENCY_MS`), e.g. 1,000 nodes of
//! degree 8 with 50 ms links:
//!
//! `CONVERGENCE_NODES=1000 CONVERGENCE_DEGREE=8 CONVERGENCE_LATENCY_MS=50 cargo test -p routing
//! --release --test convergence configured -- --ignored --nocapture`
//!
//! Verification is memoised across nodes: a verdict is a pure function of the edge's bytes,
//! so once one node's batch has checked an edge, the harness hands the same verdict to the
//! next node that asks without redoing the XEdDSA arithmetic. Every node still gets every
//! batch back through [`RoutingNode::verified`]; simulated times and bytes are unchanged,
//! only the harness's CPU drops (at 1,000 nodes, from minutes of signature checks to
//! seconds).
//!
//! The small test runs by default and checks the same properties on 12 nodes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use netcore::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use routing::{
    Action, Channel, Edge, Now, RoutingConfig, RoutingNode, SigningKey, VerifiedBatch, verify_batch,
};

const START_MS: u64 = 1_700_000_000_000;

struct Sim {
    nodes: Vec<RoutingNode>,
    index: HashMap<PeerId, usize>,
    now: Now,
    /// In flight, by arrival time then sending order: (arrival, sequence) to the message.
    wire: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, (usize, usize, Channel, Bytes)>,
    sequence: u64,
    /// One-way delay of every link.
    latency: Duration,
    /// ROUTING_SYNC bytes sent by each node.
    sent: Vec<usize>,
    links: HashSet<(usize, usize)>,
    /// Edges some node's batch has already verified (valid signatures).
    verified_edges: HashSet<Edge>,
    /// Edges whose signatures were really checked, and those answered from the memo.
    checked: usize,
    memoised: usize,
}

impl Sim {
    fn new(count: usize, seed: u64, latency: Duration) -> Self {
        let now = Now {
            instant: Instant::now(),
            unix_ms: START_MS,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes: Vec<RoutingNode> = (0..count)
            .map(|i| {
                let mut private = [0u8; 32];
                rng.fill_bytes(&mut private);
                let key = SigningKey::from_x25519_private_key(private);
                RoutingNode::new(key, RoutingConfig::default(), i as u64, now)
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.local(), i))
            .collect();
        Self {
            nodes,
            index,
            now,
            wire: BinaryHeap::new(),
            in_flight: HashMap::new(),
            sequence: 0,
            latency,
            sent: vec![0; count],
            links: HashSet::new(),
            verified_edges: HashSet::new(),
            checked: 0,
            memoised: 0,
        }
    }

    /// `verify_batch(edges)`, with edges already seen valid taken from the memo. Any edge
    /// failing makes the whole batch go through `verify_batch` so the verdict (which edge is
    /// bad, how many were left unchecked) is exactly what it would have been.
    fn verify(&mut self, edges: Vec<Edge>) -> VerifiedBatch {
        let unseen: Vec<Edge> = edges
            .iter()
            .filter(|edge| !self.verified_edges.contains(edge))
            .copied()
            .collect();
        self.checked += unseen.len();
        self.memoised += edges.len() - unseen.len();
        let fresh = verify_batch(unseen);
        if fresh.bad.is_some() {
            return verify_batch(edges);
        }
        self.verified_edges.extend(fresh.valid);
        VerifiedBatch {
            valid: edges,
            ..VerifiedBatch::default()
        }
    }

    fn carry_out(&mut self, at: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, channel, bytes } => {
                    self.sent[at] += bytes.len();
                    let to = self.index[&to];
                    self.sequence += 1;
                    let arrival = self.now.instant + self.latency;
                    self.wire.push(Reverse((arrival, self.sequence)));
                    self.in_flight
                        .insert(self.sequence, (at, to, channel, bytes));
                }
                Action::Verify { batch, edges } => {
                    let result = self.verify(edges);
                    let more = self.nodes[at].verified(batch, result, self.now);
                    self.carry_out(at, more);
                }
                Action::Ban { peer, reason } => panic!("node {at} banned {peer}: {reason}"),
                _ => {}
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        if a == b || !self.links.insert((a.min(b), a.max(b))) {
            return;
        }
        let (ida, idb) = (self.nodes[a].local(), self.nodes[b].local());
        let actions = self.nodes[a].connected(idb, true, true, self.now);
        self.carry_out(a, actions);
        let actions = self.nodes[b].connected(ida, true, false, self.now);
        self.carry_out(b, actions);
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        // What was in flight on the link is lost with it.
        self.in_flight
            .retain(|_, (f, t, _, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
        let (ida, idb) = (self.nodes[a].local(), self.nodes[b].local());
        let actions = self.nodes[a].disconnected(idb, self.now);
        self.carry_out(a, actions);
        let actions = self.nodes[b].disconnected(ida, self.now);
        self.carry_out(b, actions);
    }

    /// Delivers every message due by now, in arrival order (with zero latency, until the
    /// wire is empty).
    fn drain(&mut self) {
        while let Some(Reverse((arrival, sequence))) = self.wire.peek().copied() {
            if arrival > self.now.instant {
                break;
            }
            self.wire.pop();
            let Some((from, to, channel, bytes)) = self.in_flight.remove(&sequence) else {
                continue;
            };
            let from_id = self.nodes[from].local();
            let actions = self.nodes[to].received(from_id, channel, &bytes, self.now);
            self.carry_out(to, actions);
        }
    }

    fn all_reach_all(&self) -> bool {
        let count = self.nodes.len();
        self.nodes
            .iter()
            .all(|node| node.reachable_count() == count - 1)
    }

    /// When the next message in flight arrives.
    fn next_arrival(&mut self) -> Option<Instant> {
        while let Some(Reverse((arrival, sequence))) = self.wire.peek().copied() {
            if self.in_flight.contains_key(&sequence) {
                return Some(arrival);
            }
            self.wire.pop();
        }
        None
    }

    /// Runs (delivering, then moving to the next wake-up or arrival and ticking the nodes
    /// due) until `done` holds or `limit` of simulated time has passed; returns the
    /// simulated time taken.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now.instant;
        loop {
            self.drain();
            if done(self) {
                return Some(self.now.instant - start);
            }
            let wakeup = self.nodes.iter().map(RoutingNode::next_wakeup).min()?;
            let next = self
                .next_arrival()
                .map_or(wakeup, |arrival| arrival.min(wakeup));
            if next > start + limit {
                return None;
            }
            if next > self.now.instant {
                self.now = self.now.after(next - self.now.instant);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].next_wakeup() <= self.now.instant {
                    let actions = self.nodes[i].tick(self.now);
                    self.carry_out(i, actions);
                }
            }
        }
    }

    /// A ring plus random chords, each node getting about `degree` links.
    fn random_graph(&mut self, degree: usize, seed: u64) {
        let count = self.nodes.len();
        let mut rng = StdRng::seed_from_u64(seed);
        for i in 0..count {
            self.connect(i, (i + 1) % count);
        }
        let extra = count * degree.saturating_sub(2) / 2;
        for _ in 0..extra {
            let (a, b) = (rng.gen_range(0..count), rng.gen_range(0..count));
            self.connect(a, b);
        }
    }
}

fn report(count: usize, degree: usize, latency: Duration) -> (Duration, Duration) {
    let mut sim = Sim::new(count, 7, latency);
    let wall = Instant::now();
    sim.random_graph(degree, 9);
    let converged = sim
        .run_until(Duration::from_secs(600), Sim::all_reach_all)
        .expect("converges");
    let per_node = sim.sent.iter().sum::<usize>() / count;
    let table_memory = sim
        .nodes
        .iter()
        .map(|node| node.table().memory_estimate())
        .max()
        .unwrap_or(0);
    println!(
        "{count} nodes, {} links (degree ~{degree}), {latency:?} links: every node reaches every other after {converged:?} simulated; {per_node} bytes of ROUTING_SYNC per node; edge table {} edges, {table_memory} bytes at most per node; {} edges' signatures checked, {} verdicts memoised; {:?} of CPU",
        sim.links.len(),
        sim.nodes[0].table().len(),
        sim.checked,
        sim.memoised,
        wall.elapsed()
    );
    // Steady state: an hour with no change sends nothing.
    sim.sent.iter_mut().for_each(|sent| *sent = 0);
    sim.run_until(Duration::from_secs(3_600), |_| false);
    let steady = sim.sent.iter().sum::<usize>() / count;
    println!("steady state: {steady} bytes per node in an hour");
    assert_eq!(steady, 0);
    // A partition: the links between the two halves go down, then come back.
    let half = count / 2;
    let cut: Vec<(usize, usize)> = sim
        .links
        .iter()
        .copied()
        .filter(|(a, b)| (*a < half) != (*b < half))
        .collect();
    for (a, b) in &cut {
        sim.disconnect(*a, *b);
    }
    sim.run_until(Duration::from_secs(600), |sim| {
        sim.nodes[0].reachable_count() == half - 1
    })
    .expect("the partition is seen");
    sim.sent.iter_mut().for_each(|sent| *sent = 0);
    let wall = Instant::now();
    for (a, b) in &cut {
        sim.connect(*a, *b);
    }
    let healed = sim
        .run_until(Duration::from_secs(600), Sim::all_reach_all)
        .expect("reconverges");
    let per_node = sim.sent.iter().sum::<usize>() / count;
    println!(
        "partition of {} links healed: every node reaches every other again after {healed:?} simulated; {per_node} bytes per node; {:?} of CPU",
        cut.len(),
        wall.elapsed()
    );
    (converged, healed)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Twelve nodes of degree about 4 converge, stay quiet, and reconverge after a partition.
#[test]
fn a_small_random_network_converges_and_heals() {
    let (converged, healed) = report(12, 4, Duration::ZERO);
    assert!(converged < Duration::from_secs(30), "{converged:?}");
    assert!(healed < Duration::from_secs(30), "{healed:?}");
}

/// The same on 200 nodes of degree about 8 (release build: about 200,000 signature checks).
#[test]
#[ignore = "minutes in a debug build; run in release with --ignored --nocapture"]
fn two_hundred_nodes_converge_and_heal() {
    report(200, 8, Duration::ZERO);
}

/// Twelve nodes over 50 ms links converge and heal too (arrivals are events of their own).
#[test]
fn a_small_network_with_link_latency_converges_and_heals() {
    let (converged, healed) = report(12, 4, Duration::from_millis(50));
    assert!(converged < Duration::from_secs(30), "{converged:?}");
    assert!(healed < Duration::from_secs(30), "{healed:?}");
}

/// Any size: `CONVERGENCE_NODES` (default 1,000), `CONVERGENCE_DEGREE` (8),
/// `CONVERGENCE_LATENCY_MS` (50).
#[test]
#[ignore = "1,000 nodes by default; run in release with --ignored --nocapture"]
fn configured_network_converges_and_heals() {
    let nodes = env_or("CONVERGENCE_NODES", 1_000) as usize;
    let degree = env_or("CONVERGENCE_DEGREE", 8) as usize;
    let latency = Duration::from_millis(env_or("CONVERGENCE_LATENCY_MS", 50));
    report(nodes, degree, latency);
}
