//! The `peerlane bench` command line: its arguments, the workloads and stacks it names, and
//! the [`Spec`] of one run built from them.

use anyhow::ensure;
use serde::Serialize;

use crate::check::SEQ_BYTES;

/// `peerlane bench` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload to run (`sweep`: bulk throughput against message size, every stack).
    #[arg(value_enum)]
    pub(crate) workload: Option<Workload>,
    /// Which stack runs the workload.
    #[arg(long, value_enum, default_value_t = Stack::Peerlane)]
    pub(crate) stack: Stack,
    /// Every stack and workload, interleaved per repetition; peerlane's figures as ratios of
    /// the baselines'.
    #[arg(long, conflicts_with_all = ["workload", "stack"])]
    pub(crate) all: bool,
    /// Messages, RPCs or connections per run (default: the workload's).
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Message size in bytes (default: the workload's; at least 8).
    #[arg(long)]
    pub(crate) size: Option<usize>,
    /// Untimed RPCs before `rpc-lat` measures.
    #[arg(long)]
    pub(crate) warmup: Option<u64>,
    /// The runtime each run gets (a fresh one per run): two worker threads, or one thread
    /// running both ends. `--all` runs `rpc-lat` on both and everything else on two workers.
    #[arg(long, value_enum, default_value_t = Runtime::MultiThread)]
    pub(crate) runtime: Runtime,
    /// Runs per figure; the median is reported (default 1, or 3 with `--all` and `sweep`).
    #[arg(long)]
    pub(crate) reps: Option<usize>,
    /// One JSON line per result instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// `sweep`: message sizes in bytes, comma-separated (default 1 KiB to 16 MiB).
    #[arg(long, value_delimiter = ',')]
    pub(crate) sizes: Option<Vec<usize>>,
    /// `sweep`: bytes moved per point (default 96 MiB; at least one message).
    #[arg(long)]
    pub(crate) bytes_per_point: Option<u64>,
    /// `flood`: sockets replaying a captured Noise message 1 in a loop.
    #[arg(long, default_value_t = 32)]
    pub(crate) flood_sockets: usize,
    /// `sweep`: write an SVG line chart here.
    #[arg(long)]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Run `idle-mem` in this process instead of a fresh child (what the child is told).
    #[arg(long, hide = true)]
    pub(crate) in_process: bool,
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// One-way DirectSend of 1 MiB messages.
    Bulk,
    /// One-way DirectSend of 128-byte messages.
    Small,
    /// Sequential RPCs, 64-byte request and response.
    RpcLat,
    /// 64 concurrent outstanding RPCs, 128-byte request and response.
    RpcTput,
    /// Fresh connection, handshakes, one 64-byte RPC, close; sequential.
    Connect,
    /// Idle connections to one node: memory per connection per side.
    IdleMem,
    /// Bulk throughput against message size for every stack.
    Sweep,
    /// `connect`'s cycle undisturbed, then while sockets replay a captured Noise message 1
    /// (peerlane only).
    Flood,
}

/// The stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Stack {
    /// Plain TCP with length-delimited frames.
    Tcp,
    /// TCP + Noise IK frames, no multiplexing.
    Noise,
    /// Two peerlane networks.
    Peerlane,
}

/// The tokio runtime a run gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Runtime {
    /// A multi-thread runtime with exactly two worker threads: the workload's future runs on
    /// the thread that calls `block_on`, everything it spawns on the workers.
    MultiThread,
    /// A current-thread runtime: both ends and every task on the one thread, so a round trip
    /// never waits for another thread (or CPU) to wake up.
    CurrentThread,
}

/// The (workload, runtime) pairs `--all` runs, in order.
pub(crate) const ALL_WORKLOADS: [(Workload, Runtime); 7] = [
    (Workload::Bulk, Runtime::MultiThread),
    (Workload::Small, Runtime::MultiThread),
    (Workload::RpcLat, Runtime::MultiThread),
    (Workload::RpcLat, Runtime::CurrentThread),
    (Workload::RpcTput, Runtime::MultiThread),
    (Workload::Connect, Runtime::MultiThread),
    (Workload::IdleMem, Runtime::MultiThread),
];
/// The stacks, in the order `--all` interleaves them.
pub(crate) const ALL_STACKS: [Stack; 3] = [Stack::Tcp, Stack::Noise, Stack::Peerlane];

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// The workload.
    pub(crate) workload: Workload,
    /// Messages, RPCs or connections.
    pub(crate) count: u64,
    /// Bytes per message, request and response.
    pub(crate) size: usize,
    /// Untimed RPCs first (`rpc-lat`).
    pub(crate) warmup: u64,
    /// Outstanding RPCs (`rpc-tput`).
    pub(crate) concurrency: u64,
    /// Run `idle-mem` in a fresh child process: memory freed by earlier runs would otherwise
    /// be reused by the connections without the RSS growing.
    pub(crate) isolate: bool,
    /// Replaying sockets (`flood`).
    pub(crate) flood_sockets: usize,
    /// The runtime the run gets.
    pub(crate) runtime: Runtime,
}

impl Spec {
    /// The workload's defaults, overridden by the flags.
    pub(crate) fn new(
        workload: Workload,
        runtime: Runtime,
        args: &BenchArgs,
    ) -> anyhow::Result<Self> {
        let (count, size, warmup) = match workload {
            Workload::Bulk => (512, 1 << 20, 0),
            Workload::Small => (1_000_000, 128, 0),
            Workload::RpcLat => (20_000, 64, 1_000),
            Workload::RpcTput => (200_000, 128, 0),
            Workload::Connect => (500, 64, 0),
            Workload::IdleMem => (1_000, 64, 0),
            Workload::Sweep => (0, 1 << 20, 0),
            Workload::Flood => (200, 64, 0),
        };
        let spec = Self {
            workload,
            count: args.count.unwrap_or(count),
            size: args.size.unwrap_or(size),
            warmup: args.warmup.unwrap_or(warmup),
            concurrency: 64,
            isolate: !args.in_process,
            flood_sockets: args.flood_sockets,
            runtime,
        };
        ensure!(spec.count > 0, "--count must be at least 1");
        ensure!(
            spec.size >= SEQ_BYTES,
            "--size must be at least {SEQ_BYTES} bytes (a sequence number leads every payload)"
        );
        ensure!(
            spec.size <= 32 << 20,
            "--size must be at most 32 MiB (the stack's message limit leaves room for framing)"
        );
        Ok(spec)
    }
}

/// The CLI name of a workload.
pub(crate) fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Bulk => "bulk",
        Workload::Small => "small",
        Workload::RpcLat => "rpc-lat",
        Workload::RpcTput => "rpc-tput",
        Workload::Connect => "connect",
        Workload::IdleMem => "idle-mem",
        Workload::Sweep => "sweep",
        Workload::Flood => "flood",
    }
}

/// A workload's label in tables: its name, marked when it ran on one thread.
pub(crate) fn workload_label(workload: Workload, runtime: Runtime) -> String {
    match runtime {
        Runtime::MultiThread => workload_name(workload).to_owned(),
        Runtime::CurrentThread => format!("{}/1t", workload_name(workload)),
    }
}

/// The CLI name of a stack.
pub(crate) fn stack_name(stack: Stack) -> &'static str {
    match stack {
        Stack::Tcp => "tcp",
        Stack::Noise => "noise",
        Stack::Peerlane => "peerlane",
    }
}
