//! [`Network`]: the handle of a running network, as [`NetworkBuilder::build`] returns it:
//! dials, disconnects, bans of peers and IPs, the chain status, routing's state, the
//! counters, shutdown.
//!
//! [`NetworkBuilder::build`]: crate::NetworkBuilder::build

use std::fmt;

use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::TrustedPeers;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use wire::NetworkId;

use crate::admission::{IpBans, IpPrefix};
use crate::chain_status::ChainStatus;
use crate::disconnect_notice::DisconnectCode;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::peer_manager::{BanList, PeerManagerHandle};
use crate::peers::{PeerNetworkId, PeersAndMetadata};
use crate::record_events::{RecordEvent, RecordEvents};
use crate::routing::{Command as RoutingCommand, RoutingHandle, RoutingSnapshot};

/// A running network. Dropping it shuts the network down without waiting; prefer
/// [`shutdown`](Self::shutdown), which waits until every task has ended.
// The fields are crate-visible because `NetworkBuilder::build` fills them in.
pub struct Network {
    pub(crate) network_id: NetworkId,
    pub(crate) peer_id: PeerId,
    pub(crate) listen_address: NetworkAddress,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) trusted: TrustedPeers,
    pub(crate) metrics: Metrics,
    pub(crate) peer_metrics: peer::Metrics,
    pub(crate) connectivity_metrics: connectivity_manager::Metrics,
    pub(crate) noise_metrics: noise::Metrics,
    pub(crate) manager: PeerManagerHandle,
    pub(crate) banned: BanList,
    pub(crate) banned_ips: IpBans,
    /// Bans the network sets itself and failed managed dials, for a peer store.
    pub(crate) record_events: RecordEvents,
    /// Our chain status, as the node sets it; the announcer sends it to the peers.
    pub(crate) chain_tx: watch::Sender<Option<ChainStatus>>,
    /// The routing actor, when routing runs.
    pub(crate) routing: Option<RoutingHandle>,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Cancels `shutdown` when the handle is dropped.
    pub(crate) _cancel_on_drop: DropGuard,
}

impl Network {
    /// The address other nodes dial to reach this network: the bound address with our Noise
    /// key and handshake version 0 (`/…/noise-ik/<key>/handshake/0`).
    pub fn listen_address(&self) -> &NetworkAddress {
        &self.listen_address
    }

    /// Our PeerId on this network.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Which network this is.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Dials `peer_id` at `addr` (which must carry its Noise key and handshake version 0) and
    /// waits until the connection is set up and registered.
    ///
    /// Succeeds also when a simultaneous dial from the peer wins: we are connected either way.
    /// Fails with [`Error::AlreadyConnected`] without dialing when we are connected already,
    /// with [`Error::Banned`], [`Error::UnsupportedHandshakeVersion`],
    /// [`Error::MissingNoiseKey`] or [`Error::DialKeyMismatch`] before connecting, and with
    /// the set-up errors ([`Error::Transport`], [`Error::Noise`], [`Error::Handshake`],
    /// [`Error::SetupTimeout`]).
    ///
    /// The key in `addr` must be one `peer_id` may use: one of its keys in the trusted set if
    /// it is trusted, else the key its PeerId derives from. Otherwise whoever holds that key
    /// would be registered as `peer_id` (a trusted validator's identity and role, say).
    ///
    /// Cancel-safe in that dropping the future abandons only the wait; the dial goes on.
    pub async fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<(), Error> {
        if let Err(err) = self.check_dial_key(peer_id, &addr) {
            tracing::debug!(%peer_id, %addr, "dial refused: the address's key is not the peer's");
            self.metrics
                .record_setup_failure(ConnectionOrigin::Outbound, err.setup_failure());
            return Err(err);
        }
        self.manager.dial(peer_id, addr).await
    }

    /// Whether `peer_id` may be reached at `addr`'s Noise key; an address without a key passes
    /// (the transport refuses it with [`Error::MissingNoiseKey`]).
    fn check_dial_key(&self, peer_id: PeerId, addr: &NetworkAddress) -> Result<(), Error> {
        let Some(key) = addr.noise_public_key() else {
            return Ok(());
        };
        let allowed = match self.trusted.snapshot().get(&peer_id) {
            Some(trusted) => trusted.keys.contains(&key),
            None => noise::keys::peer_id_from_public_key(&key) == peer_id,
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::DialKeyMismatch {
                peer_id,
                addr: addr.clone(),
            })
        }
    }

    /// Closes the connection to `peer_id` and waits until it is gone (its `LostPeer` is out).
    ///
    /// Fails with [`Error::NotConnected`] if there is no connection. Cancel-safe: the
    /// disconnect goes ahead anyway.
    pub async fn disconnect(&self, peer_id: PeerId) -> Result<(), Error> {
        self.manager.disconnect(peer_id).await
    }

    /// Bans `peer_id` on this network: closes its connection if it has one (waiting until it
    /// is gone), refuses its later inbound handshakes in Noise before any Diffie-Hellman
    /// (`peerlane_connection_setup_failures_total{reason="banned"}`) and any connection with
    /// it that finished set-up before the ban
    /// (`peerlane_connections_refused_total{reason="banned"}`), and fails dials to it with
    /// [`Error::Banned`] before connecting. The ban lasts until [`unban`](Self::unban) or the
    /// end of the process.
    ///
    /// Returns whether the peer was not banned yet. Fails with [`Error::ShutDown`] only if
    /// the network is shut down (the ban is recorded all the same).
    pub async fn ban(&self, peer_id: PeerId) -> Result<bool, Error> {
        self.ban_until(peer_id, None).await
    }

    /// [`ban`](Self::ban) until `until` (`None`: until unbanned), after which the ban lifts
    /// itself; a longer ban in force is kept. A node restores the bans it stored with this at
    /// start. Returns whether the peer was not banned yet.
    pub async fn ban_until(
        &self,
        peer_id: PeerId,
        until: Option<std::time::SystemTime>,
    ) -> Result<bool, Error> {
        let newly = self.banned.insert_until(peer_id, until.map(instant_of));
        tracing::info!(network_id = %self.network_id, %peer_id, "peer banned");
        let notice = DisconnectCode::banned_until(until);
        match self
            .manager
            .disconnect_because(peer_id, "banned", Some(notice))
            .await
        {
            Ok(()) | Err(Error::NotConnected { .. }) => Ok(newly),
            Err(err) => Err(err),
        }
    }

    /// Lifts the ban on `peer_id`; returns whether it was banned.
    pub fn unban(&self, peer_id: PeerId) -> bool {
        let was = self.banned.remove(peer_id);
        if was {
            tracing::info!(network_id = %self.network_id, %peer_id, "peer unbanned");
        }
        was
    }

    /// Bans an IP address or CIDR prefix on this network: sockets from it are closed at
    /// accept, before any set-up (`peerlane_connections_refused_total{reason="banned_ip"}`).
    /// Connections already open stay open (ban their peers with [`ban`](Self::ban)). Lasts
    /// until [`unban_ip`](Self::unban_ip) or the end of the process. Returns whether it was
    /// not banned yet.
    pub fn ban_ip(&self, prefix: IpPrefix) -> bool {
        self.ban_ip_until(prefix, None)
    }

    /// [`ban_ip`](Self::ban_ip) until `until` (`None`: until lifted), after which the ban
    /// lifts itself; a longer ban on the same prefix in force is kept. Returns whether it was
    /// not banned yet.
    pub fn ban_ip_until(&self, prefix: IpPrefix, until: Option<std::time::SystemTime>) -> bool {
        let newly = self.banned_ips.insert_until(prefix, until.map(instant_of));
        tracing::info!(network_id = %self.network_id, %prefix, "ip banned");
        newly
    }

    /// Lifts the ban on `prefix`, as it was banned; returns whether it was banned.
    pub fn unban_ip(&self, prefix: IpPrefix) -> bool {
        let was = self.banned_ips.remove(prefix);
        if was {
            tracing::info!(network_id = %self.network_id, %prefix, "ip unbanned");
        }
        was
    }

    /// What the network decides about its peers on its own, from now on: the bans it sets
    /// (rate-limit abuse) and the failed dials of its connectivity manager, for a node that
    /// keeps them across restarts. Bounded ([`RECORD_EVENTS_CAPACITY`](crate::RECORD_EVENTS_CAPACITY)
    /// per subscriber): one that falls behind loses the oldest and is told how many.
    pub fn record_events(&self) -> tokio::sync::broadcast::Receiver<RecordEvent> {
        self.record_events.subscribe()
    }

    /// The banned IPs and prefixes, from `banned_ips` and [`ban_ip`](Self::ban_ip), sorted.
    pub fn banned_ips(&self) -> Vec<IpPrefix> {
        self.banned_ips.to_vec()
    }

    /// [`banned_ips`](Self::banned_ips) with when each ban ends (`None`: until lifted).
    pub fn ip_bans(&self) -> Vec<(IpPrefix, Option<std::time::SystemTime>)> {
        self.banned_ips
            .entries()
            .into_iter()
            .map(|(prefix, expiry)| (prefix, expiry.map(system_time_of)))
            .collect()
    }

    /// The peers banned now, sorted: those banned here, and those the network banned for a
    /// while for flooding (`peer.rate_limit.ban_duration_ms`) whose ban has not expired.
    pub fn banned(&self) -> Vec<PeerId> {
        self.banned.to_vec()
    }

    /// [`banned`](Self::banned) with when each ban ends (`None`: until unbanned).
    pub fn bans(&self) -> Vec<(PeerId, Option<std::time::SystemTime>)> {
        self.banned
            .entries()
            .into_iter()
            .map(|(peer_id, expiry)| (peer_id, expiry.map(system_time_of)))
            .collect()
    }

    /// Sets this node's chain status (AElf's best chain and last irreversible block, with the
    /// genesis naming the chain): it goes to every connected peer that speaks `ChainStatus`
    /// (65) at most once per `extensions.chain_status_interval_ms` (250 ms) each, the latest
    /// status winning, and to every peer that connects later as its first message. From the
    /// first status on, a peer that announces another genesis is disconnected with a
    /// `ChainMismatch` notice. Never waits.
    pub fn set_chain_status(&self, status: ChainStatus) {
        self.metrics
            .extensions()
            .set_local_best_height(status.best_height);
        self.chain_tx.send_replace(Some(status));
    }

    /// This node's chain status, as last set.
    pub fn chain_status(&self) -> Option<ChainStatus> {
        *self.chain_tx.borrow()
    }

    /// Whether this network runs routing (protocols 67 and 68): `routing.enabled` and a
    /// PeerId that is the one its key derives.
    pub fn routing_enabled(&self) -> bool {
        self.routing.is_some()
    }

    /// The routing state (edges, reachable peers, neighbours, last recompute) and the routes
    /// to the targets `offset..offset + limit` (sorted by PeerId). `None` without routing or
    /// once the network is shut down.
    pub async fn routing_snapshot(&self, offset: usize, limit: usize) -> Option<RoutingSnapshot> {
        let handle = self.routing.as_ref()?;
        let (reply, answer) = oneshot::channel();
        handle
            .send(RoutingCommand::Snapshot {
                offset,
                limit,
                reply,
            })
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Who is connected, with what.
    pub fn peers_and_metadata(&self) -> &PeersAndMetadata {
        &self.peers
    }

    /// Whether `peer_id` is connected on this network.
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.peers
            .is_connected(PeerNetworkId::new(self.network_id, peer_id))
    }

    /// The trusted set: changes take effect on the next handshake. The connectivity manager
    /// owns its contents and replaces them on every discovery change; see
    /// [`NetworkBuilder::trusted_peers`](crate::NetworkBuilder::trusted_peers).
    pub fn trusted_peers(&self) -> &TrustedPeers {
        &self.trusted
    }

    /// This network's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The peer layer's counters (`peerlane_peer_*`), summed over this network's connections.
    pub fn peer_metrics(&self) -> &peer::Metrics {
        &self.peer_metrics
    }

    /// The connectivity manager's counters (`peerlane_connectivity_*`): dials by result,
    /// backoffs, stale disconnects, discovery updates.
    pub fn connectivity_metrics(&self) -> &connectivity_manager::Metrics {
        &self.connectivity_metrics
    }

    /// The Noise layer's counters (`peerlane_noise_*`): handshakes by side and outcome,
    /// decryption failures, stream errors, X25519 operations.
    pub fn noise_metrics(&self) -> &noise::Metrics {
        &self.noise_metrics
    }

    /// Shuts the network down and waits until every task has ended: the listener stops, every
    /// connection flushes what it has queued (within the peer config's
    /// `writer_close_timeout`) and closes, pending RPCs fail, and every connected peer is
    /// announced lost.
    ///
    /// Cancel-safe: the shutdown has begun once this is first polled; dropping the future
    /// stops only the waiting.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!(network_id = %self.network_id, "network shut down");
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("network_id", &self.network_id)
            .field("peer_id", &self.peer_id)
            .field("listen_address", &self.listen_address)
            .finish_non_exhaustive()
    }
}

/// The tokio instant (the clock bans expire on) of the wall-clock time `at`; a time past is
/// now.
fn instant_of(at: std::time::SystemTime) -> tokio::time::Instant {
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}

/// The wall-clock time of the tokio instant `at` (in the future, as ban expiries are).
fn system_time_of(at: tokio::time::Instant) -> std::time::SystemTime {
    std::time::SystemTime::now() + at.saturating_duration_since(tokio::time::Instant::now())
}
