//! `peerlane`: the node binary.
//!
//! - `peerlane demo` starts a local network in one process (validators running mempool,
//!   consensus and state sync, and a full node that joins late and catches up), prints
//!   progress every second and a summary at the end (`demo`; the summary in `demo::summary`);
//!   each of its networks keeps a peer store (`node_store`) in a temporary directory, or in
//!   `--data-dir`.
//! - `peerlane node --data-dir DIR` keeps its peers and bans in `DIR/peerlane.redb`
//!   (`node_store`): bans come back at start, and the stored peers are the connectivity
//!   manager's `stored` discovery source.
//! - `peerlane keygen --out FILE` writes a fresh x25519 identity.
//! - `peerlane node --config FILE` runs one network of a node (state sync, and mempool and
//!   consensus when its `[apps]` table enables them) until SIGINT or SIGTERM, printing
//!   `listening on <address>` first (`node`; the config file and flags are `node_config`'s,
//!   and `--help` ends with every config file key and its default, from the `Default`
//!   impls); with `--admin HOST:PORT` it also
//!   serves the admin API (metrics, peers, dial, disconnect, bans) over HTTP: on loopback to
//!   loopback `Host` names only, elsewhere only with a bearer token, with a header-read
//!   timeout and a connection limit (`admin` and its modules).
//! - `peerlane bench <workload>` measures throughput, latency, connection rate or idle memory
//!   of two nodes in one process, next to raw TCP and Noise baselines (`--all` runs them all,
//!   `sweep` plots bulk throughput against message size); the `peerlane-bench` crate does the
//!   work, see docs/performance.md.
//! - `peerlane sim SCENARIO --seed N` runs validators and full nodes with the applications on
//!   a deterministic simulated network through a scenario of partitions, crashes and joins,
//!   printing a timeline, a summary and the trace hash (`sim`; docs/simulator.md).
//!
//! - `peerlane key show --key-file FILE` prints a key file's peer id, public key and the
//!   address line another node's `--seed` or `[seeds]` takes (`keygen`).
//!
//! `--log-format text|json` (any subcommand; default `text`) picks how log lines on stderr are
//! written: every line has a timestamp, text has ANSI colours only on a terminal, and `json`
//! writes one JSON object per line, the fatal error included. The node's own lines (target
//! `peerlane_node`: status, peers, warnings for the operator) are on at `info` whatever
//! `RUST_LOG` says, unless it names `peerlane_node` itself.
//!
//! With `PEERLANE_HEAP_STATS=1` the global allocator counts the live heap by size class
//! (`heap_stats`) and `peerlane demo` prints it with its progress lines.
//!
//! Bad input ends with a one-line error and exit status 2; a demo that did not commit blocks
//! or whose full node did not catch up exits with 1.

/// A log line of the node itself (target `peerlane_node`), at `info`.
macro_rules! node_info {
    ($($arg:tt)*) => { tracing::info!(target: "peerlane_node", $($arg)*) };
}

/// A log line of the node itself (target `peerlane_node`), at `warn`.
macro_rules! node_warn {
    ($($arg:tt)*) => { tracing::warn!(target: "peerlane_node", $($arg)*) };
}

/// A log line of the node itself (target `peerlane_node`), at `error`.
macro_rules! node_error {
    ($($arg:tt)*) => { tracing::error!(target: "peerlane_node", $($arg)*) };
}

mod admin;
mod advertise;
mod apps;
mod block_archive;
mod demo;
#[allow(unsafe_code)]
mod heap_stats;
mod keygen;
mod node;
mod node_config;
mod node_metrics;
mod node_store;
mod shared_key;
mod sim;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc malloc. A message's buffers are usually allocated on one tokio
/// worker and freed on another (encoded by the sender, freed after the writer's flush; read
/// by the reader, freed by the application): glibc then takes the owning arena's lock on
/// each such free, and small messages contend on it. mimalloc keeps per-thread heaps and
/// hands frees from other threads back without a lock. It is C built by the `cc` crate with
/// the system compiler. Built without transparent-huge-page advice (`no_thp`): with it, the
/// 2 MiB pages idle connections touch are resident and zeroed as a whole, which inflates
/// memory per connection (`bench idle-mem`). Version 2 of mimalloc (the workspace's `v2`
/// feature): version 3 puts objects of 84 to 512 KiB in 4 MiB pages, each resident while
/// any object in it lives, and the demo's blocks and the archive's page buffers are that
/// size. The bench's baselines run in the same binary, so its comparisons stay like for
/// like.
#[global_allocator]
static GLOBAL: heap_stats::Counting<mimalloc::MiMalloc> = heap_stats::Counting(mimalloc::MiMalloc);

/// The peerlane node.
#[derive(Debug, Parser)]
#[command(name = "peerlane", version, about)]
struct Cli {
    /// How log lines on stderr are formatted.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local multi-node network on loopback and print a summary.
    Demo(demo::DemoArgs),
    /// Write a fresh x25519 identity (hex private key) to a file.
    Keygen(keygen::KeygenArgs),
    /// Inspect a key file.
    #[command(subcommand)]
    Key(keygen::KeyCommand),
    /// Run one network of a node until SIGINT or SIGTERM.
    Node(node_config::NodeArgs),
    /// Benchmark two nodes in one process against raw TCP and Noise baselines.
    Bench(bench::BenchArgs),
    /// Run validators and full nodes on a simulated network through a scenario file.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    heap_stats::init_from_env();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Keygen(args) => keygen::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Key(command) => keygen::run_key(&command).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Sim(args) => sim::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, whatever the error's own text holds.
            let message = format!("{err:#}");
            let message: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            node_error!("error: {}", message.join(" "));
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr with timestamps, filtered by `RUST_LOG` (default `warn`) plus the node's
/// own lines at `info` (unless `RUST_LOG` names `peerlane_node`), as text (coloured only on a
/// terminal) or JSON lines.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&env)
        .ok()
        .filter(|_| !env.trim().is_empty())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    if !env.contains("peerlane_node")
        && let Ok(directive) = "peerlane_node=info".parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
