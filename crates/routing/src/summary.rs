//! Digests of the edge table for reconciliation: every edge lands in one of
//! [`SUMMARY_BUCKETS`] buckets by a hash of its key; a bucket's digest is the XOR of its
//! edges' 16-byte `(key, nonce)` digests and their count. XOR lets the table update a bucket
//! in O(1) when an edge comes, goes or changes nonce; the root is the XOR of all buckets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::edge::EdgeKey;

/// Buckets of a summary (fixed: part of the wire format).
pub const SUMMARY_BUCKETS: usize = 256;

/// The XOR of 16-byte digests and how many went in. In BCS: 16 raw bytes, then u32 LE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BucketDigest {
    /// XOR of the digests.
    pub xor: [u8; 16],
    /// Number of edges (wrapping).
    pub count: u32,
}

impl BucketDigest {
    /// Adds or takes away (XOR is its own inverse) one edge's digest.
    fn toggle(&mut self, digest: &[u8; 16], add: bool) {
        for (slot, byte) in self.xor.iter_mut().zip(digest) {
            *slot ^= byte;
        }
        self.count = if add {
            self.count.wrapping_add(1)
        } else {
            self.count.wrapping_sub(1)
        };
    }
}

/// Which bucket an edge goes in: the first byte of SHA-256 of its two ends, so that a new
/// nonce keeps it in its bucket.
pub fn bucket_of(key: &EdgeKey) -> u8 {
    let mut hash = Sha256::new();
    hash.update(key.peer0().as_bytes());
    hash.update(key.peer1().as_bytes());
    hash.finalize()[0]
}

/// The 16-byte digest of an edge at a nonce: SHA-256 of peer0, peer1, nonce (u64 LE),
/// first 16 bytes.
pub fn edge_digest(key: &EdgeKey, nonce: u64) -> [u8; 16] {
    let mut hash = Sha256::new();
    hash.update(key.peer0().as_bytes());
    hash.update(key.peer1().as_bytes());
    hash.update(nonce.to_le_bytes());
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hash.finalize()[..16]);
    digest
}

/// The 256 bucket digests of a table, kept up to date edge by edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryBuckets {
    buckets: Vec<BucketDigest>,
}

impl Default for SummaryBuckets {
    fn default() -> Self {
        Self {
            buckets: vec![BucketDigest::default(); SUMMARY_BUCKETS],
        }
    }
}

impl SummaryBuckets {
    /// Adds `key` at `nonce`.
    pub fn add(&mut self, key: &EdgeKey, nonce: u64) {
        self.buckets[usize::from(bucket_of(key))].toggle(&edge_digest(key, nonce), true);
    }

    /// Takes away `key` at `nonce` (it must have been added).
    pub fn remove(&mut self, key: &EdgeKey, nonce: u64) {
        self.buckets[usize::from(bucket_of(key))].toggle(&edge_digest(key, nonce), false);
    }

    /// The buckets, index = bucket number.
    pub fn buckets(&self) -> &[BucketDigest] {
        &self.buckets
    }

    /// The XOR of every bucket, with the total count.
    pub fn root(&self) -> BucketDigest {
        let mut root = BucketDigest::default();
        for bucket in &self.buckets {
            for (slot, byte) in root.xor.iter_mut().zip(&bucket.xor) {
                *slot ^= byte;
            }
            root.count = root.count.wrapping_add(bucket.count);
        }
        root
    }

    /// The buckets whose digests differ from `theirs` (which must have 256 entries; a
    /// shorter list counts its missing buckets as different).
    pub fn differing(&self, theirs: &[BucketDigest]) -> Vec<u8> {
        (0..SUMMARY_BUCKETS)
            .filter(|&index| theirs.get(index) != Some(&self.buckets[index]))
            .map(|index| index as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use netcore::PeerId;

    use super::*;

    /// Adding then removing restores the empty summary; order does not matter.
    #[test]
    fn xor_summary_is_order_free_and_invertible() {
        let k1 = EdgeKey::new(PeerId::new([1; 32]), PeerId::new([2; 32])).unwrap();
        let k2 = EdgeKey::new(PeerId::new([3; 32]), PeerId::new([4; 32])).unwrap();
        let mut a = SummaryBuckets::default();
        let mut b = SummaryBuckets::default();
        a.add(&k1, 1);
        a.add(&k2, 3);
        b.add(&k2, 3);
        b.add(&k1, 1);
        assert_eq!(a, b);
        assert_eq!(a.root().count, 2);
        b.remove(&k1, 1);
        b.add(&k1, 5);
        assert_ne!(a.root(), b.root());
        assert_eq!(a.differing(b.buckets()), vec![bucket_of(&k1)]);
        b.remove(&k1, 5);
        b.remove(&k2, 3);
        assert_eq!(b, SummaryBuckets::default());
    }
}
