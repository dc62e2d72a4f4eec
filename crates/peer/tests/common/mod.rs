//! Shared set-up for the peer tests: a router that records events into a bounded channel, two
//! peers over an in-memory socket pair, a peer facing a raw wire-level remote, and a Noise
//! handshake over any socket pair.

// Each test file uses its own subset of these helpers, and `pub` here means "for the test
// files", which is what `unreachable_pub` cannot see.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netcore::{ConnectionOrigin, MemorySocket, NetworkAddress, PeerId};
use noise::{HandshakeAuthMode, NoiseStream, NoiseUpgrader, PeerRole, PublicKey, SplitSocket};
use peer::{
    Config, Connection, ConnectionId, ConnectionMetadata, InboundEvent, InboundRouter, Metrics,
    PeerHandle, RouteError, StreamBudget,
};
use test_support::{key_from_byte, within_for};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{
    DirectSendMsg, MessagingProtocolVersion, MultiplexMessage, MultiplexMessageSink,
    MultiplexMessageStream, NetworkMessage, ProtocolId, ProtocolIdSet, RequestId, RpcRequest,
};

/// The PeerId of the first peer of a pair (and of the peer facing a raw remote).
pub const A: PeerId = PeerId::new([0xaa; 32]);
/// The PeerId of the second peer of a pair, and of a raw remote.
pub const B: PeerId = PeerId::new([0xbb; 32]);

/// A low-priority direct-send protocol.
pub const MEMPOOL: ProtocolId = ProtocolId::MEMPOOL_DIRECT_SEND;
/// A high-priority direct-send protocol.
pub const CONSENSUS: ProtocolId = ProtocolId::CONSENSUS_DIRECT_SEND_BCS;
/// A high-priority RPC protocol.
pub const CONSENSUS_RPC: ProtocolId = ProtocolId::CONSENSUS_RPC_BCS;
/// A low-priority RPC protocol.
pub const STORAGE_RPC: ProtocolId = ProtocolId::STORAGE_SERVICE_RPC;

/// How long a test waits for an event that should come, before failing with context. Far
/// above anything an in-memory exchange needs; tests never assert on it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Routes events into a bounded channel; refuses protocols outside `supported` (if given).
#[derive(Debug)]
pub struct TestRouter {
    events_tx: mpsc::Sender<InboundEvent>,
    supported: Option<Vec<ProtocolId>>,
}

impl InboundRouter for TestRouter {
    fn route(&self, event: InboundEvent) -> Result<(), RouteError> {
        if let Some(supported) = &self.supported
            && !supported.contains(&event.protocol_id())
        {
            return Err(RouteError::UnknownProtocol);
        }
        self.events_tx
            .try_send(event)
            .map_err(|_| RouteError::QueueFull)
    }
}

/// A router serving every protocol, and the receiving end of its events.
pub fn router(capacity: usize) -> (Arc<TestRouter>, mpsc::Receiver<InboundEvent>) {
    router_for(capacity, None)
}

/// A router serving only `supported` (every protocol when `None`).
pub fn router_for(
    capacity: usize,
    supported: Option<Vec<ProtocolId>>,
) -> (Arc<TestRouter>, mpsc::Receiver<InboundEvent>) {
    let (events_tx, events_rx) = mpsc::channel(capacity);
    (
        Arc::new(TestRouter {
            events_tx,
            supported,
        }),
        events_rx,
    )
}

/// Metadata for a connection to `remote`.
pub fn metadata(remote: PeerId, id: u64, origin: ConnectionOrigin) -> ConnectionMetadata {
    ConnectionMetadata {
        remote_peer_id: remote,
        connection_id: ConnectionId(id),
        remote_addr: NetworkAddress::memory(id as u16),
        origin,
        messaging_protocol: MessagingProtocolVersion::V1,
        application_protocols: ProtocolId::KNOWN.into_iter().collect::<ProtocolIdSet>(),
        role: PeerRole::Unknown,
    }
}

/// One running peer, as a test sees it.
pub struct Node {
    /// Its handle.
    pub handle: PeerHandle,
    /// What its router received.
    pub events: mpsc::Receiver<InboundEvent>,
    /// Its counters.
    pub metrics: Metrics,
    /// The budget its inbound streams take from.
    pub budget: Arc<StreamBudget>,
}

/// How a test peer is set up beyond its config.
pub struct Setup {
    /// The remote's role in the connection metadata.
    pub role: PeerRole,
    /// The stream budget to share, with the counters its gauge is in; `None` gives the peer
    /// a default budget of its own.
    pub budget: Option<(Arc<StreamBudget>, Metrics)>,
}

impl Default for Setup {
    /// A remote outside the trusted set, and a budget of the peer's own.
    fn default() -> Self {
        Self {
            role: PeerRole::Unknown,
            budget: None,
        }
    }
}

impl Node {
    /// Spawns a peer on `socket` whose router serves `supported` (all when `None`).
    pub fn spawn<S>(
        config: Config,
        remote: PeerId,
        socket: S,
        supported: Option<Vec<ProtocolId>>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Self
    where
        S: SplitSocket + Send + Unpin + 'static,
    {
        Self::spawn_with(
            config,
            remote,
            Setup::default(),
            socket,
            supported,
            tracker,
            shutdown,
        )
    }

    /// [`Node::spawn`] with a remote role and a stream budget of the test's choosing.
    pub fn spawn_with<S>(
        config: Config,
        remote: PeerId,
        setup: Setup,
        socket: S,
        supported: Option<Vec<ProtocolId>>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Self
    where
        S: SplitSocket + Send + Unpin + 'static,
    {
        let (router, events) = router_for(1024, supported);
        let (budget, metrics) = setup.budget.unwrap_or_else(|| {
            let metrics = Metrics::default();
            let budget = StreamBudget::new(peer::DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT, &metrics);
            (Arc::new(budget), metrics)
        });
        let mut metadata = metadata(remote, 1, ConnectionOrigin::Outbound);
        metadata.role = setup.role;
        let connection = Connection { metadata, socket };
        let handle = peer::spawn(
            config,
            connection,
            router,
            metrics.clone(),
            budget.clone(),
            tracker,
            shutdown.clone(),
        );
        Self {
            handle,
            events,
            metrics,
            budget,
        }
    }

    /// The next event its router received.
    pub async fn next_event(&mut self) -> InboundEvent {
        next_event(&mut self.events).await
    }
}

/// The next event from `events`, or a panic after [`PATIENCE`].
pub async fn next_event(events: &mut mpsc::Receiver<InboundEvent>) -> InboundEvent {
    within_for("inbound event", PATIENCE, events.recv())
        .await
        .expect("the router was dropped")
}

/// Two peers, A and B, connected over an in-memory socket pair, on one tracker and one
/// shutdown token.
pub struct Pair {
    /// The peer on one end (its remote is B).
    pub a: Node,
    /// The peer on the other end (its remote is A).
    pub b: Node,
    /// Tracks all four tasks.
    pub tracker: TaskTracker,
    /// The shutdown token both peers' tokens descend from.
    pub shutdown: CancellationToken,
}

impl Pair {
    /// Two peers with the given configs over a default-capacity memory socket pair.
    pub fn new(config_a: Config, config_b: Config) -> Self {
        let (socket_a, socket_b) = MemorySocket::new_pair();
        Self::over(config_a, socket_a, config_b, socket_b)
    }

    /// Two peers over the given sockets.
    pub fn over<S>(config_a: Config, socket_a: S, config_b: Config, socket_b: S) -> Self
    where
        S: SplitSocket + Send + Unpin + 'static,
    {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let a = Node::spawn(config_a, B, socket_a, None, &tracker, &shutdown);
        let b = Node::spawn(config_b, A, socket_b, None, &tracker, &shutdown);
        Self {
            a,
            b,
            tracker,
            shutdown,
        }
    }
}

/// The far end of a connection as raw frames: lets a test send anything, read exactly what
/// the peer wrote, and write bytes that are not frames at all.
pub struct RawRemote {
    /// Frames from the peer.
    pub stream: MultiplexMessageStream<ReadHalf<MemorySocket>>,
    /// Frames to the peer.
    pub sink: MultiplexMessageSink<WriteHalf<MemorySocket>>,
}

impl RawRemote {
    /// Sends one message and flushes.
    pub async fn send(&mut self, message: NetworkMessage) {
        self.sink
            .send(&MultiplexMessage::Message(message))
            .await
            .expect("raw remote write");
    }

    /// Sends one frame and flushes.
    pub async fn send_frame(&mut self, frame: MultiplexMessage) {
        self.sink.send(&frame).await.expect("raw remote write");
    }

    /// The next frame the peer wrote.
    pub async fn recv(&mut self) -> MultiplexMessage {
        within_for("frame from the peer", PATIENCE, self.stream.next())
            .await
            .expect("the peer closed the connection")
            .expect("the peer wrote a valid frame")
    }

    /// The next frame the peer wrote, which must be a whole message.
    pub async fn recv_message(&mut self) -> NetworkMessage {
        match self.recv().await {
            MultiplexMessage::Message(message) => message,
            MultiplexMessage::Stream(piece) => panic!("expected a message, got {piece:?}"),
        }
    }

    /// Writes `bytes` straight onto the socket, and flushes.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let socket = self.sink.get_mut();
        socket.write_all(bytes).await.expect("raw write");
        socket.flush().await.expect("raw flush");
    }
}

/// A peer (whose remote is B) facing a raw remote over an in-memory socket pair.
pub struct Raw {
    /// The peer.
    pub node: Node,
    /// The raw far end.
    pub remote: RawRemote,
    /// Tracks the peer's tasks.
    pub tracker: TaskTracker,
    /// The peer's shutdown token.
    pub shutdown: CancellationToken,
}

impl Raw {
    /// A peer with `config`, serving every protocol.
    pub fn new(config: Config) -> Self {
        Self::serving(config, None)
    }

    /// A peer with `config`, serving only `supported` (all when `None`).
    pub fn serving(config: Config, supported: Option<Vec<ProtocolId>>) -> Self {
        let (ours, theirs) = MemorySocket::new_pair();
        Self::over(config, ours, theirs, supported)
    }

    /// A peer with `config` and `setup`, serving every protocol.
    pub fn with(config: Config, setup: Setup) -> Self {
        let (ours, theirs) = MemorySocket::new_pair();
        Self::over_with(config, setup, ours, theirs, None)
    }

    /// A peer on `socket`, with `remote_socket` as the raw far end.
    pub fn over<S>(
        config: Config,
        socket: S,
        remote_socket: MemorySocket,
        supported: Option<Vec<ProtocolId>>,
    ) -> Self
    where
        S: SplitSocket + Send + Unpin + 'static,
    {
        Self::over_with(config, Setup::default(), socket, remote_socket, supported)
    }

    /// [`Raw::over`] with a remote role and a stream budget of the test's choosing.
    pub fn over_with<S>(
        config: Config,
        setup: Setup,
        socket: S,
        remote_socket: MemorySocket,
        supported: Option<Vec<ProtocolId>>,
    ) -> Self
    where
        S: SplitSocket + Send + Unpin + 'static,
    {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let max_frame_size = config.max_frame_size;
        let node = Node::spawn_with(config, B, setup, socket, supported, &tracker, &shutdown);
        let (read_half, write_half) = tokio::io::split(remote_socket);
        let remote = RawRemote {
            stream: MultiplexMessageStream::with_max_frame_size(read_half, max_frame_size),
            sink: MultiplexMessageSink::with_max_frame_size(write_half, max_frame_size),
        };
        Self {
            node,
            remote,
            tracker,
            shutdown,
        }
    }
}

/// A DirectSend message.
pub fn direct(protocol_id: ProtocolId, payload: impl Into<Bytes>) -> NetworkMessage {
    NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id,
        priority: 0,
        raw_msg: payload.into(),
    })
}

/// An RPC request.
pub fn request(protocol_id: ProtocolId, id: u32, payload: impl Into<Bytes>) -> NetworkMessage {
    NetworkMessage::RpcRequest(RpcRequest {
        protocol_id,
        request_id: RequestId(id),
        priority: 0,
        raw_request: payload.into(),
    })
}

/// `len` bytes of a recognizable pattern.
pub fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// Takes a DirectSend event apart: (sender, protocol, payload).
pub fn expect_direct(event: InboundEvent) -> (PeerId, ProtocolId, Bytes) {
    match event {
        InboundEvent::DirectSend {
            sender,
            protocol_id,
            payload,
        } => (sender, protocol_id, payload),
        other => panic!("expected a direct send, got {other:?}"),
    }
}

/// Takes an RPC request event apart: (payload, responder).
pub fn expect_request(event: InboundEvent) -> (Bytes, peer::RpcResponder) {
    match event {
        InboundEvent::RpcRequest {
            payload, responder, ..
        } => (payload, responder),
        other => panic!("expected an rpc request, got {other:?}"),
    }
}

/// Runs a Noise IK handshake (MaybeMutual: identities derived from keys) between a dialer on
/// `dialer_socket` and a listener on `listener_socket`; returns (dialer's stream, listener's
/// stream).
pub async fn noise_pair<S>(dialer_socket: S, listener_socket: S) -> (NoiseStream<S>, NoiseStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrader = |seed: u8| {
        let private = key_from_byte(seed);
        let public = PublicKey::from(&private);
        let peer_id = noise::keys::peer_id_from_public_key(&public);
        let mode = HandshakeAuthMode::maybe_mutual(noise::TrustedPeers::new());
        (
            NoiseUpgrader::new(peer_id, private, mode, noise::Metrics::default()),
            peer_id,
            public,
        )
    };
    let (dialer, _, _) = upgrader(1);
    let (listener, listener_id, listener_key) = upgrader(2);
    let (dialed, accepted) = tokio::join!(
        dialer.upgrade_outbound(
            dialer_socket,
            listener_id,
            listener_key,
            noise::now_millis()
        ),
        listener.upgrade_inbound(listener_socket),
    );
    let dialed = dialed.expect("noise dial");
    let (accepted, _remote) = accepted.expect("noise accept");
    (dialed, accepted)
}
