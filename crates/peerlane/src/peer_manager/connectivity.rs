//! [`drive_connectivity`]: the task that carries out the connectivity manager's actions through
//! the peer manager.

use std::collections::HashMap;

use connectivity_manager::{Action, CloseReason, ConnectivityHandle, PeerEvent};
use netcore::PeerId;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::disconnect_notice::DisconnectCode;
use crate::peer_manager::handle::PeerManagerHandle;

/// Carries out the connectivity manager's actions until shutdown (or until the manager
/// stops): a dial goes through the peer manager's dial path in a task of its own, which
/// reports its result as a [`PeerEvent::DialResult`]; a cancel aborts that task (so
/// no result is reported; the policy has already forgotten the dial, and a connection the
/// dial still makes is reported as usual); a disconnect closes the peer's connection, logged
/// with the action's reason.
pub(crate) async fn drive_connectivity(
    mut actions_rx: mpsc::Receiver<Action>,
    connectivity: ConnectivityHandle,
    manager: PeerManagerHandle,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    // The waiting task of each dial in flight.
    let mut dials: HashMap<PeerId, AbortHandle> = HashMap::new();
    loop {
        let action = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            action = actions_rx.recv() => match action {
                Some(action) => action,
                None => break,
            },
        };
        dials.retain(|_, dial| !dial.is_finished());
        match action {
            Action::Dial { peer_id, addr } => {
                let manager = manager.clone();
                let connectivity = connectivity.clone();
                let task = tracker.spawn(async move {
                    let result = match manager.dial_managed(peer_id, addr).await {
                        Ok(()) => Ok(()),
                        // The network is going away, and the connectivity manager with it.
                        Err(err) if err.is_shut_down() => return,
                        Err(err) => Err(err.dial_failure()),
                    };
                    // Fails only when the manager has stopped.
                    let _ = connectivity
                        .send(PeerEvent::DialResult { peer_id, result })
                        .await;
                });
                if let Some(previous) = dials.insert(peer_id, task.abort_handle()) {
                    previous.abort();
                }
            }
            Action::CancelDial { peer_id } => {
                if let Some(dial) = dials.remove(&peer_id) {
                    dial.abort();
                }
                tracing::debug!(peer = %peer_id, "dial cancelled by the connectivity manager");
            }
            Action::Disconnect { peer_id, reason } => {
                let manager = manager.clone();
                tracker.spawn(async move {
                    // `NotConnected`: it went away already and its `Disconnected` is out.
                    let notice = match reason {
                        CloseReason::OverTarget => DisconnectCode::Full,
                        _ => DisconnectCode::InvalidConnection,
                    };
                    let _ = manager
                        .disconnect_because(peer_id, reason.as_str(), Some(notice))
                        .await;
                });
            }
        }
    }
    for dial in dials.values() {
        dial.abort();
    }
}
