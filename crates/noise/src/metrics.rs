//! [`Metrics`]: handshake outcomes by side and reason, and stream decryption failures.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_noise_handshakes_total` | counter | `side`, `result` ([`HandshakeOutcome`]) |
//! | `peerlane_noise_decrypt_failures_total` | counter | none |
//! | `peerlane_noise_stream_errors_total` | counter | `reason` ([`StreamErrorReason`]) |
//! | `peerlane_noise_dh_operations_total` | counter | none |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::side::Side;

/// Counters for the Noise layer. Cloning gives another handle on the same counters.
///
/// [`Metrics::default`] is unregistered (for tests and for callers without a registry);
/// [`Metrics::register`] creates the counters and registers them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    handshakes: Family<HandshakeLabels, Counter>,
    decrypt_failures: Counter,
    stream_errors: Family<StreamErrorLabels, Counter>,
    dh_operations: Counter,
}

impl Metrics {
    /// Creates the counters and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_noise_handshakes",
            "Noise handshakes by side and result (ok or the reason for failing)",
            metrics.handshakes.clone(),
        );
        registry.register(
            "peerlane_noise_decrypt_failures",
            "Noise transport frames that failed to decrypt (each one poisons its session)",
            metrics.decrypt_failures.clone(),
        );
        registry.register(
            "peerlane_noise_stream_errors",
            "Noise streams that failed other than by decryption, by reason",
            metrics.stream_errors.clone(),
        );
        registry.register(
            "peerlane_noise_dh_operations",
            "X25519 Diffie-Hellman operations run by Noise handshakes, both sides",
            metrics.dh_operations.clone(),
        );
        metrics
    }

    /// How many handshakes on `side` ended with `outcome` so far.
    pub fn handshakes(&self, side: Side, outcome: HandshakeOutcome) -> u64 {
        self.handshakes
            .get(&HandshakeLabels {
                side,
                result: outcome,
            })
            .map_or(0, |counter| counter.get())
    }

    /// How many transport frames failed to decrypt so far.
    pub fn decrypt_failures(&self) -> u64 {
        self.decrypt_failures.get()
    }

    /// How many streams failed with `reason` so far.
    pub fn stream_errors(&self, reason: StreamErrorReason) -> u64 {
        self.stream_errors
            .get(&StreamErrorLabels { reason })
            .map_or(0, |counter| counter.get())
    }

    /// How many X25519 Diffie-Hellman operations handshakes have run so far (a completed
    /// handshake costs two on each side of message 1 and two on each side of message 2).
    pub fn dh_operations(&self) -> u64 {
        self.dh_operations.get()
    }

    pub(crate) fn dh_operations_counter(&self) -> Counter {
        self.dh_operations.clone()
    }

    pub(crate) fn record_handshake(&self, side: Side, outcome: HandshakeOutcome) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                side,
                result: outcome,
            })
            .inc();
    }

    pub(crate) fn decrypt_failure_counter(&self) -> Counter {
        self.decrypt_failures.clone()
    }

    /// The counter for `reason`, resolved once per stream rather than per error.
    pub(crate) fn stream_error_counter(&self, reason: StreamErrorReason) -> Counter {
        self.stream_errors
            .get_or_create(&StreamErrorLabels { reason })
            .clone()
    }
}

netcore::metric_label_enum! {
    /// Why a stream failed, other than a frame that did not decrypt (which has its own counter,
    /// `peerlane_noise_decrypt_failures_total`). The `reason` label of
    /// `peerlane_noise_stream_errors_total`.
    #[non_exhaustive]
    pub enum StreamErrorReason {
        /// See [`Error::TruncatedFrame`](crate::Error::TruncatedFrame).
        TruncatedFrame => "truncated_frame",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamErrorLabels {
    reason: StreamErrorReason,
}

netcore::metric_label_enum! {
    /// How a handshake ended: `ok` or the reason it failed. The `result` label of
    /// `peerlane_noise_handshakes_total`.
    #[non_exhaustive]
    pub enum HandshakeOutcome {
        /// The handshake completed.
        Ok => "ok",
        /// See [`Error::SelfDial`](crate::Error::SelfDial).
        SelfDial => "self_dial",
        /// See [`Error::WrongExpectedKey`](crate::Error::WrongExpectedKey).
        WrongExpectedKey => "wrong_expected_key",
        /// See [`Error::UnknownPeer`](crate::Error::UnknownPeer).
        UnknownPeer => "unknown_peer",
        /// See [`Error::KeyMismatch`](crate::Error::KeyMismatch) and
        /// [`Error::PeerIdMismatch`](crate::Error::PeerIdMismatch).
        KeyMismatch => "key_mismatch",
        /// See [`Error::ReplayedTimestamp`](crate::Error::ReplayedTimestamp).
        ReplayedTimestamp => "replayed_timestamp",
        /// See [`Error::Banned`](crate::Error::Banned).
        Banned => "banned",
        /// See [`Error::ReplayedMessage`](crate::Error::ReplayedMessage).
        ReplayedMessage => "replayed_message",
        /// See [`Error::StaleTimestamp`](crate::Error::StaleTimestamp).
        StaleTimestamp => "stale_timestamp",
        /// See [`Error::LowOrderKey`](crate::Error::LowOrderKey).
        LowOrderKey => "low_order_key",
        /// See [`Error::MalformedMessage`](crate::Error::MalformedMessage).
        MalformedMessage => "malformed_message",
        /// See [`Error::TruncatedMessage`](crate::Error::TruncatedMessage).
        TruncatedMessage => "truncated_message",
        /// See [`Error::Rejected`](crate::Error::Rejected) (initiator only).
        Rejected => "rejected",
        /// See [`Error::Timeout`](crate::Error::Timeout).
        Timeout => "timeout",
        /// See [`Error::Io`](crate::Error::Io).
        Io => "io",
        /// See [`Error::Setup`](crate::Error::Setup).
        Setup => "setup",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandshakeLabels {
    side: Side,
    result: HandshakeOutcome,
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// Registered counters show up under their full names, with `as_str()` label values.
    #[test]
    fn registered_counters_use_prefixed_names_and_enum_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.record_handshake(Side::Responder, HandshakeOutcome::ReplayedTimestamp);
        metrics.decrypt_failure_counter().inc();
        metrics
            .stream_error_counter(StreamErrorReason::TruncatedFrame)
            .inc();

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"peerlane_noise_handshakes_total{side="responder",result="replayed_timestamp"} 1"#
        ));
        assert!(text.contains("peerlane_noise_decrypt_failures_total 1"));
        assert!(text.contains(r#"peerlane_noise_stream_errors_total{reason="truncated_frame"} 1"#));
        assert_eq!(
            metrics.handshakes(Side::Responder, HandshakeOutcome::ReplayedTimestamp),
            1
        );
        assert_eq!(metrics.handshakes(Side::Initiator, HandshakeOutcome::Ok), 0);
    }
}
