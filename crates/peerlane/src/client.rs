//! [`NetworkClient`]: how an application sends to peers, on one or several networks.
//!
//! A client holds, per network, the application's protocol preference lists (one for direct
//! send, one for RPC), the network's [`PeersAndMetadata`] and a handle on its peer manager. To
//! send, it picks the first protocol of the right list that the peer negotiated, encodes the
//! value with that protocol's encoding ([`ProtocolId::to_bytes`]: BCS, JSON or LZ4-compressed
//! BCS) and hands the bytes to the peer's connection. No IO happens in the caller's task.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use peer::PeerHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wire::{NetworkId, ProtocolId, ProtocolIdSet};

use tokio::sync::oneshot;

use crate::error::{Error, ProtocolKind};
use crate::peer_manager::PeerManagerHandle;
use crate::peers::{PeerNetworkId, PeerStats, PeersAndMetadata};
use crate::routing::{
    Command as RoutingCommand, RoutingHandle, RoutingQueueError, RpcOutcome, SendRefused,
};

/// Sends an application's messages of type `M` to peers, on the networks it was built for.
///
/// Cheap to clone; every clone sends through the same networks. Build one per network with
/// [`NetworkBuilder::add_application`](crate::NetworkBuilder::add_application), and put the
/// networks behind one client with [`combine`](Self::combine).
pub struct NetworkClient<M> {
    /// At most one entry per network (three at most): a scan costs less than hashing the id
    /// on every send.
    networks: Arc<[(NetworkId, ClientNetwork)]>,
    /// The connection of the peer this clone sent to last, so that a run of sends to one peer
    /// skips the look-up in [`PeersAndMetadata`] (a shared lock and a hash). Per clone, so
    /// tasks with clones of their own do not contend for it.
    last: Mutex<Option<CachedPeer>>,
    _message: PhantomData<fn(M) -> M>,
}

/// A peer's connection as [`PeersAndMetadata`] gave it. Used only while the connection is up:
/// a connection that is replaced (simultaneous dial, reconnect) is closed, and then the next
/// send looks the peer up again.
struct CachedPeer {
    peer: PeerNetworkId,
    /// The application's first direct-send protocol the peer negotiated, if any.
    direct_send: Option<ProtocolId>,
    /// The application's first RPC protocol the peer negotiated, if any.
    rpc: Option<ProtocolId>,
    handle: PeerHandle,
}

/// What the client knows about one network.
#[derive(Clone)]
pub(crate) struct ClientNetwork {
    pub(crate) peers: PeersAndMetadata,
    pub(crate) manager: PeerManagerHandle,
    /// Direct-send protocols, most preferred first.
    pub(crate) direct_send: Vec<ProtocolId>,
    /// RPC protocols, most preferred first.
    pub(crate) rpc: Vec<ProtocolId>,
    /// The network's routing actor, when it runs routing.
    pub(crate) routing: Option<RoutingHandle>,
}

impl<M> NetworkClient<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// A client for one network.
    pub(crate) fn new(network_id: NetworkId, network: ClientNetwork) -> Self {
        Self {
            networks: Arc::new([(network_id, network)]),
            last: Mutex::new(None),
            _message: PhantomData,
        }
    }

    /// One client over the networks of several clients (say validator, VFN and public).
    ///
    /// Fails with [`Error::InvalidConfig`] if two of them serve the same network.
    pub fn combine(clients: impl IntoIterator<Item = Self>) -> Result<Self, Error> {
        let mut networks: Vec<(NetworkId, ClientNetwork)> = Vec::new();
        for client in clients {
            for (network_id, network) in client.networks.iter() {
                if networks.iter().any(|(known, _)| known == network_id) {
                    return Err(Error::InvalidConfig {
                        field: "network_id",
                        reason: "two clients to combine serve the same network",
                        source: None,
                    });
                }
                networks.push((*network_id, network.clone()));
            }
        }
        Ok(Self {
            networks: networks.into(),
            last: Mutex::new(None),
            _message: PhantomData,
        })
    }

    /// Sends `message` to `peer` as a direct send, on the first of the application's
    /// direct-send protocols the peer negotiated.
    ///
    /// Does not wait: the message is queued on the peer's connection. Fails with
    /// [`Error::NotConnected`], [`Error::NoCommonProtocol`], [`Error::Encode`], or
    /// [`Error::Peer`] when the connection's queue is full or it is closing.
    pub fn send_to_peer(&self, peer: PeerNetworkId, message: &M) -> Result<(), Error> {
        let network = self.network(peer.network_id)?;
        let (protocol, handle) = self.connection_for(network, peer, ProtocolKind::DirectSend)?;
        // Encoded outside the cache's lock: encoding may take long (BCS or LZ4, up to the
        // message size limit), and tasks sharing this client must not wait for it.
        let bytes = encode(protocol, message)?;
        send(peer, &handle, protocol, bytes)
    }

    /// Sends `message` to `peer` as a direct send, like [`send_to_peer`](Self::send_to_peer),
    /// but when the connection's outbound lane is full it waits for room instead of failing:
    /// for a sender that would rather slow down to the connection's pace than drop.
    ///
    /// It waits only for room in the outbound queue (see `peer::PeerHandle::send_direct_wait`),
    /// never for the message to be written or received: DirectSend is still fire-and-forget.
    /// Fails like `send_to_peer`, except never with a full queue; with [`Error::Peer`] when
    /// the connection closes while it waits. A remote that stops reading makes it wait until
    /// the connection ends, so wrap it in a timeout if that matters. Dropping the future while
    /// it waits drops the message (counted as a full-lane drop).
    pub async fn send_to_peer_wait(&self, peer: PeerNetworkId, message: &M) -> Result<(), Error> {
        let network = self.network(peer.network_id)?;
        let (protocol, handle) = self.connection_for(network, peer, ProtocolKind::DirectSend)?;
        let bytes = encode(protocol, message)?;
        handle
            .send_direct_wait(protocol, bytes)
            .await
            .map_err(|source| Error::Peer {
                peer,
                source: Box::new(source),
            })
    }

    /// Sends `message` to every peer in `peers` as a direct send. The message is encoded once
    /// per protocol used, however many peers share it.
    ///
    /// Tries every peer. Fails with [`Error::SendToPeers`] (the first failure as its source)
    /// if any could not be sent to, or at once with [`Error::Encode`] if the message does not
    /// encode.
    pub fn send_to_peers(
        &self,
        peers: impl IntoIterator<Item = PeerNetworkId>,
        message: &M,
    ) -> Result<(), Error> {
        // One encoding per protocol, shared by every peer that uses it.
        let mut encoded: HashMap<ProtocolId, Bytes> = HashMap::new();
        let mut attempted = 0;
        let mut failures = Vec::new();
        for peer in peers {
            attempted += 1;
            match self.send_encoded_once(peer, message, &mut encoded) {
                Ok(()) => {}
                // The same for every peer: no point going on.
                Err(err @ Error::Encode { .. }) => return Err(err),
                Err(err) => failures.push(err),
            }
        }
        let failed = failures.len();
        match failures.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(Error::SendToPeers {
                failed,
                attempted,
                first: Box::new(first),
            }),
        }
    }

    /// Sends `request` to `peer` as an RPC, on the first of the application's RPC protocols the
    /// peer negotiated, and waits up to `timeout` for the response, decoded with the same
    /// protocol.
    ///
    /// Fails like [`send_to_peer`](Self::send_to_peer), and with [`Error::Peer`] when the RPC
    /// times out ([`Error::is_timeout`]), the remote does not serve the protocol or the
    /// connection closes first; with [`Error::Decode`] when the response does not decode.
    ///
    /// Takes the request by value or by reference (`impl Borrow<M>`): a caller that keeps its
    /// request, to retry it or to reuse its buffer, need not clone it.
    ///
    /// Cancel-safe in the sense that dropping the future abandons the RPC; a late response is
    /// dropped by the connection.
    pub async fn send_rpc(
        &self,
        peer: PeerNetworkId,
        request: impl Borrow<M>,
        timeout: Duration,
    ) -> Result<M, Error> {
        let network = self.network(peer.network_id)?;
        let (protocol, handle) = self.connection_for(network, peer, ProtocolKind::Rpc)?;
        let bytes = encode(protocol, request.borrow())?;
        let response = handle
            .rpc(protocol, bytes, timeout)
            .await
            .map_err(|source| Error::Peer {
                peer,
                source: Box::new(source),
            })?;
        protocol
            .from_bytes(&response)
            .map_err(|source| Error::Decode { protocol, source })
    }

    /// Sends `message` to `peer` as a direct send, whether or not it is connected: directly
    /// if it is (exactly [`send_to_peer`](Self::send_to_peer)), else as a routed message
    /// over the network's graph of signed edges (protocol 68), hop by hop. It arrives at the
    /// peer's application through the same [`NetworkEvents`](crate::NetworkEvents) as a
    /// direct send, with this node as the sender.
    ///
    /// A routed message uses the application's most preferred direct-send protocol (the
    /// target's protocols are not known here; a target without it drops the message,
    /// counted). It waits only for the routing actor's verdict (sent to the first hop, or
    /// not), never for delivery: like a direct send, delivery is not confirmed.
    ///
    /// Fails like `send_to_peer` when connected, and otherwise with [`Error::NoRoute`] when
    /// the peer is not reachable (or the network does not run routing), [`Error::Encode`],
    /// [`Error::RoutingBusy`] when routing's queue is full, [`Error::ShutDown`].
    pub async fn send_routed(&self, peer: PeerNetworkId, message: &M) -> Result<(), Error> {
        let network = self.network(peer.network_id)?;
        if network.peers.is_connected(peer) {
            return self.send_to_peer(peer, message);
        }
        let (routing, protocol) = routed_path(network, peer, ProtocolKind::DirectSend)?;
        let body = encode(protocol, message)?;
        let (verdict, answer) = oneshot::channel();
        queue(
            routing,
            RoutingCommand::Send {
                target: peer.peer_id,
                protocol,
                body,
                verdict,
            },
        )?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(refusal(peer, refused)),
            Err(_) => Err(Error::ShutDown),
        }
    }

    /// Sends `request` to `peer` as an RPC and waits up to `timeout` for the response,
    /// whether or not it is connected: directly if it is (exactly
    /// [`send_rpc`](Self::send_rpc)), else routed hop by hop (see
    /// [`send_routed`](Self::send_routed)), the response coming back along the same path.
    /// The request reaches the peer's application as an
    /// [`Event::RpcRequest`](crate::Event::RpcRequest) with this node as the sender; its
    /// [`RpcReplier`](crate::RpcReplier) routes the answer back.
    ///
    /// Takes the request by value or by reference, as `send_rpc` does. Fails like
    /// `send_rpc` when connected; otherwise with [`Error::NoRoute`],
    /// [`Error::Encode`], [`Error::Decode`], [`Error::RoutingBusy`] (queue full, or
    /// [`MAX_PENDING_ROUTED_RPCS`](crate::MAX_PENDING_ROUTED_RPCS) waiting), and with
    /// [`Error::Peer`] holding `peer::Error::Timeout` ([`Error::is_timeout`]) when no response
    /// came in time (lost on the way, or the target does not serve the protocol).
    pub async fn rpc_routed(
        &self,
        peer: PeerNetworkId,
        request: impl Borrow<M>,
        timeout: Duration,
    ) -> Result<M, Error> {
        let network = self.network(peer.network_id)?;
        if network.peers.is_connected(peer) {
            return self.send_rpc(peer, request, timeout).await;
        }
        let (routing, protocol) = routed_path(network, peer, ProtocolKind::Rpc)?;
        let body = encode(protocol, request.borrow())?;
        let (outcome, answer) = oneshot::channel();
        queue(
            routing,
            RoutingCommand::Rpc {
                target: peer.peer_id,
                protocol,
                body,
                timeout,
                outcome,
            },
        )?;
        let timed_out = || Error::Peer {
            peer,
            source: Box::new(peer::Error::Timeout { protocol, timeout }),
        };
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(RpcOutcome::Response(bytes))) => protocol
                .from_bytes(&bytes)
                .map_err(|source| Error::Decode { protocol, source }),
            Ok(Ok(RpcOutcome::Refused(refused))) => Err(refusal(peer, refused)),
            // The actor forgot the request: its deadline passed.
            Ok(Err(_)) if !routing.is_closed() => Err(timed_out()),
            Ok(Err(_)) => Err(Error::ShutDown),
            Err(_) => Err(timed_out()),
        }
    }

    /// Closes the connection to `peer` and waits until it is gone (its `LostPeer` is out).
    ///
    /// Fails with [`Error::NotConnected`] if there is no connection, and [`Error::ShutDown`]
    /// if the network is shut down. Cancel-safe: the disconnect goes ahead anyway.
    pub async fn disconnect(&self, peer: PeerNetworkId) -> Result<(), Error> {
        let network = self.network(peer.network_id)?;
        network.manager.disconnect(peer.peer_id).await
    }

    /// The peers connected on this client's networks.
    pub fn connected_peers(&self) -> Vec<PeerNetworkId> {
        let mut peers: Vec<PeerNetworkId> = self
            .networks
            .iter()
            .flat_map(|(network_id, network)| network.peers.connected_peers_on(*network_id))
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// The protocol a direct send to `peer` would use now; fails as
    /// [`send_to_peer`](Self::send_to_peer) does before encoding.
    pub fn direct_send_protocol(&self, peer: PeerNetworkId) -> Result<ProtocolId, Error> {
        let network = self.network(peer.network_id)?;
        let (protocols, _) = network.connection(peer)?;
        choose(
            peer,
            ProtocolKind::DirectSend,
            &network.direct_send,
            protocols,
        )
    }

    /// The protocol an RPC to `peer` would use now; fails as [`send_rpc`](Self::send_rpc) does
    /// before encoding.
    pub fn rpc_protocol(&self, peer: PeerNetworkId) -> Result<ProtocolId, Error> {
        let network = self.network(peer.network_id)?;
        let (protocols, _) = network.connection(peer)?;
        choose(peer, ProtocolKind::Rpc, &network.rpc, protocols)
    }

    /// The networks this client serves.
    pub fn networks(&self) -> impl Iterator<Item = NetworkId> + '_ {
        self.networks.iter().map(|(network_id, _)| *network_id)
    }

    /// The figures of `peer`'s current connection (round-trip time, chain status, bytes), if
    /// it is connected on one of this client's networks: what an application needs to choose
    /// among its peers.
    pub fn peer_stats(&self, peer: PeerNetworkId) -> Option<PeerStats> {
        let network = self.network(peer.network_id).ok()?;
        network.peers.peer_stats(peer)
    }

    /// Sends `message` to `peer` as a direct send, encoding it only if `encoded` has no
    /// encoding for the chosen protocol yet.
    fn send_encoded_once(
        &self,
        peer: PeerNetworkId,
        message: &M,
        encoded: &mut HashMap<ProtocolId, Bytes>,
    ) -> Result<(), Error> {
        let network = self.network(peer.network_id)?;
        let (protocols, handle) = network.connection(peer)?;
        let protocol = choose(
            peer,
            ProtocolKind::DirectSend,
            &network.direct_send,
            protocols,
        )?;
        let bytes = match encoded.entry(protocol) {
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => entry.insert(encode(protocol, message)?).clone(),
        };
        send(peer, &handle, protocol, bytes)
    }

    fn network(&self, network_id: NetworkId) -> Result<&ClientNetwork, Error> {
        self.networks
            .iter()
            .find(|(id, _)| *id == network_id)
            .map(|(_, network)| network)
            .ok_or_else(|| Error::UnknownNetwork { network_id })
    }

    /// The protocol of `kind` to send to `peer` on, and its connection: from the cache when
    /// `peer` is the last peer this clone sent to and that connection is still up. Fails with
    /// [`Error::NotConnected`] without a connection, [`Error::NoCommonProtocol`] when the
    /// peer negotiated none of the application's protocols of `kind`.
    fn connection_for(
        &self,
        network: &ClientNetwork,
        peer: PeerNetworkId,
        kind: ProtocolKind,
    ) -> Result<(ProtocolId, PeerHandle), Error> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = last
            .as_ref()
            // Not `is_connected`, which also locks the cancellation token: once the connection
            // closes its reason is set, and until then a push fails with `Disconnected` anyway.
            .is_some_and(|cached| {
                cached.peer == peer && cached.handle.disconnect_reason().is_none()
            });
        if !cached {
            let (protocols, handle) = network.connection(peer)?;
            *last = Some(CachedPeer {
                peer,
                direct_send: first_common(&network.direct_send, protocols),
                rpc: first_common(&network.rpc, protocols),
                handle,
            });
        }
        let cached = last.as_ref().expect("filled just above");
        let (protocol, preferences) = match kind {
            ProtocolKind::DirectSend => (cached.direct_send, &network.direct_send),
            ProtocolKind::Rpc => (cached.rpc, &network.rpc),
        };
        match protocol {
            Some(protocol) => Ok((protocol, cached.handle.clone())),
            None => Err(no_common_protocol(peer, kind, preferences)),
        }
    }
}

impl<M> Clone for NetworkClient<M> {
    fn clone(&self) -> Self {
        Self {
            networks: self.networks.clone(),
            last: Mutex::new(None),
            _message: PhantomData,
        }
    }
}

impl<M> fmt::Debug for NetworkClient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkClient")
            .field(
                "networks",
                &self.networks.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ClientNetwork {
    /// `peer`'s negotiated protocols and connection, or [`Error::NotConnected`].
    fn connection(&self, peer: PeerNetworkId) -> Result<(ProtocolIdSet, PeerHandle), Error> {
        self.peers
            .sender(peer)
            .ok_or_else(|| Error::NotConnected { peer })
    }
}

/// The first protocol of `preferences` in `negotiated`.
fn choose(
    peer: PeerNetworkId,
    kind: ProtocolKind,
    preferences: &[ProtocolId],
    negotiated: ProtocolIdSet,
) -> Result<ProtocolId, Error> {
    first_common(preferences, negotiated).ok_or_else(|| no_common_protocol(peer, kind, preferences))
}

/// The first protocol of `preferences` in `negotiated`, if any.
fn first_common(preferences: &[ProtocolId], negotiated: ProtocolIdSet) -> Option<ProtocolId> {
    preferences
        .iter()
        .copied()
        .find(|protocol| negotiated.contains(*protocol))
}

/// The error of a send to `peer`, which negotiated none of `preferences`.
fn no_common_protocol(
    peer: PeerNetworkId,
    kind: ProtocolKind,
    preferences: &[ProtocolId],
) -> Error {
    Error::NoCommonProtocol {
        peer,
        kind,
        preferences: preferences.to_vec(),
    }
}

fn encode<M: Serialize>(protocol: ProtocolId, message: &M) -> Result<Bytes, Error> {
    protocol
        .to_bytes(message)
        .map_err(|source| Error::Encode { protocol, source })
}

fn send(
    peer: PeerNetworkId,
    handle: &PeerHandle,
    protocol: ProtocolId,
    bytes: Bytes,
) -> Result<(), Error> {
    handle
        .send_direct(protocol, bytes)
        .map_err(|source| Error::Peer {
            peer,
            source: Box::new(source),
        })
}

/// The routing handle and protocol (the application's first of `kind`) of a routed send to
/// `peer`.
fn routed_path(
    network: &ClientNetwork,
    peer: PeerNetworkId,
    kind: ProtocolKind,
) -> Result<(&RoutingHandle, ProtocolId), Error> {
    let routing = network
        .routing
        .as_ref()
        .ok_or_else(|| Error::NoRoute { peer })?;
    let protocols = match kind {
        ProtocolKind::DirectSend => &network.direct_send,
        ProtocolKind::Rpc => &network.rpc,
    };
    let protocol = protocols
        .first()
        .copied()
        .ok_or_else(|| Error::NoCommonProtocol {
            peer,
            kind,
            preferences: protocols.clone(),
        })?;
    Ok((routing, protocol))
}

/// Queues `command` for the routing actor without waiting.
fn queue(routing: &RoutingHandle, command: RoutingCommand) -> Result<(), Error> {
    routing.try_send(command).map_err(|error| match error {
        RoutingQueueError::Full => Error::RoutingBusy,
        RoutingQueueError::Closed => Error::ShutDown,
    })
}

/// The error of a routed send the actor refused.
fn refusal(peer: PeerNetworkId, refused: SendRefused) -> Error {
    match refused {
        SendRefused::NoRoute => Error::NoRoute { peer },
        SendRefused::Busy => Error::RoutingBusy,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;
    use netcore::PeerId;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{Event, Identity, Network, NetworkBuilder, NetworkConfig, NetworkEvents};
    use crate::{QueueConfig, TransportKind};

    /// What the waiting-send test sends: a sequence number and 4 KiB of padding.
    type Numbered = (u32, Vec<u8>);

    /// How long the waiting-send test waits for anything (test clock, paused).
    const WAIT: Duration = Duration::from_secs(10);

    /// A node over the memory transport with one application on the mempool direct-send
    /// protocol, lanes of `lane` messages, and `queue` for its inbound messages.
    fn memory_node<M: Serialize + DeserializeOwned + Send + 'static>(
        seed: u8,
        lane: usize,
        queue: QueueConfig,
    ) -> (Network, NetworkClient<M>, NetworkEvents<M>, Registry) {
        let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
        config.identity = Some(Identity::new(noise::PrivateKey::from([seed; 32])));
        config.peer.outbound_lane_capacity = lane;
        let mut registry = Registry::default();
        let mut builder =
            NetworkBuilder::new(config, TransportKind::Memory, &mut registry).unwrap();
        let (client, events) = builder
            .add_application::<M>([ProtocolId::MEMPOOL_DIRECT_SEND], [], queue)
            .unwrap();
        (builder.build().unwrap(), client, events, registry)
    }

    /// a sends 300 messages of 4 KiB with `send_to_peer_wait` through lanes of 8 to b, whose
    /// inbound queue holds 4 and waits: far more than the memory pipe holds, so a's sender is
    /// faster than b. Nothing is refused or dropped and b gets everything in order. Then b
    /// stops reading, a's sender ends up waiting, and b going away ends the wait with an error.
    #[tokio::test(start_paused = true)]
    async fn waiting_send_keeps_pace_and_ends_when_the_peer_goes_away() {
        let backpressure = QueueConfig::backpressure(NonZeroUsize::new(4).unwrap())
            .with_max_wait(Duration::from_secs(600));
        let (b, _, mut b_events, _) = memory_node::<Numbered>(2, 1024, backpressure);
        let (a, a_client, _, a_registry) = memory_node::<Numbered>(1, 8, QueueConfig::default());
        tokio::time::timeout(WAIT, a.dial(b.peer_id(), b.listen_address().clone()))
            .await
            .unwrap()
            .unwrap();
        let to_b = PeerNetworkId::new(NetworkId::Public, b.peer_id());

        let client = a_client.clone();
        let sender = tokio::spawn(async move {
            for i in 0..300 {
                client.send_to_peer_wait(to_b, &(i, vec![7; 4096])).await?;
            }
            Ok::<_, Error>(())
        });
        for expected in 0..300 {
            let event = tokio::time::timeout(WAIT, b_events.next()).await.unwrap();
            match event {
                Some(Event::Message { message, .. }) => assert_eq!(message.0, expected),
                other => panic!("expected message {expected}, got {other:?}"),
            }
        }
        sender.await.unwrap().unwrap();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &a_registry).unwrap();
        let refused: Vec<&str> = text
            .lines()
            .filter(|line| {
                line.starts_with("peerlane_peer_outbound_dropped_total")
                    && line.contains(r#"reason="full""#)
                    && !line.ends_with(" 0")
            })
            .collect();
        assert!(refused.is_empty(), "{refused:?}");

        // b reads no more: the pipe, then a's lane fill, and the sender waits for room.
        let sender = tokio::spawn(async move {
            for i in 0.. {
                a_client
                    .send_to_peer_wait(to_b, &(i, vec![7; 4096]))
                    .await?;
            }
            Ok::<_, Error>(())
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !sender.is_finished(),
            "the sender should be waiting for room"
        );
        tokio::time::timeout(WAIT, b.shutdown()).await.unwrap();
        let result = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
        match result {
            Err(Error::Peer { source, .. }) => {
                assert!(matches!(*source, peer::Error::Disconnected))
            }
            other => panic!("expected a disconnect, got {other:?}"),
        }
        a.shutdown().await;
    }

    /// A message whose encoding, when it carries a gate, blocks until the test opens the gate:
    /// an encoding as slow as the test wants it, without any timing. It encodes as nothing.
    struct Gated(Option<Arc<Gate>>);

    /// Both sides wait at `entered` once the encoding has started, and at `release` to let it
    /// finish. Only the first serialization waits: BCS serializes twice (size, then bytes).
    struct Gate {
        entered: Barrier,
        release: Barrier,
        used: AtomicBool,
    }

    impl Serialize for Gated {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            if let Some(gate) = &self.0
                && !gate.used.swap(true, Ordering::SeqCst)
            {
                gate.entered.wait();
                gate.release.wait();
            }
            serializer.serialize_unit()
        }
    }

    impl<'de> serde::Deserialize<'de> for Gated {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            <()>::deserialize(deserializer).map(|()| Self(None))
        }
    }

    /// Two tasks share one client: while one is stuck encoding a message (the gate holds it),
    /// the other's send goes through, so the encoding does not run under the client's lock.
    /// Real threads (a multi-thread runtime and blocking tasks), since the encoding blocks its
    /// thread; the timeout only turns a hang into a failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_encoding_does_not_hold_up_other_senders_of_the_same_client() {
        let (b, _, _b_events, _) = memory_node::<Gated>(2, 1024, QueueConfig::default());
        let (a, a_client, _, _) = memory_node::<Gated>(1, 1024, QueueConfig::default());
        a.dial(b.peer_id(), b.listen_address().clone())
            .await
            .unwrap();
        let to_b = PeerNetworkId::new(NetworkId::Public, b.peer_id());
        let client = Arc::new(a_client);
        let gate = Arc::new(Gate {
            entered: Barrier::new(2),
            release: Barrier::new(2),
            used: AtomicBool::new(false),
        });

        let slow = tokio::task::spawn_blocking({
            let (client, gate) = (client.clone(), gate.clone());
            move || client.send_to_peer(to_b, &Gated(Some(gate)))
        });
        let entered = gate.clone();
        tokio::task::spawn_blocking(move || entered.entered.wait())
            .await
            .unwrap();
        // The slow send is inside its encoding now.
        let fast = tokio::task::spawn_blocking({
            let client = client.clone();
            move || client.send_to_peer(to_b, &Gated(None))
        });
        let fast = tokio::time::timeout(Duration::from_secs(30), fast).await;
        // Open the gate whatever happened, so that the slow send ends.
        tokio::task::spawn_blocking(move || gate.release.wait())
            .await
            .unwrap();
        fast.expect("the small send waited for the other send's encoding")
            .unwrap()
            .unwrap();
        slow.await.unwrap().unwrap();
        a.shutdown().await;
        b.shutdown().await;
    }

    /// The first preferred protocol the peer negotiated wins; none is a typed error naming the
    /// preference list.
    #[test]
    fn protocol_choice_follows_the_preference_list() {
        let peer = PeerNetworkId::new(NetworkId::Public, PeerId::ZERO);
        let preferences = [
            ProtocolId::CONSENSUS_RPC_COMPRESSED,
            ProtocolId::CONSENSUS_RPC_BCS,
            ProtocolId::CONSENSUS_RPC_JSON,
        ];
        let negotiated: ProtocolIdSet = [
            ProtocolId::CONSENSUS_RPC_JSON,
            ProtocolId::CONSENSUS_RPC_BCS,
        ]
        .into_iter()
        .collect();
        assert_eq!(
            choose(peer, ProtocolKind::Rpc, &preferences, negotiated).unwrap(),
            ProtocolId::CONSENSUS_RPC_BCS
        );
        let err = choose(
            peer,
            ProtocolKind::Rpc,
            &preferences,
            ProtocolIdSet::empty(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::NoCommonProtocol { kind: ProtocolKind::Rpc, preferences: p, .. } if p.len() == 3),
            "{err:?}"
        );
    }
}
