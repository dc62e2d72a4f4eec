//! The child-process harness of the `peerlane node` end-to-end tests: a running node whose
//! stderr lines arrive on a channel (wait for a line, read its peer id and admin port, stop it
//! with SIGTERM), one HTTP/1.1 request to its admin API, polling a node until a condition
//! holds, and a fresh scratch directory per test.
//!
//! No test sleeps: each waits for the line or answer it expects, with a generous bound.

// Each test file uses its own subset of these helpers, and `pub` here means "for the test
// files", which is what `unreachable_pub` cannot see.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for any one thing before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The environment variable that may hold the admin API's token; the tests set it only where
/// they mean to.
pub const TOKEN_ENV: &str = "PEERLANE_ADMIN_TOKEN";

/// The `Host` header of a request to the admin API on loopback.
pub const HOST: &str = "Host: 127.0.0.1";

/// The binary under test.
pub fn peerlane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peerlane"))
}

/// A fresh, empty directory `<name>-<pid>` under the tests' scratch directory.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `peerlane node`, its stderr lines arriving on a channel.
pub struct Node {
    /// `None` once [`sigterm`](Self::sigterm) took it.
    child: Option<Child>,
    /// The address it printed on its `listening on` line.
    pub address: String,
    stderr: mpsc::Receiver<String>,
    _stdout: BufReader<ChildStdout>,
}

impl Node {
    /// Starts a node with `args` (and `RUST_LOG=warn`, the default an operator gets) and
    /// reads its `listening on` line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_logs(args, "warn")
    }

    /// [`start`](Self::start) with `RUST_LOG` set to `filter`.
    pub fn start_with_logs(args: &[&str], filter: &str) -> Self {
        Self::start_with_env(args, filter, &[])
    }

    /// [`start_with_logs`](Self::start_with_logs) with `env` set too.
    pub fn start_with_env(args: &[&str], filter: &str, env: &[(&str, &str)]) -> Self {
        let mut child = peerlane()
            .arg("node")
            .args(args)
            .env("RUST_LOG", filter)
            .env_remove(TOKEN_ENV)
            .envs(env.iter().copied())
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
            child: Some(child),
            address,
            stderr,
            _stdout: stdout,
        }
    }

    /// Waits for a stderr line containing every one of `texts`, and returns it. On a time-out
    /// the panic shows the last lines seen, to tell what the node did instead.
    pub fn expect_all(&self, texts: &[&str]) -> String {
        let mut seen = std::collections::VecDeque::new();
        // One bound for the whole wait: the node logs a status line every few seconds, so a
        // bound per line would never end.
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if texts.iter().all(|text| line.contains(text)) => return line,
                Ok(line) => {
                    if seen.len() == 30 {
                        seen.pop_front();
                    }
                    seen.push_back(line);
                }
                Err(err) => {
                    let seen: Vec<String> = seen.into();
                    panic!(
                        "no line with {texts:?}: {err}; last lines:\n{}",
                        seen.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for a stderr line containing `text`, and returns it.
    pub fn expect(&self, text: &str) -> String {
        self.expect_all(&[text])
    }

    /// The port of the admin API this node bound (started with `--admin 127.0.0.1:0`), from
    /// its `admin API on http://…` line.
    pub fn admin_port(&self) -> u16 {
        let prefix = "admin API on http://";
        let line = self.expect(prefix);
        let addr = &line[line.find(prefix).unwrap() + prefix.len()..];
        addr.trim()
            .parse::<std::net::SocketAddr>()
            .unwrap_or_else(|err| panic!("admin address {addr:?}: {err}"))
            .port()
    }

    /// The peer id in this node's address.
    pub fn peer_id(&self) -> String {
        let key = self.address.split("/noise-ik/").nth(1).unwrap();
        key.split('/').next().unwrap().to_owned()
    }

    /// The TCP port in this node's address.
    pub fn port(&self) -> u16 {
        let rest = self.address.split("/tcp/").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit: the `shutting down` line, then status 0.
    pub fn terminate(mut self) {
        let child = self.send_sigterm();
        self.expect("shutting down");
        let status = wait_for_exit(child);
        assert!(status.success(), "{status:?}");
    }

    /// Sends SIGTERM; returns how long the node took to exit, and its status.
    pub fn sigterm(mut self) -> (Duration, ExitStatus) {
        let start = Instant::now();
        let child = self.send_sigterm();
        let status = wait_for_exit(child);
        (start.elapsed(), status)
    }

    /// Takes the child and sends it SIGTERM.
    fn send_sigterm(&mut self) -> Child {
        let child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child
    }
}

/// A test that fails does not leave its nodes running; dropping a node kills it (SIGKILL).
impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (at most [`WAIT`]) for `child` to exit, and returns its status.
fn wait_for_exit(mut child: Child) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(WAIT).expect("node exits").unwrap()
}

/// Calls `check` until it returns `Some`, for up to [`WAIT`]; panics naming `what` after
/// that. Each call is an HTTP request to a node, so the loop waits on the node, not on a
/// timer.
pub fn poll<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_within(WAIT, what, check)
}

/// [`poll`] for up to `bound`.
pub fn poll_within<T>(bound: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port`; the status code and the body.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with(port, &[HOST], method, path, body)
}

/// [`http`] with these header lines (`Host` included) instead of the `Host` line alone.
pub fn http_with(
    port: u16,
    headers: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    http_on(stream, headers, method, path, body)
}

/// One request on `stream` (a connection to the admin API), which is closed after it.
pub fn http_on(
    mut stream: TcpStream,
    headers: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    write!(
        stream,
        "{head}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}
