//! [`ChainStatus`]: where a node's chain is (AElf's best chain and last irreversible block,
//! with the chain's identity), the message on `ChainStatus` (65), and [`PeerChainStatus`],
//! what we know of a peer's. Pure: the bytes and their checks.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use wire::ProtocolId;

/// A 32-byte block hash (or the genesis hash naming a chain); shown as 64 hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockHash(pub [u8; 32]);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

/// A node's chain status: the chain it follows (its genesis block's hash), its best block
/// and its last irreversible block (LIB). Set through
/// [`Network::set_chain_status`](crate::Network::set_chain_status); sent on `ChainStatus`
/// (65) when a connection starts and again when it changes.
///
/// In BCS, 112 bytes: `genesis` (32), `best_height` (u64 LE), `best_hash` (32),
/// `lib_height` (u64 LE), `lib_hash` (32); `wire-format.md` §8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The hash of the chain's genesis block: two nodes with different ones are on different
    /// chains and do not stay connected.
    pub genesis: BlockHash,
    /// Height of the best (head) block.
    pub best_height: u64,
    /// Hash of the best block.
    pub best_hash: BlockHash,
    /// Height of the last irreversible block; at most `best_height`.
    pub lib_height: u64,
    /// Hash of the last irreversible block.
    pub lib_hash: BlockHash,
}

/// The size of a [`ChainStatus`] in BCS; a payload of any other size is malformed.
pub const CHAIN_STATUS_BYTES: usize = 112;

/// A peer's chain status as we last heard it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerChainStatus {
    /// What it said.
    pub status: ChainStatus,
    /// When it arrived, by the system clock.
    pub updated_at: SystemTime,
    /// How many statuses it has sent on this connection.
    pub updates: u64,
}

/// Why a chain status payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadChainStatus {
    /// Not [`CHAIN_STATUS_BYTES`] long.
    #[error("chain status of {0} bytes, not {CHAIN_STATUS_BYTES}")]
    WrongSize(usize),
    /// Its LIB is above its best block.
    #[error("chain status with its irreversible block above its best block")]
    LibAboveBest,
}

impl ChainStatus {
    /// Whether `self`'s best block is above `other`'s.
    pub fn is_ahead_of(&self, other_best_height: u64) -> bool {
        self.best_height > other_best_height
    }
}

/// Decodes a chain status payload: exactly [`CHAIN_STATUS_BYTES`], LIB not above best.
pub(crate) fn decode(payload: &[u8]) -> Result<ChainStatus, BadChainStatus> {
    if payload.len() != CHAIN_STATUS_BYTES {
        return Err(BadChainStatus::WrongSize(payload.len()));
    }
    // A fixed-size struct: any 112 bytes decode.
    let status: ChainStatus = ProtocolId::CHAIN_STATUS
        .from_bytes(payload)
        .map_err(|_| BadChainStatus::WrongSize(payload.len()))?;
    if status.lib_height > status.best_height {
        return Err(BadChainStatus::LibAboveBest);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of `wire-format.md` §8: three hashes raw, heights little-endian.
    #[test]
    fn bytes_match_the_wire_format() {
        let status = ChainStatus {
            genesis: BlockHash([0x11; 32]),
            best_height: 0x0102,
            best_hash: BlockHash([0x22; 32]),
            lib_height: 0x01,
            lib_hash: BlockHash([0x33; 32]),
        };
        let bytes = ProtocolId::CHAIN_STATUS.to_bytes(&status).unwrap();
        let mut expected = vec![0x11; 32];
        expected.extend([0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        expected.extend([0x22; 32]);
        expected.extend([0x01, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0x33; 32]);
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(bytes.len(), CHAIN_STATUS_BYTES);
        assert_eq!(decode(&expected).unwrap(), status);
    }

    /// Wrong sizes and a LIB above the best block are refused.
    #[test]
    fn bad_statuses_are_refused() {
        assert_eq!(decode(&[0; 111]), Err(BadChainStatus::WrongSize(111)));
        assert_eq!(decode(&[0; 113]), Err(BadChainStatus::WrongSize(113)));
        let bad = ChainStatus {
            best_height: 1,
            lib_height: 2,
            ..ChainStatus::default()
        };
        let bytes = ProtocolId::CHAIN_STATUS.to_bytes(&bad).unwrap();
        assert_eq!(decode(&bytes), Err(BadChainStatus::LibAboveBest));
    }
}
