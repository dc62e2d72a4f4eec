//! `peerlane bench`: throughput, latency, connection-rate and idle-memory figures for the
//! stack, with raw baselines measured in the same process and run.
//!
//! The `peerlane` binary parses `peerlane bench …` into [`BenchArgs`] and calls [`run`]; this
//! crate does the rest and prints the results. `idle-mem` reruns the current executable as
//! `<exe> bench idle-mem --in-process …`, so the binary calling [`run`] must route `bench` to it.
//!
//! Two endpoints in one process, on a fresh tokio runtime per run (two worker threads, or one
//! thread for `--runtime current-thread`), over loopback TCP. Three stacks run the same workloads:
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
//!
//! Modules: `args` (the command line, workloads, stacks, runtimes, a run's spec), `run` (one
//! run on a fresh runtime under the stall watchdog, `--all`), `stack` (the workloads on
//! peerlane), `raw` (the `tcp` and `noise` baselines; `raw::connection` is the connection
//! they run over), `flood` (the replay flood), `sweep` (size sweep and plot), `check`
//! (payload sequence numbers, the tally, RPC ids, progress), `report` (figures, medians,
//! ratios, the fastest raw round trip, table and JSON), `sys` (RSS, the open-file limit, the
//! idle-mem child process).

mod args;
mod check;
mod flood;
mod raw;
mod report;
mod run;
mod stack;
mod sweep;
mod sys;

use std::process::ExitCode;

use anyhow::{bail, ensure};

pub use crate::args::BenchArgs;
use crate::args::{ALL_WORKLOADS, Spec, Stack, Workload};
use crate::report::{Report, print_table};
use crate::run::{run_all, run_isolated};
use crate::sys::raise_fd_limit;

/// Runs `peerlane bench` and prints the results; the exit code is success once every run was
/// verified. Each run gets a fresh runtime (`--runtime`: two workers or one thread), so no
/// task left by an earlier run shares its threads.
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
    if args.workload == Some(Workload::Sweep) {
        let options = sweep::Options::new(&args)?;
        return sweep::run(options, reps);
    }
    if args.all {
        let specs: Vec<Spec> = ALL_WORKLOADS
            .iter()
            .map(|(w, r)| Spec::new(*w, *r, &args))
            .collect::<anyhow::Result<_>>()?;
        raise_fd_limit(specs.iter().find(|s| s.workload == Workload::IdleMem))?;
        run_all(&specs, reps, args.json)
    } else {
        let workload = args.workload.unwrap_or(Workload::Bulk);
        let spec = Spec::new(workload, args.runtime, &args)?;
        ensure!(
            workload != Workload::Flood || args.stack == Stack::Peerlane,
            "flood runs against the peerlane listener only (no --stack)"
        );
        raise_fd_limit(Some(&spec).filter(|s| s.workload == Workload::IdleMem))?;
        let mut runs = Vec::with_capacity(reps);
        for _ in 0..reps {
            let m = run_isolated(args.stack, spec)?;
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
