//! `peerlane node --data-dir` across restarts: a ban the network set itself (a peer flooding
//! mempool, closed for rate-limit abuse) is back after a SIGKILL with its reason and end; and
//! a stored peer that is down when the node restarts is reconnected once it comes back,
//! because the stored peers are a discovery source of the connectivity manager (retried with
//! its backoff), not dialed once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Node, fresh_dir, http, poll_within};

/// How long a test waits for a condition before it fails: a flood ban and a restart on a
/// loaded machine take longer than the harness's default bound.
const WAIT: Duration = Duration::from_secs(30);

/// Starts a node logging at info (the tests read its `peer store` line).
fn start(args: &[&str]) -> Node {
    Node::start_with_logs(args, "peerlane=info")
}

/// `GET path` on the admin API at `port`: the status and the body as JSON (or as a string).
fn get(port: u16, path: &str) -> (u16, serde_json::Value) {
    json(http(port, "GET", path, None))
}

/// `POST path` with a JSON `body` on the admin API at `port`.
fn post(port: u16, path: &str, body: &str) -> (u16, serde_json::Value) {
    json(http(port, "POST", path, Some(body)))
}

fn json((status, body): (u16, String)) -> (u16, serde_json::Value) {
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, body)
}

/// Whether `GET /peers` on `port` lists `peer_id`.
fn lists(port: u16, peer_id: &str) -> bool {
    let (status, peers) = get(port, "/peers");
    assert_eq!(status, 200, "{peers}");
    peers
        .as_array()
        .unwrap()
        .iter()
        .any(|peer| peer["peer_id"] == peer_id)
}

/// A key file written by `peerlane keygen` in `dir`.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = common::peerlane()
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    key
}

/// V (with a data dir) takes one mempool message a second from each peer and closes a peer
/// after 5 drops, banning it for 10 minutes; F floods it with its load generator. V bans F
/// itself (`rate_limited`, with an end); killed with SIGKILL and restarted on the same data
/// dir, V lists the ban again with the same reason and end, and F's dials are still refused.
#[cfg(unix)]
#[test]
fn a_ban_the_network_set_itself_survives_a_sigkill() {
    let dir = fresh_dir("persist-flood-ban");
    let data_dir = dir.join("data");
    let config = dir.join("victim.toml");
    std::fs::write(
        &config,
        "[peer.rate_limit]\nburst_ms = 1000\nabuse_max_drops = 5\nban_duration_ms = 600000\n\
         [peer.rate_limit.mempool]\nmessages_per_sec = 1\nbytes_per_sec = 10000000\n\
         [apps]\nmempool = true\n",
    )
    .unwrap();
    let start_victim = || {
        start(&[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--admin",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
    };
    let victim = start_victim();
    let port = victim.admin_port();
    let flooder_config = dir.join("flooder.toml");
    std::fs::write(
        &flooder_config,
        "[apps]\nmempool = true\nmempool_load_tps = 2000\n",
    )
    .unwrap();
    let flooder = start(&[
        "--config",
        flooder_config.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--seed",
        &victim.address,
    ]);
    let ban = poll_within(WAIT, "V bans F for flooding", || {
        let (_, bans) = get(port, "/bans");
        bans.as_array()
            .unwrap()
            .iter()
            .find(|ban| ban["peer_id"] == flooder.peer_id())
            .cloned()
    });
    assert_eq!(ban["reason"], "rate_limited", "{ban}");
    assert!(ban["until"].is_string(), "{ban}");
    // The network's ban is queued for the store without waiting; this commit follows it in
    // the same queue, so once it is answered both are on disk.
    let (status, body) = post(
        port,
        "/bans/ips",
        r#"{"ip": "10.7.0.0/16", "duration_secs": 3600}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["until"].is_string(), "{body}");
    let (status, body) = post(
        port,
        "/bans/ips",
        r#"{"ip": "10.8.0.0/16", "duration_secs": 0}"#,
    );
    assert_eq!(status, 400, "{body}");
    drop(victim);

    let victim = start_victim();
    victim.expect("peer store");
    let port = victim.admin_port();
    let (status, bans) = get(port, "/bans");
    assert_eq!(status, 200);
    let restored = bans
        .as_array()
        .unwrap()
        .iter()
        .find(|restored| restored["peer_id"] == flooder.peer_id())
        .unwrap_or_else(|| panic!("no ban of F after the restart: {bans}"))
        .clone();
    assert_eq!(restored["reason"], "rate_limited", "{restored}");
    assert_eq!(restored["until"], ban["until"], "{restored}");
    // The timed IP ban came back with its end too.
    let (_, ip_bans) = get(port, "/bans/ips/details");
    let ip_ban = &ip_bans.as_array().unwrap()[0];
    assert_eq!(ip_ban["ip"], "10.7.0.0/16", "{ip_bans}");
    assert!(ip_ban["until"].is_string(), "{ip_bans}");
    assert!(!lists(port, &flooder.peer_id()));
    drop(flooder);
    drop(victim);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A (with a data dir) seeded with B connects to it and is killed; B stops too. A restarts
/// without seeds while B is down: its connectivity manager knows B from the store
/// (`discovered_peers{provenance="stored"}`), fails to dial it and backs off. B comes back on
/// the same address and key, and A reconnects to it on a retry. Prints how long that took
/// from B's start (docs/performance.md).
#[cfg(unix)]
#[test]
fn a_stored_peer_down_at_restart_is_reconnected_when_it_comes_back() {
    let dir = fresh_dir("persist-down-peer");
    let data_dir = dir.join("data");
    let b_key = keygen(&dir, "b.key");
    let b = start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--key-file",
        b_key.to_str().unwrap(),
    ]);
    let b_listen = format!("/ip4/127.0.0.1/tcp/{}", b.port());
    let b_id = b.peer_id();
    let args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--admin",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    let a = start(&[&args[..], &["--seed", &b.address]].concat());
    let port = a.admin_port();
    poll_within(WAIT, "A with B", || lists(port, &b_id).then_some(()));
    drop(a);
    drop(b);

    let a = start(&args);
    a.expect("peer store");
    let port = a.admin_port();
    poll_within(WAIT, "B is a stored discovered peer", || {
        let (_, metrics) = get(port, "/metrics");
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        metrics
            .lines()
            .any(|line| {
                line.starts_with("peerlane_connectivity_discovered_peers{")
                    && line.contains("provenance=\"stored\"")
                    && line.ends_with(" 1")
            })
            .then_some(())
    });
    poll_within(WAIT, "A's first dial of B fails", || {
        let (_, metrics) = get(port, "/metrics");
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        metrics
            .lines()
            .any(|line| {
                line.starts_with("peerlane_connectivity_dials_total{")
                    && line.contains("result=\"unreachable\"")
                    && !line.ends_with(" 0")
            })
            .then_some(())
    });
    assert!(!lists(port, &b_id));

    let back = Instant::now();
    let b = start(&["--listen", &b_listen, "--key-file", b_key.to_str().unwrap()]);
    assert_eq!(b.peer_id(), b_id);
    poll_within(WAIT, "A back with B", || lists(port, &b_id).then_some(()));
    eprintln!(
        "stored peer back to reconnected: {} ms",
        back.elapsed().as_millis()
    );
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
