//! [`NetworkEvents`]: an application's inbound messages and RPC requests, as a [`Stream`] of
//! decoded [`Event`]s; and the router that fills the applications' queues.
//!
//! ```text
//! peer reader task ── InboundRouter::route ──► Router: protocol → application's KeyedSender
//!                                                 │  key (PeerId, ProtocolId), never waits
//!                                                 ▼
//! application task ◄── Event<M> ◄── decode (ProtocolId::from_bytes) ◄── KeyedReceiver
//! ```
//!
//! Decoding happens on the application's side of the queue, in the application's task, so a
//! peer's reader never spends time on application types. A payload that does not decode is
//! logged, counted (`peerlane_inbound_decode_failures_total`) and skipped; the stream goes on.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::stream::SelectAll;
use netcore::PeerId;
use peer::{HeldBack, InboundEvent, InboundRouter, RouteError, RpcResponder, TryRouteError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wire::{NetworkId, ProtocolId};

use crate::error::Error;
use crate::metrics::{Metrics, QueueEvent};
use crate::peers::PeerNetworkId;
use crate::queue::{Dropped, KeyedReceiver, KeyedSender, Overflow};

/// Something a peer sent the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<M> {
    /// A direct-send message.
    Message {
        /// Who sent it.
        peer: PeerNetworkId,
        /// The protocol it came on.
        protocol_id: ProtocolId,
        /// The decoded message.
        message: M,
    },
    /// An RPC request; answer it with `responder`. Dropping the responder sends nothing (the
    /// requester times out), as in AptosNet.
    RpcRequest {
        /// Who sent it.
        peer: PeerNetworkId,
        /// The protocol it came on; the response goes out on the same one.
        protocol_id: ProtocolId,
        /// The decoded request.
        request: M,
        /// Sends the response.
        responder: RpcReplier<M>,
    },
}

/// Answers one inbound RPC request with a value of the application's type, encoded for the
/// request's protocol.
pub struct RpcReplier<M> {
    protocol_id: ProtocolId,
    responder: RpcResponder,
    _message: PhantomData<fn(M)>,
}

/// An application's inbound events on one or several networks: a [`Stream`] of [`Event`]s,
/// fair across peers and protocols (each (peer, protocol) pair has its own bounded queue,
/// popped round-robin), and fair across networks.
///
/// The stream ends when the networks it reads from are shut down and their queues are drained.
/// Dropping it drops what is queued; later messages for the application are dropped and counted
/// (`event="closed"`).
pub struct NetworkEvents<M> {
    parts: SelectAll<EventsPart<M>>,
}

/// The inbound item an application's queue holds.
pub(crate) enum Inbound {
    DirectSend(Bytes),
    Rpc(Bytes, RpcResponder),
}

/// An application's queue on one network.
pub(crate) type AppQueue = KeyedSender<(PeerId, ProtocolId), Inbound>;

/// The events of one network.
struct EventsPart<M> {
    network_id: NetworkId,
    rx: KeyedReceiver<(PeerId, ProtocolId), Inbound>,
    metrics: Metrics,
    _message: PhantomData<fn() -> M>,
}

/// Routes a network's inbound messages to the applications' queues by protocol.
pub(crate) struct Router {
    /// Indexed by protocol id: an array look-up per message rather than a hash.
    apps: Box<[Option<Route>]>,
    metrics: Metrics,
}

/// Where one protocol's messages go.
struct Route {
    queue: AppQueue,
    /// `Some(max_wait)` when the queue applies back-pressure.
    wait: Option<Duration>,
}

impl<M> RpcReplier<M>
where
    M: Serialize,
{
    /// Sends `response` to the requester, encoded for the request's protocol.
    ///
    /// Fails with [`Error::Encode`] if the value does not encode, and with [`Error::Respond`]
    /// if the connection is gone or the request's deadline has passed.
    pub fn reply(self, response: M) -> Result<(), Error> {
        let bytes = self
            .protocol_id
            .to_bytes(&response)
            .map_err(|source| Error::Encode {
                protocol: self.protocol_id,
                source,
            })?;
        self.responder
            .respond(bytes)
            .map_err(|source| Error::Respond {
                protocol: self.protocol_id,
                source: Box::new(source),
            })
    }

    /// The protocol the request came on.
    pub fn protocol_id(&self) -> ProtocolId {
        self.protocol_id
    }
}

impl<M> fmt::Debug for RpcReplier<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcReplier")
            .field("protocol_id", &self.protocol_id)
            .finish_non_exhaustive()
    }
}

impl<M> NetworkEvents<M>
where
    M: DeserializeOwned + Send + 'static,
{
    /// The events of one application on one network.
    pub(crate) fn new(
        network_id: NetworkId,
        rx: KeyedReceiver<(PeerId, ProtocolId), Inbound>,
        metrics: Metrics,
    ) -> Self {
        let mut parts = SelectAll::new();
        parts.push(EventsPart {
            network_id,
            rx,
            metrics,
            _message: PhantomData,
        });
        Self { parts }
    }

    /// One stream over the events of several networks (validator, VFN, public), taking from
    /// each in turn.
    pub fn combine(events: impl IntoIterator<Item = Self>) -> Self {
        let mut parts = SelectAll::new();
        for each in events {
            parts.extend(each.parts);
        }
        Self { parts }
    }
}

impl<M> Stream for NetworkEvents<M>
where
    M: DeserializeOwned + Send + 'static,
{
    type Item = Event<M>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        Pin::new(&mut self.parts).poll_next(cx)
    }
}

impl<M> fmt::Debug for NetworkEvents<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkEvents").finish_non_exhaustive()
    }
}

impl<M> Stream for EventsPart<M>
where
    M: DeserializeOwned,
{
    type Item = Event<M>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        // Loops only over payloads that fail to decode, each of which is skipped.
        loop {
            let Some(((peer_id, protocol_id), inbound)) = std::task::ready!(self.rx.poll_recv(cx))
            else {
                return Poll::Ready(None);
            };
            self.metrics
                .record_queue_event(protocol_id, QueueEvent::Dequeued);
            let peer = PeerNetworkId::new(self.network_id, peer_id);
            let (payload, responder) = match inbound {
                Inbound::DirectSend(payload) => (payload, None),
                Inbound::Rpc(payload, responder) => (payload, Some(responder)),
            };
            let decoded = match protocol_id.from_bytes::<M>(&payload) {
                Ok(decoded) => decoded,
                Err(err) => {
                    self.metrics.record_decode_failure(protocol_id);
                    // Remote input: debug, not warn, so a peer cannot flood the logs.
                    tracing::debug!(
                        %peer,
                        protocol = %protocol_id,
                        len = payload.len(),
                        error = %err,
                        "inbound payload does not decode; skipped"
                    );
                    continue;
                }
            };
            let event = match responder {
                None => Event::Message {
                    peer,
                    protocol_id,
                    message: decoded,
                },
                Some(responder) => Event::RpcRequest {
                    peer,
                    protocol_id,
                    request: decoded,
                    responder: RpcReplier {
                        protocol_id,
                        responder,
                        _message: PhantomData,
                    },
                },
            };
            return Poll::Ready(Some(event));
        }
    }
}

impl Router {
    /// A router over the applications' queues, by protocol.
    pub(crate) fn new(apps: HashMap<ProtocolId, AppQueue>, metrics: Metrics) -> Self {
        let mut routes: Box<[Option<Route>]> = (0..=u8::MAX).map(|_| None).collect();
        for (protocol, queue) in apps {
            let config = queue.config();
            let wait = (config.overflow == Overflow::Wait).then(|| config.max_wait());
            routes[usize::from(protocol.as_u8())] = Some(Route { queue, wait });
        }
        Self {
            apps: routes,
            metrics,
        }
    }

    fn route_of(&self, protocol_id: ProtocolId) -> Result<&Route, RouteError> {
        self.apps[usize::from(protocol_id.as_u8())]
            .as_ref()
            .ok_or(RouteError::UnknownProtocol)
    }

    /// Counts what a push did, and tells the peer whether the message was taken.
    fn outcome(
        &self,
        protocol_id: ProtocolId,
        pushed: Result<(), Dropped<Inbound>>,
    ) -> Result<(), RouteError> {
        match pushed {
            Ok(()) => {
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Enqueued);
                Ok(())
            }
            Err(Dropped::Oldest(_)) => {
                // The new message is queued; the oldest of its (peer, protocol) queue made room.
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Enqueued);
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::DroppedOldest);
                Ok(())
            }
            // `Full` only comes from `try_route`, which handles it; here it is a drop like any.
            Err(Dropped::Newest(_) | Dropped::Full(_)) => {
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::DroppedNewest);
                Err(RouteError::QueueFull)
            }
            Err(Dropped::Closed(_)) => {
                // The application stopped reading: to the peer it is as if its queue is full.
                self.metrics
                    .record_queue_event(protocol_id, QueueEvent::Closed);
                Err(RouteError::QueueFull)
            }
        }
    }
}

/// An inbound event as the key and item of an application's queue.
fn split(event: InboundEvent) -> ((PeerId, ProtocolId), Inbound) {
    match event {
        InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        } => ((sender, protocol_id), Inbound::DirectSend(payload)),
        InboundEvent::RpcRequest {
            sender,
            protocol_id,
            payload,
            responder,
        } => ((sender, protocol_id), Inbound::Rpc(payload, responder)),
    }
}

/// The inverse of [`split`]: an item handed back to the peer for back-pressure.
fn join((sender, protocol_id): (PeerId, ProtocolId), inbound: Inbound) -> InboundEvent {
    match inbound {
        Inbound::DirectSend(payload) => InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        },
        Inbound::Rpc(payload, responder) => InboundEvent::RpcRequest {
            sender,
            protocol_id,
            payload,
            responder,
        },
    }
}

impl InboundRouter for Router {
    /// Never waits: a full back-pressure queue drops the newest here, like a FIFO queue (the
    /// reader calls this once it has waited `max_wait_ms`).
    fn route(&self, event: InboundEvent) -> Result<(), RouteError> {
        let (key, inbound) = split(event);
        let route = self.route_of(key.1)?;
        let pushed = route.queue.push_without_waiting(key, inbound);
        self.outcome(key.1, pushed)
    }

    fn try_route(&self, event: InboundEvent) -> Result<(), TryRouteError> {
        let (key, inbound) = split(event);
        let route = self.route_of(key.1).map_err(TryRouteError::Refused)?;
        match (route.queue.push(key, inbound), route.wait) {
            (Err(Dropped::Full(inbound)), Some(max_wait)) => {
                self.metrics.record_queue_event(key.1, QueueEvent::Waited);
                let room = route.queue.wait_for_room(key);
                let room = Box::pin(async move {
                    // Either way the reader then routes the message without waiting.
                    let _ = tokio::time::timeout(max_wait, room).await;
                });
                Err(TryRouteError::Full(Box::new(HeldBack {
                    event: join(key, inbound),
                    room,
                })))
            }
            (pushed, _) => self.outcome(key.1, pushed).map_err(TryRouteError::Refused),
        }
    }
}
