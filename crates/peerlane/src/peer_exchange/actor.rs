//! [`PeerExchange`]: the actor that answers peers' requests on `PeerExchangeRpc` (66) from
//! [`RecentPeers`] under a [`RequestLimiter`], and (on the public network) asks one
//! connected peer every interval, checks its answer (`decode_answer`) and hands what it
//! keeps to the connectivity manager as indirect peers.

use bytes::Bytes;
use connectivity_manager::{ConnectivityHandle, PeerEvent};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use netcore::PeerId;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{NetworkId, ProtocolId};

use crate::events::{Event, NetworkEvents};
use crate::extension_config::ExtensionsConfig;
use crate::metrics::Metrics;
use crate::peer_exchange::limiter::RequestLimiter;
use crate::peer_exchange::message::PeerExchangeMsg;
use crate::peer_exchange::recent::RecentPeers;
use crate::peer_exchange::validate::decode_answer;
use crate::peers::{
    ConnectionNotification, ConnectionNotifications, PeerNetworkId, PeersAndMetadata,
};

/// What the actor needs from the builder.
pub(crate) struct Parts {
    pub(crate) network_id: NetworkId,
    pub(crate) own_peer_id: PeerId,
    pub(crate) config: ExtensionsConfig,
    /// Whether to ask peers (the public network with `peer_exchange` on), or only answer.
    pub(crate) ask: bool,
    pub(crate) events: NetworkEvents<PeerExchangeMsg>,
    pub(crate) peers: PeersAndMetadata,
    pub(crate) metrics: Metrics,
    pub(crate) connectivity: Option<ConnectivityHandle>,
    pub(crate) shutdown: CancellationToken,
}

/// A request of ours that ended: whom we asked, and the raw answer.
type Asked = (PeerNetworkId, Result<Bytes, peer::Error>);

/// The actor; see the module docs.
pub(crate) struct PeerExchange<R> {
    parts: Parts,
    recent: RecentPeers,
    limiter: RequestLimiter,
    rng: R,
    notifications: ConnectionNotifications,
    /// Our request in flight: at most one.
    asking: FuturesUnordered<BoxFuture<'static, Asked>>,
}

impl<R: Rng + Send + 'static> PeerExchange<R> {
    /// Subscribes to connection notifications now, so it hears of every later connection.
    pub(crate) fn new(parts: Parts, rng: R) -> Self {
        let notifications = parts.peers.subscribe();
        let recent = RecentPeers::new(
            parts.config.peer_exchange_max_recent,
            parts.config.peer_exchange_recent_window,
        );
        let limiter = RequestLimiter::new(parts.config.peer_exchange_min_request_interval);
        Self {
            parts,
            recent,
            limiter,
            rng,
            notifications,
            asking: FuturesUnordered::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let interval = self.parts.config.peer_exchange_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.parts.shutdown.clone();
        let mut events_open = true;
        loop {
            // Every future here is cancel-safe.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some((peer, answer)) = self.asking.next(), if !self.asking.is_empty() => {
                    self.handle_answer(peer, answer);
                }
                notification = self.notifications.recv() => match notification {
                    Some(notification) => self.handle_notification(notification),
                    None => break,
                },
                _ = ticker.tick(), if self.parts.ask => {
                    if self.asking.is_empty() {
                        self.ask_one();
                    }
                }
                event = self.parts.events.next(), if events_open => match event {
                    Some(event) => self.serve(event),
                    None => events_open = false,
                },
            }
        }
        tracing::debug!(network = %self.parts.network_id, "peer exchange stopped");
    }

    fn handle_notification(&mut self, notification: ConnectionNotification) {
        if notification.peer().network_id != self.parts.network_id {
            return;
        }
        let now = Instant::now();
        match notification {
            ConnectionNotification::NewPeer(metadata, _)
                if metadata.origin == netcore::ConnectionOrigin::Outbound =>
            {
                self.recent
                    .connected(metadata.remote_peer_id, metadata.remote_addr, now);
            }
            ConnectionNotification::NewPeer(..) => {}
            ConnectionNotification::LostPeer(metadata, ..) => {
                self.recent.disconnected(metadata.remote_peer_id, now);
            }
        }
    }

    /// Answers one request.
    fn serve(&mut self, event: Event<PeerExchangeMsg>) {
        let extensions = self.parts.metrics.extensions();
        let Event::RpcRequest {
            peer,
            request: PeerExchangeMsg::GetPeers { max },
            responder,
            ..
        } = event
        else {
            // Remote misbehaviour: counted; an RPC left unanswered times out on its side.
            extensions.record_exchange_request("served", "malformed");
            return;
        };
        let now = Instant::now();
        let answer = if self.limiter.allow(peer.peer_id, now) {
            let max = usize::from(max).min(self.parts.config.peer_exchange_max_peers);
            extensions.record_exchange_request("served", "ok");
            PeerExchangeMsg::Peers(self.recent.sample(max, peer.peer_id, now, &mut self.rng))
        } else {
            extensions.record_exchange_request("served", "busy");
            PeerExchangeMsg::Busy
        };
        if let Err(err) = responder.reply(answer) {
            tracing::debug!(%peer, error = %err, "peer exchange answer not sent");
        }
    }

    /// Asks one connected peer that speaks the protocol, chosen at random.
    fn ask_one(&mut self) {
        let mut candidates: Vec<PeerNetworkId> = self
            .parts
            .peers
            .connected_peers_and_metadata()
            .into_iter()
            .filter(|(peer, metadata)| {
                peer.network_id == self.parts.network_id
                    && metadata
                        .application_protocols
                        .contains(ProtocolId::PEER_EXCHANGE_RPC)
            })
            .map(|(peer, _)| peer)
            .collect();
        candidates.sort_unstable();
        let Some(&peer) = candidates.choose(&mut self.rng) else {
            return;
        };
        let Some((_, handle)) = self.parts.peers.sender(peer) else {
            return;
        };
        let max = u16::try_from(self.parts.config.peer_exchange_max_peers).unwrap_or(u16::MAX);
        let Ok(request) =
            ProtocolId::PEER_EXCHANGE_RPC.to_bytes(&PeerExchangeMsg::GetPeers { max })
        else {
            return;
        };
        let timeout = self.parts.config.peer_exchange_timeout;
        self.asking.push(Box::pin(async move {
            let answer = handle
                .rpc(ProtocolId::PEER_EXCHANGE_RPC, request, timeout)
                .await;
            (peer, answer)
        }));
    }

    /// Checks an answer and hands the peers kept to the connectivity manager.
    fn handle_answer(&mut self, peer: PeerNetworkId, answer: Result<Bytes, peer::Error>) {
        let extensions = self.parts.metrics.extensions().clone();
        let result = self.read_answer(peer, answer);
        extensions.record_exchange_request("asked", result);
    }

    fn read_answer(
        &mut self,
        peer: PeerNetworkId,
        answer: Result<Bytes, peer::Error>,
    ) -> &'static str {
        let extensions = self.parts.metrics.extensions().clone();
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "peer exchange request failed");
                return "failed";
            }
        };
        let checked = match decode_answer(
            &bytes,
            self.parts.config.peer_exchange_max_peers,
            self.parts.own_peer_id,
            self.parts.config.private_network,
        ) {
            Ok(checked) => checked,
            Err(result) => return result,
        };
        for refusal in &checked.refused {
            extensions.record_exchange_peers(refusal.as_str(), 1);
        }
        extensions.record_exchange_peers("accepted", checked.accepted.len() as u64);
        if !checked.accepted.is_empty()
            && let Some(connectivity) = &self.parts.connectivity
        {
            let event = PeerEvent::Exchanged {
                from: peer.peer_id,
                peers: checked.accepted,
            };
            // A full queue loses this answer; the next one comes an interval later.
            if connectivity.try_send(event).is_err() {
                tracing::debug!(%peer, "connectivity manager busy; exchanged peers dropped");
            }
        }
        "ok"
    }
}

/// The actor's inbound queue: LIFO, 8 requests per peer (one is answered per interval; the
/// rest are answered `Busy` or dropped).
pub(crate) const QUEUE: crate::queue::QueueConfig = crate::queue::QueueConfig::new(
    crate::queue::QueueStyle::Lifo,
    std::num::NonZeroUsize::new(8).unwrap(),
);
