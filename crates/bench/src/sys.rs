//! The process around the runs: resident memory, the open-file limit, and `idle-mem` in a
//! fresh child process of this binary.

use anyhow::{Context, ensure};

use crate::args::{Spec, Stack, stack_name};
use crate::report::Measurement;

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
pub(crate) fn raise_fd_limit(idle_mem: Option<&Spec>) -> anyhow::Result<()> {
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

/// `idle-mem` in a fresh process of this binary, whose JSON line gives the figure.
pub(crate) async fn idle_mem_in_child(stack: Stack, spec: Spec) -> anyhow::Result<Measurement> {
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
