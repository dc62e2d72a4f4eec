//! `peerlane sim` end to end: the real binary runs a shipped scenario with the example
//! applications on the simulated network.

use std::process::Command;

/// `docs/scenarios/slow-link.toml`: from 10 s to 50 s every segment to or from v0 waits 10 s,
/// so each health-check ping is answered after 20 s, four times the timeout. The applications
/// keep bytes flowing on every connection (consensus, mempool, state sync), so the late pings
/// end as `timeout_busy` and nobody is disconnected: a slow link that carries traffic is not
/// mistaken for a dead one. (On a link that carries nothing but pings a 10 s queue can make
/// three windows in a row see no byte, and the peer is dropped; that is the health checker's
/// documented trade-off, see docs/operations.md "Noticing a dead peer".)
/// When the scenario slows v0's links.
const SLOW_FROM_S: f64 = 10.0;

#[test]
fn a_peer_behind_a_ten_second_queue_is_not_disconnected_while_traffic_flows() {
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/scenarios/slow-link.toml"
    );
    for seed in ["1", "22"] {
        let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
            .args(["sim", scenario, "--seed", seed, "--json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "seed {seed}: status {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let summary = &report["summary"];
        // Timeline lines read `   12.345s  v0     disconnected v1 on validator: reason`; a
        // connection closed at start-up (the loser of a simultaneous dial) is not a detection.
        let dropped: Vec<&str> = report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|line| line.as_str())
            .filter(|line| line.contains(" disconnected "))
            .filter(|line| {
                let at: f64 = line.trim().split('s').next().unwrap().parse().unwrap();
                at >= SLOW_FROM_S
            })
            .collect();
        assert!(dropped.is_empty(), "seed {seed}: {dropped:#?}");
        assert!(
            summary["min_validator_height"].as_u64().unwrap() > 0,
            "seed {seed}: {summary}"
        );
        assert_eq!(summary["leaking_nodes"], 0, "seed {seed}: {summary}");
    }
}
