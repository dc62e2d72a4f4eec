//! [`HealthChecker`]: one actor per network that pings every connected peer and disconnects
//! a peer whose pings fail too many times in a row; it also answers the peers' pings.
//!
//! ```text
//! ticker (interval_ms) ─► HealthState::handle_tick, poll_ping ─► NetworkClient::send_rpc(Ping)
//!                                                                   │ timeout_ms
//! HealthState::handle_response ◄── Pong(nonce) / timeout / error ◄──┘
//!     └─► poll_disconnect ─► NetworkClient::disconnect ─► LostPeer
//! NetworkEvents<HealthCheckerMsg> ── Ping(n) ─► RpcReplier::reply(Pong(n))
//! PeersAndMetadata::subscribe ── NewPeer / LostPeer ─► handle_connected / handle_disconnected
//! ```
//!
//! The protocol is AptosNet's (`wire-format.md` §8): an RPC on `HealthCheckerRpc` (5) whose
//! request is [`HealthCheckerMsg::Ping`] with a random nonce and whose response is
//! [`HealthCheckerMsg::Pong`] with the same nonce, plain BCS. A ping fails when no pong comes
//! within `timeout_ms`, when the pong carries another nonce, or when the RPC fails otherwise.
//! A success resets the peer's count of failures; the `failures_before_disconnect`th failure
//! in a row disconnects it.
//!
//! [`HealthState`] is the bookkeeping, without IO; [`HealthChecker`] drives it.
//!
//! Two differences from AptosNet's health checker, both on purpose:
//! - A peer has at most one ping in flight: a round skips a peer whose previous ping has not
//!   ended, so the pings in flight are bounded by the number of peers. AptosNet pings every
//!   peer every round, so with its 10 s interval and 20 s timeout a silent peer has two pings
//!   in flight and is disconnected after about 60 s; here after about 90 s.
//! - Only peers that offered `HealthCheckerRpc` in their handshake are pinged, so a peerlane
//!   node with health checking disabled is not disconnected for it. AptosNet nodes always
//!   offer it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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

/// The bookkeeping of a health checker, without IO: which peers to ping, the ping each one has
/// in flight (its round and nonce), and how many of its pings failed in a row.
///
/// # Calling protocol
///
/// 1. [`handle_connected`](Self::handle_connected) and
///    [`handle_disconnected`](Self::handle_disconnected) as connections come and go.
/// 2. On every tick of the ping interval, [`handle_tick`](Self::handle_tick), then
///    [`poll_ping`](Self::poll_ping) until it returns `None`, sending each ping.
/// 3. When a ping ends, [`handle_response`](Self::handle_response) with what came back;
///    count the [`PingResult`] it returns.
/// 4. After each `handle_response`, [`poll_disconnect`](Self::poll_disconnect) until it returns
///    `None`, disconnecting each peer.
///
/// Getters have no side effects. Time is not an input: the caller's ticker says when a round
/// starts, and the caller's RPC timeout says when a ping has failed. Randomness is: nonces come
/// from the rng given to `poll_ping`.
#[derive(Debug)]
pub(crate) struct HealthState {
    failures_before_disconnect: u32,
    /// Rounds started so far; the current round's number.
    round: u64,
    /// Every connected peer we ping, and every disconnected one whose last ping has not ended.
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
#[derive(Clone, Copy, Debug, Default)]
struct PeerHealth {
    /// False for a peer that is gone but whose last ping has not ended yet.
    connected: bool,
    /// Pings failed in a row.
    failures: u32,
    /// Set once the peer failed too often: it is not pinged again and its failures no longer
    /// count.
    disconnecting: bool,
    in_flight: Option<InFlight>,
}

/// The ping a peer has in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    round: u64,
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
    /// The pings in flight: at most one per peer in `state`.
    pings: FuturesUnordered<BoxFuture<'static, PingDone>>,
    /// Disconnects asked for and not answered yet: at most one per peer in `state`.
    disconnects: FuturesUnordered<BoxFuture<'static, (PeerNetworkId, Result<(), Error>)>>,
}

/// A ping that ended.
struct PingDone {
    ping: PingRequest,
    response: Result<HealthCheckerMsg, Error>,
}

impl HealthState {
    /// No peers yet, round 0; a peer is disconnected at its `failures_before_disconnect`th
    /// failure in a row (at least the first).
    pub(crate) fn new(failures_before_disconnect: u32) -> Self {
        Self {
            failures_before_disconnect: failures_before_disconnect.max(1),
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
        // A ping still in flight went out on the previous connection.
        if let Some(in_flight) = &mut health.in_flight {
            in_flight.counts = false;
        }
    }

    /// `peer` is gone: it is no longer pinged, and its ping in flight no longer counts.
    pub(crate) fn handle_disconnected(&mut self, peer: PeerNetworkId) {
        let Some(health) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(mut in_flight) = health.in_flight {
            // Kept until that ping ends, so that a quick reconnect cannot give the peer a
            // second ping in flight.
            in_flight.counts = false;
            *health = PeerHealth {
                in_flight: Some(in_flight),
                ..PeerHealth::default()
            };
        } else {
            self.peers.remove(&peer);
        }
    }

    /// Starts a new round: every connected peer without a ping in flight is due for one.
    pub(crate) fn handle_tick(&mut self) {
        self.round += 1;
        self.due = self
            .peers
            .iter()
            .filter(|(_, health)| health.is_due())
            .map(|(peer, _)| *peer)
            .collect();
    }

    /// The next ping of this round, its nonce drawn from `rng`; `None` once every due peer has
    /// one in flight.
    pub(crate) fn poll_ping(&mut self, rng: &mut impl RngCore) -> Option<PingRequest> {
        while let Some(peer) = self.due.pop_front() {
            // The peer may have gone (or come back) since the tick.
            let Some(health) = self.peers.get_mut(&peer).filter(|health| health.is_due()) else {
                continue;
            };
            let nonce = rng.next_u32();
            health.in_flight = Some(InFlight {
                round: self.round,
                nonce,
                counts: true,
            });
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
    /// A success resets the peer's failures; a failure adds one, and the
    /// `failures_before_disconnect`th in a row queues the peer for
    /// [`poll_disconnect`](Self::poll_disconnect).
    pub(crate) fn handle_response(
        &mut self,
        peer: PeerNetworkId,
        round: u64,
        response: PingResponse,
    ) -> Option<PingResult> {
        let health = self.peers.get_mut(&peer)?;
        let in_flight = health
            .in_flight
            .filter(|in_flight| in_flight.round == round)?;
        health.in_flight = None;
        if !health.connected {
            self.peers.remove(&peer);
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

    /// The next peer to disconnect, once per peer that failed too often.
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

    /// Pings in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.peers
            .values()
            .filter(|health| health.in_flight.is_some())
            .count()
    }

    /// Peers with a record: the connected ones and the gone ones with a ping in flight. Bounds
    /// the pings in flight.
    pub(crate) fn tracked(&self) -> usize {
        self.peers.len()
    }
}

impl PeerHealth {
    /// Whether a round pings this peer.
    fn is_due(&self) -> bool {
        self.connected && !self.disconnecting && self.in_flight.is_none()
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
        let state = HealthState::new(parts.config.failures_before_disconnect);
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
                // round starts must be counted first, so that the round pings the peer again),
                // then who is connected, then the round, then the peers' pings. Every arm is
                // quick and the ones above the peers' pings are bounded by the peer count, so
                // answering pings never waits long.
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
        self.state.handle_tick();
        let mut sent = 0_usize;
        while let Some(ping) = self.state.poll_ping(&mut self.rng) {
            sent += 1;
            let client = self.parts.client.clone();
            let timeout = self.parts.config.timeout();
            self.pings.push(Box::pin(async move {
                let request = HealthCheckerMsg::Ping(Ping(ping.nonce));
                let response = client.send_rpc(ping.peer, request, timeout).await;
                PingDone { ping, response }
            }));
        }
        debug_assert!(self.pings.len() <= self.state.tracked());
        tracing::trace!(
            network = %self.parts.network_id,
            round = self.state.round(),
            sent,
            in_flight = self.state.in_flight(),
            "health-check round"
        );
    }

    fn handle_ping_done(&mut self, done: PingDone) {
        let PingDone { ping, response } = done;
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

    /// Every ping of the next round.
    fn round(state: &mut HealthState, rng: &mut StdRng) -> Vec<PingRequest> {
        state.handle_tick();
        std::iter::from_fn(|| state.poll_ping(rng)).collect()
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

    /// A round pings every connected peer once, with nonces drawn from the rng in peer order;
    /// a peer whose ping is still in flight is skipped by the next round, so there is never
    /// more than one ping per peer in flight.
    #[test]
    fn a_round_pings_each_peer_once_and_skips_peers_with_a_ping_in_flight() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut expected_rng = rng.clone();
        let mut state = HealthState::new(4);
        assert!(round(&mut state, &mut rng).is_empty());
        state.handle_connected(peer(2));
        state.handle_connected(peer(1));

        let pings = round(&mut state, &mut rng);
        // The empty round drew nothing.
        let nonces = [expected_rng.next_u32(), expected_rng.next_u32()];
        assert_eq!(
            pings,
            vec![
                PingRequest {
                    peer: peer(1),
                    round: 2,
                    nonce: nonces[0]
                },
                PingRequest {
                    peer: peer(2),
                    round: 2,
                    nonce: nonces[1]
                },
            ]
        );
        assert_eq!((state.in_flight(), state.tracked()), (2, 2));

        // Peer 1 answers; peer 2's ping is still out.
        assert_eq!(
            state.handle_response(peer(1), 2, pong(&pings[0])),
            Some(PingResult::Ok)
        );
        let next = round(&mut state, &mut rng);
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].peer, next[0].round), (peer(1), 3));
        assert_eq!(state.in_flight(), 2);
    }

    /// The `failures_before_disconnect`th failure in a row, and not the one before, queues the
    /// peer for disconnecting, once; it is not pinged again.
    #[test]
    fn the_fourth_consecutive_failure_disconnects_and_not_the_third() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut state = HealthState::new(4);
        state.handle_connected(peer(1));
        for failures in 1..=3 {
            let ping = round(&mut state, &mut rng)[0];
            assert_eq!(
                state.handle_response(ping.peer, ping.round, PingResponse::Timeout),
                Some(PingResult::Timeout)
            );
            assert_eq!(state.failures(peer(1)), Some(failures));
            assert_eq!(state.poll_disconnect(), None);
        }
        let ping = round(&mut state, &mut rng)[0];
        assert_eq!(
            state.handle_response(ping.peer, ping.round, PingResponse::Failed),
            Some(PingResult::Error)
        );
        assert_eq!(
            state.poll_disconnect(),
            Some(Disconnect {
                peer: peer(1),
                failures: 4
            })
        );
        assert_eq!(state.poll_disconnect(), None);
        assert!(round(&mut state, &mut rng).is_empty());
        state.handle_disconnected(peer(1));
        assert_eq!(state.tracked(), 0);
    }

    /// A pong with another nonce is a failure of its own kind, and counts towards the
    /// disconnect like a timeout.
    #[test]
    fn a_wrong_nonce_counts_as_a_failure() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut state = HealthState::new(2);
        state.handle_connected(peer(1));
        for _ in 0..2 {
            let ping = round(&mut state, &mut rng)[0];
            let wrong = PingResponse::Pong(ping.nonce.wrapping_add(1));
            assert_eq!(
                state.handle_response(ping.peer, ping.round, wrong),
                Some(PingResult::WrongNonce)
            );
        }
        assert_eq!(state.poll_disconnect().map(|d| d.failures), Some(2));
    }

    /// A success resets the count: three failures, a success and three more failures do not
    /// disconnect; the fourth failure after the success does.
    #[test]
    fn a_success_resets_the_failure_count() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut state = HealthState::new(4);
        state.handle_connected(peer(1));
        let script = [false, false, false, true, false, false, false];
        for answers in script {
            let ping = round(&mut state, &mut rng)[0];
            let response = if answers {
                pong(&ping)
            } else {
                PingResponse::Timeout
            };
            state.handle_response(ping.peer, ping.round, response);
            assert_eq!(state.poll_disconnect(), None);
        }
        assert_eq!(state.failures(peer(1)), Some(3));
        let ping = round(&mut state, &mut rng)[0];
        state.handle_response(ping.peer, ping.round, PingResponse::Timeout);
        assert_eq!(state.poll_disconnect().map(|d| d.peer), Some(peer(1)));
    }

    /// A ping that went out on a connection that has since ended or been replaced does not
    /// count, and a peer that left keeps its record only until its last ping ends, so a quick
    /// reconnect never has two pings in flight.
    #[test]
    fn pings_of_an_ended_connection_do_not_count() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut state = HealthState::new(1);
        state.handle_connected(peer(1));
        let ping = round(&mut state, &mut rng)[0];

        // Replaced: the old connection's failed ping does not disconnect the new one.
        state.handle_connected(peer(1));
        assert_eq!(
            state.handle_response(ping.peer, ping.round, PingResponse::Failed),
            None
        );
        assert_eq!(state.poll_disconnect(), None);
        assert_eq!(state.failures(peer(1)), Some(0));

        // Gone with a ping in flight, back before it ends: no second ping meanwhile.
        let ping = round(&mut state, &mut rng)[0];
        state.handle_disconnected(peer(1));
        assert_eq!(state.failures(peer(1)), None);
        assert_eq!(state.tracked(), 1);
        state.handle_connected(peer(1));
        assert!(round(&mut state, &mut rng).is_empty());
        assert_eq!(
            state.handle_response(ping.peer, ping.round, pong(&ping)),
            None
        );
        assert_eq!(round(&mut state, &mut rng).len(), 1);

        // Gone for good: the record goes when the ping ends.
        let ping = round_in_flight(&state);
        state.handle_disconnected(peer(1));
        assert_eq!(
            state.handle_response(ping.0, ping.1, PingResponse::Timeout),
            None
        );
        assert_eq!(state.tracked(), 0);

        // Unknown peers and rounds are ignored.
        assert_eq!(
            state.handle_response(peer(9), 1, PingResponse::Timeout),
            None
        );
    }

    /// The (peer, round) of the only ping in flight.
    fn round_in_flight(state: &HealthState) -> (PeerNetworkId, u64) {
        state
            .peers
            .iter()
            .find_map(|(peer, health)| health.in_flight.map(|f| (*peer, f.round)))
            .expect("a ping in flight")
    }
}
