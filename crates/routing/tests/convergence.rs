//! Convergence of many [`RoutingNode`]s wired together through their public API only, as a
//! simulation would drive them: every action carried out, every verification batch really
//! verified, time advanced from one wake-up to the next. Figures (simulated time, bytes of
//! ROUTING_SYNC per node) are printed; run in release:
//!
//! `cargo test -p routing --release --test convergence -- --ignored --nocapture`
//!
//! The small test runs by default and checks the same properties on 12 nodes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use netcore::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use routing::{Action, Channel, Now, RoutingConfig, RoutingNode, SigningKey, verify_batch};

const START_MS: u64 = 1_700_000_000_000;

struct Sim {
    nodes: Vec<RoutingNode>,
    index: HashMap<PeerId, usize>,
    now: Now,
    wire: VecDeque<(usize, usize, Channel, Bytes)>,
    /// ROUTING_SYNC bytes sent by each node.
    sent: Vec<usize>,
    links: HashSet<(usize, usize)>,
}

impl Sim {
    fn new(count: usize, seed: u64) -> Self {
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
            wire: VecDeque::new(),
            sent: vec![0; count],
            links: HashSet::new(),
        }
    }

    fn carry_out(&mut self, at: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, channel, bytes } => {
                    self.sent[at] += bytes.len();
                    let to = self.index[&to];
                    self.wire.push_back((at, to, channel, bytes));
                }
                Action::Verify { batch, edges } => {
                    let result = verify_batch(edges);
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
        self.wire
            .retain(|(f, t, _, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
        let (ida, idb) = (self.nodes[a].local(), self.nodes[b].local());
        let actions = self.nodes[a].disconnected(idb, self.now);
        self.carry_out(a, actions);
        let actions = self.nodes[b].disconnected(ida, self.now);
        self.carry_out(b, actions);
    }

    /// Delivers what is on the wire; each delivery takes `latency` of simulated time per
    /// round of messages.
    fn drain(&mut self) {
        while let Some((from, to, channel, bytes)) = self.wire.pop_front() {
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

    /// Runs (delivering, then ticking at the next wake-up) until `done` holds or `limit` of
    /// simulated time has passed; returns the simulated time taken.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now.instant;
        loop {
            self.drain();
            if done(self) {
                return Some(self.now.instant - start);
            }
            let next = self.nodes.iter().map(RoutingNode::next_wakeup).min()?;
            if next > start + limit {
                return None;
            }
            if next > self.now.instant {
                self.now = self.now.after(next - self.now.instant);
            }
            for i in 0..self.nodes.len() {
                let actions = self.nodes[i].tick(self.now);
                self.carry_out(i, actions);
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

fn report(count: usize, degree: usize) -> (Duration, Duration) {
    let mut sim = Sim::new(count, 7);
    let wall = Instant::now();
    sim.random_graph(degree, 9);
    let converged = sim
        .run_until(Duration::from_secs(600), Sim::all_reach_all)
        .expect("converges");
    let per_node = sim.sent.iter().sum::<usize>() / count;
    println!(
        "{count} nodes, {} links (degree ~{degree}): every node reaches every other after {converged:?} simulated; {per_node} bytes of ROUTING_SYNC per node; {:?} of CPU",
        sim.links.len(),
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
    for (a, b) in &cut {
        sim.connect(*a, *b);
    }
    let healed = sim
        .run_until(Duration::from_secs(600), Sim::all_reach_all)
        .expect("reconverges");
    let per_node = sim.sent.iter().sum::<usize>() / count;
    println!(
        "partition of {} links healed: every node reaches every other again after {healed:?} simulated; {per_node} bytes per node",
        cut.len()
    );
    (converged, healed)
}

/// Twelve nodes of degree about 4 converge, stay quiet, and reconverge after a partition.
#[test]
fn a_small_random_network_converges_and_heals() {
    let (converged, healed) = report(12, 4);
    assert!(converged < Duration::from_secs(30), "{converged:?}");
    assert!(healed < Duration::from_secs(30), "{healed:?}");
}

/// The same on 200 nodes of degree about 8 (release build: about 200,000 signature checks).
#[test]
#[ignore = "minutes in a debug build; run in release with --ignored --nocapture"]
fn two_hundred_nodes_converge_and_heal() {
    report(200, 8);
}
