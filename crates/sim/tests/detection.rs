//! Failure detection with the stack's default health checker (a ping every 5 s, 5 s timeout,
//! 3 failures in a row) on the simulated network: a silently dead link is noticed by both
//! ends within 25 s. (A peer behind a link whose queue holds 10 s is tested with the
//! applications' traffic on it, through `peerlane sim`: crates/node/tests/sim.rs.)

use std::rc::Rc;

use sim::trace::{TraceEvent, What};
use sim::{NetworkOnly, Scenario};

fn run(scenario: &str, seed: u64) -> sim::Report {
    let plan = Scenario::from_toml(scenario).unwrap().plan().unwrap();
    sim::run(&plan, seed, Rc::new(NetworkOnly)).unwrap()
}

/// Every disconnect in the trace: (at_ms, node, peer, network, reason).
fn disconnects(events: &[TraceEvent]) -> Vec<(u64, &str, &str, &str, &str)> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            What::Disconnected {
                peer,
                network,
                reason,
            } => Some((
                e.at_ms,
                e.node.as_str(),
                peer.as_str(),
                network.as_str(),
                reason.as_str(),
            )),
            _ => None,
        })
        .collect()
}

const PARTITION_MS: u64 = 10_000;

/// The link between v0 and v1 drops every segment from 10 s on, both ways, with no FIN or
/// RST; both still reach v2 and v3. Each end's health checker notices on its own (validators
/// are connected on the validator network only: their public networks have no seeds) within
/// 25 s; no other connection is dropped.
#[test]
fn a_silently_dropped_link_is_noticed_by_both_ends_within_25_s() {
    let report = run(
        r#"
        [network]
        validators = 4
        duration_s = 45
        [latency]
        min_ms = 10
        max_ms = 40
        [[events]]
        at_s = 10
        action = "partition"
        nodes = ["v0"]
        peers = ["v1"]
        "#,
        21,
    );
    let events = report.trace.events();
    // Connections closed before the cut (the loser of a simultaneous dial) are not detections.
    let dropped: Vec<_> = disconnects(events)
        .into_iter()
        .filter(|(at, ..)| *at >= PARTITION_MS)
        .collect();
    for (at, node, peer, network, reason) in &dropped {
        println!(
            "{node} noticed {peer} on {network} after {:.1} s ({reason})",
            (*at as f64 - PARTITION_MS as f64) / 1000.0
        );
    }
    for (node, peer) in [("v0", "v1"), ("v1", "v0")] {
        let noticed = dropped
            .iter()
            .find(|(_, n, p, _, _)| *n == node && *p == peer)
            .unwrap_or_else(|| panic!("{node} never noticed {peer}"));
        // The health checker disconnects the peer itself: `requested`.
        assert_eq!((noticed.3, noticed.4), ("validator", "requested"));
        let after = noticed.0 - PARTITION_MS;
        // Simulated time: the last ping answered before the cut, then three that fail.
        assert!(
            (10_000..=25_000).contains(&after),
            "{node} noticed {peer} {after} ms after the cut"
        );
    }
    assert!(
        dropped
            .iter()
            .all(|(_, n, p, _, _)| { matches!((*n, *p), ("v0", "v1") | ("v1", "v0")) }),
        "only the dead link is dropped: {dropped:?}"
    );
    assert_eq!(report.summary.leaking_nodes, 0);
}
