//! [`StoreHandle`]: the node's recent committed blocks, in memory, shared by the node's
//! consensus (which appends its commits) and the [`StateSync`](crate::StateSync) actor (which
//! serves them and appends what it fetches). [`Retention`] bounds what it keeps: older blocks
//! are pruned, and the lowest height kept is what the node tells its peers it can serve.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::error::Error;
use crate::message::{Block, GENESIS_PARENT};

/// How much of the chain a [`StoreHandle`] keeps in memory: at most `max_blocks` blocks and
/// `max_bytes` of [`Block::wire_size`], the newest ones, though always the last block. Older
/// blocks are pruned; a node that needs them must find a peer that still has them, or start
/// from a recent block ([`StoreHandle::start_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Blocks kept. Default [`Retention::DEFAULT_MAX_BLOCKS`] (10,000).
    pub max_blocks: usize,
    /// Bytes of blocks kept. Default [`Retention::DEFAULT_MAX_BYTES`] (64 MiB).
    pub max_bytes: usize,
}

impl Retention {
    /// Blocks kept unless configured.
    pub const DEFAULT_MAX_BLOCKS: usize = 10_000;
    /// Bytes of blocks kept unless configured: 64 MiB, a minute or more of the demo's blocks
    /// at 2,000 transactions per second, so peers that fell a little behind are served from
    /// memory while a node running for days holds a constant amount.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_blocks: Self::DEFAULT_MAX_BLOCKS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// What a [`StoreHandle`] holds right now, for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Blocks held.
    pub blocks: usize,
    /// Bytes of blocks held ([`Block::wire_size`]).
    pub bytes: usize,
    /// The lowest height held, 0 when empty.
    pub lowest_height: u64,
    /// Blocks pruned since the store was made.
    pub pruned: u64,
}

/// A handle on a node's in-memory block store. Cheap to clone; every clone shares the store.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    chain: Arc<Mutex<Chain>>,
    height: watch::Sender<u64>,
    highest_announced: watch::Sender<u64>,
}

/// The blocks held: consecutive heights ending at the committed height.
#[derive(Debug, Default)]
struct Chain {
    blocks: VecDeque<Block>,
    bytes: usize,
    retention: Retention,
    pruned: u64,
}

impl Chain {
    fn committed(&self) -> u64 {
        self.blocks.back().map_or(0, |last| last.height)
    }

    fn lowest(&self) -> u64 {
        self.blocks.front().map_or(0, |first| first.height)
    }

    fn get(&self, height: u64) -> Option<&Block> {
        let index = usize::try_from(height.checked_sub(self.lowest())?).ok()?;
        self.blocks.get(index)
    }

    fn push(&mut self, block: Block) {
        self.bytes += block.wire_size();
        self.blocks.push_back(block);
        while self.blocks.len() > 1
            && (self.blocks.len() > self.retention.max_blocks
                || self.bytes > self.retention.max_bytes)
        {
            if let Some(oldest) = self.blocks.pop_front() {
                self.bytes -= oldest.wire_size();
                self.pruned += 1;
            }
        }
    }
}

impl Default for StoreHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHandle {
    /// An empty store (committed height 0) with the default [`Retention`].
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty store keeping what `retention` allows.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            chain: Arc::new(Mutex::new(Chain {
                retention,
                ..Chain::default()
            })),
            height: watch::Sender::new(0),
            highest_announced: watch::Sender::new(0),
        }
    }

    /// A store with the default [`Retention`] holding `blocks`, appended in order; fails like
    /// [`append`](Self::append).
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
    /// block's id. Prunes the oldest blocks past the [`Retention`]; wakes the height watchers.
    pub fn append(&self, block: Block) -> Result<(), Error> {
        // The watch is updated under the lock, so that heights go out in order.
        let mut chain = self.lock();
        let committed = chain.committed();
        if block.height != committed + 1 {
            return Err(Error::NotNext {
                committed,
                got: block.height,
            });
        }
        let parent = chain.blocks.back().map_or(GENESIS_PARENT, |last| last.id);
        if block.parent_id != parent {
            return Err(Error::ParentMismatch {
                height: block.height,
            });
        }
        chain.push(block);
        self.height.send_replace(committed + 1);
        Ok(())
    }

    /// Restarts the store at `block`, a block above the committed height that does not follow
    /// it: the blocks held are dropped and `block` becomes the lowest and last one, its parent
    /// taken on trust. For a node whose next height no peer serves any more (they pruned it):
    /// as a new Aptos node bootstraps from a recent state rather than from genesis. Fails with
    /// [`Error::NotAhead`] unless `block` is above the committed height plus one.
    pub fn start_from(&self, block: Block) -> Result<(), Error> {
        let mut chain = self.lock();
        let committed = chain.committed();
        if block.height <= committed + 1 {
            return Err(Error::NotAhead {
                committed,
                got: block.height,
            });
        }
        let height = block.height;
        chain.pruned += chain.blocks.len() as u64;
        chain.blocks.clear();
        chain.bytes = 0;
        chain.push(block);
        self.height.send_replace(height);
        Ok(())
    }

    /// The committed height: the height of the last block, 0 when empty.
    pub fn committed_height(&self) -> u64 {
        *self.height.borrow()
    }

    /// The lowest height the store holds (and serves), 0 when empty.
    pub fn lowest_height(&self) -> u64 {
        self.lock().lowest()
    }

    /// What the store holds, and how much it pruned.
    pub fn retained(&self) -> Retained {
        let chain = self.lock();
        Retained {
            blocks: chain.blocks.len(),
            bytes: chain.bytes,
            lowest_height: chain.lowest(),
            pruned: chain.pruned,
        }
    }

    /// The last block, if any.
    pub fn last_block(&self) -> Option<Block> {
        self.lock().blocks.back().cloned()
    }

    /// The block at `height`, if committed and not pruned.
    pub fn block(&self, height: u64) -> Option<Block> {
        self.lock().get(height).cloned()
    }

    /// Consecutive blocks from `start_height` up to `end_height` (both included), at most
    /// `max_blocks` of them and no more than `max_bytes` of [`Block::wire_size`] in all,
    /// though always the first one if it exists. Empty when `start_height` is not committed
    /// or was pruned.
    pub fn blocks(
        &self,
        start_height: u64,
        end_height: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Vec<Block> {
        let chain = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for height in start_height.max(1)..=end_height {
            if out.len() >= max_blocks {
                break;
            }
            let Some(block) = chain.get(height) else {
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

    fn lock(&self) -> MutexGuard<'_, Chain> {
        // A panic while holding the lock leaves the chain whole: recover it.
        self.chain
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

    fn linked_chain(store: &StoreHandle, heights: std::ops::RangeInclusive<u64>, size: usize) {
        let mut parent = store.last_block().map_or(GENESIS_PARENT, |b| b.id);
        for height in heights {
            let next = block(height, parent, size);
            parent = next.id;
            store.append(next).unwrap();
        }
    }

    /// Past its block count the store prunes the oldest blocks; what is pruned is neither
    /// returned nor served, and the lowest height follows.
    #[test]
    fn the_oldest_blocks_are_pruned_past_the_block_count() {
        let store = StoreHandle::with_retention(Retention {
            max_blocks: 4,
            max_bytes: usize::MAX,
        });
        linked_chain(&store, 1..=10, 10);
        let retained = store.retained();
        assert_eq!((retained.blocks, retained.lowest_height), (4, 7));
        assert_eq!(retained.pruned, 6);
        assert_eq!(store.lowest_height(), 7);
        assert_eq!(store.committed_height(), 10);
        assert_eq!(store.block(6), None);
        assert_eq!(store.block(7).unwrap().height, 7);
        assert!(store.blocks(5, 10, 100, usize::MAX).is_empty());
        assert_eq!(store.blocks(8, 20, 100, usize::MAX).len(), 3);
    }

    /// The byte bound prunes too, but the last block stays however large.
    #[test]
    fn the_byte_bound_prunes_but_keeps_the_last_block() {
        let store = StoreHandle::with_retention(Retention {
            max_blocks: 100,
            max_bytes: 3000,
        });
        linked_chain(&store, 1..=5, 900);
        let retained = store.retained();
        assert!(retained.bytes <= 3000, "{retained:?}");
        assert_eq!(retained.lowest_height, 3);
        linked_chain(&store, 6..=6, 10_000);
        let retained = store.retained();
        assert_eq!((retained.blocks, retained.lowest_height), (1, 6));
    }

    /// A store restarts from a block ahead of its next height, taking its parent on trust,
    /// then appends what follows it; a block that could simply be appended is refused.
    #[test]
    fn a_store_starts_from_a_block_ahead_and_goes_on_from_there() {
        let store = StoreHandle::new();
        linked_chain(&store, 1..=2, 1);
        assert!(matches!(
            store.start_from(block(3, [9; 32], 1)),
            Err(Error::NotAhead {
                committed: 2,
                got: 3
            })
        ));
        store.start_from(block(50, [9; 32], 1)).unwrap();
        assert_eq!(store.committed_height(), 50);
        assert_eq!(store.lowest_height(), 50);
        assert_eq!(store.retained().pruned, 2);
        store.append(block(51, [50; 32], 1)).unwrap();
        assert_eq!(store.blocks(50, 51, 10, usize::MAX).len(), 2);
    }
}
