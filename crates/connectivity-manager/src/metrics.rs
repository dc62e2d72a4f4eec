//! [`Metrics`]: what the connectivity manager decided and why. Recorded by the actor
//! ([`ConnectivityManager`](crate::ConnectivityManager)) and the discovery file's reader, never
//! by the pure [`Policy`](crate::Policy), which returns [`Outcome`]s instead.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_connectivity_dials_total` | counter | `result` ([`DialOutcome`]) |
//! | `peerlane_connectivity_backoffs_total` | counter | none |
//! | `peerlane_connectivity_stale_disconnects_total` | counter | none |
//! | `peerlane_connectivity_discovery_updates_total` | counter | `source` ([`DiscoverySource`]) |
//! | `peerlane_connectivity_discovery_file_errors_total` | counter | `reason` ([`FileError`]) |
//! | `peerlane_connectivity_actions_dropped_total` | counter | `action` ([`ActionKind`]) |
//! | `peerlane_connectivity_eligible_peers` | gauge | none |
//! | `peerlane_connectivity_connected_peers` | gauge | `origin` (`inbound`, `outbound`) |
//! | `peerlane_connectivity_discovered_peers` | gauge | `provenance` ([`Provenance`]: `direct`, `stored`, `indirect`, `verified`) |
//! | `peerlane_connectivity_over_target_disconnects_total` | counter | none |
//! | `peerlane_connectivity_remote_refusals_total` | counter | `reason` ([`RemoteRefusal`]), `wait` (`true` when it delayed the next dial) |

use netcore::ConnectionOrigin;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::action::{ActionKind, DialOutcome};
use crate::discovery::DiscoverySource;
use crate::policy::{Outcome, Provenance};
use crate::refusal::RemoteRefusal;

/// Counters and gauges of the connectivity manager. Cloning gives another handle on the same
/// metrics.
///
/// [`Metrics::default`] is unregistered (for tests and for callers without a registry);
/// [`Metrics::register`] creates the metrics and registers them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    dials: Family<DialLabels, Counter>,
    backoffs: Counter,
    stale_disconnects: Counter,
    discovery_updates: Family<SourceLabels, Counter>,
    discovery_file_errors: Family<FileErrorLabels, Counter>,
    actions_dropped: Family<ActionLabels, Counter>,
    eligible_peers: Gauge,
    connected_peers: Family<OriginLabels, Gauge>,
    remote_refusals: Family<RefusalLabels, Counter>,
    discovered_peers: Family<ProvenanceLabels, Gauge>,
    over_target_disconnects: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_connectivity_dials",
            "Dials the connectivity manager asked for, by result (ok, the failure, cancelled)",
            metrics.dials.clone(),
        );
        registry.register(
            "peerlane_connectivity_backoffs",
            "Times a peer was put in backoff after a failed dial or a closed connection",
            metrics.backoffs.clone(),
        );
        registry.register(
            "peerlane_connectivity_stale_disconnects",
            "Connections closed because the peer is no longer trusted",
            metrics.stale_disconnects.clone(),
        );
        registry.register(
            "peerlane_connectivity_discovery_updates",
            "Discovery updates applied, by source",
            metrics.discovery_updates.clone(),
        );
        registry.register(
            "peerlane_connectivity_discovery_file_errors",
            "Discovery file reads that failed (the last good set stays), by reason",
            metrics.discovery_file_errors.clone(),
        );
        registry.register(
            "peerlane_connectivity_actions_dropped",
            "Actions dropped on a full action queue (recomputed at the next check), by action",
            metrics.actions_dropped.clone(),
        );
        registry.register(
            "peerlane_connectivity_eligible_peers",
            "Discovered peers we may dial",
            metrics.eligible_peers.clone(),
        );
        registry.register(
            "peerlane_connectivity_connected_peers",
            "Connected peers as the connectivity manager knows them, by origin",
            metrics.connected_peers.clone(),
        );
        registry.register(
            "peerlane_connectivity_over_target_disconnects",
            "Inbound peers closed because more peers than the target range's high mark were connected",
            metrics.over_target_disconnects.clone(),
        );
        registry.register(
            "peerlane_connectivity_discovered_peers",
            "Discovered peers by provenance: direct sources, the peer store only (stored), peer exchange only (indirect), peer exchange and connected by us (verified)",
            metrics.discovered_peers.clone(),
        );
        registry.register(
            "peerlane_connectivity_remote_refusals",
            "Reasons peers gave for closing or refusing our connections, and whether they delayed the next dial",
            metrics.remote_refusals.clone(),
        );
        metrics
    }

    /// Refusals with `reason` reported so far, whether or not
    /// they delayed a dial.
    pub fn remote_refusals(&self, reason: RemoteRefusal) -> u64 {
        ["false", "true"]
            .into_iter()
            .filter_map(|wait| {
                self.remote_refusals
                    .get(&RefusalLabels {
                        reason: reason.as_str(),
                        wait,
                    })
                    .map(|counter| counter.get())
            })
            .sum()
    }

    /// Inbound peers closed above the target range so far.
    pub fn over_target_disconnects(&self) -> u64 {
        self.over_target_disconnects.get()
    }

    pub(crate) fn record_over_target_disconnect(&self) {
        self.over_target_disconnects.inc();
    }

    /// Discovered peers with `provenance` now.
    pub fn discovered_peers(&self, provenance: Provenance) -> i64 {
        self.discovered_peers
            .get(&ProvenanceLabels {
                provenance: provenance.as_str(),
            })
            .map_or(0, |gauge| gauge.get())
    }

    pub(crate) fn set_discovered_peers(&self, provenance: Provenance, count: usize) {
        self.discovered_peers
            .get_or_create(&ProvenanceLabels {
                provenance: provenance.as_str(),
            })
            .set(gauge_value(count));
    }

    pub(crate) fn record_remote_refusal(&self, refusal: RemoteRefusal, wait: bool) {
        self.remote_refusals
            .get_or_create(&RefusalLabels {
                reason: refusal.as_str(),
                wait: if wait { "true" } else { "false" },
            })
            .inc();
    }

    /// Dials that ended with `outcome` so far.
    pub fn dials(&self, outcome: DialOutcome) -> u64 {
        self.dials
            .get(&DialLabels { result: outcome })
            .map_or(0, |counter| counter.get())
    }

    /// Backoffs started so far.
    pub fn backoffs(&self) -> u64 {
        self.backoffs.get()
    }

    /// Stale connections closed so far.
    pub fn stale_disconnects(&self) -> u64 {
        self.stale_disconnects.get()
    }

    /// Discovery updates applied from `source` so far.
    pub fn discovery_updates(&self, source: DiscoverySource) -> u64 {
        self.discovery_updates
            .get(&SourceLabels { source })
            .map_or(0, |counter| counter.get())
    }

    /// Failed discovery file reads with `reason` so far.
    pub fn discovery_file_errors(&self, reason: FileError) -> u64 {
        self.discovery_file_errors
            .get(&FileErrorLabels { reason })
            .map_or(0, |counter| counter.get())
    }

    /// Actions of `kind` dropped on a full action queue so far.
    pub fn actions_dropped(&self, kind: ActionKind) -> u64 {
        self.actions_dropped
            .get(&ActionLabels { action: kind })
            .map_or(0, |counter| counter.get())
    }

    /// Discovered peers we may dial (connected or not).
    pub fn eligible_peers(&self) -> i64 {
        self.eligible_peers.get()
    }

    /// Connected peers with `origin`.
    pub fn connected_peers(&self, origin: ConnectionOrigin) -> i64 {
        self.connected_peers
            .get(&OriginLabels {
                origin: Origin(origin),
            })
            .map_or(0, |gauge| gauge.get())
    }

    /// Counts what one report to the policy did.
    pub(crate) fn record_outcome(&self, outcome: Outcome) {
        if let Some(dial) = outcome.dial {
            self.record_dial(dial);
        }
        if outcome.backoff {
            self.record_backoff();
        }
        if outcome.stale_disconnect {
            self.record_stale_disconnect();
        }
    }

    pub(crate) fn record_dial(&self, outcome: DialOutcome) {
        self.dials
            .get_or_create(&DialLabels { result: outcome })
            .inc();
    }

    pub(crate) fn record_backoff(&self) {
        self.backoffs.inc();
    }

    pub(crate) fn record_stale_disconnect(&self) {
        self.stale_disconnects.inc();
    }

    pub(crate) fn record_discovery_update(&self, source: DiscoverySource) {
        self.discovery_updates
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    pub(crate) fn record_file_error(&self, reason: FileError) {
        self.discovery_file_errors
            .get_or_create(&FileErrorLabels { reason })
            .inc();
    }

    pub(crate) fn record_action_dropped(&self, kind: ActionKind) {
        self.actions_dropped
            .get_or_create(&ActionLabels { action: kind })
            .inc();
    }

    pub(crate) fn set_eligible_peers(&self, count: usize) {
        self.eligible_peers.set(gauge_value(count));
    }

    pub(crate) fn set_connected_peers(&self, origin: ConnectionOrigin, count: usize) {
        self.connected_peers
            .get_or_create(&OriginLabels {
                origin: Origin(origin),
            })
            .set(gauge_value(count));
    }
}

/// Why a discovery file read failed: the `reason` label of
/// `peerlane_connectivity_discovery_file_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileError {
    /// The file could not be read (`read`).
    Read,
    /// The file is not a valid peers file (`parse`).
    Parse,
}

impl FileError {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Parse => "parse",
        }
    }
}

netcore::metric_label_value!(DialOutcome, FileError, DiscoverySource, ActionKind);

/// [`ConnectionOrigin`] as a label value; netcore knows nothing about metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Origin(ConnectionOrigin);

netcore::metric_label_value!(newtype Origin => as_str);

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DialLabels {
    result: DialOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: DiscoverySource,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FileErrorLabels {
    reason: FileError,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    action: ActionKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProvenanceLabels {
    provenance: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
    wait: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OriginLabels {
    origin: Origin,
}

/// A count as a gauge value; counts of peers never come near `i64::MAX`.
fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::action::DialFailure;

    /// Registered metrics show up under their full names with `as_str()` label values.
    #[test]
    fn registered_metrics_are_exported_with_their_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.record_dial(DialOutcome::Failed(DialFailure::Unreachable));
        metrics.record_dial(DialOutcome::Connected);
        metrics.record_file_error(FileError::Parse);
        metrics.record_discovery_update(DiscoverySource::OnChain);
        metrics.record_action_dropped(ActionKind::Dial);
        metrics.set_connected_peers(ConnectionOrigin::Outbound, 3);
        metrics.set_eligible_peers(7);
        metrics.record_backoff();
        metrics.record_stale_disconnect();

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "peerlane_connectivity_dials_total{result=\"unreachable\"} 1",
            "peerlane_connectivity_dials_total{result=\"ok\"} 1",
            "peerlane_connectivity_discovery_file_errors_total{reason=\"parse\"} 1",
            "peerlane_connectivity_discovery_updates_total{source=\"on_chain\"} 1",
            "peerlane_connectivity_actions_dropped_total{action=\"dial\"} 1",
            "peerlane_connectivity_connected_peers{origin=\"outbound\"} 3",
            "peerlane_connectivity_eligible_peers 7",
            "peerlane_connectivity_backoffs_total 1",
            "peerlane_connectivity_stale_disconnects_total 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(metrics.dials(DialOutcome::Connected), 1);
        assert_eq!(metrics.connected_peers(ConnectionOrigin::Inbound), 0);
    }
}
