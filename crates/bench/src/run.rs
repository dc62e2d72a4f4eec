//! Running a workload: one verified run under the stall watchdog, and `--all`, which
//! interleaves every stack per workload per repetition and reports medians.

use std::process::ExitCode;

use anyhow::{Context, bail};

use std::time::Duration;

use crate::args::{
    ALL_STACKS, Runtime, Spec, Stack, Workload, stack_name, workload_label, workload_name,
};
use crate::check::{Progress, STALL};
use crate::report::{Measurement, Report, print_table, summary};
use crate::sys::idle_mem_in_child;
use crate::{flood, raw, stack};

/// Builds the runtime a run gets.
fn fresh_runtime(runtime: Runtime) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match runtime {
        Runtime::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().context("starting the runtime")
}

/// One run of `spec` on `stack` on a fresh runtime of `spec.runtime`, shut down afterwards:
/// nothing an earlier run left behind shares its threads.
///
/// The workload runs as a task on the runtime's threads rather than on the thread calling
/// `block_on`: that thread parks on a condition variable of its own, so every time it waits
/// for the other end, waking it takes a second thread (the worker that took the socket's
/// event) and, on a machine whose idle CPUs halt, a second CPU wake-up per round trip.
pub(crate) fn run_isolated(stack: Stack, spec: Spec) -> anyhow::Result<Measurement> {
    let runtime = fresh_runtime(spec.runtime)?;
    let result = runtime.block_on(async move {
        tokio::spawn(run_one(stack, spec))
            .await
            .context("the run's task panicked")?
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
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
            Stack::Peerlane if spec.workload == Workload::Flood => {
                flood::run(spec, &progress).await
            }
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

/// `--all`: for each repetition, for each workload, every stack, so drift hits all alike.
pub(crate) fn run_all(specs: &[Spec], reps: usize, json: bool) -> anyhow::Result<ExitCode> {
    let mut runs: Vec<Vec<Report>> = vec![Vec::new(); specs.len() * ALL_STACKS.len()];
    for rep in 0..reps {
        for (w, spec) in specs.iter().enumerate() {
            for (s, stack) in ALL_STACKS.iter().enumerate() {
                if !json {
                    eprintln!(
                        "rep {}/{reps}: {} on {}",
                        rep + 1,
                        workload_label(spec.workload, spec.runtime),
                        stack_name(*stack)
                    );
                }
                let m = run_isolated(*stack, *spec)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
            runtime: Runtime::MultiThread,
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
}
