//! Reconciliation of two edge tables when a connection starts, cheaper than sending the
//! whole table as NEAR does:
//!
//! 1. Both ends send [`RoutingSyncMessage::SummaryRoot`] (21 bytes of payload). Equal roots:
//!    done, the tables are equal.
//! 2. Otherwise both send [`RoutingSyncMessage::SummaryBuckets`] (256 digests, 5,123 bytes).
//! 3. On the other's buckets, each end sends its own edges of the buckets that differ, in
//!    messages of at most `max_edges_per_message`. The receiver runs them through precheck,
//!    verification and apply as any edges; each end ends up with the newer of both.
//!
//! Both ends push rather than request, so there is no third round trip: each sends what it
//! has in the buckets that differ, and stale edges are ignored by the receiver.

use crate::graph::EdgeTable;
use crate::messages::RoutingSyncMessage;
use crate::summary::BucketDigest;

/// What to send when a connection starts.
pub fn on_connect(table: &EdgeTable) -> RoutingSyncMessage {
    RoutingSyncMessage::SummaryRoot(table.summary_root())
}

/// The answer to the other end's root: our buckets if the roots differ, nothing if equal.
pub fn on_summary_root(table: &EdgeTable, theirs: &BucketDigest) -> Option<RoutingSyncMessage> {
    (table.summary_root() != *theirs)
        .then(|| RoutingSyncMessage::SummaryBuckets(table.summary_buckets().to_vec()))
}

/// The answer to the other end's buckets: our edges of every differing bucket, in messages
/// of at most `max_edges_per_message` edges (none if no bucket differs).
pub fn on_summary_buckets(
    table: &EdgeTable,
    theirs: &[BucketDigest],
    max_edges_per_message: usize,
) -> Vec<RoutingSyncMessage> {
    let differing = table.differing_buckets(theirs);
    if differing.is_empty() {
        return Vec::new();
    }
    let mut edges = table.edges_in_buckets(&differing);
    // A fixed order makes the messages reproducible.
    edges.sort_by_key(|edge| edge.key);
    edges
        .chunks(max_edges_per_message.max(1))
        .map(|chunk| RoutingSyncMessage::Edges(chunk.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::Edge;
    use crate::edge::test_keys::{active_edge, key};
    use crate::graph::{GraphLimits, verify_batch};
    use crate::xeddsa::SigningKey;

    const NOW: u64 = 1_700_000_000_001;

    /// Edges among 30 keys (the first `count` pairs), signed.
    fn edges(keys: &[SigningKey], count: usize) -> Vec<Edge> {
        let mut edges = Vec::new();
        'outer: for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                if edges.len() == count {
                    break 'outer;
                }
                edges.push(active_edge(&keys[i], &keys[j], NOW));
            }
        }
        edges
    }

    /// Runs the exchange between two tables to the end, as two peers would, and returns the
    /// bytes each side sent.
    fn exchange(a: &mut EdgeTable, b: &mut EdgeTable) -> (usize, usize) {
        let mut sent = [0usize; 2];
        let mut inbox: [Vec<RoutingSyncMessage>; 2] = [vec![on_connect(b)], vec![on_connect(a)]];
        sent[0] += inbox[1][0].encode().len();
        sent[1] += inbox[0][0].encode().len();
        while inbox.iter().any(|messages| !messages.is_empty()) {
            for side in 0..2 {
                let messages = std::mem::take(&mut inbox[side]);
                let table: &mut EdgeTable = if side == 0 { a } else { b };
                for message in messages {
                    let bytes = message.encode();
                    let message = RoutingSyncMessage::decode(&bytes, 50_000).unwrap();
                    let replies = match message {
                        RoutingSyncMessage::SummaryRoot(root) => {
                            on_summary_root(table, &root).into_iter().collect()
                        }
                        RoutingSyncMessage::SummaryBuckets(buckets) => {
                            on_summary_buckets(table, &buckets, 50_000)
                        }
                        RoutingSyncMessage::Edges(edges) => {
                            let check = table.precheck(edges, NOW);
                            let verified = verify_batch(check.to_verify);
                            assert!(verified.bad.is_none());
                            table.apply(verified.valid);
                            Vec::new()
                        }
                        other => panic!("unexpected {other:?}"),
                    };
                    for reply in replies {
                        sent[side] += reply.encode().len();
                        inbox[1 - side].push(reply);
                    }
                }
            }
        }
        (sent[0], sent[1])
    }

    /// Equal tables exchange only their roots: a few dozen bytes, whatever their size.
    #[test]
    fn equal_tables_exchange_only_the_root() {
        let keys: Vec<SigningKey> = (0..30).map(key).collect();
        let all = edges(&keys, 300);
        let mut a = EdgeTable::new(keys[0].peer_id(), GraphLimits::default());
        let mut b = EdgeTable::new(keys[1].peer_id(), GraphLimits::default());
        a.apply(all.clone());
        b.apply(all.clone());
        let (from_a, from_b) = exchange(&mut a, &mut b);
        assert_eq!((from_a, from_b), (21, 21));
        let full_table_bytes = RoutingSyncMessage::Edges(all).encode().len();
        assert!(full_table_bytes > 60_000);
    }

    /// Tables that differ in a few edges (each side has some the other lacks, one has a
    /// newer nonce) converge, sending the buckets and the differing buckets' edges only.
    #[test]
    fn different_tables_converge_sending_little() {
        let keys: Vec<SigningKey> = (0..30).map(key).collect();
        let all = edges(&keys, 300);
        let mut a = EdgeTable::new(keys[0].peer_id(), GraphLimits::default());
        let mut b = EdgeTable::new(keys[1].peer_id(), GraphLimits::default());
        a.apply(all[..298].to_vec());
        b.apply(all[2..].to_vec());
        let newer = active_edge(&keys[5], &keys[6], NOW + 2);
        b.apply(vec![newer]);
        let (from_a, from_b) = exchange(&mut a, &mut b);
        assert_eq!(a.summary_root(), b.summary_root());
        assert_eq!(a.len(), 300);
        assert_eq!(a.get(&newer.key), Some(&newer));
        let full_table_bytes = RoutingSyncMessage::Edges(all).encode().len();
        // Root + buckets + a handful of buckets' edges, against the whole table.
        assert!(from_a < 5_200 + 10 * 201, "a sent {from_a}");
        assert!(from_b < 5_200 + 10 * 201, "b sent {from_b}");
        assert!(from_a + from_b < full_table_bytes / 4);
        println!(
            "different tables: a sent {from_a} B, b sent {from_b} B, full table {full_table_bytes} B"
        );
    }
}
