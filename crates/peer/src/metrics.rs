//! [`Metrics`]: counters of every peer, shared by all connections that are given the same
//! handle. Labels are small enums (values from `as_str()`), never peer ids or free text, so
//! the number of series stays fixed.
//!
//! | name | labels |
//! |------|--------|
//! | `peerlane_peer_messages_total` | `direction` ([`Direction`]), `kind` ([`MessageKind`]) |
//! | `peerlane_peer_payload_bytes_total` | `direction`, `kind` |
//! | `peerlane_peer_outbound_dropped_total` | `lane` ([`Priority`]), `reason` ([`DropReason`]) |
//! | `peerlane_peer_writer_flushes_total` | none |
//! | `peerlane_peer_rpc_failures_total` | `reason` ([`RpcFailure`]) |
//! | `peerlane_peer_unmatched_rpc_responses_total` | `reason` ([`UnmatchedResponse`]) |
//! | `peerlane_peer_inbound_dropped_total` | `kind`, `reason` ([`InboundDropReason`]) |
//! | `peerlane_peer_inbound_rpcs_total` | `outcome` ([`InboundRpcOutcome`]) |
//! | `peerlane_peer_parse_errors_total` | none |
//! | `peerlane_peer_stream_errors_total` | none |
//! | `peerlane_peer_streams_total` | `direction` |
//! | `peerlane_peer_streams_aborted_total` | `reason` ([`StreamAbortReason`]) |
//! | `peerlane_peer_stream_bytes_held` (gauge) | none |
//! | `peerlane_peer_remote_errors_total` | `code` ([`RemoteErrorCode`]) |
//! | `peerlane_peer_disconnects_total` | `reason` ([`DisconnectReason`]) |
//! | `peerlane_peer_inbound_budget_bytes` (gauge) | none |
//! | `peerlane_peer_inbound_budget_waits_total` | none |
//! | `peerlane_peer_rate_limited_total` | `protocol` (AptosNet's name, `Unknown` past id 28), `kind` ([`LimitKind`]) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use wire::{NetworkMessage, ProtocolId};

use crate::disconnect::DisconnectReason;
use crate::priority::Priority;
use crate::rate_limit::LimitKind;

/// Counters for the peer layer. Cloning gives another handle on the same counters.
///
/// [`Metrics::default`] is unregistered (for tests and callers without a registry);
/// [`Metrics::register`] creates the counters and registers them. The getters read them back.
#[derive(Clone, Debug)]
pub struct Metrics {
    messages: Family<MessageLabels, Counter>,
    payload_bytes: Family<MessageLabels, Counter>,
    /// The per-message series of `messages` and `payload_bytes`, resolved once, so that
    /// counting a message is two atomic adds rather than two map look-ups. Indexed by
    /// `[direction][kind]`.
    message_counters: [[(Counter, Counter); MessageKind::ALL.len()]; Direction::ALL.len()],
    outbound_dropped: Family<OutboundDropLabels, Counter>,
    writer_flushes: Counter,
    rpc_failures: Family<RpcFailureLabels, Counter>,
    unmatched_responses: Family<UnmatchedLabels, Counter>,
    inbound_dropped: Family<InboundDropLabels, Counter>,
    inbound_rpcs: Family<InboundRpcLabels, Counter>,
    /// The series of `inbound_rpcs`, resolved once (one per inbound RPC is counted), indexed by
    /// [`InboundRpcOutcome`].
    inbound_rpc_counters: [Counter; InboundRpcOutcome::ALL.len()],
    parse_errors: Counter,
    stream_errors: Counter,
    /// Large messages sent as streams (header + fragments) and received whole after
    /// reassembly, indexed by [`Direction`].
    streams: Family<DirectionLabels, Counter>,
    /// Inbound streams dropped or refused before completing, by reason.
    streams_aborted: Family<StreamAbortLabels, Counter>,
    /// Payload bytes held in unfinished inbound streams, by every connection whose
    /// [`StreamBudget`](crate::StreamBudget) was made with these metrics.
    stream_bytes_held: Gauge,
    remote_errors: Family<RemoteErrorLabels, Counter>,
    disconnects: Family<DisconnectLabels, Counter>,
    rate_limited: Family<RateLimitedLabels, Counter>,
    inbound_budget_bytes: Gauge,
    inbound_budget_waits: Counter,
}

/// Messages and payload bytes by kind, counted locally by one task and added to [`Metrics`]
/// once per batch ([`Metrics::record_tally`]): plain adds per message instead of two atomic
/// adds on counters other threads touch too.
#[derive(Debug, Default)]
pub(crate) struct MessageTally([(u64, u64); MessageKind::ALL.len()]);

impl MessageTally {
    /// Counts one message. (Inline: once per message on the reader and the writer.)
    #[inline]
    pub(crate) fn add(&mut self, message: &NetworkMessage) {
        let counts = &mut self.0[MessageKind::of(message) as usize];
        counts.0 += 1;
        counts.1 += message.payload_len() as u64;
    }
}

impl Metrics {
    /// Creates the counters and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // Series an alert reads exist at 0 from the start, rather than appearing at the first
        // event.
        for reason in DisconnectReason::ALL {
            drop(
                metrics
                    .disconnects
                    .get_or_create(&DisconnectLabels { reason }),
            );
        }
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_peer_messages",
            "Messages taken by the writer or read from connections, by direction and kind",
            metrics.messages.clone(),
        );
        registry.register(
            "peerlane_peer_payload_bytes",
            "Payload bytes taken by the writer or read from connections, by direction and kind",
            metrics.payload_bytes.clone(),
        );
        registry.register(
            "peerlane_peer_outbound_dropped",
            "Outbound messages dropped: refused by a full lane, or left queued at disconnect",
            metrics.outbound_dropped.clone(),
        );
        registry.register(
            "peerlane_peer_writer_flushes",
            "Writer flushes; messages written divided by this is the write batching factor",
            metrics.writer_flushes.clone(),
        );
        registry.register(
            "peerlane_peer_rpc_failures",
            "Outbound RPCs that did not get a response, by reason",
            metrics.rpc_failures.clone(),
        );
        registry.register(
            "peerlane_peer_unmatched_rpc_responses",
            "RPC responses matching no pending request (unknown id, or past its deadline)",
            metrics.unmatched_responses.clone(),
        );
        registry.register(
            "peerlane_peer_inbound_dropped",
            "Inbound direct sends and RPC requests not delivered to an application, by reason",
            metrics.inbound_dropped.clone(),
        );
        registry.register(
            "peerlane_peer_inbound_rpcs",
            "Inbound RPCs delivered to applications, by how they ended",
            metrics.inbound_rpcs.clone(),
        );
        registry.register(
            "peerlane_peer_parse_errors",
            "Inbound frames that did not decode (answered with a parsing error)",
            metrics.parse_errors.clone(),
        );
        registry.register(
            "peerlane_peer_stream_errors",
            "Inbound stream fragments or headers refused by the reassembler",
            metrics.stream_errors.clone(),
        );
        registry.register(
            "peerlane_peer_streams",
            "Large messages sent as a stream of fragments, or received whole after reassembly",
            metrics.streams.clone(),
        );
        registry.register(
            "peerlane_peer_streams_aborted",
            "Inbound streams dropped or refused before completing, by reason",
            metrics.streams_aborted.clone(),
        );
        registry.register(
            "peerlane_peer_stream_bytes_held",
            "Payload bytes held in unfinished inbound streams, all connections together",
            metrics.stream_bytes_held.clone(),
        );
        registry.register(
            "peerlane_peer_remote_errors",
            "Error messages received from remotes, by code",
            metrics.remote_errors.clone(),
        );
        registry.register(
            "peerlane_peer_disconnects",
            "Connections that ended, by reason",
            metrics.disconnects.clone(),
        );
        registry.register(
            "peerlane_peer_rate_limited",
            "Inbound direct sends and RPC requests dropped by the rate limits, by protocol and limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "peerlane_peer_inbound_budget_bytes",
            "Inbound payload bytes decoded and not yet taken by the applications",
            metrics.inbound_budget_bytes.clone(),
        );
        registry.register(
            "peerlane_peer_inbound_budget_waits",
            "Times a reader stopped reading its socket because the inbound byte budget was spent",
            metrics.inbound_budget_waits.clone(),
        );
        metrics
    }

    /// Inbound payload bytes held by budget charges now.
    pub fn inbound_budget_bytes(&self) -> i64 {
        self.inbound_budget_bytes.get()
    }

    /// Charges the inbound byte budget refused (each pauses a reader).
    pub fn inbound_budget_waits(&self) -> u64 {
        self.inbound_budget_waits.get()
    }

    pub(crate) fn record_budget_bytes(&self, bytes: usize, charged: bool) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        if charged {
            self.inbound_budget_bytes.inc_by(bytes);
        } else {
            self.inbound_budget_bytes.dec_by(bytes);
        }
    }

    pub(crate) fn record_budget_wait(&self) {
        self.inbound_budget_waits.inc();
    }

    /// Inbound messages on `protocol` dropped for going over its `kind` limit.
    pub fn rate_limited(&self, protocol: ProtocolId, kind: LimitKind) -> u64 {
        get(
            &self.rate_limited,
            &RateLimitedLabels {
                protocol: ProtocolLabel(protocol.name()),
                kind,
            },
        )
    }

    pub(crate) fn record_rate_limited(&self, protocol: ProtocolId, kind: LimitKind) {
        self.rate_limited
            .get_or_create(&RateLimitedLabels {
                protocol: ProtocolLabel(protocol.name()),
                kind,
            })
            .inc();
    }

    /// Messages of `kind` sent or received.
    pub fn messages(&self, direction: Direction, kind: MessageKind) -> u64 {
        get(&self.messages, &MessageLabels { direction, kind })
    }

    /// Payload bytes of `kind` sent or received.
    pub fn payload_bytes(&self, direction: Direction, kind: MessageKind) -> u64 {
        get(&self.payload_bytes, &MessageLabels { direction, kind })
    }

    /// Outbound messages of `lane` dropped for `reason`.
    pub fn outbound_dropped(&self, lane: Priority, reason: DropReason) -> u64 {
        get(&self.outbound_dropped, &OutboundDropLabels { lane, reason })
    }

    /// Writer flushes.
    pub fn writer_flushes(&self) -> u64 {
        self.writer_flushes.get()
    }

    /// Outbound RPCs that failed for `reason`.
    pub fn rpc_failures(&self, reason: RpcFailure) -> u64 {
        get(&self.rpc_failures, &RpcFailureLabels { reason })
    }

    /// RPC responses that matched no pending request, for `reason`.
    pub fn unmatched_responses(&self, reason: UnmatchedResponse) -> u64 {
        get(&self.unmatched_responses, &UnmatchedLabels { reason })
    }

    /// Inbound messages of `kind` not delivered, for `reason`.
    pub fn inbound_dropped(&self, kind: MessageKind, reason: InboundDropReason) -> u64 {
        get(&self.inbound_dropped, &InboundDropLabels { kind, reason })
    }

    /// Inbound RPCs that ended with `outcome`.
    pub fn inbound_rpcs(&self, outcome: InboundRpcOutcome) -> u64 {
        get(&self.inbound_rpcs, &InboundRpcLabels { outcome })
    }

    /// Inbound frames that did not decode.
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors.get()
    }

    /// Stream pieces the reassembler refused.
    pub fn stream_errors(&self) -> u64 {
        self.stream_errors.get()
    }

    /// Large messages streamed in `direction` (sent as fragments, or reassembled).
    pub fn streams(&self, direction: Direction) -> u64 {
        get(&self.streams, &DirectionLabels { direction })
    }

    /// Inbound streams aborted for `reason`.
    pub fn streams_aborted(&self, reason: StreamAbortReason) -> u64 {
        get(&self.streams_aborted, &StreamAbortLabels { reason })
    }

    /// Payload bytes held in unfinished inbound streams now.
    pub fn stream_bytes_held(&self) -> i64 {
        self.stream_bytes_held.get()
    }

    /// Error messages received with `code`.
    pub fn remote_errors(&self, code: RemoteErrorCode) -> u64 {
        get(&self.remote_errors, &RemoteErrorLabels { code })
    }

    /// Connections that ended for `reason`.
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        get(&self.disconnects, &DisconnectLabels { reason })
    }

    #[cfg(test)]
    pub(crate) fn record_message(&self, direction: Direction, message: &NetworkMessage) {
        let kind = MessageKind::of(message);
        let (messages, bytes) = &self.message_counters[direction as usize][kind as usize];
        messages.inc();
        bytes.inc_by(message.payload_len() as u64);
    }

    /// Adds what `tally` counted, in `direction`, and empties it.
    pub(crate) fn record_tally(&self, direction: Direction, tally: &mut MessageTally) {
        for (kind, counts) in tally.0.iter_mut().enumerate() {
            let (messages, bytes) = std::mem::take(counts);
            if messages > 0 {
                let (message_counter, byte_counter) =
                    &self.message_counters[direction as usize][kind];
                message_counter.inc_by(messages);
                byte_counter.inc_by(bytes);
            }
        }
    }

    pub(crate) fn record_outbound_dropped(&self, lane: Priority, reason: DropReason, count: u64) {
        if count > 0 {
            self.outbound_dropped
                .get_or_create(&OutboundDropLabels { lane, reason })
                .inc_by(count);
        }
    }

    pub(crate) fn record_flush(&self) {
        self.writer_flushes.inc();
    }

    pub(crate) fn record_rpc_failure(&self, reason: RpcFailure) {
        self.rpc_failures
            .get_or_create(&RpcFailureLabels { reason })
            .inc();
    }

    pub(crate) fn record_unmatched_response(&self, reason: UnmatchedResponse) {
        self.unmatched_responses
            .get_or_create(&UnmatchedLabels { reason })
            .inc();
    }

    pub(crate) fn record_inbound_dropped(&self, kind: MessageKind, reason: InboundDropReason) {
        self.inbound_dropped
            .get_or_create(&InboundDropLabels { kind, reason })
            .inc();
    }

    pub(crate) fn record_inbound_rpc(&self, outcome: InboundRpcOutcome) {
        self.inbound_rpc_counters[outcome as usize].inc();
    }

    pub(crate) fn record_parse_error(&self) {
        self.parse_errors.inc();
    }

    pub(crate) fn record_stream_error(&self) {
        self.stream_errors.inc();
    }

    pub(crate) fn record_stream(&self, direction: Direction) {
        self.streams
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    pub(crate) fn record_stream_aborted(&self, reason: StreamAbortReason) {
        self.streams_aborted
            .get_or_create(&StreamAbortLabels { reason })
            .inc();
    }

    /// Another handle on the bytes-held gauge, for a [`StreamBudget`](crate::StreamBudget).
    pub(crate) fn stream_bytes_held_gauge(&self) -> Gauge {
        self.stream_bytes_held.clone()
    }

    pub(crate) fn record_remote_error(&self, code: RemoteErrorCode) {
        self.remote_errors
            .get_or_create(&RemoteErrorLabels { code })
            .inc();
    }

    pub(crate) fn record_disconnect(&self, reason: DisconnectReason) {
        self.disconnects
            .get_or_create(&DisconnectLabels { reason })
            .inc();
    }
}

impl Default for Metrics {
    /// Unregistered counters. The message series are created up front (at zero).
    fn default() -> Self {
        let messages = Family::<MessageLabels, Counter>::default();
        let payload_bytes = Family::<MessageLabels, Counter>::default();
        let message_counters = Direction::ALL.map(|direction| {
            MessageKind::ALL.map(|kind| {
                let labels = MessageLabels { direction, kind };
                (
                    messages.get_or_create(&labels).clone(),
                    payload_bytes.get_or_create(&labels).clone(),
                )
            })
        });
        // Created up front, so that the series an alert reads exist at 0 from the start.
        let inbound_rpcs = Family::<InboundRpcLabels, Counter>::default();
        let inbound_rpc_counters = InboundRpcOutcome::ALL.map(|outcome| {
            inbound_rpcs
                .get_or_create(&InboundRpcLabels { outcome })
                .clone()
        });
        Self {
            messages,
            payload_bytes,
            message_counters,
            outbound_dropped: Family::default(),
            writer_flushes: Counter::default(),
            rpc_failures: Family::default(),
            unmatched_responses: Family::default(),
            inbound_dropped: Family::default(),
            inbound_rpcs,
            inbound_rpc_counters,
            parse_errors: Counter::default(),
            stream_errors: Counter::default(),
            streams: Family::default(),
            streams_aborted: Family::default(),
            stream_bytes_held: Gauge::default(),
            remote_errors: Family::default(),
            disconnects: Family::default(),
            rate_limited: Family::default(),
            inbound_budget_bytes: Gauge::default(),
            inbound_budget_waits: Counter::default(),
        }
    }
}

netcore::metric_label_enum! {
    /// Whether a message was sent or received: the `direction` label.
    pub enum Direction {
        /// Written to the connection.
        Sent => "sent",
        /// Read from the connection.
        Received => "received",
    }
}

impl Direction {
    /// Every direction, in declaration order.
    pub const ALL: [Self; 2] = [Self::Sent, Self::Received];
}

netcore::metric_label_enum! {
    /// A message's `NetworkMessage` variant: the `kind` label.
    pub enum MessageKind {
        /// `DirectSendMsg`.
        DirectSend => "direct_send",
        /// `RpcRequest`.
        RpcRequest => "rpc_request",
        /// `RpcResponse`.
        RpcResponse => "rpc_response",
        /// `Error`.
        Error => "error",
    }
}

impl MessageKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 4] = [
        Self::DirectSend,
        Self::RpcRequest,
        Self::RpcResponse,
        Self::Error,
    ];

    /// The kind of `message`.
    pub fn of(message: &NetworkMessage) -> Self {
        match message {
            NetworkMessage::DirectSendMsg(_) => Self::DirectSend,
            NetworkMessage::RpcRequest(_) => Self::RpcRequest,
            NetworkMessage::RpcResponse(_) => Self::RpcResponse,
            NetworkMessage::Error(_) => Self::Error,
        }
    }
}

netcore::metric_label_enum! {
    /// Why an outbound message was dropped: the `reason` label of
    /// `peerlane_peer_outbound_dropped_total`.
    pub enum DropReason {
        /// Its lane was full when it was pushed ([`Error::QueueFull`](crate::Error::QueueFull)).
        Full => "full",
        /// It was still queued when the connection ended and the writer stopped (write error, or
        /// the close timeout passed).
        Closed => "closed",
    }
}

netcore::metric_label_enum! {
    /// Why an outbound RPC failed: the `reason` label of `peerlane_peer_rpc_failures_total`.
    pub enum RpcFailure {
        /// No response within the caller's timeout.
        Timeout => "timeout",
        /// The peer disconnected first.
        Disconnected => "disconnected",
        /// The request's lane was full.
        QueueFull => "queue_full",
        /// Too many RPCs were pending already.
        TooManyPending => "too_many_pending",
        /// The remote answered `NotSupported`.
        RemoteNotSupported => "remote_not_supported",
        /// The caller dropped the future before it completed.
        Cancelled => "cancelled",
    }
}

netcore::metric_label_enum! {
    /// Why an RPC response matched no request: the `reason` label of
    /// `peerlane_peer_unmatched_rpc_responses_total`.
    pub enum UnmatchedResponse {
        /// No pending request had its id (never sent, cancelled, or timed out earlier).
        Unknown => "unknown",
        /// Its request was still pending but past its deadline.
        Expired => "expired",
    }
}

netcore::metric_label_enum! {
    /// Why an inbound message was not delivered: the `reason` label of
    /// `peerlane_peer_inbound_dropped_total`.
    pub enum InboundDropReason {
        /// No application serves its protocol (answered with `NotSupported`).
        UnknownProtocol => "unknown_protocol",
        /// The application's inbound queue was full.
        QueueFull => "queue_full",
        /// `max_concurrent_inbound_rpcs` requests were being answered already (dropped
        /// unanswered, as AptosNet does).
        TooManyRpcs => "too_many_rpcs",
    }
}

netcore::metric_label_enum! {
    /// How an inbound RPC handed to an application ended: the `outcome` label of
    /// `peerlane_peer_inbound_rpcs_total`.
    pub enum InboundRpcOutcome {
        /// Answered in time.
        Answered => "answered",
        /// The responder was dropped without answering (also when the router refused it).
        Unanswered => "unanswered",
        /// The deadline passed unanswered and the slot was freed.
        Expired => "expired",
        /// An answer came after the deadline and was refused.
        Late => "late",
    }
}

impl InboundRpcOutcome {
    /// Every outcome.
    const ALL: [Self; 4] = [Self::Answered, Self::Unanswered, Self::Expired, Self::Late];
}

netcore::metric_label_enum! {
    /// Why an inbound stream ended before its last fragment: the `reason` label of
    /// `peerlane_peer_streams_aborted_total`.
    pub enum StreamAbortReason {
        /// Its last fragment did not come within `stream_reassembly_timeout` of its header; the
        /// connection was closed ([`DisconnectReason::StreamTimeout`]).
        Timeout => "timeout",
        /// It would have taken the node's unfinished streams over `max_stream_bytes_in_flight`;
        /// the connection was closed ([`DisconnectReason::StreamBudgetExceeded`]).
        BudgetExceeded => "budget_exceeded",
        /// Its header declared, or its fragments added up to, more than the peer's maximum
        /// message size; the connection was closed ([`DisconnectReason::MessageTooLarge`]).
        TooLarge => "too_large",
        /// A new header arrived before its last fragment and replaced it.
        Replaced => "replaced",
        /// A header that cannot start a stream (no fragments, an `Error` message), or a
        /// fragment of another stream or out of order, which drops the stream in progress.
        Invalid => "invalid",
        /// The connection ended, for another reason, before its last fragment.
        ConnectionClosed => "connection_closed",
    }
}

netcore::metric_label_enum! {
    /// The code of an Error message from the remote: the `code` label of
    /// `peerlane_peer_remote_errors_total`.
    pub enum RemoteErrorCode {
        /// `ParsingError`: a frame of ours did not decode.
        ParsingError => "parsing_error",
        /// `NotSupported`: it does not serve a protocol we used.
        NotSupported => "not_supported",
    }
}

/// A protocol as a label value: its AptosNet name, so custom ids share `Unknown` and the
/// series stay few.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ProtocolLabel(&'static str);

netcore::metric_label_value!(LimitKind, DisconnectReason, Priority);
netcore::metric_label_value!(newtype ProtocolLabel => Display);

fn get<L>(family: &Family<L, Counter>, labels: &L) -> u64
where
    L: Clone + Eq + std::hash::Hash,
{
    family.get(labels).map_or(0, |counter| counter.get())
}

/// The label set of `peerlane_peer_streams_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    direction: Direction,
    kind: MessageKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutboundDropLabels {
    lane: Priority,
    reason: DropReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcFailureLabels {
    reason: RpcFailure,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UnmatchedLabels {
    reason: UnmatchedResponse,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InboundDropLabels {
    kind: MessageKind,
    reason: InboundDropReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InboundRpcLabels {
    outcome: InboundRpcOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RemoteErrorLabels {
    code: RemoteErrorCode,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamAbortLabels {
    reason: StreamAbortReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DisconnectLabels {
    reason: DisconnectReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RateLimitedLabels {
    protocol: ProtocolLabel,
    kind: LimitKind,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prometheus_client::encoding::text::encode;
    use wire::{DirectSendMsg, ProtocolId};

    use super::*;

    /// Registered counters show up under their full names with `as_str()` label values, and
    /// the getters read them back.
    #[test]
    fn registered_counters_use_prefixed_names_and_enum_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let message = NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
            priority: 0,
            raw_msg: Bytes::from_static(b"hello"),
        });
        metrics.record_message(Direction::Sent, &message);
        metrics.record_outbound_dropped(Priority::Low, DropReason::Full, 2);
        metrics.record_outbound_dropped(Priority::High, DropReason::Closed, 0);
        metrics.record_disconnect(DisconnectReason::FrameTooLarge);
        metrics.record_inbound_dropped(MessageKind::RpcRequest, InboundDropReason::TooManyRpcs);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"peerlane_peer_messages_total{direction="sent",kind="direct_send"} 1"#,
            r#"peerlane_peer_payload_bytes_total{direction="sent",kind="direct_send"} 5"#,
            r#"peerlane_peer_outbound_dropped_total{lane="low",reason="full"} 2"#,
            r#"peerlane_peer_disconnects_total{reason="frame_too_large"} 1"#,
            r#"peerlane_peer_inbound_dropped_total{kind="rpc_request",reason="too_many_rpcs"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // A zero count creates no series.
        assert!(!text.contains(r#"lane="high""#));
        assert_eq!(
            metrics.messages(Direction::Sent, MessageKind::DirectSend),
            1
        );
        assert_eq!(metrics.outbound_dropped(Priority::Low, DropReason::Full), 2);
        assert_eq!(metrics.disconnects(DisconnectReason::Io), 0);
    }
}
