//! [`Metrics`]: the facade's counters: connections, refusals, set-up failures, the application
//! inbound queues, decode failures and the health checker.
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `peerlane_connections` | gauge | `origin` |
//! | `peerlane_connection_events_total` | counter | `event` ([`ConnectionChange`]) |
//! | `peerlane_connections_refused_total` | counter | `reason` ([`RefusalReason`]) |
//! | `peerlane_connection_setup_failures_total` | counter | `origin`, `reason` ([`SetupFailure`]) |
//! | `peerlane_inbound_queue_messages_total` | counter | `protocol`, `event` ([`QueueEvent`]) |
//! | `peerlane_inbound_decode_failures_total` | counter | `protocol` |
//! | `peerlane_health_pings_total` | counter | `result` ([`PingResult`]) |
//! | `peerlane_health_disconnects_total` | counter | |
//!
//! The builder registers these under a `network` label (`validator`, `vfn`, `public`), so
//! several networks share one registry. `peerlane_notifications_lost_total` belongs to
//! [`PeersAndMetadata`](crate::PeersAndMetadata), which may serve several networks.

use std::fmt;
use std::sync::{Arc, OnceLock};

use netcore::ConnectionOrigin;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use wire::ProtocolId;

use crate::extension_metrics::ExtensionMetrics;
use crate::routing::RoutingMetrics;

/// The facade's counters. Cloning gives another handle on the same counters.
///
/// [`Metrics::default`] is unregistered; [`Metrics::register`] creates and registers them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    connections: Family<OriginLabels, Gauge>,
    connection_events: Family<ConnectionChangeLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    setup_failures: Family<SetupFailureLabels, Counter>,
    inbound_queue: Family<QueueLabels, Counter>,
    /// The `enqueued` and `dequeued` series of `inbound_queue` per protocol id, resolved on
    /// first use, so that counting a message on the hot path is one atomic add rather than a
    /// family look-up (a lock and a hash of the labels).
    queue_hot: Arc<HotQueueCounters>,
    decode_failures: Family<ProtocolLabels, Counter>,
    health_pings: Family<PingResultLabels, Counter>,
    health_disconnects: Counter,
    /// Counters of peerlane's own protocols (64–66).
    extensions: ExtensionMetrics,
    /// Routing's counters (protocols 67 and 68).
    routing: RoutingMetrics,
}

/// One lazily resolved `[enqueued, dequeued]` counter pair per protocol id (256 of them).
struct HotQueueCounters(Box<[OnceLock<[Counter; 2]>]>);

impl Default for HotQueueCounters {
    fn default() -> Self {
        Self((0..=u8::MAX).map(|_| OnceLock::new()).collect())
    }
}

impl fmt::Debug for HotQueueCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotQueueCounters").finish_non_exhaustive()
    }
}

/// What happened to a connection: the `event` label of `peerlane_connection_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionChange {
    /// A connection was registered and announced with `NewPeer`.
    New,
    /// A connection ended and was announced with `LostPeer`.
    Lost,
    /// A connection was closed because another connection to the same peer won the
    /// simultaneous-dial tie break.
    Replaced,
    /// An inbound connection from a peer outside the trusted set, silent for a while, was
    /// closed to make room for a newcomer at `max_inbound_connections` (`evicted_idle`).
    EvictedIdle,
}

/// Why we refused a connection that had been set up, for
/// `peerlane_connections_refused_total`. The remote only sees the socket close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// An inbound connection from a peer outside the trusted set, with
    /// `max_inbound_connections` such connections open already (`too_many_inbound`).
    InboundLimit,
    /// A connection to ourselves (`self`). Noise refuses self-dials first, so this is only a
    /// safety net.
    SelfConnection,
    /// A connection, inbound or outbound, with a banned peer (`banned`); see
    /// [`Network::ban`](crate::Network::ban).
    Banned,
    /// An inbound socket from a banned IP or prefix (`banned_ip`), closed at accept before any
    /// set-up; see [`Network::ban_ip`](crate::Network::ban_ip).
    BannedIp,
    /// An inbound connection from a peer outside the trusted set, from an IP with
    /// `admission.max_inbound_per_ip` such connections open already (`too_many_from_ip`).
    TooManyFromIp,
    /// The same for a /24 or /64 at `admission.max_inbound_per_prefix`
    /// (`too_many_from_prefix`).
    TooManyFromPrefix,
}

/// Why a connection could not be set up, for `peerlane_connection_setup_failures_total`.
///
/// [`Error`](crate::Error)s map onto these in one place (the set-up error's
/// `setup_failure`); the catch-alls are split by layer: `transport`, `noise`, `handshake`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetupFailure {
    /// Connecting or accepting failed.
    Transport,
    /// The Noise handshake failed for a reason not listed below (malformed or truncated
    /// message, I/O, the responder rejected us, ...; Noise's own counters say which).
    Noise,
    /// The peer is not trusted (mutual mode: unknown PeerId), authenticated with a key that is
    /// not its own, or sent a low-order key (`untrusted`).
    Untrusted,
    /// The Noise timestamp was not newer than the last one from that key, too far from our
    /// clock, or message 1 was a replay of one seen before (`replay`).
    Replay,
    /// Noise refused the PeerId because it is on the network's ban list (`banned`).
    Banned,
    /// The connection was from or to ourselves (`self`).
    SelfDial,
    /// The handshake message exchange failed for a reason not listed below.
    Handshake,
    /// The peer is on another chain (`chain_mismatch`).
    ChainMismatch,
    /// The peer is on another network (`network_mismatch`).
    NetworkMismatch,
    /// No messaging protocol version with protocols in common (`no_common_protocol`).
    NoCommonProtocol,
    /// The whole set-up took longer than its deadline.
    Timeout,
    /// The address to dial cannot be used (no key, another handshake version).
    Address,
    /// A dial named a PeerId with an address whose Noise key that peer may not use: not one of
    /// a trusted peer's keys, or for any other peer not the key its PeerId derives from
    /// (`dial_key_mismatch`). Refused before connecting.
    DialKeyMismatch,
    /// An inbound set-up still in progress was closed to make room for a newer socket, because
    /// `max_pending_inbound_upgrades` were in progress (`evicted`): a flood of sockets that
    /// never speak cannot hold every slot. The set-up closed is the oldest one of the /24 or
    /// /64 with the most set-ups in progress, never one from a trusted peer's IP.
    Evicted,
    /// An inbound socket from an IP that opened sockets faster than
    /// `admission.accept_rate_per_ip` allows (`rate_limited`), closed at once.
    RateLimited,
    /// An inbound socket from an IP with `admission.max_pending_per_ip` set-ups in progress
    /// (`ip_pending_cap`), closed at once.
    IpPendingCap,
    /// An inbound socket from a /24 or /64 with `admission.max_pending_per_prefix` set-ups in
    /// progress (`prefix_pending_cap`), closed at once.
    PrefixPendingCap,
    /// An inbound socket at `max_pending_inbound_upgrades` when every set-up in progress is a
    /// trusted peer's (`pending_cap`), closed at once.
    PendingCap,
}

/// What happened to an inbound message at an application's queue, for
/// `peerlane_inbound_queue_messages_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueEvent {
    /// Queued for the application.
    Enqueued,
    /// Taken by the application.
    Dequeued,
    /// Dropped on arrival: its (peer, protocol) queue was full (FIFO queue).
    DroppedNewest,
    /// Queued, and the oldest message of its (peer, protocol) queue dropped to make room (LIFO
    /// queue).
    DroppedOldest,
    /// Dropped on arrival: the application no longer reads its events.
    Closed,
    /// Found its (peer, protocol) queue full, which applies back-pressure
    /// ([`Overflow::Wait`](crate::Overflow::Wait)): the peer's reader waited for room before
    /// queueing it (or, after `max_wait_ms`, dropped it as `dropped_newest`).
    Waited,
    /// Would have taken its (peer, protocol) queue over `max_bytes_per_key`, or the
    /// application's queue over `max_bytes`: what that dropped is counted as well
    /// (`dropped_newest` for the message itself, `dropped_oldest` for each message a LIFO
    /// queue dropped to make room).
    OverBudget,
    /// Queued, and removed without being delivered because its peer disconnected.
    Purged,
}

/// How a health-check ping ended, for `peerlane_health_pings_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PingResult {
    /// The peer answered with a pong carrying the ping's nonce.
    Ok,
    /// No answer within the health check's `timeout_ms`, and nothing else from the peer
    /// either: a failure.
    Timeout,
    /// No answer within `timeout_ms`, but the peer sent other bytes meanwhile: it is alive,
    /// only slow to answer (a saturated link, a busy node). Neither a failure nor a success:
    /// the peer's count of failures in a row stays as it was.
    TimeoutBusy,
    /// The peer answered with a pong carrying another nonce.
    WrongNonce,
    /// The ping failed otherwise: the connection closed, our outbound queue was full, the
    /// answer was not a pong or did not decode.
    Error,
}

impl ConnectionChange {
    /// Every value (series created at 0 from the start).
    const ALL: [Self; 4] = [Self::New, Self::Lost, Self::Replaced, Self::EvictedIdle];
}

impl RefusalReason {
    /// Every value (series created at 0 from the start).
    const ALL: [Self; 6] = [
        Self::InboundLimit,
        Self::SelfConnection,
        Self::Banned,
        Self::BannedIp,
        Self::TooManyFromIp,
        Self::TooManyFromPrefix,
    ];
}

impl SetupFailure {
    /// Every value (series created at 0 from the start).
    const ALL: [Self; 18] = [
        Self::Transport,
        Self::Noise,
        Self::Untrusted,
        Self::Replay,
        Self::Banned,
        Self::SelfDial,
        Self::Handshake,
        Self::ChainMismatch,
        Self::NetworkMismatch,
        Self::NoCommonProtocol,
        Self::Timeout,
        Self::Address,
        Self::DialKeyMismatch,
        Self::Evicted,
        Self::RateLimited,
        Self::IpPendingCap,
        Self::PrefixPendingCap,
        Self::PendingCap,
    ];
}

impl PingResult {
    /// Every value (series created at 0 from the start).
    const ALL: [Self; 5] = [
        Self::Ok,
        Self::Timeout,
        Self::TimeoutBusy,
        Self::WrongNonce,
        Self::Error,
    ];
}

impl Metrics {
    /// Creates the counters and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            extensions: ExtensionMetrics::register(registry),
            routing: RoutingMetrics::register(registry),
            ..Self::default()
        };
        registry.register(
            "peerlane_connections",
            "Open connections by origin",
            metrics.connections.clone(),
        );
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_connection_events",
            "Connections registered (new), ended (lost) and replaced by a simultaneous dial",
            metrics.connection_events.clone(),
        );
        registry.register(
            "peerlane_connections_refused",
            "Connections closed right after set-up, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "peerlane_connection_setup_failures",
            "Connections that failed to set up, by origin and reason",
            metrics.setup_failures.clone(),
        );
        registry.register(
            "peerlane_inbound_queue_messages",
            "Inbound messages at the applications' queues: enqueued, dequeued or dropped",
            metrics.inbound_queue.clone(),
        );
        registry.register(
            "peerlane_inbound_decode_failures",
            "Inbound payloads the application's type could not decode (skipped)",
            metrics.decode_failures.clone(),
        );
        registry.register(
            "peerlane_health_pings",
            "Health-check pings we sent, by how they ended",
            metrics.health_pings.clone(),
        );
        registry.register(
            "peerlane_health_disconnects",
            "Peers the health checker disconnected after too many failed pings in a row",
            metrics.health_disconnects.clone(),
        );
        metrics.create_every_series();
        metrics
    }

    /// Creates every series of the documented label sets at 0, so that a dashboard or an
    /// alert reads 0 from the start rather than "no data" until the first event.
    fn create_every_series(&self) {
        const ORIGINS: [ConnectionOrigin; 2] =
            [ConnectionOrigin::Inbound, ConnectionOrigin::Outbound];
        for origin in ORIGINS {
            let origin = Origin(origin);
            let _ = self.connections.get_or_create(&OriginLabels { origin });
            for reason in SetupFailure::ALL {
                let _ = self
                    .setup_failures
                    .get_or_create(&SetupFailureLabels { origin, reason });
            }
        }
        for event in ConnectionChange::ALL {
            let _ = self
                .connection_events
                .get_or_create(&ConnectionChangeLabels { event });
        }
        for reason in RefusalReason::ALL {
            let _ = self.refused.get_or_create(&RefusalLabels { reason });
        }
        for result in PingResult::ALL {
            let _ = self
                .health_pings
                .get_or_create(&PingResultLabels { result });
        }
    }

    /// Open connections with `origin`.
    pub fn connections(&self, origin: ConnectionOrigin) -> i64 {
        self.connections
            .get(&OriginLabels {
                origin: Origin(origin),
            })
            .map_or(0, |gauge| gauge.get())
    }

    /// How many times `event` happened.
    pub fn connection_events(&self, event: ConnectionChange) -> u64 {
        self.connection_events
            .get(&ConnectionChangeLabels { event })
            .map_or(0, |counter| counter.get())
    }

    /// Connections refused for `reason`.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused
            .get(&RefusalLabels { reason })
            .map_or(0, |counter| counter.get())
    }

    /// Set-up failures with `origin` and `reason`.
    pub fn setup_failures(&self, origin: ConnectionOrigin, reason: SetupFailure) -> u64 {
        self.setup_failures
            .get(&SetupFailureLabels {
                origin: Origin(origin),
                reason,
            })
            .map_or(0, |counter| counter.get())
    }

    /// Inbound messages of `protocol` that met `event` at an application's queue.
    pub fn inbound_queue(&self, protocol: ProtocolId, event: QueueEvent) -> u64 {
        self.inbound_queue
            .get(&QueueLabels {
                protocol: Protocol(protocol),
                event,
            })
            .map_or(0, |counter| counter.get())
    }

    /// Inbound payloads of `protocol` that did not decode.
    pub fn decode_failures(&self, protocol: ProtocolId) -> u64 {
        self.decode_failures
            .get(&ProtocolLabels {
                protocol: Protocol(protocol),
            })
            .map_or(0, |counter| counter.get())
    }

    /// Health-check pings that ended with `result`.
    pub fn health_pings(&self, result: PingResult) -> u64 {
        self.health_pings
            .get(&PingResultLabels { result })
            .map_or(0, |counter| counter.get())
    }

    /// Peers the health checker disconnected.
    pub fn health_disconnects(&self) -> u64 {
        self.health_disconnects.get()
    }

    /// The counters of peerlane's own protocols: disconnect notices, chain status, peer
    /// exchange.
    pub fn extensions(&self) -> &ExtensionMetrics {
        &self.extensions
    }

    /// Routing's counters (protocols 67 and 68).
    pub fn routing(&self) -> &RoutingMetrics {
        &self.routing
    }

    pub(crate) fn connection_opened(&self, origin: ConnectionOrigin) {
        self.connections
            .get_or_create(&OriginLabels {
                origin: Origin(origin),
            })
            .inc();
    }

    pub(crate) fn connection_closed(&self, origin: ConnectionOrigin) {
        self.connections
            .get_or_create(&OriginLabels {
                origin: Origin(origin),
            })
            .dec();
    }

    pub(crate) fn record_connection_event(&self, event: ConnectionChange) {
        self.connection_events
            .get_or_create(&ConnectionChangeLabels { event })
            .inc();
    }

    pub(crate) fn record_refused(&self, reason: RefusalReason) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }

    pub(crate) fn record_setup_failure(&self, origin: ConnectionOrigin, reason: SetupFailure) {
        self.setup_failures
            .get_or_create(&SetupFailureLabels {
                origin: Origin(origin),
                reason,
            })
            .inc();
    }

    pub(crate) fn record_queue_event(&self, protocol: ProtocolId, event: QueueEvent) {
        self.record_queue_events(protocol, event, 1);
    }

    /// Counts `n` messages of `protocol` meeting `event` at once.
    pub(crate) fn record_queue_events(&self, protocol: ProtocolId, event: QueueEvent, n: u64) {
        let hot = match event {
            QueueEvent::Enqueued => Some(0),
            QueueEvent::Dequeued => Some(1),
            _ => None,
        };
        if let Some(index) = hot {
            let pair = self.queue_hot.0[usize::from(protocol.as_u8())].get_or_init(|| {
                [QueueEvent::Enqueued, QueueEvent::Dequeued].map(|event| {
                    self.inbound_queue
                        .get_or_create(&QueueLabels {
                            protocol: Protocol(protocol),
                            event,
                        })
                        .clone()
                })
            });
            pair[index].inc_by(n);
            return;
        }
        self.inbound_queue
            .get_or_create(&QueueLabels {
                protocol: Protocol(protocol),
                event,
            })
            .inc_by(n);
    }

    pub(crate) fn record_decode_failure(&self, protocol: ProtocolId) {
        self.decode_failures
            .get_or_create(&ProtocolLabels {
                protocol: Protocol(protocol),
            })
            .inc();
    }

    pub(crate) fn record_health_ping(&self, result: PingResult) {
        self.health_pings
            .get_or_create(&PingResultLabels { result })
            .inc();
    }

    pub(crate) fn record_health_disconnect(&self) {
        self.health_disconnects.inc();
    }
}

impl ConnectionChange {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Lost => "lost",
            Self::Replaced => "replaced",
            Self::EvictedIdle => "evicted_idle",
        }
    }
}

impl RefusalReason {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InboundLimit => "too_many_inbound",
            Self::SelfConnection => "self",
            Self::Banned => "banned",
            Self::BannedIp => "banned_ip",
            Self::TooManyFromIp => "too_many_from_ip",
            Self::TooManyFromPrefix => "too_many_from_prefix",
        }
    }
}

impl SetupFailure {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Noise => "noise",
            Self::Untrusted => "untrusted",
            Self::Replay => "replay",
            Self::Banned => "banned",
            Self::SelfDial => "self",
            Self::Handshake => "handshake",
            Self::ChainMismatch => "chain_mismatch",
            Self::NetworkMismatch => "network_mismatch",
            Self::NoCommonProtocol => "no_common_protocol",
            Self::Timeout => "timeout",
            Self::Address => "address",
            Self::DialKeyMismatch => "dial_key_mismatch",
            Self::Evicted => "evicted",
            Self::RateLimited => "rate_limited",
            Self::IpPendingCap => "ip_pending_cap",
            Self::PrefixPendingCap => "prefix_pending_cap",
            Self::PendingCap => "pending_cap",
        }
    }
}

impl QueueEvent {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Dequeued => "dequeued",
            Self::DroppedNewest => "dropped_newest",
            Self::DroppedOldest => "dropped_oldest",
            Self::Closed => "closed",
            Self::Waited => "waited",
            Self::OverBudget => "over_budget",
            Self::Purged => "purged",
        }
    }
}

impl PingResult {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::TimeoutBusy => "timeout_busy",
            Self::WrongNonce => "wrong_nonce",
            Self::Error => "error",
        }
    }

    /// Whether the ping failed, which counts towards a disconnect.
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Timeout | Self::WrongNonce | Self::Error)
    }
}

netcore::metric_label_value!(
    ConnectionChange,
    RefusalReason,
    SetupFailure,
    QueueEvent,
    PingResult
);

/// [`ConnectionOrigin`] as a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Origin(ConnectionOrigin);

netcore::metric_label_value!(newtype Origin => as_str);

/// [`ProtocolId`] as a label value: AptosNet's name, or `unknown(<id>)` for other ids (at most
/// 256 values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Protocol(ProtocolId);

netcore::metric_label_value!(newtype Protocol => Display);

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OriginLabels {
    origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnectionChangeLabels {
    event: ConnectionChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: RefusalReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SetupFailureLabels {
    origin: Origin,
    reason: SetupFailure,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    protocol: Protocol,
    event: QueueEvent,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PingResultLabels {
    result: PingResult,
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// Registered metrics show up under their full names with `as_str()` label values, and a
    /// sub-registry adds the network label.
    #[test]
    fn registered_metrics_use_prefixed_names_and_enum_labels() {
        let mut registry = Registry::default();
        let metrics =
            Metrics::register(registry.sub_registry_with_label(("network".into(), "vfn".into())));
        metrics.record_refused(RefusalReason::InboundLimit);
        metrics.record_queue_event(ProtocolId::MEMPOOL_DIRECT_SEND, QueueEvent::DroppedNewest);
        metrics.connection_opened(ConnectionOrigin::Inbound);
        metrics.record_health_ping(PingResult::WrongNonce);
        metrics.record_health_disconnect();

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"peerlane_connections_refused_total{network="vfn",reason="too_many_inbound"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"peerlane_inbound_queue_messages_total{network="vfn",protocol="MempoolDirectSend",event="dropped_newest"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"peerlane_health_pings_total{network="vfn",result="wrong_nonce"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"peerlane_health_disconnects_total{network="vfn"} 1"#),
            "{text}"
        );
        assert_eq!(metrics.health_pings(PingResult::WrongNonce), 1);
        assert_eq!(metrics.health_pings(PingResult::Ok), 0);
        assert_eq!(metrics.connections(ConnectionOrigin::Inbound), 1);
        assert_eq!(
            metrics.inbound_queue(ProtocolId::MEMPOOL_DIRECT_SEND, QueueEvent::DroppedNewest),
            1
        );
    }
}
