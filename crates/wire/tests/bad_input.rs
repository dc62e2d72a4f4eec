//! Hostile or broken input: every case fails with a typed error, none panics, and none makes us
//! allocate for what the remote merely announces.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;
use wire::{
    DirectSendMsg, Error, ErrorCode, HandshakeMsg, MultiplexMessage, MultiplexMessageCodec,
    MultiplexMessageSink, MultiplexMessageStream, NetworkMessage, OutboundStream, ProtocolId,
    ProtocolIdSet, Reassembler, StreamFragment, StreamHeader, StreamLimits, StreamMessage,
    exchange_handshake,
};

/// Small limits: frames of 1 KiB, messages of 16 KiB, so a fragment threshold of 960 bytes
/// and at most 16 fragments.
fn small_limits() -> StreamLimits {
    StreamLimits::new(1024, 16 * 1024).unwrap()
}

fn direct_send(payload: impl Into<Bytes>) -> NetworkMessage {
    NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
        priority: 0,
        raw_msg: payload.into(),
    })
}

fn header(request_id: u32, num_fragments: u8, message: NetworkMessage) -> StreamHeader {
    StreamHeader {
        request_id,
        num_fragments,
        message,
    }
}

fn fragment(request_id: u32, fragment_id: u8, len: usize) -> StreamFragment {
    StreamFragment {
        request_id,
        fragment_id,
        raw_data: Bytes::from(vec![fragment_id; len]),
    }
}

/// Frames `body` with a u32 BE length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn encoded(message: &MultiplexMessage) -> Vec<u8> {
    frame(&bcs::to_bytes(message).unwrap())
}

/// A length prefix announcing 4 GiB fails on the prefix alone: a fatal framing error, the
/// read buffer never grows towards the announced size, and the stream ends after it.
#[tokio::test]
async fn oversized_length_prefix_is_fatal_and_allocates_nothing() {
    let mut input = vec![0xff, 0xff, 0xff, 0xff];
    input.extend_from_slice(&[0u8; 100]);
    let mut stream = MultiplexMessageStream::new(&input[..]);
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Framing(netcore::Error::FrameTooLarge {
                len: 0xffff_ffff,
                max: 4_194_304
            })
        ),
        "{err:?}"
    );
    assert!(!err.is_recoverable());
    // Nothing was reserved for the 4 GiB frame (the stream reads 8 KiB at a time and gives
    // its buffer back after a fatal error).
    assert!(stream.read_buffer().capacity() <= 64 * 1024);
    assert!(stream.next().await.is_none());

    // The same through the codec directly, at a configured maximum.
    let mut codec = MultiplexMessageCodec::new(16);
    let mut src = BytesMut::from(&[0, 0, 0, 17][..]);
    assert!(matches!(
        codec.decode(&mut src),
        Err(Error::Framing(netcore::Error::FrameTooLarge {
            len: 17,
            max: 16
        }))
    ));
    assert!(src.capacity() < 1024);
}

/// The sink refuses a message whose frame would exceed its maximum, writes nothing of it,
/// and goes on sending smaller ones.
#[tokio::test]
async fn oversized_message_is_refused_by_the_sink() {
    let mut sink = MultiplexMessageSink::with_max_frame_size(Vec::new(), 32);
    // 29 payload bytes + 5 bytes of message around them = 34 > 32.
    let big = MultiplexMessage::Message(direct_send(vec![7u8; 29]));
    let err = sink.send(&big).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Framing(netcore::Error::FrameTooLarge { len: 34, max: 32 })
        ),
        "{err:?}"
    );
    assert!(sink.write_buffer().is_empty());
    assert!(sink.get_ref().is_empty());

    let small = MultiplexMessage::Message(direct_send(vec![7u8; 27]));
    sink.send(&small).await.unwrap();
    assert_eq!(sink.get_ref().as_slice(), encoded(&small));
}

/// A frame that is not a valid message is a recoverable error carrying the frame's first two
/// bytes and length; the messages before and after it still arrive.
#[tokio::test]
async fn malformed_frame_is_recoverable_and_the_stream_continues() {
    let first = MultiplexMessage::Message(direct_send(&b"one"[..]));
    let last = MultiplexMessage::Message(direct_send(&b"two"[..]));
    let mut input = encoded(&first);
    // Message, then NetworkMessage tag 7: no such variant.
    input.extend(frame(&[0x00, 0x07, 0xff]));
    // A valid message followed by a trailing byte: BCS refuses leftovers.
    let mut trailing = bcs::to_bytes(&first).unwrap();
    trailing.push(0);
    input.extend(frame(&trailing));
    // An empty frame.
    input.extend(frame(&[]));
    input.extend(encoded(&last));

    let mut stream = MultiplexMessageStream::new(&input[..]);
    assert_eq!(stream.next().await.unwrap().unwrap(), first);

    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.is_recoverable());
    let Error::Deserialize {
        frame_prefix, len, ..
    } = err
    else {
        panic!("expected a deserialize error, got {err:?}");
    };
    assert_eq!((frame_prefix, len), ([0x00, 0x07], 3));
    assert_eq!(
        ErrorCode::parsing_error_from_frame(&frame_prefix),
        ErrorCode::parsing_error_from_frame(&[0x00, 0x07, 0xff])
    );

    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Deserialize { len, .. } if len == trailing.len()));
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(
        err,
        Error::Deserialize {
            frame_prefix: [0, 0],
            len: 0,
            ..
        }
    ));

    assert_eq!(stream.next().await.unwrap().unwrap(), last);
    assert!(stream.next().await.is_none());
}

/// EOF in the middle of a frame is a fatal truncation error that reads as EOF.
#[tokio::test]
async fn eof_inside_a_frame_is_fatal() {
    let mut input = encoded(&MultiplexMessage::Message(direct_send(&b"hello"[..])));
    input.truncate(input.len() - 2);
    let mut stream = MultiplexMessageStream::new(&input[..]);
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Framing(netcore::Error::TruncatedFrame { .. })),
        "{err:?}"
    );
    assert!(err.is_eof() && !err.is_recoverable());
    assert!(stream.next().await.is_none());
}

/// A handshake whose protocol set is 33 bytes long is refused as malformed.
#[tokio::test]
async fn handshake_with_a_33_byte_protocol_set_is_rejected() {
    let mut body = vec![
        0x01, // one map entry
        0x00, // V1
        33,   // ProtocolIdSet length: one byte more than allowed
    ];
    body.extend([0u8; 32]);
    body.push(0x01); // byte 33
    body.extend([
        0x04, // chain_id
        0x00, // Validator
    ]);
    let (mut ours, mut theirs) = tokio::io::duplex(1024);
    let mut framed = (body.len() as u16).to_be_bytes().to_vec();
    framed.extend(&body);
    theirs.write_all(&framed).await.unwrap();
    let own = HandshakeMsg::new(
        wire::ChainId::new(4),
        wire::NetworkId::Validator,
        ProtocolIdSet::empty(),
    );
    let err = exchange_handshake(&mut ours, &own).await.unwrap_err();
    assert!(
        matches!(err, Error::MalformedHandshake { len: 38, .. }),
        "{err:?}"
    );
    assert!(bcs::from_bytes::<ProtocolIdSet>(&body[2..2 + 34]).is_err());
}

/// Fragments must follow each other from 1; a gap or repeat drops the stream.
#[test]
fn fragment_out_of_order_is_rejected() {
    let mut reassembler = Reassembler::new(small_limits());
    reassembler
        .handle_header(header(9, 3, direct_send(vec![0u8; 960])))
        .unwrap();
    let err = reassembler.handle_fragment(fragment(9, 2, 10)).unwrap_err();
    assert!(matches!(
        err,
        Error::FragmentOutOfOrder {
            request_id: 9,
            expected: 1,
            actual: 2
        }
    ));
    assert_eq!(reassembler.stream_in_progress(), None);

    reassembler
        .handle_header(header(10, 3, direct_send(vec![0u8; 960])))
        .unwrap();
    reassembler.handle_fragment(fragment(10, 1, 960)).unwrap();
    let err = reassembler
        .handle_fragment(fragment(10, 1, 960))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::FragmentOutOfOrder {
            expected: 2,
            actual: 1,
            ..
        }
    ));
}

/// A fragment of another stream drops the one in progress.
#[test]
fn fragment_with_wrong_stream_id_is_rejected() {
    let mut reassembler = Reassembler::new(small_limits());
    reassembler
        .handle_header(header(1, 2, direct_send(vec![0u8; 960])))
        .unwrap();
    let err = reassembler.handle_fragment(fragment(2, 1, 10)).unwrap_err();
    assert!(matches!(
        err,
        Error::StreamIdMismatch {
            expected: 1,
            actual: 2
        }
    ));
    assert_eq!(reassembler.stream_in_progress(), None);
}

/// A fragment with no stream open (never opened, or already complete) is rejected.
#[test]
fn fragment_without_header_is_rejected() {
    let mut reassembler = Reassembler::new(small_limits());
    assert!(matches!(
        reassembler.handle_fragment(fragment(3, 1, 10)),
        Err(Error::FragmentWithoutHeader {
            request_id: 3,
            fragment_id: 1
        })
    ));
    reassembler
        .handle_header(header(3, 1, direct_send(vec![0u8; 960])))
        .unwrap();
    assert!(
        reassembler
            .handle_fragment(fragment(3, 1, 5))
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        reassembler.handle_fragment(fragment(3, 2, 5)),
        Err(Error::FragmentWithoutHeader { .. })
    ));
}

/// A header declaring more fragments than the limits allow, or none, is refused before
/// anything is kept; so is a message that would need too many on the way out.
#[test]
fn too_many_fragments_are_rejected() {
    let mut reassembler = Reassembler::new(small_limits());
    for num_fragments in [0, 17, 255] {
        let err = reassembler
            .handle_header(header(1, num_fragments, direct_send(vec![0u8; 960])))
            .unwrap_err();
        let declared = usize::from(num_fragments);
        assert!(
            matches!(err, Error::InvalidFragmentCount { num_fragments, max: 16 }
                if num_fragments == declared),
            "{err:?}"
        );
    }
    assert_eq!(reassembler.stream_in_progress(), None);

    // 16 KiB fits the message limit but needs 17 fragments of 960 bytes after the header.
    let err =
        OutboundStream::new(direct_send(vec![0u8; 16 * 1024]), 1, small_limits()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidFragmentCount {
                num_fragments: 17,
                max: 16
            }
        ),
        "{err:?}"
    );
    let err =
        OutboundStream::new(direct_send(vec![0u8; 16 * 1024 + 1]), 1, small_limits()).unwrap_err();
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
}

/// Fragments adding up to more than the maximum message size drop the stream as soon as the
/// total passes it.
#[test]
fn stream_above_the_message_limit_is_rejected() {
    let mut reassembler = Reassembler::new(small_limits());
    reassembler
        .handle_header(header(1, 16, direct_send(vec![0u8; 960])))
        .unwrap();
    // 960 + 15 × 1000 = 15,960 bytes: still under 16,384.
    for id in 1..=15 {
        assert!(
            reassembler
                .handle_fragment(fragment(1, id, 1000))
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(reassembler.buffered_len(), 15_960);
    let err = reassembler
        .handle_fragment(fragment(1, 16, 1000))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::MessageTooLarge {
            len: 16_960,
            max: 16_384
        }
    ));
    assert_eq!(reassembler.buffered_len(), 0);
}

/// A header wrapping an Error message is refused, inbound and outbound.
#[test]
fn header_wrapping_error_is_rejected() {
    let error = NetworkMessage::Error(ErrorCode::parsing_error_from_frame(&[1, 2]));
    let mut reassembler = Reassembler::new(small_limits());
    assert!(matches!(
        reassembler.handle_header(header(1, 1, error.clone())),
        Err(Error::StreamedErrorMessage)
    ));
    assert!(matches!(
        OutboundStream::new(error, 1, small_limits()),
        Err(Error::StreamedErrorMessage)
    ));
}

/// A new header while a stream is unfinished replaces it, reports the dropped one, and the new
/// stream completes normally.
#[test]
fn new_header_replaces_an_unfinished_stream() {
    let mut reassembler = Reassembler::new(small_limits());
    reassembler
        .handle_header(header(1, 3, direct_send(vec![0u8; 960])))
        .unwrap();
    reassembler.handle_fragment(fragment(1, 1, 960)).unwrap();
    let err = reassembler
        .handle_header(header(2, 1, direct_send(vec![5u8; 960])))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::StreamReplaced {
            old_request_id: 1,
            received: 1,
            num_fragments: 3,
            new_request_id: 2
        }
    ));
    assert_eq!(reassembler.stream_in_progress(), Some(2));
    let done = reassembler
        .handle_fragment(fragment(2, 1, 4))
        .unwrap()
        .unwrap();
    let mut expected = vec![5u8; 960];
    expected.extend([1u8; 4]);
    assert_eq!(done, direct_send(expected));
}

/// A compressed payload declaring more than 64 MiB uncompressed is refused before anything
/// is allocated for it.
#[test]
fn lz4_bomb_is_rejected() {
    let mut bomb = BytesMut::new();
    bomb.put_u32_le(64 * 1024 * 1024 + 1); // declared uncompressed size: 64 MiB + 1
    bomb.extend_from_slice(&[0u8; 1 << 20]); // 1 MiB of "block": plenty for the ratio check
    let err = ProtocolId::MEMPOOL_DIRECT_SEND
        .from_bytes::<Vec<u8>>(&bomb)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UncompressedTooLarge {
                len: 67_108_865,
                max: 67_108_864
            }
        ),
        "{err:?}"
    );
    // Too short to hold the size prefix at all.
    assert!(matches!(
        ProtocolId::MEMPOOL_DIRECT_SEND.from_bytes::<Vec<u8>>(&[1, 0]),
        Err(Error::DecodePayload { .. })
    ));
}

/// Arbitrary stream messages in arbitrary order never panic the reassembler, and it never
/// holds more than the maximum message size.
fn arbitrary_stream_message() -> impl Strategy<Value = StreamMessage> {
    let message = prop_oneof![
        (0usize..2000).prop_map(|n| direct_send(vec![1u8; n])),
        Just(NetworkMessage::Error(ErrorCode::parsing_error_from_frame(
            &[]
        ))),
    ];
    prop_oneof![
        (0u32..3, 0u8..20, message).prop_map(|(id, n, m)| StreamMessage::Header(header(id, n, m))),
        (0u32..3, 0u8..20, 0usize..3000)
            .prop_map(|(id, f, len)| StreamMessage::Fragment(fragment(id, f, len))),
    ]
}

proptest! {
    /// Random bytes fed to the codec in random chunks never panic: every outcome is a message,
    /// an error, or a request for more bytes, and the buffer stays within one frame.
    #[test]
    fn codec_survives_random_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..64,
    ) {
        let mut codec = MultiplexMessageCodec::new(1024);
        let mut src = BytesMut::new();
        'feed: for piece in input.chunks(chunk) {
            src.extend_from_slice(piece);
            loop {
                match codec.decode(&mut src) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // Fatal: a real stream stops here.
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(src.capacity() <= 8 * 1024);
        }
        let _ = codec.decode_eof(&mut src);
    }

    /// Random sequences of headers and fragments never panic the reassembler or let it hold
    /// more than the message limit.
    #[test]
    fn reassembler_survives_random_sequences(
        messages in proptest::collection::vec(arbitrary_stream_message(), 0..64),
    ) {
        let limits = small_limits();
        let mut reassembler = Reassembler::new(limits);
        for message in messages {
            if let Ok(Some(done)) = reassembler.handle_stream_message(message) {
                prop_assert!(done.payload_len() <= limits.max_message_size());
            }
            prop_assert!(reassembler.buffered_len() <= limits.max_message_size());
        }
    }
}
