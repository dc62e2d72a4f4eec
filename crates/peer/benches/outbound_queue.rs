//! Cost of the two-lane outbound queue a connection's handles push to and its writer drains,
//! without locks, tasks or sockets (those are measured end to end by `peerlane bench`).
//!
//! - `outbound_queue/push_then_drain/<lanes>`: push 1,024 messages (a full lane's worth) onto
//!   the low lane or alternately onto both, then drain them 32 at a time with `pop_into`, as
//!   the writer does. Throughput is messages per second.
//! - `outbound_queue/pop_where_skipping/<skipped>`: `pop_where` past `skipped` large messages
//!   to reach a small one, as the writer does between two fragments of a stream.
//!
//! Run with `cargo bench -p peer --bench outbound_queue` (about 15 s).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use peer::{OutboundQueue, Priority};

/// Messages per iteration: one full lane at the default capacity.
const MESSAGES: usize = peer::DEFAULT_OUTBOUND_LANE_CAPACITY;
/// What the writer takes off the queue per lock.
const WRITER_BATCH: usize = 32;

/// A queued message: a payload handle and whether it is large, about what the writer queues.
#[derive(Clone)]
struct Item {
    payload: Bytes,
    large: bool,
}

fn push_then_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbound_queue/push_then_drain");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    let item = Item {
        payload: Bytes::from(vec![0u8; 128]),
        large: false,
    };
    for both_lanes in [false, true] {
        let name = if both_lanes { "both" } else { "low" };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let mut queue = OutboundQueue::new(MESSAGES);
            let mut batch = VecDeque::with_capacity(WRITER_BATCH);
            b.iter(|| {
                for i in 0..MESSAGES {
                    let lane = if both_lanes && i % 2 == 0 {
                        Priority::High
                    } else {
                        Priority::Low
                    };
                    if queue.push(lane, item.clone()).is_err() {
                        unreachable!("the lanes hold a full batch");
                    }
                }
                let mut drained = 0;
                while !queue.is_empty() {
                    queue.pop_into(&mut batch, WRITER_BATCH);
                    drained += batch.len();
                    for item in batch.drain(..) {
                        black_box(item);
                    }
                }
                drained
            });
        });
    }
    group.finish();
}

fn pop_where_skipping(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbound_queue/pop_where_skipping");
    let small = Item {
        payload: Bytes::from_static(b"small"),
        large: false,
    };
    let large = Item {
        payload: Bytes::from_static(b"large"),
        large: true,
    };
    for skipped in [0, 8, 64] {
        group.bench_function(BenchmarkId::from_parameter(skipped), |b| {
            let mut queue = OutboundQueue::new(MESSAGES);
            for _ in 0..skipped {
                let _ = queue.push(Priority::Low, large.clone());
            }
            b.iter(|| {
                let _ = queue.push(Priority::Low, small.clone());
                let popped = queue.pop_where(|item| !item.large);
                black_box(popped.map(|(_, item)| item.payload.len()))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = push_then_drain, pop_where_skipping
}
criterion_main!(benches);
