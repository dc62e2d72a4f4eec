//! `peerlane bench` end to end: the real binary at tiny sizes, its JSON lines, the sweep's
//! SVG.

use std::process::Command;

use serde_json::Value;

/// Runs the binary with `args`; asserts it succeeded and returns its stdout's JSON lines.
fn bench(args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?}: status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn positive(line: &Value, key: &str) {
    let value = line[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key}: {line}"));
    assert!(value > 0.0, "{key} not positive: {line}");
}

/// The keys each workload reports.
fn check(line: &Value, stack: &str, workload: &str, count: u64) {
    assert_eq!(line["stack"], stack, "{line}");
    assert_eq!(line["workload"], workload, "{line}");
    assert_eq!(line["count"].as_u64(), Some(count), "{line}");
    match workload {
        "bulk" | "small" => {
            positive(line, "mb_per_s");
            positive(line, "msgs_per_s");
            assert!(line["bytes"].as_u64().unwrap() > 0, "{line}");
        }
        "rpc-lat" => {
            for key in ["p50_us", "p99_us", "mean_us"] {
                positive(line, key);
            }
            assert!(line["p99_us"].as_f64() >= line["p50_us"].as_f64(), "{line}");
        }
        "rpc-tput" => positive(line, "rpcs_per_s"),
        "connect" => positive(line, "conns_per_s"),
        "idle-mem" => assert!(line["bytes_per_conn"].is_number(), "{line}"),
        other => panic!("unknown workload {other}"),
    }
}

/// Every workload on every stack at a tiny size, one JSON line each, plus the summary with
/// the ratios: `--all` interleaves them in one process.
#[test]
fn every_stack_and_workload_reports_its_figures() {
    let lines = bench(&[
        "--all", "--json", "--count", "40", "--reps", "1", "--warmup", "5",
    ]);
    // rpc-lat runs twice: on two workers, and on one thread (`rpc-lat/1t`).
    let rows = [
        ("bulk", "multi-thread"),
        ("small", "multi-thread"),
        ("rpc-lat", "multi-thread"),
        ("rpc-lat", "current-thread"),
        ("rpc-tput", "multi-thread"),
        ("connect", "multi-thread"),
        ("idle-mem", "multi-thread"),
    ];
    assert_eq!(lines.len(), rows.len() * 3 + 1, "{lines:?}");
    for (i, line) in lines[..rows.len() * 3].iter().enumerate() {
        let (workload, runtime) = rows[i / 3];
        let stack = ["tcp", "noise", "peerlane"][i % 3];
        check(line, stack, workload, 40);
        assert_eq!(line["runtime"], runtime, "{line}");
    }
    let summary = &lines[rows.len() * 3];
    assert_eq!(summary["summary"], true, "{summary}");
    for label in [
        "bulk",
        "small",
        "rpc-lat",
        "rpc-lat/1t",
        "rpc-tput",
        "connect",
        "idle-mem",
    ] {
        let ratios = &summary["ratios"][label];
        for key in ["peerlane_over_noise", "peerlane_over_tcp"] {
            // 40 idle connections can leave the RSS where it was: no ratio then (null).
            let ok = ratios[key].is_number() || (label == "idle-mem" && ratios[key].is_null());
            assert!(ok, "{label} {key}: {summary}");
        }
    }
    // peerlane's round trips on each runtime over the fastest baseline round trip.
    let fastest = &summary["fastest_raw_round_trip"];
    positive(fastest, "p50_us");
    for label in ["rpc-lat", "rpc-lat/1t"] {
        positive(&fastest["peerlane"][label], "p50_over");
        positive(&fastest["peerlane"][label], "p99_over");
    }
}

/// A single workload, with the default stack (peerlane) and a size override.
#[test]
fn one_workload_runs_on_the_default_stack() {
    let lines = bench(&["small", "--json", "--count", "200", "--size", "64"]);
    assert_eq!(lines.len(), 1);
    check(&lines[0], "peerlane", "small", 200);
    assert_eq!(lines[0]["bytes"].as_u64(), Some(200 * 64));
    let lines = bench(&["rpc-tput", "--json", "--stack", "noise", "--count", "200"]);
    check(&lines[0], "noise", "rpc-tput", 200);
    // Above the frame size (streamed) and above a stranger's default message limit: the
    // bench's two ends are strangers, and the sweep sends up to 16 MiB.
    let lines = bench(&["bulk", "--json", "--count", "2", "--size", "12582912"]);
    check(&lines[0], "peerlane", "bulk", 2);
}

/// The sweep at two small sizes writes an SVG chart.
#[test]
fn the_sweep_writes_an_svg_plot() {
    let dir = std::env::temp_dir().join(format!("peerlane-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("sweep.svg");
    let lines = bench(&[
        "sweep",
        "--json",
        "--reps",
        "1",
        "--sizes",
        "1024,65536",
        "--bytes-per-point",
        "262144",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(lines.len(), 2 * 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["workload"], "sweep", "{line}");
        positive(line, "mb_per_s");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("peerlane"), "the legend names the stacks");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input is a one-line error with exit status 2.
#[test]
fn bad_bench_input_exits_2() {
    for args in [&["bulk", "--size", "4"][..], &["--reps", "0", "small"], &[]] {
        let output = Command::new(env!("CARGO_BIN_EXE_peerlane"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
