//! The ROUTING_SYNC (protocol 67) message and the bounded decoders of both routing
//! protocols (ROUTED, 68, carries one [`RoutedMessage`]). Byte layouts are in
//! `docs/wire-format.md` section 7.
//!
//! Decoding checks every declared length against its limit before BCS allocates anything
//! for it: the variant and the first length prefix are read by hand, and a count that is
//! over the limit, or that the remaining bytes could not hold, is refused at once.

use serde::{Deserialize, Serialize};

use crate::edge::{Edge, EdgeProposal};
use crate::error::Error;
use crate::routed::RoutedMessage;
use crate::summary::{BucketDigest, SUMMARY_BUCKETS};

/// Deepest nesting any routing message has (enum in struct in enum), with room to spare.
const MAX_CONTAINER_DEPTH: usize = 8;
/// Fewest bytes one edge takes in BCS (a removal: 64 + 8 + 1 + 1 + 64).
pub const MIN_EDGE_BYTES: usize = 138;
/// Bytes of one bucket digest in BCS.
const BUCKET_DIGEST_BYTES: usize = 20;

/// A ROUTING_SYNC message. In BCS a ULEB128 variant index, then the variant's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingSyncMessage {
    /// Variant 0: the digest of the whole table, sent by both ends on connect.
    SummaryRoot(BucketDigest),
    /// Variant 1: the 256 bucket digests, sent when the roots differ.
    SummaryBuckets(Vec<BucketDigest>),
    /// Variant 2: edges (the differing buckets' content, or an incremental broadcast).
    Edges(Vec<Edge>),
    /// Variant 3: the opening half of a new edge, when a connection starts.
    EdgeProposal(EdgeProposal),
    /// Variant 4: the proposal, completed by the other end.
    EdgeAccepted(Edge),
    /// Variant 5: the proposal's nonce was not above this one; propose again above it.
    EdgeProposalStale {
        /// The nonce the other end holds for the edge.
        known_nonce: u64,
    },
}

impl RoutingSyncMessage {
    /// The BCS encoding.
    pub fn encode(&self) -> Vec<u8> {
        // BCS of these types cannot fail (no maps, depth well under the limit).
        bcs::to_bytes(self).unwrap_or_default()
    }

    /// Decodes `bytes`, refusing more than `max_edges_per_message` edges, or a bucket list
    /// other than 256 long, before allocating them.
    pub fn decode(bytes: &[u8], max_edges_per_message: usize) -> Result<Self, Error> {
        let (variant, rest) = read_uleb128(bytes)?;
        let limit_and_size = match variant {
            1 => Some((SUMMARY_BUCKETS, BUCKET_DIGEST_BYTES)),
            2 => Some((max_edges_per_message, MIN_EDGE_BYTES)),
            _ => None,
        };
        if let Some((limit, item_bytes)) = limit_and_size {
            let (declared, items) = read_uleb128(rest)?;
            let fits = declared <= limit as u64;
            let holdable = declared.saturating_mul(item_bytes as u64) <= items.len() as u64;
            if !fits || !holdable {
                return Err(Error::TooManyItems { declared, limit });
            }
            if variant == 1 && declared != SUMMARY_BUCKETS as u64 {
                return Err(Error::Malformed(format!(
                    "{declared} summary buckets, expected {SUMMARY_BUCKETS}"
                )));
            }
        }
        bcs::from_bytes_with_limit(bytes, MAX_CONTAINER_DEPTH)
            .map_err(|error| Error::Malformed(error.to_string()))
    }
}

/// Encodes a ROUTED message.
pub fn encode_routed(message: &RoutedMessage) -> Vec<u8> {
    bcs::to_bytes(message).unwrap_or_default()
}

/// Decodes a ROUTED message. Its only variable part is the body, whose declared length BCS
/// checks against the bytes present before copying; the frame limit of the connection
/// bounds it.
pub fn decode_routed(bytes: &[u8]) -> Result<RoutedMessage, Error> {
    bcs::from_bytes_with_limit(bytes, MAX_CONTAINER_DEPTH)
        .map_err(|error| Error::Malformed(error.to_string()))
}

/// Reads a ULEB128 `u64` (at most 10 bytes), returning it and the bytes after it.
fn read_uleb128(bytes: &[u8]) -> Result<(u64, &[u8]), Error> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        let shift = 7 * index as u32;
        if shift == 63 && part > 1 {
            break;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[index + 1..]));
        }
    }
    Err(Error::Malformed("bad ULEB128 length".to_owned()))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::edge::test_keys::{active_edge, key};
    use crate::routed::{RoutedKind, RoutedTarget};

    const NOW: u64 = 1_700_000_000_001;

    /// Every variant round-trips.
    #[test]
    fn sync_messages_round_trip() {
        let (a, b) = (key(1), key(2));
        let edge = active_edge(&a, &b, NOW);
        let mut rng = StdRng::seed_from_u64(0);
        let proposal = EdgeProposal::new(&a, b.peer_id(), NOW, None, &mut rng).unwrap();
        let messages = vec![
            RoutingSyncMessage::SummaryRoot(BucketDigest::default()),
            RoutingSyncMessage::SummaryBuckets(vec![BucketDigest::default(); SUMMARY_BUCKETS]),
            RoutingSyncMessage::Edges(vec![edge, edge.remove(&a, &mut rng).unwrap()]),
            RoutingSyncMessage::EdgeProposal(proposal),
            RoutingSyncMessage::EdgeAccepted(edge),
            RoutingSyncMessage::EdgeProposalStale { known_nonce: 9 },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(RoutingSyncMessage::decode(&bytes, 10).unwrap(), message);
        }
    }

    /// A removal is the documented minimum size.
    #[test]
    fn removal_is_the_smallest_edge() {
        let (a, b) = (key(1), key(2));
        let mut rng = StdRng::seed_from_u64(0);
        let removal = active_edge(&a, &b, NOW).remove(&a, &mut rng).unwrap();
        assert_eq!(bcs::to_bytes(&removal).unwrap().len(), MIN_EDGE_BYTES);
        assert_eq!(bcs::to_bytes(&active_edge(&a, &b, NOW)).unwrap().len(), 201);
    }

    /// Declared counts over the limit, or more than the bytes could hold, are refused
    /// before decoding.
    #[test]
    fn declared_lengths_are_checked_first() {
        // Edges: variant 2, count 3 with a limit of 2.
        let (a, b) = (key(1), key(2));
        let edge = active_edge(&a, &b, NOW);
        let three = RoutingSyncMessage::Edges(vec![edge; 3]).encode();
        assert!(matches!(
            RoutingSyncMessage::decode(&three, 2),
            Err(Error::TooManyItems {
                declared: 3,
                limit: 2
            })
        ));
        // A count of 2^62 in a 12-byte message.
        let mut huge = vec![2u8];
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        assert!(matches!(
            RoutingSyncMessage::decode(&huge, usize::MAX),
            Err(Error::TooManyItems { .. })
        ));
        // 255 buckets.
        let short = bcs::to_bytes(&RoutingSyncMessage::SummaryBuckets(vec![
            BucketDigest::default();
            255
        ]))
        .unwrap();
        assert!(matches!(
            RoutingSyncMessage::decode(&short, 10),
            Err(Error::Malformed(_))
        ));
        // Trailing bytes.
        let mut trailing = RoutingSyncMessage::EdgeProposalStale { known_nonce: 1 }.encode();
        trailing.push(0);
        assert!(RoutingSyncMessage::decode(&trailing, 10).is_err());
    }

    /// A routed message round-trips through the ROUTED codec.
    #[test]
    fn routed_round_trip() {
        let message = RoutedMessage::new(
            &key(1),
            RoutedTarget::Peer(key(2).peer_id()),
            100,
            1,
            RoutedKind::DirectSend,
            3,
            Bytes::from_static(b"x"),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(decode_routed(&encode_routed(&message)).unwrap(), message);
    }

    proptest! {
        /// Arbitrary bytes never panic either decoder.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = RoutingSyncMessage::decode(&bytes, 50_000);
            let _ = decode_routed(&bytes);
        }

        /// Arbitrary bytes after a valid variant and count prefix never panic either.
        #[test]
        fn decoding_prefixed_garbage_never_panics(variant in 0u8..8, count in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut bytes = vec![variant];
            let mut count = u64::from(count);
            loop {
                let byte = (count & 0x7f) as u8;
                count >>= 7;
                if count == 0 { bytes.push(byte); break; }
                bytes.push(byte | 0x80);
            }
            bytes.extend(tail);
            let _ = RoutingSyncMessage::decode(&bytes, 50_000);
        }
    }
}

/// The example of `docs/wire-format.md` section 7, pinned.
#[cfg(test)]
mod documented_example {
    use crate::edge::{Edge, EdgeKey, EdgeProof, edge_signing_bytes};
    use crate::xeddsa::SigningKey;

    /// An active edge between the keys of private keys 0x01×32 and 0x02×32, nonce
    /// 1,700,000,000,001 (0x18bcfe56801), each signature made with Z = 64 zero bytes.
    pub(crate) fn example_edge() -> Edge {
        let a = SigningKey::from_x25519_private_key([1; 32]);
        let b = SigningKey::from_x25519_private_key([2; 32]);
        let key = EdgeKey::new(a.peer_id(), b.peer_id()).unwrap();
        let nonce = 1_700_000_000_001;
        let bytes = edge_signing_bytes(&key, nonce);
        let (k0, k1) = if key.peer0() == a.peer_id() {
            (&a, &b)
        } else {
            (&b, &a)
        };
        Edge {
            key,
            nonce,
            proof: EdgeProof::Active {
                signature0: k0.sign_with_random(&[&bytes], &[0; 64]),
                signature1: k1.sign_with_random(&[&bytes], &[0; 64]),
            },
        }
    }

    /// The documented hex is what BCS writes, and it decodes and verifies.
    #[test]
    fn documented_edge_hex() {
        let edge = example_edge();
        let expected = concat!(
            "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209",
            "ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59",
            "0168e5cf8b010000",
            "00",
            "e2ada0f8acac499f62b08712b77232fc243176f87939758c852f8b8a5d9364dc",
            "0f78db9a12d3d3f3f8f317d7f5d4f34a1d6f2213f2265e8cc15129b77da3f00b",
            "d5e01651b3e4534eefe12b2f6153d2d6751696ecb720683874b710324ccb1191",
            "4fff1a585daebf175ced2ed245109cb89d98fd5d2e6600976fd0185ba2c3c10c",
        );
        assert_eq!(hex::encode(bcs::to_bytes(&edge).unwrap()), expected);
        let decoded: Edge = bcs::from_bytes(&hex::decode(expected).unwrap()).unwrap();
        decoded.verify_signatures().unwrap();
    }
}
