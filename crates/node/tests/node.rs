//! `peerlane node` end to end: two processes connect over loopback TCP + Noise and shut down
//! cleanly on SIGTERM; bad input is a one-line error with exit status 2; `--help` lists the
//! config file's keys with their defaults, as a file the node runs with; the admin API
//! (`--admin`) serves metrics and lists (with connect time, RTT and bytes), dials, disconnects
//! and bans peers, and stands up to its attacks (no or a wrong token, a foreign Host, slow
//! headers, too many connections, dials used as a port scanner); three validators running
//! mempool and consensus from their config files commit blocks.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    HOST, Node, TOKEN_ENV, WAIT, fresh_dir, http, http_on, http_with, peerlane, poll, poll_within,
};

/// How long a test waits for consensus to make progress before it fails: rounds time out and
/// retry on a loaded machine, so progress may take many rounds; the wait ends at the event.
const PROGRESS_WAIT: Duration = Duration::from_secs(120);

/// Node B, given A's address as its seed, connects to A (each reports the other), and both
/// exit 0 on SIGTERM. A uses a key file from `peerlane keygen` and a TOML config.
#[cfg(unix)]
#[test]
fn two_nodes_connect_and_stop_on_sigterm() {
    let dir = fresh_dir("node-two");
    let key = dir.join("a.key");
    let config = dir.join("a.toml");
    let out = peerlane()
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(
        &config,
        "network_id = \"public\"\nlisten_address = \"/ip4/127.0.0.1/tcp/0\"\n",
    )
    .unwrap();

    let a = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
        "--chain-id",
        "7",
    ]);
    assert!(
        a.address.starts_with("/ip4/127.0.0.1/tcp/"),
        "{}",
        a.address
    );
    assert!(a.address.ends_with("/handshake/0"), "{}", a.address);
    let b = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--chain-id",
        "7",
        "--seed",
        &a.address,
    ]);
    b.expect(&format!("peer connected: {}", a.peer_id()));
    a.expect(&format!("peer connected: {}", b.peer_id()));
    b.terminate();
    a.terminate();
}

fn node(args: &[&str]) -> Output {
    peerlane()
        .arg("node")
        .args(args)
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap()
}

/// A config with a typo (among the network fields, in `[apps]` or in `[admin]`), apps that do
/// not fit together, a missing config file, a seed without a key, a bad key file and an admin
/// API on a non-loopback address without a token (from a flag or the config file), and a
/// validator network with `auth_mode = "maybe_mutual"` each end
/// with one line that names the problem, and exit status 2.
#[test]
fn bad_node_input_exits_2_with_one_line() {
    let dir = fresh_dir("node-bad");
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "chain_id = 4\nmax_inbound_conections = 5\n").unwrap();
    let bad_key = dir.join("bad.key");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    let apps_typo = dir.join("apps-typo.toml");
    std::fs::write(&apps_typo, "chain_id = 4\n[apps]\nmempol = true\n").unwrap();
    let no_mempool = dir.join("no-mempool.toml");
    std::fs::write(&no_mempool, "[apps]\nconsensus = true\n").unwrap();
    let admin_typo = dir.join("admin-typo.toml");
    std::fs::write(&admin_typo, "[admin]\ntoken = \"x\"\n").unwrap();
    let admin_open = dir.join("admin-open.toml");
    std::fs::write(&admin_open, "[admin]\naddress = \"0.0.0.0:0\"\n").unwrap();
    let validator_maybe = dir.join("validator-maybe-mutual.toml");
    std::fs::write(
        &validator_maybe,
        "network_id = \"validator\"\nauth_mode = \"maybe_mutual\"\n",
    )
    .unwrap();
    let cases: [(Vec<&str>, &str); 11] = [
        (
            vec!["--config", typo.to_str().unwrap()],
            "max_inbound_conections",
        ),
        (
            vec!["--config", apps_typo.to_str().unwrap()],
            "(line 3): [apps] unknown field `mempol`",
        ),
        (
            vec!["--config", no_mempool.to_str().unwrap()],
            "apps.consensus: needs apps.mempool",
        ),
        (vec!["--config", "/no/such/file.toml"], "cannot read config"),
        (vec!["--seed", "/ip4/127.0.0.1/tcp/1"], "noise-ik"),
        (vec!["--key-file", bad_key.to_str().unwrap()], "key file"),
        (
            vec!["--config", admin_typo.to_str().unwrap()],
            "(line 2): [admin] unknown field `token`",
        ),
        (
            vec!["--admin", "0.0.0.0:0"],
            "admin address 0.0.0.0:0: not a loopback address, so it needs a token",
        ),
        (
            vec!["--config", admin_open.to_str().unwrap()],
            "not a loopback address, so it needs a token",
        ),
        (
            vec!["--admin", "[::]:0", "--admin-token-file", "/no/such/token"],
            "cannot read admin token file /no/such/token",
        ),
        (
            vec!["--config", validator_maybe.to_str().unwrap()],
            "must use mutual authentication",
        ),
    ];
    for (args, expected) in cases {
        let out = node(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// `peerlane node --help` (not `-h`) ends with every config file key and its default, the
/// security limits among them, and that listing is a config file the node starts with.
#[cfg(unix)]
#[test]
fn help_lists_the_config_file_defaults() {
    let out = node(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let heading = "Config file settings (defaults):";
    let section = &help[help.find(heading).unwrap_or_else(|| panic!("{help}"))..];
    let defaults = peerlane::NetworkConfig::default();
    for entry in [
        format!(
            "max_untrusted_message_size = {}",
            defaults.peer.max_untrusted_message_size
        ),
        format!(
            "stream_reassembly_timeout_ms = {}",
            defaults.peer.stream_reassembly_timeout.as_millis()
        ),
        format!(
            "max_untrusted_queued_bytes = {}",
            defaults.peer.max_untrusted_queued_bytes
        ),
        format!(
            "max_pending_per_ip = {}",
            defaults.admission.max_pending_per_ip
        ),
        format!(
            "max_bytes_per_key = {}",
            defaults.inbound_queue.max_bytes_per_key
        ),
        "[peer.rate_limit.consensus]".to_owned(),
        "[apps]".to_owned(),
        "consensus_round_timeout_ms = ".to_owned(),
        "[admin]".to_owned(),
        "max_connections = ".to_owned(),
        "docs/configuration.md".to_owned(),
    ] {
        assert!(section.contains(&entry), "{entry} in {section}");
    }
    let short = node(&["-h"]);
    assert!(!String::from_utf8_lossy(&short.stdout).contains(heading));

    let toml = &section[section.find("    network_id = ").expect("the TOML part")..];
    let dir = fresh_dir("node-help");
    let path = dir.join("defaults.toml");
    std::fs::write(&path, toml).unwrap();
    let node = Node::start(&[
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    node.terminate();
}

/// The peers `GET /peers` lists.
fn peers(port: u16) -> Vec<serde_json::Value> {
    let (status, body) = http(port, "GET", "/peers", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The `GET /peers` entry of `peer_id`, if listed.
fn listed(port: u16, peer_id: &str) -> Option<serde_json::Value> {
    peers(port)
        .into_iter()
        .find(|peer| peer["peer_id"] == peer_id)
}

/// The admin API of node A: metrics; B (seeded with A) listed; C dialed by `POST /peers`;
/// `DELETE /peers/<B>` disconnects B, and B's connectivity manager, which keeps its seed A
/// connected, redials within a connectivity check (5 s) plus backoff, so B is listed again
/// with a new connection id; bad requests get a 4xx with a one-line JSON error.
#[cfg(unix)]
#[test]
fn admin_api_lists_dials_and_disconnects_peers() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"]);
    let port = a.admin_port();

    let (status, metrics) = http(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("peerlane_"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert!(peers(port).is_empty());

    let b = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &a.address]);
    a.expect(&format!("peer connected: {}", b.peer_id()));
    let entry = listed(port, &b.peer_id()).expect("B is listed");
    assert_eq!(entry["network"], "public", "{entry}");
    assert_eq!(entry["origin"], "inbound", "{entry}");
    assert!(
        entry["remote_address"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/"),
        "{entry}"
    );
    assert!(
        !entry["protocols"].as_array().unwrap().is_empty(),
        "{entry}"
    );
    // peerlane's own protocols are offered, and the chain status field is there (null: the
    // node sets no chain status of its own, so B announces none).
    let protocols = entry["protocols"].to_string();
    assert!(protocols.contains("PeerlaneDisconnect"), "{entry}");
    assert!(protocols.contains("ChainStatus"), "{entry}");
    assert!(entry.get("chain_status").is_some(), "{entry}");
    let first_connection = entry["connection_id"].as_u64().unwrap();
    // Roles are spelled as config files spell them.
    let role = entry["role"].as_str().unwrap();
    assert!(
        !role.is_empty() && role.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{entry}"
    );

    // A dials C, which knows nobody.
    let c = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let request = format!(
        r#"{{"peer_id": "{}", "address": "{}"}}"#,
        c.peer_id(),
        c.address
    );
    let (status, body) = http(port, "POST", "/peers", Some(&request));
    assert_eq!(status, 200, "{body}");
    let entry = listed(port, &c.peer_id()).expect("C is listed");
    assert_eq!(entry["origin"], "outbound", "{entry}");
    let (status, body) = http(port, "POST", "/peers", Some(&request));
    assert_eq!(status, 409, "{body}");
    // Bad input is a 400 whose one-line message names what is wrong.
    for (bad, names) in [
        ("not json", "expected ident"),
        (
            r#"{"peer_id": "zz", "address": "/ip4/127.0.0.1/tcp/1"}"#,
            "peer_id",
        ),
        (
            &format!(r#"{{"peer_id": "{}", "address": "tcp"}}"#, c.peer_id()),
            "address",
        ),
        (
            &format!(r#"{{"peer_id": "{}"}}"#, c.peer_id()),
            "missing field `address`",
        ),
    ] {
        let (status, body) = http(port, "POST", "/peers", Some(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body.trim().lines().count(), 1, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(names), "{bad}: {message}");
    }
    let (status, body) = http(port, "DELETE", "/peers/zz", None);
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().starts_with("peer id: "),
        "{body}"
    );

    // Disconnect B: gone, then back over a new connection that B dialed.
    let (status, body) = http(port, "DELETE", &format!("/peers/{}", b.peer_id()), None);
    assert_eq!(status, 200, "{body}");
    a.expect(&format!("peer disconnected: {}", b.peer_id()));
    b.expect(&format!("peer disconnected: {}", a.peer_id()));
    a.expect(&format!("peer connected: {}", b.peer_id()));
    let entry = listed(port, &b.peer_id()).expect("B is listed again");
    assert_eq!(entry["origin"], "inbound", "{entry}");
    assert_ne!(entry["connection_id"].as_u64().unwrap(), first_connection);

    // C is not redialed by anyone: after DELETE it stays unlisted, and a second DELETE is 404.
    let (status, body) = http(port, "DELETE", &format!("/peers/{}", c.peer_id()), None);
    assert_eq!(status, 200, "{body}");
    assert!(listed(port, &c.peer_id()).is_none());
    let (status, body) = http(port, "DELETE", &format!("/peers/{}", c.peer_id()), None);
    assert_eq!(status, 404, "{body}");

    c.terminate();
    b.terminate();
    a.terminate();
}

/// `--log-format json` writes each log line to stderr as one JSON object.
#[test]
fn log_format_json_writes_json_lines() {
    let mut child = peerlane()
        .args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.starts_with('{') {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(WAIT).expect("a JSON log line");
    let _ = child.kill();
    let _ = child.wait();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(value["level"].is_string(), "{line}");
    assert!(value["fields"]["message"].is_string(), "{line}");
}

/// The count of handshakes A's Noise refused because the peer is banned.
fn banned_refusals(port: u16) -> u64 {
    let (status, metrics) = http(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    metrics
        .lines()
        .find(|line| {
            line.starts_with("peerlane_noise_handshakes_total{")
                && line.contains(r#"side="responder""#)
                && line.contains(r#"result="banned""#)
        })
        .map_or(0, |line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

/// The ban list through A's admin API: `POST /bans` with B (seeded with A) disconnects B, and
/// B's redials of its seed are refused by Noise
/// (`peerlane_noise_handshakes_total{side="responder",result="banned"}`) so it stays unlisted; `GET /bans` lists it; `DELETE /bans/<B>` lets B reconnect, and a
/// second one is 404.
#[cfg(unix)]
#[test]
fn admin_api_bans_and_unbans_peers() {
    // A logs its connections and disconnections at info.
    let a = Node::start_with_logs(
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"],
        "peerlane=info",
    );
    let port = a.admin_port();
    // B redials quickly (backoff at most 500 ms): its backoff grows with every refusal while
    // it is banned, and the default (up to 60 s) would make the reconnect after the unban
    // depend on how many refusals fit in this test.
    let dir = fresh_dir("node-bans");
    let b_config = dir.join("b.toml");
    std::fs::write(
        &b_config,
        "[connectivity]\nbackoff_base_ms = 100\nmax_backoff_ms = 500\nmax_backoff_jitter_ms = 100\n",
    )
    .unwrap();
    let b = Node::start(&[
        "--config",
        b_config.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--seed",
        &a.address,
        "--admin",
        "127.0.0.1:0",
    ]);
    let b_port = b.admin_port();
    a.expect(&format!("peer connected: {}", b.peer_id()));
    let dial_a = format!(
        r#"{{"peer_id": "{}", "address": "{}"}}"#,
        a.peer_id(),
        a.address
    );

    let (status, body) = http(port, "GET", "/bans", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    let request = format!(r#"{{"peer_id": "{}"}}"#, b.peer_id());
    let (status, body) = http(port, "POST", "/bans", Some(&request));
    assert_eq!(status, 200, "{body}");
    a.expect(&format!("peer disconnected: {}", b.peer_id()));
    b.expect(&format!("peer disconnected: {}", a.peer_id()));
    let (status, body) = http(port, "GET", "/bans", None);
    assert_eq!(status, 200, "{body}");
    let banned: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(banned.len(), 1, "{body}");
    assert_eq!(banned[0]["peer_id"], b.peer_id());
    assert_eq!(banned[0]["reason"], "manual");
    assert!(banned[0]["until"].is_null(), "{body}");
    for bad in ["not json", r#"{"peer_id": "zz"}"#, r#"{"peer": "zz"}"#] {
        let (status, body) = http(port, "POST", "/bans", Some(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().starts_with("body: "),
            "{body}"
        );
    }
    let (status, body) = http(port, "DELETE", "/bans/zz", None);
    assert_eq!(status, 400, "{body}");

    // B was told it is banned, so its connectivity manager does not redial before the ban
    // ends; a dial by hand is refused by A's Noise.
    let (status, body) = http(b_port, "POST", "/peers", Some(&dial_a));
    assert_ne!(status, 200, "{body}");
    poll("a banned dial refused", || {
        (banned_refusals(port) >= 1).then_some(())
    });
    assert!(listed(port, &b.peer_id()).is_none());

    let (status, body) = http(port, "DELETE", &format!("/bans/{}", b.peer_id()), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(b_port, "POST", "/peers", Some(&dial_a));
    assert_eq!(status, 200, "{body}");
    a.expect(&format!("peer connected: {}", b.peer_id()));
    assert!(listed(port, &b.peer_id()).is_some());
    let (status, body) = http(port, "DELETE", &format!("/bans/{}", b.peer_id()), None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(port, "GET", "/bans", None);
    assert_eq!((status, body.trim()), (200, "[]"));

    b.terminate();
    a.terminate();
}

/// With `--data-dir`, bans outlive the process, even a SIGKILL: A bans B and 10.9.0.0/16
/// through its admin API, is killed with SIGKILL right after (while it still writes B's
/// disconnection), and restarted on the same directory; its store opens, `GET /bans` lists B
/// with its reason, `GET /bans/ips` the prefix, and a dial to B is refused as banned. B is
/// then unbanned, A killed again, and the next start lists no ban.
#[cfg(unix)]
#[test]
fn bans_survive_a_sigkill_with_a_data_dir() {
    let dir = fresh_dir("node-store-kill");
    let data_dir = dir.join("data");
    let start_a = || {
        Node::start_with_logs(
            &[
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--admin",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().unwrap(),
            ],
            "peerlane=info",
        )
    };
    let a = start_a();
    let port = a.admin_port();
    let b = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &a.address]);
    a.expect(&format!("peer connected: {}", b.peer_id()));
    let request = format!(r#"{{"peer_id": "{}"}}"#, b.peer_id());
    let (status, body) = http(port, "POST", "/bans/ips", Some(r#"{"ip": "10.9.0.0/16"}"#));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(port, "POST", "/bans", Some(&request));
    assert_eq!(status, 200, "{body}");
    // SIGKILL: no shutdown, no flush but the commits already made.
    drop(a);

    let a = start_a();
    a.expect("peer store");
    let port = a.admin_port();
    let (status, body) = http(port, "GET", "/bans", None);
    assert_eq!(status, 200, "{body}");
    let banned: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(banned.len(), 1, "{body}");
    assert_eq!(banned[0]["peer_id"], b.peer_id());
    assert_eq!(banned[0]["reason"], "manual");
    let (status, body) = http(port, "GET", "/bans/ips", None);
    assert_eq!((status, body.trim()), (200, r#"["10.9.0.0/16"]"#));
    let dial = format!(
        r#"{{"peer_id": "{}", "address": "{}"}}"#,
        b.peer_id(),
        b.address
    );
    let (status, body) = http(port, "POST", "/peers", Some(&dial));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("banned"), "{body}");
    assert!(listed(port, &b.peer_id()).is_none());

    let (status, body) = http(port, "DELETE", &format!("/bans/{}", b.peer_id()), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(port, "DELETE", "/bans/ips/10.9.0.0/16", None);
    assert_eq!(status, 200, "{body}");
    drop(a);
    let a = start_a();
    let port = a.admin_port();
    let (status, body) = http(port, "GET", "/bans", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    let (status, body) = http(port, "GET", "/bans/ips", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    a.terminate();
    b.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--data-dir`, a restarted node redials the peers it had: A, seeded with B and C,
/// connects to both and is killed with SIGKILL; restarted on the same directory without any
/// seed (and B and C do not know A), it connects to both again from its store alone. Prints
/// how long the restart took to get both back.
#[cfg(unix)]
#[test]
fn a_restarted_node_redials_its_stored_peers() {
    let dir = fresh_dir("node-store-redial");
    let data_dir = dir.join("data");
    let b = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let c = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let args = vec![
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--admin",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    let seeded = [
        args.clone(),
        vec!["--seed", &b.address, "--seed", &c.address],
    ]
    .concat();
    let a = Node::start(&seeded);
    let port = a.admin_port();
    // Polled rather than read from the log: B and C connect in either order.
    poll("A with B and C", || {
        (listed(port, &b.peer_id()).is_some() && listed(port, &c.peer_id()).is_some()).then_some(())
    });
    drop(a);

    let started = Instant::now();
    let a = Node::start(&args);
    a.expect("peer store");
    let port = a.admin_port();
    poll("A back with B and C", || {
        (listed(port, &b.peer_id()).is_some() && listed(port, &c.peer_id()).is_some()).then_some(())
    });
    eprintln!(
        "restart to both stored peers connected: {} ms",
        started.elapsed().as_millis()
    );
    a.terminate();
    b.terminate();
    c.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// IP bans through A's admin API: `POST /bans/ips` with 127.0.0.1 makes A close B's sockets
/// (B dials from 127.0.0.1) at accept, counted as `refused{reason="banned_ip"}`; `GET
/// /bans/ips` lists it as a /32; bad input is a 400; `DELETE /bans/ips/127.0.0.1/32` lets B in,
/// and a second one is 404.
#[cfg(unix)]
#[test]
fn admin_api_bans_and_unbans_ips() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"]);
    let port = a.admin_port();
    let (status, body) = http(port, "GET", "/bans/ips", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    let (status, body) = http(port, "POST", "/bans/ips", Some(r#"{"ip": "127.0.0.1"}"#));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(port, "GET", "/bans/ips", None);
    assert_eq!((status, body.trim()), (200, r#"["127.0.0.1/32"]"#));
    for bad in [
        r#"{"ip": "127.0.0.1/40"}"#,
        r#"{"ip": "x"}"#,
        r#"{"peer_id": "x"}"#,
    ] {
        let (status, body) = http(port, "POST", "/bans/ips", Some(bad));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = http(port, "DELETE", "/bans/ips/zz", None);
    assert_eq!(status, 400, "{body}");

    let b = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &a.address]);
    poll("a banned_ip refusal", || {
        let (_, metrics) = http(port, "GET", "/metrics", None);
        counter(
            &metrics,
            r#"peerlane_connections_refused_total{network="public",reason="banned_ip"}"#,
        )
        .filter(|count| *count >= 1)
    });
    assert!(listed(port, &b.peer_id()).is_none());

    let (status, body) = http(port, "DELETE", "/bans/ips/127.0.0.1/32", None);
    assert_eq!(status, 200, "{body}");
    a.expect(&format!("peer connected: {}", b.peer_id()));
    let (status, body) = http(port, "DELETE", "/bans/ips/127.0.0.1/32", None);
    assert_eq!(status, 404, "{body}");

    b.terminate();
    a.terminate();
}

/// Milliseconds since the unix epoch, now.
fn now_unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// A config file in `dir` for a node that pings its peers every 100 ms.
fn fast_pings_config(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "[health_check]\ninterval_ms = 100\n").unwrap();
    path
}

/// Two nodes with admin APIs, B seeded with A and both pinging every 100 ms: each lists the
/// other in `GET /peers` with a connect time between the start of the test and now, bytes
/// received and sent on the wire (Noise and the handshake already make them non-zero), and,
/// once a ping has come back, its round-trip time (null before).
#[cfg(unix)]
#[test]
fn admin_api_peers_show_connect_time_rtt_and_bytes() {
    let dir = fresh_dir("node-stats");
    let config = fast_pings_config(&dir, "fast.toml");
    let started_ms = now_unix_ms();
    let admin = "127.0.0.1:0";
    let listen = "/ip4/127.0.0.1/tcp/0";
    let config = config.to_str().unwrap();
    let a = Node::start(&["--config", config, "--listen", listen, "--admin", admin]);
    let a_port = a.admin_port();
    let b = Node::start(&[
        "--config", config, "--listen", listen, "--admin", admin, "--seed", &a.address,
    ]);
    let b_port = b.admin_port();
    a.expect(&format!("peer connected: {}", b.peer_id()));
    b.expect(&format!("peer connected: {}", a.peer_id()));

    for (port, other, origin) in [
        (a_port, b.peer_id(), "inbound"),
        (b_port, a.peer_id(), "outbound"),
    ] {
        let entry = listed(port, &other).expect("the other node is listed");
        assert_eq!(entry["origin"], origin, "{entry}");
        assert!(entry["bytes_received"].as_u64().unwrap() > 0, "{entry}");
        assert!(entry["bytes_sent"].as_u64().unwrap() > 0, "{entry}");
        let since = entry["connected_since_unix_ms"].as_u64().unwrap();
        assert!((started_ms..=now_unix_ms()).contains(&since), "{entry}");
        let rfc3339 = entry["connected_since"].as_str().unwrap();
        assert!(rfc3339.len() == 24 && rfc3339.ends_with('Z'), "{entry}");
        assert!(entry.get("rtt_us").is_some(), "{entry}");
        // A ping every 100 ms: one comes back soon.
        let entry = poll("a ping's round-trip time", || {
            listed(port, &other).filter(|entry| entry["rtt_us"].is_u64())
        });
        assert!(
            entry["rtt_us"].as_u64().unwrap() < WAIT.as_micros() as u64,
            "{entry}"
        );
        // The pings themselves are traffic: the counters move.
        let sent = entry["bytes_sent"].as_u64().unwrap();
        poll("more bytes sent", || {
            listed(port, &other).filter(|later| later["bytes_sent"].as_u64().unwrap() > sent)
        });
    }
    b.terminate();
    a.terminate();
}

/// `consensus_committed_height` in the metrics at `port`, if reported.
fn committed_height(port: u16) -> Option<u64> {
    let (status, metrics) = http(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    metrics
        .lines()
        .find(|line| line.starts_with("consensus_committed_height "))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Three validators on the validator network, each from a key file and a config file with
/// `[apps]` mempool (with a load generator) + consensus + state sync, the validator set
/// listed by peer id (`consensus_validators`) and a discovery file: each listens on port 0,
/// and once all three run the test writes their addresses into the discovery file, from which
/// they dial and trust one another. All three commit blocks, as `consensus_committed_height`
/// in their metrics shows, and their mempools accepted the load.
#[cfg(unix)]
#[test]
fn validators_with_mempool_and_consensus_commit_blocks() {
    let dir = fresh_dir("node-consensus");
    // Keys first: the validator set is their peer ids (the public keys' hex).
    let keys: Vec<(PathBuf, String)> = (0..3)
        .map(|i| {
            let key = dir.join(format!("v{i}.key"));
            let out = peerlane()
                .args(["keygen", "--out", key.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let stdout = String::from_utf8(out.stdout).unwrap();
            let public = stdout
                .lines()
                .find_map(|line| line.strip_prefix("public key: "))
                .unwrap()
                .to_owned();
            (key, public)
        })
        .collect();
    let validators: Vec<String> = keys
        .iter()
        .map(|(_, public)| format!("\"{public}\""))
        .collect();
    let peers_file = dir.join("peers.toml");
    let config = dir.join("validator.toml");
    std::fs::write(
        &config,
        format!(
            "network_id = \"validator\"\n\
             [connectivity]\nconnectivity_check_interval_ms = 200\n\
             discovery_file = \"{}\"\ndiscovery_file_interval_ms = 100\n\
             [apps]\nmempool = true\nconsensus = true\nstate_sync = true\n\
             mempool_load_tps = 200\nconsensus_round_timeout_ms = 500\n\
             consensus_validators = [{}]\n",
            peers_file.display(),
            validators.join(", ")
        ),
    )
    .unwrap();
    // Each prints its validator count before its admin address.
    let (nodes, admin_ports): (Vec<Node>, Vec<u16>) = keys
        .iter()
        .map(|(key, public)| {
            let node = Node::start(&[
                "--config",
                config.to_str().unwrap(),
                "--key-file",
                key.to_str().unwrap(),
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--admin",
                "127.0.0.1:0",
            ]);
            assert_eq!(&node.peer_id(), public);
            node.expect("consensus with 3 validators");
            let admin_port = node.admin_port();
            (node, admin_port)
        })
        .unzip();
    // Everyone is running: the discovery file tells each where the others listen.
    let mut peers_text = String::new();
    for node in &nodes {
        peers_text.push_str(&format!(
            "[peers.{}]\nrole = \"validator\"\naddresses = [\"{}\"]\n\n",
            node.peer_id(),
            node.address
        ));
    }
    std::fs::write(&peers_file, peers_text).unwrap();
    for admin_port in &admin_ports {
        let height = poll_within(PROGRESS_WAIT, "three committed blocks", || {
            committed_height(*admin_port).filter(|height| *height >= 3)
        });
        assert!(height >= 3);
        let (_, metrics) = http(*admin_port, "GET", "/metrics", None);
        let accepted = metrics
            .lines()
            .find(|line| line.starts_with("mempool_transactions_accepted_total "))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap());
        assert!(accepted.is_some_and(|n| n > 0.0), "{metrics}");
        assert_eq!(peers(*admin_port).len(), 2);
    }
    for node in nodes {
        node.terminate();
    }
}

/// The value of the counter series `series` (name and labels, as the text format writes them)
/// in the metrics text, if there.
fn counter(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// A token file in a fresh directory named `name`; its token.
fn token_file(name: &str) -> (PathBuf, &'static str) {
    let dir = fresh_dir(&format!("node-{name}"));
    let token = "admin-token-0123456789abcdef";
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    // Readable by others, whatever the umask: the node warns about it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (path, token)
}

/// With a token (`--admin-token-file`, or `PEERLANE_ADMIN_TOKEN` on a non-loopback bind),
/// every request needs `Authorization: Bearer <token>`: none or a wrong one is a 401 (unknown
/// paths too, so nothing can be probed), counted by reason; the right one gets through. A
/// token file others may read is warned about.
#[cfg(unix)]
#[test]
fn admin_api_with_a_token_refuses_requests_without_it() {
    let (path, token) = token_file("token");
    let a = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        path.to_str().unwrap(),
    ]);
    // Mode 0644.
    a.expect("the admin token file is readable by other users");
    let port = a.admin_port();
    let bearer = format!("Authorization: Bearer {token}");
    let wrong = format!("Authorization: Bearer {token}x");
    let basic = format!("Authorization: Basic {token}");
    for (headers, path) in [
        (vec![HOST], "/peers"),
        (vec![HOST], "/no/such/path"),
        (vec![HOST, &wrong], "/peers"),
        (vec![HOST, &basic], "/metrics"),
    ] {
        let (status, body) = http_with(port, &headers, "GET", path, None);
        assert_eq!(status, 401, "{headers:?} {path}: {body}");
        assert_eq!(body.trim(), r#"{"error":"unauthorized"}"#);
    }
    let (status, body) = http_with(port, &[HOST, &bearer], "GET", "/peers", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    let (status, metrics) = http_with(port, &[HOST, &bearer], "GET", "/metrics", None);
    assert_eq!(status, 200);
    let rejected = |reason: &str| {
        let series = format!("peerlane_admin_requests_rejected_total{{reason=\"{reason}\"}}");
        counter(&metrics, &series)
    };
    assert_eq!(rejected("missing_token"), Some(2), "{metrics}");
    assert_eq!(rejected("wrong_token"), Some(2), "{metrics}");
    assert_eq!(rejected("bad_host"), Some(0), "{metrics}");
    a.terminate();

    // From the environment, on every interface: the Host is not checked there, the token is.
    let b = Node::start_with_env(
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "0.0.0.0:0"],
        "warn",
        &[(TOKEN_ENV, token)],
    );
    let port = b.admin_port();
    let foreign = "Host: admin.example:9101";
    let (status, _) = http_with(port, &[foreign], "GET", "/peers", None);
    assert_eq!(status, 401);
    let (status, body) = http_with(port, &[foreign, &bearer], "GET", "/peers", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    b.terminate();
}

/// On a loopback bind, a request whose Host is not a loopback name (a page whose name was
/// re-pointed at 127.0.0.1: DNS rebinding) is a 403, counted; `localhost` and `[::1]`, with or
/// without the port, get through.
#[cfg(unix)]
#[test]
fn admin_api_on_loopback_refuses_foreign_hosts() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"]);
    let port = a.admin_port();
    let with_port = format!("Host: rebind.example:{port}");
    for host in ["Host: rebind.example", &with_port, "Host: 127.0.0.1.nip.io"] {
        let (status, body) = http_with(port, &[host], "GET", "/metrics", None);
        assert_eq!(status, 403, "{host}: {body}");
        assert_eq!(body.trim(), r#"{"error":"host not allowed"}"#);
    }
    let (status, _) = http_with(port, &[], "GET", "/peers", None);
    assert_eq!(status, 403, "no Host");
    let localhost = format!("Host: localhost:{port}");
    for host in ["Host: localhost", &localhost, "Host: [::1]"] {
        let (status, body) = http_with(port, &[host], "GET", "/peers", None);
        assert_eq!((status, body.trim()), (200, "[]"), "{host}");
    }
    let (_, metrics) = http(port, "GET", "/metrics", None);
    let series = r#"peerlane_admin_requests_rejected_total{reason="bad_host"}"#;
    assert_eq!(counter(&metrics, series), Some(4), "{metrics}");
    a.terminate();
}

/// A connection that sends half a request head is closed once the header-read timeout
/// (500 ms here) has passed, and counted; the API keeps answering others.
#[cfg(unix)]
#[test]
fn admin_api_closes_a_connection_that_sends_its_head_slowly() {
    let a = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--admin",
        "127.0.0.1:0",
        "--admin-header-timeout-ms",
        "500",
    ]);
    let port = a.admin_port();
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // Blocks until the server closes the connection (EOF, or a reset), or fails after WAIT.
    let mut answer = Vec::new();
    match slow.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < WAIT, "{elapsed:?}");
    let (status, metrics) = http(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let series = r#"peerlane_admin_connections_closed_total{reason="header_timeout"}"#;
    assert_eq!(counter(&metrics, series), Some(1), "{metrics}");
    a.terminate();
}

/// With `--admin-max-connections 2`, two open connections take the places: a third is
/// answered 503 and closed at once, and counted; the two still serve requests, and once they
/// are closed a new connection is served again.
#[cfg(unix)]
#[test]
fn admin_api_refuses_connections_over_the_limit() {
    let a = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--admin",
        "127.0.0.1:0",
        "--admin-max-connections",
        "2",
    ]);
    let port = a.admin_port();
    let first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Accepted in order, after the two.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    match third.read_to_string(&mut answer) {
        Ok(_) => assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}"),
        // The close may overtake the answer.
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
    let (status, metrics) = http_on(first, &[HOST], "GET", "/metrics", None);
    assert_eq!(status, 200);
    let series = r#"peerlane_admin_connections_closed_total{reason="connection_limit"}"#;
    assert_eq!(counter(&metrics, series), Some(1), "{metrics}");
    let (status, body) = http_on(second, &[HOST], "GET", "/peers", None);
    assert_eq!((status, body.trim()), (200, "[]"));
    // Both closed: their places come back once the server has seen them go.
    poll("a place for a new connection", || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET /peers HTTP/1.1\r\n{HOST}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200 ").then_some(())
    });
    a.terminate();
}

/// `POST /peers` to a closed port answers 422 with the cause (whoever passes the admin API's
/// guard is the operator), logs it and counts it in `peerlane_admin_dial_failures_total`; a
/// peer id the address's key may not stand for, and an address without
/// `/noise-ik/<key>/handshake/0`, are 400s that say why.
#[cfg(unix)]
#[test]
fn admin_api_dial_failures_keep_their_cause() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"]);
    let port = a.admin_port();
    let key = "11".repeat(32);
    // Port 1 on loopback: nothing listens there.
    let request = format!(
        r#"{{"peer_id": "{key}", "address": "/ip4/127.0.0.1/tcp/1/noise-ik/{key}/handshake/0"}}"#
    );
    let (status, body) = http(port, "POST", "/peers", Some(&request));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("dial failed: set-up: transport failed"),
        "{body}"
    );
    assert!(body.contains("Connection refused"), "{body}");
    let line = a.expect("admin API: dial of");
    assert!(line.contains("transport failed"), "{line}");
    // A peer id the address's key does not derive (not a trusted peer either): refused before
    // any connection attempt, as a request error.
    let other = "22".repeat(32);
    let mismatched = format!(
        r#"{{"peer_id": "{other}", "address": "/ip4/127.0.0.1/tcp/1/noise-ik/{key}/handshake/0"}}"#
    );
    let (status, body) = http(port, "POST", "/peers", Some(&mismatched));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("may not use the noise-ik key"), "{body}");
    let bare = format!(r#"{{"peer_id": "{key}", "address": "/ip4/127.0.0.1/tcp/1"}}"#);
    let (status, body) = http(port, "POST", "/peers", Some(&bare));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("must end in /noise-ik/<key>/handshake/0"),
        "{body}"
    );
    let (_, metrics) = http(port, "GET", "/metrics", None);
    let series = r#"peerlane_admin_dial_failures_total{reason="transport"}"#;
    assert_eq!(counter(&metrics, series), Some(1), "{metrics}");
    let series = r#"peerlane_connection_setup_failures_total{network="public",origin="outbound",reason="dial_key_mismatch"}"#;
    assert_eq!(counter(&metrics, series), Some(1), "{metrics}");
    a.terminate();
}
