//! What an operator sees, end to end with the real binary: each network-level mistake that
//! used to fail silently now logs a warning with its reason on the side that can act (an
//! unreachable seed, a chain id mismatch on both sides, a seed with the wrong key, two nodes
//! sharing a key, a banned peer's refusals with the ban's expiry), or exits with status 2 (a
//! config-file seed without a key, the node's own id among its seeds); the status line, the
//! quorum warning, `GET /status` and `GET /health`; JSON logs on every line; keys and
//! addresses (`key show`, `identity.key_file`, `0.0.0.0`); and a bounded shutdown with a dial
//! in flight.
//!
//! No test sleeps: each waits for the line it expects (read from the child's stderr, with a
//! generous bound), and intervals are configured short where a test waits for them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Node, TOKEN_ENV, fresh_dir, http, peerlane, poll};

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    fresh_dir(&format!("operator-{name}"))
}

/// A key file from `peerlane keygen`.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = peerlane()
        .args(["keygen", "--out", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    path
}

/// A file with `text`.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A `peerlane node` run that is expected to exit at once.
fn node_output(args: &[&str]) -> Output {
    peerlane()
        .arg("node")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap()
}

/// A key that is nobody's, for addresses that must carry one.
const SOME_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Connectivity settings that redial within a fraction of a second (a test waits for redials).
const FAST_REDIALS: &str = "connectivity = { connectivity_check_interval_ms = 100, \
                            backoff_base_ms = 100, max_backoff_ms = 200 }\n";

/// A seed that refuses connections is reported, with the cause, at the default log level.
#[test]
fn an_unreachable_seed_is_reported() {
    let seed = format!("/ip4/127.0.0.1/tcp/1/noise-ik/{SOME_KEY}/handshake/0");
    let node = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &seed]);
    let line = node.expect_all(&["unreachable", "Connection refused"]);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("/ip4/127.0.0.1/tcp/1"), "{line}");
    assert!(line.contains("; retry in "), "{line}");
    node.sigterm();
}

/// Nodes on different chains both say so: the accepting side names the remote address, the
/// dialing side the peer, each with both chain ids.
#[test]
fn a_chain_id_mismatch_is_reported_on_both_sides() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--chain-id", "4"]);
    let b = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--chain-id",
        "5",
        "--seed",
        &a.address,
    ]);
    let line = a.expect_all(&["inbound", "refused", "chain id mismatch (ours 4, theirs 5)"]);
    assert!(line.contains("WARN"), "{line}");
    let line = b.expect_all(&["chain id mismatch (ours 5, theirs 4)", &a.peer_id()]);
    assert!(line.contains("check chain_id on both nodes"), "{line}");
    b.sigterm();
    a.sigterm();
}

/// A seed whose address carries the wrong key: the dialing side says the peer closed the
/// connection after its first message, and what that usually means.
#[test]
fn a_seed_with_the_wrong_key_is_reported_by_the_dialer() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let wrong = a.address.replace(&a.peer_id(), SOME_KEY);
    let b = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--seed",
        &format!("{}@{wrong}", a.peer_id()),
    ]);
    let line = b.expect_all(&[
        "refused the connection",
        "closed the connection after our first message",
    ]);
    assert!(
        line.contains("is the noise-ik key in the address this peer's key"),
        "{line}"
    );
    b.sigterm();
    a.sigterm();
}

/// A `[seeds]` address in the config file without `/noise-ik/<key>/handshake/0` is refused
/// as `--seed` refuses it, with exit status 2; so is the node's own peer id among its seeds.
#[test]
fn bad_seeds_in_the_config_file_exit_2() {
    let dir = dir("bad-seeds");
    let config = file(
        &dir,
        "no-key.toml",
        &format!(
            "[seeds.{SOME_KEY}]\naddresses = [\"/ip4/127.0.0.1/tcp/6180\"]\nrole = \"validator\"\n"
        ),
    );
    let out = node_output(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("must end in /noise-ik/<key>/handshake/0"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("seeds.{SOME_KEY}")), "{stderr}");
    let out = node_output(&["--seed", "/ip4/127.0.0.1/tcp/6180"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must end in /noise-ik/<key>/handshake/0")
    );

    // The node's own key among its seeds (a copied config).
    let key = keygen(&dir, "own.key");
    let show = peerlane()
        .args([
            "key",
            "show",
            "--key-file",
            key.to_str().unwrap(),
            "--address",
            "/ip4/127.0.0.1/tcp/6180",
        ])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    let seed = show
        .lines()
        .find_map(|line| line.strip_prefix("seed address: "))
        .unwrap();
    let config = file(
        &dir,
        "own.toml",
        &format!(
            "network_id = \"validator\"\nidentity = {{ key_file = \"own.key\" }}\n\
             [apps]\nmempool = true\nconsensus = true\n[seeds.{}]\naddresses = [\"{seed}\"]\nrole = \"validator\"\n",
            show.lines()
                .find_map(|line| line.strip_prefix("peer id: "))
                .unwrap()
        ),
    );
    let out = node_output(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is this node's own peer id"), "{stderr}");
    assert!(!stderr.contains("listed twice"), "{stderr}");
}

/// Two nodes started with one key file both connect to a third: it sees the peer id's
/// connections replace each other and asks whether two nodes share the key.
#[test]
fn two_nodes_sharing_a_key_are_detected() {
    let dir = dir("shared-key");
    let key = keygen(&dir, "shared.key");
    let c = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let fast = file(&dir, "fast.toml", FAST_REDIALS);
    let args = |key: &Path| {
        vec![
            "--config".to_owned(),
            fast.to_str().unwrap().to_owned(),
            "--listen".to_owned(),
            "/ip4/127.0.0.1/tcp/0".to_owned(),
            "--key-file".to_owned(),
            key.to_str().unwrap().to_owned(),
            "--seed".to_owned(),
            c.address.clone(),
        ]
    };
    let a_args = args(&key);
    let a = Node::start(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let b = Node::start(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let line = c.expect_all(&["two nodes share key", &a.peer_id()]);
    assert!(line.contains("WARN"), "{line}");
    b.sigterm();
    a.sigterm();
    c.sigterm();
}

/// A banned peer reads why it was cut off (`refused us: banned …`, a warning on its side) and
/// does not redial on its own; dialed by hand, it is refused with a warning that names the
/// ban and when it ends, on the side that banned it.
#[test]
fn a_banned_peers_refusals_name_the_ban() {
    let dir = dir("banned");
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "localhost:0"]);
    let port = a.admin_port();
    let fast = file(&dir, "fast.toml", FAST_REDIALS);
    let b = Node::start(&[
        "--config",
        fast.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--seed",
        &a.address,
        "--admin",
        "localhost:0",
    ]);
    let b_port = b.admin_port();
    b.expect(&format!("peer connected: {}", a.peer_id()));
    let body = format!(r#"{{"peer_id": "{}"}}"#, b.peer_id());
    // Without `Content-Type: application/json`: 415, as docs/operations.md says.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /bans HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 415"), "{response}");
    let (status, response) = http(port, "POST", "/bans", Some(&body));
    assert_eq!(status, 200, "{response}");
    let line = b.expect_all(&["refused us: banned until it lifts the ban", &a.peer_id()]);
    assert!(line.contains("WARN"), "{line}");
    // The banned peer's connectivity manager waits for the ban to end; a dial by hand is
    // refused by the banning side's Noise, which says so. The notice can be read before the
    // connection is gone, when a dial would only be answered "already connected": wait.
    let a_id = a.peer_id();
    poll("B no longer lists A", || {
        let (status, peers) = http(b_port, "GET", "/peers", None);
        assert_eq!(status, 200, "{peers}");
        (!peers.contains(&a_id)).then_some(())
    });
    let dial = format!(
        r#"{{"peer_id": "{}", "address": "{}"}}"#,
        a.peer_id(),
        a.address
    );
    let (status, response) = http(b_port, "POST", "/peers", Some(&dial));
    assert_ne!(status, 200, "{response}");
    let line = a.expect_all(&["refused: banned until unbanned", &b.peer_id()]);
    assert!(line.contains("WARN"), "{line}");
    b.sigterm();
    a.sigterm();
}

/// `GET /routing` on a node at the end of a line of three shows the far end, which it is not
/// connected to, two hops away through the middle node; a bad page is refused.
#[test]
fn routing_shows_a_peer_two_hops_away() {
    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "localhost:0"]);
    let port = a.admin_port();
    let b = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &a.address]);
    let c = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--seed", &b.address]);
    let routing = poll("a reaches both b and c", || {
        let (status, body) = http(port, "GET", "/routing", None);
        assert_eq!(status, 200, "{body}");
        let routing: serde_json::Value = serde_json::from_str(&body).unwrap();
        (routing["reachable"] == 2).then_some(routing)
    });
    assert_eq!(routing["enabled"], true);
    assert_eq!(routing["neighbours"], serde_json::json!([b.peer_id()]));
    assert!(routing["edges"].as_u64().unwrap() >= 2, "{routing}");
    assert!(routing["last_recompute"].is_string(), "{routing}");
    let routes = routing["routes"].as_array().unwrap();
    let to_c = routes
        .iter()
        .find(|route| route["target"] == c.peer_id().as_str())
        .unwrap_or_else(|| panic!("no route to c: {routing}"));
    assert_eq!(to_c["distance"], 2);
    assert_eq!(to_c["next_hops"], serde_json::json!([b.peer_id()]));
    let (status, body) = http(port, "GET", "/routing?offset=1&limit=1", None);
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["routes"].as_array().unwrap().len(), 1, "{page}");
    let (status, body) = http(port, "GET", "/routing?limit=many", None);
    assert_eq!(status, 400, "{body}");
    c.terminate();
    b.terminate();
    a.terminate();
}

/// A validator whose set it cannot reach logs its status line every interval and says why it
/// does not commit; `GET /status` has the figures and `GET /health` answers 503 with the
/// reason. The consensus line states the real fault tolerance.
#[test]
fn status_line_quorum_warning_status_and_health() {
    let dir = dir("status");
    let key = keygen(&dir, "v.key");
    let others = ["22".repeat(32), "33".repeat(32)];
    let own = {
        let out = peerlane()
            .args(["key", "show", "--key-file", key.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("peer id: ").map(str::to_owned))
            .unwrap()
    };
    let config = file(
        &dir,
        "v.toml",
        &format!(
            "network_id = \"validator\"\nlisten_address = \"/ip4/127.0.0.1/tcp/0\"\n\
             identity = {{ key_file = \"v.key\" }}\n\
             [apps]\nmempool = true\nconsensus = true\n\
             consensus_validators = [\"{own}\", \"{}\", \"{}\"]\n\
             [node]\nstatus_interval_ms = 100\n[admin]\naddress = \"127.0.0.1:0\"\n",
            others[0], others[1]
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    assert_eq!(node.peer_id(), own, "identity.key_file is used");
    let line = node.expect("consensus with 3 validators");
    assert!(
        line.contains("need 3 of them connected (tolerates 0 down)"),
        "{line}"
    );
    let port = node.admin_port();
    let line = node.expect("status: height 0");
    assert!(line.contains("validators 1/3 connected"), "{line}");
    assert!(line.contains("INFO"), "{line}");
    let line = node.expect("not committing: 1 of 3 validators connected, need 3");
    assert!(line.contains("WARN"), "{line}");

    let (status, body) = http(port, "GET", "/status", None);
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["peer_id"], own.as_str());
    assert_eq!(value["network"], "validator");
    assert_eq!(value["chain_id"], 4);
    assert_eq!(value["validators"]["connected"], 1);
    assert_eq!(value["validators"]["expected"], 3);
    assert_eq!(value["height"], 0);
    assert_eq!(value["syncing"], false);
    assert!(value["uptime_seconds"].is_u64(), "{body}");
    assert!(value["version"].is_string(), "{body}");
    assert_eq!(value["listen_address"], node.address.as_str());
    let (status, body) = http(port, "GET", "/health", None);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not committing: 1 of 3 validators connected"),
        "{body}"
    );

    let (_, metrics) = http(port, "GET", "/metrics", None);
    for series in [
        "peerlane_build_info{version=\"",
        "peerlane_validators_connected 1",
        "peerlane_validators_expected 3",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    // The facade's documented label sets read 0 before anything happened.
    for (family, label) in [
        ("peerlane_connections_refused_total{", "reason=\"banned\""),
        (
            "peerlane_connection_setup_failures_total{",
            "reason=\"chain_mismatch\"",
        ),
        ("peerlane_health_pings_total{", "result=\"timeout\""),
        ("peerlane_connection_events_total{", "event=\"replaced\""),
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(family)
                && line.contains(label)
                && line.ends_with(" 0")),
            "{family}{label} at 0 in {metrics}"
        );
    }
    node.sigterm();
}

/// With `--log-format json` every stderr line is a JSON object, the node's own lines and a
/// fatal error included, and no field holds a Rust `Debug` value.
#[test]
fn json_logs_are_json_on_every_line() {
    let out = node_output(&["--log-format", "json", "--seed", "/ip4/127.0.0.1/tcp/1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let value: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(value["level"], "ERROR");
    assert!(
        value["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("error: --seed")
    );

    let a = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let mut b = peerlane()
        .args([
            "node",
            "--log-format",
            "json",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--seed",
            &a.address,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(b.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(
            !line.contains("Some(") && !line.contains("Ok(") && !line.contains("PeerId("),
            "{line}"
        );
        let message = value["fields"]["message"].as_str().unwrap().to_owned();
        if message.starts_with("peer connected") {
            assert_eq!(value["fields"]["peer"], a.peer_id().as_str(), "{line}");
            break;
        }
        seen.push(message);
    }
    assert!(
        seen.iter().any(|m| m.starts_with("applications:")),
        "{seen:?}"
    );
    let _ = b.kill();
    let _ = b.wait();
    a.sigterm();
}

/// A node listening on 0.0.0.0 prints an address another node can dial; with
/// `node.advertised_address` it prints that one, with its key.
#[test]
fn listening_on_all_interfaces_prints_a_dialable_address() {
    let node = Node::start(&["--listen", "/ip4/0.0.0.0/tcp/0"]);
    assert!(!node.address.contains("0.0.0.0"), "{}", node.address);
    assert!(node.address.ends_with("/handshake/0"), "{}", node.address);
    node.sigterm();
    let dir = dir("advertised");
    let config = file(
        &dir,
        "a.toml",
        "[node]\nadvertised_address = \"/dns/node1.example.com/tcp/6180\"\n",
    );
    let node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
    ]);
    assert!(
        node.address
            .starts_with("/dns/node1.example.com/tcp/6180/noise-ik/"),
        "{}",
        node.address
    );
    node.sigterm();
}

/// SIGTERM with an admin dial in flight to a peer that accepts and never answers: the node
/// still exits within a few seconds, cleanly.
#[test]
fn sigterm_cuts_an_admin_dial_short() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let node = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"]);
    let port = node.admin_port();
    let request = format!(
        r#"{{"peer_id": "{SOME_KEY}", "address": "/ip4/127.0.0.1/tcp/{silent_port}/noise-ik/{SOME_KEY}/handshake/0"}}"#
    );
    let dial = std::thread::spawn(move || http(port, "POST", "/peers", Some(&request)));
    // The dial is in flight once it connected.
    let (_socket, _) = silent.accept().unwrap();
    let (took, status) = node.sigterm();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let (status, body) = dial.join().unwrap();
    assert_eq!(status, 503, "{body}");
}

/// `key show` prints the peer id, the key and a seed address to paste; keygen refuses to
/// overwrite and says how; a key file readable by others is warned about.
#[cfg(unix)]
#[test]
fn key_show_keygen_force_hint_and_key_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir("keys");
    let key = keygen(&dir, "node.key");
    let again = peerlane()
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let out = peerlane()
        .args([
            "key",
            "show",
            "--key-file",
            key.to_str().unwrap(),
            "--address",
            "/ip4/10.0.0.1/tcp/6180",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let seed = text
        .lines()
        .find_map(|line| line.strip_prefix("seed address: "))
        .unwrap();
    assert!(
        seed.starts_with("/ip4/10.0.0.1/tcp/6180/noise-ik/"),
        "{text}"
    );
    assert!(seed.ends_with("/handshake/0"), "{text}");
    assert!(text.contains("[seeds."), "{text}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let node = Node::start(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    node.expect("is readable by others (mode 644)");
    node.sigterm();
    // A validator without a key file runs with a throwaway key, and is told so.
    let node = Node::start(&["--listen", "/ip4/127.0.0.1/tcp/0", "--network", "validator"]);
    node.expect("throwaway key");
    node.sigterm();
}
