//! The test vectors of `docs/wire-format.md`, pinned byte for byte in both directions.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{
    ChainId, DirectSendMsg, ErrorCode, HandshakeMsg, MultiplexMessage, MultiplexMessageSink,
    MultiplexMessageStream, NetworkId, NetworkMessage, ParsingErrorType, PeerId, ProtocolId,
    ProtocolIdSet, RequestId, RpcRequest, exchange_handshake,
};

/// DirectSendMsg { MempoolDirectSend, priority 0, "hello world" } as a framed MultiplexMessage.
const HELLO_FRAME: &[u8] = &[
    0x00, 0x00, 0x00, 0x10, // u32 BE frame length = 16
    0x00, // MultiplexMessage::Message
    0x03, // NetworkMessage::DirectSendMsg
    0x02, // protocol_id = 2 (MempoolDirectSend)
    0x00, // priority = 0
    0x0b, // raw_msg length = 11 (ULEB128)
    b'h', b'e', b'l', b'l', b'o', b' ', b'w', b'o', b'r', b'l', b'd', // raw_msg
];

/// NetworkMessage::RpcRequest { ConsensusRpcBcs, request_id 25, priority 0, [0, 1, 2, 3] }.
const RPC_REQUEST: &[u8] = &[
    0x01, // NetworkMessage::RpcRequest
    0x00, // protocol_id = 0 (ConsensusRpcBcs)
    0x19, 0x00, 0x00, 0x00, // request_id = 25, u32 LE
    0x00, // priority = 0
    0x04, // raw_request length = 4 (ULEB128)
    0x00, 0x01, 0x02, 0x03, // raw_request
];

/// ErrorCode::ParsingError { message 9, protocol 5 }.
const PARSING_ERROR: &[u8] = &[
    0x00, // ErrorCode::ParsingError
    0x09, // message = 9
    0x05, // protocol = 5
];

/// HandshakeMsg { {V1: {HealthCheckerRpc}}, chain 4, Validator }, BCS only.
const HANDSHAKE: &[u8] = &[
    0x01, // supported_protocols: map with 1 entry (ULEB128)
    0x00, // key: MessagingProtocolVersion::V1
    0x01, // value: ProtocolIdSet of 1 byte (ULEB128 length)
    0x04, // bit 5 (0x80 >> 5): HealthCheckerRpc
    0x04, // chain_id = 4
    0x00, // network_id = Validator
];

/// The same handshake as it travels: u16 BE length, then the BCS bytes.
const HANDSHAKE_FRAME: &[u8] = &[
    0x00, 0x06, // u16 BE frame length = 6
    0x01, 0x00, 0x01, 0x04, 0x04, 0x00, // HANDSHAKE
];

fn hello() -> MultiplexMessage {
    MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
        priority: 0,
        raw_msg: Bytes::from_static(b"hello world"),
    }))
}

fn handshake() -> HandshakeMsg {
    HandshakeMsg::new(
        ChainId::new(4),
        NetworkId::Validator,
        [ProtocolId::HEALTH_CHECKER_RPC].into_iter().collect(),
    )
}

/// The annotated constants above are the spec's hex strings, so the annotations cannot drift
/// from the spec.
#[test]
fn annotated_vectors_match_the_spec_hex() {
    let spec = |s: &str| hex::decode(s.replace(' ', "")).unwrap();
    assert_eq!(
        HELLO_FRAME,
        spec("00 00 00 10 00 03 02 00 0b 68 65 6c 6c 6f 20 77 6f 72 6c 64")
    );
    assert_eq!(RPC_REQUEST, spec("01 00 19 00 00 00 00 04 00 01 02 03"));
    assert_eq!(PARSING_ERROR, spec("00 09 05"));
    assert_eq!(HANDSHAKE, spec("01 00 01 04 04 00"));
    assert_eq!(HANDSHAKE_FRAME, spec("00 06 01 00 01 04 04 00"));
}

/// The sink writes exactly the spec's frame for the "hello world" DirectSend.
#[tokio::test]
async fn sink_writes_the_hello_world_frame() {
    let mut sink = MultiplexMessageSink::new(Vec::new());
    sink.send(&hello()).await.unwrap();
    assert_eq!(sink.get_ref().as_slice(), HELLO_FRAME);
}

/// The stream reads the spec's frame back as the "hello world" DirectSend, then ends cleanly.
#[tokio::test]
async fn stream_reads_the_hello_world_frame() {
    let mut stream = MultiplexMessageStream::new(HELLO_FRAME);
    assert_eq!(stream.next().await.unwrap().unwrap(), hello());
    assert!(stream.next().await.is_none());
}

/// The RpcRequest vector encodes and decodes as a NetworkMessage.
#[test]
fn rpc_request_matches_the_vector() {
    let message = NetworkMessage::RpcRequest(RpcRequest {
        protocol_id: ProtocolId::CONSENSUS_RPC_BCS,
        request_id: RequestId(25),
        priority: 0,
        raw_request: Bytes::from_static(&[0, 1, 2, 3]),
    });
    assert_eq!(bcs::to_bytes(&message).unwrap(), RPC_REQUEST);
    assert_eq!(
        bcs::from_bytes::<NetworkMessage>(RPC_REQUEST).unwrap(),
        message
    );
}

/// The ParsingError vector encodes and decodes as an ErrorCode, and is what a frame starting
/// `09 05` earns.
#[test]
fn parsing_error_matches_the_vector() {
    let code = ErrorCode::ParsingError(ParsingErrorType {
        message: 9,
        protocol: 5,
    });
    assert_eq!(bcs::to_bytes(&code).unwrap(), PARSING_ERROR);
    assert_eq!(bcs::from_bytes::<ErrorCode>(PARSING_ERROR).unwrap(), code);
    assert_eq!(ErrorCode::parsing_error_from_frame(&[9, 5, 0xff]), code);
}

/// The handshake message encodes and decodes as the spec's 6 bytes.
#[test]
fn handshake_matches_the_vector() {
    assert_eq!(bcs::to_bytes(&handshake()).unwrap(), HANDSHAKE);
    assert_eq!(
        bcs::from_bytes::<HandshakeMsg>(HANDSHAKE).unwrap(),
        handshake()
    );
}

/// `exchange_handshake` puts exactly the spec's u16 frame on the wire and decodes the same
/// frame coming back.
#[tokio::test]
async fn exchange_handshake_sends_and_reads_the_framed_vector() {
    let (mut ours, mut theirs) = tokio::io::duplex(64);
    let remote = async move {
        // The remote side, byte by byte: read our frame, answer with the same bytes.
        let mut received = [0u8; HANDSHAKE_FRAME.len()];
        theirs.read_exact(&mut received).await.unwrap();
        theirs.write_all(HANDSHAKE_FRAME).await.unwrap();
        received
    };
    let own = handshake();
    let (received_by_remote, result) = tokio::join!(remote, exchange_handshake(&mut ours, &own));
    assert_eq!(received_by_remote, HANDSHAKE_FRAME);
    assert_eq!(result.unwrap(), handshake());
}

/// Two `exchange_handshake` calls talk to each other, each writing before reading.
#[tokio::test]
async fn exchange_handshake_between_two_peers() {
    let (mut a, mut b) = tokio::io::duplex(64);
    let other = HandshakeMsg::new(
        ChainId::new(4),
        NetworkId::Validator,
        ProtocolIdSet::empty(),
    );
    let own = handshake();
    let (from_b, from_a) = tokio::join!(
        exchange_handshake(&mut a, &own),
        exchange_handshake(&mut b, &other)
    );
    assert_eq!(from_b.unwrap(), other);
    assert_eq!(from_a.unwrap(), handshake());
}

/// NetworkId keeps AptosNet's legacy encoding: Vfn is tag 2 carrying "vfn".
#[test]
fn network_id_vectors() {
    assert_eq!(bcs::to_bytes(&NetworkId::Validator).unwrap(), [0x00]);
    assert_eq!(bcs::to_bytes(&NetworkId::Public).unwrap(), [0x01]);
    let vfn: &[u8] = &[
        0x02, // legacy variant 2: Private(String)
        0x03, // string length = 3
        b'v', b'f', b'n', // "vfn"
    ];
    assert_eq!(bcs::to_bytes(&NetworkId::Vfn).unwrap(), vfn);
    assert_eq!(bcs::from_bytes::<NetworkId>(vfn).unwrap(), NetworkId::Vfn);
}

/// A PeerId is its 32 raw bytes in BCS: no length prefix.
#[test]
fn peer_id_is_32_raw_bytes() {
    let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
    let peer = PeerId::new(bytes);
    assert_eq!(bcs::to_bytes(&peer).unwrap(), bytes);
    assert_eq!(bcs::from_bytes::<PeerId>(&bytes).unwrap(), peer);
}
