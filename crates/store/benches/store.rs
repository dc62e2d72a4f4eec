//! The cost of the store's writes, against a bare redb commit as the baseline.
//!
//! - `store/commit_one/{file,memory}`: one peer event applied and committed (one
//!   transaction, immediate durability: the file case waits for `fsync`).
//! - `store/commit_batch_1000/{file,memory}`: 1,000 peer events in one `apply`, one commit.
//! - `store/redb_baseline_commit/file`: a bare redb transaction inserting one `u64` under a
//!   `u64` key, committed the same way: what any commit costs on this disk.
//! - Before the benchmarks, the file size of a store holding 10,000 peers (each with an
//!   address, a finished connection, and a ban on one in ten) is printed, and what a restart
//!   with that file costs (open with the integrity check, load, redial list).
//!
//! Run with `cargo bench -p peerlane-store --bench store -- --warm-up-time 1
//! --measurement-time 3` (under a minute). Figures: docs/performance.md.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use netcore::{NetworkAddress, PeerId};
use store::{
    BanReason, Direction, Network, PeerChange, PeerKey, PeerStore, PeerStoreConfig, Store,
    TrustLevel, UnixMillis,
};

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn peer(n: u64) -> PeerKey {
    let mut bytes = [0x5A; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    PeerKey::new(Network::Public, PeerId::new(bytes))
}

fn addr(n: u64) -> NetworkAddress {
    let [a, b, c, d] = u32::try_from(n % u64::from(u32::MAX))
        .unwrap()
        .to_be_bytes();
    format!("/ip4/{a}.{b}.{c}.{d}/tcp/6180").parse().unwrap()
}

fn discovered(n: u64) -> PeerChange {
    PeerChange::Discovered {
        key: peer(n),
        addresses: vec![addr(n)],
        trust: TrustLevel::Indirect,
    }
}

fn peer_store(dir: Option<&std::path::Path>) -> PeerStore {
    let store = match dir {
        Some(dir) => Store::open(dir).unwrap(),
        None => Store::in_memory().unwrap(),
    };
    PeerStore::open(store, PeerStoreConfig::default()).unwrap()
}

fn print_file_size_for_ten_thousand_peers() {
    let dir = tempfile::tempdir().unwrap();
    let mut peers = peer_store(Some(dir.path()));
    for batch in 0..10u64 {
        let mut events = Vec::new();
        for n in batch * 1000..(batch + 1) * 1000 {
            events.push(discovered(n));
            events.push(PeerChange::Connected {
                key: peer(n),
                address: Some(addr(n)),
                direction: Direction::Outbound,
            });
            events.push(PeerChange::Disconnected { key: peer(n) });
            if n % 10 == 0 {
                events.push(PeerChange::Banned {
                    key: peer(n),
                    reason: BanReason::Abusive,
                    until: Some(T0.saturating_add(Duration::from_secs(3 * 3600))),
                });
            }
        }
        peers.apply(events, T0).unwrap();
    }
    assert_eq!(peers.len(), 10_000);
    let path = peers.store().path().unwrap().to_path_buf();
    drop(peers);
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "store file with 10,000 peers: {size} bytes ({:.1} MiB, {} bytes per peer)",
        size as f64 / (1024.0 * 1024.0),
        size / 10_000
    );
    // What a restart costs: open (with its integrity check), load, and the redial list.
    let start = std::time::Instant::now();
    let store = Store::open(dir.path()).unwrap();
    let opened = start.elapsed();
    let peers = PeerStore::open(store, PeerStoreConfig::default()).unwrap();
    let loaded = start.elapsed();
    let redial = peers.redial_candidates(Network::Public, T0);
    let listed = start.elapsed();
    assert_eq!(redial.len(), 9_000);
    eprintln!(
        "restart with 10,000 peers: open + integrity check {opened:?}, load {:?}, redial list {:?}",
        loaded - opened,
        listed - loaded
    );
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in [("file", Some(dir.path())), ("memory", None)] {
        let mut peers = peer_store(path);
        let mut n = 0;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("commit_one/{name}"), |b| {
            b.iter(|| {
                // Cycles over 5,000 peers: updates, and inserts on the first pass.
                n = (n + 1) % 5_000;
                peers.apply([discovered(n)], T0).unwrap();
            });
        });
        let mut m = 0;
        group.throughput(Throughput::Elements(1000));
        group.bench_function(format!("commit_batch_1000/{name}"), |b| {
            b.iter_batched(
                || {
                    m = (m + 1000) % 9_000;
                    (m..m + 1000).map(discovered).collect::<Vec<_>>()
                },
                |events| peers.apply(events, T0).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }

    let baseline_dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(baseline_dir.path().join("baseline.redb")).unwrap();
    let table: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("baseline");
    let mut k = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("redb_baseline_commit/file", |b| {
        b.iter(|| {
            k += 1;
            let txn = db.begin_write().unwrap();
            txn.open_table(table).unwrap().insert(k % 5_000, k).unwrap();
            txn.commit().unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, commits);

fn main() {
    print_file_size_for_ten_thousand_peers();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
