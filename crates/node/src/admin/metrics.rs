//! The admin API's counters, registered in the node's registry so that `GET /metrics` shows
//! them. Every label value is created at registration, so each series reads 0 from the start.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

netcore::metric_label_enum! {
    /// Why a request was refused before it reached a handler.
    pub(crate) enum Rejection {
        /// A token is configured and the request has no `Authorization` header (401).
        MissingToken => "missing_token",
        /// A token is configured and the request's `Authorization` is not `Bearer <that
        /// token>` (401).
        WrongToken => "wrong_token",
        /// On a loopback bind, a `Host` that is not a loopback name (403): DNS rebinding.
        BadHost => "bad_host",
    }
}

impl Rejection {
    const ALL: [Self; 3] = [Self::MissingToken, Self::WrongToken, Self::BadHost];
}

netcore::metric_label_enum! {
    /// Why the server closed a connection without answering a request on it.
    pub(crate) enum Closed {
        /// The connection limit was reached: it got a 503 and was closed right after accept.
        ConnectionLimit => "connection_limit",
        /// No complete request head within the header-read timeout (a slow client, or an idle
        /// keep-alive connection).
        HeaderTimeout => "header_timeout",
    }
}

impl Closed {
    const ALL: [Self; 2] = [Self::ConnectionLimit, Self::HeaderTimeout];
}

netcore::metric_label_enum! {
    /// Why a `POST /peers` dial failed (the client gets the whole cause).
    pub(crate) enum DialFailure {
        /// Connecting failed (refused, unreachable).
        Transport => "transport",
        /// The set-up deadline passed.
        Timeout => "timeout",
        /// The Noise handshake failed.
        Noise => "noise",
        /// The handshake message exchange or negotiation failed.
        Handshake => "handshake",
        /// The peer is banned, or the connection turned out to be to ourselves.
        Refused => "refused",
        /// Anything else (the network shutting down, …).
        Other => "other",
    }
}

impl DialFailure {
    const ALL: [Self; 6] = [
        Self::Transport,
        Self::Timeout,
        Self::Noise,
        Self::Handshake,
        Self::Refused,
        Self::Other,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectionLabels {
    reason: Rejection,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClosedLabels {
    reason: Closed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DialFailureLabels {
    reason: DialFailure,
}

/// The admin API's counters. Cloning gives another handle on the same counters.
#[derive(Clone, Debug, Default)]
pub(crate) struct AdminMetrics {
    rejected: Family<RejectionLabels, Counter>,
    closed: Family<ClosedLabels, Counter>,
    dial_failures: Family<DialFailureLabels, Counter>,
}

impl AdminMetrics {
    /// Creates the counters, every series at 0, and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // Creating a series is what exports it; the guard it returns is not needed.
        for reason in Rejection::ALL {
            let _ = metrics.rejected.get_or_create(&RejectionLabels { reason });
        }
        for reason in Closed::ALL {
            let _ = metrics.closed.get_or_create(&ClosedLabels { reason });
        }
        for reason in DialFailure::ALL {
            let _ = metrics
                .dial_failures
                .get_or_create(&DialFailureLabels { reason });
        }
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_admin_requests_rejected",
            "Admin API requests refused before a handler: no or wrong token, or a bad Host",
            metrics.rejected.clone(),
        );
        registry.register(
            "peerlane_admin_connections_closed",
            "Admin API connections closed without an answer: over the connection limit, or no \
             request head within the header-read timeout",
            metrics.closed.clone(),
        );
        registry.register(
            "peerlane_admin_dial_failures",
            "POST /peers dials that failed, by reason",
            metrics.dial_failures.clone(),
        );
        metrics
    }

    /// Counts a refused request.
    pub(crate) fn rejected(&self, reason: Rejection) {
        self.rejected
            .get_or_create(&RejectionLabels { reason })
            .inc();
    }

    /// Counts a connection closed without an answer.
    pub(crate) fn closed(&self, reason: Closed) {
        self.closed.get_or_create(&ClosedLabels { reason }).inc();
    }

    /// Counts a failed dial.
    pub(crate) fn dial_failed(&self, reason: DialFailure) {
        self.dial_failures
            .get_or_create(&DialFailureLabels { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// Every series is exported at 0 before anything happens, and counts under its name.
    #[test]
    fn every_series_starts_at_zero_and_counts() {
        let mut registry = Registry::default();
        let metrics = AdminMetrics::register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"peerlane_admin_requests_rejected_total{reason="missing_token"} 0"#,
            r#"peerlane_admin_requests_rejected_total{reason="wrong_token"} 0"#,
            r#"peerlane_admin_requests_rejected_total{reason="bad_host"} 0"#,
            r#"peerlane_admin_connections_closed_total{reason="connection_limit"} 0"#,
            r#"peerlane_admin_connections_closed_total{reason="header_timeout"} 0"#,
            r#"peerlane_admin_dial_failures_total{reason="transport"} 0"#,
            r#"peerlane_admin_dial_failures_total{reason="other"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        metrics.rejected(Rejection::BadHost);
        metrics.closed(Closed::HeaderTimeout);
        metrics.dial_failed(DialFailure::Transport);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"peerlane_admin_requests_rejected_total{reason="bad_host"} 1"#,
            r#"peerlane_admin_connections_closed_total{reason="header_timeout"} 1"#,
            r#"peerlane_admin_dial_failures_total{reason="transport"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
