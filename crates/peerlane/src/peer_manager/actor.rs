//! [`PeerManager`]: the actor that owns a network's live connections (see the module docs of
//! `peer_manager`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use connectivity_manager::{ConnectivityHandle, PeerEvent};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::{PeerRole, TrustedPeers};
use peer::{ConnectionId, ConnectionMetadata, DisconnectReason, InboundRouter, PeerHandle};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::NetworkId;

use crate::admission::{self, Prefix};
use crate::disconnect_notice::DisconnectCode;
use crate::error::Error;
use crate::intake::send_notice;
use crate::metrics::{ConnectionChange, Metrics, RefusalReason};
use crate::peer_manager::ban_list::BanList;
use crate::peer_manager::handle::{Channels, NewConnection, Request};
use crate::peer_manager::notice::RefusalNotices;
use crate::peer_manager::pending_events::PendingEvents;
use crate::peer_manager::simultaneous_dial::{Keep, resolve_simultaneous_dial};
use crate::peers::{PeerNetworkId, PeersAndMetadata};
use crate::record_events::{BanCause, RecordEvent, RecordEvents};
use crate::transport::{AptosNetTransport, ByteCounters};
/// The warnings about refused banned peers.
static BANNED_LOG: netcore::SharedLogLimiter =
    netcore::SharedLogLimiter::new(3, Duration::from_secs(60));

/// Everything the peer manager needs from the builder.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) own_peer_id: PeerId,
    /// Shared by every peer of the network rather than copied into each.
    pub(crate) peer_config: Arc<peer::Config>,
    pub(crate) max_inbound_connections: usize,
    /// `admission.max_inbound_per_ip` and `admission.max_inbound_per_prefix`.
    pub(crate) max_inbound_per_ip: usize,
    pub(crate) max_inbound_per_prefix: usize,
    pub(crate) transport: Arc<AptosNetTransport>,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) router: Arc<dyn InboundRouter>,
    pub(crate) peer_metrics: Arc<peer::Metrics>,
    /// Bytes of unfinished inbound streams, shared by every peer of the network.
    pub(crate) stream_budget: Arc<peer::StreamBudget>,
    pub(crate) metrics: Metrics,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Where to report connections and disconnections for the connectivity manager.
    pub(crate) connectivity: Option<ConnectivityHandle>,
    /// Peers whose connections are refused and whose dials fail.
    pub(crate) banned: BanList,
    /// The trusted set: peers outside it count towards `max_inbound_connections`.
    pub(crate) trusted: TrustedPeers,
    /// Peers that bypass the inbound limits (`connectivity.whitelist`).
    pub(crate) whitelist: HashSet<PeerId>,
    /// Tells refused peers why, on protocol 64.
    pub(crate) notices: RefusalNotices,
    /// Where the bans the network sets itself are published.
    pub(crate) record_events: RecordEvents,
}

/// At the inbound limit, an untrusted inbound peer silent for at least this long may be
/// closed to make room for a newcomer (`evicted_idle`); the one silent longest goes first.
/// Shorter than the health checker's 10 s ping interval would make peers that only answer
/// pings always evictable; this makes them evictable half of the time, and peers that send
/// anything else rarely.
pub(crate) const INBOUND_EVICTION_MIN_IDLE: Duration = Duration::from_secs(5);

/// The actor; see the module docs.
pub(crate) struct PeerManager {
    parts: Parts,
    /// The current connection of each connected peer.
    connections: HashMap<PeerId, Current>,
    requests_rx: mpsc::Receiver<Request>,
    /// Set once every handle is gone; the actor then only serves connections.
    requests_closed: bool,
    /// Cloned into dial tasks; the listener has its own clone.
    new_connections_tx: mpsc::Sender<NewConnection>,
    new_connections_rx: mpsc::Receiver<NewConnection>,
    /// One future per spawned peer, current or replaced: resolves when its tasks have ended.
    closed: FuturesUnordered<BoxFuture<'static, Closed>>,
    /// Disconnect requests waiting for their connection to close.
    pending_disconnects: HashMap<ConnectionId, Vec<oneshot::Sender<Result<(), Error>>>>,
    /// Connection events not yet handed to the connectivity manager, oldest first; at most one
    /// per peer (see [`PendingEvents`]).
    connectivity_events: PendingEvents,
}

/// A peer's current connection.
struct Current {
    metadata: ConnectionMetadata,
    handle: PeerHandle,
    /// Whether the connectivity manager knows about it (see [`PeerManager::reports`]).
    reported: bool,
    /// Its socket's counters, for when it last received anything.
    bytes: Arc<ByteCounters>,
    /// Closed to make room at the inbound limit, and no longer counted towards it.
    evicted: bool,
}

/// A spawned peer whose tasks have ended.
struct Closed {
    peer_id: PeerId,
    connection_id: ConnectionId,
    origin: ConnectionOrigin,
    reason: DisconnectReason,
}

impl PeerManager {
    /// The actor over `channels`.
    pub(crate) fn new(parts: Parts, channels: Channels) -> Self {
        Self {
            parts,
            connections: HashMap::new(),
            requests_rx: channels.requests_rx,
            requests_closed: false,
            new_connections_tx: channels.new_connections_tx,
            new_connections_rx: channels.new_connections_rx,
            closed: FuturesUnordered::new(),
            pending_disconnects: HashMap::new(),
            connectivity_events: PendingEvents::default(),
        }
    }

    /// Runs until the network's shutdown token is cancelled, then waits for every peer to
    /// close (each flushes under its own `writer_close_timeout`) and announces them lost.
    pub(crate) async fn run(mut self) {
        let shutdown = self.parts.shutdown.clone();
        loop {
            let next_event = self.connectivity_events.front();
            // Every future here is cancel-safe (`cancelled`, `FuturesUnordered::next`, mpsc
            // `recv`): a branch that loses the race loses nothing.
            tokio::select! {
                // Local work before remote work: shutdown, then ended connections (cheap
                // bookkeeping that frees slots), then new connections, then new requests.
                biased;
                // The network is shutting down: stop taking new work.
                () = shutdown.cancelled() => break,
                // A peer's tasks ended.
                Some(closed) = self.closed.next(), if !self.closed.is_empty() => {
                    self.handle_closed(closed);
                }
                // A connection finished set-up (the actor holds a sender: never `None`).
                Some(new) = self.new_connections_rx.recv() => self.handle_new_connection(new),
                // A request from a handle; `None` once every handle is gone.
                request = self.requests_rx.recv(), if !self.requests_closed => match request {
                    Some(request) => self.handle_request(request),
                    None => self.requests_closed = true,
                },
                // Hand the oldest connection event to the connectivity manager.
                sent = send_event(self.parts.connectivity.as_ref(), next_event.clone()),
                    if next_event.is_some() =>
                {
                    if sent {
                        self.connectivity_events.pop_front();
                    } else {
                        // The connectivity manager stopped: nobody listens any more.
                        self.connectivity_events.clear();
                        self.parts.connectivity = None;
                    }
                }
            }
        }
        // Every peer has a child of the cancelled token and is closing: wait for them so that
        // subscribers hear `LostPeer` and nothing outlives the network.
        while let Some(closed) = self.closed.next().await {
            self.handle_closed(closed);
        }
        // Requests and connections that raced the shutdown are answered by dropping them.
        tracing::debug!(network = %self.parts.network_id, "peer manager stopped");
    }

    fn handle_request(&mut self, request: Request) {
        match request {
            Request::Dial {
                peer_id,
                addr,
                managed,
                reply_tx,
            } => self.dial(peer_id, addr, managed, reply_tx),
            Request::Disconnect {
                peer_id,
                reason,
                notice,
                reply_tx,
            } => {
                let peer = PeerNetworkId::new(self.parts.network_id, peer_id);
                let Some(current) = self.connections.get(&peer_id) else {
                    let _ = reply_tx.send(Err(Error::NotConnected { peer }));
                    return;
                };
                tracing::info!(peer = %peer.peer_id, conn_id = %current.metadata.connection_id, reason, "disconnecting peer");
                if let Some(notice) = notice {
                    // Queued before the close: the writer sends it, then shuts the socket.
                    send_notice(&self.parts.peers, &self.parts.metrics, peer, notice);
                }
                current.handle.disconnect();
                self.pending_disconnects
                    .entry(current.metadata.connection_id)
                    .or_default()
                    .push(reply_tx);
            }
        }
    }

    /// Starts a dial in its own task; the connection comes back through `new_connections`.
    fn dial(
        &mut self,
        peer_id: PeerId,
        addr: NetworkAddress,
        managed: bool,
        reply_tx: oneshot::Sender<Result<(), Error>>,
    ) {
        let peer = PeerNetworkId::new(self.parts.network_id, peer_id);
        if let Some(current) = self.connections.get_mut(&peer_id) {
            if managed && !current.reported && self.parts.connectivity.is_some() {
                // The application's own connection: from now on the manager looks after it.
                current.reported = true;
                self.connectivity_events.push(PeerEvent::Connected {
                    peer_id,
                    origin: current.metadata.origin,
                });
                let _ = reply_tx.send(Ok(()));
                return;
            }
            let _ = reply_tx.send(Err(Error::AlreadyConnected { peer }));
            return;
        }
        if self.parts.banned.contains(peer_id) {
            tracing::debug!(peer = %peer.peer_id, %addr, "not dialing a banned peer");
            let _ = reply_tx.send(Err(Error::Banned { peer }));
            return;
        }
        // Fails before connecting for an address we cannot use (no key, handshake version).
        let dial = match self.parts.transport.dial(peer_id, addr.clone()) {
            Ok(dial) => dial,
            Err(err) => {
                self.parts
                    .metrics
                    .record_setup_failure(ConnectionOrigin::Outbound, err.setup_failure());
                let _ = reply_tx.send(Err(err));
                return;
            }
        };
        tracing::debug!(peer = %peer.peer_id, %addr, "dialing");
        let new_connections_tx = self.new_connections_tx.clone();
        let shutdown = self.parts.shutdown.clone();
        let metrics = self.parts.metrics.clone();
        self.parts.tracker.spawn(async move {
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(Error::ShutDown),
                result = dial => result,
            };
            match result {
                Ok(connection) => {
                    let new = NewConnection {
                        connection,
                        reply_tx: Some(reply_tx),
                        managed,
                    };
                    // Fails only when the actor is gone, which drops the reply: the dialer
                    // hears `ShutDown`.
                    let _ = new_connections_tx.send(new).await;
                }
                Err(err) => {
                    if !err.is_shut_down() {
                        metrics
                            .record_setup_failure(ConnectionOrigin::Outbound, err.setup_failure());
                        tracing::debug!(peer = %peer.peer_id, %addr, error = %err, "dial failed");
                    }
                    let _ = reply_tx.send(Err(err));
                }
            }
        });
    }

    fn handle_new_connection(&mut self, new: NewConnection) {
        let NewConnection {
            connection,
            reply_tx,
            managed,
        } = new;
        let metadata = connection.metadata.clone();
        let peer_id = metadata.remote_peer_id;
        let peer = PeerNetworkId::new(self.parts.network_id, peer_id);
        let reply = |result: Result<(), Error>| {
            if let Some(reply_tx) = reply_tx {
                let _ = reply_tx.send(result);
            }
        };

        if self.parts.shutdown.is_cancelled() {
            // Raced the shutdown: drop the socket.
            reply(Err(Error::ShutDown));
            return;
        }

        if peer_id == self.parts.own_peer_id {
            // Noise refuses a self-dial at both ends; this is the last line of defence.
            self.parts
                .metrics
                .record_refused(RefusalReason::SelfConnection);
            tracing::warn!(peer = %peer.peer_id, origin = %metadata.origin, reason = RefusalReason::SelfConnection.as_str(), "connection refused");
            reply(Err(Error::SelfConnection));
            return;
        }

        if self.parts.banned.contains(peer_id) {
            // A remote that speaks protocol 64 reads why, and until when; others see the
            // socket close.
            self.parts.metrics.record_refused(RefusalReason::Banned);
            let ban = self.parts.banned.describe(peer_id).unwrap_or_default();
            if let Some(suppressed) = BANNED_LOG.allow(std::time::Instant::now()) {
                tracing::warn!(peer = %peer_id, origin = %metadata.origin, reason = RefusalReason::Banned.as_str(), suppressed, "connection with {peer_id} refused: banned {ban}");
            }
            let expiry = to_system_time(self.parts.banned.expiry(peer_id).flatten());
            self.parts
                .notices
                .refuse(connection, DisconnectCode::banned_until(expiry));
            reply(Err(Error::Banned { peer }));
            return;
        }

        if metadata.origin == ConnectionOrigin::Inbound
            && !self.is_trusted(peer_id)
            && !self.parts.whitelist.contains(&peer_id)
            && !self.connections.contains_key(&peer_id)
            && let Some(reason) = self.over_source_cap(&metadata.remote_addr)
        {
            self.parts.metrics.record_refused(reason);
            tracing::debug!(peer = %peer.peer_id, remote_addr = %metadata.remote_addr, reason = reason.as_str(), "inbound connection refused");
            self.parts.notices.refuse(connection, DisconnectCode::Full);
            reply(Ok(()));
            return;
        }

        if metadata.origin == ConnectionOrigin::Inbound
            && !self.is_trusted(peer_id)
            && !self.parts.whitelist.contains(&peer_id)
            && !self.connections.contains_key(&peer_id)
            && self.inbound_untrusted_connections() >= self.parts.max_inbound_connections
            && !self.evict_idle_inbound()
        {
            self.parts.notices.refuse(connection, DisconnectCode::Full);
            self.parts
                .metrics
                .record_refused(RefusalReason::InboundLimit);
            // Remote-driven, so debug: the metric is what operators watch.
            tracing::debug!(
                peer = %peer.peer_id,
                reason = RefusalReason::InboundLimit.as_str(),
                limit = self.parts.max_inbound_connections,
                "inbound connection refused"
            );
            reply(Ok(()));
            return;
        }

        let reported = self.reports(&metadata, managed);
        if let Some(existing) = self.connections.get(&peer_id) {
            let keep = resolve_simultaneous_dial(
                self.parts.own_peer_id,
                peer_id,
                existing.metadata.origin,
                metadata.origin,
            );
            self.parts
                .metrics
                .record_connection_event(ConnectionChange::Replaced);
            tracing::debug!(
                peer = %peer.peer_id,
                existing_conn = %existing.metadata.connection_id,
                existing_origin = %existing.metadata.origin,
                new_conn = %metadata.connection_id,
                new_origin = %metadata.origin,
                ?keep,
                "second connection to a connected peer"
            );
            match keep {
                Keep::Existing => {
                    // Never spawned. We are connected all the same, so a dial succeeded.
                    self.parts
                        .notices
                        .refuse(connection, DisconnectCode::RepeatedConnection);
                    reply(Ok(()));
                    return;
                }
                // Its peer closes; its end is ignored, as it is no longer current.
                Keep::New => {
                    existing.handle.disconnect();
                    if existing.reported && !reported {
                        // The application's connection replaces one the manager knew: as far
                        // as the manager is concerned, the peer is gone.
                        self.connectivity_events
                            .push(PeerEvent::Disconnected { peer_id });
                    }
                }
            }
        }

        // Taken before the socket moves into the peer's tasks.
        let bytes = connection.socket.get_ref().counters();
        let handle = peer::spawn(
            self.parts.peer_config.clone(),
            connection,
            self.parts.router.clone(),
            self.parts.peer_metrics.clone(),
            self.parts.stream_budget.clone(),
            &self.parts.tracker,
            self.parts.shutdown.child_token(),
        );
        self.parts.metrics.connection_opened(metadata.origin);
        self.parts
            .metrics
            .record_connection_event(ConnectionChange::New);
        let watched = handle.clone();
        let (connection_id, origin) = (metadata.connection_id, metadata.origin);
        self.closed.push(Box::pin(async move {
            let reason = watched.closed().await;
            Closed {
                peer_id,
                connection_id,
                origin,
                reason,
            }
        }));
        tracing::info!(peer = %peer.peer_id, conn_id = %connection_id, %origin, "peer connected");
        self.parts.peers.insert(
            self.parts.network_id,
            metadata.clone(),
            handle.clone(),
            bytes.clone(),
        );
        if reported {
            // Also on a replacement: the origin may have changed.
            self.connectivity_events
                .push(PeerEvent::Connected { peer_id, origin });
        }
        self.connections.insert(
            peer_id,
            Current {
                metadata,
                handle,
                reported,
                bytes,
                evicted: false,
            },
        );
        reply(Ok(()));
    }

    /// Bans a peer closed for sustained rate-limit abuse for `rate_limit.ban_duration` (zero:
    /// no ban), and closes a connection it made while the flooding one was closing.
    fn ban_for_flooding(&mut self, peer_id: PeerId, closed: ConnectionId) {
        let ban = self.parts.peer_config.rate_limit.ban_duration;
        if ban.is_zero() {
            return;
        }
        // Published before the ban list shows it, so whoever sees the ban (the admin API)
        // sees it after a peer store's subscriber could have.
        self.parts.record_events.publish(RecordEvent::Banned {
            peer_id,
            cause: BanCause::RateLimited,
            until: Some(std::time::SystemTime::now() + ban),
        });
        // Logged once per ban: the connection is gone, so this runs once per flood.
        self.parts
            .banned
            .insert_until(peer_id, Some(Instant::now() + ban));
        tracing::info!(
            peer = %peer_id,
            ban = ?ban,
            reason = DisconnectReason::RateLimited.as_str(),
            "peer banned for a while"
        );
        if let Some(current) = self.connections.get(&peer_id)
            && current.metadata.connection_id != closed
        {
            current.handle.disconnect();
        }
    }

    fn handle_closed(&mut self, closed: Closed) {
        let Closed {
            peer_id,
            connection_id,
            origin,
            reason,
        } = closed;
        self.parts.metrics.connection_closed(origin);
        if reason == DisconnectReason::RateLimited {
            self.ban_for_flooding(peer_id, connection_id);
        }
        let peer = PeerNetworkId::new(self.parts.network_id, peer_id);
        let is_current = self
            .connections
            .get(&peer_id)
            .is_some_and(|current| current.metadata.connection_id == connection_id);
        if is_current {
            let reported = self
                .connections
                .remove(&peer_id)
                .is_some_and(|current| current.reported);
            self.parts.peers.remove(peer, connection_id, reason);
            self.parts
                .metrics
                .record_connection_event(ConnectionChange::Lost);
            tracing::info!(peer = %peer.peer_id, conn_id = %connection_id, reason = reason.as_str(), "peer lost");
            if reported && self.parts.connectivity.is_some() {
                self.connectivity_events
                    .push(PeerEvent::Disconnected { peer_id });
            }
        } else {
            // A replaced connection: the peer is still connected over its successor.
            tracing::debug!(peer = %peer.peer_id, conn_id = %connection_id, reason = reason.as_str(), "replaced connection closed");
        }
        for reply_tx in self
            .pending_disconnects
            .remove(&connection_id)
            .unwrap_or_default()
        {
            let _ = reply_tx.send(Ok(()));
        }
    }

    /// Whether the connectivity manager hears about a new connection: every inbound one,
    /// every one it dialed, and outbound ones to trusted peers. An outbound connection the
    /// application dialed ([`Network::dial`](crate::Network::dial)) to a peer outside the
    /// trusted set is the application's business: the manager would close it as stale at
    /// once. Such a connection does not count towards `max_outbound_connections`; if the
    /// manager later dials that peer, it takes the connection over (see
    /// [`PeerManagerHandle::dial_managed`]).
    fn reports(&self, metadata: &ConnectionMetadata, managed: bool) -> bool {
        self.parts.connectivity.is_some()
            && (managed
                || metadata.origin == ConnectionOrigin::Inbound
                || metadata.role != PeerRole::Unknown)
    }

    /// Whether `peer_id` is in the trusted set now.
    fn is_trusted(&self, peer_id: PeerId) -> bool {
        self.parts.trusted.snapshot().contains_key(&peer_id)
    }

    /// Whether a new untrusted inbound connection from `remote_addr` would take its IP or
    /// prefix over its cap, and which.
    fn over_source_cap(&self, remote_addr: &NetworkAddress) -> Option<RefusalReason> {
        let ip = admission::ip_of(remote_addr)?;
        let prefix = Prefix::of(Some(ip));
        let trusted = self.parts.trusted.snapshot();
        let (mut same_ip, mut same_prefix) = (0, 0);
        for (peer_id, current) in &self.connections {
            if current.metadata.origin != ConnectionOrigin::Inbound
                || current.evicted
                || trusted.contains_key(peer_id)
            {
                continue;
            }
            let other = admission::ip_of(&current.metadata.remote_addr);
            same_ip += usize::from(other == Some(ip));
            same_prefix += usize::from(Prefix::of(other) == prefix);
        }
        if same_ip >= self.parts.max_inbound_per_ip {
            Some(RefusalReason::TooManyFromIp)
        } else if same_prefix >= self.parts.max_inbound_per_prefix {
            Some(RefusalReason::TooManyFromPrefix)
        } else {
            None
        }
    }

    /// Inbound connections from peers outside the trusted set and the whitelist, except
    /// those being evicted.
    fn inbound_untrusted_connections(&self) -> usize {
        let trusted = self.parts.trusted.snapshot();
        self.connections
            .iter()
            .filter(|(peer_id, current)| {
                current.metadata.origin == ConnectionOrigin::Inbound
                    && !current.evicted
                    && !trusted.contains_key(*peer_id)
                    && !self.parts.whitelist.contains(*peer_id)
            })
            .count()
    }

    /// At the inbound limit: closes the untrusted inbound peer silent longest, if it has been
    /// silent for [`INBOUND_EVICTION_MIN_IDLE`]; among peers silent since the same instant,
    /// the oldest connection (lowest connection id: ours, not the peer's to choose), not the
    /// first in the map's per-process order. Returns whether it made room.
    fn evict_idle_inbound(&mut self) -> bool {
        let trusted = self.parts.trusted.snapshot();
        let whitelist = &self.parts.whitelist;
        let idlest = self
            .connections
            .iter_mut()
            .filter(|(peer_id, current)| {
                current.metadata.origin == ConnectionOrigin::Inbound
                    && !current.evicted
                    && !trusted.contains_key(*peer_id)
                    && !whitelist.contains(*peer_id)
            })
            .min_by_key(|(_, current)| {
                (
                    current.bytes.last_received(),
                    current.metadata.connection_id,
                )
            });
        let Some((peer_id, current)) = idlest else {
            return false;
        };
        let idle = current.bytes.last_received().elapsed();
        if idle < INBOUND_EVICTION_MIN_IDLE {
            return false;
        }
        current.evicted = true;
        current.handle.disconnect();
        self.parts
            .metrics
            .record_connection_event(ConnectionChange::EvictedIdle);
        let peer = PeerNetworkId::new(self.parts.network_id, *peer_id);
        tracing::debug!(peer = %peer.peer_id, ?idle, "idle inbound peer closed to make room at the inbound limit");
        true
    }
}

/// A tokio instant as a wall-clock time, for a ban's expiry in a notice.
fn to_system_time(at: Option<Instant>) -> Option<std::time::SystemTime> {
    at.map(|at| std::time::SystemTime::now() + at.saturating_duration_since(Instant::now()))
}

/// Sends `event` to the connectivity manager; `false` once it has stopped. Cancel-safe: if
/// dropped before it completes, the event was not queued.
async fn send_event(connectivity: Option<&ConnectivityHandle>, event: Option<PeerEvent>) -> bool {
    match (connectivity, event) {
        (Some(connectivity), Some(event)) => connectivity.send(event).await.is_ok(),
        _ => false,
    }
}
