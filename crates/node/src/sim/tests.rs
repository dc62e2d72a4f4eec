//! The applications on the simulated network: a minority partition and its heal, a crashed
//! validator's restart.

use std::collections::BTreeSet;
use std::rc::Rc;

use sim::trace::{TraceEvent, What};
use sim::{Report, Scenario};

use super::AppSoftware;

fn run(scenario: &str, seed: u64) -> Report {
    let plan = Scenario::from_toml(scenario).unwrap().plan().unwrap();
    sim::run(&plan, seed, Rc::new(AppSoftware { tps: 20 })).unwrap()
}

/// `node`'s committed height at `at_ms` (its last sample by then).
fn height_at(events: &[TraceEvent], node: &str, at_ms: u64) -> u64 {
    events
        .iter()
        .rev()
        .filter(|e| e.node == node && e.at_ms <= at_ms)
        .find_map(|e| match e.what {
            What::Height { height } => Some(height),
            _ => None,
        })
        .unwrap_or(0)
}

/// The peers `node` is connected to on `network` at `at_ms`.
fn peers_at(events: &[TraceEvent], node: &str, network: &str, at_ms: u64) -> BTreeSet<String> {
    let mut peers = BTreeSet::new();
    for e in events.iter().filter(|e| e.node == node && e.at_ms <= at_ms) {
        match &e.what {
            What::Connected {
                peer, network: n, ..
            } if n == network => {
                peers.insert(peer.clone());
            }
            What::Disconnected {
                peer, network: n, ..
            } if n == network => {
                peers.remove(peer);
            }
            What::Stopped { .. } | What::Started => peers.clear(),
            _ => {}
        }
    }
    peers
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn print(report: &Report) {
    for line in &report.timeline {
        println!("{line}");
    }
    println!("{:?}", report.summary);
}

/// Consensus needs 3 of 4 votes (2f+1 of 3f+1), so cutting one validator off leaves a
/// quorum: the three keep committing, the fourth cannot, and after the heal it is redialed
/// and catches up.
#[test]
fn an_isolated_validator_catches_up_and_reconnects_after_heal() {
    let report = run(
        r#"
        [network]
        validators = 4
        duration_s = 40
        [latency]
        min_ms = 5
        max_ms = 20
        [health_check]
        interval_ms = 1000
        timeout_ms = 1000
        failures = 3
        [[events]]
        at_s = 5
        action = "partition"
        nodes = ["v3"]
        [[events]]
        at_s = 20
        action = "heal"
        nodes = ["v3"]
        "#,
        11,
    );
    print(&report);
    let events = report.trace.events();
    for v in ["v0", "v1", "v2"] {
        let progress = height_at(events, v, 20_000) - height_at(events, v, 9_000);
        assert!(
            progress >= 5,
            "{v} committed {progress} blocks during the partition"
        );
    }
    assert_eq!(
        height_at(events, "v3", 20_000),
        height_at(events, "v3", 10_000),
        "the isolated validator cannot commit alone"
    );
    // Detected: the health checker dropped the dead connections during the partition.
    assert!(peers_at(events, "v3", "validator", 19_000).is_empty());
    // Healed: connected to all three again, and caught up with what they had at the heal.
    assert_eq!(
        peers_at(events, "v3", "validator", 39_900),
        set(&["v0", "v1", "v2"])
    );
    let others_at_heal = ["v0", "v1", "v2"]
        .map(|v| height_at(events, v, 20_000))
        .into_iter()
        .max()
        .unwrap();
    assert!(height_at(events, "v3", 40_000) > others_at_heal);
    assert_eq!(report.summary.leaking_nodes, 0);
}

/// A validator killed mid-run and started again with the same key is redialed by the
/// others and commits again with them.
#[test]
fn a_crashed_validator_restarted_with_its_key_rejoins_consensus() {
    let report = run(
        r#"
        [network]
        validators = 4
        duration_s = 35
        [latency]
        min_ms = 5
        max_ms = 20
        [[events]]
        at_s = 8
        action = "crash"
        nodes = ["v1"]
        [[events]]
        at_s = 14
        action = "restart"
        nodes = ["v1"]
        "#,
        12,
    );
    print(&report);
    let events = report.trace.events();
    for v in ["v0", "v2", "v3"] {
        assert!(
            height_at(events, v, 14_000) > height_at(events, v, 9_000),
            "{v} stalled"
        );
        assert_eq!(
            peers_at(events, v, "validator", 34_900),
            set(&["v0", "v1", "v2", "v3"]
                .into_iter()
                .filter(|p| *p != v)
                .collect::<Vec<_>>()),
            "{v} is not connected to every other validator at the end"
        );
    }
    let at_restart = height_at(events, "v0", 14_000);
    let end = height_at(events, "v1", 35_000);
    assert!(
        end > at_restart,
        "v1 reached {end}, the others were at {at_restart} when it restarted"
    );
    assert_eq!(report.summary.leaking_nodes, 0);
}
