//! A quick scale check: 1,000 nodes of degree about 8, the next-hop search over them, and
//! a hostile 50,000-edge batch through precheck. Prints times and the table's memory (by
//! `EdgeTable::memory_estimate`);
//! asserts only results, not times (`cargo test -p routing --release --test scale --
//! --nocapture` for meaningful figures).

use std::collections::HashSet;
use std::time::Instant;

use netcore::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use routing::{
    Edge, EdgeKey, EdgeProof, EdgeTable, GraphLimits, NextHops, Signature, verify_batch,
};

const NOW: u64 = 1_700_000_000_001;

fn peer(n: u32) -> PeerId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 0x55;
    PeerId::new(bytes)
}

/// An edge with junk signatures: `apply` takes what the caller vouches for, and the search
/// does not look at signatures, so the scale test needs no signing.
fn edge(a: u32, b: u32) -> Option<Edge> {
    Some(Edge {
        key: EdgeKey::new(peer(a), peer(b))?,
        nonce: NOW,
        proof: EdgeProof::Active {
            signature0: Signature::from_bytes([1; 64]),
            signature1: Signature::from_bytes([2; 64]),
        },
    })
}

/// 1,000 nodes, each linked to 4 random others (degree about 8): every node is reached,
/// and the search time and table memory are printed.
#[test]
fn thousand_nodes_of_degree_eight() {
    let nodes = 1_000u32;
    let mut rng = StdRng::seed_from_u64(42);
    let mut edges = Vec::new();
    // A ring first so the graph is connected, then random chords.
    for n in 0..nodes {
        edges.extend(edge(n, (n + 1) % nodes));
        for _ in 0..3 {
            edges.extend(edge(n, rng.gen_range(0..nodes)));
        }
    }
    let mut table = EdgeTable::new(peer(0), GraphLimits::default());
    let outcome = table.apply(edges);
    let degree = 2.0 * table.len() as f64 / f64::from(nodes);
    assert!(table.len() > 3_500, "{} edges", table.len());
    assert_eq!(outcome.over_budget, 0);
    assert!(table.memory_estimate() > table.len() * size_of::<Edge>());

    let start = Instant::now();
    let rounds = 20;
    let mut hops = NextHops::default();
    for _ in 0..rounds {
        hops = NextHops::compute(&table);
    }
    let per_search = start.elapsed() / rounds;
    assert_eq!(hops.len(), nodes as usize - 1);
    let max_distance = hops
        .reachable()
        .filter_map(|peer| hops.distance(&peer))
        .max()
        .unwrap();
    let multi_path = hops
        .reachable()
        .filter(|peer| hops.first_hops(peer).len() > 1)
        .count();
    println!(
        "scale: {nodes} nodes, {} edges (mean degree {degree:.1}), search {per_search:?}, \
         diameter from local {max_distance}, {multi_path} peers with several first hops, \
         table {} KiB by estimate ({} bytes per edge)",
        table.len(),
        table.memory_estimate() / 1024,
        table.memory_estimate() / table.len(),
    );
    let reachable: HashSet<PeerId> = hops.reachable().collect();
    table.note_reachability(&reachable, NOW);
    assert!(
        table
            .take_unreachable(NOW + 3_600_000, 3_600_000)
            .is_empty()
    );
}

/// A full-size hostile message (50,000 fresh edges among 100,000 new peers, table limits at
/// their defaults but for a peer budget of 10,000) goes through precheck with no signature
/// work and leaves only what fits the peer budget to verify.
#[test]
fn hostile_full_message_precheck_is_cheap() {
    let limits = GraphLimits {
        max_peers: 10_000,
        ..GraphLimits::default()
    };
    let table = EdgeTable::new(peer(0), limits);
    let batch: Vec<Edge> = (0..50_000u32)
        .filter_map(|n| edge(2 * n + 1, 2 * n + 2))
        .collect();
    let start = Instant::now();
    let check = table.precheck(batch, NOW);
    let elapsed = start.elapsed();
    assert_eq!(check.outcome.to_verify, 5_000);
    assert_eq!(check.outcome.over_max_peers, 45_000);
    println!("precheck of 50,000 edges: {elapsed:?}");
    // The 5,000 left fail at the first signature: one verification, not 10,000.
    let start = Instant::now();
    let verified = verify_batch(check.to_verify);
    assert!(verified.bad.is_some());
    assert_eq!(verified.unchecked, 4_999);
    println!(
        "verify_batch stopping at the first bad edge: {:?}",
        start.elapsed()
    );
}
