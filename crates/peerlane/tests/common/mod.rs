//! Test harness: nodes with deterministic keys, one application each (or more), and "next
//! event within 10 s, or panic with context" helpers.
//!
//! Over the memory transport the tests run on tokio's paused clock: the 10 s limits cost no
//! real time, and a test that would hang fails at once with its context. TCP tests run on the
//! real clock; their waits end on events, never on sleeps.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use netcore::{PeerId, TcpConfig};
use noise::{PrivateKey, PublicKey};
use peerlane::{
    ConnectionNotification, ConnectionNotifications, Event, Identity, Network, NetworkBuilder,
    NetworkClient, NetworkConfig, NetworkEvents, PeerNetworkId, QueueConfig, TransportKind,
};
use prometheus_client::registry::Registry;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use wire::{NetworkId, ProtocolId};

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The application message every test sends.
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

/// A running node with one application.
pub struct Node {
    pub network: Network,
    pub client: NetworkClient<Msg>,
    pub events: NetworkEvents<Msg>,
    pub registry: Registry,
}

/// Which transport, with the listen address it needs.
#[derive(Clone, Copy, Debug)]
pub enum Net {
    Memory,
    Tcp,
}

/// The deterministic static key of node `seed`.
pub fn key(seed: u64) -> PrivateKey {
    let mut bytes = [0u8; 32];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    PrivateKey::from(bytes)
}

/// The PeerId of node `seed` (derived from its key).
pub fn peer_id(seed: u64) -> PeerId {
    noise::keys::peer_id_from_public_key(&PublicKey::from(&key(seed)))
}

/// A config for node `seed` on `network_id` over `net`.
pub fn config(seed: u64, network_id: NetworkId, net: Net) -> NetworkConfig {
    let listen = match net {
        Net::Memory => "/memory/0",
        Net::Tcp => "/ip4/127.0.0.1/tcp/0",
    };
    let mut config = NetworkConfig::new(network_id, listen.parse().unwrap());
    config.identity = Some(Identity::new(key(seed)));
    config
}

/// The transport for `net`.
pub fn transport(net: Net) -> TransportKind {
    match net {
        Net::Memory => TransportKind::Memory,
        Net::Tcp => TransportKind::Tcp(TcpConfig::default()),
    }
}

/// Builds a node from `config` with one application on `direct` and `rpc` protocols.
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

/// The protocols most tests use.
pub const DIRECT: [ProtocolId; 1] = [ProtocolId::CONSENSUS_DIRECT_SEND_BCS];
pub const RPC: [ProtocolId; 1] = [ProtocolId::CONSENSUS_RPC_BCS];

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

impl Node {
    /// This node as a peer on its network.
    pub fn as_peer(&self) -> PeerNetworkId {
        PeerNetworkId::new(self.network.network_id(), self.network.peer_id())
    }

    /// Dials `other` at its advertised address.
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
        within("next event", self.events.next())
            .await
            .expect("the event stream ended")
    }

    /// The next direct-send message: (sender, protocol, message).
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

/// `fut`, or a panic naming `what` after [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// The next connection notification, within [`WAIT`].
pub async fn next_notification(
    notifications: &mut ConnectionNotifications,
) -> ConnectionNotification {
    within("connection notification", notifications.recv())
        .await
        .expect("notifications ended")
}

/// Waits until `condition` holds, for up to [`WAIT`], checking it every millisecond of the
/// test clock. On the paused clock this costs no real time; on the real clock (TCP and
/// multi-threaded tests) the condition, not a duration, ends the wait. For conditions with no
/// event to wait on, such as a gauge going back down.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}
