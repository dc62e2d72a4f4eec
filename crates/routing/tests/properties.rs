//! Properties over random graphs: the table's incremental state (summary, adjacency, counts)
//! equals the state built from scratch from its edges, and the next-hop search gives exactly
//! the first hops a brute-force search gives.

use std::collections::{HashMap, HashSet, VecDeque};

use netcore::PeerId;
use proptest::prelude::*;
use routing::{Edge, EdgeEnd, EdgeKey, EdgeProof, EdgeTable, GraphLimits, NextHops, Signature};

fn peer(n: u8) -> PeerId {
    let mut bytes = [0u8; 32];
    bytes[0] = n;
    bytes[31] = 0x42;
    PeerId::new(bytes)
}

/// An edge between `a` and `b` at `nonce`, with junk signatures (the table takes what the
/// caller vouches for; nothing here verifies).
fn edge(a: u8, b: u8, nonce: u64) -> Option<Edge> {
    let key = EdgeKey::new(peer(a), peer(b))?;
    let signature = Signature::from_bytes([9; 64]);
    let proof = if nonce % 2 == 1 {
        EdgeProof::Active {
            signature0: signature,
            signature1: signature,
        }
    } else {
        EdgeProof::Removed {
            by: EdgeEnd::Peer0,
            signature,
        }
    };
    Some(Edge { key, nonce, proof })
}

/// Distances from `start` over the active edges of `table`, by plain BFS.
fn distances(table: &EdgeTable, start: PeerId) -> HashMap<PeerId, u32> {
    let mut adjacency: HashMap<PeerId, Vec<PeerId>> = HashMap::new();
    for edge in table.edges().filter(|edge| edge.is_active()) {
        adjacency
            .entry(edge.key.peer0())
            .or_default()
            .push(edge.key.peer1());
        adjacency
            .entry(edge.key.peer1())
            .or_default()
            .push(edge.key.peer0());
    }
    let mut distance = HashMap::from([(start, 0)]);
    let mut queue = VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        for next in adjacency.get(&current).into_iter().flatten() {
            if !distance.contains_key(next) {
                distance.insert(*next, distance[&current] + 1);
                queue.push_back(*next);
            }
        }
    }
    distance
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of inserts, replacements and removals leaves the table equal to one built
    /// from its final edges.
    #[test]
    fn incremental_state_matches_a_rebuild(ops in proptest::collection::vec((0u8..12, 0u8..12, 1u64..8), 0..120)) {
        let mut table = EdgeTable::new(peer(0), GraphLimits::default());
        for (a, b, nonce) in ops {
            if let Some(edge) = edge(a, b, nonce) {
                table.apply(vec![edge]);
            }
        }
        let mut rebuilt = EdgeTable::new(peer(0), GraphLimits::default());
        rebuilt.apply(table.edges().copied().collect());
        prop_assert_eq!(table.summary_root(), rebuilt.summary_root());
        prop_assert_eq!(table.summary_buckets(), rebuilt.summary_buckets());
        prop_assert_eq!(table.len(), rebuilt.len());
        prop_assert_eq!(table.peer_count(), rebuilt.peer_count());
        for n in 0..12 {
            let mut ours = table.active_neighbours(&peer(n)).to_vec();
            let mut theirs = rebuilt.active_neighbours(&peer(n)).to_vec();
            ours.sort();
            theirs.sort();
            prop_assert_eq!(ours, theirs);
        }
    }

    /// For every reachable peer, the first hops are exactly the local neighbours one step
    /// closer to it, and the distance is the BFS distance.
    #[test]
    fn first_hops_are_all_shortest_path_neighbours(pairs in proptest::collection::vec((0u8..14, 0u8..14), 0..60)) {
        let mut table = EdgeTable::new(peer(0), GraphLimits::default());
        table.apply(pairs.iter().filter_map(|(a, b)| edge(*a, *b, 1)).collect());
        let hops = NextHops::compute(&table);
        let from_local = distances(&table, peer(0));
        let reachable: HashSet<PeerId> = hops.reachable().collect();
        let expected_reachable: HashSet<PeerId> =
            from_local.keys().copied().filter(|p| *p != peer(0)).collect();
        prop_assert_eq!(&reachable, &expected_reachable);
        let neighbours = table.active_neighbours(&peer(0)).to_vec();
        let from_neighbour: HashMap<PeerId, HashMap<PeerId, u32>> = neighbours
            .iter()
            .map(|n| (*n, distances(&table, *n)))
            .collect();
        for target in reachable {
            let distance = from_local[&target];
            prop_assert_eq!(hops.distance(&target), Some(distance));
            let mut expected: Vec<PeerId> = neighbours
                .iter()
                .copied()
                .filter(|n| from_neighbour[n].get(&target) == Some(&(distance - 1)))
                .collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(hops.first_hops(&target), expected.as_slice());
        }
    }
}
