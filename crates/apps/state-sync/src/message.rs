//! [`StateSyncMsg`] and [`Block`]: what state sync sends and stores.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The id of the (absent) parent of the first block, at height 1.
pub const GENESIS_PARENT: [u8; 32] = [0; 32];

/// A committed block. Heights start at 1; block `h + 1` names block `h`'s id as its parent.
///
/// State sync does not compute ids (consensus does): it checks heights and parent links only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Its height, from 1.
    pub height: u64,
    /// Its id.
    pub id: [u8; 32],
    /// The id of the block at `height - 1`, or [`GENESIS_PARENT`] at height 1.
    pub parent_id: [u8; 32],
    /// The block's contents, opaque to state sync.
    pub payload: Bytes,
}

impl Block {
    /// The size the block takes on the wire, roughly (its payload plus fixed fields).
    pub fn wire_size(&self) -> usize {
        self.payload.len() + 8 + 32 + 32 + 8
    }
}

/// State sync's messages, on `StateSyncDirectSend` (3, announcements) and `StorageServiceRpc`
/// (8, block requests and their responses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateSyncMsg {
    /// Direct send: the sender committed up to `height`, whose block is `block_id`, and
    /// serves the heights from `lowest_height` up (it pruned those below).
    Announce {
        /// The sender's committed height.
        height: u64,
        /// The id of the block at that height.
        block_id: [u8; 32],
        /// The lowest height the sender still holds.
        lowest_height: u64,
    },
    /// RPC request: the blocks from `start_height` to `end_height`, both included.
    GetBlocks {
        /// The first height wanted.
        start_height: u64,
        /// The last height wanted.
        end_height: u64,
    },
    /// RPC response: consecutive blocks from the requested start (maybe fewer than asked for,
    /// maybe none: none when the start is above the server's height or below its lowest), and
    /// the heights the server holds.
    Blocks {
        /// The blocks, in height order.
        blocks: Vec<Block>,
        /// The server's committed height when it answered.
        committed_height: u64,
        /// The lowest height the server held when it answered (0 when empty).
        lowest_height: u64,
    },
}
