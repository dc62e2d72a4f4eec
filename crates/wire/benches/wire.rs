//! The message path above Noise, without sockets.
//!
//! - `bcs_encode/<kind>/<size>`, `bcs_decode/<kind>/<size>`: one `NetworkMessage`
//!   (`DirectSendMsg` or `RpcRequest`) to BCS bytes and back, with a 128-byte and a 1 MiB
//!   payload. Encoding sizes the message first, as the codec does.
//! - `framed_codec/<size>`: one `MultiplexMessage` through `MultiplexMessageCodec` (the codec
//!   behind `MultiplexMessageSink` / `MultiplexMessageStream`, u32-prefixed frames): encode
//!   into a buffer, then decode it back, 128 B and 64 KiB payloads.
//! - `envelope_encode/<kind>_128B`, `envelope_decode/<kind>_128B`: the codec's hand-made
//!   envelope (`MultiplexMessageCodec::encode_message`, `MultiplexMessage::from_frame_slice`)
//!   on one message of each kind with a 128-byte payload, next to `bcs_encode` /
//!   `bcs_decode` (serde's BCS) for the same work.
//! - `batch_encode/32x128B`: the writer's pass over one batch taken off the queue: 32
//!   DirectSends of 128 bytes appended with `MultiplexMessageSink::buffer_message`, then one
//!   flush to a writer that discards.
//! - `stream_read/64x128B`: 64 DirectSends of 128 bytes, framed, read back through a
//!   `MultiplexMessageStream` from an in-memory reader: the reader's decoding of a run of
//!   small frames from one read, the read buffer's start moved once for the run.
//! - `stream_64MiB/fragment_reassemble`: a 64 MiB `DirectSendMsg` cut by `OutboundStream`
//!   into a header and 16 fragments, fed to a `Reassembler` (the final copy into one payload
//!   included). No serialization.
//!
//! Run with `cargo bench -p wire --bench wire` (under a minute; `-- --quick` for a rough
//! figure). Throughput is payload bytes per second.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use tokio_util::codec::{Decoder, Encoder};
use wire::{
    DirectSendMsg, MAX_MESSAGE_SIZE, MultiplexMessage, MultiplexMessageCodec, NetworkMessage,
    OutboundStream, ProtocolId, Reassembler, RequestId, RpcRequest, StreamLimits,
};

const SMALL: usize = 128;
const ONE_MIB: usize = 1024 * 1024;
const FRAME_LARGE: usize = 64 * 1024;

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| i as u8).collect()
}

fn direct_send(len: usize) -> NetworkMessage {
    NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
        priority: 0,
        raw_msg: payload(len),
    })
}

fn rpc_request(len: usize) -> NetworkMessage {
    NetworkMessage::RpcRequest(RpcRequest {
        protocol_id: ProtocolId::CONSENSUS_RPC_BCS,
        request_id: RequestId(7),
        priority: 0,
        raw_request: payload(len),
    })
}

fn size_name(len: usize) -> &'static str {
    match len {
        SMALL => "128B",
        FRAME_LARGE => "64KiB",
        ONE_MIB => "1MiB",
        _ => "other",
    }
}

fn bcs_messages(c: &mut Criterion) {
    for (kind, make) in [
        ("direct_send", direct_send as fn(usize) -> NetworkMessage),
        ("rpc_request", rpc_request),
    ] {
        for len in [SMALL, ONE_MIB] {
            let message = make(len);
            let encoded = bcs::to_bytes(&message).unwrap();
            let id = BenchmarkId::new(kind, size_name(len));

            let mut group = c.benchmark_group("bcs_encode");
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_with_input(id.clone(), &message, |b, message| {
                b.iter(|| {
                    let size = bcs::serialized_size(message).unwrap();
                    let mut out = Vec::with_capacity(size);
                    bcs::serialize_into(&mut out, message).unwrap();
                    out
                });
            });
            group.finish();

            let mut group = c.benchmark_group("bcs_decode");
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_with_input(id, &encoded, |b, encoded| {
                b.iter(|| bcs::from_bytes::<NetworkMessage>(encoded).unwrap());
            });
            group.finish();
        }
    }
}

fn envelope(c: &mut Criterion) {
    let response = NetworkMessage::RpcResponse(wire::RpcResponse {
        request_id: RequestId(7),
        priority: 0,
        raw_response: payload(SMALL),
    });
    for (kind, message) in [
        ("direct_send", direct_send(SMALL)),
        ("rpc_request", rpc_request(SMALL)),
        ("rpc_response", response),
    ] {
        let id = format!("{kind}_128B");
        let mut codec = MultiplexMessageCodec::default();
        let mut buf = BytesMut::with_capacity(1024);
        let mut group = c.benchmark_group("envelope_encode");
        group.throughput(Throughput::Elements(1));
        group.bench_function(&id, |b| {
            b.iter(|| {
                buf.clear();
                codec.encode_message(&message, &mut buf).unwrap();
            });
        });
        group.finish();

        let frame = bcs::to_bytes(&MultiplexMessage::Message(message)).unwrap();
        let mut group = c.benchmark_group("envelope_decode");
        group.throughput(Throughput::Elements(1));
        group.bench_function(&id, |b| {
            b.iter(|| MultiplexMessage::from_frame_slice(&frame).unwrap());
        });
        group.finish();
    }
}

/// Messages the peer's writer takes off its queue at once.
const WRITER_BATCH: usize = 32;

fn batch_encode(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batch: Vec<NetworkMessage> = (0..WRITER_BATCH).map(|_| direct_send(SMALL)).collect();
    let mut sink = wire::MultiplexMessageSink::new(tokio::io::sink());
    let mut group = c.benchmark_group("batch_encode");
    group.throughput(Throughput::Elements(WRITER_BATCH as u64));
    group.bench_function("32x128B", |b| {
        b.iter(|| {
            for message in &batch {
                sink.buffer_message(message).unwrap();
            }
            runtime.block_on(sink.flush()).unwrap();
        });
    });
    group.finish();
}

fn framed_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("framed_codec");
    for len in [SMALL, FRAME_LARGE] {
        let message = MultiplexMessage::Message(direct_send(len));
        let mut codec = MultiplexMessageCodec::default();
        let mut buf = BytesMut::with_capacity(2 * len + 64);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(size_name(len), |b| {
            b.iter(|| {
                codec.encode(&message, &mut buf).unwrap();
                let decoded = codec.decode(&mut buf).unwrap().unwrap().unwrap();
                debug_assert!(buf.is_empty());
                decoded
            });
        });
    }
    group.finish();
}

fn stream_64mib(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_64MiB");
    // One iteration copies 64 MiB: ten samples need about 55 of them.
    group.measurement_time(Duration::from_secs(6));
    let limits = StreamLimits::default();
    let message = direct_send(MAX_MESSAGE_SIZE);
    group.throughput(Throughput::Bytes(MAX_MESSAGE_SIZE as u64));
    group.bench_function("fragment_reassemble", |b| {
        b.iter(|| {
            // Cloning the message clones the `Bytes` handle, not the 64 MiB.
            let outbound = OutboundStream::new(message.clone(), 1, limits).unwrap();
            let mut reassembler = Reassembler::new(limits);
            let mut done = None;
            for frame in outbound {
                let MultiplexMessage::Stream(piece) = frame else {
                    unreachable!("a stream yields stream messages");
                };
                done = reassembler.handle_stream_message(piece).unwrap();
            }
            done.unwrap()
        });
    });
    group.finish();
}

/// Messages per batch in `framed_io`: written, flushed, then read back.
const BATCH: usize = 256;

/// `MultiplexMessageSink` / `MultiplexMessageStream` against tokio-util's `FramedWrite` /
/// `FramedRead` over the same codec: a batch of small messages (or one 1 MiB message) fed,
/// flushed through an in-memory pipe and read back, on one thread.
fn framed_io(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("framed_io");
    for (name, len, count) in [("128B_x256", SMALL, BATCH), ("1MiB", ONE_MIB, 1)] {
        let message = MultiplexMessage::Message(direct_send(len));
        group.throughput(Throughput::Elements(count as u64));
        let (a, b) = tokio::io::duplex(4 * ONE_MIB);
        let mut sink = wire::MultiplexMessageSink::new(a);
        let mut stream = wire::MultiplexMessageStream::new(b);
        group.bench_function(BenchmarkId::new("wire", name), |bencher| {
            bencher.iter(|| {
                runtime.block_on(async {
                    for _ in 0..count {
                        sink.feed(&message).await.unwrap();
                    }
                    sink.flush().await.unwrap();
                    for _ in 0..count {
                        stream.next().await.unwrap().unwrap();
                    }
                });
            });
        });
        let (a, b) = tokio::io::duplex(4 * ONE_MIB);
        let mut sink = tokio_util::codec::FramedWrite::new(a, MultiplexMessageCodec::default());
        sink.set_backpressure_boundary(wire::DEFAULT_BACKPRESSURE_BOUNDARY);
        let mut stream = tokio_util::codec::FramedRead::new(b, MultiplexMessageCodec::default());
        group.bench_function(BenchmarkId::new("tokio_util", name), |bencher| {
            bencher.iter(|| {
                runtime.block_on(async {
                    for _ in 0..count {
                        sink.feed(&message).await.unwrap();
                    }
                    sink.flush().await.unwrap();
                    for _ in 0..count {
                        stream.next().await.unwrap().unwrap().unwrap();
                    }
                });
            });
        });
    }
    group.finish();
}

/// Frames a reader hands over from one socket read.
const READ_RUN: usize = 64;

fn stream_read(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut codec = MultiplexMessageCodec::default();
    let mut frames = BytesMut::new();
    for _ in 0..READ_RUN {
        codec
            .encode_message(&direct_send(SMALL), &mut frames)
            .unwrap();
    }
    let mut group = c.benchmark_group("stream_read");
    group.throughput(Throughput::Elements(READ_RUN as u64));
    group.bench_function("64x128B", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut stream = wire::MultiplexMessageStream::new(&frames[..]);
                for _ in 0..READ_RUN {
                    stream.next().await.unwrap().unwrap();
                }
            });
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bcs_messages, envelope, batch_encode, framed_codec, framed_io, stream_read, stream_64mib
}
criterion_main!(benches);
