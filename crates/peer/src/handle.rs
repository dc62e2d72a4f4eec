//! [`PeerHandle`]: what the rest of the node holds to talk to one connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use wire::{DirectSendMsg, NetworkMessage, ProtocolId, RequestId, RpcRequest};

use crate::connection::ConnectionMetadata;
use crate::deadline_table::deadline_after;
use crate::disconnect::DisconnectReason;
use crate::error::Error;
use crate::metrics::RpcFailure;
use crate::priority::Priority;
use crate::rpc_tables::RpcWaiter;
use crate::shared::Shared;

/// A handle on one connection's peer (see `peer::spawn`): send messages and RPCs,
/// disconnect, and learn when and why the connection ended. Cheap to clone; every method
/// works from any task or thread.
///
/// Nothing here waits for the network: sends are queued (or refused at once), and only
/// [`rpc`](Self::rpc), [`closed`](Self::closed) and
/// [`send_direct_wait`](Self::send_direct_wait) (which waits for room in the queue) are
/// `async`.
///
/// The connection lives while a handle does: dropping the last `PeerHandle` disconnects it,
/// like [`disconnect`](Self::disconnect) (responders do not count). A handle that outlives its
/// connection fails every send with [`Error::Disconnected`] at once.
#[derive(Clone)]
pub struct PeerHandle {
    inner: Arc<HandleInner>,
}

/// The DirectSend message for `payload` on `priority`'s lane.
fn direct_message(protocol_id: ProtocolId, payload: Bytes, priority: Priority) -> NetworkMessage {
    NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id,
        priority: priority.wire_byte(),
        raw_msg: payload,
    })
}

/// The part all clones share, so that dropping the last clone can disconnect.
struct HandleInner {
    shared: Arc<Shared>,
}

impl PeerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(HandleInner { shared }),
        }
    }

    /// Who is on the other end, and what set-up negotiated.
    pub fn metadata(&self) -> &ConnectionMetadata {
        &self.shared().metadata
    }

    /// Queues a one-way message on the lane of its protocol
    /// ([`Priority::for_protocol`]).
    ///
    /// Never waits. Fails with [`Error::QueueFull`] when the lane is full (the message is
    /// dropped and counted), [`Error::MessageTooLarge`] above the maximum message size, and
    /// [`Error::Disconnected`] once the peer is closing.
    pub fn send_direct(&self, protocol_id: ProtocolId, payload: Bytes) -> Result<(), Error> {
        self.send_direct_with_priority(protocol_id, payload, Priority::for_protocol(protocol_id))
    }

    /// [`send_direct`](Self::send_direct) on a lane of the caller's choosing.
    pub fn send_direct_with_priority(
        &self,
        protocol_id: ProtocolId,
        payload: Bytes,
        priority: Priority,
    ) -> Result<(), Error> {
        let lanes = &self.shared().lanes;
        lanes.check_payload(payload.len())?;
        lanes.push(priority, direct_message(protocol_id, payload, priority))
    }

    /// Queues a one-way message on the lane of its protocol, like
    /// [`send_direct`](Self::send_direct), but waits for room while the lane is full instead
    /// of failing with [`Error::QueueFull`]: for senders that would rather slow down than drop.
    ///
    /// It waits only for room in the outbound queue, not for the message to be written or
    /// delivered: DirectSend stays fire-and-forget. The writer wakes waiters when the lane has
    /// drained to half of its message and byte bounds. Fails with [`Error::MessageTooLarge`]
    /// at once, and with [`Error::Disconnected`] once the peer is closing (also while
    /// waiting). A remote that stops reading makes it wait until the connection ends; put a
    /// timeout around it if that matters.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits drops the message, counted in
    /// `peerlane_peer_outbound_dropped_total{reason="full"}`; a push that had to wait and then
    /// went through is not counted anywhere.
    pub async fn send_direct_wait(
        &self,
        protocol_id: ProtocolId,
        payload: Bytes,
    ) -> Result<(), Error> {
        let lanes = &self.shared().lanes;
        lanes.check_payload(payload.len())?;
        let priority = Priority::for_protocol(protocol_id);
        lanes
            .push_wait(priority, direct_message(protocol_id, payload, priority))
            .await
    }

    /// Sends an RPC request on the lane of its protocol and waits up to `timeout` for the
    /// response.
    ///
    /// Fails at once with [`Error::TooManyPendingRpcs`] when `max_concurrent_outbound_rpcs`
    /// are pending, [`Error::QueueFull`] when the lane is full, [`Error::MessageTooLarge`] or
    /// [`Error::Disconnected`]; later with [`Error::Timeout`], [`Error::Disconnected`] when
    /// the connection ends first, or [`Error::RemoteNotSupported`] when the remote does not
    /// serve `protocol_id`. Every failure is counted in `peerlane_peer_rpc_failures_total`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the RPC: its entry is removed at once (counted as
    /// `cancelled`), and a response arriving later is counted as unknown and dropped. The
    /// request itself may already have been sent; the remote still does the work.
    pub async fn rpc(
        &self,
        protocol_id: ProtocolId,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let shared = self.shared();
        shared.lanes.check_payload(payload.len())?;
        let now = Instant::now();
        let deadline = deadline_after(now, timeout);
        let (tx, rx) = oneshot::channel();
        let waiter = RpcWaiter::new(tx, protocol_id, timeout);
        let request_id = shared.rpcs.start(protocol_id, now, deadline, waiter)?;
        // From here on, dropping `pending` cancels the RPC.
        let mut pending = PendingRpc {
            shared,
            request_id,
            done: false,
        };
        let priority = Priority::for_protocol(protocol_id);
        let request = NetworkMessage::RpcRequest(RpcRequest {
            protocol_id,
            request_id,
            priority: priority.wire_byte(),
            raw_request: payload,
        });
        if let Err(err) = shared.lanes.push(priority, request) {
            let reason = match err {
                Error::QueueFull { .. } => RpcFailure::QueueFull,
                _ => RpcFailure::Disconnected,
            };
            pending.abandon(reason);
            return Err(err);
        }
        pending.wait(rx).await
    }

    /// Disconnects gracefully: new sends fail, pending RPCs fail with
    /// [`Error::Disconnected`], the writer sends what is queued within
    /// `writer_close_timeout` and shuts the socket down, then both tasks end and
    /// [`closed`](Self::closed) resolves with [`DisconnectReason::Requested`] (unless the
    /// connection was already ending for another reason). Idempotent; returns at once.
    pub fn disconnect(&self) {
        self.shared().begin_close(DisconnectReason::Requested);
    }

    /// Whether the connection is up: false from the moment it starts closing (including when
    /// the node's shutdown token has been cancelled but the tasks have not noticed yet).
    pub fn is_connected(&self) -> bool {
        !self.shared().lifecycle.is_closing()
    }

    /// Why the connection is closing or closed; `None` while it is up.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared().lifecycle.reason()
    }

    /// Resolves once both of the peer's tasks have ended, with the reason the connection
    /// ended. Resolves at once if they have already.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only watches.
    pub async fn closed(&self) -> DisconnectReason {
        let mut closed_rx = self.shared().lifecycle.subscribe_closed();
        match closed_rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(DisconnectReason::Shutdown),
            // The sender lives in `Shared`, which this handle keeps alive, so this is
            // unreachable; answer something sensible anyway.
            Err(_) => DisconnectReason::Shutdown,
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandle")
            .field("metadata", self.metadata())
            .field("disconnect_reason", &self.disconnect_reason())
            .finish()
    }
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        if self.shared.lifecycle.reason().is_none() {
            tracing::debug!(parent: &self.shared.span, "last peer handle dropped, disconnecting");
        }
        self.shared.begin_close(DisconnectReason::Requested);
    }
}

/// An outbound RPC between its registration and its outcome. Dropping it before the outcome
/// cancels the RPC.
struct PendingRpc<'a> {
    shared: &'a Shared,
    request_id: RequestId,
    done: bool,
}

impl PendingRpc<'_> {
    /// Waits for the outcome: the response or a failure from the reader (which also keeps
    /// the connection's one timer for the deadlines, see `rpc_tables`), or a disconnect.
    async fn wait(mut self, rx: oneshot::Receiver<Result<Bytes, Error>>) -> Result<Bytes, Error> {
        let outcome = rx.await;
        self.done = true;
        // A dropped sender means the table let go of our entry without an outcome, which only
        // a disconnect does.
        outcome.unwrap_or(Err(Error::Disconnected))
    }

    /// Removes the entry after a failure to queue the request, counted under `reason`.
    fn abandon(&mut self, reason: RpcFailure) {
        self.done = true;
        self.shared.rpcs.abandon(self.request_id, reason);
    }
}

impl Drop for PendingRpc<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .rpcs
                .abandon(self.request_id, RpcFailure::Cancelled);
        }
    }
}
