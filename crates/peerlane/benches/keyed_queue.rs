//! Cost of the keyed inbound queue between the peers' reader tasks and an application.
//!
//! - `keyed_queue/push_then_pop/<keys>`: push 1,024 items spread over `keys` (PeerId,
//!   ProtocolId) keys into a bare `KeyedQueue`, then pop them all, one at a time (`pop`) or 64
//!   at a time (`pop_many`, what `NetworkEvents` does). Single-threaded: the queue's own work.
//! - `keyed_queue/push_then_pop/pop_many_bursts/<keys>`: the same, but the pushes come in
//!   runs of 64 under one key, as a peer's reader routes one socket read: every push after
//!   the first of a run finds its key's queue without hashing the key.
//! - `keyed_sender/push_runs/<how>/<keys>`: 1,024 items through a `keyed_channel` on one
//!   thread, pushed in runs of 64 under one key as a peer's reader hands over a socket read's
//!   direct sends: one `push_deferred` (one lock) per item, or one `push_many_deferred` (one
//!   lock) per run; then taken 64 at a time. The difference is the lock and call per item.
//! - `keyed_channel/producer_consumer/<keys>`: 100,000 items through a `keyed_channel` with
//!   back-pressure, from a producer task that pushes the way a peer's reader does (deferred
//!   wake-ups, one `wake_deferred` per 64 items, waiting when a key is full) to a consumer task
//!   that takes 64 items per poll, on a two-worker runtime. This adds the lock hand-offs and
//!   wake-ups between two threads.
//!
//! Throughput is items per second. Run with `cargo bench -p peerlane --bench keyed_queue`
//! (about 45 s).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::future::poll_fn;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use netcore::PeerId;
use peerlane::{
    DEFAULT_CAPACITY_PER_KEY, Dropped, KeyedQueue, QueueConfig, QueueStyle, keyed_channel,
};
use wire::ProtocolId;

/// Items per iteration of the single-threaded bench: one key's default capacity.
const ITEMS: usize = 1024;
/// Items per iteration of the two-task bench.
const CHANNEL_ITEMS: usize = 100_000;
/// Items the consumer takes per poll, and the producer pushes per wake-up.
const BATCH: usize = 64;

type Key = (PeerId, ProtocolId);

fn keys(n: usize) -> Vec<Key> {
    (0..n)
        .map(|i| {
            let mut bytes = [0u8; PeerId::LENGTH];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (PeerId::new(bytes), ProtocolId::CONSENSUS_DIRECT_SEND_BCS)
        })
        .collect()
}

fn push_then_pop(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_queue/push_then_pop");
    group.throughput(Throughput::Elements(ITEMS as u64));
    let payload = Bytes::from(vec![0u8; 128]);
    let config = QueueConfig::new(QueueStyle::Fifo, DEFAULT_CAPACITY_PER_KEY);
    for n in [1, 8, 64] {
        let keys = keys(n);
        group.bench_function(BenchmarkId::new("pop", n), |b| {
            let mut queue = KeyedQueue::new(config);
            b.iter(|| {
                for i in 0..ITEMS {
                    let _ = queue.push(keys[i % n], payload.clone());
                }
                while let Some(item) = queue.pop() {
                    black_box(item);
                }
            });
        });
        group.bench_function(BenchmarkId::new("pop_many", n), |b| {
            let mut queue = KeyedQueue::new(config);
            let mut out = VecDeque::with_capacity(BATCH);
            b.iter(|| {
                for i in 0..ITEMS {
                    let _ = queue.push(keys[i % n], payload.clone());
                }
                while queue.pop_many(&mut out, BATCH) > 0 {
                    for item in out.drain(..) {
                        black_box(item);
                    }
                }
            });
        });
        if n > 1 {
            group.bench_function(BenchmarkId::new("pop_many_bursts", n), |b| {
                let mut queue = KeyedQueue::new(config);
                let mut out = VecDeque::with_capacity(BATCH);
                b.iter(|| {
                    for i in 0..ITEMS {
                        let _ = queue.push(keys[(i / BATCH) % n], payload.clone());
                    }
                    while queue.pop_many(&mut out, BATCH) > 0 {
                        for item in out.drain(..) {
                            black_box(item);
                        }
                    }
                });
            });
        }
    }
    group.finish();
}

fn push_runs(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_sender/push_runs");
    group.throughput(Throughput::Elements(ITEMS as u64));
    let payload = Bytes::from(vec![0u8; 128]);
    let config = QueueConfig::new(QueueStyle::Fifo, DEFAULT_CAPACITY_PER_KEY);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    for n in [1, 8] {
        let keys = keys(n);
        for many in [false, true] {
            let how = if many { "push_many" } else { "push_each" };
            group.bench_function(BenchmarkId::new(how, n), |b| {
                let (tx, mut rx) = keyed_channel::<Key, Bytes>(config);
                let mut out = VecDeque::with_capacity(BATCH);
                b.iter(|| {
                    for run in 0..ITEMS / BATCH {
                        let key = keys[run % n];
                        if many {
                            let items = std::iter::repeat_n(&payload, BATCH).cloned();
                            tx.push_many_deferred(&key, items, |pushed| pushed.is_ok());
                        } else {
                            for _ in 0..BATCH {
                                let _ = tx.push_deferred(key, payload.clone());
                            }
                        }
                    }
                    let mut taken = 0;
                    while taken < ITEMS {
                        match rx.poll_recv_many(&mut cx, &mut out, BATCH) {
                            std::task::Poll::Ready(n) if n > 0 => taken += n,
                            other => panic!("queue ran dry: {other:?}"),
                        }
                        for item in out.drain(..) {
                            black_box(item);
                        }
                    }
                });
            });
        }
    }
    group.finish();
}

/// One run of the two-task bench: how long `CHANNEL_ITEMS` take from first push to last pop.
async fn producer_consumer(keys: Vec<Key>, payload: Bytes) -> Duration {
    let config = QueueConfig::backpressure(NonZeroUsize::new(1024).expect("not zero"))
        .with_max_wait(Duration::from_secs(60));
    let (tx, mut rx) = keyed_channel::<Key, Bytes>(config);
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        for i in 0..CHANNEL_ITEMS {
            let key = keys[i % keys.len()];
            if let Err(Dropped::Full(item)) = tx.push_deferred(key, payload.clone()) {
                // As the reader does: wake the consumer before waiting for it.
                tx.wake_deferred();
                tx.push_wait(key, item).await.expect("waited for room");
            }
            if i % BATCH == BATCH - 1 {
                tx.wake_deferred();
            }
        }
        tx.wake_deferred();
    });
    let mut batch = VecDeque::with_capacity(BATCH);
    let mut received = 0;
    while received < CHANNEL_ITEMS {
        let taken = poll_fn(|cx| rx.poll_recv_many(cx, &mut batch, BATCH)).await;
        assert!(taken > 0, "the producer left early");
        received += taken;
        for item in batch.drain(..) {
            black_box(item);
        }
    }
    let elapsed = start.elapsed();
    producer.await.expect("producer");
    elapsed
}

fn channel(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_channel/producer_consumer");
    group.throughput(Throughput::Elements(CHANNEL_ITEMS as u64));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(vec![0u8; 128]);
    for n in [1, 8] {
        let keys = keys(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| runtime.block_on(producer_consumer(keys.clone(), payload.clone())))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = push_then_pop, push_runs, channel
}
criterion_main!(benches);
