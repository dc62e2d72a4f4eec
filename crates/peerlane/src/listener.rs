//! [`Listener`]: accepts sockets, sets each up in its own task, and hands the connections to
//! the peer manager.
//!
//! Admission happens in three places, in order:
//! 1. here, a cap on set-ups in progress (`max_pending_inbound_upgrades`): at the cap, a newly
//!    accepted socket evicts the oldest set-up still in progress;
//! 2. in the Noise responder, the auth mode (in mutual mode, only trusted peers);
//! 3. in the peer manager, the limit on inbound connections from peers outside the trusted
//!    set, which needs the current set of connections.
//!
//! Each set-up runs under the set-up deadline, in a task of its own, so one slow or hostile
//! dialer holds up nobody else. Why evict the oldest rather than stop accepting: a flood of
//! sockets that never speak would otherwise hold every slot until its set-ups time out (30 s
//! each), and legitimate dialers would wait behind it in the kernel's backlog. A legitimate
//! set-up takes a round trip and a few milliseconds of crypto, so it finishes long before
//! `max_pending_inbound_upgrades` newer sockets can push it out; the silent ones are the old
//! ones. Evictions are counted as `evicted` (the test
//! `a_flood_of_silent_sockets_does_not_keep_a_legitimate_peer_out` shows it). Memory stays
//! bounded by the cap. There is no per-address cap yet.
//!
//! A set-up that finished leaves the pending set at once, before it waits for room in the peer
//! manager's channel (which the peer manager drains without IO), so only set-ups still in
//! progress count towards the cap and can be evicted.
//!
//! Every failed set-up is counted in `peerlane_connection_setup_failures_total{reason}` and
//! logged with the same reason; the peer manager does the same for refusals.

use std::collections::VecDeque;

use futures::StreamExt;
use netcore::ConnectionOrigin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, SetupFailure};
use crate::peer_manager::NewConnection;
use crate::transport::Incoming;

/// The accept loop of one network; see the module docs.
pub(crate) struct Listener {
    incoming: Incoming,
    new_connections_tx: mpsc::Sender<NewConnection>,
    /// Set-ups in progress, oldest first, each by the token that evicts it. A set-up cancels
    /// its own token when it ends, which is how finished ones are told apart.
    pending: VecDeque<CancellationToken>,
    /// `max_pending_inbound_upgrades`.
    max_pending: usize,
    metrics: Metrics,
    tracker: TaskTracker,
    shutdown: CancellationToken,
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
            pending: VecDeque::with_capacity(max_pending_upgrades),
            max_pending: max_pending_upgrades.max(1),
            metrics,
            tracker,
            shutdown,
        }
    }

    /// Accepts until shutdown, or until the transport's listener ends (it does not, for TCP
    /// or memory, while it is held).
    pub(crate) async fn run(mut self) {
        let shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                accepted = self.incoming.next() => accepted,
            };
            let (upgrade, remote_addr) = match accepted {
                None => return,
                Some(Ok(accepted)) => accepted,
                Some(Err(err)) => {
                    // One failed accept (e.g. too many open files); the listener goes on.
                    self.metrics
                        .record_setup_failure(ConnectionOrigin::Inbound, err.setup_failure());
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            };
            self.make_room();
            // A child of the shutdown token: shutdown ends every set-up too.
            let evict = shutdown.child_token();
            self.pending.push_back(evict.clone());
            let new_connections_tx = self.new_connections_tx.clone();
            let metrics = self.metrics.clone();
            self.tracker.spawn(async move {
                // Marks this set-up finished for `make_room`, however it ends.
                let finished = evict.clone().drop_guard();
                let result = tokio::select! {
                    biased;
                    () = evict.cancelled() => return,
                    result = upgrade => result,
                };
                // The set-up is over: it leaves the pending set before waiting for room in the
                // peer manager's channel, so that newer sockets cannot evict (and count as
                // evicted) a connection that was set up and will be registered.
                drop(finished);
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

    /// Forgets finished set-ups, then, at the cap, evicts the oldest one still in progress.
    fn make_room(&mut self) {
        self.pending.retain(|token| !token.is_cancelled());
        while self.pending.len() >= self.max_pending {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            oldest.cancel();
            self.metrics
                .record_setup_failure(ConnectionOrigin::Inbound, SetupFailure::Evicted);
            tracing::debug!(
                max_pending = self.max_pending,
                "inbound set-ups at the cap: the oldest one is closed to make room"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use netcore::{MemorySocket, NetworkAddress, Protocol};
    use noise::{HandshakeAuthMode, NoiseUpgrader, PrivateKey, PublicKey, TrustedPeers};
    use prometheus_client::registry::Registry;
    use wire::{ChainId, HandshakeMsg, NetworkId, ProtocolId};

    use super::*;
    use crate::config::DEFAULT_CHAIN_ID;
    use crate::transport::{AptosNetTransport, HANDSHAKE_VERSION, TransportKind, UpgradeContext};
    use crate::{Identity, Network, NetworkBuilder, NetworkConfig};

    /// A node to dial from, over the memory transport.
    fn dialer(seed: u8) -> Network {
        let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
        config.identity = Some(Identity::new(PrivateKey::from([seed; 32])));
        let mut builder =
            NetworkBuilder::new(config, TransportKind::Memory, &mut Registry::default()).unwrap();
        builder
            .add_application::<u8>([ProtocolId::MEMPOOL_DIRECT_SEND], [], Default::default())
            .unwrap();
        builder.build().unwrap()
    }

    /// With the peer manager's channel full, a set-up that finished waits for room there. It
    /// no longer counts as pending: a newer socket at the cap (one slot here) evicts nothing,
    /// and the connection is handed over once there is room.
    #[tokio::test(start_paused = true)]
    async fn a_finished_set_up_waiting_for_the_peer_manager_is_not_evicted() {
        let key = PrivateKey::from([9; 32]);
        let public_key = PublicKey::from(&key);
        let noise = NoiseUpgrader::new(
            noise::keys::peer_id_from_public_key(&public_key),
            key,
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
            noise::Metrics::default(),
        );
        let handshake = HandshakeMsg::new(
            ChainId::new(DEFAULT_CHAIN_ID),
            NetworkId::Public,
            [ProtocolId::MEMPOOL_DIRECT_SEND].into_iter().collect(),
        );
        let context = Arc::new(UpgradeContext::new(noise, handshake, TrustedPeers::new()));
        let transport =
            AptosNetTransport::new(&TransportKind::Memory, context, Duration::from_secs(30));
        let (incoming, bound) = transport.listen_on(NetworkAddress::memory(0)).unwrap();
        let Protocol::Memory(port) = bound.protocols()[0] else {
            panic!("a memory address: {bound}");
        };
        let address = bound
            .with_noise_and_handshake(public_key, HANDSHAKE_VERSION)
            .unwrap();
        // The peer manager's channel, with room for one connection; read only at the end.
        let (new_connections_tx, mut new_connections_rx) = mpsc::channel(1);
        let metrics = Metrics::default();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let listener = Listener::new(
            incoming,
            new_connections_tx,
            1,
            metrics.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(listener.run());

        // a's connection fills the channel; b's set-up finishes and waits for room.
        let (a, b) = (dialer(1), dialer(2));
        let server = noise::keys::peer_id_from_public_key(&public_key);
        a.dial(server, address.clone()).await.unwrap();
        b.dial(server, address).await.unwrap();
        // Paused clock: returns once every task is idle, b's set-up waiting on the channel.
        tokio::time::sleep(Duration::from_secs(1)).await;

        // A newer socket at the cap: nothing still in progress to evict.
        let _silent = MemorySocket::connect(port).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Evicted),
            0
        );

        let first = new_connections_rx.recv().await.unwrap();
        let second = new_connections_rx.recv().await.unwrap();
        assert_eq!(first.connection.metadata.remote_peer_id, a.peer_id());
        assert_eq!(second.connection.metadata.remote_peer_id, b.peer_id());

        shutdown.cancel();
        drop((first, second));
        a.shutdown().await;
        b.shutdown().await;
    }
}
