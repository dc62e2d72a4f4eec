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
    /// announcement. The highest announcement is kept after its peer disconnects, so a node
    /// whose only peer ahead left stays behind until another peer serves it.
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn block(height: u64, parent_id: [u8; 32], size: usize) -> Block {
        Block {
            height,
            id: [height as u8; 32],
            parent_id,
            payload: Bytes::from(vec![0; size]),
        }
    }

    /// Only the next height, naming the last block as its parent, is appended; the height
    /// watch sees each append.
    #[test]
    fn append_takes_only_the_next_linked_block() {
        let store = StoreHandle::new();
        let heights = store.subscribe_height();
        assert!(matches!(
            store.append(block(2, GENESIS_PARENT, 1)),
            Err(Error::NotNext {
                committed: 0,
                got: 2
            })
        ));
        assert!(matches!(
            store.append(block(1, [7; 32], 1)),
            Err(Error::ParentMismatch { height: 1 })
        ));
        store.append(block(1, GENESIS_PARENT, 1)).unwrap();
        assert!(matches!(
            store.append(block(2, GENESIS_PARENT, 1)),
            Err(Error::ParentMismatch { height: 2 })
        ));
        store.append(block(2, [1; 32], 1)).unwrap();
        assert_eq!(store.committed_height(), 2);
        assert_eq!(*heights.borrow(), 2);
        assert_eq!(store.block(0), None);
        assert_eq!(store.block(2).unwrap().id, [2; 32]);
        assert_eq!(store.block(3), None);
    }

    /// A range is cut at the block count, at the byte budget (but never below one block),
    /// and at the committed height.
    #[test]
    fn ranges_stop_at_the_count_the_bytes_or_the_end() {
        let mut parent = GENESIS_PARENT;
        let store = StoreHandle::new();
        for height in 1..=10 {
            let next = block(height, parent, 1000);
            parent = next.id;
            store.append(next).unwrap();
        }
        let heights = |blocks: Vec<Block>| blocks.iter().map(|b| b.height).collect::<Vec<_>>();
        assert_eq!(heights(store.blocks(2, 9, 3, usize::MAX)), [2, 3, 4]);
        let two_blocks = 2 * store.block(1).unwrap().wire_size();
        assert_eq!(heights(store.blocks(1, 10, 100, two_blocks)), [1, 2]);
        assert_eq!(heights(store.blocks(5, 10, 100, 1)), [5]);
        assert_eq!(heights(store.blocks(8, 50, 100, usize::MAX)), [8, 9, 10]);
        assert!(store.blocks(11, 50, 100, usize::MAX).is_empty());
        assert_eq!(heights(store.blocks(0, 1, 100, usize::MAX)), [1]);
    }

    /// `caught_up` compares the committed height with the highest announcement, which never
    /// goes down.
    #[test]
    fn caught_up_follows_the_highest_announcement() {
        let store = StoreHandle::new();
        assert!(store.caught_up());
        store.note_announced(1);
        store.note_announced(0);
        assert_eq!(store.highest_announced(), 1);
        assert!(!store.caught_up());
        store.append(block(1, GENESIS_PARENT, 1)).unwrap();
        assert!(store.caught_up());
    }
}
