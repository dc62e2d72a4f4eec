//! Remotes that would park memory in unfinished streams, against a node built through the
//! facade over TCP + Noise: the connection closes with a typed reason, published in `LostPeer`
//! and counted. The attackers speak the wire by hand (Noise, handshake message, raw frames),
//! as a hostile node would.

use futures::{SinkExt, StreamExt};
use netcore::Protocol;
use noise::{HandshakeAuthMode, NoiseStream, NoiseUpgrader, PeerRole, TrustedPeers};
use peer::DisconnectReason;
use peer::metrics::StreamAbortReason;
use peerlane::{ConnectionNotification, NetworkConfig, QueueConfig};
use test_support::{
    DIRECT, Net, Node, RPC, config, eventually, key_from_seed, next_notification, node, node_with,
    peer_id_from_seed, within,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use wire::{
    ChainId, DirectSendMsg, HandshakeMsg, MultiplexMessage, MultiplexMessageSink,
    MultiplexMessageStream, NetworkId, NetworkMessage, OutboundStream, StreamHeader, StreamLimits,
    StreamMessage,
};

/// A hand-made connection to a node: its own key, Noise, the handshake message, then frames.
struct Attacker {
    sink: MultiplexMessageSink<WriteHalf<NoiseStream<TcpStream>>>,
    stream: MultiplexMessageStream<ReadHalf<NoiseStream<TcpStream>>>,
}

impl Attacker {
    /// Connects to `victim` as the node of key seed `seed` (outside its trusted set), with
    /// frames of up to `max_frame_size`.
    async fn connect(seed: u64, victim: &Node, max_frame_size: usize) -> Self {
        let addr = victim.network.listen_address();
        let (Protocol::Ip4(ip), Protocol::Tcp(port)) = (&addr.protocols()[0], &addr.protocols()[1])
        else {
            panic!("a TCP address: {addr}");
        };
        let socket = TcpStream::connect((*ip, *port)).await.unwrap();
        let key = key_from_seed(seed);
        let peer_id = noise::keys::peer_id_from_public_key(&noise::PublicKey::from(&key));
        let upgrader = NoiseUpgrader::new(
            peer_id,
            key,
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
            noise::Metrics::default(),
        );
        let mut stream = upgrader
            .upgrade_outbound(
                socket,
                victim.network.peer_id(),
                addr.noise_public_key().unwrap(),
                noise::now_millis(),
            )
            .await
            .unwrap();
        let ours = HandshakeMsg::new(
            ChainId::new(4),
            NetworkId::Public,
            DIRECT.into_iter().collect(),
        );
        wire::exchange_handshake(&mut stream, &ours).await.unwrap();
        let (read_half, write_half) = tokio::io::split(stream);
        Self {
            sink: MultiplexMessageSink::with_max_frame_size(write_half, max_frame_size),
            stream: MultiplexMessageStream::with_max_frame_size(read_half, max_frame_size),
        }
    }

    /// Sends `frames`, ignoring a connection the node has closed.
    async fn send(&mut self, frames: impl IntoIterator<Item = MultiplexMessage>) {
        for frame in frames {
            let _ = self.sink.feed(&frame).await;
        }
        let _ = self.sink.flush().await;
    }

    /// Reads until the node closes the connection.
    async fn until_closed(&mut self) {
        within("the node closes the connection", async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

fn direct_send(payload: Vec<u8>) -> NetworkMessage {
    NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: DIRECT[0],
        priority: 0,
        raw_msg: payload.into(),
    })
}

/// The reason in the next `LostPeer` notification, after any `NewPeer`.
async fn lost_peer_reason(
    notifications: &mut peerlane::ConnectionNotifications,
) -> DisconnectReason {
    loop {
        match next_notification(notifications).await {
            ConnectionNotification::NewPeer(..) => {}
            ConnectionNotification::LostPeer(metadata, _, reason) => {
                assert_eq!(metadata.role, PeerRole::Unknown);
                return reason;
            }
        }
    }
}

/// A stranger's stream header declaring three 4 MiB fragments (its maximum is 8 MiB, two)
/// closes its connection with `message_too_large` before anything is held; the reason is in
/// `LostPeer` and in the metrics.
#[tokio::test]
async fn stranger_over_its_maximum_is_disconnected_with_a_reason() {
    let victim = node(1, Net::Tcp);
    let mut notifications = victim.network.peers_and_metadata().subscribe();
    let mut attacker = Attacker::connect(9, &victim, wire::MAX_FRAME_SIZE).await;
    attacker
        .send([MultiplexMessage::Stream(StreamMessage::Header(
            StreamHeader {
                request_id: 1,
                num_fragments: 3,
                message: direct_send(vec![1; 1024]),
            },
        ))])
        .await;
    attacker.until_closed().await;
    assert_eq!(
        lost_peer_reason(&mut notifications).await,
        DisconnectReason::MessageTooLarge
    );
    let metrics = victim.network.peer_metrics();
    assert_eq!(metrics.streams_aborted(StreamAbortReason::TooLarge), 1);
    let text = victim.metrics_text();
    assert!(
        text.contains(
            r#"peerlane_peer_disconnects_total{network="public",reason="message_too_large"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"peerlane_peer_stream_bytes_held{network="public"} 0"#),
        "{text}"
    );
    victim.network.shutdown().await;
}

/// Two strangers share the node's stream budget (set to one largest message): the one whose
/// fragment would take the bytes held over it is disconnected with `stream_budget_exceeded`,
/// the other keeps its connection and its stream.
#[tokio::test]
async fn stream_budget_disconnects_the_stranger_that_would_pass_it() {
    let mut config: NetworkConfig = config(1, NetworkId::Public, Net::Tcp);
    config.peer.max_frame_size = 16 * 1024;
    config.peer.max_message_size = 256 * 1024;
    config.max_stream_bytes_in_flight = 256 * 1024;
    let victim = node_with(config, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());
    let mut notifications = victim.network.peers_and_metadata().subscribe();
    let limits = StreamLimits::new(16 * 1024, 256 * 1024).unwrap();
    let stream = |id| -> Vec<MultiplexMessage> {
        OutboundStream::new(direct_send(vec![2; 256 * 1024]), id, limits)
            .unwrap()
            .collect()
    };

    let mut first = Attacker::connect(9, &victim, 16 * 1024).await;
    let mut frames = stream(1);
    frames.truncate(15);
    first.send(frames).await;
    let held_by_first = 15 * (16 * 1024 - 64);
    let budget_held = || victim.network.peer_metrics().stream_bytes_held();
    eventually("the first stream is held", || {
        budget_held() == held_by_first
    })
    .await;

    let mut second = Attacker::connect(10, &victim, 16 * 1024).await;
    second.send(stream(1)).await;
    second.until_closed().await;
    assert_eq!(
        lost_peer_reason(&mut notifications).await,
        DisconnectReason::StreamBudgetExceeded
    );
    let metrics = victim.network.peer_metrics();
    assert_eq!(
        metrics.streams_aborted(StreamAbortReason::BudgetExceeded),
        1
    );
    assert_eq!(budget_held(), held_by_first);
    assert!(victim.network.is_connected(peer_id_from_seed(9)));
    drop(first);
    victim.network.shutdown().await;
}
