//! [`StoreHandle`]: the node's committed blocks, in memory, shared by the node's consensus
//! (which appends its commits) and the [`StateSync`](crate::StateSync) actor (which serves
//! them and appends what it fetches).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::error::Error;
use crate::message::{Block, GENESIS_PARENT};

/// A handle on a node's in-memory block store. Cheap to clone; every clone shares the store.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    blocks: Arc<Mutex<Vec<Block>>>,
    height: watch::Sender<u64>,
    highest_announced: watch::Sender<u64>,
}

impl Default for StoreHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHandle {
    /// An empty store (committed height 0).
    pub fn new() -> Self {
        Self {
            blocks: Arc::default(),
            height: watch::Sender::new(0),
            highest_announced: watch::Sender::new(0),
        }
    }

    /// A store holding `blocks`, appended in order; fails like [`append`](Self::append).
    pub fn with_blocks(blocks: impl IntoIterator<Item = Block>) -> Result<Self, Error> {
        let store = Self::new();
        for block in blocks {
            store.append(block)?;
        }
        Ok(store)
    }

    /// Appends `block`, the next committed block: for the node's consensus, and for the
    /// state sync actor. Fails with [`Error::NotNext`] unless its height is the committed
    /// height plus one, and [`Error::ParentMismatch`] unless its parent id is the last
    /// block's id. Wakes the height watchers.
    pub fn append(&self, block: Block) -> Result<(), Error> {
        // The watch is updated under the lock, so that heights go out in order.
        let mut blocks = self.lock();
        let committed = blocks.len() as u64;
        if block.height != committed + 1 {
            return Err(Error::NotNext {
                committed,
                got: block.height,
            });
        }
        let parent = blocks.last().map_or(GENESIS_PARENT, |last| last.id);
        if block.parent_id != parent {
            return Err(Error::ParentMismatch {
                height: block.height,
            });
        }
        blocks.push(block);
        self.height.send_replace(committed + 1);
        Ok(())
    }

    /// The committed height: the height of the last block, 0 when empty.
    pub fn committed_height(&self) -> u64 {
        *self.height.borrow()
    }

    /// The last block, if any.
    pub fn last_block(&self) -> Option<Block> {
        self.lock().last().cloned()
    }

    /// The block at `height`, if committed.
    pub fn block(&self, height: u64) -> Option<Block> {
        let index = usize::try_from(height.checked_sub(1)?).ok()?;
        self.lock().get(index).cloned()
    }

    /// Consecutive blocks from `start_height` up to `end_height` (both included), at most
    /// `max_blocks` of them and no more than `max_bytes` of [`Block::wire_size`] in all,
    /// though always the first one if it exists. Empty when `start_height` is not committed.
    pub fn blocks(
        &self,
        start_height: u64,
        end_height: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Vec<Block> {
        let blocks = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let start = start_height.max(1);
        for height in start..=end_height {
            if out.len() >= max_blocks {
                break;
            }
            let Some(block) = usize::try_from(height - 1)
                .ok()
                .and_then(|index| blocks.get(index))
            else {
                break;
            };
            bytes += block.wire_size();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(block.clone());
        }
        out
    }

    /// Watches the committed height.
    pub fn subscribe_height(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    /// The highest height any peer announced (0 if none did).
    pub fn highest_announced(&self) -> u64 {
        *self.highest_announced.borrow()
    }

    /// Whether the store has reached the highest height any peer announced. True before any
    /// announcement.
    pub fn caught_up(&self) -> bool {
        self.committed_height() >= self.highest_announced()
    }

    /// Records a peer's announced height.
    pub(crate) fn note_announced(&self, height: u64) {
        self.highest_announced.send_if_modified(|highest| {
            let higher = height > *highest;
            if higher {
                *highest = height;
            }
            higher
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Block>> {
        // A panic while holding the lock leaves the vector whole: recover it.
        self.blocks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
