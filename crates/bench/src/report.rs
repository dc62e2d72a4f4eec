//! What a run measured ([`Measurement`]), the figures made of it ([`Report`]), medians over
//! repetitions, peerlane's ratios over the baselines, and the table and JSON output.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::args::{ALL_WORKLOADS, Runtime, Spec, Stack, Workload, stack_name, workload_label};

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
    pub(crate) stack: Stack,
    /// The workload.
    pub(crate) workload: Workload,
    /// The runtime it ran on.
    pub(crate) runtime: Runtime,
    /// Runs the figures are medians of.
    pub(crate) reps: usize,
    /// Messages, RPCs or connections per run, all verified.
    pub(crate) count: u64,
    /// Bytes per message.
    pub(crate) size: usize,
    /// Payload bytes per run, verified (one-way workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes: Option<u64>,
    /// Payload megabytes (10^6 bytes) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mb_per_s: Option<f64>,
    /// Messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) msgs_per_s: Option<f64>,
    /// Median RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p50_us: Option<f64>,
    /// 99th percentile RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p99_us: Option<f64>,
    /// Mean RPC round trip, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mean_us: Option<f64>,
    /// RPCs per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rpcs_per_s: Option<f64>,
    /// Connections per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conns_per_s: Option<f64>,
    /// Resident bytes per idle connection per side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_per_conn: Option<f64>,
    /// Replaying sockets (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flood_sockets: Option<usize>,
    /// Connections per second without the flood (`flood`; `conns_per_s` is under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) quiet_conns_per_s: Option<f64>,
    /// Replayed messages 1 per second the listener took (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replays_per_s: Option<f64>,
    /// Legitimate dials that failed under the flood and were retried (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failed_dials: Option<f64>,
    /// The listener's X25519 operations per replayed message 1 (`flood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dh_per_replay: Option<f64>,
}

impl Report {
    /// The figures of one run.
    pub(crate) fn from_run(stack: Stack, spec: &Spec, m: &Measurement) -> Self {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let per_s = m.items as f64 / secs;
        let mut report = Self {
            stack,
            workload: spec.workload,
            runtime: spec.runtime,
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
    pub(crate) fn median(runs: &[Self]) -> Self {
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
    pub(crate) fn headline(&self) -> Option<(f64, bool)> {
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
    pub(crate) fn figures(&self) -> String {
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

/// peerlane's headline figure over each baseline's, per workload and runtime.
pub(crate) fn ratios(
    reports: &[Report],
    workload: Workload,
    runtime: Runtime,
) -> (Option<f64>, Option<f64>) {
    let figure = |stack: Stack| {
        reports
            .iter()
            .find(|r| r.stack == stack && r.workload == workload && r.runtime == runtime)
            .and_then(Report::headline)
            .map(|(v, _)| v)
    };
    let ratio = |base: Option<f64>| match (figure(Stack::Peerlane), base) {
        (Some(p), Some(b)) if b != 0.0 => Some(p / b),
        _ => None,
    };
    (ratio(figure(Stack::Noise)), ratio(figure(Stack::Tcp)))
}

/// The fastest raw round trip of the run: the baseline `rpc-lat` row (either stack, either
/// runtime) with the lowest p50, as (p50 µs, p99 µs, its label).
pub(crate) fn fastest_raw_round_trip(reports: &[Report]) -> Option<(f64, f64, String)> {
    reports
        .iter()
        .filter(|r| r.workload == Workload::RpcLat && r.stack != Stack::Peerlane)
        .filter_map(|r| {
            let label = format!(
                "{} on {}",
                stack_name(r.stack),
                workload_label(r.workload, r.runtime)
            );
            Some((r.p50_us?, r.p99_us?, label))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// peerlane's `rpc-lat` p50 and p99 on each runtime over the fastest raw round trip's.
fn over_fastest_raw(reports: &[Report]) -> Vec<(Runtime, f64, f64)> {
    let Some((p50, p99, _)) = fastest_raw_round_trip(reports) else {
        return Vec::new();
    };
    reports
        .iter()
        .filter(|r| r.workload == Workload::RpcLat && r.stack == Stack::Peerlane)
        .filter_map(|r| Some((r.runtime, r.p50_us? / p50, r.p99_us? / p99)))
        .collect()
}

/// The `--all --json` summary line.
pub(crate) fn summary(reports: &[Report]) -> serde_json::Value {
    let mut ratios_json = serde_json::Map::new();
    for (workload, runtime) in ALL_WORKLOADS {
        let (noise, tcp) = ratios(reports, workload, runtime);
        let figure = match workload {
            Workload::Bulk => "mb_per_s",
            Workload::Small => "msgs_per_s",
            Workload::RpcLat => "p50_us",
            Workload::RpcTput => "rpcs_per_s",
            Workload::Connect | Workload::Flood => "conns_per_s",
            Workload::IdleMem | Workload::Sweep => "bytes_per_conn",
        };
        ratios_json.insert(
            workload_label(workload, runtime),
            serde_json::json!({ "figure": figure, "peerlane_over_noise": noise, "peerlane_over_tcp": tcp }),
        );
    }
    let fastest = fastest_raw_round_trip(reports).map(|(p50, p99, label)| {
        let peerlane: serde_json::Map<String, serde_json::Value> = over_fastest_raw(reports)
            .into_iter()
            .map(|(runtime, p50, p99)| {
                (
                    workload_label(Workload::RpcLat, runtime),
                    serde_json::json!({ "p50_over": p50, "p99_over": p99 }),
                )
            })
            .collect();
        serde_json::json!({ "baseline": label, "p50_us": p50, "p99_us": p99, "peerlane": peerlane })
    });
    serde_json::json!({
        "summary": true,
        "reps": reports.first().map_or(0, |r| r.reps),
        "ratios": ratios_json,
        "fastest_raw_round_trip": fastest,
    })
}

/// The readable output; with `ratios`, peerlane's rows carry its figure over each baseline's.
pub(crate) fn print_table(reports: &[Report], with_ratios: bool) {
    println!(
        "{:<10} {:<8} {:>9} {:>8}  figures",
        "workload", "stack", "count", "size"
    );
    for r in reports {
        let mut line = format!(
            "{:<10} {:<8} {:>9} {:>8}  {}",
            workload_label(r.workload, r.runtime),
            stack_name(r.stack),
            r.count,
            r.size,
            r.figures()
        );
        if with_ratios && r.stack == Stack::Peerlane {
            let (noise, tcp) = ratios(reports, r.workload, r.runtime);
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
            let _ = write!(line, "   (/noise {}, /tcp {})", show(noise), show(tcp));
        }
        println!("{line}");
    }
    if with_ratios {
        println!(
            "ratios are peerlane's headline figure over the baseline's (rpc-lat: p50, idle-mem: bytes; lower is better for those two); /1t: one thread runs both ends"
        );
        if let Some((p50, p99, label)) = fastest_raw_round_trip(reports) {
            let over: Vec<String> = over_fastest_raw(reports)
                .into_iter()
                .map(|(runtime, p50, p99)| {
                    format!(
                        "{} p50 {p50:.2}x, p99 {p99:.2}x",
                        workload_label(Workload::RpcLat, runtime)
                    )
                })
                .collect();
            println!(
                "fastest raw round trip: {label}, p50 {p50:.1} µs, p99 {p99:.1} µs; peerlane over it: {}",
                over.join("; ")
            );
        }
    }
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

    fn rpc_lat(stack: Stack, runtime: Runtime, p50: f64, p99: f64) -> Report {
        let spec = Spec {
            workload: Workload::RpcLat,
            count: 1,
            size: 64,
            warmup: 0,
            concurrency: 1,
            isolate: false,
            flood_sockets: 0,
            runtime,
        };
        let mut report = Report::from_run(stack, &spec, &Measurement::default());
        (report.p50_us, report.p99_us) = (Some(p50), Some(p99));
        report
    }

    /// The fastest raw round trip is the lowest baseline p50 over both runtimes, and peerlane
    /// on each runtime is compared with it, not with the baseline of its own runtime.
    #[test]
    fn peerlane_latency_is_compared_with_the_fastest_raw_round_trip() {
        let reports = [
            rpc_lat(Stack::Tcp, Runtime::MultiThread, 80.0, 120.0),
            rpc_lat(Stack::Noise, Runtime::MultiThread, 85.0, 130.0),
            rpc_lat(Stack::Peerlane, Runtime::MultiThread, 90.0, 150.0),
            rpc_lat(Stack::Tcp, Runtime::CurrentThread, 12.0, 20.0),
            rpc_lat(Stack::Noise, Runtime::CurrentThread, 10.0, 25.0),
            rpc_lat(Stack::Peerlane, Runtime::CurrentThread, 20.0, 50.0),
        ];
        let (p50, p99, label) = fastest_raw_round_trip(&reports).unwrap();
        assert_eq!(
            (p50, p99, label.as_str()),
            (10.0, 25.0, "noise on rpc-lat/1t")
        );
        assert_eq!(
            over_fastest_raw(&reports),
            vec![
                (Runtime::MultiThread, 9.0, 6.0),
                (Runtime::CurrentThread, 2.0, 2.0)
            ]
        );
        // Each runtime's own ratio compares like with like.
        let (noise, _) = ratios(&reports, Workload::RpcLat, Runtime::MultiThread);
        assert!((noise.unwrap() - 90.0 / 85.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_micros(99));
    }
}
