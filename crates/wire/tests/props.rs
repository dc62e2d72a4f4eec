//! Property tests: BCS and framed round trips of arbitrary messages (through I/O that splits
//! reads and writes at arbitrary points), stream fragmentation and reassembly at every size
//! boundary, and ProtocolIdSet round trips.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use proptest::collection::vec;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};
use wire::{
    DirectSendMsg, Error, ErrorCode, MultiplexMessage, MultiplexMessageCodec, MultiplexMessageSink,
    MultiplexMessageStream, NetworkMessage, NotSupportedType, OutboundStream, ParsingErrorType,
    ProtocolId, ProtocolIdSet, Reassembler, RequestId, RpcRequest, RpcResponse, StreamFragment,
    StreamHeader, StreamLimits, StreamMessage, needs_stream,
};

// ---- Strategies ----

fn payload(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max_len).prop_map(Bytes::from)
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
        (protocol_id(), any::<u32>(), any::<u8>(), payload(300)).prop_map(
            |(protocol_id, id, priority, raw_request)| NetworkMessage::RpcRequest(RpcRequest {
                protocol_id,
                request_id: RequestId(id),
                priority,
                raw_request,
            })
        ),
        (any::<u32>(), any::<u8>(), payload(300)).prop_map(|(id, priority, raw_response)| {
            NetworkMessage::RpcResponse(RpcResponse {
                request_id: RequestId(id),
                priority,
                raw_response,
            })
        }),
        (protocol_id(), any::<u8>(), payload(300)).prop_map(|(protocol_id, priority, raw_msg)| {
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
        (any::<u32>(), any::<u8>(), payload(300)).prop_map(
            |(request_id, fragment_id, raw_data)| MultiplexMessage::Stream(
                StreamMessage::Fragment(StreamFragment {
                    request_id,
                    fragment_id,
                    raw_data,
                })
            )
        ),
    ]
}

/// A payload-carrying message of one of the three kinds, with a payload of `len` bytes.
fn message_of_len(kind: u8, len: usize) -> NetworkMessage {
    let raw: Bytes = (0..len).map(|i| (i % 251) as u8).collect();
    match kind % 3 {
        0 => NetworkMessage::RpcRequest(RpcRequest {
            protocol_id: ProtocolId::STORAGE_SERVICE_RPC,
            request_id: RequestId(42),
            priority: 1,
            raw_request: raw,
        }),
        1 => NetworkMessage::RpcResponse(RpcResponse {
            request_id: RequestId(42),
            priority: 0,
            raw_response: raw,
        }),
        _ => NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::CONSENSUS_OBSERVER,
            priority: 0,
            raw_msg: raw,
        }),
    }
}

// ---- Fragmenting I/O ----

/// Wraps a reader or writer so that each read or write moves at most the next size from a
/// script (cycled), and returns `Pending` (after waking itself) whenever the script says 0.
/// This is the "fragmented socket" of aptos-core's `multiplex_stream_socket_roundtrip`.
struct Fragmenting<T> {
    inner: T,
    sizes: Vec<usize>,
    next: usize,
}

impl<T> Fragmenting<T> {
    fn new(inner: T, sizes: Vec<usize>) -> Self {
        assert!(
            sizes.iter().any(|&s| s > 0),
            "the script must make progress"
        );
        Self {
            inner,
            sizes,
            next: 0,
        }
    }

    /// The next size; `None` means "return Pending this time".
    fn next_size(&mut self, cx: &mut Context<'_>) -> Option<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        if size == 0 {
            cx.waker().wake_by_ref();
            None
        } else {
            Some(size)
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Fragmenting<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(size) = self.next_size(cx) else {
            return Poll::Pending;
        };
        let size = size.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(size));
        let result = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let filled = limited.filled().len();
        buf.advance(filled);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Fragmenting<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(size) = self.next_size(cx) else {
            return Poll::Pending;
        };
        let size = size.min(data.len());
        Pin::new(&mut self.inner).poll_write(cx, &data[..size])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without drivers always builds")
        .block_on(future)
}

// ---- Stream helpers ----

/// Small limits: frames of 1 KiB (threshold 960 bytes), messages of 16 KiB, 16 fragments.
fn small_limits() -> StreamLimits {
    StreamLimits::new(1024, 16 * 1024).unwrap()
}

/// Sends `message` as a stream under `limits`, every frame through the codec at the limits'
/// frame size, and reassembles it on the other side. Returns what came out, or the
/// fragmenter's refusal.
fn stream_round_trip(
    message: NetworkMessage,
    limits: StreamLimits,
) -> Result<NetworkMessage, Error> {
    let outbound = OutboundStream::new(message, 77, limits)?;
    let expected_frames = usize::from(outbound.num_fragments()) + 1;
    assert_eq!(outbound.len(), expected_frames);
    let mut codec = MultiplexMessageCodec::new(limits.max_frame_size());
    let mut reassembler = Reassembler::new(limits);
    let mut wire = BytesMut::new();
    let mut result = None;
    for (i, frame) in outbound.enumerate() {
        assert!(result.is_none(), "frames after the stream completed");
        // Every frame fits the frame limit: the encoder would refuse it otherwise.
        codec.encode(&frame, &mut wire).unwrap();
        let decoded = codec.decode(&mut wire).unwrap().unwrap().unwrap();
        assert_eq!(decoded, frame);
        let MultiplexMessage::Stream(piece) = decoded else {
            panic!("frame {i} of a stream is not a stream message");
        };
        if let StreamMessage::Fragment(fragment) = &piece {
            assert_eq!(usize::from(fragment.fragment_id), i);
            assert!(!fragment.raw_data.is_empty());
            assert!(fragment.raw_data.len() <= limits.fragment_threshold());
        }
        result = reassembler.handle_stream_message(piece).unwrap();
    }
    assert_eq!(reassembler.stream_in_progress(), None);
    Ok(result.expect("the last fragment completes the stream"))
}

/// What the fragmenter must do with a payload of `len` bytes under `limits`.
fn expected_outcome(len: usize, limits: &StreamLimits) -> Result<usize, &'static str> {
    let t = limits.fragment_threshold();
    if len > limits.max_message_size() {
        return Err("too large");
    }
    let fragments = len.saturating_sub(t).div_ceil(t);
    if fragments == 0 || fragments > limits.max_fragments() {
        return Err("fragment count");
    }
    Ok(fragments)
}

/// Every size around every boundary: t − 1, t, t + 1, k·t ± 1 for each fragment count, the
/// maximum message size ± 1 and the largest message that fits in `max_fragments`.
fn boundary_sizes(limits: &StreamLimits) -> Vec<usize> {
    let t = limits.fragment_threshold();
    let max = limits.max_message_size();
    let largest_streamable = max.min((limits.max_fragments() + 1) * t);
    let mut sizes = vec![
        0,
        1,
        max - 1,
        max,
        max + 1,
        largest_streamable,
        largest_streamable + 1,
    ];
    for k in 1..=limits.max_fragments() + 2 {
        sizes.extend([k * t - 1, k * t, k * t + 1]);
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Checks one size against `expected_outcome`, and the round trip when it streams.
fn check_size(len: usize, kind: u8, limits: StreamLimits) {
    let message = message_of_len(kind, len);
    assert_eq!(
        needs_stream(&message, &limits),
        len > limits.fragment_threshold()
    );
    match (
        expected_outcome(len, &limits),
        stream_round_trip(message.clone(), limits),
    ) {
        (Ok(_), Ok(back)) => assert_eq!(back, message, "payload of {len} bytes"),
        (Err("too large"), Err(Error::MessageTooLarge { len: l, .. })) => assert_eq!(l, len),
        (Err("fragment count"), Err(Error::InvalidFragmentCount { .. })) => {}
        (expected, got) => panic!("payload of {len} bytes: expected {expected:?}, got {got:?}"),
    }
}

// ---- Tests ----

/// Every boundary size under small limits round trips or is refused exactly as the limits
/// say, for each kind of message.
#[test]
fn stream_round_trips_at_every_boundary_with_small_limits() {
    for limits in [
        small_limits(),
        // A message limit that is an exact multiple of the threshold-plus-header capacity.
        StreamLimits::new(4096, 64 * 1024).unwrap(),
        // Few fragments, so "needs too many fragments" happens well under the message limit.
        StreamLimits::new(200, 800).unwrap(),
    ] {
        for len in boundary_sizes(&limits) {
            for kind in 0..3 {
                check_size(len, kind, limits);
            }
        }
    }
}

/// At the real limits (4 MiB frames, 64 MiB messages), the threshold boundary and the largest
/// message round trip through the codec; the largest takes all 16 fragments.
#[test]
fn stream_round_trips_at_the_real_limits() {
    let limits = StreamLimits::default();
    let t = limits.fragment_threshold();
    assert_eq!(t, 4_194_240);
    for len in [t - 1, t, t + 1, 2 * t + 1] {
        check_size(len, 2, limits);
    }
    let max = limits.max_message_size();
    assert_eq!(expected_outcome(max, &limits), Ok(16));
    check_size(max, 0, limits);
    check_size(max + 1, 1, limits);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any MultiplexMessage survives BCS, and the codec's frame is its BCS behind a u32 BE
    /// length.
    #[test]
    fn multiplex_message_bcs_round_trip(message in multiplex_message()) {
        let bytes = bcs::to_bytes(&message).unwrap();
        prop_assert_eq!(&bcs::from_bytes::<MultiplexMessage>(&bytes).unwrap(), &message);

        let mut framed = BytesMut::new();
        MultiplexMessageCodec::default().encode(&message, &mut framed).unwrap();
        prop_assert_eq!(&framed[..4], &(bytes.len() as u32).to_be_bytes()[..]);
        prop_assert_eq!(&framed[4..], &bytes[..]);
    }

    /// Messages written through the sink over a writer that accepts arbitrary short writes
    /// come out of the stream over a reader that returns arbitrary short reads, in order and
    /// unchanged, whatever the flush pattern.
    #[test]
    fn framed_round_trip_through_fragmented_io(
        messages in vec(multiplex_message(), 0..20),
        write_sizes in vec(0usize..50, 1..8),
        read_sizes in vec(0usize..50, 1..8),
        flush_every in 1usize..5,
    ) {
        prop_assume!(write_sizes.iter().any(|&s| s > 0) && read_sizes.iter().any(|&s| s > 0));
        let written = block_on(async {
            let writer = Fragmenting::new(Vec::new(), write_sizes);
            let mut sink = MultiplexMessageSink::new(writer);
            // A small boundary so that the sink also writes out by itself mid-batch.
            sink.set_backpressure_boundary(64);
            for (i, message) in messages.iter().enumerate() {
                sink.feed(message).await.unwrap();
                if i % flush_every == 0 {
                    sink.flush().await.unwrap();
                }
            }
            sink.close().await.unwrap();
            sink.into_inner().inner
        });
        let received: Vec<_> = block_on(async {
            let reader = Fragmenting::new(&written[..], read_sizes);
            MultiplexMessageStream::new(reader)
                .map(|item| item.unwrap())
                .collect()
                .await
        });
        prop_assert_eq!(received, messages);
    }

    /// Random payload sizes up to a little over the message limit, under small limits, round
    /// trip or are refused exactly as the limits say.
    #[test]
    fn stream_round_trip_at_random_sizes(len in 0usize..17_000, kind in 0u8..3) {
        check_size(len, kind, small_limits());
    }

    /// Any set of ids survives BCS, and its encoding is as short as its highest id allows.
    #[test]
    fn protocol_id_set_round_trip(ids in vec(any::<u8>(), 0..40)) {
        let set: ProtocolIdSet = ids.iter().copied().map(ProtocolId::from_wire).collect();
        let bytes = bcs::to_bytes(&set).unwrap();
        let expected_len = ids.iter().max().map_or(0, |&max| usize::from(max) / 8 + 1);
        prop_assert_eq!(usize::from(bytes[0]), expected_len);
        prop_assert_eq!(bytes.len(), expected_len + 1);
        let back: ProtocolIdSet = bcs::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, set);
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(back.iter().map(u8::from).collect::<Vec<_>>(), sorted);
    }

    /// Any bit vector of at most 32 bytes decodes, and re-encodes without trailing zero bytes.
    #[test]
    fn protocol_id_set_accepts_any_vector_up_to_32_bytes(raw in vec(any::<u8>(), 0..=32)) {
        let set: ProtocolIdSet = bcs::from_bytes(&bcs::to_bytes(&raw).unwrap()).unwrap();
        let mut trimmed = raw.clone();
        while trimmed.last() == Some(&0) {
            trimmed.pop();
        }
        prop_assert_eq!(bcs::to_bytes(&set).unwrap(), bcs::to_bytes(&trimmed).unwrap());
    }
}
