//! [`Lifecycle`]: where one connection is in its life (running, closing, closed) and why it
//! ended; and [`TaskExit`], which notices when both of its tasks have ended.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::disconnect::DisconnectReason;

/// The close reason, the closing signal to the tasks, and the closed signal to the handles.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// Why the peer is closing; the first reason recorded wins.
    reason: OnceLock<DisconnectReason>,
    /// Cancelled when the peer starts closing; a child of the node's shutdown token, so the
    /// tasks also see a shutdown before anyone records it as the reason.
    cancel: CancellationToken,
    /// `Some(reason)` once both tasks have ended.
    closed_tx: watch::Sender<Option<DisconnectReason>>,
}

impl Lifecycle {
    /// A running connection that closes when `cancel` is cancelled.
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Self {
            reason: OnceLock::new(),
            cancel,
            closed_tx: watch::Sender::new(None),
        }
    }

    /// Records why the peer is closing, unless a reason was recorded already. Returns whether
    /// this was the first.
    pub(crate) fn record_reason(&self, reason: DisconnectReason) -> bool {
        self.reason.set(reason).is_ok()
    }

    /// Why the peer is closing or closed; `None` while it runs.
    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        self.reason.get().copied()
    }

    /// Tells the tasks to stop.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The token the tasks stop on.
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the peer is closing: a reason was recorded, or the tasks were told to stop
    /// (also when the node's shutdown token was cancelled and nobody has noticed yet).
    pub(crate) fn is_closing(&self) -> bool {
        self.reason().is_some() || self.cancel.is_cancelled()
    }

    /// Both tasks have ended: tells every [`subscribe_closed`](Self::subscribe_closed) receiver.
    pub(crate) fn publish_closed(&self, reason: DisconnectReason) {
        self.closed_tx.send_replace(Some(reason));
    }

    /// A receiver that sees `Some(reason)` once both tasks have ended.
    pub(crate) fn subscribe_closed(&self) -> watch::Receiver<Option<DisconnectReason>> {
        self.closed_tx.subscribe()
    }
}

/// Held by both tasks of a connection; when the last one drops it (its task has ended,
/// normally or not), it runs the action it was given, once.
pub(crate) struct TaskExit {
    on_exit: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl TaskExit {
    /// A guard to share between the tasks, running `on_exit` when the last one drops it.
    pub(crate) fn new(on_exit: impl FnOnce() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            on_exit: Some(Box::new(on_exit)),
        })
    }
}

impl Drop for TaskExit {
    fn drop(&mut self) {
        if let Some(on_exit) = self.on_exit.take() {
            on_exit();
        }
    }
}
