//! [`Listener`]: accepts sockets, sets each up in its own task, and hands the connections to
//! the peer manager.
//!
//! Admission happens in three places, in order:
//! 1. here, a cap on set-ups in progress (`max_pending_inbound_upgrades`): at the cap the
//!    listener stops accepting and the kernel's backlog holds the rest;
//! 2. in the Noise responder, the auth mode (in mutual mode, only trusted peers);
//! 3. in the peer manager, the limit on inbound connections from peers outside the trusted
//!    set, which needs the current set of connections.
//!
//! Each set-up runs under the set-up deadline, in a task of its own, so one slow or hostile
//! dialer holds up nobody else. A flood of sockets that never speak can fill every slot, and
//! then a legitimate dialer waits in the backlog until the flood's set-ups time out: at most
//! `setup_timeout × ⌈sockets ahead of it / max_pending_inbound_upgrades⌉` (the test
//! `a_flood_of_silent_sockets_delays_a_legitimate_peer_only_until_their_timeouts` shows it).
//! There is no per-address cap yet.
//!
//! Every failed set-up is counted in `peerlane_connection_setup_failures_total{reason}` and
//! logged with the same reason; the peer manager does the same for refusals.

use std::sync::Arc;

use futures::StreamExt;
use netcore::ConnectionOrigin;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::peer_manager::NewConnection;
use crate::transport::Incoming;

/// The accept loop of one network; see the module docs.
pub(crate) struct Listener {
    incoming: Incoming,
    new_connections_tx: mpsc::Sender<NewConnection>,
    /// One permit per set-up in progress.
    upgrades: Arc<Semaphore>,
    metrics: Metrics,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// Why [`Listener::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The network's shutdown token was cancelled.
    Shutdown,
    /// The transport's listener ended (it does not, for TCP or memory, while it is held).
    ListenerEnded,
}

impl Listener {
    pub(crate) fn new(
        incoming: Incoming,
        new_connections_tx: mpsc::Sender<NewConnection>,
        max_pending_upgrades: usize,
        metrics: Metrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            incoming,
            new_connections_tx,
            upgrades: Arc::new(Semaphore::new(max_pending_upgrades)),
            metrics,
            tracker,
            shutdown,
        }
    }

    /// Accepts until shutdown.
    pub(crate) async fn run(mut self) -> Exit {
        let shutdown = self.shutdown.clone();
        loop {
            // Wait for room before accepting, so that at most `max_pending_upgrades` sockets
            // are being set up.
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Exit::Shutdown,
                // The semaphore is never closed, so acquiring only waits.
                permit = self.upgrades.clone().acquire_owned() => {
                    permit.expect("the upgrade semaphore is never closed")
                }
            };
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Exit::Shutdown,
                accepted = self.incoming.next() => accepted,
            };
            let (upgrade, remote_addr) = match accepted {
                None => return Exit::ListenerEnded,
                Some(Ok(accepted)) => accepted,
                Some(Err(err)) => {
                    // One failed accept (e.g. too many open files); the listener goes on.
                    self.metrics
                        .record_setup_failure(ConnectionOrigin::Inbound, err.setup_failure());
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            };
            let new_connections_tx = self.new_connections_tx.clone();
            let metrics = self.metrics.clone();
            let shutdown = shutdown.clone();
            self.tracker.spawn(async move {
                let _permit = permit;
                let result = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    result = upgrade => result,
                };
                match result {
                    Ok(connection) => {
                        let new = NewConnection {
                            connection,
                            reply_tx: None,
                            managed: false,
                        };
                        // Fails only when the peer manager is gone (shutdown): drop the socket.
                        let _ = new_connections_tx.send(new).await;
                    }
                    Err(err) => {
                        let reason = err.setup_failure();
                        metrics.record_setup_failure(ConnectionOrigin::Inbound, reason);
                        // Remote-driven: debug (Noise logs and counts its own refusals).
                        tracing::debug!(
                            %remote_addr,
                            reason = reason.as_str(),
                            error = %err,
                            "inbound set-up failed"
                        );
                    }
                }
            });
        }
    }
}
