//! The demo's end-of-run summary: figures collected from every network's and actor's
//! metrics, printed as a table or one JSON object.

use std::collections::BTreeMap;

use netcore::ConnectionOrigin;
use peer::metrics::{Direction, DropReason, InboundDropReason, MessageKind};
use peerlane::{Network, QueueEvent, RefusalReason};
use serde_json::json;
use wire::ProtocolId;

use super::{FullNode, Validator, committed_txns, validators_height};

/// The consensus metric whose round trips the RPC latency percentiles are of (they are read
/// from `consensus::VoteLatencies`, exact to three digits, not from its buckets).
const VOTE_LATENCY: &str = "consensus_vote_rpc_latency_seconds";

/// Reasons routed messages are dropped, as `peerlane_routing_routed_dropped_total` labels them.
const ROUTED_DROP_REASONS: [&str; 8] = [
    "ttl",
    "no_route",
    "budget",
    "bad_signature",
    "unknown_route_back",
    "route_back_full",
    "unknown_protocol",
    "send_failed",
];

/// The protocols the demo's networks register, the health checker's included.
fn demo_protocols() -> impl Iterator<Item = ProtocolId> {
    [
        ProtocolId::MEMPOOL_DIRECT_SEND,
        ProtocolId::CONSENSUS_DIRECT_SEND_BCS,
        ProtocolId::CONSENSUS_RPC_BCS,
        ProtocolId::HEALTH_CHECKER_RPC,
    ]
    .into_iter()
    .chain(state_sync::DIRECT_SEND_PROTOCOLS)
    .chain(state_sync::RPC_PROTOCOLS)
}

/// What the demo reports at the end.
pub(super) struct Summary {
    validators: usize,
    duration_s: u64,
    pub(super) blocks_committed: u64,
    transactions_committed: u64,
    pub(super) full_node_caught_up: bool,
    pub(super) full_node_height: u64,
    pub(super) target_height: u64,
    full_node_blocks_fetched: u64,
    full_node_bytes_fetched: u64,
    connections: u64,
    messages_sent: u64,
    bytes_sent: u64,
    sent_by_kind: Vec<(String, u64, u64)>,
    received_by_protocol: Vec<(String, u64)>,
    rpc_p50_us: Option<u64>,
    rpc_p99_us: Option<u64>,
    streamed_messages: u64,
    queue_drops: u64,
    refused_connections: u64,
    topology: String,
    routed_sent: u64,
    routed_forwarded: u64,
    routed_delivered: u64,
    routed_dropped: u64,
}

impl Summary {
    pub(super) fn collect(
        validators: &[Validator],
        full_node: Option<&FullNode>,
        duration_s: u64,
        target_height: u64,
        full_node_caught_up: bool,
        topology: String,
    ) -> Self {
        let networks: Vec<&Network> = validators
            .iter()
            .flat_map(|v| [&v.validator_net, &v.public_net])
            .chain(full_node.map(|n| &n.network))
            .collect();
        let total = |figure: &dyn Fn(&Network) -> u64| networks.iter().map(|n| figure(n)).sum();

        // By label value, as the metric families name them; kinds never sent are left out.
        let mut sent_by_kind: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for kind in MessageKind::ALL {
            let messages = total(&|n| n.peer_metrics().messages(Direction::Sent, kind));
            let bytes = total(&|n| n.peer_metrics().payload_bytes(Direction::Sent, kind));
            if messages > 0 {
                sent_by_kind.insert(kind.as_str(), (messages, bytes));
            }
        }
        let mut received_by_protocol: BTreeMap<String, u64> = BTreeMap::new();
        let mut queue_drops = 0;
        for protocol in demo_protocols() {
            let enqueued = total(&|n| n.metrics().inbound_queue(protocol, QueueEvent::Enqueued));
            if enqueued > 0 {
                received_by_protocol.insert(protocol.to_string(), enqueued);
            }
            for event in [QueueEvent::DroppedNewest, QueueEvent::DroppedOldest] {
                queue_drops += total(&|n| n.metrics().inbound_queue(protocol, event));
            }
        }
        for lane in peer::Priority::ALL {
            for reason in [DropReason::Full, DropReason::Closed] {
                queue_drops += total(&|n| n.peer_metrics().outbound_dropped(lane, reason));
            }
        }
        for kind in MessageKind::ALL {
            for reason in [
                InboundDropReason::UnknownProtocol,
                InboundDropReason::QueueFull,
                InboundDropReason::TooManyRpcs,
            ] {
                queue_drops += total(&|n| n.peer_metrics().inbound_dropped(kind, reason));
            }
        }
        let refused_connections = [
            RefusalReason::InboundLimit,
            RefusalReason::SelfConnection,
            RefusalReason::Banned,
        ]
        .into_iter()
        .map(|reason| total(&|n| n.metrics().refused(reason)))
        .sum();
        let open: i64 = networks
            .iter()
            .flat_map(|n| {
                [ConnectionOrigin::Inbound, ConnectionOrigin::Outbound]
                    .map(|origin| n.metrics().connections(origin))
            })
            .sum();

        // Every validator's vote round trips together.
        let mut latencies = consensus::VoteLatencies::new();
        for validator in validators {
            latencies.merge(&validator.consensus.metrics().vote_latencies());
        }
        // Routed traffic on the validator networks (the public ones do not route).
        let routed = |event| -> u64 {
            validators
                .iter()
                .map(|v| v.validator_net.metrics().routing().routed(event))
                .sum()
        };
        let routed_dropped = validators
            .iter()
            .flat_map(|v| {
                ROUTED_DROP_REASONS
                    .map(|reason| v.validator_net.metrics().routing().routed_dropped(reason))
            })
            .sum();
        let full = full_node.map(|n| n.store.committed_height()).unwrap_or(0);
        Self {
            validators: validators.len(),
            duration_s,
            blocks_committed: validators_height(validators),
            transactions_committed: committed_txns(validators),
            full_node_caught_up,
            full_node_height: full,
            target_height,
            full_node_blocks_fetched: full_node.map_or(0, |n| n.metrics.blocks_fetched()),
            full_node_bytes_fetched: full_node.map_or(0, |n| n.metrics.bytes_fetched()),
            // Every connection is open at both of its ends, both in this process.
            connections: u64::try_from(open.max(0)).unwrap_or(0) / 2,
            messages_sent: sent_by_kind.values().map(|(n, _)| n).sum(),
            bytes_sent: sent_by_kind.values().map(|(_, b)| b).sum(),
            sent_by_kind: sent_by_kind
                .into_iter()
                .map(|(kind, (n, b))| (kind.to_owned(), n, b))
                .collect(),
            received_by_protocol: received_by_protocol.into_iter().collect(),
            rpc_p50_us: latencies.quantile_us(0.5),
            rpc_p99_us: latencies.quantile_us(0.99),
            streamed_messages: total(&|n| n.peer_metrics().streams(Direction::Sent)),
            queue_drops,
            refused_connections,
            topology,
            routed_sent: routed("sent"),
            routed_forwarded: routed("forwarded"),
            routed_delivered: routed("delivered"),
            routed_dropped,
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "validators": self.validators,
            "duration_s": self.duration_s,
            "blocks_committed": self.blocks_committed,
            "transactions_committed": self.transactions_committed,
            "full_node_caught_up": self.full_node_caught_up,
            "full_node_height": self.full_node_height,
            "validator_height": self.target_height,
            "full_node_blocks_fetched": self.full_node_blocks_fetched,
            "full_node_bytes_fetched": self.full_node_bytes_fetched,
            "connections": self.connections,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "sent_by_kind": self.sent_by_kind.iter().map(|(kind, n, b)| {
                (kind.clone(), json!({ "messages": n, "bytes": b }))
            }).collect::<serde_json::Map<_, _>>(),
            "received_by_protocol": self.received_by_protocol.iter().map(|(p, n)| {
                (p.clone(), json!(n))
            }).collect::<serde_json::Map<_, _>>(),
            "rpc_p50_us": self.rpc_p50_us,
            "rpc_p99_us": self.rpc_p99_us,
            "streamed_messages": self.streamed_messages,
            "queue_drops": self.queue_drops,
            "refused_connections": self.refused_connections,
            "topology": self.topology,
            "routed_sent": self.routed_sent,
            "routed_forwarded": self.routed_forwarded,
            "routed_delivered": self.routed_delivered,
            "routed_dropped": self.routed_dropped,
        })
    }

    pub(super) fn print(&self) {
        let rate = self.transactions_committed / self.duration_s.max(1);
        println!();
        println!(
            "summary: {} validators + 1 full node, {} s of load",
            self.validators, self.duration_s
        );
        println!("  {:<28} {}", "connections open", self.connections);
        println!("  {:<28} {}", "blocks committed", self.blocks_committed);
        println!(
            "  {:<28} {} (~{rate}/s)",
            "transactions committed", self.transactions_committed
        );
        println!(
            "  {:<28} {} (height {} of {}; {} blocks, {} fetched)",
            "full node",
            if self.full_node_caught_up {
                "caught up"
            } else {
                "NOT caught up"
            },
            self.full_node_height,
            self.target_height,
            self.full_node_blocks_fetched,
            mib(self.full_node_bytes_fetched),
        );
        println!(
            "  {:<28} {} ({})",
            "messages sent",
            self.messages_sent,
            mib(self.bytes_sent)
        );
        for (kind, n, b) in &self.sent_by_kind {
            println!("    {kind:<26} {n} ({})", mib(*b));
        }
        println!("  {:<28}", "messages received, by protocol");
        for (protocol, n) in &self.received_by_protocol {
            println!("    {protocol:<26} {n}");
        }
        let us = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| format!("{v} µs"));
        println!(
            "  {:<28} p50 {}, p99 {} ({VOTE_LATENCY})",
            "RPC latency (votes)",
            us(self.rpc_p50_us),
            us(self.rpc_p99_us)
        );
        println!(
            "  {:<28} {} (messages above the frame size, sent as fragments)",
            "streamed messages", self.streamed_messages
        );
        println!("  {:<28} {}", "queue drops", self.queue_drops);
        println!(
            "  {:<28} {}",
            "refused connections", self.refused_connections
        );
        println!(
            "  {:<28} {}: {} sent, {} forwarded, {} delivered, {} dropped",
            "routed messages (topology)",
            self.topology,
            self.routed_sent,
            self.routed_forwarded,
            self.routed_delivered,
            self.routed_dropped
        );
    }
}

/// `bytes` in MiB, for people.
fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}
