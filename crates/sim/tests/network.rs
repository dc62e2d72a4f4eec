//! The stack on the simulated network without applications: determinism, partitions,
//! crashes, and shutdown.

use std::rc::Rc;

use sim::trace::What;
use sim::{NetworkOnly, Scenario};

const SCENARIO: &str = r#"
[network]
validators = 4
full_nodes = 3
duration_s = 30
[latency]
min_ms = 20
max_ms = 60
[health_check]
interval_ms = 1000
timeout_ms = 1000
failures = 3
[[events]]
at_s = 3
action = "partition"
nodes = ["v3"]
[[events]]
at_s = 10
action = "heal"
nodes = ["v3"]
[[events]]
at_s = 15
action = "crash"
nodes = ["v1"]
[[events]]
at_s = 19
action = "restart"
nodes = ["v1"]
"#;

fn run(seed: u64) -> sim::Report {
    let plan = Scenario::from_toml(SCENARIO).unwrap().plan().unwrap();
    sim::run(&plan, seed, Rc::new(NetworkOnly)).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    let first = run(7);
    let second = run(7);
    if first.summary.trace_hash != second.summary.trace_hash {
        let a = first.trace.events();
        let b = second.trace.events();
        let at = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        for (x, y) in a.iter().zip(b).skip(at).take(30) {
            eprintln!("{x}    |    {y}");
        }
        panic!(
            "traces differ from event {at}: {:?} vs {:?}",
            a.get(at).map(ToString::to_string),
            b.get(at).map(ToString::to_string)
        );
    }
    // Not a trivially empty trace: connections, detections, the crash and the redials.
    assert!(first.summary.connections > 20);
    assert!(
        first
            .summary
            .disconnects
            .get("requested")
            .copied()
            .unwrap_or(0)
            >= 6
    );
    // Every node shut down at the end with no task of its stack left alive.
    assert_eq!(first.summary.stopped_nodes, 7);
    assert_eq!(first.summary.leaking_nodes, 0);
    assert!(
        first
            .trace
            .events()
            .iter()
            .any(|e| matches!(e.what, What::Scenario { .. }))
    );
}

/// Events before the full nodes join: a crash, and a partition of v0 from everyone, the
/// joiners included (their hosts do not exist yet when it is applied).
const BEFORE_JOINS: &str = r#"
[network]
validators = 3
full_nodes = 2
duration_s = 30
[latency]
min_ms = 20
max_ms = 60
[[events]]
at_s = 1
action = "crash"
nodes = ["v1"]
[[events]]
at_s = 2
action = "partition"
nodes = ["v0"]
[[events]]
at_s = 3
action = "join"
nodes = ["full_nodes"]
[[events]]
at_s = 4
action = "restart"
nodes = ["v1"]
[[events]]
at_s = 10
action = "heal"
nodes = ["v0"]
"#;

/// A crash and a partition applied before some nodes joined do not fail the run, and the
/// partition holds for the joiners until the heal.
#[test]
fn events_before_a_join_apply_to_the_joiners_links() {
    let plan = Scenario::from_toml(BEFORE_JOINS).unwrap().plan().unwrap();
    let report = sim::run(&plan, 3, Rc::new(NetworkOnly)).unwrap();
    let v0_and_full_node = |at: &dyn Fn(u64) -> bool| {
        report.trace.events().iter().any(|e| {
            at(e.at_ms)
                && matches!(&e.what, What::Connected { peer, .. }
                    if (e.node == "v0" && peer.starts_with('f'))
                        || (e.node.starts_with('f') && peer == "v0"))
        })
    };
    let full_nodes_connected = report.trace.events().iter().any(|e| {
        e.at_ms < 10_000 && e.node.starts_with('f') && matches!(e.what, What::Connected { .. })
    });
    assert!(full_nodes_connected, "the joiners reached the others");
    assert!(
        !v0_and_full_node(&|at| at < 10_000),
        "the partition held for the joiners"
    );
    assert!(
        v0_and_full_node(&|at| at >= 10_000),
        "and ended with the heal"
    );
    // Times are the simulation's, not the host's (whose clock starts when it starts): the
    // joiners start at 3 s, v1 again at 4 s.
    let starts: Vec<(&str, u64)> = report
        .trace
        .events()
        .iter()
        .filter(|e| matches!(e.what, What::Started))
        .map(|e| (e.node.as_str(), e.at_ms))
        .collect();
    let v1: Vec<u64> = starts
        .iter()
        .filter(|(node, _)| *node == "v1")
        .map(|(_, at)| *at)
        .collect();
    assert!(
        matches!(v1.as_slice(), [0, again] if *again >= 4_000),
        "{starts:?}"
    );
    let joiners: Vec<u64> = starts
        .iter()
        .filter(|(node, _)| node.starts_with('f'))
        .map(|(_, at)| *at)
        .collect();
    assert!(
        joiners.len() == 2 && joiners.iter().all(|at| (3_000..4_000).contains(at)),
        "{starts:?}"
    );
    assert_eq!(report.summary.leaking_nodes, 0);
}
