//! [`run`]: plays a [`Plan`] on turmoil with the given [`NodeSoftware`] on every host, and
//! returns its [`Report`].
//!
//! ```text
//! run ── registers a host per node (10.<hi>.<lo>.1: a /24 of its own, as on the internet)
//!     ├─ loop: apply due events (partition, hold, slow_link, crash, restart, join) ─► sim.step()
//!     └─ stop: every host shuts its node down, counts the tasks left, reports Stopped
//! host ── NodeSoftware::start ─► record Connected / Disconnected / Height into the Trace
//! ```
//!
//! Everything runs on the calling thread: turmoil steps each host's paused tokio runtime in
//! turn, so the state the hosts share with the engine is in an `Rc<RefCell<..>>`.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::{self, SelectAll};
use netcore::PeerId;
use peerlane::ConnectionNotification;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

use crate::error::Error;
use crate::scenario::{Plan, PlannedEvent, ScenarioAction};
use crate::software::{self, HostEnv, NodeRole, NodeSoftware, PeerInfo};
use crate::trace::{Summary, Trace, What};

/// How long, in simulated time, the hosts get to shut down at the end of a run.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// How often, in simulated time, a long run logs its progress (`RUST_LOG=sim=info`).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Networks at most this large get every event in the printed timeline.
pub const DETAIL_NODES: usize = 16;

/// What a run produced.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Figures, trace hash included.
    pub summary: Summary,
    /// The timeline for people.
    pub timeline: Vec<String>,
    /// Every event.
    #[serde(skip)]
    pub trace: Trace,
}

/// What the hosts and the engine share.
#[derive(Default)]
struct Shared {
    trace: Trace,
    /// Set when the run's time is up: hosts shut their node down.
    stopping: bool,
    /// Hosts that have shut down cleanly.
    stopped: usize,
    /// Node names by peer id, to name connections.
    names: HashMap<PeerId, String>,
    /// The first failure of a node's software.
    failure: Option<Error>,
}

/// Runs `plan` with `seed` (turmoil's RNG: message latencies; node keys; the stack's random
/// choices) and `software` on every node.
pub fn run(plan: &Plan, seed: u64, software: Rc<dyn NodeSoftware>) -> Result<Report, Error> {
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(plan.duration + STOP_GRACE + Duration::from_secs(1))
        .tick_duration(plan.tick)
        .min_message_latency(Duration::from_millis(plan.latency.min_ms))
        .max_message_latency(Duration::from_millis(plan.latency.max_ms))
        .tcp_capacity(plan.tcp_capacity)
        // A fixed epoch: nothing in the simulator's clock depends on when the run happens.
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .rng_seed(seed);
    let mut sim = builder.build();
    sim.set_message_latency_curve(plan.latency.curve);

    let names: Vec<String> = (0..plan.nodes()).map(|i| plan.name(i)).collect();
    let ips: Vec<IpAddr> = (0..plan.nodes()).map(ip_of).collect();
    let identities: Vec<_> = (0..plan.nodes())
        .map(|i| software::identity(seed, i))
        .collect();
    let role = |i: usize| {
        if i < plan.validators {
            NodeRole::Validator
        } else {
            NodeRole::FullNode
        }
    };
    let infos: Vec<PeerInfo> = (0..plan.nodes())
        .map(|i| software::peer_info(names[i].clone(), role(i), ips[i], &identities[i]))
        .collect();
    let validators = Arc::new(infos[..plan.validators].to_vec());
    let shared = Rc::new(RefCell::new(Shared {
        names: infos.iter().map(|p| (p.peer_id, p.name.clone())).collect(),
        ..Shared::default()
    }));
    let envs: Vec<Rc<HostEnv>> = (0..plan.nodes())
        .map(|i| {
            let public_seeds = if i < plan.validators {
                Vec::new()
            } else {
                let f = i - plan.validators;
                let before = plan.validators + f.saturating_sub(plan.seed_full_nodes);
                infos[..plan.seed_validators]
                    .iter()
                    .chain(&infos[before..i])
                    .cloned()
                    .collect()
            };
            Rc::new(HostEnv {
                index: i,
                name: names[i].clone(),
                role: role(i),
                identity: identities[i].clone(),
                ip: ips[i],
                validators: validators.clone(),
                public_seeds,
                rng_seed: seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                health_check: plan.health_check,
            })
        })
        .collect();

    let mut world = World {
        ips: ips.clone(),
        up: vec![false; plan.nodes()],
        registered: vec![false; plan.nodes()],
        cut: HashSet::new(),
        held: HashSet::new(),
        slow: HashMap::new(),
    };
    for i in (0..plan.nodes()).filter(|i| plan.starts_running[*i]) {
        add_host(&mut sim, &envs[i], &software, &shared, plan.sample);
        world.registered[i] = true;
        world.up[i] = true;
    }

    let mut next = 0;
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let now = sim.elapsed();
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            let up = world.up.iter().filter(|u| **u).count();
            let events = shared.borrow().trace.events().len();
            tracing::info!(
                simulated_s = now.as_secs(),
                hosts_up = up,
                events,
                "simulation progress"
            );
        }
        while let Some(event) = plan.events.get(next).filter(|e| e.at <= now) {
            let line = describe(event, &names);
            shared.borrow_mut().trace.push(
                ms(now),
                names[0].clone(),
                What::Scenario { event: line },
            );
            world.apply(&mut sim, event, |sim, i| {
                add_host(sim, &envs[i], &software, &shared, plan.sample);
            });
            next += 1;
        }
        if now >= plan.duration {
            break;
        }
        step(&mut sim, &shared)?;
    }

    shared.borrow_mut().stopping = true;
    let running = world.up.iter().filter(|u| **u).count();
    let deadline = plan.duration + STOP_GRACE;
    while shared.borrow().stopped < running && sim.elapsed() < deadline {
        step(&mut sim, &shared)?;
    }
    let simulated_ms = ms(sim.elapsed());
    drop(sim);
    let shared = Rc::try_unwrap(shared)
        .map_err(|_| Error::Simulation("a host outlived the simulation".into()))?
        .into_inner();
    let trace = shared.trace;
    let summary = trace.summary(&names, plan.validators, simulated_ms);
    let timeline = trace.timeline(plan.nodes(), DETAIL_NODES, 5_000);
    Ok(Report {
        seed,
        summary,
        timeline,
        trace,
    })
}

/// One simulator step; a host failure ends the run.
fn step(sim: &mut turmoil::Sim<'_>, shared: &Rc<RefCell<Shared>>) -> Result<(), Error> {
    let stepped = sim.step();
    if let Some(failure) = shared.borrow_mut().failure.take() {
        return Err(failure);
    }
    stepped
        .map(|_finished| ())
        .map_err(|err| Error::Simulation(err.to_string()))
}

/// Node `index`'s IP: `10.<hi>.<lo>.1`, each node in a /24 of its own so that per-prefix
/// admission limits see distinct networks, as they would on the internet.
fn ip_of(index: usize) -> IpAddr {
    let [hi, lo] = u16::try_from(index)
        .expect("at most MAX_NODES nodes")
        .to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `partition v3 | v0,v1,v2`, `crash v1`, ...
fn describe(event: &PlannedEvent, names: &[String]) -> String {
    let list = |nodes: &[usize]| {
        if nodes.len() > 8 {
            format!(
                "{}..{} ({} nodes)",
                names[nodes[0]],
                names[nodes[nodes.len() - 1]],
                nodes.len()
            )
        } else {
            nodes
                .iter()
                .map(|n| names[*n].as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let mut line = format!("{} {}", event.action.as_str(), list(&event.nodes));
    if event.action.is_link_action() {
        line.push_str(&format!(" | {}", list(&event.peers)));
    }
    if let Some(latency) = event.latency {
        line.push_str(&format!(" at {} ms", latency.as_millis()));
    }
    line
}

/// The simulator's state the engine must remember to apply events.
struct World {
    ips: Vec<IpAddr>,
    /// Whether each node's software is running.
    up: Vec<bool>,
    /// Whether each node has a host in the simulator (it may be crashed).
    registered: Vec<bool>,
    /// Directions `(from, to)` a scenario event partitioned.
    cut: HashSet<(usize, usize)>,
    /// Pairs `(low, high)` a scenario event holds.
    held: HashSet<(usize, usize)>,
    /// Pairs `(low, high)` a `slow_link` event set, with their latency.
    slow: HashMap<(usize, usize), Duration>,
}

impl World {
    /// Applies one event; `add` registers the host of a node that joins.
    fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        event: &PlannedEvent,
        mut add: impl FnMut(&mut turmoil::Sim<'_>, usize),
    ) {
        let ips = self.ips.clone();
        let registered = self.registered.clone();
        // Pairs with a node that has not joined yet are only remembered: turmoil has no link
        // to an unregistered host, and `restore_links` applies them when the node joins.
        let pairs = || {
            event
                .nodes
                .iter()
                .flat_map(|a| event.peers.iter().map(move |b| (*a, *b)))
        };
        let linked = |a: usize, b: usize| registered[a] && registered[b];
        let held = |a: usize, b: usize| (a.min(b), a.max(b));
        match event.action {
            ScenarioAction::Partition => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.partition(ips[a], ips[b]);
                }
                self.cut.extend([(a, b), (b, a)]);
            }),
            ScenarioAction::PartitionOneway => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.partition_oneway(ips[a], ips[b]);
                }
                self.cut.insert((a, b));
            }),
            ScenarioAction::Heal => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.repair(ips[a], ips[b]);
                }
                self.cut.remove(&(a, b));
                self.cut.remove(&(b, a));
                self.held.remove(&held(a, b));
            }),
            ScenarioAction::HealOneway => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.repair_oneway(ips[a], ips[b]);
                }
                self.cut.remove(&(a, b));
            }),
            ScenarioAction::Hold => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.hold(ips[a], ips[b]);
                }
                self.held.insert(held(a, b));
            }),
            ScenarioAction::Release => pairs().for_each(|(a, b)| {
                if linked(a, b) {
                    sim.release(ips[a], ips[b]);
                }
                self.held.remove(&held(a, b));
            }),
            ScenarioAction::SlowLink => {
                let latency = event.latency.unwrap_or_default();
                pairs().for_each(|(a, b)| {
                    if linked(a, b) {
                        sim.set_link_latency(ips[a], ips[b], latency);
                    }
                    self.slow.insert(held(a, b), latency);
                });
            }
            ScenarioAction::Crash => {
                for &n in &event.nodes {
                    if self.up[n] {
                        self.power_off(sim, n);
                        self.up[n] = false;
                    }
                }
            }
            ScenarioAction::Restart | ScenarioAction::Join => {
                for &n in &event.nodes {
                    if self.up[n] {
                        continue;
                    }
                    if self.registered[n] {
                        sim.bounce(ips[n]);
                    } else {
                        add(sim, n);
                        self.registered[n] = true;
                        self.restore_links(sim, n);
                    }
                    self.up[n] = true;
                }
            }
        }
    }

    /// Crashes node `n` as a power loss: its sockets vanish and nothing it had queued, not
    /// even a FIN or RST, leaves the host. Its links are cut while turmoil drops its tasks
    /// and restored right after (those a scenario event cut or holds stay so). Peers learn of
    /// the crash from the RST their next segment gets, or from their health checker.
    ///
    /// Besides being what a crashed machine does, this keeps runs replayable: the tokio
    /// runtime drops a crashed host's tasks in an order that depends on process-wide task
    /// ids, and segments sent from those drops would draw their latencies from the
    /// simulator's RNG in that order.
    fn power_off(&self, sim: &mut turmoil::Sim<'_>, n: usize) {
        let ip = self.ips[n];
        let others: Vec<usize> = (0..self.ips.len())
            .filter(|o| *o != n && self.registered[*o])
            .filter(|o| !self.held.contains(&(n.min(*o), n.max(*o))))
            .collect();
        let opened: Vec<usize> = others
            .iter()
            .copied()
            .filter(|o| !self.cut.contains(&(n, *o)))
            .collect();
        for &o in &opened {
            sim.partition_oneway(ip, self.ips[o]);
        }
        sim.crash(ip);
        for &o in &opened {
            sim.repair_oneway(ip, self.ips[o]);
        }
    }

    /// Gives the links of node `n`, which just joined, what earlier events set for them
    /// (partitions, holds, slow links) while it had no host.
    fn restore_links(&self, sim: &mut turmoil::Sim<'_>, n: usize) {
        for o in (0..self.ips.len()).filter(|o| *o != n && self.registered[*o]) {
            let (a, b) = (self.ips[n], self.ips[o]);
            let pair = (n.min(o), n.max(o));
            if self.cut.contains(&(n, o)) {
                sim.partition_oneway(a, b);
            }
            if self.cut.contains(&(o, n)) {
                sim.partition_oneway(b, a);
            }
            if self.held.contains(&pair) {
                sim.hold(a, b);
            }
            if let Some(latency) = self.slow.get(&pair) {
                sim.set_link_latency(a, b, *latency);
            }
        }
    }
}

/// Registers the host of `env`: its software runs now, and again on every restart.
fn add_host<'a>(
    sim: &mut turmoil::Sim<'a>,
    env: &Rc<HostEnv>,
    software: &Rc<dyn NodeSoftware>,
    shared: &Rc<RefCell<Shared>>,
    sample: Duration,
) {
    let env = env.clone();
    let software = software.clone();
    let shared = shared.clone();
    sim.host(env.ip, move || {
        host(env.clone(), software.clone(), shared.clone(), sample)
    });
}

/// One host's life: start the node, record what it does, shut it down when told.
async fn host(
    env: Rc<HostEnv>,
    software: Rc<dyn NodeSoftware>,
    shared: Rc<RefCell<Shared>>,
    sample: Duration,
) -> turmoil::Result {
    // The simulation's time, not the host's: a host that joined or restarted has its own
    // runtime, whose clock starts at its start.
    let now = || ms(turmoil::sim_elapsed().unwrap_or_else(turmoil::elapsed));
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = tasks();
    let node = match software.start(&env) {
        Ok(node) => node,
        Err(err) => {
            let reason = err.to_string();
            shared.borrow_mut().failure = Some(Error::Node {
                node: env.name.clone(),
                reason: reason.clone(),
            });
            return Err(reason.into());
        }
    };
    shared
        .borrow_mut()
        .trace
        .push(now(), env.name.clone(), What::Started);
    let mut notifications: SelectAll<_> = node
        .networks()
        .into_iter()
        .map(|network| {
            let subscription = network.peers_and_metadata().subscribe();
            stream::unfold(subscription, |mut s| async move {
                let note = s.recv().await?;
                Some((note, s))
            })
            .boxed()
        })
        .collect();
    let mut tick = tokio::time::interval(sample);
    let mut height = 0;
    loop {
        tokio::select! {
            biased;
            Some(note) = notifications.next() => {
                let mut shared = shared.borrow_mut();
                let what = match note {
                    ConnectionNotification::NewPeer(meta, network) => What::Connected {
                        peer: name_of(&shared.names, meta.remote_peer_id),
                        network: network.as_str().to_owned(),
                        origin: meta.origin.as_str().to_owned(),
                    },
                    ConnectionNotification::LostPeer(meta, network, reason) => What::Disconnected {
                        peer: name_of(&shared.names, meta.remote_peer_id),
                        network: network.as_str().to_owned(),
                        reason: reason.as_str().to_owned(),
                    },
                };
                shared.trace.push(now(), env.name.clone(), what);
            }
            _ = tick.tick() => {
                if shared.borrow().stopping {
                    break;
                }
                let current = node.committed_height();
                if current != height {
                    height = current;
                    shared.borrow_mut().trace.push(now(), env.name.clone(), What::Height { height });
                }
            }
        }
    }
    drop(notifications);
    node.shutdown().await;
    // Tasks that just ended are released on the runtime's next turn.
    tokio::task::yield_now().await;
    let tasks_left = tasks() as i64 - baseline as i64;
    let mut shared = shared.borrow_mut();
    shared
        .trace
        .push(now(), env.name.clone(), What::Stopped { tasks_left });
    shared.stopped += 1;
    Ok(())
}

fn name_of(names: &HashMap<PeerId, String>, peer_id: PeerId) -> String {
    names
        .get(&peer_id)
        .cloned()
        .unwrap_or_else(|| peer_id.short_str())
}
