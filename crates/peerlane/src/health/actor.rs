//! [`HealthChecker`]: the actor that drives a [`HealthState`] (see the module docs of `health`):
//! a ticker for the rounds, the pings as RPCs, the disconnects, connection notifications in,
//! and the answers to the peers' pings.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use peer::ConnectionId;
use rand::RngCore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{NetworkId, ProtocolId};

use crate::client::NetworkClient;
use crate::config::HealthCheckConfig;
use crate::disconnect_notice::DisconnectCode;
use crate::error::Error;
use crate::events::{Event, NetworkEvents};
use crate::health::message::{HealthCheckerMsg, Ping, Pong};
use crate::health::state::{
    Disconnect, HealthState, PingRequest, PingResponse, max_in_flight_per_peer,
};
use crate::intake::send_notice;
use crate::metrics::{Metrics, PingResult};
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};

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
    /// The peer's connection and the bytes read from it when the ping went out.
    received_before: Option<(ConnectionId, u64)>,
    response: Result<HealthCheckerMsg, Error>,
    /// From sending the ping to its outcome.
    rtt: Duration,
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
    pub(crate) async fn run(mut self) {
        let interval = self.parts.config.interval;
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
                        Ok(()) => tracing::debug!(peer = %peer.peer_id, "unhealthy peer disconnected"),
                        // Gone already, or the network is shutting down.
                        Err(err) => {
                            tracing::debug!(peer = %peer.peer_id, error = %err, "unhealthy peer not disconnected");
                        }
                    }
                }
                // A peer connected or left. `None` needs every `PeersAndMetadata` handle gone,
                // and `parts` holds one, so it does not happen; stop if it does.
                notification = self.notifications.recv() => match notification {
                    Some(notification) => self.handle_notification(notification),
                    None => break,
                },
                // Time for a round of pings (none when our pinging is off: then we only
                // answer the peers' pings).
                _ = ticker.tick(), if self.parts.config.enabled => {
                    self.take_pings_ended_now().await;
                    self.start_round();
                }
                // A peer's ping (or anything else it sent on the protocol). The stream ends only
                // once the network's router is gone, at shutdown.
                event = self.parts.events.next(), if events_open => match event {
                    Some(event) => answer(event),
                    None => events_open = false,
                },
            }
        }
        tracing::debug!(network = %self.parts.network_id, "health checker stopped");
    }

    /// Counts the pings that end at the instant a round starts before the round does: a ping
    /// times out on its connection's timer, in the connection's reader task, which may not
    /// have run yet when the round's tick wakes us at the same instant. Yielding once lets it
    /// run, so that a peer whose last allowed failure is due now is disconnected rather than
    /// pinged again (at most once per round, so the yield costs nothing that matters).
    async fn take_pings_ended_now(&mut self) {
        if self.pings.is_empty() {
            return;
        }
        tokio::task::yield_now().await;
        while let Some(Some(done)) = self.pings.next().now_or_never() {
            self.handle_ping_done(done);
        }
    }

    /// Sends this round's pings.
    fn start_round(&mut self) {
        for peer in self.state.handle_tick() {
            // Only when rounds run far behind the pings' outcomes: at most once per peer and
            // interval.
            tracing::debug!(
                peer = %peer.peer_id,
                round = self.state.round(),
                in_flight = self.state.in_flight_to(peer),
                max_in_flight = self.state.max_in_flight_per_peer(),
                "peer has the most health-check pings in flight already, not pinging it this round"
            );
        }
        let mut sent = 0_usize;
        while let Some(ping) = self.state.poll_ping(&mut self.rng) {
            sent += 1;
            let received_before = self.received_from(ping.peer);
            let client = self.parts.client.clone();
            let timeout = self.parts.config.timeout;
            self.pings.push(Box::pin(async move {
                let request = HealthCheckerMsg::Ping(Ping(ping.nonce));
                let sent_at = Instant::now();
                let response = client.send_rpc(ping.peer, request, timeout).await;
                PingDone {
                    ping,
                    received_before,
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
            received_before,
            response,
            rtt,
        } = done;
        let (response, error) = match response {
            Ok(HealthCheckerMsg::Pong(Pong(nonce))) => (PingResponse::Pong(nonce), None),
            Ok(HealthCheckerMsg::Ping(_)) => (PingResponse::Failed, None),
            // Bytes from the peer on the same connection while the ping waited: the link or
            // the peer is slow, not gone (a pong stuck behind megabytes on a slow link).
            Err(err)
                if err.is_timeout()
                    && received_before.is_some_and(|(connection, before)| {
                        self.received_from(ping.peer)
                            .is_some_and(|(now_on, now)| now_on == connection && now > before)
                    }) =>
            {
                (PingResponse::TimeoutBusy, Some(err))
            }
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
            tracing::info!(peer = %peer.peer_id, failures, "peer failed its health checks, disconnecting");
            // Queued before the close, so the peer reads why.
            send_notice(
                &self.parts.peers,
                &self.parts.metrics,
                peer,
                DisconnectCode::Timeout,
            );
            let client = self.parts.client.clone();
            self.disconnects.push(Box::pin(async move {
                let result = client.disconnect(peer).await;
                (peer, result)
            }));
        }
    }

    /// `peer`'s current connection and the bytes read from it so far.
    fn received_from(&self, peer: PeerNetworkId) -> Option<(ConnectionId, u64)> {
        self.parts
            .peers
            .peer_stats(peer)
            .map(|stats| (stats.connection_id, stats.bytes_received))
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
                            peer = %peer.peer_id,
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
                tracing::debug!(peer = %peer.peer_id, error = %err, "could not answer a health-check ping");
            }
        }
        // Remote misbehaviour: debug, so a peer cannot flood the logs. An RPC left unanswered
        // times out on the peer's side.
        Event::RpcRequest { peer, .. } | Event::Message { peer, .. } => {
            tracing::debug!(peer = %peer.peer_id, "unexpected health checker message dropped");
        }
    }
}

/// Whether the connection negotiated `HealthCheckerRpc`.
fn speaks_health_checker(metadata: &peer::ConnectionMetadata) -> bool {
    metadata
        .application_protocols
        .contains(ProtocolId::HEALTH_CHECKER_RPC)
}
