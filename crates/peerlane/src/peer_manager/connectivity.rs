//! [`drive_connectivity`]: the task that carries out the connectivity manager's actions through
//! the peer manager.

use std::collections::HashMap;

use connectivity_manager::{Action, CloseReason, ConnectivityHandle, PeerEvent};
use netcore::{NetworkAddress, PeerId};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::disconnect_notice::DisconnectCode;
use crate::error::Error;
use crate::peer_manager::handle::PeerManagerHandle;
use crate::record_events::{RecordEvent, RecordEvents};

/// The operator's line for a failed dial of the connectivity manager: what failed, why, and
/// what that usually means. The connectivity manager adds when it dials again.
fn dial_failure_line(peer_id: PeerId, addr: &NetworkAddress, err: &Error) -> String {
    let what = match err {
        Error::Transport(_) | Error::SetupTimeout { .. } => "unreachable",
        _ => "refused the connection",
    };
    let hint = match err {
        Error::Noise(noise::Error::Rejected { .. }) => {
            " (is the noise-ik key in the address this peer's key, and are we in its trusted set?)"
        }
        Error::Handshake(wire::Error::InvalidChainId { .. }) => " (check chain_id on both nodes)",
        Error::Handshake(wire::Error::InvalidNetworkId { .. }) => {
            " (check network_id on both nodes)"
        }
        _ => "",
    };
    format!("peer {peer_id} at {addr} {what}: {}{hint}", err.chain())
}

/// Carries out the connectivity manager's actions until shutdown (or until the manager
/// stops): a dial goes through the peer manager's dial path in a task of its own, which
/// reports its result as a [`PeerEvent::DialResult`]; a cancel aborts that task (so
/// no result is reported; the policy has already forgotten the dial, and a connection the
/// dial still makes is reported as usual); a disconnect closes the peer's connection, logged
/// with the action's reason. A dial that failed at its address (not one that lost a
/// simultaneous-dial tie or met a ban) is also published as a [`RecordEvent::DialFailed`].
pub(crate) async fn drive_connectivity(
    mut actions_rx: mpsc::Receiver<Action>,
    connectivity: ConnectivityHandle,
    manager: PeerManagerHandle,
    record_events: RecordEvents,
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
                let record_events = record_events.clone();
                let task = tracker.spawn(async move {
                    let (result, detail) = match manager.dial_managed(peer_id, addr.clone()).await {
                        Ok(()) => (Ok(()), None),
                        // The network is going away, and the connectivity manager with it.
                        Err(err) if err.is_shut_down() => return,
                        // The manager's dials (seeds, discovery) fail with no one to tell but
                        // the operator: it logs the line with when it dials again.
                        Err(err) => {
                            if !matches!(err, Error::AlreadyConnected { .. } | Error::Banned { .. })
                            {
                                record_events.publish(RecordEvent::DialFailed {
                                    peer_id,
                                    addr: addr.clone(),
                                });
                            }
                            (
                                Err(err.dial_failure()),
                                Some(dial_failure_line(peer_id, &addr, &err)),
                            )
                        }
                    };
                    // Fails only when the manager has stopped.
                    let _ = connectivity
                        .send(PeerEvent::DialResult {
                            peer_id,
                            result,
                            detail,
                        })
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
