//! Routed messages over signed edges (protocols ROUTING_SYNC, 67, and ROUTED, 68): the
//! facade's side of the `routing` crate.
//!
//! ```text
//! peer reader ─► Router ─► Intake (67, 68) ─► bounded queue ─┐ (full: dropped, counted)
//! PeersAndMetadata ─► NewPeer / LostPeer ────────────────────┤
//! NetworkClient::send_routed / rpc_routed ─► RoutingHandle ──┤
//! RpcReplier::reply (routed request) ─► RoutingHandle ───────┤
//!                                                            ▼
//!                               RoutingActor: routing::RoutingNode
//!   Action::Send ─► PeerHandle::send_direct (67/68, only to peers that advertised both)
//!   Action::Verify ─► spawn_blocking(verify_batch) ─► RoutingNode::verified
//!   Action::Deliver ─► the application's queue (author as sender) or a pending routed RPC
//!   Action::Ban ─► BanList + Disconnect notice (BadSignature or Banned)
//!   Action::StoreComponent / LoadComponents ─► ComponentStorage (redb store or memory)
//! ```
//!
//! - `routing_actor` (a module of its own): the task. [`metrics`]: [`RoutingMetrics`].
//!   [`storage`]: pruned components. Here: the handle, commands and replies the client, the
//!   router and the intake use.
//! - A network runs routing when `routing.enabled` (on by default) and its PeerId is the
//!   one its key derives (edges are checked against PeerIds read as X25519 keys). It then
//!   offers 67 and 68 in its handshake; AptosNet peers do not, and get no routing traffic.

pub(crate) mod metrics;
pub(crate) mod storage;

use std::time::Duration;

use bytes::Bytes;
use netcore::PeerId;
use routing::{Channel, RoutedHash};
use tokio::sync::{mpsc, oneshot};
use wire::ProtocolId;

pub use metrics::RoutingMetrics;

/// Commands the routing actor takes from clients and repliers; at most this many wait.
pub const ROUTING_COMMAND_QUEUE: usize = 1_024;
/// Routed RPCs of this node waiting for their response, at most; more fail with
/// [`Error::RoutingBusy`](crate::Error::RoutingBusy).
pub const MAX_PENDING_ROUTED_RPCS: usize = 10_000;

/// One message on 67 or 68, from the intake to the routing actor.
pub(crate) struct InboundRouting {
    pub(crate) from: PeerId,
    pub(crate) channel: Channel,
    pub(crate) bytes: Bytes,
}

/// Why the routing actor did not send a message of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendRefused {
    /// The target is not reachable.
    NoRoute,
    /// A bound was reached (the route-back table's share, the pending RPCs).
    Busy,
}

/// What a routed RPC ended with.
pub(crate) enum RpcOutcome {
    Response(Bytes),
    Refused(SendRefused),
}

pub(crate) enum Command {
    /// Send `body` to `target` on `protocol`; the verdict on `verdict`.
    Send {
        target: PeerId,
        protocol: ProtocolId,
        body: Bytes,
        verdict: oneshot::Sender<Result<(), SendRefused>>,
    },
    /// Send a request; the response (or refusal) on `outcome`. Forgotten after `timeout`.
    Rpc {
        target: PeerId,
        protocol: ProtocolId,
        body: Bytes,
        timeout: Duration,
        outcome: oneshot::Sender<RpcOutcome>,
    },
    /// Answer the routed request `request`.
    Reply {
        request: RoutedHash,
        request_id: u64,
        protocol: ProtocolId,
        body: Bytes,
    },
    /// A snapshot of the routing state.
    Snapshot {
        offset: usize,
        limit: usize,
        reply: oneshot::Sender<RoutingSnapshot>,
    },
}

/// The routing state of a network, for display (`GET /routing` on the node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingSnapshot {
    /// Edges held, tombstones included.
    pub edges: usize,
    /// Peers reachable at the last recompute.
    pub reachable: usize,
    /// Connected peers that speak routing.
    pub neighbours: Vec<PeerId>,
    /// Unix time (ms) of the last next-hop recompute.
    pub last_recompute_unix_ms: Option<u64>,
    /// Routes, sorted by target, the page asked for.
    pub routes: Vec<RouteEntry>,
}

/// One target's route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// The target.
    pub target: PeerId,
    /// Hops to it.
    pub distance: u32,
    /// The neighbours that start a shortest path to it.
    pub next_hops: Vec<PeerId>,
}

/// The handle clients and repliers hold on a network's routing actor.
#[derive(Clone, Debug)]
pub(crate) struct RoutingHandle {
    commands: mpsc::Sender<Command>,
}

impl RoutingHandle {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self { commands }
    }

    /// Queues `command` without waiting; `false` if the queue is full or the actor gone.
    pub(crate) fn try_send(&self, command: Command) -> Result<(), RoutingQueueError> {
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => RoutingQueueError::Full,
                mpsc::error::TrySendError::Closed(_) => RoutingQueueError::Closed,
            })
    }

    /// Whether the actor is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Queues `command`, waiting for room.
    pub(crate) async fn send(&self, command: Command) -> Result<(), RoutingQueueError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| RoutingQueueError::Closed)
    }
}

/// Why a command could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoutingQueueError {
    Full,
    Closed,
}

/// Answers a routed RPC request: the response goes back along the way the request came.
pub(crate) struct RoutedResponder {
    pub(crate) handle: RoutingHandle,
    pub(crate) request: RoutedHash,
    pub(crate) request_id: u64,
    pub(crate) protocol: ProtocolId,
}

impl std::fmt::Debug for RoutedResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedResponder")
            .field("request_id", &self.request_id)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl RoutedResponder {
    /// Queues the response for the routing actor. Never waits.
    pub(crate) fn respond(self, body: Bytes) -> Result<(), RoutingQueueError> {
        self.handle.try_send(Command::Reply {
            request: self.request,
            request_id: self.request_id,
            protocol: self.protocol,
            body,
        })
    }
}
