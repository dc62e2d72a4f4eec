//! [`PeerManager`]: one actor per network that owns the set of live connections.
//!
//! ```text
//! listener ── set-up connections ──┐
//! dial tasks ── set-up connections ┤
//!                                  ▼
//! PeerManagerHandle ── requests ─► PeerManager ── peer::spawn ──► peer tasks
//!   (dial, disconnect)             │  │                             │
//!                                  │  └─ PeersAndMetadata ─► NewPeer / LostPeer
//!                                  └──────── closed(reason) ◄───────┘
//! ```
//!
//! The peer manager is the only writer of its network's entries in [`PeersAndMetadata`]. For
//! every connection that finished set-up it decides whether to keep it (the ban list, the
//! inbound limit, simultaneous dials: [`resolve_simultaneous_dial`]), spawns a peer ([`peer::spawn`]) for it with the
//! network's router, registers it and announces `NewPeer`. When a peer's tasks end it
//! announces `LostPeer`, unless that connection had been replaced already.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use connectivity_manager::{Action, ConnectionEvent as ConnectivityEvent, ConnectivityHandle};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::PeerRole;
use peer::{ConnectionId, ConnectionMetadata, DisconnectReason, InboundRouter, PeerHandle};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::NetworkId;

use crate::error::Error;
use crate::metrics::{ConnectionEvent, Metrics, RefusalReason};
use crate::peers::{PeerNetworkId, PeersAndMetadata};
use crate::transport::{AptosNetTransport, NetworkConnection};

/// Requests a [`PeerManagerHandle`] can queue: how many may wait for the actor. Senders wait
/// (asynchronously) when it is full.
pub(crate) const REQUEST_CAPACITY: usize = 64;

/// Connections that finished set-up and wait for the actor (from the listener and from dials).
/// Their tasks wait when it is full, which also holds up the listener's accepting.
pub(crate) const NEW_CONNECTION_CAPACITY: usize = 64;

/// The banned peers of a network, shared by its [`Network`](crate::Network) handle (which
/// changes it) and its peer manager (which refuses their connections and dials, and bans peers
/// it closed for rate limiting). A ban is permanent (`None`) or lifts itself at its expiry (a
/// tokio instant, so tests can move it with a paused clock); expired bans are forgotten when
/// next looked at, so the list holds at most one entry per peer ever banned and not yet
/// looked up again.
#[derive(Clone, Debug, Default)]
pub(crate) struct BanList(Arc<RwLock<HashMap<PeerId, Option<Instant>>>>);

impl BanList {
    /// Bans `peer_id` until unbanned; whether it was not banned yet.
    pub(crate) fn insert(&self, peer_id: PeerId) -> bool {
        self.insert_until(peer_id, None)
    }

    /// Bans `peer_id` until `expiry` (`None`: until unbanned), unless a longer ban is in force;
    /// whether it was not banned yet.
    pub(crate) fn insert_until(&self, peer_id: PeerId, expiry: Option<Instant>) -> bool {
        let now = Instant::now();
        let mut bans = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let current = bans
            .get(&peer_id)
            .copied()
            .filter(|ban| is_active(*ban, now));
        let longest = match (current, expiry) {
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            (None, Some(b)) => Some(b),
        };
        bans.insert(peer_id, longest);
        current.is_none()
    }

    /// Lifts the ban on `peer_id`; whether it was banned.
    pub(crate) fn remove(&self, peer_id: PeerId) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer_id)
            .is_some_and(|ban| is_active(ban, Instant::now()))
    }

    /// Whether `peer_id` is banned now.
    pub(crate) fn contains(&self, peer_id: PeerId) -> bool {
        let now = Instant::now();
        let ban = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer_id)
            .copied();
        match ban {
            Some(ban) if is_active(ban, now) => true,
            Some(_) => {
                // Expired: forget it (unless it was renewed in between).
                let mut bans = self.0.write().unwrap_or_else(PoisonError::into_inner);
                if bans.get(&peer_id).is_some_and(|ban| !is_active(*ban, now)) {
                    bans.remove(&peer_id);
                }
                false
            }
            None => false,
        }
    }

    /// The peers banned now, sorted.
    pub(crate) fn to_vec(&self) -> Vec<PeerId> {
        let now = Instant::now();
        let mut peers: Vec<PeerId> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, ban)| is_active(**ban, now))
            .map(|(peer_id, _)| *peer_id)
            .collect();
        peers.sort();
        peers
    }
}

/// Whether a ban with this expiry is in force at `now`.
fn is_active(expiry: Option<Instant>, now: Instant) -> bool {
    expiry.is_none_or(|expiry| now < expiry)
}

/// A cloneable handle on a [`PeerManager`]: dial and disconnect.
#[derive(Clone, Debug)]
pub(crate) struct PeerManagerHandle {
    requests_tx: mpsc::Sender<Request>,
}

/// What a [`PeerManagerHandle`] asks of the actor.
#[derive(Debug)]
pub(crate) enum Request {
    /// Dial `peer_id` at `addr`; reply once it is connected or the dial failed. `managed`
    /// when the connectivity manager asked for it.
    Dial {
        peer_id: PeerId,
        addr: NetworkAddress,
        managed: bool,
        reply_tx: oneshot::Sender<Result<(), Error>>,
    },
    /// Close the connection to `peer_id`, for `reason` (in the log); reply once it is gone.
    Disconnect {
        peer_id: PeerId,
        reason: &'static str,
        reply_tx: oneshot::Sender<Result<(), Error>>,
    },
}

/// A connection that finished set-up, with the dialer's reply when we dialed it.
pub(crate) struct NewConnection {
    pub(crate) connection: NetworkConnection,
    pub(crate) reply_tx: Option<oneshot::Sender<Result<(), Error>>>,
    /// Dialed for the connectivity manager.
    pub(crate) managed: bool,
}

/// Why [`PeerManager::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The network's shutdown token was cancelled; every peer has closed since.
    Shutdown,
}

/// Everything the peer manager needs from the builder.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) own_peer_id: PeerId,
    pub(crate) peer_config: peer::Config,
    pub(crate) max_inbound_connections: usize,
    pub(crate) transport: Arc<AptosNetTransport>,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) router: Arc<dyn InboundRouter>,
    pub(crate) peer_metrics: peer::Metrics,
    pub(crate) metrics: Metrics,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Where to report connections and disconnections for the connectivity manager.
    pub(crate) connectivity: Option<ConnectivityHandle>,
    /// Peers whose connections are refused and whose dials fail.
    pub(crate) banned: BanList,
}

/// The actor's inputs, made before the actor so that handles can exist first.
pub(crate) struct Channels {
    requests_rx: mpsc::Receiver<Request>,
    new_connections_tx: mpsc::Sender<NewConnection>,
    new_connections_rx: mpsc::Receiver<NewConnection>,
}

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

/// Connection events waiting for the connectivity manager's queue, at most one per peer: a
/// newer event for a peer replaces the one still waiting (keeping its place in line), since
/// the manager only needs each peer's latest state. So the backlog is bounded by the number of
/// peers, whatever the connection churn while the manager's queue is full.
#[derive(Debug, Default)]
struct PendingEvents {
    order: VecDeque<PeerId>,
    latest: HashMap<PeerId, ConnectivityEvent>,
}

impl PendingEvents {
    /// Queues `event`, replacing a waiting event for the same peer.
    fn push(&mut self, event: ConnectivityEvent) {
        let peer_id = match &event {
            ConnectivityEvent::Connected { peer_id, .. }
            | ConnectivityEvent::Disconnected { peer_id }
            | ConnectivityEvent::DialResult { peer_id, .. } => *peer_id,
        };
        if self.latest.insert(peer_id, event).is_none() {
            self.order.push_back(peer_id);
        }
    }

    /// The event whose turn it is.
    fn front(&self) -> Option<ConnectivityEvent> {
        self.order
            .front()
            .and_then(|peer_id| self.latest.get(peer_id))
            .cloned()
    }

    /// Removes the event whose turn it was.
    fn pop_front(&mut self) {
        if let Some(peer_id) = self.order.pop_front() {
            self.latest.remove(&peer_id);
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.latest.clear();
    }
}

/// A peer's current connection.
struct Current {
    metadata: ConnectionMetadata,
    handle: PeerHandle,
    /// Whether the connectivity manager knows about it (see [`PeerManager::reports`]).
    reported: bool,
}

/// A spawned peer whose tasks have ended.
struct Closed {
    peer_id: PeerId,
    connection_id: ConnectionId,
    origin: ConnectionOrigin,
    reason: DisconnectReason,
}

impl PeerManagerHandle {
    /// Dials `peer_id` at `addr` and waits until the connection is registered, or the dial
    /// failed.
    ///
    /// Cancel-safe in that dropping the future abandons only the wait: the dial goes on, and a
    /// connection it makes is registered.
    pub(crate) async fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<(), Error> {
        self.dial_inner(peer_id, addr, false).await
    }

    /// [`dial`](Self::dial) for the connectivity manager: the connection is reported to it
    /// whoever the peer is, and a connection the manager did not know about yet counts as a
    /// successful dial.
    pub(crate) async fn dial_managed(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
    ) -> Result<(), Error> {
        self.dial_inner(peer_id, addr, true).await
    }

    async fn dial_inner(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
        managed: bool,
    ) -> Result<(), Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.request(Request::Dial {
            peer_id,
            addr,
            managed,
            reply_tx,
        })
        .await?;
        reply_rx.await.unwrap_or(Err(Error::ShutDown))
    }

    /// Closes the connection to `peer_id` and waits until it is gone.
    pub(crate) async fn disconnect(&self, peer_id: PeerId) -> Result<(), Error> {
        self.disconnect_because(peer_id, "requested").await
    }

    /// Closes the connection to `peer_id`, logging `reason`, and waits until it is gone.
    pub(crate) async fn disconnect_because(
        &self,
        peer_id: PeerId,
        reason: &'static str,
    ) -> Result<(), Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.request(Request::Disconnect {
            peer_id,
            reason,
            reply_tx,
        })
        .await?;
        reply_rx.await.unwrap_or(Err(Error::ShutDown))
    }

    async fn request(&self, request: Request) -> Result<(), Error> {
        self.requests_tx
            .send(request)
            .await
            .map_err(|_closed| Error::ShutDown)
    }
}

impl Channels {
    /// The actor's channels and a handle on them.
    pub(crate) fn new() -> (Self, PeerManagerHandle) {
        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let (new_connections_tx, new_connections_rx) = mpsc::channel(NEW_CONNECTION_CAPACITY);
        let channels = Self {
            requests_rx,
            new_connections_tx,
            new_connections_rx,
        };
        (channels, PeerManagerHandle { requests_tx })
    }

    /// Where the listener hands set-up connections to.
    pub(crate) fn new_connections_tx(&self) -> mpsc::Sender<NewConnection> {
        self.new_connections_tx.clone()
    }
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
    pub(crate) async fn run(mut self) -> Exit {
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
        Exit::Shutdown
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
                reply_tx,
            } => {
                let peer = PeerNetworkId::new(self.parts.network_id, peer_id);
                let Some(current) = self.connections.get(&peer_id) else {
                    let _ = reply_tx.send(Err(Error::NotConnected { peer }));
                    return;
                };
                tracing::info!(%peer, conn_id = %current.metadata.connection_id, reason, "disconnecting peer");
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
                self.connectivity_events.push(ConnectivityEvent::Connected {
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
            tracing::debug!(%peer, %addr, "not dialing a banned peer");
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
        tracing::debug!(%peer, %addr, "dialing");
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
                        tracing::debug!(%peer, %addr, error = %err, "dial failed");
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
            tracing::warn!(%peer, origin = %metadata.origin, reason = RefusalReason::SelfConnection.as_str(), "connection refused");
            reply(Err(Error::SelfConnection));
            return;
        }

        if self.parts.banned.contains(peer_id) {
            // Dropping the connection closes the socket, which is all the remote learns.
            self.parts.metrics.record_refused(RefusalReason::Banned);
            tracing::info!(%peer, origin = %metadata.origin, reason = RefusalReason::Banned.as_str(), "connection refused");
            reply(Err(Error::Banned { peer }));
            return;
        }

        if metadata.origin == ConnectionOrigin::Inbound
            && metadata.role == PeerRole::Unknown
            && !self.connections.contains_key(&peer_id)
            && self.inbound_unknown_connections() >= self.parts.max_inbound_connections
        {
            // Dropping the connection closes the socket, which is all the remote learns.
            self.parts
                .metrics
                .record_refused(RefusalReason::InboundLimit);
            // Remote-driven, so debug: the metric is what operators watch.
            tracing::debug!(
                %peer,
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
                .record_connection_event(ConnectionEvent::Replaced);
            tracing::debug!(
                %peer,
                existing_conn = %existing.metadata.connection_id,
                existing_origin = %existing.metadata.origin,
                new_conn = %metadata.connection_id,
                new_origin = %metadata.origin,
                ?keep,
                "second connection to a connected peer"
            );
            match keep {
                Keep::Existing => {
                    // Never spawned: dropping it closes the socket. We are connected all the
                    // same, so a dial succeeded.
                    drop(connection);
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
                            .push(ConnectivityEvent::Disconnected { peer_id });
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
            &self.parts.tracker,
            self.parts.shutdown.child_token(),
        );
        self.parts.metrics.connection_opened(metadata.origin);
        self.parts
            .metrics
            .record_connection_event(ConnectionEvent::New);
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
        tracing::info!(%peer, conn_id = %connection_id, %origin, "peer connected");
        self.parts.peers.insert(
            self.parts.network_id,
            metadata.clone(),
            handle.clone(),
            bytes,
        );
        if reported {
            // Also on a replacement: the origin may have changed.
            self.connectivity_events
                .push(ConnectivityEvent::Connected { peer_id, origin });
        }
        self.connections.insert(
            peer_id,
            Current {
                metadata,
                handle,
                reported,
            },
        );
        reply(Ok(()));
    }

    fn handle_closed(&mut self, closed: Closed) {
        let Closed {
            peer_id,
            connection_id,
            origin,
            reason,
        } = closed;
        self.parts.metrics.connection_closed(origin);
        let ban = self.parts.peer_config.rate_limit.ban_duration;
        if reason == DisconnectReason::RateLimited && !ban.is_zero() {
            // Logged once per ban: the connection is gone, so this runs once per flood.
            self.parts
                .banned
                .insert_until(peer_id, Some(Instant::now() + ban));
            tracing::info!(peer = %PeerNetworkId::new(self.parts.network_id, peer_id), ban = ?ban, reason = reason.as_str(), "peer banned for a while");
            // A connection it made while this one was flushing is closed too.
            if let Some(current) = self.connections.get(&peer_id)
                && current.metadata.connection_id != connection_id
            {
                current.handle.disconnect();
            }
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
                .record_connection_event(ConnectionEvent::Lost);
            tracing::info!(%peer, conn_id = %connection_id, reason = reason.as_str(), "peer lost");
            if reported && self.parts.connectivity.is_some() {
                self.connectivity_events
                    .push(ConnectivityEvent::Disconnected { peer_id });
            }
        } else {
            // A replaced connection: the peer is still connected over its successor.
            tracing::debug!(%peer, conn_id = %connection_id, reason = reason.as_str(), "replaced connection closed");
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

    /// Inbound connections from peers outside the trusted set.
    fn inbound_unknown_connections(&self) -> usize {
        self.connections
            .values()
            .filter(|current| {
                current.metadata.origin == ConnectionOrigin::Inbound
                    && current.metadata.role == PeerRole::Unknown
            })
            .count()
    }
}

/// Sends `event` to the connectivity manager; `false` once it has stopped. Cancel-safe: if
/// dropped before it completes, the event was not queued.
async fn send_event(
    connectivity: Option<&ConnectivityHandle>,
    event: Option<ConnectivityEvent>,
) -> bool {
    match (connectivity, event) {
        (Some(connectivity), Some(event)) => connectivity.send(event).await.is_ok(),
        _ => false,
    }
}

/// Carries out the connectivity manager's actions until shutdown (or until the manager
/// stops): a dial goes through the peer manager's dial path in a task of its own, which
/// reports its result as a [`ConnectivityEvent::DialResult`]; a cancel aborts that task (so
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
                        .send(ConnectivityEvent::DialResult { peer_id, result })
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
                    let _ = manager.disconnect_because(peer_id, reason.as_str()).await;
                });
            }
        }
    }
    for dial in dials.values() {
        dial.abort();
    }
}

/// Which of two connections to the same peer survives; see [`resolve_simultaneous_dial`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Keep the connection we already had and close the new one.
    Existing,
    /// Close the connection we already had and keep the new one.
    New,
}

/// Decides which connection survives when a second connection to a peer completes while the
/// first is still up (both sides dialed each other, or a peer reconnected before we noticed it
/// left). Pure, so that both ends of a connection, which see the two connections in different
/// orders, can be shown to agree.
///
/// - Same origin (two inbound or two outbound): keep the new one. The remote (or we) opened it
///   last, so the old one is most likely dead or about to be.
/// - Mixed origins: keep the connection dialed by the larger PeerId. If ours is larger, keep
///   our outbound connection; otherwise keep their inbound one. Both ends apply the same rule
///   to the same pair of connections, so they keep the same one whatever the arrival order.
///
/// `own == remote` cannot happen (Noise refuses a self-dial); it resolves like `own < remote`.
pub(crate) fn resolve_simultaneous_dial(
    own: PeerId,
    remote: PeerId,
    existing: ConnectionOrigin,
    new: ConnectionOrigin,
) -> Keep {
    if existing == new {
        return Keep::New;
    }
    let keep_origin = if own > remote {
        ConnectionOrigin::Outbound
    } else {
        ConnectionOrigin::Inbound
    };
    if new == keep_origin {
        Keep::New
    } else {
        Keep::Existing
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A timed ban lifts itself at its expiry; a longer or permanent ban is not shortened by
    /// a shorter one.
    #[tokio::test(start_paused = true)]
    async fn timed_bans_expire_and_longer_bans_win() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let bans = BanList::default();
        let soon = Instant::now() + Duration::from_secs(10);
        assert!(bans.insert_until(a, Some(soon)));
        assert!(bans.insert(b));
        // A shorter ban does not shorten a permanent one, nor a longer one.
        assert!(!bans.insert_until(b, Some(soon)));
        assert!(!bans.insert_until(a, Some(soon - Duration::from_secs(5))));
        assert_eq!(bans.to_vec(), vec![a, b]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!bans.contains(a));
        assert!(bans.contains(b));
        assert_eq!(bans.to_vec(), vec![b]);
        assert!(!bans.remove(a));
        // A ban after expiry counts as new.
        assert!(bans.insert_until(a, Some(Instant::now() + Duration::from_secs(1))));
    }

    /// Events waiting for the connectivity manager keep one entry per peer: churn on one peer
    /// replaces its waiting event in place, so the backlog never outgrows the peer count.
    #[test]
    fn pending_connectivity_events_keep_one_per_peer() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let mut pending = PendingEvents::default();
        for _ in 0..1000 {
            pending.push(ConnectivityEvent::Connected {
                peer_id: a,
                origin: ConnectionOrigin::Outbound,
            });
            pending.push(ConnectivityEvent::Disconnected { peer_id: a });
        }
        pending.push(ConnectivityEvent::Disconnected { peer_id: b });
        assert_eq!(pending.order.len(), 2);
        assert_eq!(
            pending.front(),
            Some(ConnectivityEvent::Disconnected { peer_id: a })
        );
        pending.pop_front();
        assert_eq!(
            pending.front(),
            Some(ConnectivityEvent::Disconnected { peer_id: b })
        );
        pending.pop_front();
        assert_eq!(pending.front(), None);
    }

    /// Every case, spelled out: same origin keeps the new connection; mixed origins keep the
    /// connection the larger PeerId dialed.
    #[test]
    fn simultaneous_dial_resolution_table() {
        use ConnectionOrigin::{Inbound, Outbound};
        let (small, large) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let table = [
            // (own, remote, existing, new, keep)
            (large, small, Inbound, Inbound, Keep::New),
            (large, small, Outbound, Outbound, Keep::New),
            (large, small, Inbound, Outbound, Keep::New),
            (large, small, Outbound, Inbound, Keep::Existing),
            (small, large, Inbound, Inbound, Keep::New),
            (small, large, Outbound, Outbound, Keep::New),
            (small, large, Inbound, Outbound, Keep::Existing),
            (small, large, Outbound, Inbound, Keep::New),
        ];
        for (own, remote, existing, new, keep) in table {
            assert_eq!(
                resolve_simultaneous_dial(own, remote, existing, new),
                keep,
                "own {own} remote {remote} existing {existing} new {new}"
            );
        }
    }

    /// Both ends agree. Take the two connections c1 (dialed by `dialer1`) and c2 (dialed by
    /// `dialer2`) between a and b; each end sees them in either order, each with its own origin.
    /// Whatever the orders, a and b keep the same connection, and with mixed dialers it is the
    /// one the larger PeerId dialed.
    #[test]
    fn both_ends_keep_the_same_connection_in_every_order() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        for (x, y) in [(a, b), (b, a)] {
            for dialer1 in [x, y] {
                for dialer2 in [x, y] {
                    let origin = |me: PeerId, dialer: PeerId| {
                        if me == dialer {
                            ConnectionOrigin::Outbound
                        } else {
                            ConnectionOrigin::Inbound
                        }
                    };
                    // Which connection (1 or 2) `me` keeps, given the order it sees them in.
                    let kept = |me: PeerId, other: PeerId, first_is_1: bool| {
                        let (first, second) = if first_is_1 {
                            (dialer1, dialer2)
                        } else {
                            (dialer2, dialer1)
                        };
                        let keep = resolve_simultaneous_dial(
                            me,
                            other,
                            origin(me, first),
                            origin(me, second),
                        );
                        match (keep, first_is_1) {
                            (Keep::Existing, true) | (Keep::New, false) => 1,
                            (Keep::Existing, false) | (Keep::New, true) => 2,
                        }
                    };
                    for x_order in [true, false] {
                        for y_order in [true, false] {
                            let (kept_x, kept_y) = (kept(x, y, x_order), kept(y, x, y_order));
                            if dialer1 != dialer2 {
                                assert_eq!(kept_x, kept_y, "the two ends disagree");
                                let winner = if kept_x == 1 { dialer1 } else { dialer2 };
                                assert_eq!(winner, x.max(y), "the larger PeerId's dial wins");
                            } else if x_order == y_order {
                                // Same dialer twice: both keep whichever they saw last; when
                                // they saw them in the same order, that is the same one.
                                assert_eq!(kept_x, kept_y);
                            }
                        }
                    }
                }
            }
        }
    }
}
