//! What each fuzz target checks, one function per target: the `cargo fuzz` targets in
//! `fuzz_targets/` call these, and a stable test (`tests/fuzz_corpus.rs`) replays every entry
//! of `corpus/<target>/` through the same functions, so CI keeps the corpora green without a
//! nightly toolchain. Each function panics only when the code under test misbehaves.

// Each fuzz target uses one function of this module.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use netcore::{FrameCodec, NetworkAddress, PeerId};
use noise::{HandshakeAuthMode, HandshakeConfig, PrivateKey, PublicKey, TrustedPeers};
use routing::{
    EdgeTable, GraphLimits, RoutingSyncMessage, decode_routed, encode_routed, verify_batch,
};
use tokio_util::codec::{Decoder, Encoder};
use wire::{
    ChainId, HandshakeMsg, MultiplexMessage, MultiplexMessageCodec, NetworkId, ProtocolId,
    ProtocolIdSet, Reassembler, StreamLimits, StreamMessage,
};

/// One target's check.
pub(crate) type Target = fn(&[u8]);

/// Every target by its name in `fuzz_targets/` and `corpus/`.
pub(crate) const TARGETS: [(&str, Target); 8] = [
    ("frame_decode", frame_decode),
    ("wire_decode", wire_decode),
    ("reassembly", reassembly),
    ("noise_responder", noise_responder),
    ("handshake", handshake),
    ("network_address", network_address),
    ("lz4_payload", lz4_payload),
    ("routing_decode", routing_decode),
];

/// Length-prefixed framing on arbitrary bytes: never panics, never yields a frame above the
/// maximum, and never grows the buffer towards a length it has not checked.
pub(crate) fn frame_decode(data: &[u8]) {
    const MAX: usize = 64 * 1024;
    for mut codec in [FrameCodec::u16(MAX), FrameCodec::u32(MAX)] {
        let mut src = BytesMut::from(data);
        while let Ok(Some(frame)) = codec.decode(&mut src) {
            assert!(frame.len() <= MAX);
        }
        // Reserving happens only for a checked length, plus the next prefix.
        assert!(src.capacity() <= data.len().max(MAX + 4) + 8);
        let _ = codec.decode_eof(&mut src);
    }
}

/// The message codec on arbitrary bytes: a bad frame is an error (recoverable or fatal),
/// never a panic; whatever decodes re-encodes to the same bytes. Differential: the codec's
/// hand-made envelope decoder (`MultiplexMessage::from_frame`, `from_frame_slice`) gives
/// exactly what serde's BCS gives, the same message or the same error, and its encoder writes
/// exactly BCS's bytes.
pub(crate) fn wire_decode(data: &[u8]) {
    let theirs = bcs::from_bytes::<MultiplexMessage>(data);
    assert_eq!(
        MultiplexMessage::from_frame(Bytes::copy_from_slice(data)),
        theirs
    );
    assert_eq!(MultiplexMessage::from_frame_slice(data), theirs);
    // Bare BCS: a decoded message must encode back to exactly its input, by both encoders.
    if let Ok(message) = theirs {
        assert_eq!(bcs::to_bytes(&message).unwrap(), data);
        let mut framed = BytesMut::new();
        MultiplexMessageCodec::new(data.len())
            .encode(&message, &mut framed)
            .unwrap();
        assert_eq!(&framed[4..], data);
    }
    // Framed: decode frames until the input runs out or a fatal error.
    let mut codec = MultiplexMessageCodec::new(64 * 1024);
    let mut src = BytesMut::from(data);
    while let Ok(Some(item)) = codec.decode(&mut src) {
        if let Ok(message) = item {
            let mut out = BytesMut::new();
            codec.encode(&message, &mut out).unwrap();
        }
    }
}

/// The reassembler fed an arbitrary sequence of stream messages (decoded from the input as a
/// BCS list): never panics, never completes a message above its limits.
pub(crate) fn reassembly(data: &[u8]) {
    let Ok(pieces) = bcs::from_bytes::<Vec<StreamMessage>>(data) else {
        return;
    };
    // Small limits so that the fuzzer reaches the size checks.
    let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
    let mut reassembler = Reassembler::new(limits);
    for piece in pieces {
        if let Ok(Some(message)) = reassembler.handle_stream_message(piece) {
            assert!(message.payload_len() <= limits.max_message_size());
        }
    }
}

/// The Noise responder on an arbitrary first message: every input is refused with a typed
/// error (the fuzzer cannot forge a valid IK message for our key), never a panic.
pub(crate) fn noise_responder(data: &[u8]) {
    // The responder's clock: fixed, so that a crash reproduces from its input alone.
    const NOW_MILLIS: u64 = 1_764_000_000_000;
    let private_key = PrivateKey::from([7u8; 32]);
    let public_key = PublicKey::from(&private_key);
    let peer_id = PeerId::from_identity_public_key(public_key.to_bytes());
    for auth in [
        HandshakeAuthMode::mutual(TrustedPeers::new()),
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
    ] {
        let config = HandshakeConfig::new(peer_id, private_key.clone(), auth);
        assert!(config.respond(data, NOW_MILLIS).is_err());
    }
}

/// The AptosNet handshake message on arbitrary bytes, then negotiation against ours: never
/// panics; what decodes survives an encode and decode unchanged, and negotiation is
/// symmetric in what it agrees on.
pub(crate) fn handshake(data: &[u8]) {
    let Ok(theirs) = bcs::from_bytes::<HandshakeMsg>(data) else {
        return;
    };
    let again: HandshakeMsg = bcs::from_bytes(&bcs::to_bytes(&theirs).unwrap()).unwrap();
    assert_eq!(again, theirs);
    let ours = HandshakeMsg::new(
        ChainId::new(4),
        NetworkId::Public,
        ProtocolId::KNOWN
            .into_iter()
            .chain(ProtocolId::PEERLANE)
            .collect::<ProtocolIdSet>(),
    );
    match (ours.negotiate(&theirs), theirs.negotiate(&ours)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("negotiation disagrees: {a:?} / {b:?}"),
    }
}

/// A network address from arbitrary text and from arbitrary BCS: never panics; what parses
/// prints back to text that parses to the same address, and what decodes re-encodes to bytes
/// that decode to the same address.
pub(crate) fn network_address(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(address) = text.parse::<NetworkAddress>()
    {
        let printed = address.to_string();
        assert_eq!(
            printed.parse::<NetworkAddress>().unwrap(),
            address,
            "{printed}"
        );
    }
    if let Ok(address) = bcs::from_bytes::<NetworkAddress>(data) {
        let again: NetworkAddress = bcs::from_bytes(&bcs::to_bytes(&address).unwrap()).unwrap();
        assert_eq!(again, address);
    }
}

/// LZ4-compressed payloads (AptosNet's compressed protocols) on arbitrary bytes: never panics
/// and never allocates past the declared-size check; what decodes re-encodes and decodes to
/// the same value.
pub(crate) fn lz4_payload(data: &[u8]) {
    let protocol = ProtocolId::MEMPOOL_DIRECT_SEND;
    if let Ok(value) = protocol.from_bytes::<Vec<Vec<u8>>>(data) {
        let bytes = protocol.to_bytes(&value).unwrap();
        assert_eq!(protocol.from_bytes::<Vec<Vec<u8>>>(&bytes).unwrap(), value);
    }
}

/// The routing protocols' decoders on arbitrary bytes (ROUTING_SYNC, 67, and ROUTED, 68): a
/// bad message is an error, never a panic; whatever decodes re-encodes to the same bytes; the
/// edges of a decoded `Edges` message go through precheck and signature checks without
/// panicking.
pub(crate) fn routing_decode(data: &[u8]) {
    if let Ok(message) = RoutingSyncMessage::decode(data, 50_000) {
        assert_eq!(message.encode(), data);
        if let RoutingSyncMessage::Edges(edges) = message {
            let table = EdgeTable::new(PeerId::new([7; 32]), GraphLimits::default());
            let check = table.precheck(edges, 1_700_000_000_000);
            let _ = verify_batch(check.to_verify);
        }
    }
    if let Ok(message) = decode_routed(data) {
        assert_eq!(encode_routed(&message), data);
        let _ = message.verify();
    }
}
