//! [`ChainAnnouncer`]: the actor that sends our [`ChainStatus`] on `ChainStatus` (65) to every
//! peer that offers the protocol, as soon as it connects, again on change as often as
//! [`AnnounceThrottle`] allows, and every [`REFRESH_INTERVAL`] (30 s) regardless. When our own status first names a genesis, it also closes
//! connections to peers that announced another one (the [`Intake`](crate::intake) checks
//! later announcements).

use std::future;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{NetworkId, ProtocolId};

use crate::chain_status::ChainStatus;
use crate::chain_throttle::AnnounceThrottle;
use crate::client::NetworkClient;
use crate::disconnect_notice::DisconnectCode;
use crate::intake::close_with_notice;
use crate::metrics::Metrics;
use crate::peers::{ConnectionNotification, ConnectionNotifications, PeersAndMetadata};

/// Every peer gets our status again this often even without a change: it refreshes the
/// peer's "updated at", and repairs a first status that reached a peer before its side had
/// registered the connection (the reader may run a moment before the registration).
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// What the announcer needs from the builder.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) client: NetworkClient<ChainStatus>,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) metrics: Metrics,
    pub(crate) local: watch::Receiver<Option<ChainStatus>>,
    pub(crate) throttle: AnnounceThrottle,
    pub(crate) shutdown: CancellationToken,
}

/// The actor; see the module docs.
pub(crate) struct ChainAnnouncer {
    parts: Parts,
    notifications: ConnectionNotifications,
    lost_notifications: u64,
}

impl ChainAnnouncer {
    /// Subscribes to connection notifications now, so it hears of every later connection.
    pub(crate) fn new(parts: Parts) -> Self {
        let notifications = parts.peers.subscribe();
        Self {
            parts,
            notifications,
            lost_notifications: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let shutdown = self.parts.shutdown.clone();
        let mut local_open = true;
        let mut refresh =
            tokio::time::interval_at(Instant::now() + REFRESH_INTERVAL, REFRESH_INTERVAL);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = self.parts.throttle.next_deadline();
            // Every future here is cancel-safe.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                notification = self.notifications.recv() => match notification {
                    Some(notification) => self.handle_notification(notification),
                    None => break,
                },
                changed = self.parts.local.changed(), if local_open => match changed {
                    Ok(()) => self.handle_local_change(),
                    // The network handle is gone, and the network with it.
                    Err(_) => local_open = false,
                },
                () = sleep_until(deadline) => {}
                _ = refresh.tick() => {
                    self.parts.throttle.changed();
                }
            }
            self.announce();
        }
        tracing::debug!(network = %self.parts.network_id, "chain status announcer stopped");
    }

    fn handle_notification(&mut self, notification: ConnectionNotification) {
        let peer = notification.peer();
        if peer.network_id == self.parts.network_id {
            match notification {
                ConnectionNotification::NewPeer(metadata, _)
                    if metadata
                        .application_protocols
                        .contains(ProtocolId::CHAIN_STATUS) =>
                {
                    self.parts.throttle.connected(peer);
                }
                ConnectionNotification::NewPeer(..) => self.parts.throttle.disconnected(peer),
                ConnectionNotification::LostPeer(..) => {
                    self.parts.throttle.disconnected(peer);
                    // Its series go with it, so they stay within the connected peers.
                    self.parts
                        .metrics
                        .extensions()
                        .remove_peer_chain_status(&peer.peer_id);
                }
            }
        }
        if self.notifications.lost() != self.lost_notifications {
            self.lost_notifications = self.notifications.lost();
            // A lost `LostPeer` would leave a series behind: drop those of peers gone.
            for peer in self.parts.throttle.peers() {
                if !self.parts.peers.is_connected(peer) {
                    self.parts
                        .metrics
                        .extensions()
                        .remove_peer_chain_status(&peer.peer_id);
                    self.parts.throttle.disconnected(peer);
                }
            }
            // Catch up: every peer that speaks the protocol gets our status again.
            for (peer, metadata) in self.parts.peers.connected_peers_and_metadata() {
                if peer.network_id == self.parts.network_id
                    && metadata
                        .application_protocols
                        .contains(ProtocolId::CHAIN_STATUS)
                {
                    self.parts.throttle.connected(peer);
                }
            }
        }
    }

    fn handle_local_change(&mut self) {
        let Some(local) = *self.parts.local.borrow_and_update() else {
            return;
        };
        let merged = self.parts.throttle.changed();
        for _ in 0..merged {
            self.parts
                .metrics
                .extensions()
                .record_chain_status("coalesced");
        }
        // Peers that announced before we knew our genesis.
        for peer in self.parts.peers.connected_peers_on(self.parts.network_id) {
            if let Some(theirs) = self.parts.peers.chain_status(peer)
                && theirs.status.genesis != local.genesis
            {
                self.parts
                    .metrics
                    .extensions()
                    .record_chain_status("chain_mismatch");
                tracing::info!(%peer, their_genesis = %theirs.status.genesis, "peer is on another chain, disconnecting");
                close_with_notice(
                    &self.parts.peers,
                    &self.parts.metrics,
                    peer,
                    DisconnectCode::ChainMismatch,
                );
            }
        }
    }

    /// Sends our status to every peer due now, if we have one.
    fn announce(&mut self) {
        let Some(local) = *self.parts.local.borrow() else {
            return;
        };
        for peer in self.parts.throttle.poll(Instant::now()) {
            match self.parts.client.send_to_peer(peer, &local) {
                Ok(()) => self.parts.metrics.extensions().record_chain_status("sent"),
                // Gone, or its queue is full: the next change or connection sends again.
                Err(err) => tracing::debug!(%peer, error = %err, "chain status not sent"),
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one. Cancel-safe.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => future::pending::<()>().map(|()| ()).await,
    }
}
