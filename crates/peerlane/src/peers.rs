//! [`PeersAndMetadata`]: who is connected on which network, with what, how each connection is
//! doing ([`PeerStats`]: connected since, bytes on the wire, last ping round-trip time), and who
//! wants to know when that changes.
//!
//! The peer managers (one per network) are the only writers of the entries; applications,
//! clients and the health checker read it from any task. Two figures change without the write
//! lock: the byte counters, which each connection's socket keeps, and the round-trip time, which
//! the health checker stores in an atomic. Reads take a read lock for the time of one map look-up
//! or one copy of the map's keys, so many readers do not slow each other down.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use netcore::PeerId;
use peer::{ConnectionId, ConnectionMetadata, DisconnectReason, PeerHandle};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use wire::{NetworkId, ProtocolIdSet};

use crate::chain_status::{ChainStatus, PeerChainStatus};
use crate::config::NOTIFICATION_CAPACITY;
use crate::transport::ByteCounters;

/// A peer on one of our networks: the same node on two networks is two peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerNetworkId {
    /// The network.
    pub network_id: NetworkId,
    /// The peer.
    pub peer_id: PeerId,
}

/// A change in who is connected, as [`ConnectionNotifications`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionNotification {
    /// A connection was registered: the peer is connected over it from now on. A peer that
    /// replaces its connection (simultaneous dial, reconnect) gives a second `NewPeer` with the
    /// new connection id, with no `LostPeer` in between, as it stayed connected.
    NewPeer(ConnectionMetadata, NetworkId),
    /// The peer's current connection ended, for the reason given. Never sent for a connection
    /// that was replaced by a newer one.
    LostPeer(ConnectionMetadata, NetworkId, DisconnectReason),
}

/// Who is connected on which network. Cloning gives another handle on the same state.
///
/// One `PeersAndMetadata` can serve several networks
/// ([`NetworkBuilder::with_peers_and_metadata`](crate::NetworkBuilder::with_peers_and_metadata));
/// entries are keyed by [`PeerNetworkId`].
///
/// # Notifications
///
/// [`subscribe`](Self::subscribe) returns a [`ConnectionNotifications`] that first replays a
/// `NewPeer` for every peer connected at that moment, then reports changes as they happen. The
/// changes go through one broadcast channel of `notification_capacity` entries (default
/// [`NOTIFICATION_CAPACITY`], 1024) shared by all subscribers: a subscriber that falls that far
/// behind loses the oldest notifications it has not read. It learns how many on its next
/// [`recv`](ConnectionNotifications::recv) ([`lost`](ConnectionNotifications::lost)), they are
/// counted in `peerlane_notifications_lost_total`, and it can resynchronise from
/// [`connected_peers`](Self::connected_peers). Writers never wait for subscribers.
#[derive(Clone)]
pub struct PeersAndMetadata {
    inner: Arc<Inner>,
}

/// A subscription to [`ConnectionNotification`]s; see [`PeersAndMetadata`] for what a slow
/// subscriber loses.
pub struct ConnectionNotifications {
    /// `NewPeer` for the peers connected when the subscription started.
    replay: VecDeque<ConnectionNotification>,
    rx: broadcast::Receiver<ConnectionNotification>,
    lost: u64,
    lost_total: Counter,
}

struct Inner {
    peers: RwLock<HashMap<PeerNetworkId, PeerEntry>>,
    /// The last RTT of peers no longer connected, for dial choices.
    past_rtts: Mutex<RememberedRtts>,
    notifications_tx: broadcast::Sender<ConnectionNotification>,
    notifications_lost: Counter,
}

/// One connected peer: its current connection.
struct PeerEntry {
    metadata: ConnectionMetadata,
    handle: PeerHandle,
    /// When the connection was registered.
    connected_since: SystemTime,
    /// Counted by the connection's socket.
    bytes: Arc<ByteCounters>,
    /// The last successful health-check ping's round-trip time in microseconds;
    /// [`NO_RTT`] before the first. Atomic so that recording needs only the read lock.
    rtt_us: AtomicU64,
    /// The chain status the peer last sent on this connection (protocol 65): one slot, the
    /// latest wins, so a flood of announcements holds no more than one.
    chain: Mutex<Option<PeerChainStatus>>,
}

/// Disconnected peers whose last RTT is remembered at most (about 90 bytes each).
pub const MAX_REMEMBERED_RTTS: usize = 4096;

/// The last round-trip time of peers that disconnected, at most [`MAX_REMEMBERED_RTTS`]; the
/// peer remembered longest ago makes room for a new one (an order of our own, the same in
/// every run, where a map's would differ per process).
#[derive(Debug, Default)]
struct RememberedRtts {
    rtts: HashMap<PeerNetworkId, Duration>,
    /// Peers in the order they were first remembered.
    order: VecDeque<PeerNetworkId>,
}

impl RememberedRtts {
    fn remember(&mut self, peer: PeerNetworkId, rtt: Duration) {
        if self.rtts.insert(peer, rtt).is_some() {
            return;
        }
        self.order.push_back(peer);
        if self.order.len() > MAX_REMEMBERED_RTTS
            && let Some(oldest) = self.order.pop_front()
        {
            self.rtts.remove(&oldest);
        }
    }

    fn get(&self, peer: PeerNetworkId) -> Option<Duration> {
        self.rtts.get(&peer).copied()
    }
}

/// [`PeerEntry::rtt_us`] before the first successful ping.
const NO_RTT: u64 = u64::MAX;

/// Figures of a peer's current connection, as [`PeersAndMetadata::peer_stats`] reads them: a
/// snapshot, taken without stopping the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The connection the figures are about.
    pub connection_id: ConnectionId,
    /// When the connection was registered (after Noise and the handshake message), by the
    /// system clock.
    pub connected_since: SystemTime,
    /// Bytes read from the connection's socket: what the wire carried in, Noise handshake,
    /// framing and encryption overhead included.
    pub bytes_received: u64,
    /// Bytes written to the connection's socket, counted the same way.
    pub bytes_sent: u64,
    /// The round-trip time of the last successful health-check ping on this connection
    /// (from sending the ping to reading the pong, microsecond precision); `None` before the
    /// first, or when the network runs no health checker.
    pub last_rtt: Option<Duration>,
    /// The chain status the peer last announced on this connection (protocol 65), and when;
    /// `None` before its first, or if it does not speak the protocol.
    pub chain_status: Option<PeerChainStatus>,
}

impl PeerNetworkId {
    /// `peer_id` on `network_id`.
    pub const fn new(network_id: NetworkId, peer_id: PeerId) -> Self {
        Self {
            network_id,
            peer_id,
        }
    }
}

impl fmt::Display for PeerNetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.network_id, self.peer_id)
    }
}

impl ConnectionNotification {
    /// The connection's metadata.
    pub fn metadata(&self) -> &ConnectionMetadata {
        match self {
            Self::NewPeer(metadata, _) | Self::LostPeer(metadata, _, _) => metadata,
        }
    }

    /// The peer and network the notification is about.
    pub fn peer(&self) -> PeerNetworkId {
        match self {
            Self::NewPeer(metadata, network_id) | Self::LostPeer(metadata, network_id, _) => {
                PeerNetworkId::new(*network_id, metadata.remote_peer_id)
            }
        }
    }
}

impl Default for PeersAndMetadata {
    fn default() -> Self {
        Self::new(NonZeroUsize::new(NOTIFICATION_CAPACITY).expect("the constant is not zero"))
    }
}

impl PeersAndMetadata {
    /// An empty set whose notification channel holds `notification_capacity` entries.
    pub fn new(notification_capacity: NonZeroUsize) -> Self {
        let (notifications_tx, _) = broadcast::channel(notification_capacity.get());
        Self {
            inner: Arc::new(Inner {
                peers: RwLock::new(HashMap::new()),
                past_rtts: Mutex::new(RememberedRtts::default()),
                notifications_tx,
                notifications_lost: Counter::default(),
            }),
        }
    }

    /// The connected peers, on every network, in `PeerNetworkId` order.
    ///
    /// Every listing here is sorted: callers send to the peers in the order listed, and a
    /// map's own order differs per process, which would make a simulated run depend on more
    /// than its seed.
    pub fn connected_peers(&self) -> Vec<PeerNetworkId> {
        let mut peers: Vec<PeerNetworkId> = self.read().keys().copied().collect();
        peers.sort_unstable();
        peers
    }

    /// The connected peers on `network_id`, in `PeerNetworkId` order.
    pub fn connected_peers_on(&self, network_id: NetworkId) -> Vec<PeerNetworkId> {
        let mut peers: Vec<PeerNetworkId> = self
            .read()
            .keys()
            .filter(|peer| peer.network_id == network_id)
            .copied()
            .collect();
        peers.sort_unstable();
        peers
    }

    /// The connected peers with the metadata of their current connection, in `PeerNetworkId`
    /// order.
    pub fn connected_peers_and_metadata(&self) -> Vec<(PeerNetworkId, ConnectionMetadata)> {
        let mut peers: Vec<(PeerNetworkId, ConnectionMetadata)> = self
            .read()
            .iter()
            .map(|(peer, entry)| (*peer, entry.metadata.clone()))
            .collect();
        peers.sort_unstable_by_key(|(peer, _)| *peer);
        peers
    }

    /// The figures of `peer`'s current connection (bytes on the wire, connected since, last
    /// ping round-trip time), if it is connected.
    pub fn peer_stats(&self, peer: PeerNetworkId) -> Option<PeerStats> {
        self.read().get(&peer).map(PeerEntry::stats)
    }

    /// The connected peers with the metadata and the figures of their current connection, in
    /// one snapshot, in `PeerNetworkId` order.
    pub fn connected_peers_with_stats(
        &self,
    ) -> Vec<(PeerNetworkId, ConnectionMetadata, PeerStats)> {
        let mut peers: Vec<(PeerNetworkId, ConnectionMetadata, PeerStats)> = self
            .read()
            .iter()
            .map(|(peer, entry)| (*peer, entry.metadata.clone(), entry.stats()))
            .collect();
        peers.sort_unstable_by_key(|(peer, _, _)| *peer);
        peers
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: PeerNetworkId) -> bool {
        self.read().contains_key(&peer)
    }

    /// The metadata of `peer`'s current connection, if it is connected.
    pub fn metadata(&self, peer: PeerNetworkId) -> Option<ConnectionMetadata> {
        self.read().get(&peer).map(|entry| entry.metadata.clone())
    }

    /// The application protocols negotiated with `peer`, if it is connected.
    pub fn supported_protocols(&self, peer: PeerNetworkId) -> Option<ProtocolIdSet> {
        self.read()
            .get(&peer)
            .map(|entry| entry.metadata.application_protocols)
    }

    /// Subscribes to connection notifications: first a `NewPeer` for each peer connected now
    /// (in `PeerNetworkId` order), then every change.
    pub fn subscribe(&self) -> ConnectionNotifications {
        // Under the read lock, writers (who notify under the write lock) cannot slip a change
        // between the snapshot and the subscription.
        let peers = self.read();
        // In `PeerNetworkId` order, as every listing: the map's order differs per process.
        let mut connected: Vec<(&PeerNetworkId, &PeerEntry)> = peers.iter().collect();
        connected.sort_unstable_by_key(|(peer, _)| **peer);
        let replay = connected
            .into_iter()
            .map(|(peer, entry)| {
                ConnectionNotification::NewPeer(entry.metadata.clone(), peer.network_id)
            })
            .collect();
        let rx = self.inner.notifications_tx.subscribe();
        drop(peers);
        ConnectionNotifications {
            replay,
            rx,
            lost: 0,
            lost_total: self.inner.notifications_lost.clone(),
        }
    }

    /// Notifications lost by slow subscribers so far, all subscribers together.
    pub fn notifications_lost(&self) -> u64 {
        self.inner.notifications_lost.get()
    }

    /// Registers `peerlane_notifications_lost_total` (the counter behind
    /// [`notifications_lost`](Self::notifications_lost)) into `registry`. Call it once per
    /// `PeersAndMetadata`; [`NetworkBuilder::new`](crate::NetworkBuilder::new) does it for the
    /// one it creates.
    pub fn register_metrics(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "peerlane_notifications_lost",
            "Connection notifications slow subscribers lost",
            self.inner.notifications_lost.clone(),
        );
    }

    /// `peer`'s negotiated protocols and its connection's handle.
    pub(crate) fn sender(&self, peer: PeerNetworkId) -> Option<(ProtocolIdSet, PeerHandle)> {
        self.read()
            .get(&peer)
            .map(|entry| (entry.metadata.application_protocols, entry.handle.clone()))
    }

    /// Records `rtt`, the round-trip time of a successful health-check ping, for `peer`'s
    /// current connection (if it is still connected).
    pub(crate) fn record_rtt(&self, peer: PeerNetworkId, rtt: Duration) {
        if let Some(entry) = self.read().get(&peer) {
            // Below the sentinel: 2^64 µs is far beyond any ping's timeout.
            let micros = u64::try_from(rtt.as_micros()).unwrap_or(NO_RTT - 1);
            entry
                .rtt_us
                .store(micros.min(NO_RTT - 1), Ordering::Relaxed);
        }
    }

    /// The chain status `peer` last announced on its current connection, and when, if it is
    /// connected and has announced one.
    pub fn chain_status(&self, peer: PeerNetworkId) -> Option<PeerChainStatus> {
        self.read().get(&peer).and_then(PeerEntry::chain_status)
    }

    /// The round-trip time of `peer`'s last successful health-check ping, if it is connected
    /// and has answered one.
    pub fn rtt(&self, peer: PeerNetworkId) -> Option<Duration> {
        self.read()
            .get(&peer)
            .and_then(|entry| entry.stats().last_rtt)
    }

    /// The round-trip time of `peer`'s last successful health-check ping: on its current
    /// connection, or if it has none there (not connected, or not pinged yet) on its last one,
    /// while remembered (the last [`MAX_REMEMBERED_RTTS`] peers to disconnect with one).
    /// What the connectivity manager orders its dial candidates by.
    pub fn last_known_rtt(&self, peer: PeerNetworkId) -> Option<Duration> {
        self.rtt(peer).or_else(|| {
            self.inner
                .past_rtts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(peer)
        })
    }

    /// Records `status`, just received from `peer`, in place of the one before. Returns
    /// `false` when the peer is not connected (nothing is kept).
    pub(crate) fn record_chain_status(&self, peer: PeerNetworkId, status: ChainStatus) -> bool {
        let peers = self.read();
        let Some(entry) = peers.get(&peer) else {
            return false;
        };
        let mut slot = entry.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let updates = slot
            .map_or(0, |previous| previous.updates)
            .saturating_add(1);
        *slot = Some(PeerChainStatus {
            status,
            updated_at: SystemTime::now(),
            updates,
        });
        true
    }

    /// Makes `metadata`'s connection the current one of its peer on `network_id`, and
    /// announces it; `bytes` are the counters of its socket. Returns the connection it
    /// replaces, if any.
    pub(crate) fn insert(
        &self,
        network_id: NetworkId,
        metadata: ConnectionMetadata,
        handle: PeerHandle,
        bytes: Arc<ByteCounters>,
    ) -> Option<(ConnectionMetadata, PeerHandle)> {
        let peer = PeerNetworkId::new(network_id, metadata.remote_peer_id);
        let entry = PeerEntry {
            metadata,
            handle,
            connected_since: SystemTime::now(),
            bytes,
            rtt_us: AtomicU64::new(NO_RTT),
            chain: Mutex::new(None),
        };
        let mut peers = self.write();
        let notification = ConnectionNotification::NewPeer(entry.metadata.clone(), network_id);
        let previous = peers.insert(peer, entry);
        // An error only means there is no subscriber.
        let _ = self.inner.notifications_tx.send(notification);
        previous.map(|entry| (entry.metadata, entry.handle))
    }

    /// Removes `peer` if `connection_id` is its current connection, and announces it lost for
    /// `reason`. Returns whether it did: a connection that was replaced is not current, and its
    /// end changes nothing.
    pub(crate) fn remove(
        &self,
        peer: PeerNetworkId,
        connection_id: ConnectionId,
        reason: DisconnectReason,
    ) -> bool {
        let mut peers = self.write();
        match peers.get(&peer) {
            Some(entry) if entry.metadata.connection_id == connection_id => {}
            _ => return false,
        }
        let entry = peers.remove(&peer).expect("checked just above");
        if let Some(rtt) = entry.stats().last_rtt {
            self.inner
                .past_rtts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remember(peer, rtt);
        }
        let notification =
            ConnectionNotification::LostPeer(entry.metadata, peer.network_id, reason);
        // An error only means there is no subscriber.
        let _ = self.inner.notifications_tx.send(notification);
        true
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<PeerNetworkId, PeerEntry>> {
        // Writers do one map operation and one non-blocking send under the lock: a poisoned
        // lock still guards a consistent map.
        self.inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<PeerNetworkId, PeerEntry>> {
        self.inner
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl PeerEntry {
    fn stats(&self) -> PeerStats {
        let rtt_us = self.rtt_us.load(Ordering::Relaxed);
        PeerStats {
            connection_id: self.metadata.connection_id,
            connected_since: self.connected_since,
            bytes_received: self.bytes.received(),
            bytes_sent: self.bytes.sent(),
            last_rtt: (rtt_us != NO_RTT).then(|| Duration::from_micros(rtt_us)),
            chain_status: self.chain_status(),
        }
    }

    fn chain_status(&self) -> Option<PeerChainStatus> {
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for PeersAndMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeersAndMetadata")
            .field("connected", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl ConnectionNotifications {
    /// The next notification; `None` once every [`PeersAndMetadata`] handle is gone.
    ///
    /// Notifications this subscriber was too slow to read are skipped, logged and counted
    /// ([`lost`](Self::lost)).
    ///
    /// Cancel-safe: a notification is taken only when the future completes.
    pub async fn recv(&mut self) -> Option<ConnectionNotification> {
        if let Some(notification) = self.replay.pop_front() {
            return Some(notification);
        }
        loop {
            match self.rx.recv().await {
                Ok(notification) => return Some(notification),
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    self.lost += count;
                    self.lost_total.inc_by(count);
                    tracing::warn!(
                        lost = count,
                        "connection notification subscriber fell behind"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next notification if one is ready, without waiting; lost ones are counted as in
    /// [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Option<ConnectionNotification> {
        if let Some(notification) = self.replay.pop_front() {
            return Some(notification);
        }
        loop {
            match self.rx.try_recv() {
                Ok(notification) => return Some(notification),
                Err(broadcast::error::TryRecvError::Lagged(count)) => {
                    self.lost += count;
                    self.lost_total.inc_by(count);
                }
                Err(_) => return None,
            }
        }
    }

    /// Notifications this subscriber lost by falling behind.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

impl fmt::Debug for ConnectionNotifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionNotifications")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the bound, the peer remembered longest ago is forgotten first; remembering a
    /// peer again updates its time without moving it.
    #[test]
    fn the_oldest_remembered_rtt_makes_room() {
        let peer = |i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            PeerNetworkId::new(NetworkId::Public, PeerId::new(id))
        };
        let mut remembered = RememberedRtts::default();
        let count = u32::try_from(MAX_REMEMBERED_RTTS).unwrap();
        for i in 0..count {
            remembered.remember(peer(i), Duration::from_millis(u64::from(i)));
        }
        remembered.remember(peer(0), Duration::from_millis(7));
        assert_eq!(remembered.get(peer(0)), Some(Duration::from_millis(7)));
        remembered.remember(peer(count), Duration::from_millis(1));
        assert_eq!(remembered.get(peer(0)), None);
        assert_eq!(remembered.get(peer(1)), Some(Duration::from_millis(1)));
        assert_eq!(remembered.get(peer(count)), Some(Duration::from_millis(1)));
        assert_eq!(remembered.rtts.len(), MAX_REMEMBERED_RTTS);
        assert_eq!(remembered.order.len(), MAX_REMEMBERED_RTTS);
    }
}
