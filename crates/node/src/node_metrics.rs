//! The node's own metrics: `peerlane_build_info`, the process's CPU time, resident memory and
//! open files (read from `/proc` on Linux when `/metrics` is scraped or the status is taken),
//! the start time, and the consensus view (`peerlane_validators_connected`,
//! `peerlane_validators_expected`, `peerlane_committed_height`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::Status;

/// Labels of `peerlane_build_info`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct NodeMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    /// The CPU seconds already added to `cpu_seconds`, in clock ticks.
    cpu_ticks_counted: Arc<AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
    validators_connected: Gauge,
    validators_expected: Gauge,
    committed_height: Gauge,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times: `USER_HZ`, 100 on every Linux
/// architecture peerlane builds for.
const TICKS_PER_SECOND: f64 = 100.0;

impl NodeMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "peerlane_build_info",
            "Always 1; the label says which peerlane version runs",
            build,
        );
        let start = Gauge::<f64, AtomicU64>::default();
        start.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        );
        registry.register(
            "process_start_time_seconds",
            "When the process started, in seconds since the unix epoch",
            start,
        );
        let metrics = Self {
            cpu_seconds: Counter::default(),
            cpu_ticks_counted: Arc::new(AtomicU64::new(0)),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            validators_connected: Gauge::default(),
            validators_expected: Gauge::default(),
            committed_height: Gauge::default(),
        };
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time the process used, in seconds (Linux)",
            metrics.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process, in bytes (Linux)",
            metrics.resident_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process, sockets included (Linux)",
            metrics.open_fds.clone(),
        );
        registry.register(
            "peerlane_validators_connected",
            "Consensus validators reachable: this node and the connected others (0 without consensus)",
            metrics.validators_connected.clone(),
        );
        registry.register(
            "peerlane_validators_expected",
            "Consensus validators in the set, this node included (0 without consensus)",
            metrics.validators_expected.clone(),
        );
        registry.register(
            "peerlane_committed_height",
            "The committed height: consensus's, or the state-sync store's without consensus",
            metrics.committed_height.clone(),
        );
        metrics
    }

    /// Reads the process figures from `/proc` (nothing elsewhere).
    pub(crate) fn refresh_process(&self) {
        if let Some(ticks) = cpu_ticks() {
            let counted = self.cpu_ticks_counted.swap(ticks, Ordering::Relaxed);
            let new = ticks.saturating_sub(counted);
            // Ticks stay far below 2^52, where f64 is exact.
            #[allow(clippy::cast_precision_loss)]
            self.cpu_seconds.inc_by(new as f64 / TICKS_PER_SECOND);
        }
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes.set(bytes);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
        }
    }

    /// Records the consensus view and the height of `status`.
    pub(crate) fn record(&self, status: &Status) {
        let (connected, expected) = status
            .validators
            .map_or((0, 0), |v| (v.connected, v.expected));
        self.validators_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        self.validators_expected
            .set(i64::try_from(expected).unwrap_or(i64::MAX));
        self.committed_height
            .set(i64::try_from(status.height).unwrap_or(i64::MAX));
    }
}

/// User plus system CPU time of this process, in clock ticks (`/proc/self/stat` fields 14
/// and 15, counted after the command name, which may hold spaces).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes (`VmRSS` of `/proc/self/status`, in kB); `None` where there is
/// no such file.
pub(crate) fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On Linux the process figures are read and show up in the registry.
    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_read_on_linux() {
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        // Burn a little CPU so that the counter is above zero.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        metrics.refresh_process();
        assert!(cpu_ticks().is_some());
        assert!(resident_bytes().unwrap() > 1 << 20);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("peerlane_build_info{version=\""), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.contains("peerlane_validators_connected 0"), "{text}");
    }
}
