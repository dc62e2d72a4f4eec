//! The hand-made envelope codec against BCS: the codec's frames are `bcs::to_bytes` behind a
//! u32 BE length for every variant, and `MultiplexMessage::from_frame` /
//! `from_frame_slice` accept exactly what `bcs::from_bytes` accepts, with the same value or
//! the same `bcs::Error`: on encodings of arbitrary messages, on those encodings mutated
//! (truncated, extended, bytes changed or inserted), on arbitrary bytes, on every input of up
//! to two bytes, and on hand-picked ULEB128 corner cases.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tokio_util::codec::Encoder;
use wire::{
    DirectSendMsg, ErrorCode, MultiplexMessage, MultiplexMessageCodec, NetworkMessage,
    NotSupportedType, ParsingErrorType, ProtocolId, RequestId, RpcRequest, RpcResponse,
    StreamFragment, StreamHeader, StreamMessage,
};

// ---- Strategies ----

/// Payloads around the ULEB128 length boundaries (1, 2 and 3 bytes of length) and the size
/// from which `from_frame` shares a payload with its frame, and short random ones.
fn payload() -> impl Strategy<Value = Bytes> {
    let share = MultiplexMessage::SHARED_PAYLOAD_MIN;
    prop_oneof![
        4 => vec(any::<u8>(), 0..200).prop_map(Bytes::from),
        1 => prop::sample::select(vec![127usize, 128, 16_383, 16_384, share - 1, share, share + 1])
            .prop_map(|len| (0..len).map(|i| (i % 253) as u8).collect()),
    ]
}

fn protocol_id() -> impl Strategy<Value = ProtocolId> {
    any::<u8>().prop_map(ProtocolId::from_wire)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(message, protocol)| ErrorCode::ParsingError(
            ParsingErrorType { message, protocol }
        )),
        protocol_id().prop_map(|p| ErrorCode::NotSupported(NotSupportedType::RpcRequest(p))),
        protocol_id().prop_map(|p| ErrorCode::NotSupported(NotSupportedType::DirectSendMsg(p))),
    ]
}

fn network_message() -> impl Strategy<Value = NetworkMessage> {
    prop_oneof![
        error_code().prop_map(NetworkMessage::Error),
        (protocol_id(), any::<u32>(), any::<u8>(), payload()).prop_map(
            |(protocol_id, id, priority, raw_request)| NetworkMessage::RpcRequest(RpcRequest {
                protocol_id,
                request_id: RequestId(id),
                priority,
                raw_request,
            })
        ),
        (any::<u32>(), any::<u8>(), payload()).prop_map(|(id, priority, raw_response)| {
            NetworkMessage::RpcResponse(RpcResponse {
                request_id: RequestId(id),
                priority,
                raw_response,
            })
        }),
        (protocol_id(), any::<u8>(), payload()).prop_map(|(protocol_id, priority, raw_msg)| {
            NetworkMessage::DirectSendMsg(DirectSendMsg {
                protocol_id,
                priority,
                raw_msg,
            })
        }),
    ]
}

fn multiplex_message() -> impl Strategy<Value = MultiplexMessage> {
    prop_oneof![
        network_message().prop_map(MultiplexMessage::Message),
        (any::<u32>(), any::<u8>(), network_message()).prop_map(
            |(request_id, num_fragments, message)| MultiplexMessage::Stream(StreamMessage::Header(
                StreamHeader {
                    request_id,
                    num_fragments,
                    message,
                }
            ))
        ),
        (any::<u32>(), any::<u8>(), payload()).prop_map(|(request_id, fragment_id, raw_data)| {
            MultiplexMessage::Stream(StreamMessage::Fragment(StreamFragment {
                request_id,
                fragment_id,
                raw_data,
            }))
        }),
    ]
}

/// One change to an encoding.
#[derive(Clone, Debug)]
enum Edit {
    Truncate(usize),
    Append(Vec<u8>),
    Set(usize, u8),
    Insert(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        vec(any::<u8>(), 1..4).prop_map(Edit::Append),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    // Positions mostly in the envelope, where the decoder makes its decisions.
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len.min(24) };
    match edit {
        Edit::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Edit::Append(more) => bytes.extend_from_slice(more),
        Edit::Set(i, byte) => {
            if !bytes.is_empty() {
                let i = at(*i, bytes.len());
                bytes[i] = *byte;
            }
        }
        Edit::Insert(i, byte) => bytes.insert(at(*i, bytes.len() + 1), *byte),
    }
}

// ---- Checks ----

/// Both hand-made decoders give what `bcs::from_bytes` gives: the same message, or the same
/// error.
fn assert_decodes_like_bcs(bytes: &[u8]) {
    let theirs = bcs::from_bytes::<MultiplexMessage>(bytes);
    let shared = MultiplexMessage::from_frame(Bytes::copy_from_slice(bytes));
    let copied = MultiplexMessage::from_frame_slice(bytes);
    assert_eq!(shared, theirs, "from_frame on {}", hex::encode(bytes));
    assert_eq!(copied, theirs, "from_frame_slice on {}", hex::encode(bytes));
}

/// The codec frames `message` as its BCS behind a u32 BE length.
fn assert_encodes_like_bcs(message: &MultiplexMessage) {
    let bytes = bcs::to_bytes(message).unwrap();
    let mut codec = MultiplexMessageCodec::default();
    let mut framed = BytesMut::new();
    codec.encode(message, &mut framed).unwrap();
    assert_eq!(&framed[..4], &(bytes.len() as u32).to_be_bytes()[..]);
    assert_eq!(&framed[4..], &bytes[..]);
    if let MultiplexMessage::Message(inner) = message {
        let mut direct = BytesMut::new();
        codec.encode_message(inner, &mut direct).unwrap();
        assert_eq!(direct, framed, "encode_message");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every variant encodes to BCS's bytes and decodes back, with BCS agreeing.
    #[test]
    fn every_message_encodes_and_decodes_like_bcs(message in multiplex_message()) {
        assert_encodes_like_bcs(&message);
        let bytes = bcs::to_bytes(&message).unwrap();
        prop_assert_eq!(&MultiplexMessage::from_frame(Bytes::from(bytes.clone())).unwrap(), &message);
        assert_decodes_like_bcs(&bytes);
    }

    /// Damaged encodings are accepted or refused as BCS accepts or refuses them, with its
    /// error.
    #[test]
    fn damaged_encodings_decode_like_bcs(
        message in multiplex_message(),
        edits in vec(edit(), 1..4),
    ) {
        let mut bytes = bcs::to_bytes(&message).unwrap();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        assert_decodes_like_bcs(&bytes);
    }

    /// Arbitrary bytes decode as BCS decodes them.
    #[test]
    fn arbitrary_bytes_decode_like_bcs(bytes in vec(any::<u8>(), 0..40)) {
        assert_decodes_like_bcs(&bytes);
    }
}

/// Every input of at most two bytes (tags, truncations, one-byte payload lengths).
#[test]
fn every_input_up_to_two_bytes_decodes_like_bcs() {
    assert_decodes_like_bcs(&[]);
    for a in 0..=255u8 {
        assert_decodes_like_bcs(&[a]);
        for b in 0..=255u8 {
            assert_decodes_like_bcs(&[a, b]);
        }
    }
}

/// ULEB128 corner cases in tags and payload lengths: non-canonical encodings, the longest
/// lengths, overflow, lengths beyond BCS's maximum, and tags past the last variant.
#[test]
fn uleb128_corner_cases_decode_like_bcs() {
    // `Message(DirectSendMsg { protocol 2, priority 0, .. })` before the payload length.
    let direct = [0u8, 3, 2, 0];
    let lengths: [&[u8]; 10] = [
        &[0x80, 0x00],
        &[0x81, 0x00],
        &[0x80, 0x80, 0x00],
        &[0x01],
        &[0x80, 0x01],
        &[0xff, 0xff, 0xff, 0xff, 0x07],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xff, 0xff, 0xff, 0xff, 0x10],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        &[0x80, 0x80, 0x80, 0x80],
    ];
    for length in lengths {
        let mut bytes = direct.to_vec();
        bytes.extend_from_slice(length);
        assert_decodes_like_bcs(&bytes);
        bytes.push(9);
        assert_decodes_like_bcs(&bytes);
    }
    let tags: [&[u8]; 9] = [
        &[0x80, 0x00],
        &[0x82, 0x00],
        &[0x80, 0x01],
        &[0x04],
        &[0x7f],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xff, 0xff, 0xff, 0xff, 0x1f],
        &[0x80, 0x80, 0x80, 0x80, 0x80],
        &[0x83, 0x00],
    ];
    // Each tag position: MultiplexMessage, NetworkMessage, ErrorCode, NotSupportedType,
    // StreamMessage, and the NetworkMessage of a stream header.
    let before: [&[u8]; 6] = [&[], &[0], &[0, 0], &[0, 0, 1], &[1], &[1, 0, 1, 0, 0, 0, 2]];
    for prefix in before {
        for tag in tags {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(tag);
            assert_decodes_like_bcs(&bytes);
            bytes.extend_from_slice(&[5, 0, 0, 0, 0, 0, 1, 7]);
            assert_decodes_like_bcs(&bytes);
        }
    }
}

/// Large payloads are slices of the frame with `from_frame` and copies with
/// `from_frame_slice`; small ones are copies with both.
#[test]
fn only_large_payloads_share_the_frame() {
    let share = MultiplexMessage::SHARED_PAYLOAD_MIN;
    for len in [0, 100, share - 1, share, 3 * share] {
        let message = MultiplexMessage::Stream(StreamMessage::Fragment(StreamFragment {
            request_id: 1,
            fragment_id: 1,
            raw_data: Bytes::from(vec![7; len]),
        }));
        let frame = Bytes::from(bcs::to_bytes(&message).unwrap());
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let payload_of = |decoded: MultiplexMessage| match decoded {
            MultiplexMessage::Stream(StreamMessage::Fragment(f)) => f.raw_data,
            other => panic!("decoded as {other:?}"),
        };
        let shared = payload_of(MultiplexMessage::from_frame(frame.clone()).unwrap());
        let copied = payload_of(MultiplexMessage::from_frame_slice(&frame).unwrap());
        let inside = |p: &Bytes| !p.is_empty() && range.contains(&(p.as_ptr() as usize));
        assert_eq!(inside(&shared), len >= share, "{len} bytes");
        assert!(!inside(&copied), "{len} bytes");
    }
}

/// The DirectSend fast paths (payloads shorter than 2^14 bytes, one or two bytes of length)
/// around their edges: every length where the ULEB128 length gains its second byte and where
/// the fast paths hand over to the general ones, each encoded like BCS and decoded like BCS
/// whole, with a byte missing and with a byte too many.
#[test]
fn direct_sends_around_the_fast_path_edges_encode_and_decode_like_bcs() {
    for len in (0..300).chain(16_200..16_600) {
        let message = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::from_wire(len as u8),
            priority: (len >> 8) as u8,
            raw_msg: (0..len).map(|i| (i % 251) as u8).collect(),
        }));
        assert_encodes_like_bcs(&message);
        let mut bytes = bcs::to_bytes(&message).unwrap();
        assert_decodes_like_bcs(&bytes);
        bytes.push(0);
        assert_decodes_like_bcs(&bytes);
        bytes.truncate(bytes.len() - 2);
        assert_decodes_like_bcs(&bytes);
    }
}

/// A DirectSend one byte over the maximum frame size is refused by `encode_message` as by
/// the general encoder (`FrameTooLarge`, nothing written); one at the maximum is framed.
#[test]
fn fast_path_direct_sends_keep_the_frame_size_limit() {
    // Two tags, the protocol and the priority, then one byte of length below 128, two above.
    for (max, at_max) in [(105, 100), (1_006, 1_000)] {
        let mut codec = MultiplexMessageCodec::new(max);
        let direct = |len: usize| {
            NetworkMessage::DirectSendMsg(DirectSendMsg {
                protocol_id: ProtocolId::from_wire(3),
                priority: 1,
                raw_msg: Bytes::from(vec![5; len]),
            })
        };
        let mut framed = BytesMut::new();
        codec.encode_message(&direct(at_max), &mut framed).unwrap();
        assert_eq!(framed.len(), 4 + max);
        let mut refused = BytesMut::new();
        let err = codec
            .encode_message(&direct(at_max + 1), &mut refused)
            .unwrap_err();
        assert!(
            matches!(
                err,
                wire::Error::Framing(netcore::Error::FrameTooLarge { len, max: m })
                    if len == max + 1 && m == max
            ),
            "{err:?}"
        );
        assert!(refused.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Frames shaped like a DirectSend (its two tags first), whatever follows, decode as BCS
    /// decodes them: the fast path takes the well-formed ones, the general decoder the rest.
    #[test]
    fn direct_send_shaped_bytes_decode_like_bcs(
        head in (any::<u8>(), any::<u8>()),
        length in vec(any::<u8>(), 0..3),
        payload in vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![0, 3, head.0, head.1];
        bytes.extend_from_slice(&length);
        bytes.extend_from_slice(&payload);
        assert_decodes_like_bcs(&bytes);
    }
}
