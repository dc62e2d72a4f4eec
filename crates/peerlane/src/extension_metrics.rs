//! [`ExtensionMetrics`]: counters of peerlane's own protocols (64–66): disconnect notices,
//! chain status, peer exchange.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_disconnect_notices_total` | counter | `direction` (`sent`, `received`), `reason` ([`DisconnectCode::as_str`](crate::DisconnectCode::as_str), or `malformed`) |
//! | `peerlane_disconnect_notices_skipped_total` | counter | none |
//! | `peerlane_chain_status_messages_total` | counter | `event` (`sent`, `received`, `malformed`, `coalesced`, `chain_mismatch`) |
//! | `peerlane_peer_exchange_requests_total` | counter | `side` (`served`, `asked`), `result` |
//! | `peerlane_peer_exchange_peers_total` | counter | `result` (`accepted`, or why a peer was refused) |
//! | `peerlane_chain_local_best_height` | gauge | none |
//! | `peerlane_peer_chain_best_height` | gauge | `peer` (PeerId, 64 hex digits), while connected |
//! | `peerlane_peer_chain_lib_height` | gauge | `peer`, while connected |
//! | `peerlane_peer_chain_status_updated_seconds` | gauge | `peer`, while connected: Unix time of its last status |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The counters; cloning gives another handle on the same ones. [`Default`] is unregistered.
#[derive(Clone, Debug, Default)]
pub struct ExtensionMetrics {
    disconnect_notices: Family<NoticeLabels, Counter>,
    disconnect_notices_skipped: Counter,
    refusal_reports_dropped: Counter,
    chain_status: Family<EventLabels, Counter>,
    exchange_requests: Family<ExchangeLabels, Counter>,
    exchange_peers: Family<ResultLabels, Counter>,
    local_best_height: Gauge,
    peer_best_height: Family<PeerLabels, Gauge>,
    peer_lib_height: Family<PeerLabels, Gauge>,
    peer_status_updated: Family<PeerLabels, Gauge>,
}

/// One series per connected peer that announced a chain status: removed when it is lost, so
/// the series stay within the connected peers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NoticeLabels {
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExchangeLabels {
    side: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl ExtensionMetrics {
    /// Creates the counters and registers them into `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_disconnect_notices",
            "Disconnect notices (protocol 64) sent and received, by reason",
            metrics.disconnect_notices.clone(),
        );
        registry.register(
            "peerlane_disconnect_notices_skipped",
            "Refused connections closed without a notice because too many notices were being written",
            metrics.disconnect_notices_skipped.clone(),
        );
        registry.register(
            "peerlane_refusal_reports_dropped",
            "Disconnect notices received but not passed to the connectivity manager, whose event queue was full",
            metrics.refusal_reports_dropped.clone(),
        );
        registry.register(
            "peerlane_chain_status_messages",
            "Chain status messages (protocol 65) by event",
            metrics.chain_status.clone(),
        );
        registry.register(
            "peerlane_peer_exchange_requests",
            "Peer exchange requests (protocol 66) served and asked, by result",
            metrics.exchange_requests.clone(),
        );
        registry.register(
            "peerlane_peer_exchange_peers",
            "Peers received in peer exchange answers, accepted or refused by reason",
            metrics.exchange_peers.clone(),
        );
        registry.register(
            "peerlane_chain_local_best_height",
            "This node's best height, as last set with Network::set_chain_status",
            metrics.local_best_height.clone(),
        );
        registry.register(
            "peerlane_peer_chain_best_height",
            "Each connected peer's best height, from its last chain status",
            metrics.peer_best_height.clone(),
        );
        registry.register(
            "peerlane_peer_chain_lib_height",
            "Each connected peer's last irreversible height, from its last chain status",
            metrics.peer_lib_height.clone(),
        );
        registry.register(
            "peerlane_peer_chain_status_updated_seconds",
            "Unix time of each connected peer's last chain status",
            metrics.peer_status_updated.clone(),
        );
        metrics
    }

    /// A connected peer's best height as its last chain status gave it, if it announced one.
    pub fn peer_best_height(&self, peer: &netcore::PeerId) -> Option<i64> {
        self.peer_best_height
            .get(&PeerLabels {
                peer: peer.to_string(),
            })
            .map(|gauge| gauge.get())
    }

    pub(crate) fn set_local_best_height(&self, height: u64) {
        self.local_best_height.set(clamp(height));
    }

    pub(crate) fn set_peer_chain_status(
        &self,
        peer: &netcore::PeerId,
        best_height: u64,
        lib_height: u64,
        updated_unix_secs: u64,
    ) {
        let labels = PeerLabels {
            peer: peer.to_string(),
        };
        self.peer_best_height
            .get_or_create(&labels)
            .set(clamp(best_height));
        self.peer_lib_height
            .get_or_create(&labels)
            .set(clamp(lib_height));
        self.peer_status_updated
            .get_or_create(&labels)
            .set(clamp(updated_unix_secs));
    }

    pub(crate) fn remove_peer_chain_status(&self, peer: &netcore::PeerId) {
        let labels = PeerLabels {
            peer: peer.to_string(),
        };
        self.peer_best_height.remove(&labels);
        self.peer_lib_height.remove(&labels);
        self.peer_status_updated.remove(&labels);
    }

    /// Disconnect notices sent (`sent = true`) or received with `reason` so far.
    pub fn disconnect_notices(&self, sent: bool, reason: &'static str) -> u64 {
        self.disconnect_notices
            .get(&NoticeLabels {
                direction: direction(sent),
                reason,
            })
            .map_or(0, |counter| counter.get())
    }

    /// Refused connections closed without a notice (too many notices in flight) so far.
    pub fn disconnect_notices_skipped(&self) -> u64 {
        self.disconnect_notices_skipped.get()
    }

    /// Chain status events (`sent`, `received`, `malformed`, `coalesced`, `chain_mismatch`)
    /// so far.
    pub fn chain_status(&self, event: &'static str) -> u64 {
        self.chain_status
            .get(&EventLabels { event })
            .map_or(0, |counter| counter.get())
    }

    /// Peer exchange requests on `side` (`served`, `asked`) with `result` so far.
    pub fn peer_exchange_requests(&self, side: &'static str, result: &'static str) -> u64 {
        self.exchange_requests
            .get(&ExchangeLabels { side, result })
            .map_or(0, |counter| counter.get())
    }

    /// Peers from peer exchange answers with `result` so far.
    pub fn peer_exchange_peers(&self, result: &'static str) -> u64 {
        self.exchange_peers
            .get(&ResultLabels { result })
            .map_or(0, |counter| counter.get())
    }

    pub(crate) fn record_notice(&self, sent: bool, reason: &'static str) {
        self.disconnect_notices
            .get_or_create(&NoticeLabels {
                direction: direction(sent),
                reason,
            })
            .inc();
    }

    pub(crate) fn record_notice_skipped(&self) {
        self.disconnect_notices_skipped.inc();
    }

    pub(crate) fn record_refusal_report_dropped(&self) {
        self.refusal_reports_dropped.inc();
    }

    pub(crate) fn record_chain_status(&self, event: &'static str) {
        self.chain_status
            .get_or_create(&EventLabels { event })
            .inc();
    }

    pub(crate) fn record_exchange_request(&self, side: &'static str, result: &'static str) {
        self.exchange_requests
            .get_or_create(&ExchangeLabels { side, result })
            .inc();
    }

    pub(crate) fn record_exchange_peers(&self, result: &'static str, count: u64) {
        self.exchange_peers
            .get_or_create(&ResultLabels { result })
            .inc_by(count);
    }
}

/// A height or time as a gauge value (they stay far below `i64::MAX`).
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const fn direction(sent: bool) -> &'static str {
    if sent { "sent" } else { "received" }
}
