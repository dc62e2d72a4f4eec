//! Failure detection with the stack's default health checker (a ping every 5 s, 5 s timeout,
//! 3 failures in a row) on the simulated network: a silently dead link is noticed by both
//! ends within 25 s, and a peer behind a link whose queue holds 10 s (a saturated link) is
//! not disconnected.

use std::collections::BTreeSet;
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
    let dropped = disconnects(events);
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

/// From 5 s to 45 s every segment to or from v0 waits 10 s on its links: every ping either
/// way is answered after 20 s, four times the timeout. Bytes keep coming on each connection
/// (the peer's own pings and the pongs of earlier pings), so the late pings end as
/// `timeout_busy` and nobody is disconnected; once the link is fast again the pings are
/// answered in time.
#[test]
fn a_peer_behind_a_ten_second_queue_is_not_disconnected() {
    let report = run(
        r#"
        [network]
        validators = 4
        duration_s = 70
        [latency]
        min_ms = 10
        max_ms = 40
        [[events]]
        at_s = 5
        action = "slow_link"
        nodes = ["v0"]
        latency_ms = 10000
        [[events]]
        at_s = 45
        action = "slow_link"
        nodes = ["v0"]
        latency_ms = 20
        "#,
        22,
    );
    let events = report.trace.events();
    assert_eq!(disconnects(events), Vec::new(), "a slow peer was dropped");
    // Not a run where nothing connected: v0 holds a connection to each other validator.
    let v0_peers: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.node == "v0")
        .filter_map(|e| match &e.what {
            What::Connected { peer, .. } => Some(peer.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(v0_peers, BTreeSet::from(["v1", "v2", "v3"]));
    assert_eq!(report.summary.leaking_nodes, 0);
}
