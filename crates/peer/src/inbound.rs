//! What the reader hands to the applications: [`InboundEvent`]s through an
//! [`InboundRouter`], and an [`RpcResponder`] with each request.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use netcore::PeerId;
use tokio::time::Instant;
use wire::{NetworkMessage, ProtocolId, RequestId, RpcResponse};

use crate::error::Error;
use crate::metrics::InboundRpcOutcome;
use crate::priority::Priority;
use crate::rpc::InboundSlot;
use crate::shared::Shared;

/// A message from the remote for one of our applications.
#[derive(Debug)]
pub enum InboundEvent {
    /// A one-way message.
    DirectSend {
        /// The remote's PeerId.
        sender: PeerId,
        /// Its protocol.
        protocol_id: ProtocolId,
        /// The encoded message (decode it with `protocol_id.from_bytes`).
        payload: Bytes,
    },
    /// An RPC request; answer it through `responder` within `inbound_rpc_timeout`.
    RpcRequest {
        /// The remote's PeerId.
        sender: PeerId,
        /// Its protocol.
        protocol_id: ProtocolId,
        /// The encoded request.
        payload: Bytes,
        /// Sends the response back on this connection.
        responder: RpcResponder,
    },
}

impl InboundEvent {
    /// The remote's PeerId.
    pub fn sender(&self) -> PeerId {
        match self {
            Self::DirectSend { sender, .. } | Self::RpcRequest { sender, .. } => *sender,
        }
    }

    /// The message's protocol.
    pub fn protocol_id(&self) -> ProtocolId {
        match self {
            Self::DirectSend { protocol_id, .. } | Self::RpcRequest { protocol_id, .. } => {
                *protocol_id
            }
        }
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        match self {
            Self::DirectSend { payload, .. } | Self::RpcRequest { payload, .. } => payload,
        }
    }
}

/// Where the reader sends inbound messages: usually the facade's per-application queues, keyed
/// by protocol.
pub trait InboundRouter: Send + Sync + 'static {
    /// Hands one inbound DirectSend / RPC request to its application. Must not block or await.
    ///
    /// On `Err` the event is dropped (an RPC's responder with it, which frees its slot). The
    /// peer counts both errors; for [`RouteError::UnknownProtocol`] it also tells the remote,
    /// with `Error(NotSupported(..))`.
    fn route(&self, event: InboundEvent) -> Result<(), RouteError>;

    /// Like [`route`](Self::route), but an application queue that applies back-pressure may
    /// hand the event back instead of dropping it ([`TryRouteError::Full`]). The reader then
    /// stops reading the socket until the returned future resolves, and hands the event to
    /// [`route`](Self::route), which must not wait: so the router decides how long the reader
    /// may wait (the future should resolve at a deadline even if no room appeared), and what
    /// `route` does with an event that still does not fit.
    ///
    /// The default never asks to wait.
    fn try_route(&self, event: InboundEvent) -> Result<(), TryRouteError> {
        self.route(event).map_err(TryRouteError::Refused)
    }

    /// Hands a run of DirectSends from `sender`, read one after another from its socket
    /// (`(protocol, payload)` pairs, in order), to their applications: as
    /// [`try_route`](Self::try_route) for each, from the front of `run`, but a router may queue
    /// several together (one lock and one budget charge rather than one per message). Each
    /// message refused (dropped) is reported to `refused`. Stops at the first message a queue
    /// hands back for back-pressure and returns it; the messages after it stay in `run`, for
    /// the reader to hand over once it has waited and routed the one handed back.
    ///
    /// The default calls `try_route` for each.
    fn try_route_direct_sends(
        &self,
        sender: PeerId,
        run: &mut VecDeque<(ProtocolId, Bytes)>,
        refused: &mut dyn FnMut(ProtocolId, RouteError),
    ) -> Option<HeldBack> {
        while let Some((protocol_id, payload)) = run.pop_front() {
            if let Some(held) = self.try_route_direct_send(sender, protocol_id, payload, refused) {
                return Some(held);
            }
        }
        None
    }

    /// One DirectSend of a run through [`try_route`](Self::try_route): a refusal is reported
    /// to `refused`, a message handed back for back-pressure is returned.
    fn try_route_direct_send(
        &self,
        sender: PeerId,
        protocol_id: ProtocolId,
        payload: Bytes,
        refused: &mut dyn FnMut(ProtocolId, RouteError),
    ) -> Option<HeldBack> {
        let event = InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        };
        match self.try_route(event) {
            Ok(()) => None,
            Err(TryRouteError::Refused(err)) => {
                refused(protocol_id, err);
                None
            }
            Err(TryRouteError::Full(held)) => Some(*held),
        }
    }

    /// Called by the reader once it has routed what it had at hand: when the socket has
    /// nothing more ready, every [`ROUTE_FLUSH_EVERY`](crate::ROUTE_FLUSH_EVERY) events, and before
    /// it waits for room. A router may hold back wake-ups of the applications' tasks until
    /// then, so that a burst of messages from one socket read costs one wake-up rather than one
    /// per message. Must not block. The default does nothing.
    fn flush(&self) {}
}

/// A future an [`InboundRouter`] hands the reader with [`TryRouteError::Full`]: it resolves
/// when the reader should try again.
pub type RoomFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Why [`InboundRouter::try_route`] did not take an event.
#[derive(Debug)]
pub enum TryRouteError {
    /// Dropped, as by [`InboundRouter::route`].
    Refused(RouteError),
    /// The application's queue is full and asks for back-pressure: the event comes back, to
    /// be handed to [`InboundRouter::route`] once its `room` resolves. Boxed: rare, and it
    /// keeps the common `Ok` small.
    Full(Box<HeldBack>),
}

/// An event a back-pressure queue handed back, and when to try again.
pub struct HeldBack {
    /// The event, not delivered yet.
    pub event: InboundEvent,
    /// Resolves when there may be room, or when the router stops waiting.
    pub room: RoomFuture,
}

impl fmt::Debug for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldBack")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

/// Why an [`InboundRouter`] did not take an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteError {
    /// No application serves the event's protocol.
    UnknownProtocol,
    /// The application's inbound queue is full.
    QueueFull,
}

impl RouteError {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownProtocol => "unknown_protocol",
            Self::QueueFull => "queue_full",
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answers one inbound RPC request on the connection it came from.
///
/// [`respond`](Self::respond) queues the response on the high lane with the request's id.
/// Dropping the responder without responding sends nothing and frees the request's slot
/// (counted as unanswered, logged at debug: applications may decline to answer). At the
/// deadline the slot is freed whether or not the responder is still held, and a later answer
/// is refused.
///
/// The responder does not keep the connection alive.
pub struct RpcResponder {
    shared: Weak<Shared>,
    slot: InboundSlot,
    request_id: RequestId,
    protocol_id: ProtocolId,
    deadline: Instant,
    done: bool,
}

impl RpcResponder {
    pub(crate) fn new(
        shared: Weak<Shared>,
        slot: InboundSlot,
        request_id: RequestId,
        protocol_id: ProtocolId,
        deadline: Instant,
    ) -> Self {
        Self {
            shared,
            slot,
            request_id,
            protocol_id,
            deadline,
            done: false,
        }
    }

    /// Queues `payload` as the response. Never waits.
    ///
    /// Responses go out on the high lane (a remote is waiting on each one) but are held to
    /// bounds of their own, as large as a lane's (`outbound_lane_capacity` messages,
    /// `max_queued_bytes` bytes for the peer's role, any one response when none is queued):
    /// our own high-priority messages do not take their room, nor they theirs.
    ///
    /// Fails with [`Error::InboundRpcExpired`] after the deadline (counted as late),
    /// [`Error::Disconnected`] when the connection is gone, [`Error::QueueFull`] (`High`)
    /// when the responses' bounds are reached and [`Error::MessageTooLarge`] above the maximum
    /// message size. Nothing is sent on failure.
    pub fn respond(mut self, payload: Bytes) -> Result<(), Error> {
        let (shared, response) = self.prepare(payload)?;
        let pushed = shared.lanes.push_response(response);
        record_answer(&shared, &pushed);
        pushed
    }

    /// [`respond`](Self::respond), but waits for room while the responses' bounds are
    /// reached instead of failing with [`Error::QueueFull`]: for a server answering with
    /// large payloads (many MiB each) that would rather slow down than drop answers.
    ///
    /// Waits at most until the request's [`deadline`](Self::deadline), then fails with
    /// [`Error::InboundRpcExpired`] (counted as late); fails with [`Error::Disconnected`] when
    /// the connection closes meanwhile. The request's slot is freed when the wait starts.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits drops the response, counted as a high-lane drop
    /// (`peerlane_peer_outbound_dropped_total{lane="high",reason="full"}`).
    pub async fn respond_wait(mut self, payload: Bytes) -> Result<(), Error> {
        let (shared, response) = self.prepare(payload)?;
        let pushed =
            tokio::time::timeout_at(self.deadline, shared.lanes.push_response_wait(response)).await;
        let Ok(pushed) = pushed else {
            shared.metrics.record_inbound_rpc(InboundRpcOutcome::Late);
            return Err(Error::InboundRpcExpired {
                protocol: self.protocol_id,
                request_id: self.request_id,
                timeout: shared.config.inbound_rpc_timeout,
            });
        };
        record_answer(&shared, &pushed);
        pushed
    }

    /// Checks the answer and frees the request's slot: the connection and the response to
    /// queue, or why there is none (nothing is sent then).
    fn prepare(&mut self, payload: Bytes) -> Result<(Arc<Shared>, NetworkMessage), Error> {
        self.done = true;
        let shared = self.shared.upgrade().ok_or(Error::Disconnected)?;
        if let Err(err) = shared.lanes.check_payload(payload.len()) {
            shared.rpcs.drop_inbound(self.slot);
            return Err(err);
        }
        let rpc = shared.rpcs.answer_inbound(
            self.slot,
            self.request_id,
            self.protocol_id,
            Instant::now(),
        )?;
        let response = NetworkMessage::RpcResponse(RpcResponse {
            request_id: rpc.request_id,
            priority: Priority::High.wire_byte(),
            raw_response: payload,
        });
        Ok((shared, response))
    }

    /// The request's protocol.
    pub fn protocol_id(&self) -> ProtocolId {
        self.protocol_id
    }

    /// The id the remote gave the request.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// When the request's slot is freed and answers stop being accepted: its arrival plus
    /// `inbound_rpc_timeout`. A tokio instant, so it follows a paused test clock.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Counts how the answer to an inbound RPC ended once its response was queued or refused.
fn record_answer(shared: &Shared, pushed: &Result<(), Error>) {
    let outcome = if pushed.is_ok() {
        InboundRpcOutcome::Answered
    } else {
        InboundRpcOutcome::Unanswered
    };
    shared.metrics.record_inbound_rpc(outcome);
}

impl fmt::Debug for RpcResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcResponder")
            .field("request_id", &self.request_id)
            .field("protocol_id", &self.protocol_id)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Drop for RpcResponder {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.rpcs.drop_inbound(self.slot);
        }
    }
}
