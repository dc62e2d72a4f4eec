//! Cost of the table behind both RPC tables (`DeadlineTable`: an entry per request in flight,
//! keyed by an id from our own counter, with a deadline), against the SipHash map it replaced,
//! without locks, tasks or sockets (those are measured end to end by `peerlane bench rpc-tput`).
//!
//! - `rpc_table/insert_take/<in flight>`: keeps `in flight` requests pending and, per element,
//!   inserts one (allocating its id) and takes the oldest back as its response arrives, as a
//!   connection with that many RPCs outstanding does. Throughput is requests per second.
//!
//! Run with `cargo bench -p peer --bench rpc_table` (about 20 s).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use peer::{DeadlineTable, Taken};
use tokio::time::Instant;
use wire::{ProtocolId, RequestId};

/// Requests per iteration.
const REQUESTS: u64 = 1024;

/// About what an outbound entry holds besides its id and deadline: the protocol, an insertion
/// counter and the waiter (a pointer).
#[derive(Clone, Copy)]
struct Entry {
    _protocol: ProtocolId,
    _seq: u64,
    _waiter: usize,
}

fn entry(seq: u64) -> Entry {
    Entry {
        _protocol: ProtocolId::CONSENSUS_RPC_BCS,
        _seq: seq,
        _waiter: seq as usize,
    }
}

fn insert_take(c: &mut Criterion) {
    let mut group = c.benchmark_group("rpc_table/insert_take");
    group.throughput(Throughput::Elements(REQUESTS));
    let now = Instant::now();
    let deadline = now + Duration::from_secs(10);
    for in_flight in [1usize, 64, 100] {
        group.bench_with_input(
            BenchmarkId::new("ring", in_flight),
            &in_flight,
            |b, &in_flight| {
                let mut table = DeadlineTable::new(in_flight);
                let mut next_id = RequestId(0);
                let mut pending = VecDeque::new();
                b.iter(|| {
                    for seq in 0..REQUESTS {
                        if pending.len() == in_flight {
                            let id = pending.pop_front().expect("in flight");
                            assert!(matches!(table.take(id, now), Taken::Live(_)));
                        }
                        table.expire(now);
                        let id = table
                            .insert_with(
                                || {
                                    let id = next_id;
                                    next_id = id.next();
                                    id
                                },
                                deadline,
                                entry(seq),
                            )
                            .expect("room");
                        pending.push_back(black_box(id));
                    }
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("siphash_map", in_flight),
            &in_flight,
            |b, &in_flight| {
                let mut table: HashMap<RequestId, (Instant, Entry)> = HashMap::new();
                let mut next_id = RequestId(0);
                let mut pending = VecDeque::new();
                b.iter(|| {
                    for seq in 0..REQUESTS {
                        if pending.len() == in_flight {
                            let id = pending.pop_front().expect("in flight");
                            assert!(table.remove(&id).is_some());
                        }
                        // Ids still in use are skipped, as the old table did.
                        let id = loop {
                            let id = next_id;
                            next_id = id.next();
                            if !table.contains_key(&id) {
                                break id;
                            }
                        };
                        table.insert(id, (deadline, entry(seq)));
                        pending.push_back(black_box(id));
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = insert_take
}
criterion_main!(benches);
