//! The length-delimited `FrameCodec` alone, without BCS or I/O.
//!
//! - `frame_codec/u32/<size>`: one frame encoded into a buffer and decoded back out, with
//!   128-byte, 64 KiB and 4 MiB bodies (4 MiB is the message frame maximum).
//! - `frame_codec/u16/<size>`: the same with a u16 prefix (Noise's frame size), 128 B and
//!   64 KiB.
//!
//! wire's `framed_codec` bench measures the same path with BCS on top. Run with
//! `cargo bench -p netcore --bench framing` (a few seconds). Throughput is body bytes per
//! second.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use netcore::{FrameCodec, LengthPrefix};
use tokio_util::codec::{Decoder, Encoder};

fn size_name(len: usize) -> String {
    match len {
        l if l >= 1024 * 1024 => format!("{}MiB", l / (1024 * 1024)),
        l if l >= 1024 => format!("{}KiB", l / 1024),
        l => format!("{l}B"),
    }
}

fn frame_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_codec");
    for (prefix, name, sizes) in [
        (
            LengthPrefix::U32,
            "u32",
            &[128, 64 * 1024, 4 * 1024 * 1024][..],
        ),
        (LengthPrefix::U16, "u16", &[128, 64 * 1024 - 1][..]),
    ] {
        for &len in sizes {
            let body = vec![0x5a_u8; len];
            let mut codec = FrameCodec::new(prefix, prefix.max_len().min(4 * 1024 * 1024));
            let mut buf = BytesMut::with_capacity(len + prefix.width());
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::new(name, size_name(len)), |b| {
                b.iter(|| {
                    codec.encode(&body[..], &mut buf).unwrap();
                    codec.decode(&mut buf).unwrap().unwrap()
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = frame_codec
}
criterion_main!(benches);
