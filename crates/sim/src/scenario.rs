//! [`Scenario`]: the TOML file `peerlane sim` runs (topology, link latency, timed events),
//! and [`Plan`], the same resolved to node indices and sorted by time. Pure: no simulator here.
//!
//! Nodes are named `v0`..`v{validators-1}` and `f0`..`f{full_nodes-1}`; a node list may also
//! name the groups `validators`, `full_nodes` and `all`, or a half-open range `f0..f100`.
//! docs/simulator.md lists every key.

use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

/// A scenario as written in its file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Who runs and for how long.
    #[serde(default)]
    pub network: NetworkSection,
    /// The latency of every link.
    #[serde(default)]
    pub latency: LatencySection,
    /// Health-checker settings for every network (default: the stack's own).
    #[serde(default)]
    pub health_check: Option<HealthCheckSection>,
    /// What happens when, in simulated time.
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

/// `[network]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Validators (`v0`..): mempool and consensus on the validator network, state sync on the
    /// public network.
    pub validators: usize,
    /// Full nodes (`f0`..): state sync on the public network.
    pub full_nodes: usize,
    /// Full nodes get the first this many validators' public addresses as seeds (default: all).
    pub seed_validators: Option<usize>,
    /// Each full node also gets the this many full nodes before it as seeds (0: none).
    pub seed_full_nodes: usize,
    /// Simulated run time in seconds.
    pub duration_s: f64,
    /// The simulator's step in milliseconds: every host runs once per step.
    pub tick_ms: u64,
    /// How often each node's committed height is sampled into the trace, in milliseconds.
    pub sample_ms: u64,
    /// Segments a simulated TCP socket buffers before the sender's writes fail.
    pub tcp_capacity: usize,
}

/// `[latency]`: each message on a link takes `min_ms + (max_ms - min_ms) * x`, `x` drawn
/// from an exponential distribution of rate `curve`, capped at `max_ms` (turmoil's model).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencySection {
    /// The lowest latency.
    pub min_ms: u64,
    /// The highest latency.
    pub max_ms: u64,
    /// The exponential's rate: higher keeps most messages nearer `min_ms`.
    pub curve: f64,
}

/// `[health_check]`: overrides the stack's health checker on every network, e.g. to detect a
/// dead link in seconds rather than the default minute.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Ping period in milliseconds.
    pub interval_ms: u64,
    /// How long a ping may take, in milliseconds.
    pub timeout_ms: u64,
    /// Failed pings in a row before the peer is disconnected.
    pub failures: u32,
}

/// One `[[events]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// When, in simulated seconds from the start.
    pub at_s: f64,
    /// What.
    pub action: ScenarioAction,
    /// The nodes it applies to (for link actions: one side).
    pub nodes: Vec<String>,
    /// Link actions: the other side (default: every node not in `nodes`).
    #[serde(default)]
    pub peers: Option<Vec<String>>,
    /// `slow_link`: the latency of every message on the links, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// `join`: start the nodes evenly over this many seconds from `at_s` (default 0).
    #[serde(default)]
    pub spread_s: Option<f64>,
}

/// The `action` of an event.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioAction {
    /// Drop every message between `nodes` and `peers`, both ways.
    Partition,
    /// Drop every message from `nodes` to `peers`; the other way still flows.
    PartitionOneway,
    /// Undo partitions (and holds) between `nodes` and `peers`, both ways.
    Heal,
    /// Undo a one-way partition from `nodes` to `peers`.
    HealOneway,
    /// Hold messages between `nodes` and `peers` (queued, not dropped) until `release`.
    Hold,
    /// Deliver what a hold queued and let messages flow again.
    Release,
    /// Give every link between `nodes` and `peers` a fixed `latency_ms`.
    SlowLink,
    /// Kill the nodes: every task and socket of theirs is gone at once.
    Crash,
    /// Start crashed nodes again, with the same key and address.
    Restart,
    /// Start nodes that were not running yet (full nodes joining late).
    Join,
}

/// A scenario resolved to node indices: validators are `0..validators`, full nodes follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Validators.
    pub validators: usize,
    /// Full nodes.
    pub full_nodes: usize,
    /// Validators whose public address full nodes get as seeds.
    pub seed_validators: usize,
    /// Full nodes before each full node that it gets as seeds.
    pub seed_full_nodes: usize,
    /// Run time.
    pub duration: Duration,
    /// Simulator step.
    pub tick: Duration,
    /// Height sampling period.
    pub sample: Duration,
    /// Simulated TCP socket capacity in segments.
    pub tcp_capacity: usize,
    /// Link latency.
    pub latency: LatencySection,
    /// Health-checker override.
    pub health_check: Option<HealthCheckSection>,
    /// Whether each node runs from the start (false: it joins later).
    pub starts_running: Vec<bool>,
    /// The events, by time (stable for equal times: file order).
    pub events: Vec<PlannedEvent>,
}

/// One event at its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// When, from the start.
    pub at: Duration,
    /// What.
    pub action: ScenarioAction,
    /// The nodes (or one side of the links).
    pub nodes: Vec<usize>,
    /// The other side of the links (empty for node actions).
    pub peers: Vec<usize>,
    /// `slow_link`'s latency.
    pub latency: Option<Duration>,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            validators: 4,
            full_nodes: 0,
            seed_validators: None,
            seed_full_nodes: 0,
            duration_s: 30.0,
            tick_ms: 1,
            sample_ms: 250,
            tcp_capacity: 4096,
        }
    }
}

impl Default for LatencySection {
    fn default() -> Self {
        Self {
            min_ms: 5,
            max_ms: 20,
            curve: 5.0,
        }
    }
}

impl ScenarioAction {
    /// The name in the scenario file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::PartitionOneway => "partition_oneway",
            Self::Heal => "heal",
            Self::HealOneway => "heal_oneway",
            Self::Hold => "hold",
            Self::Release => "release",
            Self::SlowLink => "slow_link",
            Self::Crash => "crash",
            Self::Restart => "restart",
            Self::Join => "join",
        }
    }

    /// Whether the action is about links (two sides) rather than nodes.
    pub const fn is_link_action(self) -> bool {
        !matches!(self, Self::Crash | Self::Restart | Self::Join)
    }
}

/// Most hosts a scenario may ask for: past it turmoil's per-step cost makes a run impractical
/// (docs/performance.md).
pub const MAX_NODES: usize = 5_000;

impl Scenario {
    /// Parses a scenario file.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        Ok(toml::from_str(text)?)
    }

    /// Checks the rules and resolves names to indices.
    pub fn plan(&self) -> Result<Plan, Error> {
        let net = &self.network;
        let nodes = net.validators + net.full_nodes;
        if net.validators == 0 {
            return Err(Error::invalid("network.validators", "must be at least 1"));
        }
        if nodes > MAX_NODES {
            return Err(Error::invalid(
                "network",
                format!("{nodes} nodes, at most {MAX_NODES}"),
            ));
        }
        if !(net.duration_s.is_finite() && net.duration_s > 0.0 && net.duration_s <= 86_400.0) {
            return Err(Error::invalid(
                "network.duration_s",
                "must be in (0, 86400]",
            ));
        }
        if net.tick_ms == 0 || net.tick_ms > 1_000 {
            return Err(Error::invalid("network.tick_ms", "must be in 1..=1000"));
        }
        if net.sample_ms < net.tick_ms {
            return Err(Error::invalid(
                "network.sample_ms",
                "must be at least tick_ms",
            ));
        }
        if net.tcp_capacity == 0 {
            return Err(Error::invalid("network.tcp_capacity", "must be at least 1"));
        }
        let seed_validators = net.seed_validators.unwrap_or(net.validators);
        if seed_validators == 0 || seed_validators > net.validators {
            return Err(Error::invalid(
                "network.seed_validators",
                "must be in 1..=validators",
            ));
        }
        let latency = self.latency.clone();
        if latency.min_ms > latency.max_ms {
            return Err(Error::invalid("latency.min_ms", "must not exceed max_ms"));
        }
        if !(latency.curve.is_finite() && latency.curve > 0.0) {
            return Err(Error::invalid("latency.curve", "must be a positive number"));
        }
        if let Some(health) = &self.health_check
            && (health.interval_ms == 0 || health.timeout_ms == 0 || health.failures == 0)
        {
            return Err(Error::invalid(
                "health_check",
                "every value must be at least 1",
            ));
        }
        let duration = Duration::from_secs_f64(net.duration_s);
        let mut starts_running = vec![true; nodes];
        let mut events = Vec::new();
        for (i, spec) in self.events.iter().enumerate() {
            let field = |key: &str| format!("events[{i}].{key}");
            if !(spec.at_s.is_finite() && spec.at_s >= 0.0 && spec.at_s <= net.duration_s) {
                return Err(Error::invalid(field("at_s"), "must be within the run"));
            }
            let members = resolve(&spec.nodes, net, &field("nodes"))?;
            if members.is_empty() {
                return Err(Error::invalid(field("nodes"), "names no node"));
            }
            let at = Duration::from_secs_f64(spec.at_s);
            if spec.latency_ms.is_some() != (spec.action == ScenarioAction::SlowLink) {
                return Err(Error::invalid(
                    field("latency_ms"),
                    "is required by slow_link and only by it",
                ));
            }
            if spec.spread_s.is_some() && spec.action != ScenarioAction::Join {
                return Err(Error::invalid(field("spread_s"), "is for join only"));
            }
            if spec.action.is_link_action() {
                let peers = match &spec.peers {
                    Some(peers) => resolve(peers, net, &field("peers"))?,
                    None => (0..nodes).filter(|n| !members.contains(n)).collect(),
                };
                if peers.is_empty() || peers.iter().any(|p| members.contains(p)) {
                    return Err(Error::invalid(
                        field("peers"),
                        "must name nodes, none of them in `nodes`",
                    ));
                }
                events.push(PlannedEvent {
                    at,
                    action: spec.action,
                    nodes: members,
                    peers,
                    latency: spec.latency_ms.map(Duration::from_millis),
                });
                continue;
            }
            if spec.peers.is_some() {
                return Err(Error::invalid(field("peers"), "is for link actions only"));
            }
            if spec.action != ScenarioAction::Join {
                events.push(PlannedEvent {
                    at,
                    action: spec.action,
                    nodes: members,
                    peers: Vec::new(),
                    latency: None,
                });
                continue;
            }
            let spread = spec.spread_s.unwrap_or(0.0);
            if !(spread.is_finite() && spread >= 0.0 && spec.at_s + spread <= net.duration_s) {
                return Err(Error::invalid(field("spread_s"), "must end within the run"));
            }
            let count = members.len();
            for (k, node) in members.into_iter().enumerate() {
                if !starts_running[node] {
                    return Err(Error::invalid(field("nodes"), "a node joins only once"));
                }
                starts_running[node] = false;
                let offset = Duration::from_secs_f64(spread * k as f64 / count as f64);
                events.push(PlannedEvent {
                    at: at + offset,
                    action: ScenarioAction::Join,
                    nodes: vec![node],
                    peers: Vec::new(),
                    latency: None,
                });
            }
        }
        // Stable: events at the same time keep their file order.
        events.sort_by_key(|event| event.at);
        Ok(Plan {
            validators: net.validators,
            full_nodes: net.full_nodes,
            seed_validators,
            seed_full_nodes: net.seed_full_nodes,
            duration,
            tick: Duration::from_millis(net.tick_ms),
            sample: Duration::from_millis(net.sample_ms),
            tcp_capacity: net.tcp_capacity,
            latency,
            health_check: self.health_check,
            starts_running,
            events,
        })
    }
}

impl Plan {
    /// How many nodes in all.
    pub const fn nodes(&self) -> usize {
        self.validators + self.full_nodes
    }

    /// The name of node `index`: `v<i>` or `f<i>`.
    pub fn name(&self, index: usize) -> String {
        node_name(self.validators, index)
    }
}

/// The name of node `index` among `validators` validators.
pub fn node_name(validators: usize, index: usize) -> String {
    if index < validators {
        format!("v{index}")
    } else {
        format!("f{}", index - validators)
    }
}

/// The indices `names` stand for, sorted, without repeats.
fn resolve(names: &[String], net: &NetworkSection, field: &str) -> Result<Vec<usize>, Error> {
    let v = net.validators;
    let all = v + net.full_nodes;
    let mut out = Vec::new();
    for name in names {
        match name.as_str() {
            "all" => out.extend(0..all),
            "validators" => out.extend(0..v),
            "full_nodes" => out.extend(v..all),
            _ => {
                let (first, end) = match name.split_once("..") {
                    Some((a, b)) => {
                        let a = one(a, net, field)?;
                        let b = one_bound(b, net, field)?;
                        if (a < v) != (b <= v) || b <= a {
                            return Err(Error::invalid(
                                field,
                                format!("`{name}`: a range is `v1..v3` or `f0..f10`, low to high"),
                            ));
                        }
                        (a, b)
                    }
                    None => {
                        let a = one(name, net, field)?;
                        (a, a + 1)
                    }
                };
                out.extend(first..end);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The index of one node name.
fn one(name: &str, net: &NetworkSection, field: &str) -> Result<usize, Error> {
    let index = one_bound(name, net, field)?;
    let limit = if name.starts_with('v') {
        net.validators
    } else {
        net.validators + net.full_nodes
    };
    if index >= limit {
        return Err(Error::invalid(field, format!("no node `{name}`")));
    }
    Ok(index)
}

/// The index a name stands for, one past the last node allowed (for range ends).
fn one_bound(name: &str, net: &NetworkSection, field: &str) -> Result<usize, Error> {
    let bad = || Error::invalid(field, format!("`{name}` is not v<n>, f<n> or a group"));
    let (kind, number) = name.split_at_checked(1).ok_or_else(bad)?;
    let n: usize = number.parse().map_err(|_| bad())?;
    let index = match kind {
        "v" if n <= net.validators => n,
        "f" if n <= net.full_nodes => net.validators + n,
        "v" | "f" => return Err(Error::invalid(field, format!("no node `{name}`"))),
        _ => return Err(bad()),
    };
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan, Error> {
        Scenario::from_toml(text)?.plan()
    }

    #[test]
    fn names_groups_and_ranges_resolve() {
        let plan = plan(
            r#"
            [network]
            validators = 4
            full_nodes = 10
            [[events]]
            at_s = 1
            action = "partition"
            nodes = ["v3"]
            peers = ["v0..v3", "f2..f4"]
            "#,
        )
        .unwrap();
        let event = &plan.events[0];
        assert_eq!(event.nodes, vec![3]);
        assert_eq!(event.peers, vec![0, 1, 2, 6, 7]);
        assert_eq!(plan.name(3), "v3");
        assert_eq!(plan.name(6), "f2");
    }

    #[test]
    fn peers_default_to_everyone_else_and_may_not_overlap() {
        let ok = plan("[[events]]\nat_s = 1\naction = \"partition\"\nnodes = [\"v0\"]\n").unwrap();
        assert_eq!(ok.events[0].peers, vec![1, 2, 3]);
        let overlap =
            plan("[[events]]\nat_s = 1\naction = \"heal\"\nnodes = [\"v0\"]\npeers = [\"all\"]\n");
        assert!(matches!(overlap, Err(Error::Invalid { .. })));
    }

    #[test]
    fn joins_are_spread_and_start_stopped() {
        let plan = plan(
            "[network]\nvalidators = 1\nfull_nodes = 4\n\
             [[events]]\nat_s = 2\naction = \"join\"\nnodes = [\"full_nodes\"]\nspread_s = 4\n",
        )
        .unwrap();
        assert_eq!(plan.starts_running, vec![true, false, false, false, false]);
        let times: Vec<u64> = plan
            .events
            .iter()
            .map(|e| e.at.as_millis() as u64)
            .collect();
        assert_eq!(times, vec![2000, 3000, 4000, 5000]);
    }

    #[test]
    fn bad_input_gets_a_typed_error() {
        for text in [
            "[network]\nvalidators = 0\n",
            "[network]\nduration_s = -1\n",
            "[network]\nvalidators = 6000\n",
            "[latency]\nmin_ms = 9\nmax_ms = 1\n",
            "[[events]]\nat_s = 1\naction = \"crash\"\nnodes = [\"v9\"]\n",
            "[[events]]\nat_s = 99\naction = \"crash\"\nnodes = [\"v1\"]\n",
            "[[events]]\nat_s = 1\naction = \"slow_link\"\nnodes = [\"v1\"]\n",
            "[[events]]\nat_s = 1\naction = \"crash\"\nnodes = [\"x1\"]\n",
            "[[events]]\nat_s = 1\naction = \"crash\"\nnodes = [\"v3..v1\"]\n",
        ] {
            assert!(matches!(plan(text), Err(Error::Invalid { .. })), "{text}");
        }
        assert!(matches!(
            plan("[network]\nbogus = 1\n"),
            Err(Error::Parse(_))
        ));
    }
}
