//! [`RefusalNotices`]: writes one `Disconnect { reason }` notice (protocol 64) on a connection
//! the peer manager refuses before spawning a peer for it, then closes it: the remote, whose
//! side of the set-up succeeded, reads why instead of seeing the socket close.

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use wire::{DirectSendMsg, MultiplexMessage, MultiplexMessageSink, NetworkMessage, ProtocolId};

use crate::disconnect_notice::{Disconnect, DisconnectCode};
use crate::metrics::Metrics;
use crate::transport::NetworkConnection;

/// Sends refusal notices, at most `max_pending` at once, each within `write_timeout`.
pub(crate) struct RefusalNotices {
    permits: Arc<Semaphore>,
    write_timeout: Duration,
    metrics: Metrics,
    tracker: TaskTracker,
}

impl RefusalNotices {
    pub(crate) fn new(
        max_pending: usize,
        write_timeout: Duration,
        metrics: Metrics,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_pending)),
            write_timeout,
            metrics,
            tracker,
        }
    }

    /// Closes `connection`, after a notice of `reason` if the remote speaks protocol 64 and
    /// fewer than `max_pending` notices are being written (else at once, counted in
    /// `peerlane_disconnect_notices_skipped_total`): a flood of refused connections costs at
    /// most `max_pending` sockets held for `write_timeout` each.
    pub(crate) fn refuse(&self, connection: NetworkConnection, reason: DisconnectCode) {
        if !connection
            .metadata
            .application_protocols
            .contains(ProtocolId::PEERLANE_DISCONNECT)
        {
            return;
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.metrics.extensions().record_notice_skipped();
            return;
        };
        let Ok(raw_msg) = ProtocolId::PEERLANE_DISCONNECT.to_bytes(&Disconnect { reason }) else {
            return;
        };
        let message = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::PEERLANE_DISCONNECT,
            priority: 0,
            raw_msg,
        }));
        let (metrics, write_timeout) = (self.metrics.clone(), self.write_timeout);
        self.tracker.spawn(async move {
            let _permit = permit;
            let mut sink = MultiplexMessageSink::new(connection.socket);
            let written = tokio::time::timeout(write_timeout, async {
                sink.send(&message).await?;
                sink.close().await
            })
            .await;
            if matches!(written, Ok(Ok(()))) {
                metrics.extensions().record_notice(true, reason.as_str());
            }
        });
    }
}
