//! [`Intake`]: reads the messages of peerlane's own direct-send protocols, `PeerlaneDisconnect`
//! (64), `ChainStatus` (65), `RoutingSync` (67) and `Routed` (68), in the peer's reader as they
//! arrive, before any application queue. A notice or a status is one small fixed-size message
//! whose effect is one slot per peer, so it needs no queue, and a notice that comes just before the socket closes is read even though the
//! peer's queued messages are purged when it is lost.
//!
//! - A `Disconnect` notice is logged (rate-limited), counted
//!   (`peerlane_disconnect_notices_total{direction="received"}`) and handed to the
//!   connectivity manager as a [`PeerEvent::RemoteRefusal`], which decides when to dial again.
//! - A chain status replaces the peer's previous one in [`PeersAndMetadata`]; one from another
//!   chain (another genesis than ours, once we have set ours) closes the connection with a
//!   `Disconnect { reason: ChainMismatch }` notice.
//!
//! - Messages on `RoutingSync` (67) and `Routed` (68) go, without waiting, to the network's
//!   routing actor through a bounded queue (`routing.max_pending_messages`); a full queue
//!   drops them, counted (`peerlane_routing_inbound_dropped_total{protocol}`). Without
//!   routing they are dropped (the protocols are not offered then, so only a peer ignoring
//!   the handshake sends them).
//!
//! What a peer can make the node hold through these: its one status slot, and its share of
//! the routing actor's bounded queue.
//! Malformed payloads are counted and dropped; the peer layer's per-protocol rate limits bound
//! how often this runs.

use std::time::{Duration, Instant, SystemTime};

use connectivity_manager::{ConnectivityHandle, PeerEvent, RemoteRefusal};
use netcore::{PeerId, SharedLogLimiter};
use peer::InboundEvent;
use routing::Channel;
use tokio::sync::{mpsc, watch};
use wire::{NetworkId, ProtocolId};

use crate::chain_status::{self, ChainStatus};
use crate::disconnect_notice::{self, Disconnect, DisconnectCode};
use crate::metrics::Metrics;
use crate::peers::{PeerNetworkId, PeersAndMetadata};
use crate::routing::{InboundRouting, RoutingMetrics};

/// Log lines per minute for what peers send on protocols 64 and 65.
const LOG_LINES_PER_MINUTE: u32 = 10;

/// The handler of protocols 64 and 65 for one network; see the module docs.
pub(crate) struct Intake {
    network_id: NetworkId,
    peers: PeersAndMetadata,
    metrics: Metrics,
    connectivity: Option<ConnectivityHandle>,
    /// Our own chain status, once the node has set it.
    local: watch::Receiver<Option<ChainStatus>>,
    log: SharedLogLimiter,
    /// The routing actor's queue, when routing is on.
    routing: Option<(mpsc::Sender<InboundRouting>, RoutingMetrics)>,
}

impl Intake {
    pub(crate) fn new(
        network_id: NetworkId,
        peers: PeersAndMetadata,
        metrics: Metrics,
        connectivity: Option<ConnectivityHandle>,
        local: watch::Receiver<Option<ChainStatus>>,
    ) -> Self {
        Self {
            network_id,
            peers,
            metrics,
            connectivity,
            local,
            log: SharedLogLimiter::new(LOG_LINES_PER_MINUTE, Duration::from_secs(60)),
            routing: None,
        }
    }

    /// Hands messages on 67 and 68 to the routing actor through `queue` from now on.
    pub(crate) fn with_routing(
        mut self,
        queue: mpsc::Sender<InboundRouting>,
        metrics: RoutingMetrics,
    ) -> Self {
        self.routing = Some((queue, metrics));
        self
    }

    /// Whether `protocol` is one of peerlane's own direct sends (64, 65, 67, 68), which are
    /// read here rather than queued for an application.
    pub(crate) fn handles(protocol: ProtocolId) -> bool {
        protocol == ProtocolId::PEERLANE_DISCONNECT
            || protocol == ProtocolId::CHAIN_STATUS
            || protocol == ProtocolId::ROUTING_SYNC
            || protocol == ProtocolId::ROUTED
    }

    /// Whether this intake reads `protocol`: 64 and 65 always, 67 and 68 when the network
    /// runs routing (otherwise they are not offered, and an application may take them).
    pub(crate) fn takes(&self, protocol: ProtocolId) -> bool {
        Self::handles(protocol)
            && (self.routing.is_some() || Channel::from_protocol_id(protocol.as_u8()).is_none())
    }

    /// Reads one message of protocol 64, 65, 67 or 68. Never waits.
    pub(crate) fn handle(&self, event: InboundEvent) {
        let (sender, protocol, payload) = match event {
            InboundEvent::DirectSend {
                sender,
                protocol_id,
                payload,
            } => (sender, protocol_id, payload),
            // Both protocols are direct sends: dropping the request frees its slot, and the
            // peer's RPC times out.
            InboundEvent::RpcRequest {
                sender,
                protocol_id,
                ..
            } => {
                self.count_malformed(protocol_id);
                self.log_bad(sender, protocol_id, "an rpc on a direct-send protocol");
                return;
            }
        };
        if let Some(channel) = Channel::from_protocol_id(protocol.as_u8()) {
            self.handle_routing(sender, channel, payload);
        } else if protocol == ProtocolId::PEERLANE_DISCONNECT {
            self.handle_notice(sender, &payload);
        } else {
            self.handle_chain_status(sender, &payload);
        }
    }

    fn handle_routing(&self, sender: PeerId, channel: Channel, bytes: bytes::Bytes) {
        let Some((queue, metrics)) = &self.routing else {
            return;
        };
        let message = InboundRouting {
            from: sender,
            channel,
            bytes,
        };
        if queue.try_send(message).is_err() {
            metrics.record_inbound_dropped(match channel {
                Channel::RoutingSync => "RoutingSync",
                Channel::Routed => "Routed",
            });
        }
    }

    fn handle_notice(&self, sender: PeerId, payload: &[u8]) {
        let notice = match disconnect_notice::decode(payload) {
            Ok(notice) => notice,
            Err(err) => {
                self.count_malformed(ProtocolId::PEERLANE_DISCONNECT);
                self.log_bad(sender, ProtocolId::PEERLANE_DISCONNECT, &err.to_string());
                return;
            }
        };
        let reason = notice.reason;
        self.metrics
            .extensions()
            .record_notice(false, reason.as_str());
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            let peer = PeerNetworkId::new(self.network_id, sender);
            let detail = match reason {
                DisconnectCode::Banned {
                    until_unix_ms: Some(ms),
                } => {
                    let until = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
                    format!("banned until {}", humantime::format_rfc3339_seconds(until))
                }
                DisconnectCode::Banned {
                    until_unix_ms: None,
                } => "banned until it lifts the ban".to_owned(),
                other => other.as_str().to_owned(),
            };
            match reason {
                // Routine: a full peer, a lost tie, a slow link; retried later.
                DisconnectCode::Full
                | DisconnectCode::RepeatedConnection
                | DisconnectCode::Timeout => tracing::info!(
                    peer = %peer.peer_id,
                    reason = reason.as_str(),
                    suppressed,
                    "peer {} closed the connection: {detail}",
                    peer.peer_id
                ),
                // Something an operator can act on, on this side or the other.
                _ => tracing::warn!(
                    peer = %peer.peer_id,
                    reason = reason.as_str(),
                    suppressed,
                    "peer {} refused us: {detail}",
                    peer.peer_id
                ),
            }
        }
        self.report(sender, reason.to_refusal(SystemTime::now()));
    }

    fn handle_chain_status(&self, sender: PeerId, payload: &[u8]) {
        let status = match chain_status::decode(payload) {
            Ok(status) => status,
            Err(err) => {
                self.count_malformed(ProtocolId::CHAIN_STATUS);
                self.log_bad(sender, ProtocolId::CHAIN_STATUS, &err.to_string());
                return;
            }
        };
        let peer = PeerNetworkId::new(self.network_id, sender);
        let local_genesis = self.local.borrow().map(|local| local.genesis);
        if local_genesis.is_some_and(|genesis| genesis != status.genesis) {
            self.metrics
                .extensions()
                .record_chain_status("chain_mismatch");
            if let Some(suppressed) = self.log.allow(Instant::now()) {
                tracing::info!(
                    %peer,
                    their_genesis = %status.genesis,
                    suppressed,
                    "peer is on another chain, disconnecting"
                );
            }
            close_with_notice(
                &self.peers,
                &self.metrics,
                peer,
                DisconnectCode::ChainMismatch,
            );
            // We will not want it back soon either.
            self.report(sender, RemoteRefusal::ChainMismatch);
            return;
        }
        if self.peers.record_chain_status(peer, status) {
            let extensions = self.metrics.extensions();
            extensions.record_chain_status("received");
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            extensions.set_peer_chain_status(&sender, status.best_height, status.lib_height, now);
        }
    }

    /// Tells the connectivity manager, without waiting; a full queue loses the report (the
    /// peer then only gets its usual backoff), counted.
    fn report(&self, peer_id: PeerId, refusal: RemoteRefusal) {
        if let Some(connectivity) = &self.connectivity
            && connectivity
                .try_send(PeerEvent::RemoteRefusal { peer_id, refusal })
                .is_err()
        {
            self.metrics.extensions().record_refusal_report_dropped();
            tracing::debug!(peer = %peer_id, "connectivity manager busy; refusal not reported");
        }
    }

    fn count_malformed(&self, protocol: ProtocolId) {
        if let Some(channel) = Channel::from_protocol_id(protocol.as_u8()) {
            if let Some((_, metrics)) = &self.routing {
                metrics.record_malformed(match channel {
                    Channel::RoutingSync => "RoutingSync",
                    Channel::Routed => "Routed",
                });
            }
        } else if protocol == ProtocolId::PEERLANE_DISCONNECT {
            self.metrics.extensions().record_notice(false, "malformed");
        } else {
            self.metrics.extensions().record_chain_status("malformed");
        }
    }

    fn log_bad(&self, sender: PeerId, protocol: ProtocolId, what: &str) {
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            tracing::debug!(
                peer = %PeerNetworkId::new(self.network_id, sender),
                %protocol,
                what,
                suppressed,
                "malformed message dropped"
            );
        }
    }
}

/// Sends `peer` a `Disconnect { reason }` notice if it speaks protocol 64, then closes its
/// connection (the notice goes out first: a graceful close sends what is queued). Returns
/// whether it was connected.
pub(crate) fn close_with_notice(
    peers: &PeersAndMetadata,
    metrics: &Metrics,
    peer: PeerNetworkId,
    reason: DisconnectCode,
) -> bool {
    let Some((_, handle)) = peers.sender(peer) else {
        return false;
    };
    send_notice(peers, metrics, peer, reason);
    handle.disconnect();
    true
}

/// Queues a `Disconnect { reason }` notice to `peer` if it is connected and speaks protocol
/// 64; returns whether it was queued. The caller closes the connection next.
pub(crate) fn send_notice(
    peers: &PeersAndMetadata,
    metrics: &Metrics,
    peer: PeerNetworkId,
    reason: DisconnectCode,
) -> bool {
    let Some((protocols, handle)) = peers.sender(peer) else {
        return false;
    };
    let sent = protocols.contains(ProtocolId::PEERLANE_DISCONNECT)
        && ProtocolId::PEERLANE_DISCONNECT
            .to_bytes(&Disconnect { reason })
            .is_ok_and(|payload| {
                handle
                    .send_direct(ProtocolId::PEERLANE_DISCONNECT, payload)
                    .is_ok()
            });
    if sent {
        metrics.extensions().record_notice(true, reason.as_str());
    }
    sent
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::builder::NetworkBuilder;
    use crate::chain_status::BlockHash;
    use crate::config::{Identity, NetworkConfig};
    use crate::network::Network;
    use crate::transport::TransportKind;

    fn network(seed: u8) -> Network {
        let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
        config.identity = Some(Identity::new(noise::PrivateKey::from([seed; 32])));
        NetworkBuilder::new(config, TransportKind::Memory, &mut Registry::default())
            .unwrap()
            .build()
            .unwrap()
    }

    /// Two networks, `a` having dialed `b`; returns them and `b`'s connection to `a`, over
    /// which the test sends whatever bytes it likes, as a hostile peer would.
    async fn connected() -> (Network, Network, peer::PeerHandle) {
        let a = network(1);
        let b = network(2);
        a.dial(b.peer_id(), b.listen_address().clone())
            .await
            .unwrap();
        let to_a = PeerNetworkId::new(NetworkId::Public, a.peer_id());
        let handle = wait_for(|| b.peers_and_metadata().sender(to_a).map(|(_, h)| h)).await;
        (a, b, handle)
    }

    async fn wait_for<T>(mut ready: impl FnMut() -> Option<T>) -> T {
        for _ in 0..2_000 {
            if let Some(value) = ready() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition not met within 10 s");
    }

    fn status(height: u64) -> Bytes {
        ProtocolId::CHAIN_STATUS
            .to_bytes(&ChainStatus {
                genesis: BlockHash([7; 32]),
                best_height: height,
                ..ChainStatus::default()
            })
            .unwrap()
    }

    /// A peer that floods chain statuses and garbage holds one slot on our side: the latest
    /// status, with the count of updates; the garbage is counted and dropped, and the
    /// connection stays up.
    #[tokio::test]
    async fn a_status_flood_holds_one_slot() {
        let (a, b, to_a) = connected().await;
        for height in 1..=400 {
            to_a.send_direct(ProtocolId::CHAIN_STATUS, status(height))
                .unwrap();
        }
        for size in [0, 1, 111, 113, 4096] {
            to_a.send_direct(ProtocolId::CHAIN_STATUS, Bytes::from(vec![0xff; size]))
                .unwrap();
        }
        let from_b = PeerNetworkId::new(NetworkId::Public, b.peer_id());
        let ext = a.metrics().extensions().clone();
        wait_for(|| (ext.chain_status("malformed") == 5).then_some(())).await;
        let held = a.peers_and_metadata().chain_status(from_b).unwrap();
        assert_eq!(held.status.best_height, 400);
        assert_eq!(held.updates, 400);
        assert_eq!(ext.chain_status("received"), 400);
        assert!(a.is_connected(b.peer_id()));
        a.shutdown().await;
        b.shutdown().await;
    }

    /// Garbage notices and RPCs on the direct-send protocols are counted as malformed and
    /// change nothing; a valid notice is counted by its reason.
    #[tokio::test]
    async fn bad_notices_are_counted_and_dropped() {
        let (a, b, to_a) = connected().await;
        for payload in [vec![0x09], vec![0x05, 0x01], vec![0x04; 64]] {
            to_a.send_direct(ProtocolId::PEERLANE_DISCONNECT, Bytes::from(payload))
                .unwrap();
        }
        // An RPC on protocol 64: dropped, so it times out on the sender's side.
        let rpc = to_a.rpc(
            ProtocolId::PEERLANE_DISCONNECT,
            Bytes::from_static(&[0x04]),
            Duration::from_millis(200),
        );
        assert!(rpc.await.is_err());
        to_a.send_direct(ProtocolId::PEERLANE_DISCONNECT, Bytes::from_static(&[0x07]))
            .unwrap();
        let ext = a.metrics().extensions().clone();
        wait_for(|| (ext.disconnect_notices(false, "timeout") == 1).then_some(())).await;
        assert_eq!(ext.disconnect_notices(false, "malformed"), 4);
        assert!(a.is_connected(b.peer_id()));
        a.shutdown().await;
        b.shutdown().await;
    }
}
