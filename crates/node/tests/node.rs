//! `peerlane node` end to end: two processes connect over loopback TCP + Noise and shut down
//! cleanly on SIGTERM; bad input is a one-line error with exit status 2.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(20);

fn peerlane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerlane"))
}

/// A running `peerlane node`, its stderr lines arriving on a channel.
struct Node {
    child: Child,
    address: String,
    stderr: mpsc::Receiver<String>,
    _stdout: BufReader<ChildStdout>,
}

impl Node {
    /// Starts a node with `args` and reads its `listening on` line.
    fn start(args: &[&str]) -> Self {
        let mut child = peerlane()
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_owned();
        Self {
            child,
            address,
            stderr,
            _stdout: stdout,
        }
    }

    /// Waits for a stderr line containing `text`.
    fn expect(&self, text: &str) {
        loop {
            match self.stderr.recv_timeout(WAIT) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(err) => panic!("no line with {text:?}: {err}"),
            }
        }
    }

    /// The peer id this node printed.
    fn peer_id(&self) -> String {
        let key = self.address.split("/noise-ik/").nth(1).unwrap();
        key.split('/').next().unwrap().to_owned()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.expect("shutting down");
        let (tx, rx) = mpsc::channel();
        let mut child = self.child;
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx.recv_timeout(WAIT).expect("node exits").unwrap();
        assert!(status.success(), "{status:?}");
    }
}

/// Node B, given A's address as its seed, connects to A (each reports the other), and both
/// exit 0 on SIGTERM. A uses a key file from `peerlane keygen` and a TOML config.
#[cfg(unix)]
#[test]
fn two_nodes_connect_and_stop_on_sigterm() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("node-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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
    peerlane().arg("node").args(args).output().unwrap()
}

/// A config with a typo, a seed without a key and a bad key file each end with one line that
/// names the problem, and exit status 2.
#[test]
fn bad_node_input_exits_2_with_one_line() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("node-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "chain_id = 4\nmax_inbound_conections = 5\n").unwrap();
    let bad_key = dir.join("bad.key");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--config", typo.to_str().unwrap()],
            "max_inbound_conections",
        ),
        (vec!["--config", "/no/such/file.toml"], "cannot read config"),
        (vec!["--seed", "/ip4/127.0.0.1/tcp/1"], "noise-ik"),
        (vec!["--key-file", bad_key.to_str().unwrap()], "key file"),
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
