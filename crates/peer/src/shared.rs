//! [`Shared`]: the state of one connection that its handles, its responders and its two tasks
//! all hold: the outbound [`Lanes`], the [`RpcTables`] and the [`Lifecycle`], which know
//! nothing of each other, and the one operation that spans them all, closing.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{Span, debug};
use wire::StreamLimits;

use crate::config::Config;
use crate::connection::ConnectionMetadata;
use crate::disconnect::DisconnectReason;
use crate::lanes::Lanes;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::rpc_tables::RpcTables;

/// The state of one connection shared by its handles, responders, reader and writer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) metadata: ConnectionMetadata,
    /// Shared with every other connection started with the same `Arc`.
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    /// The connection's span (peer, conn_id, origin), for events logged outside its tasks.
    pub(crate) span: Span,
    pub(crate) lanes: Lanes,
    pub(crate) rpcs: RpcTables,
    pub(crate) lifecycle: Lifecycle,
}

impl Shared {
    /// The state of a new connection; `cancel` stops its tasks.
    pub(crate) fn new(
        config: Arc<Config>,
        limits: StreamLimits,
        metadata: ConnectionMetadata,
        metrics: Arc<Metrics>,
        span: Span,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            lanes: Lanes::new(
                config.outbound_lane_capacity,
                config.max_queued_bytes_for(metadata.role),
                limits,
                metrics.clone(),
                span.clone(),
            ),
            rpcs: RpcTables::new(
                config.max_concurrent_outbound_rpcs,
                config.max_concurrent_inbound_rpcs,
                config.inbound_rpc_timeout,
                metrics.clone(),
                span.clone(),
            ),
            lifecycle: Lifecycle::new(cancel),
            metadata,
            config,
            metrics,
            span,
        }
    }

    /// Starts closing the peer for `reason`, unless it is closing already (the first reason
    /// wins): refuses new messages and RPCs, fails every pending outbound RPC with
    /// [`Error::Disconnected`](crate::Error::Disconnected), frees the inbound slots, and
    /// cancels the peer's tasks. The writer then drains what is queued within
    /// `writer_close_timeout`.
    pub(crate) fn begin_close(&self, reason: DisconnectReason) {
        if self.lifecycle.record_reason(reason) {
            debug!(parent: &self.span, %reason, "peer disconnecting");
            self.lanes.close();
            self.rpcs.close();
        }
        self.lifecycle.cancel();
    }

    /// Both tasks have ended: publish the reason to [`PeerHandle::closed`] waiters.
    ///
    /// [`PeerHandle::closed`]: crate::PeerHandle::closed
    pub(crate) fn finish(&self) {
        // Normally a reason is recorded before the tasks end; without one, the runtime dropped
        // them (it is shutting down).
        self.begin_close(DisconnectReason::Shutdown);
        let reason = self
            .lifecycle
            .reason()
            .unwrap_or(DisconnectReason::Shutdown);
        self.metrics.record_disconnect(reason);
        tracing::info!(parent: &self.span, %reason, "peer disconnected");
        self.lifecycle.publish_closed(reason);
    }
}
