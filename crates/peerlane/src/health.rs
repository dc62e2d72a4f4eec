//! [`HealthChecker`]: one actor per network that pings every connected peer every round and
//! disconnects a peer whose pings fail too many times in a row; it also answers the peers'
//! pings.
//!
//! ```text
//! ticker (interval_ms) ─► HealthState::handle_tick, poll_ping ─► NetworkClient::send_rpc(Ping)
//!                                                                   │ timeout_ms
//! HealthState::handle_response ◄── Pong(nonce) / timeout / error ◄──┘
//!     ├─► on success: PeersAndMetadata::record_rtt (PeerStats::last_rtt)
//!     └─► poll_disconnect ─► NetworkClient::disconnect ─► LostPeer
//! NetworkEvents<HealthCheckerMsg> ── Ping(n) ─► RpcReplier::reply(Pong(n))
//! PeersAndMetadata::subscribe ── NewPeer / LostPeer ─► handle_connected / handle_disconnected
//! ```
//!
//! The protocol is AptosNet's (`wire-format.md` §8): an RPC on `HealthCheckerRpc` (5) whose
//! request is [`HealthCheckerMsg::Ping`] with a random nonce and whose response is
//! [`HealthCheckerMsg::Pong`] with the same nonce, plain BCS. A ping fails when no pong comes
//! within `timeout_ms`, when the pong carries another nonce than that ping's, or when the RPC
//! fails otherwise.
//!
//! As in AptosNet, every round (every `interval_ms`) pings every connected peer, whether or
//! not its earlier pings have ended: with a timeout longer than the interval a peer has several
//! pings in flight, each with its own nonce. Their outcomes are counted in the order they come
//! in: a success resets the peer's count of failures, each failure adds one, and the
//! `failures_before_disconnect`th failure in a row disconnects it, once per connection. With
//! the defaults (10 s, 20 s, 4) a peer that is connected when the checker starts and never
//! answers is pinged at 10, 20, 30 and 40 s, those pings time out at 30, 40, 50 and 60 s, and
//! it is disconnected at 60 s.
//!
//! [`HealthState`] is the bookkeeping, without IO; [`HealthChecker`] drives it.
//!
//! Differences from AptosNet's health checker, all on purpose:
//! - A peer has at most [`max_in_flight_per_peer`] pings in flight, `⌈timeout_ms /
//!   interval_ms⌉ + 1` (3 with the defaults): a round that would exceed it skips the peer, with
//!   a debug log. Pings end by their timeout at the latest, so on schedule a peer has at most
//!   `⌈timeout_ms / interval_ms⌉` in flight once a round has pinged it; the extra one covers
//!   a round that starts at the instant an earlier ping times out, before its outcome is
//!   counted. So the cap bites only if rounds run far behind the pings' outcomes, and the
//!   pings in flight stay bounded by the cap times the number of peers. AptosNet has no cap.
//! - Only peers that offered `HealthCheckerRpc` in their handshake are pinged, so a peerlane
//!   node with health checking disabled is not disconnected for it. AptosNet nodes always
//!   offer it.
//! - A pong with the wrong nonce is a failure (AptosNet only logs it), and every failure counts,
//!   even one of a ping older than the last success (AptosNet ignores those).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{NetworkId, ProtocolId};

use crate::client::NetworkClient;
use crate::config::HealthCheckConfig;
use crate::error::Error;
use crate::events::{Event, NetworkEvents};
use crate::metrics::{Metrics, PingResult};
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};
use crate::queue::{DEFAULT_CAPACITY_PER_KEY, QueueConfig, QueueStyle};

/// The health checker's message on `HealthCheckerRpc` (5), AptosNet's `HealthCheckerMsg`.
///
/// In BCS: the variant's tag (0 for a ping, 1 for a pong), then the nonce as a little-endian
/// u32. `Ping(7)` is `00 07 00 00 00`, `Pong(7)` is `01 07 00 00 00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthCheckerMsg {
    /// A request; the answer is a [`Pong`] with the same nonce.
    Ping(Ping),
    /// The answer to a ping.
    Pong(Pong),
}

/// A health-check request: a nonce the sender chose at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ping(pub u32);

/// A health-check response: the nonce of the ping it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pong(pub u32);

/// The health checker's inbound queue: LIFO, 1024 per peer, as AptosNet registers it. A peer
/// that pings faster than we answer gets its newest pings answered; the oldest are dropped and
/// time out on its side.
pub(crate) const QUEUE: QueueConfig = QueueConfig::new(QueueStyle::Lifo, DEFAULT_CAPACITY_PER_KEY);

/// The most pings a peer may have in flight under `config`: `⌈timeout_ms / interval_ms⌉ + 1`,
/// 3 with the defaults. See the module docs for why that never holds back a round on schedule.
pub(crate) fn max_in_flight_per_peer(config: &HealthCheckConfig) -> usize {
    let on_schedule = config.timeout_ms.div_ceil(config.interval_ms.max(1));
    usize::try_from(on_schedule.saturating_add(1)).unwrap_or(usize::MAX)
}

/// The bookkeeping of a health checker, without IO: which peers to ping, the pings each one
/// has in flight (their rounds and nonces), and how many of its pings failed in a row.
///
/// # Calling protocol
///
/// 1. [`handle_connected`](Self::handle_connected) and
///    [`handle_disconnected`](Self::handle_disconnected) as connections come and go.
/// 2. On every tick of the ping interval, [`handle_tick`](Self::handle_tick) (it returns the
///    peers it skipped), then [`poll_ping`](Self::poll_ping) until it returns `None`, sending
///    each ping.
/// 3. When a ping ends, [`handle_response`](Self::handle_response) with what came back, in the
///    order the pings end; count the [`PingResult`] it returns.
/// 4. After each `handle_response`, [`poll_disconnect`](Self::poll_disconnect) until it returns
///    `None`, disconnecting each peer.
///
/// Getters have no side effects. Time is not an input: the caller's ticker says when a round
/// starts, and the caller's RPC timeout says when a ping has failed. Randomness is: nonces come
/// from the rng given to `poll_ping`.
#[derive(Debug)]
pub(crate) struct HealthState {
    failures_before_disconnect: u32,
    /// The most pings one peer may have in flight, counting those of an ended connection.
    max_in_flight_per_peer: usize,
    /// Rounds started so far; the current round's number.
    round: u64,
    /// Every connected peer we ping, and every disconnected one with pings still in flight.
    /// Ordered, so that a seeded rng gives the same nonces to the same peers.
    peers: BTreeMap<PeerNetworkId, PeerHealth>,
    /// Peers to ping this round, in order.
    due: VecDeque<PeerNetworkId>,
    /// Peers that just failed too often, to disconnect.
    to_disconnect: VecDeque<PeerNetworkId>,
}

/// A ping to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PingRequest {
    pub(crate) peer: PeerNetworkId,
    pub(crate) round: u64,
    pub(crate) nonce: u32,
}

/// What came back for a ping, as [`HealthState::handle_response`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PingResponse {
    /// A pong with this nonce.
    Pong(u32),
    /// Nothing within the timeout.
    Timeout,
    /// The RPC failed otherwise, or the answer was not a pong.
    Failed,
}

/// A peer to disconnect, and how many pings it failed in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Disconnect {
    pub(crate) peer: PeerNetworkId,
    pub(crate) failures: u32,
}

/// One peer's record.
#[derive(Clone, Debug, Default)]
struct PeerHealth {
    /// False for a peer that is gone but whose pings have not all ended yet.
    connected: bool,
    /// Pings failed in a row.
    failures: u32,
    /// Set once the peer failed too often: it is not pinged again and its failures no longer
    /// count, until it reconnects.
    disconnecting: bool,
    /// The pings in flight, by round (one per round at most): each with the nonce its pong
    /// must carry. At most `max_in_flight_per_peer` entries.
    in_flight: BTreeMap<u64, InFlight>,
}

/// A ping in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// The nonce it carries, which its pong must echo.
    nonce: u32,
    /// False once the connection it went out on has ended or been replaced: its outcome says
    /// nothing about the current connection.
    counts: bool,
}

/// Why [`HealthChecker::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The network's shutdown token was cancelled.
    Shutdown,
}

/// What the health checker needs from the builder.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) config: HealthCheckConfig,
    /// Sends pings and disconnects, on `HealthCheckerRpc` only.
    pub(crate) client: NetworkClient<HealthCheckerMsg>,
    /// The peers' pings.
    pub(crate) events: NetworkEvents<HealthCheckerMsg>,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) metrics: Metrics,
    pub(crate) shutdown: CancellationToken,
}

/// The actor; see the module docs.
pub(crate) struct HealthChecker<R> {
    parts: Parts,
    state: HealthState,
    /// Draws the nonces.
    rng: R,
    notifications: ConnectionNotifications,
    /// `notifications.lost()` when we last resynchronised.
    lost_notifications: u64,
    /// The pings in flight, one per ping `state` has in flight: at most
    /// `state.max_in_flight_per_peer()` per peer in `state`.
    pings: FuturesUnordered<BoxFuture<'static, PingDone>>,
    /// Disconnects asked for and not answered yet: at most one per peer in `state`.
    disconnects: FuturesUnordered<BoxFuture<'static, (PeerNetworkId, Result<(), Error>)>>,
}

/// A ping that ended.
struct PingDone {
    ping: PingRequest,
    response: Result<HealthCheckerMsg, Error>,
    /// From sending the ping to its outcome.
    rtt: Duration,
}

impl HealthState {
    /// No peers yet, round 0; a peer is disconnected at its `failures_before_disconnect`th
    /// failure in a row (at least the first) and has at most `max_in_flight_per_peer` pings in
    /// flight (at least one).
    pub(crate) fn new(failures_before_disconnect: u32, max_in_flight_per_peer: usize) -> Self {
        Self {
            failures_before_disconnect: failures_before_disconnect.max(1),
            max_in_flight_per_peer: max_in_flight_per_peer.max(1),
            round: 0,
            peers: BTreeMap::new(),
            due: VecDeque::new(),
            to_disconnect: VecDeque::new(),
        }
    }

    /// `peer` connected, or reconnected over a new connection: it is pinged from the next
    /// round on, with a clean record.
    pub(crate) fn handle_connected(&mut self, peer: PeerNetworkId) {
        let health = self.peers.entry(peer).or_default();
        health.connected = true;
        health.failures = 0;
        health.disconnecting = false;
        // Pings still in flight went out on the previous connection.
        health.stop_counting();
    }

    /// `peer` is gone: it is no longer pinged, and its pings in flight no longer count.
    pub(crate) fn handle_disconnected(&mut self, peer: PeerNetworkId) {
        let Some(health) = self.peers.get_mut(&peer) else {
            return;
        };
        if health.in_flight.is_empty() {
            self.peers.remove(&peer);
        } else {
            // Kept until those pings end, so that a quick reconnect cannot give the peer more
            // than `max_in_flight_per_peer` pings in flight.
            health.connected = false;
            health.failures = 0;
            health.disconnecting = false;
            health.stop_counting();
        }
    }

    /// Starts a new round: every connected peer is due for a ping, except those that failed
    /// too often and those that have `max_in_flight_per_peer` pings in flight already. Returns
    /// the latter, which this round skips.
    pub(crate) fn handle_tick(&mut self) -> Vec<PeerNetworkId> {
        self.round += 1;
        self.due.clear();
        let mut skipped = Vec::new();
        for (peer, health) in &self.peers {
            if !health.is_pinged() {
                continue;
            }
            if health.in_flight.len() < self.max_in_flight_per_peer {
                self.due.push_back(*peer);
            } else {
                skipped.push(*peer);
            }
        }
        skipped
    }

    /// The next ping of this round, its nonce drawn from `rng`; `None` once every due peer has
    /// had its ping.
    pub(crate) fn poll_ping(&mut self, rng: &mut impl RngCore) -> Option<PingRequest> {
        while let Some(peer) = self.due.pop_front() {
            // The peer may have gone (or come back) since the tick.
            let Some(health) = self.peers.get_mut(&peer).filter(|health| {
                health.is_pinged() && health.in_flight.len() < self.max_in_flight_per_peer
            }) else {
                continue;
            };
            let nonce = rng.next_u32();
            health.in_flight.insert(
                self.round,
                InFlight {
                    nonce,
                    counts: true,
                },
            );
            return Some(PingRequest {
                peer,
                round: self.round,
                nonce,
            });
        }
        None
    }

    /// `peer`'s ping of `round` ended with `response`. Returns how it counts, or `None` for a
    /// ping that no longer counts (its connection ended or was replaced) or that we do not
    /// know.
    ///
    /// The pong must carry that ping's nonce. A success resets the peer's failures; a failure
    /// adds one, and the `failures_before_disconnect`th in a row queues the peer for
    /// [`poll_disconnect`](Self::poll_disconnect), once per connection.
    pub(crate) fn handle_response(
        &mut self,
        peer: PeerNetworkId,
        round: u64,
        response: PingResponse,
    ) -> Option<PingResult> {
        let health = self.peers.get_mut(&peer)?;
        let in_flight = health.in_flight.remove(&round)?;
        if !health.connected {
            if health.in_flight.is_empty() {
                self.peers.remove(&peer);
            }
            return None;
        }
        if !in_flight.counts {
            return None;
        }
        let result = match response {
            PingResponse::Pong(nonce) if nonce == in_flight.nonce => PingResult::Ok,
            PingResponse::Pong(_) => PingResult::WrongNonce,
            PingResponse::Timeout => PingResult::Timeout,
            PingResponse::Failed => PingResult::Error,
        };
        if health.disconnecting {
            // Being disconnected already: counted in the metrics, not in the record.
            return Some(result);
        }
        if result.is_failure() {
            health.failures = health.failures.saturating_add(1);
            if health.failures >= self.failures_before_disconnect {
                health.disconnecting = true;
                self.to_disconnect.push_back(peer);
            }
        } else {
            health.failures = 0;
        }
        Some(result)
    }

    /// The next peer to disconnect, once per connection that failed too often.
    pub(crate) fn poll_disconnect(&mut self) -> Option<Disconnect> {
        while let Some(peer) = self.to_disconnect.pop_front() {
            // It may have gone, or reconnected with a clean record, since.
            if let Some(health) = self.peers.get(&peer)
                && health.connected
                && health.disconnecting
            {
                return Some(Disconnect {
                    peer,
                    failures: health.failures,
                });
            }
        }
        None
    }

    /// The current round's number (0 before the first tick).
    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    /// The most pings one peer may have in flight.
    pub(crate) fn max_in_flight_per_peer(&self) -> usize {
        self.max_in_flight_per_peer
    }

    /// How many pings `peer` failed in a row; `None` if it is not connected.
    pub(crate) fn failures(&self, peer: PeerNetworkId) -> Option<u32> {
        self.peers
            .get(&peer)
            .filter(|health| health.connected)
            .map(|health| health.failures)
    }

    /// The connected peers we ping.
    pub(crate) fn connected_peers(&self) -> impl Iterator<Item = PeerNetworkId> + '_ {
        self.peers
            .iter()
            .filter(|(_, health)| health.connected)
            .map(|(peer, _)| *peer)
    }

    /// Pings in flight, to all peers.
    pub(crate) fn in_flight(&self) -> usize {
        self.peers
            .values()
            .map(|health| health.in_flight.len())
            .sum()
    }

    /// Pings in flight to `peer`, counting those of an ended connection.
    pub(crate) fn in_flight_to(&self, peer: PeerNetworkId) -> usize {
        self.peers
            .get(&peer)
            .map_or(0, |health| health.in_flight.len())
    }

    /// Peers with a record: the connected ones and the gone ones with pings in flight. Times
    /// [`max_in_flight_per_peer`](Self::max_in_flight_per_peer), bounds the pings in flight.
    pub(crate) fn tracked(&self) -> usize {
        self.peers.len()
    }
}

impl PeerHealth {
    /// Whether rounds ping this peer (if it has room for another ping in flight).
    fn is_pinged(&self) -> bool {
        self.connected && !self.disconnecting
    }

    /// Marks every ping in flight as sent on a connection that has ended.
    fn stop_counting(&mut self) {
        for in_flight in self.in_flight.values_mut() {
            in_flight.counts = false;
        }
    }
}

impl<R> HealthChecker<R>
where
    R: RngCore + Send + 'static,
{
    /// The actor over `parts`, drawing nonces from `rng`. Subscribes to connection
    /// notifications now, so it hears of every connection made after this call.
    pub(crate) fn new(parts: Parts, rng: R) -> Self {
        let notifications = parts.peers.subscribe();
        let state = HealthState::new(
            parts.config.failures_before_disconnect,
            max_in_flight_per_peer(&parts.config),
        );
        Self {
            parts,
            state,
            rng,
            notifications,
            lost_notifications: 0,
            pings: FuturesUnordered::new(),
            disconnects: FuturesUnordered::new(),
        }
    }

    /// Runs until the network's shutdown token is cancelled; pings in flight are dropped then
    /// (their RPCs are cancelled).
    pub(crate) async fn run(mut self) -> Exit {
        let interval = self.parts.config.interval();
        // The first round one interval after start, as in AptosNet: a peer is first pinged up
        // to one interval after it connected.
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A round that comes late (a busy runtime) is not made up for with a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.parts.shutdown.clone();
        let mut events_open = true;
        loop {
            // Every future here is cancel-safe (`cancelled`, `FuturesUnordered::next`,
            // `ConnectionNotifications::recv`, `Interval::tick`, `NetworkEvents::next`): a
            // branch that loses the race loses nothing.
            tokio::select! {
                // Local work before remote work: shutdown, then outcomes of our own pings and
                // disconnects (they free slots, and a ping that times out at the instant a
                // round starts is counted first: its 4th failure disconnects the peer rather
                // than ping it again), then who is connected, then the round, then the peers'
                // pings. Every arm is quick and the ones above the peers' pings are bounded by
                // the number of peers, so answering pings never waits long.
                biased;
                // The network is shutting down.
                () = shutdown.cancelled() => break,
                // One of our pings ended.
                Some(done) = self.pings.next(), if !self.pings.is_empty() => {
                    self.handle_ping_done(done);
                }
                // A disconnect we asked for is done.
                Some((peer, result)) = self.disconnects.next(), if !self.disconnects.is_empty() => {
                    match result {
                        Ok(()) => tracing::debug!(%peer, "unhealthy peer disconnected"),
                        // Gone already, or the network is shutting down.
                        Err(err) => {
                            tracing::debug!(%peer, error = %err, "unhealthy peer not disconnected");
                        }
                    }
                }
                // A peer connected or left. `None` needs every `PeersAndMetadata` handle gone,
                // and `parts` holds one, so it does not happen; stop if it does.
                notification = self.notifications.recv() => match notification {
                    Some(notification) => self.handle_notification(notification),
                    None => break,
                },
                // Time for a round of pings.
                _ = ticker.tick() => self.start_round(),
                // A peer's ping (or anything else it sent on the protocol). The stream ends only
                // once the network's router is gone, at shutdown.
                event = self.parts.events.next(), if events_open => match event {
                    Some(event) => answer(event),
                    None => events_open = false,
                },
            }
        }
        tracing::debug!(network = %self.parts.network_id, "health checker stopped");
        Exit::Shutdown
    }

    /// Sends this round's pings.
    fn start_round(&mut self) {
        for peer in self.state.handle_tick() {
            // Only when rounds run far behind the pings' outcomes: at most once per peer and
            // interval.
            tracing::debug!(
                %peer,
                round = self.state.round(),
                in_flight = self.state.in_flight_to(peer),
                max_in_flight = self.state.max_in_flight_per_peer(),
                "peer has the most health-check pings in flight already, not pinging it this round"
            );
        }
        let mut sent = 0_usize;
        while let Some(ping) = self.state.poll_ping(&mut self.rng) {
            sent += 1;
            let client = self.parts.client.clone();
            let timeout = self.parts.config.timeout();
            self.pings.push(Box::pin(async move {
                let request = HealthCheckerMsg::Ping(Ping(ping.nonce));
                let sent_at = Instant::now();
                let response = client.send_rpc(ping.peer, request, timeout).await;
                PingDone {
                    ping,
                    response,
                    rtt: sent_at.elapsed(),
                }
            }));
        }
        debug_assert_eq!(self.pings.len(), self.state.in_flight());
        debug_assert!(
            self.pings.len()
                <= self
                    .state
                    .tracked()
                    .saturating_mul(self.state.max_in_flight_per_peer())
        );
        tracing::trace!(
            network = %self.parts.network_id,
            round = self.state.round(),
            sent,
            in_flight = self.state.in_flight(),
            "health-check round"
        );
    }

    fn handle_ping_done(&mut self, done: PingDone) {
        let PingDone {
            ping,
            response,
            rtt,
        } = done;
        let (response, error) = match response {
            Ok(HealthCheckerMsg::Pong(Pong(nonce))) => (PingResponse::Pong(nonce), None),
            Ok(HealthCheckerMsg::Ping(_)) => (PingResponse::Failed, None),
            Err(err) if err.is_timeout() => (PingResponse::Timeout, Some(err)),
            Err(err) => (PingResponse::Failed, Some(err)),
        };
        let Some(result) = self.state.handle_response(ping.peer, ping.round, response) else {
            tracing::trace!(peer = %ping.peer, round = ping.round, "stale health-check ping ended");
            return;
        };
        if result == PingResult::Ok {
            // The ping counted, so it went out on the peer's current connection. Recorded
            // before the metric: whoever sees an `ok` ping counted finds its RTT.
            self.parts.peers.record_rtt(ping.peer, rtt);
        }
        self.parts.metrics.record_health_ping(result);
        if result.is_failure() {
            // Once per peer and interval at most: debug.
            tracing::debug!(
                peer = %ping.peer,
                round = ping.round,
                result = result.as_str(),
                failures = self.state.failures(ping.peer),
                error = error.as_ref().map(tracing::field::display),
                "health-check ping failed"
            );
        }
        while let Some(Disconnect { peer, failures }) = self.state.poll_disconnect() {
            self.parts.metrics.record_health_disconnect();
            tracing::info!(%peer, failures, "peer failed its health checks, disconnecting");
            let client = self.parts.client.clone();
            self.disconnects.push(Box::pin(async move {
                let result = client.disconnect(peer).await;
                (peer, result)
            }));
        }
    }

    fn handle_notification(&mut self, notification: ConnectionNotification) {
        let peer = notification.peer();
        // The `PeersAndMetadata` may serve other networks too.
        if peer.network_id == self.parts.network_id {
            match notification {
                ConnectionNotification::NewPeer(metadata, _) => {
                    if speaks_health_checker(&metadata) {
                        self.state.handle_connected(peer);
                    } else {
                        tracing::debug!(
                            %peer,
                            "peer does not offer the health checker protocol, not pinging it"
                        );
                        // A replacement connection may have dropped the protocol.
                        self.state.handle_disconnected(peer);
                    }
                }
                ConnectionNotification::LostPeer(..) => self.state.handle_disconnected(peer),
            }
        }
        if self.notifications.lost() != self.lost_notifications {
            self.resync();
        }
    }

    /// Catches up with who is connected after notifications were lost.
    fn resync(&mut self) {
        self.lost_notifications = self.notifications.lost();
        let network_id = self.parts.network_id;
        let current: BTreeSet<PeerNetworkId> = self
            .parts
            .peers
            .connected_peers_and_metadata()
            .into_iter()
            .filter(|(peer, metadata)| {
                peer.network_id == network_id && speaks_health_checker(metadata)
            })
            .map(|(peer, _)| peer)
            .collect();
        let tracked: Vec<PeerNetworkId> = self.state.connected_peers().collect();
        for peer in &tracked {
            if !current.contains(peer) {
                self.state.handle_disconnected(*peer);
            }
        }
        for peer in current {
            if !tracked.contains(&peer) {
                self.state.handle_connected(peer);
            }
        }
        tracing::debug!(
            network = %network_id,
            "health checker resynchronised after lost notifications"
        );
    }
}

/// Answers a peer's ping with a pong of the same nonce.
fn answer(event: Event<HealthCheckerMsg>) {
    match event {
        Event::RpcRequest {
            peer,
            request: HealthCheckerMsg::Ping(Ping(nonce)),
            responder,
            ..
        } => {
            // Fails only when the connection is gone or the request's deadline passed: churn.
            if let Err(err) = responder.reply(HealthCheckerMsg::Pong(Pong(nonce))) {
                tracing::debug!(%peer, error = %err, "could not answer a health-check ping");
            }
        }
        // Remote misbehaviour: debug, so a peer cannot flood the logs. An RPC left unanswered
        // times out on the peer's side.
        Event::RpcRequest { peer, .. } | Event::Message { peer, .. } => {
            tracing::debug!(%peer, "unexpected health checker message dropped");
        }
    }
}

/// Whether the connection negotiated `HealthCheckerRpc`.
fn speaks_health_checker(metadata: &peer::ConnectionMetadata) -> bool {
    metadata
        .application_protocols
        .contains(ProtocolId::HEALTH_CHECKER_RPC)
}

#[cfg(test)]
mod tests {
    use netcore::PeerId;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn peer(n: u8) -> PeerNetworkId {
        PeerNetworkId::new(NetworkId::Public, PeerId::new([n; 32]))
    }

    /// Starts the next round: its pings, and the peers it skipped for having the most pings in
    /// flight.
    fn round_skipping(
        state: &mut HealthState,
        rng: &mut StdRng,
    ) -> (Vec<PingRequest>, Vec<PeerNetworkId>) {
        let skipped = state.handle_tick();
        let pings = std::iter::from_fn(|| state.poll_ping(rng)).collect();
        (pings, skipped)
    }

    /// Every ping of the next round, which skips no peer.
    fn round(state: &mut HealthState, rng: &mut StdRng) -> Vec<PingRequest> {
        let (pings, skipped) = round_skipping(state, rng);
        assert_eq!(skipped, [], "round {} skipped peers", state.round());
        pings
    }

    /// The only ping of the next round.
    fn one_ping(state: &mut HealthState, rng: &mut StdRng) -> PingRequest {
        let pings = round(state, rng);
        assert_eq!(pings.len(), 1, "{pings:?}");
        pings[0]
    }

    /// The answer to `ping` that echoes its nonce.
    fn pong(ping: &PingRequest) -> PingResponse {
        PingResponse::Pong(ping.nonce)
    }

    /// The messages are AptosNet's, byte for byte: the BCS variant tag (0 ping, 1 pong), then
    /// the nonce as a little-endian u32. Both encode and decode through protocol 5's encoding.
    #[test]
    fn ping_and_pong_bytes_are_aptosnets() {
        let protocol = ProtocolId::HEALTH_CHECKER_RPC;
        let vectors = [
            // tag 0 (Ping), nonce 7 as u32 LE
            (
                HealthCheckerMsg::Ping(Ping(7)),
                vec![0x00, 0x07, 0x00, 0x00, 0x00],
            ),
            // tag 1 (Pong), nonce 7 as u32 LE
            (
                HealthCheckerMsg::Pong(Pong(7)),
                vec![0x01, 0x07, 0x00, 0x00, 0x00],
            ),
            // tag 1 (Pong), nonce 0x12345678 as u32 LE
            (
                HealthCheckerMsg::Pong(Pong(0x1234_5678)),
                vec![0x01, 0x78, 0x56, 0x34, 0x12],
            ),
        ];
        for (message, bytes) in vectors {
            assert_eq!(protocol.to_bytes(&message).unwrap().as_ref(), bytes);
            assert_eq!(
                protocol.from_bytes::<HealthCheckerMsg>(&bytes).unwrap(),
                message
            );
        }
        // Tag 2 is no variant.
        assert!(
            protocol
                .from_bytes::<HealthCheckerMsg>(&[0x02, 0, 0, 0, 0])
                .is_err()
        );
    }

    /// A round pings every connected peer, with nonces drawn from the rng in peer order, even
    /// a peer whose earlier pings are still in flight: two rounds without answers leave two
    /// pings in flight per peer, each with its own round and nonce.
    #[test]
    fn a_round_pings_every_peer_even_with_earlier_pings_in_flight() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut expected_rng = rng.clone();
        let mut state = HealthState::new(4, 3);
        assert!(round(&mut state, &mut rng).is_empty());
        state.handle_connected(peer(2));
        state.handle_connected(peer(1));

        let first = round(&mut state, &mut rng);
        let second = round(&mut state, &mut rng);
        // The empty round drew nothing.
        let nonces: Vec<u32> = (0..4).map(|_| expected_rng.next_u32()).collect();
        let ping = |n, round, nonce| PingRequest {
            peer: peer(n),
            round,
            nonce,
        };
        assert_eq!(first, [ping(1, 2, nonces[0]), ping(2, 2, nonces[1])]);
        assert_eq!(second, [ping(1, 3, nonces[2]), ping(2, 3, nonces[3])]);
        assert_eq!(state.in_flight(), 4);
        assert_eq!(state.in_flight_to(peer(1)), 2);
        assert_eq!(state.tracked(), 2);

        // Peer 1 answers its first ping; the next round pings both peers again.
        assert_eq!(
            state.handle_response(peer(1), 2, pong(&first[0])),
            Some(PingResult::Ok)
        );
        let third = round(&mut state, &mut rng);
        let peers_and_rounds: Vec<_> = third.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(1), 4), (peer(2), 4)]);
        assert_eq!(state.in_flight(), 5);
    }

    /// The cap on a peer's pings in flight is one more than the rounds a timeout spans:
    /// `⌈timeout / interval⌉ + 1`, 3 with the defaults (10 s, 20 s), and it saturates.
    #[test]
    fn the_cap_on_pings_in_flight_is_one_more_than_the_rounds_a_timeout_spans() {
        let config = |interval_ms, timeout_ms| HealthCheckConfig {
            interval_ms,
            timeout_ms,
            ..HealthCheckConfig::default()
        };
        assert_eq!(max_in_flight_per_peer(&HealthCheckConfig::default()), 3);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 25_000)), 4);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 10_000)), 2);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 1)), 2);
        assert_eq!(max_in_flight_per_peer(&config(1, u64::MAX)), usize::MAX);
        // `HealthState` takes at least one.
        assert_eq!(HealthState::new(4, 0).max_in_flight_per_peer(), 1);
    }

    /// A round skips a peer that has the most pings in flight already, and returns it (the
    /// actor logs it); once one of its pings ends, the next round pings it again. The pings in
    /// flight never exceed the cap times the peers.
    #[test]
    fn a_round_skips_a_peer_with_the_most_pings_in_flight_and_names_it() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        state.handle_connected(peer(2));
        let first = round(&mut state, &mut rng);
        round(&mut state, &mut rng);
        round(&mut state, &mut rng);
        assert_eq!(state.in_flight(), 6);

        // Peer 2's oldest ping ends; all of peer 1's are still out.
        assert_eq!(
            state.handle_response(peer(2), first[1].round, pong(&first[1])),
            Some(PingResult::Ok)
        );
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!(skipped, [peer(1)]);
        let peers_and_rounds: Vec<_> = pings.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(2), 4)]);
        assert_eq!(state.in_flight_to(peer(1)), 3);
        assert_eq!(state.in_flight_to(peer(2)), 3);
        assert!(state.in_flight() <= state.tracked() * state.max_in_flight_per_peer());

        // Peer 1's oldest ping times out: it is pinged again, and now peer 2 is at the cap.
        assert_eq!(
            state.handle_response(peer(1), first[0].round, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!(skipped, [peer(2)]);
        let peers_and_rounds: Vec<_> = pings.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(1), 5)]);
        assert_eq!(state.in_flight(), 6);
    }

    /// With several pings in flight, each pong must carry its own ping's nonce, and outcomes
    /// count in the order they come in, not the order the pings went out: the newer ping
    /// answered with the older one's nonce fails, then the older one answered right resets
    /// the count. A ping ends once; answers for it after that, or for a round it was not
    /// pinged in, are ignored.
    #[test]
    fn each_ping_expects_its_own_nonce_and_outcomes_count_as_they_come() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let older = one_ping(&mut state, &mut rng);
        let newer = one_ping(&mut state, &mut rng);
        assert_ne!(older.nonce, newer.nonce);

        assert_eq!(
            state.handle_response(peer(1), newer.round, pong(&older)),
            Some(PingResult::WrongNonce)
        );
        assert_eq!(state.failures(peer(1)), Some(1));
        assert_eq!(
            state.handle_response(peer(1), older.round, pong(&older)),
            Some(PingResult::Ok)
        );
        assert_eq!(state.failures(peer(1)), Some(0));

        assert_eq!(
            state.handle_response(peer(1), older.round, pong(&older)),
            None
        );
        assert_eq!(
            state.handle_response(peer(1), 99, PingResponse::Timeout),
            None
        );
        assert_eq!(state.failures(peer(1)), Some(0));
        assert_eq!(state.in_flight(), 0);
    }

    /// AptosNet's schedule, a round every 10 s and a 20 s timeout: a silent peer is pinged at
    /// rounds 1 to 5 (10 to 50 s), each ping timing out two rounds later, just before that
    /// round starts. Failures 1 to 3 (30, 40, 50 s) do not disconnect it; the 4th (60 s) does,
    /// once: round 6 does not ping it, and round 5's ping failing later (70 s) is counted but
    /// queues no second disconnect.
    #[test]
    fn a_silent_peer_is_disconnected_once_at_the_fourth_of_its_overlapping_failures() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let mut out = VecDeque::new();
        for round_number in 1..=6_u64 {
            if round_number >= 3 {
                // The ping of two rounds before times out at this round's instant.
                let ping: PingRequest = out.pop_front().expect("a ping in flight");
                assert_eq!(ping.round, round_number - 2);
                assert_eq!(
                    state.handle_response(ping.peer, ping.round, PingResponse::Timeout),
                    Some(PingResult::Timeout)
                );
                let failures = u32::try_from(round_number - 2).unwrap();
                assert_eq!(state.failures(peer(1)), Some(failures));
                let disconnect = (failures == 4).then_some(Disconnect {
                    peer: peer(1),
                    failures: 4,
                });
                assert_eq!(state.poll_disconnect(), disconnect);
                assert_eq!(state.poll_disconnect(), None);
            }
            if round_number <= 5 {
                out.push_back(one_ping(&mut state, &mut rng));
                assert_eq!(state.in_flight(), out.len());
                assert!(state.in_flight() <= 2);
            } else {
                assert!(round(&mut state, &mut rng).is_empty());
            }
        }

        let last = out.pop_front().expect("round 5's ping");
        assert_eq!(last.round, 5);
        assert_eq!(
            state.handle_response(last.peer, last.round, PingResponse::Failed),
            Some(PingResult::Error)
        );
        assert_eq!(state.poll_disconnect(), None);
        assert_eq!(state.in_flight(), 0);
        state.handle_disconnected(peer(1));
        assert_eq!(state.tracked(), 0);
    }

    /// A pong with another nonce is a failure of its own kind, and counts towards the
    /// disconnect like a timeout.
    #[test]
    fn a_wrong_nonce_counts_as_a_failure() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut state = HealthState::new(2, 3);
        state.handle_connected(peer(1));
        let pings = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];
        for ping in pings {
            let wrong = PingResponse::Pong(ping.nonce.wrapping_add(1));
            assert_eq!(
                state.handle_response(ping.peer, ping.round, wrong),
                Some(PingResult::WrongNonce)
            );
        }
        assert_eq!(state.poll_disconnect().map(|d| d.failures), Some(2));
    }

    /// A success resets the count, with two pings in flight all along (each answered after
    /// the next round went out): three failures, a success and three more failures do not
    /// disconnect; the fourth failure in a row after the success does.
    #[test]
    fn a_success_resets_the_failure_count() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let script = [false, false, false, true, false, false, false, false];
        let mut previous = one_ping(&mut state, &mut rng);
        for (n, answers) in script.into_iter().enumerate() {
            let next = one_ping(&mut state, &mut rng);
            assert_eq!(state.in_flight(), 2);
            let response = if answers {
                pong(&previous)
            } else {
                PingResponse::Pong(!previous.nonce)
            };
            state.handle_response(previous.peer, previous.round, response);
            previous = next;
            if n < script.len() - 1 {
                assert_eq!(state.poll_disconnect(), None, "answer {n}");
            }
        }
        assert_eq!(state.failures(peer(1)), Some(4));
        assert_eq!(state.poll_disconnect().map(|d| d.peer), Some(peer(1)));
    }

    /// Pings that went out on a connection that has since ended or been replaced do not
    /// count, not even a success; they still take room under the cap until they end, and a
    /// peer that left keeps its record only until its last ping ends.
    #[test]
    fn pings_of_an_ended_connection_do_not_count() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut state = HealthState::new(1, 3);
        state.handle_connected(peer(1));
        let old = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];

        // Replaced: the old connection's pings do not count for the new one.
        state.handle_connected(peer(1));
        assert_eq!(
            state.handle_response(peer(1), old[0].round, PingResponse::Failed),
            None
        );
        assert_eq!(state.poll_disconnect(), None);
        assert_eq!(state.failures(peer(1)), Some(0));
        let new = one_ping(&mut state, &mut rng);
        assert_eq!(state.in_flight_to(peer(1)), 2);
        assert_eq!(
            state.handle_response(peer(1), old[1].round, pong(&old[1])),
            None
        );

        // Gone with pings in flight and back before they end: they take room under the cap.
        let another = one_ping(&mut state, &mut rng);
        state.handle_disconnected(peer(1));
        assert_eq!(state.failures(peer(1)), None);
        assert_eq!(state.tracked(), 1);
        state.handle_connected(peer(1));
        let third = one_ping(&mut state, &mut rng);
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!((pings, skipped), (vec![], vec![peer(1)]));
        for ping in [new, another] {
            assert_eq!(
                state.handle_response(peer(1), ping.round, PingResponse::Timeout),
                None
            );
        }
        assert_eq!(state.poll_disconnect(), None);
        // The current connection's ping counts.
        assert_eq!(
            state.handle_response(peer(1), third.round, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        assert_eq!(state.poll_disconnect().map(|d| d.peer), Some(peer(1)));

        // Gone for good: the record goes when the last ping ends.
        state.handle_disconnected(peer(1));
        assert_eq!(state.tracked(), 0);
        state.handle_connected(peer(1));
        let pings = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];
        state.handle_disconnected(peer(1));
        for (ping, tracked) in pings.into_iter().zip([1, 0]) {
            assert_eq!(
                state.handle_response(peer(1), ping.round, pong(&ping)),
                None
            );
            assert_eq!(state.tracked(), tracked);
        }

        // Unknown peers are ignored.
        assert_eq!(
            state.handle_response(peer(9), 1, PingResponse::Timeout),
            None
        );
    }
}
