//! A whole AptosNet v1 connection, end to end: transport → Noise IK → handshake message →
//! framed `MultiplexMessage`s, over real TCP on loopback and over the in-memory socket.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use common::{Connection, SetupError, TestNode, handshake_msg, upgrade};
use futures::{SinkExt, StreamExt};
use netcore::{
    ConnectionOrigin, MemoryTransport, NetworkAddress, TcpTransport, Transport, TransportExt,
};
use noise::{HandshakeAuthMode, HandshakeOutcome, PeerRole, Side, TrustedPeer, TrustedPeers};
use wire::{
    DirectSendMsg, MultiplexMessage, NetworkId, NetworkMessage, OutboundStream, ProtocolId,
    Reassembler, RequestId, RpcRequest, RpcResponse, StreamLimits,
};

const CHAIN: u8 = 4;

/// What both nodes offer unless a test says otherwise.
fn protocols() -> [ProtocolId; 3] {
    [
        ProtocolId::CONSENSUS_RPC_BCS,
        ProtocolId::MEMPOOL_DIRECT_SEND,
        ProtocolId::HEALTH_CHECKER_RPC,
    ]
}

fn maybe_mutual_node(seed: u64) -> TestNode {
    TestNode::new(
        seed,
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
        handshake_msg(CHAIN, NetworkId::Public, protocols()),
    )
}

/// Two validators that trust each other (and, through `trusted`, whoever else is listed).
fn mutual_pair(trusted: &TrustedPeers) -> (TestNode, TestNode) {
    let handshake = handshake_msg(CHAIN, NetworkId::Validator, protocols());
    let a = TestNode::new(
        1,
        HandshakeAuthMode::mutual(trusted.clone()),
        handshake.clone(),
    );
    let b = TestNode::new(2, HandshakeAuthMode::mutual(trusted.clone()), handshake);
    for node in [&a, &b] {
        trusted.insert(
            node.peer_id,
            TrustedPeer::new(PeerRole::Validator, [node.public_key]),
        );
    }
    (a, b)
}

type SetupResult<S> = Result<Connection<S>, SetupError>;

/// `listener` listens on `listen` over `transport`, `dialer` dials its advertised address;
/// returns (dialer's connection, listener's connection).
async fn connect<T>(
    transport: T,
    listen: &str,
    dialer: &TestNode,
    listener: &TestNode,
) -> (SetupResult<T::Output>, SetupResult<T::Output>)
where
    T: Transport + Clone,
    T::Output: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    SetupError: From<T::Error>,
{
    let listener_node = Arc::new(listener.clone());
    let listening = transport
        .clone()
        .and_then(move |socket, endpoint| upgrade(listener_node.clone(), socket, endpoint));
    let (mut incoming, bound) = listening.listen_on(listen.parse().unwrap()).unwrap();
    let advertised = listener.advertised(bound);

    let dialer_node = Arc::new(dialer.clone());
    let dialing =
        transport.and_then(move |socket, endpoint| upgrade(dialer_node.clone(), socket, endpoint));
    let outbound = dialing.dial(listener.peer_id, advertised).unwrap();
    let inbound = async {
        let (upgrade, _remote_addr) = incoming.next().await.unwrap().unwrap();
        upgrade.await
    };
    tokio::join!(outbound, inbound)
}

/// Sends a DirectSend and an RPC request one way and the RPC response back, and checks what
/// arrives, byte for byte.
async fn exchange_messages<S>(dialer: &mut Connection<S>, listener: &mut Connection<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let direct = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
        priority: 0,
        raw_msg: Bytes::from_static(b"hello world"),
    }));
    let request = MultiplexMessage::Message(NetworkMessage::RpcRequest(RpcRequest {
        protocol_id: ProtocolId::CONSENSUS_RPC_BCS,
        request_id: RequestId(25),
        priority: 0,
        raw_request: Bytes::from_static(&[0, 1, 2, 3]),
    }));
    // Two messages, one flush: they travel in one Noise frame.
    dialer.sink.feed(&direct).await.unwrap();
    dialer.sink.feed(&request).await.unwrap();
    dialer.sink.flush().await.unwrap();

    assert_eq!(listener.stream.next().await.unwrap().unwrap(), direct);
    let received = listener.stream.next().await.unwrap().unwrap();
    assert_eq!(received, request);

    let MultiplexMessage::Message(NetworkMessage::RpcRequest(req)) = received else {
        unreachable!("checked above")
    };
    let response = MultiplexMessage::Message(NetworkMessage::RpcResponse(RpcResponse {
        request_id: req.request_id,
        priority: 0,
        raw_response: Bytes::from_static(b"pong"),
    }));
    listener.sink.send(&response).await.unwrap();
    assert_eq!(dialer.stream.next().await.unwrap().unwrap(), response);
}

/// Over real TCP with real Noise (MaybeMutual, as on a public network): both sides learn who
/// the other is, negotiate V1 with the common protocols, and carry messages both ways.
#[tokio::test]
async fn aptosnet_connection_over_tcp_carries_messages_both_ways() {
    let (a, b) = (maybe_mutual_node(1), maybe_mutual_node(2));
    let (dialed, accepted) = connect(TcpTransport::default(), "/ip4/127.0.0.1/tcp/0", &b, &a).await;
    let (mut dialed, mut accepted) = (dialed.unwrap(), accepted.unwrap());

    assert_eq!(dialed.remote_peer_id, a.peer_id);
    assert_eq!(dialed.origin, ConnectionOrigin::Outbound);
    assert_eq!(accepted.remote_peer_id, b.peer_id);
    assert_eq!(accepted.origin, ConnectionOrigin::Inbound);
    // b is in nobody's trusted set: its identity is derived from its key.
    assert_eq!(accepted.remote_role, Some(PeerRole::Unknown));
    assert_eq!(dialed.protocols, accepted.protocols);
    assert_eq!(dialed.protocols.len(), 3);

    exchange_messages(&mut dialed, &mut accepted).await;
    assert_eq!(
        a.metrics()
            .handshakes(Side::Responder, HandshakeOutcome::Ok),
        1
    );
    assert_eq!(
        b.metrics()
            .handshakes(Side::Initiator, HandshakeOutcome::Ok),
        1
    );
}

/// The same over IPv6 loopback, when the machine has one.
#[tokio::test]
async fn aptosnet_connection_over_tcp_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let (a, b) = (maybe_mutual_node(1), maybe_mutual_node(2));
    let (dialed, accepted) = connect(TcpTransport::default(), "/ip6/::1/tcp/0", &b, &a).await;
    exchange_messages(&mut dialed.unwrap(), &mut accepted.unwrap()).await;
}

/// Over memsocket, between two validators in Mutual mode: both sides are authenticated from
/// the trusted set and get their configured role.
#[tokio::test]
async fn aptosnet_connection_over_memsocket_in_mutual_mode() {
    let trusted = TrustedPeers::new();
    let (a, b) = mutual_pair(&trusted);
    let (dialed, accepted) = connect(MemoryTransport::new(), "/memory/0", &b, &a).await;
    let (mut dialed, mut accepted) = (dialed.unwrap(), accepted.unwrap());
    assert_eq!(accepted.remote_role, Some(PeerRole::Validator));
    assert_eq!(dialed.remote_peer_id, a.peer_id);
    exchange_messages(&mut dialed, &mut accepted).await;
}

/// A 9 MiB RPC response is cut into a header and two fragments over TCP + Noise; a small
/// DirectSend sent between the fragments arrives before the large message is complete, and
/// the reassembled payload equals the original.
#[tokio::test]
async fn large_message_is_streamed_and_small_ones_pass_between_fragments() {
    let (a, b) = (maybe_mutual_node(1), maybe_mutual_node(2));
    let (dialed, accepted) = connect(TcpTransport::default(), "/ip4/127.0.0.1/tcp/0", &b, &a).await;
    let (mut sender, mut receiver) = (accepted.unwrap(), dialed.unwrap());

    let payload: Bytes = (0..9 * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let large = NetworkMessage::RpcResponse(RpcResponse {
        request_id: RequestId(7),
        priority: 0,
        raw_response: payload.clone(),
    });
    let small = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
        priority: 0,
        raw_msg: Bytes::from_static(b"between fragments"),
    }));
    let mut outbound = OutboundStream::new(large.clone(), 1, StreamLimits::default()).unwrap();
    assert_eq!(outbound.num_fragments(), 2);

    let send = async {
        let header = outbound.next_frame().unwrap();
        sender.sink.send(&header).await.unwrap();
        sender.sink.send(&small).await.unwrap();
        for frame in outbound {
            sender.sink.send(&frame).await.unwrap();
        }
    };
    let receive = async {
        let mut reassembler = Reassembler::default();
        let mut order = Vec::new();
        while order.len() < 2 {
            match receiver.stream.next().await.unwrap().unwrap() {
                MultiplexMessage::Message(message) => order.push(message),
                MultiplexMessage::Stream(piece) => {
                    if let Some(message) = reassembler.handle_stream_message(piece).unwrap() {
                        order.push(message);
                    }
                }
            }
        }
        order
    };
    let ((), order) = tokio::join!(send, receive);
    let MultiplexMessage::Message(small) = small else {
        unreachable!()
    };
    assert_eq!(order, vec![small, large]);
}

/// A dialer that expects the wrong key is refused: the listener closes without a word and
/// counts `wrong_expected_key`; the dialer's error says it was rejected.
#[tokio::test]
async fn wrong_expected_key_is_refused_and_counted() {
    let (a, b) = (maybe_mutual_node(1), maybe_mutual_node(2));
    let impostor = maybe_mutual_node(3);
    let listener_node = Arc::new(a.clone());
    let transport = TcpTransport::default()
        .and_then(move |socket, endpoint| upgrade(listener_node.clone(), socket, endpoint));
    let (mut incoming, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    // The address carries the impostor's key, not a's.
    let wrong: NetworkAddress = impostor.advertised(bound);

    let dialer_node = Arc::new(b.clone());
    let dialing = TcpTransport::default()
        .and_then(move |socket, endpoint| upgrade(dialer_node.clone(), socket, endpoint));
    let outbound = dialing.dial(a.peer_id, wrong).unwrap();
    let inbound = async { incoming.next().await.unwrap().unwrap().0.await };
    let (dialed, accepted) = tokio::join!(outbound, inbound);

    assert!(
        matches!(
            dialed,
            Err(SetupError::Noise(noise::Error::Rejected { .. }))
        ),
        "{dialed:?}"
    );
    assert!(
        matches!(
            accepted,
            Err(SetupError::Noise(noise::Error::WrongExpectedKey { .. }))
        ),
        "{accepted:?}"
    );
    assert_eq!(
        a.metrics()
            .handshakes(Side::Responder, HandshakeOutcome::WrongExpectedKey),
        1
    );
}

/// On a validator network, a node outside the trusted set is refused as an unknown peer.
#[tokio::test]
async fn unknown_peer_is_refused_in_mutual_mode() {
    let trusted = TrustedPeers::new();
    let (a, _b) = mutual_pair(&trusted);
    let stranger = TestNode::new(
        9,
        HandshakeAuthMode::mutual(TrustedPeers::new()),
        handshake_msg(CHAIN, NetworkId::Validator, protocols()),
    );
    let (dialed, accepted) = connect(MemoryTransport::new(), "/memory/0", &stranger, &a).await;
    assert!(matches!(
        dialed,
        Err(SetupError::Noise(noise::Error::Rejected { .. }))
    ));
    assert!(matches!(
        accepted,
        Err(SetupError::Noise(noise::Error::UnknownPeer { .. }))
    ));
    assert_eq!(
        a.metrics()
            .handshakes(Side::Responder, HandshakeOutcome::UnknownPeer),
        1
    );
}

/// The trusted set changes at run time: a peer added after start-up is admitted on its next
/// attempt without rebuilding anything.
#[tokio::test]
async fn trusted_set_changes_take_effect_on_the_next_handshake() {
    let trusted = TrustedPeers::new();
    let (a, _b) = mutual_pair(&trusted);
    let newcomer = TestNode::new(
        5,
        HandshakeAuthMode::mutual(trusted.clone()),
        handshake_msg(CHAIN, NetworkId::Validator, protocols()),
    );
    let (_, refused) = connect(MemoryTransport::new(), "/memory/0", &newcomer, &a).await;
    assert!(refused.is_err());

    trusted.replace(HashMap::from([
        (
            a.peer_id,
            TrustedPeer::new(PeerRole::Validator, [a.public_key]),
        ),
        (
            newcomer.peer_id,
            TrustedPeer::new(PeerRole::Validator, [newcomer.public_key]),
        ),
    ]));
    let (dialed, accepted) = connect(MemoryTransport::new(), "/memory/0", &newcomer, &a).await;
    exchange_messages(&mut dialed.unwrap(), &mut accepted.unwrap()).await;
}

/// Nodes on different chains finish Noise but fail negotiation on both sides with
/// `InvalidChainId`.
#[tokio::test]
async fn chain_mismatch_fails_negotiation_on_both_sides() {
    let a = maybe_mutual_node(1);
    let mut b = maybe_mutual_node(2);
    b.handshake = handshake_msg(CHAIN + 1, NetworkId::Public, protocols());
    let (dialed, accepted) = connect(TcpTransport::default(), "/ip4/127.0.0.1/tcp/0", &b, &a).await;
    for result in [&dialed, &accepted] {
        assert!(
            matches!(
                result,
                Err(SetupError::Wire(wire::Error::InvalidChainId { .. }))
            ),
            "{:?}",
            result.as_ref().err()
        );
    }
}

/// Nodes with no protocol in common fail negotiation with `NoCommonProtocols`.
#[tokio::test]
async fn no_common_protocol_fails_negotiation() {
    let a = maybe_mutual_node(1);
    let mut b = maybe_mutual_node(2);
    b.handshake = handshake_msg(CHAIN, NetworkId::Public, [ProtocolId::STORAGE_SERVICE_RPC]);
    let (dialed, _) = connect(MemoryTransport::new(), "/memory/0", &b, &a).await;
    assert!(matches!(
        dialed,
        Err(SetupError::Wire(wire::Error::NoCommonProtocols))
    ));
}

/// Dialing an address that asks for handshake version 1 fails without a Noise message sent.
#[tokio::test]
async fn unsupported_handshake_version_fails_the_dial() {
    let (a, b) = (maybe_mutual_node(1), maybe_mutual_node(2));
    let listener_node = Arc::new(a.clone());
    let transport = MemoryTransport::new()
        .and_then(move |socket, endpoint| upgrade(listener_node.clone(), socket, endpoint));
    let (_incoming, bound) = transport.listen_on(NetworkAddress::memory(0)).unwrap();
    let v1 = bound.with_noise_and_handshake(a.public_key, 1).unwrap();
    let dialer_node = Arc::new(b.clone());
    let dialing = MemoryTransport::new()
        .and_then(move |socket, endpoint| upgrade(dialer_node.clone(), socket, endpoint));
    let result = dialing.dial(a.peer_id, v1).unwrap().await;
    assert!(matches!(
        result,
        Err(SetupError::UnsupportedHandshakeVersion(Some(1)))
    ));
    assert_eq!(
        b.metrics()
            .handshakes(Side::Initiator, HandshakeOutcome::Ok),
        0
    );
}
