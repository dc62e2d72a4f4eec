//! `peerlane demo` end to end: the real binary, a short run, its JSON summary, and the peer
//! stores its nodes keep (in a temporary directory removed at exit, or kept in `--data-dir`).

use std::path::PathBuf;
use std::process::Command;

/// A demo run until three blocks are committed and fetched by its late full node exits 0
/// with a JSON summary holding every documented field. It ends on that goal, not on the
/// clock: `--duration` is only a generous bound, for a slow or loaded machine (a debug
/// build on a loaded two-core machine takes tens of seconds).
#[test]
fn a_short_demo_commits_blocks_and_the_full_node_catches_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--json", "--until-blocks", "3", "--duration", "300"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        summary["blocks_committed"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    assert!(
        summary["transactions_committed"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(summary["full_node_caught_up"], true, "{summary}");
    assert!(
        summary["full_node_height"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    assert!(summary["connections"].as_u64().unwrap() >= 6, "{summary}");
    assert!(summary["messages_sent"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["bytes_sent"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["rpc_p50_us"].is_u64(), "{summary}");
    assert!(summary["rpc_p99_us"].is_u64(), "{summary}");
    assert!(summary["streamed_messages"].is_u64(), "{summary}");
    assert!(summary["queue_drops"].is_u64(), "{summary}");
    assert!(summary["refused_connections"].is_u64(), "{summary}");
    // Progress went to stderr, one line per second.
    assert!(stderr.contains("full node"), "{stderr}");
    // The peer stores were in a temporary directory, gone now.
    let line = stderr
        .lines()
        .find(|line| line.contains("peer stores in "))
        .unwrap_or_else(|| panic!("no peer store line: {stderr}"));
    let dir = line
        .split("peer stores in ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" (removed at exit)");
    assert!(line.ends_with("(removed at exit)"), "{line}");
    assert!(!PathBuf::from(dir).exists(), "{dir} is still there");
}

/// With `--data-dir` the stores are kept: one per node and network, and the full node's holds
/// the validators it was seeded with, as configured peers it connected to.
#[test]
fn a_demo_with_a_data_dir_keeps_its_peer_stores() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("demo-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--json", "--nodes", "2", "--until-blocks", "1"])
        .args(["--duration", "300", "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for store in ["validator-0/validator", "validator-1/public", "full-node"] {
        assert!(
            dir.join(store).join(store::FILE_NAME).is_file(),
            "{store}: {stderr}"
        );
    }
    let full_node = store::Store::open(dir.join("full-node")).unwrap();
    let peers = store::PeerStore::open(full_node, store::PeerStoreConfig::default()).unwrap();
    let seeds: Vec<_> = peers
        .table()
        .iter()
        .filter(|(key, record)| {
            key.network == store::Network::Public
                && record.trust == store::TrustLevel::Configured
                && (record.is_connected() || record.last_connection.is_some())
        })
        .collect();
    assert_eq!(seeds.len(), 2, "{seeds:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input is a one-line error with exit status 2.
#[test]
fn bad_demo_input_exits_2_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--nodes", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--nodes"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--until-blocks", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--until-blocks"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--duration", "10", "--join-at", "11"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--join-at"), "{stderr}");
}

/// With `--topology line` the four validators are dialed only along the line (three
/// validator links, plus the full node's four), so proposals, votes and commits between
/// validators two or three hops apart go through routing: blocks are still committed, and
/// the summary shows routed messages delivered.
#[test]
fn a_line_of_validators_commits_blocks_through_routing() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args([
            "demo",
            "--json",
            "--topology",
            "line",
            "--until-blocks",
            "3",
        ])
        .args(["--duration", "300"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["topology"], "line", "{summary}");
    assert!(
        summary["blocks_committed"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    assert!(summary["routed_sent"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["routed_forwarded"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        summary["routed_delivered"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary["routed_dropped"].is_u64(), "{summary}");
    assert!(
        stderr.contains("topology line (3 validator links)"),
        "{stderr}"
    );
}

/// A topology that is not one of the four is refused with exit status 2, naming the flag.
#[test]
fn an_unknown_topology_is_refused_with_exit_status_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .args(["demo", "--topology", "star"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--topology"), "{stderr}");
}
