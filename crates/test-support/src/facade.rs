//! Nodes built through the public facade ([`NetworkBuilder`]) with deterministic keys, one
//! application each, over the memory transport or TCP + Noise; a connected pair of them; and
//! "next event within a deadline, or panic with context" helpers.
//!
//! Every node listens on port 0 and reads its real address back from the running network
//! ([`Network::listen_address`]): no test picks a port, releases it and binds it later.
//!
//! Over the memory transport tests run on tokio's paused clock: the deadlines cost no real
//! time, and a test that would hang fails at once with its context. TCP tests run on the real
//! clock; their waits end on events, never on sleeps.

use std::time::Duration;

use futures::StreamExt;
use netcore::{PeerId, TcpConfig};
use peerlane::{
    ConnectionNotification, ConnectionNotifications, Event, Identity, Network, NetworkBuilder,
    NetworkClient, NetworkConfig, NetworkEvents, PeerNetworkId, QueueConfig, TransportKind,
};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wire::{NetworkId, ProtocolId};

use crate::keys::key_from_seed;
use crate::wait::{WAIT, within, within_for};

/// The application message the fixture's nodes speak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Free text.
    Text(String),
    /// An RPC request.
    Ping(u32),
    /// Its response.
    Pong(u32),
    /// A large, compressible payload.
    Blob(Vec<u8>),
}

/// The direct-send protocols of [`node`].
pub const DIRECT: [ProtocolId; 1] = [ProtocolId::CONSENSUS_DIRECT_SEND_BCS];
/// The RPC protocols of [`node`].
pub const RPC: [ProtocolId; 1] = [ProtocolId::CONSENSUS_RPC_BCS];

/// Which transport a node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// The in-process memory sockets (`/memory/0`).
    Memory,
    /// Loopback TCP (`/ip4/127.0.0.1/tcp/0`) with Noise.
    Tcp,
}

impl Net {
    /// The port-0 listen address: the transport picks the port, the network reports it.
    pub fn listen_address(self) -> &'static str {
        match self {
            Self::Memory => "/memory/0",
            Self::Tcp => "/ip4/127.0.0.1/tcp/0",
        }
    }
}

/// A running node with one application.
pub struct Node {
    /// The network handle.
    pub network: Network,
    /// The application's client.
    pub client: NetworkClient<Msg>,
    /// The application's events.
    pub events: NetworkEvents<Msg>,
    /// Where the node registered its metrics.
    pub registry: Registry,
}

/// A config for node `seed` (key [`key_from_seed`]) on `network_id`, listening on port 0 of
/// `net`.
pub fn config(seed: u64, network_id: NetworkId, net: Net) -> NetworkConfig {
    let listen = net
        .listen_address()
        .parse()
        .expect("a valid listen address");
    let mut config = NetworkConfig::new(network_id, listen);
    config.identity = Some(Identity::new(key_from_seed(seed)));
    config
}

/// The transport for `net` (TCP with default socket options).
pub fn transport(net: Net) -> TransportKind {
    match net {
        Net::Memory => TransportKind::Memory,
        Net::Tcp => TransportKind::Tcp(TcpConfig::default()),
    }
}

/// Builds a node from `config` with one application on `direct` and `rpc` protocols.
///
/// # Panics
///
/// If the builder refuses the config or cannot listen.
pub fn node_with(
    config: NetworkConfig,
    net: Net,
    direct: &[ProtocolId],
    rpc: &[ProtocolId],
    queue: QueueConfig,
) -> Node {
    let mut registry = Registry::default();
    let mut builder = NetworkBuilder::new(config, transport(net), &mut registry).unwrap();
    let (client, events) = builder
        .add_application::<Msg>(direct.iter().copied(), rpc.iter().copied(), queue)
        .unwrap();
    let network = builder.build().unwrap();
    Node {
        network,
        client,
        events,
        registry,
    }
}

/// Node `seed` on the public network with [`DIRECT`] and [`RPC`] and default queues.
pub fn node(seed: u64, net: Net) -> Node {
    node_with(
        config(seed, NetworkId::Public, net),
        net,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    )
}

/// Nodes 1 and 2 ([`node`]) over `net`, node 1 having dialed node 2: both ends have
/// registered the connection when this returns.
pub async fn two_nodes(net: Net) -> (Node, Node) {
    let a = node(1, net);
    let b = node(2, net);
    a.dial(&b).await.expect("node 1 dials node 2");
    let a_id = a.network.peer_id();
    crate::wait::eventually("node 2 registers node 1", || b.network.is_connected(a_id)).await;
    (a, b)
}

impl Node {
    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.network.peer_id()
    }

    /// This node as a peer on its network.
    pub fn as_peer(&self) -> PeerNetworkId {
        PeerNetworkId::new(self.network.network_id(), self.network.peer_id())
    }

    /// Dials `other` at the address its running network reports.
    pub async fn dial(&self, other: &Self) -> Result<(), peerlane::Error> {
        within(
            "dial",
            self.network.dial(
                other.network.peer_id(),
                other.network.listen_address().clone(),
            ),
        )
        .await
    }

    /// The next event, within [`WAIT`].
    pub async fn next_event(&mut self) -> Event<Msg> {
        next_event(&mut self.events).await
    }

    /// The next direct-send message: (sender, protocol, message).
    ///
    /// # Panics
    ///
    /// If the next event is not a message.
    pub async fn next_message(&mut self) -> (PeerNetworkId, ProtocolId, Msg) {
        match self.next_event().await {
            Event::Message {
                peer,
                protocol_id,
                message,
            } => (peer, protocol_id, message),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Answers every RPC `Ping(n)` with `Pong(n)` in a task of its own, until the network
    /// shuts down; other events are dropped.
    pub fn serve_pings(&mut self) -> tokio::task::JoinHandle<()> {
        let mut events = std::mem::replace(&mut self.events, NetworkEvents::combine([]));
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let Event::RpcRequest {
                    request: Msg::Ping(n),
                    responder,
                    ..
                } = event
                {
                    let _ = responder.reply(Msg::Pong(n));
                }
            }
        })
    }

    /// The metrics text of this node.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

/// The next application event from `events`, within [`WAIT`].
pub async fn next_event<M>(events: &mut NetworkEvents<M>) -> Event<M>
where
    M: DeserializeOwned + Send + 'static,
{
    next_event_within(events, WAIT).await
}

/// The next application event from `events`, within `limit`.
///
/// # Panics
///
/// After `limit`, or if the stream ends.
pub async fn next_event_within<M>(events: &mut NetworkEvents<M>, limit: Duration) -> Event<M>
where
    M: DeserializeOwned + Send + 'static,
{
    within_for("next event", limit, events.next())
        .await
        .expect("the event stream ended")
}

/// The next connection notification (`NewPeer` or `LostPeer`), within [`WAIT`].
///
/// # Panics
///
/// After [`WAIT`], or if the notifications end.
pub async fn next_notification(
    notifications: &mut ConnectionNotifications,
) -> ConnectionNotification {
    within("connection notification", notifications.recv())
        .await
        .expect("notifications ended")
}
