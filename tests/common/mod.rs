//! Shared set-up for the cross-crate scenarios in this folder: a test node with its keys, its
//! Noise upgrader and its handshake message, and the connection upgrade that layers the three
//! foundation crates the way a node does:
//!
//! ```text
//! netcore Transport (TCP | memory)
//!   └─ and_then(upgrade): noise IK (key and version from the dialed address)
//!        └─ wire::exchange_handshake + negotiate
//!             └─ Connection { MultiplexMessageSink, MultiplexMessageStream }
//! ```

// `pub` here means "for the test files", which is what `unreachable_pub` cannot see.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use netcore::{ConnectionOrigin, Endpoint, NetworkAddress, PeerId};
use noise::{HandshakeAuthMode, Metrics, NoiseStream, NoiseUpgrader, PeerRole, PublicKey};
use test_support::key_from_seed;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use wire::{
    ChainId, HandshakeMsg, MessagingProtocolVersion, MultiplexMessageSink, MultiplexMessageStream,
    NetworkId, ProtocolIdSet,
};

/// The one handshake version AptosNet defines.
pub const HANDSHAKE_VERSION: u8 = 0;

/// Connection set-up deadline: connect, Noise and the handshake message together (AptosNet's
/// 30 s; tests run on a paused clock where it matters).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why setting up a connection failed, by layer.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The transport could not connect or accept.
    #[error("transport")]
    Transport(#[from] netcore::Error),
    /// The Noise handshake failed.
    #[error("noise")]
    Noise(#[from] noise::Error),
    /// The handshake message exchange or negotiation failed.
    #[error("handshake")]
    Wire(#[from] wire::Error),
    /// The dialed address has no `noise-ik` key.
    #[error("dialed address {0} has no noise-ik key")]
    MissingNoiseKey(NetworkAddress),
    /// The dialed address names a handshake version we do not speak.
    #[error("dialed address asks for handshake version {0:?}, we speak {HANDSHAKE_VERSION}")]
    UnsupportedHandshakeVersion(Option<u8>),
    /// The whole set-up took longer than [`SETUP_TIMEOUT`].
    #[error("connection set-up did not finish within {0:?}")]
    Timeout(Duration),
}

/// A test node: identity, Noise upgrader and what it offers in the handshake.
#[derive(Clone, Debug)]
pub struct TestNode {
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Its static public key.
    pub public_key: PublicKey,
    /// Its Noise upgrader (shares the trusted set, anti-replay state and counters).
    pub upgrader: NoiseUpgrader,
    /// The handshake message it sends.
    pub handshake: HandshakeMsg,
}

impl TestNode {
    /// A node whose key comes from `seed` (deterministic) and whose PeerId is derived from its
    /// key, with the given auth mode and handshake message.
    pub fn new(seed: u64, auth_mode: HandshakeAuthMode, handshake: HandshakeMsg) -> Self {
        let private_key = key_from_seed(seed);
        let public_key = PublicKey::from(&private_key);
        let peer_id = PeerId::from_identity_public_key(public_key.to_bytes());
        let upgrader = NoiseUpgrader::new(peer_id, private_key, auth_mode, Metrics::default());
        Self {
            peer_id,
            public_key,
            upgrader,
            handshake,
        }
    }

    /// The Noise counters of this node.
    pub fn metrics(&self) -> &Metrics {
        self.upgrader.metrics()
    }

    /// `bound` (a listener's bound address) with this node's key and handshake version, as it
    /// would advertise it.
    pub fn advertised(&self, bound: NetworkAddress) -> NetworkAddress {
        bound
            .with_noise_and_handshake(self.public_key, HANDSHAKE_VERSION)
            .expect("a bound address takes a noise suffix")
    }
}

/// A handshake message offering `protocols` on `chain` and `network`.
pub fn handshake_msg(
    chain: u8,
    network: NetworkId,
    protocols: impl IntoIterator<Item = wire::ProtocolId>,
) -> HandshakeMsg {
    HandshakeMsg::new(
        ChainId::new(chain),
        network,
        protocols.into_iter().collect::<ProtocolIdSet>(),
    )
}

/// A connection after set-up: who is on the other end, what was negotiated, and the framed
/// message halves over the Noise stream.
pub struct Connection<S> {
    /// The remote's PeerId.
    pub remote_peer_id: PeerId,
    /// The remote's role (Unknown for a peer outside the trusted set).
    pub remote_role: Option<PeerRole>,
    /// Who opened the connection.
    pub origin: ConnectionOrigin,
    /// The negotiated messaging version.
    pub version: MessagingProtocolVersion,
    /// The protocols both sides listed.
    pub protocols: ProtocolIdSet,
    /// Outbound messages.
    pub sink: MultiplexMessageSink<WriteHalf<NoiseStream<S>>>,
    /// Inbound messages.
    pub stream: MultiplexMessageStream<ReadHalf<NoiseStream<S>>>,
}

/// The full AptosNet v1 connection upgrade, for `TransportExt::and_then`: Noise IK (the
/// dialer takes the expected key and handshake version from the address), then the handshake
/// message exchange and negotiation, all under [`SETUP_TIMEOUT`].
pub async fn upgrade<S>(
    node: Arc<TestNode>,
    socket: S,
    endpoint: Endpoint,
) -> Result<Connection<S>, SetupError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(SETUP_TIMEOUT, upgrade_inner(node, socket, endpoint))
        .await
        .map_err(|_| SetupError::Timeout(SETUP_TIMEOUT))?
}

async fn upgrade_inner<S>(
    node: Arc<TestNode>,
    socket: S,
    endpoint: Endpoint,
) -> Result<Connection<S>, SetupError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let origin = endpoint.origin();
    let (mut noise_stream, remote_role) = match endpoint {
        Endpoint::Dialer { peer_id, addr } => {
            let version = addr.handshake_version();
            if version != Some(HANDSHAKE_VERSION) {
                return Err(SetupError::UnsupportedHandshakeVersion(version));
            }
            let key = addr
                .noise_public_key()
                .ok_or_else(|| SetupError::MissingNoiseKey(addr.clone()))?;
            let stream = node
                .upgrader
                .upgrade_outbound(socket, peer_id, key, noise::now_millis())
                .await?;
            (stream, None)
        }
        Endpoint::Listener { .. } => {
            let (stream, remote) = node.upgrader.upgrade_inbound(socket).await?;
            (stream, Some(remote.role))
        }
    };
    let remote_peer_id = noise_stream.remote_peer_id();
    let theirs = wire::exchange_handshake(&mut noise_stream, &node.handshake).await?;
    let (version, protocols) = node.handshake.negotiate(&theirs)?;
    let (read_half, write_half) = tokio::io::split(noise_stream);
    Ok(Connection {
        remote_peer_id,
        remote_role,
        origin,
        version,
        protocols,
        sink: MultiplexMessageSink::new(write_half),
        stream: MultiplexMessageStream::new(read_half),
    })
}

impl<S> std::fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote_peer_id", &self.remote_peer_id)
            .field("remote_role", &self.remote_role)
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}
