//! The reader task: decodes frames, reassembles streams and dispatches each message without
//! ever awaiting an application.
//!
//! # What costs the connection
//!
//! | inbound problem | what we do |
//! |---|---|
//! | frame that is not valid BCS | reply `Error(ParsingError(first two bytes))`, count, go on |
//! | unknown protocol | reply `Error(NotSupported(..))`, count, go on |
//! | application queue full, too many inbound RPCs | drop the message, count, go on |
//! | bad stream piece (reassembly error) | drop that stream, count, go on |
//! | stream over the remote's maximum size, past its deadline, or over the node's stream budget | disconnect: see `inbound_streams` |
//! | unknown or expired RPC response id | drop it, count, go on |
//! | `Error` message from the remote | count and log; `NotSupported` fails our oldest RPC on that protocol |
//! | length prefix above `max_frame_size` | disconnect: [`DisconnectReason::FrameTooLarge`] |
//! | EOF inside a frame | disconnect: [`DisconnectReason::TruncatedFrame`] |
//! | Noise frame that does not decrypt | disconnect: [`DisconnectReason::DecryptFailed`] |
//! | other I/O error | disconnect: [`DisconnectReason::Io`] |
//! | EOF between frames | disconnect: [`DisconnectReason::RemoteClosed`] |
//! | DirectSend or RPC request over its protocol's rate limits | drop it (no answer), count, go on ([`RateGate`]) |
//! | sustained flood over the rate limits | disconnect: [`DisconnectReason::RateLimited`] |

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tracing::{debug, trace};
use wire::{
    ErrorCode, MultiplexMessage, MultiplexMessageStream, NetworkMessage, NotSupportedType,
    ProtocolId, RpcRequest,
};

use crate::deadline_table::Refused;
use crate::disconnect::{DisconnectReason, read_disconnect_reason};
use crate::error::ErrorChain;
use crate::inbound::{
    HeldBack, InboundEvent, InboundRouter, RouteError, RpcResponder, TryRouteError,
};
use crate::inbound_streams::InboundStreams;
use crate::lifecycle::TaskExit;
use crate::metrics::{Direction, InboundDropReason, MessageKind, MessageTally, RemoteErrorCode};
use crate::priority::Priority;
use crate::rate_gate::RateGate;
use crate::shared::Shared;

/// The reader calls [`InboundRouter::flush`] at least once per this many events routed, even
/// while the socket keeps having data: a bound on how long an application may sleep on a
/// non-empty queue, while a burst still costs few wake-ups.
pub const ROUTE_FLUSH_EVERY: usize = 64;

/// Frames the reader takes from the socket per wake-up, before it handles them.
const READ_BATCH: usize = 64;

/// The reader actor: owns the read half of the socket and the reassembler.
pub(crate) struct Reader<R> {
    shared: Arc<Shared>,
    stream: MultiplexMessageStream<R>,
    streams: InboundStreams,
    router: Arc<dyn InboundRouter>,
    /// Events routed since the last [`InboundRouter::flush`].
    unflushed: usize,
    /// DirectSends read in a row and not yet handed to the router: handed over together
    /// ([`InboundRouter::try_route_direct_sends`]) once something else comes or the batch of
    /// frames ends. Keeps its capacity (a batch's worth) between batches.
    run: VecDeque<(ProtocolId, Bytes)>,
    /// Messages received and not yet added to the metrics (once per batch of frames).
    tally: MessageTally,
    /// Outbound RPCs answered by the current batch of frames: from the second on, their
    /// callers were woken together and the writer is told to expect their next messages
    /// ([`Lanes::expect_burst`](crate::lanes::Lanes::expect_burst)).
    answered_in_batch: usize,
    /// When the current batch of frames was read: the time its messages arrived, for the rate
    /// limits, the RPC tables and the stream deadlines. One clock read per batch rather than
    /// per message; read again after waiting for an application's room.
    batch_read_at: Instant,
    rate_gate: RateGate,
    _exit: Arc<TaskExit>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        reader: R,
        router: Arc<dyn InboundRouter>,
        streams: InboundStreams,
        exit: Arc<TaskExit>,
    ) -> Self {
        let rate_gate = RateGate::new(&shared);
        Self {
            stream: MultiplexMessageStream::with_max_frame_size(reader, streams.max_frame_size()),
            streams,
            shared,
            router,
            unflushed: 0,
            run: VecDeque::new(),
            tally: MessageTally::default(),
            answered_in_batch: 0,
            batch_read_at: Instant::now(),
            rate_gate,
            _exit: exit,
        }
    }

    /// Reads and dispatches until the connection ends, then starts closing the peer.
    pub(crate) async fn run(mut self) {
        let cancel = self.shared.lifecycle.cancel_token().clone();
        // Made once: polling it again is cheaper than making a new one per frame.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let shared = self.shared.clone();
        let timer_moved = shared.rpcs.timer_moved();
        let moved = timer_moved.notified();
        tokio::pin!(moved);
        // Grows with the first batches and keeps its size: an idle connection that never
        // received a message holds none (`READ_BATCH` of them would be 5 KiB per connection).
        let mut frames = Vec::new();
        // The connection's one timer: fires at the deadline of the stream in progress, whatever
        // else the remote sends, and when an outbound RPC may be due (`rpc_tables`).
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut rpc_due = shared.rpcs.timer_deadline();
        let reason = 'read: loop {
            let stream_deadline = self.streams.deadline();
            let wake_at = earliest(stream_deadline, rpc_due);
            if let Some(at) = wake_at
                && timer.deadline() != at
            {
                timer.as_mut().reset(at);
            }
            tokio::select! {
                // Local work first: once the peer is closing we take nothing more from the
                // remote.
                biased;
                // Disconnect, shutdown, or the writer failed. `begin_close` below keeps the
                // reason recorded first.
                () = &mut cancelled => break DisconnectReason::Shutdown,
                // Before the frames, so that a busy socket cannot hold it off.
                () = &mut timer, if wake_at.is_some() => {
                    let now = Instant::now();
                    if stream_deadline.is_some_and(|deadline| deadline <= now) {
                        break DisconnectReason::StreamTimeout;
                    }
                    rpc_due = shared.rpcs.expire_due(now);
                }
                () = &mut moved => {
                    moved.set(timer_moved.notified());
                    rpc_due = shared.rpcs.timer_deadline();
                }
                // Cancel-safe: a partial frame stays in the stream's read buffer, and frames
                // are only taken when this completes.
                () = poll_fn(|cx| self.poll_frames(cx, &mut frames)) => {}
            }
            self.answered_in_batch = 0;
            if !frames.is_empty() {
                self.batch_read_at = Instant::now();
            }
            let mut items = frames.drain(..).peekable();
            loop {
                // DirectSends gather in `run` while more follow; anything else, and the end of
                // the batch, first hands the run over, so that messages stay in order.
                let blocked = if self.run.is_empty() || items.peek().is_some_and(is_direct_send) {
                    match items.next() {
                        None => break,
                        Some(Some(Ok(message))) => match self.handle_frame(message) {
                            Ok(blocked) => blocked,
                            Err(reason) => break 'read reason,
                        },
                        Some(Some(Err(err))) if err.is_recoverable() => {
                            self.handle_malformed_frame(&err);
                            None
                        }
                        Some(Some(Err(err))) => {
                            let reason = read_disconnect_reason(&err);
                            debug!(error = %ErrorChain(&err), %reason, "read failed");
                            break 'read reason;
                        }
                        Some(None) => break 'read DisconnectReason::RemoteClosed,
                    }
                } else {
                    self.route_run()
                };
                if let Some(mut blocked) = blocked {
                    // Back-pressure: read nothing more until the application has room (after
                    // waking it, so that it makes some). Outbound RPCs still time out meanwhile.
                    self.unflushed = 0;
                    self.router.flush();
                    loop {
                        if let Some(at) = rpc_due
                            && timer.deadline() != at
                        {
                            timer.as_mut().reset(at);
                        }
                        tokio::select! {
                            biased;
                            () = &mut cancelled => break 'read DisconnectReason::Shutdown,
                            () = &mut blocked.room => break,
                            () = &mut timer, if rpc_due.is_some() => {
                                rpc_due = shared.rpcs.expire_due(Instant::now());
                            }
                            () = &mut moved => {
                                moved.set(timer_moved.notified());
                                rpc_due = shared.rpcs.timer_deadline();
                            }
                        }
                    }
                    self.batch_read_at = Instant::now();
                    self.deliver(blocked.event);
                }
            }
        };
        self.shared
            .metrics
            .record_tally(Direction::Received, &mut self.tally);
        self.streams.finish(reason);
        self.shared.begin_close(reason);
    }

    /// Takes every frame the stream has ready, up to [`READ_BATCH`], into `frames`: `Ready`
    /// once it has some, stopping after the end of the stream or an error. When there is none,
    /// lets the router wake the applications it fed (the socket has nothing more for now) and
    /// returns `Pending`. One cancellation check per batch rather than per frame.
    fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Vec<Option<Result<MultiplexMessage, wire::Error>>>,
    ) -> Poll<()> {
        self.shared
            .metrics
            .record_tally(Direction::Received, &mut self.tally);
        while frames.len() < READ_BATCH {
            let Poll::Ready(item) = self.stream.poll_next_unpin(cx) else {
                break;
            };
            let go_on = matches!(item, Some(Ok(_)));
            frames.push(item);
            if !go_on {
                break;
            }
        }
        if !frames.is_empty() {
            return Poll::Ready(());
        }
        if self.unflushed > 0 {
            self.unflushed = 0;
            self.router.flush();
        }
        Poll::Pending
    }

    /// Handles one frame; returns the event the application's queue asked us to hold back
    /// (back-pressure), if any, or why the connection must close.
    fn handle_frame(
        &mut self,
        frame: MultiplexMessage,
    ) -> Result<Option<HeldBack>, DisconnectReason> {
        match frame {
            MultiplexMessage::Message(message) => Ok(self.dispatch(message)),
            MultiplexMessage::Stream(piece) => Ok(self
                .streams
                .handle(piece, self.batch_read_at)?
                .and_then(|message| self.dispatch(message))),
        }
    }

    /// A complete frame that is not valid BCS: tell the remote which, and go on.
    fn handle_malformed_frame(&self, err: &wire::Error) {
        self.shared.metrics.record_parse_error();
        debug!(error = %ErrorChain(err), "malformed frame");
        if let wire::Error::Deserialize { frame_prefix, .. } = err {
            let code = ErrorCode::parsing_error_from_frame(frame_prefix);
            self.reply(NetworkMessage::Error(code));
        }
    }

    fn dispatch(&mut self, message: NetworkMessage) -> Option<HeldBack> {
        self.tally.add(&message);
        trace!(kind = %MessageKind::of(&message), len = message.payload_len(), "message received");
        if !self
            .rate_gate
            .admit(&self.shared, &message, self.batch_read_at)
        {
            return None;
        }
        match message {
            NetworkMessage::DirectSendMsg(message) => {
                self.run.push_back((message.protocol_id, message.raw_msg));
                None
            }
            NetworkMessage::RpcRequest(request) => self.handle_rpc_request(request),
            NetworkMessage::RpcResponse(response) => {
                // Straight to the waiting caller: responses never wait for an application.
                self.shared.rpcs.complete(
                    response.request_id,
                    response.raw_response,
                    self.batch_read_at,
                );
                self.answered_in_batch += 1;
                if self.answered_in_batch == 2 {
                    self.shared.lanes.expect_burst();
                }
                None
            }
            NetworkMessage::Error(code) => {
                self.handle_remote_error(code);
                None
            }
        }
    }

    /// Hands the DirectSends gathered in `run` to their applications, in order; a queue
    /// applying back-pressure may hand one back (the rest stay in `run`).
    fn route_run(&mut self) -> Option<HeldBack> {
        let before = self.run.len();
        let sender = self.shared.metadata.remote_peer_id;
        let shared = &self.shared;
        let held =
            self.router
                .try_route_direct_sends(sender, &mut self.run, &mut |protocol_id, err| {
                    route_failed(
                        shared,
                        err,
                        MessageKind::DirectSend,
                        NotSupportedType::DirectSendMsg(protocol_id),
                    );
                });
        self.unflushed += before - self.run.len();
        if self.unflushed >= ROUTE_FLUSH_EVERY {
            self.unflushed = 0;
            self.router.flush();
        }
        held
    }

    /// Hands `event` to its application; a queue applying back-pressure may hand it back.
    fn try_deliver(&mut self, event: InboundEvent) -> Option<HeldBack> {
        let (kind, not_supported) = route_labels(&event);
        self.unflushed += 1;
        if self.unflushed >= ROUTE_FLUSH_EVERY {
            self.unflushed = 0;
            self.router.flush();
        }
        match self.router.try_route(event) {
            Ok(()) => None,
            Err(TryRouteError::Refused(err)) => {
                route_failed(&self.shared, err, kind, not_supported);
                None
            }
            Err(TryRouteError::Full(held)) => Some(*held),
        }
    }

    /// Hands `event` to its application after waiting for room: whatever still does not fit
    /// is dropped and counted.
    fn deliver(&mut self, event: InboundEvent) {
        let (kind, not_supported) = route_labels(&event);
        self.unflushed += 1;
        if let Err(err) = self.router.route(event) {
            route_failed(&self.shared, err, kind, not_supported);
        }
    }

    fn handle_rpc_request(&mut self, request: RpcRequest) -> Option<HeldBack> {
        let RpcRequest {
            protocol_id,
            request_id,
            raw_request,
            ..
        } = request;
        let accepted = self
            .shared
            .rpcs
            .accept_inbound(request_id, protocol_id, self.batch_read_at);
        let (slot, deadline) = match accepted {
            Ok(accepted) => accepted,
            Err(Refused::TooMany) => {
                // AptosNet drops such requests without a word; the remote's RPC times out.
                self.shared.metrics.record_inbound_dropped(
                    MessageKind::RpcRequest,
                    InboundDropReason::TooManyRpcs,
                );
                debug!(%request_id, %protocol_id, "too many inbound rpcs, request dropped");
                return None;
            }
            Err(Refused::Closed) => return None,
        };
        let responder = RpcResponder::new(
            Arc::downgrade(&self.shared),
            slot,
            request_id,
            protocol_id,
            deadline,
        );
        let event = InboundEvent::RpcRequest {
            sender: self.shared.metadata.remote_peer_id,
            protocol_id,
            payload: raw_request,
            responder,
        };
        self.try_deliver(event)
    }

    fn handle_remote_error(&self, code: ErrorCode) {
        match code {
            ErrorCode::ParsingError(parsing) => {
                self.shared
                    .metrics
                    .record_remote_error(RemoteErrorCode::ParsingError);
                debug!(
                    message = parsing.message,
                    protocol = parsing.protocol,
                    "remote could not parse a frame of ours"
                );
            }
            ErrorCode::NotSupported(NotSupportedType::RpcRequest(protocol)) => {
                self.shared
                    .metrics
                    .record_remote_error(RemoteErrorCode::NotSupported);
                if !self.shared.rpcs.fail_not_supported(protocol) {
                    debug!(%protocol, "remote does not support an rpc protocol we have no rpc on");
                }
            }
            ErrorCode::NotSupported(NotSupportedType::DirectSendMsg(protocol)) => {
                self.shared
                    .metrics
                    .record_remote_error(RemoteErrorCode::NotSupported);
                debug!(%protocol, "remote does not support a direct-send protocol of ours");
            }
        }
    }

    /// Queues an error reply on the high lane; a full lane drops it (counted by the queue).
    fn reply(&self, message: NetworkMessage) {
        reply(&self.shared, message);
    }
}

/// Queues an error reply on the high lane; a full lane drops it (counted by the queue).
fn reply(shared: &Shared, message: NetworkMessage) {
    if let Err(err) = shared.lanes.push(Priority::High, message) {
        trace!(error = %err, "error reply not queued");
    }
}

/// Counts a message the router refused, and answers `NotSupported` for an unknown protocol.
fn route_failed(
    shared: &Shared,
    err: RouteError,
    kind: MessageKind,
    not_supported: NotSupportedType,
) {
    let reason = match err {
        RouteError::UnknownProtocol => InboundDropReason::UnknownProtocol,
        RouteError::QueueFull => InboundDropReason::QueueFull,
    };
    shared.metrics.record_inbound_dropped(kind, reason);
    debug!(%kind, %reason, "inbound message not delivered");
    if err == RouteError::UnknownProtocol {
        reply(
            shared,
            NetworkMessage::Error(ErrorCode::NotSupported(not_supported)),
        );
    }
}

/// Whether a frame read is a whole DirectSend, which joins the reader's run.
fn is_direct_send(item: &Option<Result<MultiplexMessage, wire::Error>>) -> bool {
    matches!(
        item,
        Some(Ok(MultiplexMessage::Message(
            NetworkMessage::DirectSendMsg(_)
        )))
    )
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The metric kind of an inbound event, and how to tell the remote its protocol is unknown.
fn route_labels(event: &InboundEvent) -> (MessageKind, NotSupportedType) {
    match event {
        InboundEvent::DirectSend { protocol_id, .. } => (
            MessageKind::DirectSend,
            NotSupportedType::DirectSendMsg(*protocol_id),
        ),
        InboundEvent::RpcRequest { protocol_id, .. } => (
            MessageKind::RpcRequest,
            NotSupportedType::RpcRequest(*protocol_id),
        ),
    }
}
