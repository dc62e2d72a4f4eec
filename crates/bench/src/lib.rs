//! `peerlane bench`: throughput, latency, connection-rate and idle-memory figures for the
//! stack, with raw baselines measured in the same process and run.
//!
//! The `peerlane` binary parses `peerlane bench …` into [`BenchArgs`] and calls [`run`]; this
//! crate does the rest and prints the results. `idle-mem` reruns the current executable as
//! `<exe> bench idle-mem --in-process …`, so the binary calling [`run`] must route `bench` to it.
//!
//! Two endpoints in one process, on a tokio runtime with exactly two worker threads, over
//! loopback TCP. Three stacks run the same workloads:
//!
//! - `tcp`: tokio `TcpStream` (nodelay) with u32 length-prefixed frames, no encryption;
//! - `noise`: the same over snow's `Noise_IK_25519_AESGCM_SHA256` with the wire format's
//!   u16-length noise frames, no multiplexing;
//! - `peerlane`: two `peerlane::Network`s, through `NetworkClient` and `NetworkEvents`.
//!
//! Every run checks what arrived (counts, sizes, sequence numbers, RPC ids) and fails rather
//! than report a figure for a broken run. Only the workload is timed, set-up excluded (except
//! for `connect` and `flood`, whose workload is the set-up).
//!
//! `flood` runs on the peerlane stack only: the `connect` cycle undisturbed, then while
//! sockets replay a captured Noise message 1 at the listener (see the `flood` module).

mod flood;
mod raw;
mod stack;
mod sweep;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;

/// How long a run may go without progress before it is declared stalled (a lost message
/// would otherwise be waited for forever).
const STALL: Duration = Duration::from_secs(10);
/// Bytes in a sequence number or RPC id at the front of every payload.
const SEQ_BYTES: usize = 8;

/// `peerlane bench` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload to run (`sweep`: bulk throughput against message size, every stack).
    #[arg(value_enum)]
    workload: Option<Workload>,
    /// Which stack runs the workload.
    #[arg(long, value_enum, default_value_t = Stack::Peerlane)]
    stack: Stack,
    /// Every stack and workload, interleaved per repetition; peerlane's figures as ratios of
    /// the baselines'.
    #[arg(long, conflicts_with_all = ["workload", "stack"])]
    all: bool,
    /// Messages, RPCs or connections per run (default: the workload's).
    #[arg(long)]
    count: Option<u64>,
    /// Message size in bytes (default: the workload's; at least 8).
    #[arg(long)]
    size: Option<usize>,
    /// Untimed RPCs before `rpc-lat` measures.
    #[arg(long)]
    warmup: Option<u64>,
    /// Runs per figure; the median is reported (default 1, or 3 with `--all` and `sweep`).
    #[arg(long)]
    reps: Option<usize>,
    /// One JSON line per result instead of a table.
    #[arg(long)]
    json: bool,
    /// `sweep`: message sizes in bytes, comma-separated (default 1 KiB to 16 MiB).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// `sweep`: bytes moved per point (default 96 MiB; at least one message).
    #[arg(long)]
    bytes_per_point: Option<u64>,
    /// `flood`: sockets replaying a captured Noise message 1 in a loop.
    #[arg(long, default_value_t = 32)]
    flood_sockets: usize,
    /// `sweep`: write an SVG line chart here.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Run `idle-mem` in this process instead of a fresh child (what the child is told).
    #[arg(long, hide = true)]
    in_process: bool,
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

/// The workloads `--all` runs, in order.
const ALL_WORKLOADS: [Workload; 6] = [
    Workload::Bulk,
    Workload::Small,
    Workload::RpcLat,
    Workload::RpcTput,
    Workload::Connect,
    Workload::IdleMem,
];
/// The stacks, in the order `--all` interleaves them.
const ALL_STACKS: [Stack; 3] = [Stack::Tcp, Stack::Noise, Stack::Peerlane];

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
}

impl Spec {
    /// The workload's defaults, overridden by the flags.
    fn new(workload: Workload, args: &BenchArgs) -> anyhow::Result<Self> {
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

/// What a run measured, before it is turned into figures.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measurement {
    /// The timed part.
    pub(crate) elapsed: Duration,
    /// Messages, RPCs or connections verified.
    pub(crate) items: u64,
    /// Payload bytes verified (one-way workloads).
    pub(crate) bytes: u64,
    /// Per-RPC round trips (`rpc-lat`).
    pub(crate) latencies: Vec<Duration>,
    /// RSS growth over the idle connections (`idle-mem`).
    pub(crate) rss_delta: Option<i64>,
    /// The same cycles without the flood (`flood`).
    pub(crate) quiet_elapsed: Option<Duration>,
    /// Replayed messages 1 the listener answered or refused (`flood`).
    pub(crate) replays: Option<u64>,
    /// Legitimate dials that failed under the flood and were retried (`flood`).
    pub(crate) failed_dials: Option<u64>,
    /// The listener's X25519 operations per replayed message 1 (`flood`).
    pub(crate) dh_per_replay: Option<f64>,
}

/// One result line: the figures that apply to the workload.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    /// The stack.
    stack: Stack,
    /// The workload.
    workload: Workload,
    /// Runs the figures are medians of.
    reps: usize,
    /// Messages, RPCs or connections per run, all verified.
    count: u64,
    /// Bytes per message.
    size: usize,
    /// Payload bytes per run, verified (one-way workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    /// Payload megabytes (10^6 bytes) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    mb_per_s: Option<f64>,
    /// Messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    msgs_per_s: Option<f64>,
    /// Median RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_us: Option<f64>,
    /// 99th percentile RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_us: Option<f64>,
    /// Mean RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_us: Option<f64>,
    /// RPCs per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    rpcs_per_s: Option<f64>,
    /// Connections per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    conns_per_s: Option<f64>,
    /// Resident bytes per idle connection per side.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_conn: Option<f64>,
    /// Replaying sockets (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    flood_sockets: Option<usize>,
    /// Connections per second without the flood (`flood`; `conns_per_s` is under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    quiet_conns_per_s: Option<f64>,
    /// Replayed messages 1 per second the listener took (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    replays_per_s: Option<f64>,
    /// Legitimate dials that failed under the flood and were retried (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_dials: Option<f64>,
    /// The listener's X25519 operations per replayed message 1 (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    dh_per_replay: Option<f64>,
}

impl Report {
    /// The figures of one run.
    fn from_run(stack: Stack, spec: &Spec, m: &Measurement) -> Self {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let per_s = m.items as f64 / secs;
        let mut report = Self {
            stack,
            workload: spec.workload,
            reps: 1,
            count: spec.count,
            size: spec.size,
            bytes: None,
            mb_per_s: None,
            msgs_per_s: None,
            p50_us: None,
            p99_us: None,
            mean_us: None,
            rpcs_per_s: None,
            conns_per_s: None,
            bytes_per_conn: None,
            flood_sockets: None,
            quiet_conns_per_s: None,
            replays_per_s: None,
            failed_dials: None,
            dh_per_replay: None,
        };
        match spec.workload {
            Workload::Bulk | Workload::Small | Workload::Sweep => {
                report.bytes = Some(m.bytes);
                report.mb_per_s = Some(m.bytes as f64 / secs / 1e6);
                report.msgs_per_s = Some(per_s);
            }
            Workload::RpcLat => {
                let mut sorted = m.latencies.clone();
                sorted.sort_unstable();
                let us = |d: Duration| d.as_secs_f64() * 1e6;
                report.p50_us = Some(us(percentile(&sorted, 0.50)));
                report.p99_us = Some(us(percentile(&sorted, 0.99)));
                let total: Duration = sorted.iter().sum();
                report.mean_us = Some(us(total) / sorted.len().max(1) as f64);
                report.rpcs_per_s = Some(per_s);
            }
            Workload::RpcTput => report.rpcs_per_s = Some(per_s),
            Workload::Connect => report.conns_per_s = Some(per_s),
            Workload::Flood => {
                report.conns_per_s = Some(per_s);
                report.flood_sockets = Some(spec.flood_sockets);
                report.quiet_conns_per_s = m
                    .quiet_elapsed
                    .map(|quiet| m.items as f64 / quiet.as_secs_f64().max(1e-9));
                report.replays_per_s = m.replays.map(|n| n as f64 / secs);
                report.failed_dials = m.failed_dials.map(|n| n as f64);
                report.dh_per_replay = m.dh_per_replay;
            }
            Workload::IdleMem => {
                let delta = m.rss_delta.unwrap_or(0) as f64;
                report.bytes_per_conn = Some(delta / spec.count as f64 / 2.0);
            }
        }
        report
    }

    /// The median of each figure over `runs` (all of the same stack and workload).
    fn median(runs: &[Self]) -> Self {
        let mut out = runs[0].clone();
        out.reps = runs.len();
        let med = |get: fn(&Self) -> Option<f64>| {
            let mut values: Vec<f64> = runs.iter().filter_map(get).collect();
            (!values.is_empty()).then(|| median(&mut values))
        };
        out.mb_per_s = med(|r| r.mb_per_s);
        out.msgs_per_s = med(|r| r.msgs_per_s);
        out.p50_us = med(|r| r.p50_us);
        out.p99_us = med(|r| r.p99_us);
        out.mean_us = med(|r| r.mean_us);
        out.rpcs_per_s = med(|r| r.rpcs_per_s);
        out.conns_per_s = med(|r| r.conns_per_s);
        out.bytes_per_conn = med(|r| r.bytes_per_conn);
        out.quiet_conns_per_s = med(|r| r.quiet_conns_per_s);
        out.replays_per_s = med(|r| r.replays_per_s);
        out.failed_dials = med(|r| r.failed_dials);
        out.dh_per_replay = med(|r| r.dh_per_replay);
        out
    }

    /// The workload's headline figure, and whether higher is better.
    fn headline(&self) -> Option<(f64, bool)> {
        match self.workload {
            Workload::Bulk | Workload::Sweep => self.mb_per_s.map(|v| (v, true)),
            Workload::Small => self.msgs_per_s.map(|v| (v, true)),
            Workload::RpcLat => self.p50_us.map(|v| (v, false)),
            Workload::RpcTput => self.rpcs_per_s.map(|v| (v, true)),
            Workload::Connect | Workload::Flood => self.conns_per_s.map(|v| (v, true)),
            Workload::IdleMem => self.bytes_per_conn.map(|v| (v, false)),
        }
    }

    /// The figures as one table cell.
    fn figures(&self) -> String {
        let mut s = String::new();
        let mut put = |name: &str, v: Option<f64>, decimals: usize| {
            if let Some(v) = v {
                let _ = write!(
                    s,
                    "{}{name} {v:.decimals$}",
                    if s.is_empty() { "" } else { "  " }
                );
            }
        };
        put("MB/s", self.mb_per_s, 1);
        if self.workload != Workload::Bulk {
            put("msg/s", self.msgs_per_s, 0);
        }
        put("p50 µs", self.p50_us, 1);
        put("p99 µs", self.p99_us, 1);
        put("mean µs", self.mean_us, 1);
        put("RPC/s", self.rpcs_per_s, 0);
        put("conn/s", self.conns_per_s, 1);
        put("conn/s without flood", self.quiet_conns_per_s, 1);
        put("replays/s", self.replays_per_s, 0);
        put("DH/replay", self.dh_per_replay, 2);
        put("failed dials", self.failed_dials, 0);
        put("B/conn/side", self.bytes_per_conn, 0);
        if let Some(sockets) = self.flood_sockets {
            let _ = write!(s, "  ({sockets} replaying sockets)");
        }
        s
    }
}

/// Runs `peerlane bench` on its own runtime (two worker threads) and prints the results;
/// the exit code is success once every run was verified.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.workload.is_none() && !args.all {
        bail!(
            "name a workload (bulk, small, rpc-lat, rpc-tput, connect, idle-mem, sweep, flood) or pass --all"
        );
    }
    // The multi-stack runs (--all, sweep) default to medians of 3.
    let multi = args.all || args.workload == Some(Workload::Sweep);
    let reps = args.reps.unwrap_or(if multi { 3 } else { 1 });
    ensure!(reps > 0, "--reps must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if args.workload == Some(Workload::Sweep) {
        let options = sweep::Options::new(&args)?;
        return runtime.block_on(sweep::run(options, reps));
    }
    if args.all {
        let specs: Vec<Spec> = ALL_WORKLOADS
            .iter()
            .map(|w| Spec::new(*w, &args))
            .collect::<anyhow::Result<_>>()?;
        raise_fd_limit(specs.iter().find(|s| s.workload == Workload::IdleMem))?;
        runtime.block_on(run_all(&specs, reps, args.json))
    } else {
        let workload = args.workload.unwrap_or(Workload::Bulk);
        let spec = Spec::new(workload, &args)?;
        ensure!(
            workload != Workload::Flood || args.stack == Stack::Peerlane,
            "flood runs against the peerlane listener only (no --stack)"
        );
        raise_fd_limit(Some(&spec).filter(|s| s.workload == Workload::IdleMem))?;
        let mut runs = Vec::with_capacity(reps);
        for _ in 0..reps {
            let m = runtime.block_on(run_one(args.stack, spec))?;
            runs.push(Report::from_run(args.stack, &spec, &m));
        }
        let report = Report::median(&runs);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_table(&[report], false);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// One run of `spec` on `stack`, failing if it stalls.
pub(crate) async fn run_one(stack: Stack, spec: Spec) -> anyhow::Result<Measurement> {
    if spec.workload == Workload::IdleMem && spec.isolate {
        return idle_mem_in_child(stack, spec).await;
    }
    let progress = Progress::default();
    let work = async {
        match stack {
            Stack::Tcp | Stack::Noise => raw::run(stack, spec, &progress).await,
            Stack::Peerlane => stack::run(spec, &progress).await,
        }
    };
    tokio::select! {
        result = work => result.with_context(|| {
            format!("{} {} run failed", stack_name(stack), workload_name(spec.workload))
        }),
        () = progress.stalled() => bail!(
            "{} {} run stalled: no progress for {} s after {} verified items (a message lost?)",
            stack_name(stack),
            workload_name(spec.workload),
            STALL.as_secs(),
            progress.get()
        ),
    }
}

/// `idle-mem` in a fresh process of this binary, whose JSON line gives the figure.
async fn idle_mem_in_child(stack: Stack, spec: Spec) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe().context("locating the peerlane binary")?;
    let args = [
        "bench".to_owned(),
        "idle-mem".to_owned(),
        "--in-process".to_owned(),
        "--json".to_owned(),
        "--stack".to_owned(),
        stack_name(stack).to_owned(),
        "--count".to_owned(),
        spec.count.to_string(),
    ];
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(exe).args(args).output())
            .await?
            .context("running idle-mem in a child process")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "{} idle-mem run failed: {}",
        stack_name(stack),
        stderr.trim()
    );
    let line: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading the idle-mem child's JSON line")?;
    let per_conn = line["bytes_per_conn"]
        .as_f64()
        .context("no bytes_per_conn from the idle-mem child")?;
    Ok(Measurement {
        items: spec.count,
        rss_delta: Some((per_conn * spec.count as f64 * 2.0).round() as i64),
        ..Measurement::default()
    })
}

/// `--all`: for each repetition, for each workload, every stack, so drift hits all alike.
async fn run_all(specs: &[Spec], reps: usize, json: bool) -> anyhow::Result<ExitCode> {
    let mut runs: Vec<Vec<Report>> = vec![Vec::new(); specs.len() * ALL_STACKS.len()];
    for rep in 0..reps {
        for (w, spec) in specs.iter().enumerate() {
            for (s, stack) in ALL_STACKS.iter().enumerate() {
                if !json {
                    eprintln!(
                        "rep {}/{reps}: {} on {}",
                        rep + 1,
                        workload_name(spec.workload),
                        stack_name(*stack)
                    );
                }
                let m = run_one(*stack, *spec).await?;
                runs[w * ALL_STACKS.len() + s].push(Report::from_run(*stack, spec, &m));
            }
        }
    }
    let reports: Vec<Report> = runs.iter().map(|r| Report::median(r)).collect();
    if json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
        println!("{}", serde_json::to_string(&summary(&reports))?);
    } else {
        print_table(&reports, true);
    }
    Ok(ExitCode::SUCCESS)
}

/// peerlane's headline figure over each baseline's, per workload.
fn ratios(reports: &[Report], workload: Workload) -> (Option<f64>, Option<f64>) {
    let figure = |stack: Stack| {
        reports
            .iter()
            .find(|r| r.stack == stack && r.workload == workload)
            .and_then(Report::headline)
            .map(|(v, _)| v)
    };
    let ratio = |base: Option<f64>| match (figure(Stack::Peerlane), base) {
        (Some(p), Some(b)) if b != 0.0 => Some(p / b),
        _ => None,
    };
    (ratio(figure(Stack::Noise)), ratio(figure(Stack::Tcp)))
}

/// The `--all --json` summary line.
fn summary(reports: &[Report]) -> serde_json::Value {
    let mut ratios_json = serde_json::Map::new();
    for workload in ALL_WORKLOADS {
        let (noise, tcp) = ratios(reports, workload);
        let figure = match workload {
            Workload::Bulk => "mb_per_s",
            Workload::Small => "msgs_per_s",
            Workload::RpcLat => "p50_us",
            Workload::RpcTput => "rpcs_per_s",
            Workload::Connect | Workload::Flood => "conns_per_s",
            Workload::IdleMem | Workload::Sweep => "bytes_per_conn",
        };
        ratios_json.insert(
            workload_name(workload).to_owned(),
            serde_json::json!({ "figure": figure, "peerlane_over_noise": noise, "peerlane_over_tcp": tcp }),
        );
    }
    serde_json::json!({ "summary": true, "reps": reports.first().map_or(0, |r| r.reps), "ratios": ratios_json })
}

/// The readable output; with `ratios`, peerlane's rows carry its figure over each baseline's.
fn print_table(reports: &[Report], with_ratios: bool) {
    println!(
        "{:<9} {:<8} {:>9} {:>8}  figures",
        "workload", "stack", "count", "size"
    );
    for r in reports {
        let mut line = format!(
            "{:<9} {:<8} {:>9} {:>8}  {}",
            workload_name(r.workload),
            stack_name(r.stack),
            r.count,
            r.size,
            r.figures()
        );
        if with_ratios && r.stack == Stack::Peerlane {
            let (noise, tcp) = ratios(reports, r.workload);
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
            let _ = write!(line, "   (/noise {}, /tcp {})", show(noise), show(tcp));
        }
        println!("{line}");
    }
    if with_ratios {
        println!(
            "ratios are peerlane's headline figure over the baseline's (rpc-lat: p50, idle-mem: bytes; lower is better for those two)"
        );
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

/// The CLI name of a stack.
pub(crate) fn stack_name(stack: Stack) -> &'static str {
    match stack {
        Stack::Tcp => "tcp",
        Stack::Noise => "noise",
        Stack::Peerlane => "peerlane",
    }
}

/// Verified items so far, for the stall watchdog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Counts one verified item.
    pub(crate) fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Verified items so far.
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Completes once the count has not moved for [`STALL`].
    async fn stalled(&self) {
        let tick = Duration::from_millis(250);
        let (mut last, mut quiet) = (self.get(), Duration::ZERO);
        loop {
            tokio::time::sleep(tick).await;
            let now = self.get();
            if now == last {
                quiet += tick;
                if quiet >= STALL {
                    return;
                }
            } else {
                (last, quiet) = (now, Duration::ZERO);
            }
        }
    }
}

/// Checks a one-way stream of messages: each of the expected size, carrying the next sequence
/// number in its first 8 bytes (little-endian); at the end, the count and bytes.
#[derive(Debug)]
pub(crate) struct Tally {
    expected: u64,
    size: usize,
    received: u64,
    bytes: u64,
}

impl Tally {
    /// Expects `expected` messages of `size` bytes, numbered from 0.
    pub(crate) fn new(expected: u64, size: usize) -> Self {
        Self {
            expected,
            size,
            received: 0,
            bytes: 0,
        }
    }

    /// Checks the next message.
    pub(crate) fn record(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        ensure!(
            payload.len() == self.size,
            "message {} has {} bytes, expected {}",
            self.received,
            payload.len(),
            self.size
        );
        let seq = read_seq(payload);
        ensure!(
            seq == self.received,
            "message {} carries sequence number {seq} (lost or reordered messages)",
            self.received
        );
        self.received += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Whether every expected message has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.received >= self.expected
    }

    /// Messages so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Fails unless exactly the expected messages and bytes arrived; returns (messages, bytes).
    pub(crate) fn finish(&self) -> anyhow::Result<(u64, u64)> {
        ensure!(
            self.received == self.expected,
            "received {} messages, sent {}",
            self.received,
            self.expected
        );
        let bytes = self.expected * self.size as u64;
        ensure!(
            self.bytes == bytes,
            "received {} bytes, sent {bytes}",
            self.bytes
        );
        Ok((self.received, self.bytes))
    }
}

/// A payload of `size` bytes carrying `seq` up front, the rest a fixed pattern.
pub(crate) fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = vec![0x5a; size];
    write_seq(&mut bytes, seq);
    bytes
}

/// Writes `seq` into the first 8 bytes.
pub(crate) fn write_seq(payload: &mut [u8], seq: u64) {
    payload[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
}

/// The sequence number or RPC id in the first 8 bytes (0 if the payload is shorter).
pub(crate) fn read_seq(payload: &[u8]) -> u64 {
    payload
        .get(..SEQ_BYTES)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Checks an RPC response against its request id and size.
pub(crate) fn check_response(response: &[u8], id: u64, size: usize) -> anyhow::Result<()> {
    ensure!(
        response.len() == size,
        "response to RPC {id} has {} bytes, expected {size}",
        response.len()
    );
    let got = read_seq(response);
    ensure!(got == id, "response to RPC {id} carries id {got}");
    Ok(())
}

/// The process's resident set size in bytes (`VmRSS` in /proc/self/status).
pub(crate) fn rss_bytes() -> anyhow::Result<i64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Raises the open-file soft limit to the hard limit if `idle_mem` needs more than it allows
/// (three descriptors per connection at most, plus slack).
fn raise_fd_limit(idle_mem: Option<&Spec>) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Some(spec) = idle_mem else {
        return Ok(());
    };
    let needed = spec.count.saturating_mul(3).saturating_add(256);
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return Ok(());
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    ensure!(
        maximum >= needed,
        "idle-mem with {} connections needs {needed} open files, the hard limit is {maximum}: \
         raise it (ulimit -n) or pass a smaller --count",
        spec.count
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .with_context(|| {
        format!("raising the open-file limit to {needed} failed: try ulimit -n {needed}")
    })
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn percentile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// The median of `values` (the upper one for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_fails_on_a_missing_message() {
        let mut tally = Tally::new(3, 16);
        tally.record(&payload(0, 16)).unwrap();
        tally.record(&payload(1, 16)).unwrap();
        let err = tally.finish().unwrap_err();
        assert!(
            err.to_string().contains("received 2 messages, sent 3"),
            "{err}"
        );
    }

    #[test]
    fn a_tally_fails_on_a_skipped_or_resized_message() {
        let mut tally = Tally::new(3, 16);
        tally.record(&payload(0, 16)).unwrap();
        assert!(tally.record(&payload(2, 16)).is_err());
        assert!(tally.record(&payload(1, 15)).is_err());
        tally.record(&payload(1, 16)).unwrap();
        tally.record(&payload(2, 16)).unwrap();
        assert_eq!(tally.finish().unwrap(), (3, 48));
    }

    #[test]
    fn a_response_must_carry_its_request_id() {
        check_response(&payload(7, 64), 7, 64).unwrap();
        assert!(check_response(&payload(8, 64), 7, 64).is_err());
        assert!(check_response(&payload(7, 63), 7, 64).is_err());
    }

    /// The sender stops one message short: the run fails instead of reporting a figure.
    #[test]
    fn a_run_with_a_message_short_fails() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for stack in [Stack::Tcp, Stack::Noise] {
            let progress = Progress::default();
            let err = runtime
                .block_on(raw::one_way(stack, 50, 49, 128, &progress))
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("49 of 50"),
                "{}: {err:#}",
                stack_name(stack)
            );
            let ok = runtime
                .block_on(raw::one_way(stack, 50, 50, 128, &progress))
                .unwrap();
            assert_eq!((ok.items, ok.bytes), (50, 50 * 128));
        }
    }

    /// `flood` runs at a tiny size and reports the connection rate both with and without the
    /// replaying sockets, and how many replays the listener took.
    #[test]
    fn flood_reports_the_rate_with_and_without_the_flood() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let spec = Spec {
            workload: Workload::Flood,
            count: 5,
            size: 64,
            warmup: 0,
            concurrency: 1,
            isolate: false,
            flood_sockets: 4,
        };
        let m = runtime.block_on(run_one(Stack::Peerlane, spec)).unwrap();
        assert_eq!(m.items, 5);
        let report = Report::from_run(Stack::Peerlane, &spec, &m);
        assert!(report.conns_per_s.unwrap() > 0.0);
        assert!(report.quiet_conns_per_s.unwrap() > 0.0);
        assert!(report.replays_per_s.is_some() && report.failed_dials.is_some());
        // Replays cost the listener no Diffie-Hellman (they used to cost four each).
        if m.replays.unwrap() > 0 {
            assert_eq!(report.dh_per_replay, Some(0.0));
        }
        let figures = report.figures();
        assert!(figures.contains("conn/s without flood"), "{figures}");
        assert!(figures.contains("(4 replaying sockets)"), "{figures}");
        let err = runtime.block_on(run_one(Stack::Tcp, spec)).unwrap_err();
        assert!(
            format!("{err:#}").contains("peerlane listener only"),
            "{err:#}"
        );
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_micros(99));
    }
}
