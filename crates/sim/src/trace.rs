//! [`Trace`]: what happened in a run, in simulated-time order, and its hash; [`Summary`]:
//! the figures drawn from it. Pure: the engine and the hosts append, nothing here runs.
//!
//! The hash is SHA-256 over every event's line (`at_ms node what`), so two runs with the same
//! seed and scenario print the same hash exactly when they did the same things at the same
//! simulated times.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Simulated milliseconds from the start.
    pub at_ms: u64,
    /// The node it happened on (or the scenario's first node, for a scenario event).
    pub node: String,
    /// What.
    pub what: What,
}

/// The kinds of [`TraceEvent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A scenario event was applied (`partition v3 | v0,v1,v2`, `crash v1`, ...).
    Scenario {
        /// The event as one line.
        event: String,
    },
    /// The node's software started (at the beginning, on join or on restart).
    Started,
    /// A connection to `peer` was registered on `network`.
    Connected {
        /// The peer's node name.
        peer: String,
        /// `validator` or `public`.
        network: String,
        /// `inbound` or `outbound`.
        origin: String,
    },
    /// The connection to `peer` on `network` ended.
    Disconnected {
        /// The peer's node name.
        peer: String,
        /// The network.
        network: String,
        /// Why (the peer layer's `DisconnectReason`), e.g. `requested` when the health checker
        /// disconnected a silent peer, `remote_closed` when the peer closed.
        reason: String,
    },
    /// The node's committed height changed (sampled).
    Height {
        /// The new height.
        height: u64,
    },
    /// The node shut down at the end of the run; `tasks_left` of the tasks its stack spawned
    /// were still alive after `shutdown()` returned (0: none leaked).
    Stopped {
        /// Tasks still alive.
        tasks_left: i64,
    },
}

/// Every event of a run, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Trace {
    events: Vec<TraceEvent>,
}

/// Figures of a run, from its trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Nodes in the scenario.
    pub nodes: usize,
    /// Simulated milliseconds the run covered.
    pub simulated_ms: u64,
    /// Events in the trace.
    pub events: usize,
    /// Final committed height of each node, by name.
    pub heights: BTreeMap<String, u64>,
    /// Lowest final height among validators.
    pub min_validator_height: u64,
    /// Highest final height among all nodes.
    pub max_height: u64,
    /// Connections registered (each side counts its own).
    pub connections: usize,
    /// Connections ended, by reason.
    pub disconnects: BTreeMap<String, usize>,
    /// Nodes whose stack left tasks alive after shutdown.
    pub leaking_nodes: usize,
    /// Nodes that reported a clean stop.
    pub stopped_nodes: usize,
    /// The trace hash, hex.
    pub trace_hash: String,
}

impl Trace {
    /// Appends `what` on `node` at `at_ms`.
    pub fn push(&mut self, at_ms: u64, node: impl Into<String>, what: What) {
        self.events.push(TraceEvent {
            at_ms,
            node: node.into(),
            what,
        });
    }

    /// The events so far.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// SHA-256 over every event's line, hex.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for event in &self.events {
            hasher.update(event.to_string().as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }

    /// The figures, for `nodes` nodes of which the first `validators` are validators, over
    /// `simulated_ms`.
    pub fn summary(&self, nodes: &[String], validators: usize, simulated_ms: u64) -> Summary {
        let mut heights: BTreeMap<String, u64> = nodes.iter().map(|n| (n.clone(), 0)).collect();
        let mut connections = 0;
        let mut disconnects = BTreeMap::new();
        let mut leaking_nodes = 0;
        let mut stopped_nodes = 0;
        for event in &self.events {
            match &event.what {
                What::Height { height } => {
                    heights.insert(event.node.clone(), *height);
                }
                What::Connected { .. } => connections += 1,
                What::Disconnected { reason, .. } => {
                    *disconnects.entry(reason.clone()).or_insert(0) += 1;
                }
                What::Stopped { tasks_left } => {
                    stopped_nodes += 1;
                    if *tasks_left != 0 {
                        leaking_nodes += 1;
                    }
                }
                What::Scenario { .. } | What::Started => {}
            }
        }
        let min_validator_height = nodes[..validators]
            .iter()
            .map(|n| heights[n])
            .min()
            .unwrap_or(0);
        let max_height = heights.values().copied().max().unwrap_or(0);
        Summary {
            nodes: nodes.len(),
            simulated_ms,
            events: self.events.len(),
            heights,
            min_validator_height,
            max_height,
            connections,
            disconnects,
            leaking_nodes,
            stopped_nodes,
            trace_hash: self.hash(),
        }
    }

    /// The timeline for people: every event when there are at most `detail_nodes` nodes;
    /// otherwise the scenario events, starts and stops, and one line per `every_ms` with the
    /// nodes up, connections open and the spread of heights.
    pub fn timeline(&self, nodes: usize, detail_nodes: usize, every_ms: u64) -> Vec<String> {
        if nodes <= detail_nodes {
            return self.events.iter().map(ToString::to_string).collect();
        }
        let mut lines = Vec::new();
        let mut up: BTreeMap<&str, bool> = BTreeMap::new();
        let mut heights: BTreeMap<&str, u64> = BTreeMap::new();
        let mut open: i64 = 0;
        let mut next = every_ms;
        let flush = |lines: &mut Vec<String>,
                     at: u64,
                     up: &BTreeMap<&str, bool>,
                     heights: &BTreeMap<&str, u64>,
                     open: i64| {
            let mut hs: Vec<u64> = heights.values().copied().collect();
            hs.sort_unstable();
            let (lo, mid, hi) = match hs.as_slice() {
                [] => (0, 0, 0),
                _ => (hs[0], hs[hs.len() / 2], hs[hs.len() - 1]),
            };
            lines.push(format!(
                "{:>9.3}s  -- {} nodes up, {} connections, height min/median/max {lo}/{mid}/{hi}",
                at as f64 / 1000.0,
                up.values().filter(|u| **u).count(),
                open / 2,
            ));
        };
        for event in &self.events {
            while event.at_ms >= next {
                flush(&mut lines, next, &up, &heights, open);
                next += every_ms;
            }
            match &event.what {
                What::Scenario { .. } => lines.push(event.to_string()),
                What::Started => {
                    up.insert(&event.node, true);
                }
                What::Stopped { .. } => {
                    up.insert(&event.node, false);
                }
                What::Connected { .. } => open += 1,
                What::Disconnected { .. } => open -= 1,
                What::Height { height } => {
                    heights.insert(&event.node, *height);
                }
            }
        }
        lines
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s  {:<6} ", self.at_ms as f64 / 1000.0, self.node)?;
        match &self.what {
            What::Scenario { event } => write!(f, "scenario: {event}"),
            What::Started => f.write_str("started"),
            What::Connected {
                peer,
                network,
                origin,
            } => write!(f, "connected {peer} on {network} ({origin})"),
            What::Disconnected {
                peer,
                network,
                reason,
            } => write!(f, "disconnected {peer} on {network}: {reason}"),
            What::Height { height } => write!(f, "height {height}"),
            What::Stopped { tasks_left } => write!(f, "stopped, {tasks_left} tasks left"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_event_and_its_time() {
        let mut a = Trace::default();
        a.push(5, "v0", What::Started);
        a.push(7, "v0", What::Height { height: 1 });
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.push(9, "v1", What::Started);
        assert_ne!(a.hash(), b.hash());
        let mut c = Trace::default();
        c.push(5, "v0", What::Started);
        c.push(8, "v0", What::Height { height: 1 });
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn summary_counts_heights_disconnects_and_leaks() {
        let mut t = Trace::default();
        t.push(1, "v0", What::Height { height: 3 });
        t.push(1, "v1", What::Height { height: 2 });
        t.push(
            2,
            "v0",
            What::Disconnected {
                peer: "v1".into(),
                network: "validator".into(),
                reason: "health_check".into(),
            },
        );
        t.push(3, "v0", What::Stopped { tasks_left: 0 });
        t.push(3, "v1", What::Stopped { tasks_left: 2 });
        let s = t.summary(&["v0".into(), "v1".into(), "f0".into()], 2, 10);
        assert_eq!(s.min_validator_height, 2);
        assert_eq!(s.max_height, 3);
        assert_eq!(s.disconnects["health_check"], 1);
        assert_eq!((s.stopped_nodes, s.leaking_nodes), (2, 1));
    }
}
