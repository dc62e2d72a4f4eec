//! [`StoreHandle`]: the node's committed blocks, shared by the node's consensus (which appends
//! its commits) and the [`StateSync`](crate::StateSync) actor (which serves them and appends
//! what it fetches). Recent blocks are in memory, as many as [`Retention`] allows; with a
//! [`BlockArchive`] (the node's on-disk store) every block is also copied there by the
//! [`ArchiveWriter`](crate::ArchiveWriter), and the in-memory tier drops a block once it is archived. The lowest
//! height held, in the archive or in memory, is what the node tells its peers it can serve.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::archive::{ArchiveError, ArchiveSpan, BlockArchive};
use crate::archive_thread::ArchiveThread;
use crate::error::Error;
use crate::message::{Block, GENESIS_PARENT};

/// How much of the chain a [`StoreHandle`] keeps in memory: at most `max_blocks` blocks and
/// `max_bytes` of [`Block::wire_size`], the newest ones, though always the last block. Older
/// blocks are pruned from memory: into the archive when the store has one
/// ([`StoreHandle::with_archive`]), else gone, and a node that needs them must find a peer
/// that still has them, or start from a recent block ([`StoreHandle::start_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Blocks kept in memory. Default [`Retention::DEFAULT_MAX_BLOCKS`] (1,000).
    pub max_blocks: usize,
    /// Bytes of blocks kept in memory. Default [`Retention::DEFAULT_MAX_BYTES`] (8 MiB).
    pub max_bytes: usize,
}

impl Retention {
    /// Blocks kept in memory unless configured.
    pub const DEFAULT_MAX_BLOCKS: usize = 1_000;
    /// Bytes of blocks kept in memory unless configured: 8 MiB, full within the first minute
    /// at the demo's load (about 100 of its 81 KB blocks, 10 s) and a `peerlane node`
    /// validator's (about 500 of its 16 KB blocks, 55 s), so that memory is flat after that.
    /// Peers a little behind are served from memory; older heights come from the archive.
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

    fn exceeded_by(self, blocks: usize, bytes: usize, factor: usize) -> bool {
        blocks > self.max_blocks.saturating_mul(factor)
            || bytes > self.max_bytes.saturating_mul(factor)
    }
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
    /// Blocks held in memory.
    pub blocks: usize,
    /// Bytes of blocks held in memory ([`Block::wire_size`]).
    pub bytes: usize,
    /// The lowest height held and served, in the archive or in memory; 0 when empty.
    pub lowest_height: u64,
    /// Blocks pruned from memory since the store was made (archived ones included).
    pub pruned: u64,
    /// Blocks in the archive (0 without one).
    pub archived_blocks: u64,
    /// Bytes in the archive, as it counts them.
    pub archived_bytes: u64,
    /// Archive write transactions that succeeded.
    pub archive_writes: u64,
    /// Blocks written to the archive.
    pub archive_blocks_written: u64,
    /// Archive writes that failed (retried at the next interval).
    pub archive_write_errors: u64,
    /// Blocks pruned from memory before they were archived (the archive fell a whole
    /// in-memory tier behind); the archive starts again after them.
    pub archive_dropped: u64,
}

/// A handle on a node's block store. Cheap to clone; every clone shares the store.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    chain: Arc<Mutex<Chain>>,
    height: watch::Sender<u64>,
    highest_announced: watch::Sender<u64>,
}

/// The blocks held in memory: consecutive heights ending at the committed height.
#[derive(Debug, Default)]
struct Chain {
    blocks: VecDeque<Block>,
    bytes: usize,
    retention: Retention,
    pruned: u64,
    archive: Option<ArchiveState>,
}

/// The archive as the store knows it.
#[derive(Debug)]
struct ArchiveState {
    archive: Arc<dyn BlockArchive>,
    /// Where its calls run, after the opening ones.
    thread: ArchiveThread,
    /// What it held after the last write.
    span: Option<ArchiveSpan>,
    /// The lowest height not archived yet: the blocks in memory below it are in the archive.
    next_height: u64,
    writes: u64,
    blocks_written: u64,
    write_errors: u64,
    dropped: u64,
}

impl Chain {
    fn committed(&self) -> u64 {
        self.blocks.back().map_or(0, |last| last.height)
    }

    fn lowest(&self) -> u64 {
        self.blocks.front().map_or(0, |first| first.height)
    }

    /// The archive's span when it joins onto the blocks in memory (so the heights from its
    /// lowest to the committed height are all held).
    fn joined_archive(&self) -> Option<ArchiveSpan> {
        let span = self.archive.as_ref()?.span?;
        let lowest = self.lowest();
        (!self.blocks.is_empty() && span.lowest < lowest && span.highest + 1 >= lowest)
            .then_some(span)
    }

    /// The lowest height held, in the archive or in memory.
    fn lowest_held(&self) -> u64 {
        self.joined_archive()
            .map_or_else(|| self.lowest(), |span| span.lowest)
    }

    fn get(&self, height: u64) -> Option<&Block> {
        let index = usize::try_from(height.checked_sub(self.lowest())?).ok()?;
        self.blocks.get(index)
    }

    fn push(&mut self, block: Block) {
        self.bytes += block.wire_size();
        self.blocks.push_back(block);
        self.prune();
    }

    /// Drops the oldest blocks past the retention, though not those the archive has not
    /// taken yet, unless they are a whole second retention's worth (a stalled archive must
    /// not grow memory without bound).
    fn prune(&mut self) {
        let retention = self.retention;
        while self.blocks.len() > 1 && retention.exceeded_by(self.blocks.len(), self.bytes, 1) {
            let Some(oldest) = self.blocks.front().map(|block| block.height) else {
                break;
            };
            if let Some(archive) = &mut self.archive
                && oldest >= archive.next_height
            {
                if !retention.exceeded_by(self.blocks.len(), self.bytes, 2) {
                    break;
                }
                archive.dropped += 1;
                archive.next_height = oldest + 1;
            }
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
    /// An empty store (committed height 0) with the default [`Retention`] and no archive.
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty store keeping what `retention` allows, with no archive.
    pub fn with_retention(retention: Retention) -> Self {
        Self::from_chain(
            Chain {
                retention,
                ..Chain::default()
            },
            0,
        )
    }

    fn from_chain(chain: Chain, height: u64) -> Self {
        Self {
            chain: Arc::new(Mutex::new(chain)),
            height: watch::Sender::new(height),
            highest_announced: watch::Sender::new(0),
        }
    }

    /// A store keeping what `retention` allows in memory and every block in `archive` too
    /// (bounded by the archive), copied by the [`ArchiveWriter`](crate::ArchiveWriter) to run
    /// with it ([`ArchiveWriter::new`](crate::ArchiveWriter::new)). When
    /// `archive` holds blocks (a restart), the store resumes at its highest block: that is
    /// the committed height, the archive's blocks are served, and state sync goes on from
    /// there. Blocks on the disk: call it from a blocking thread. Starts the thread every
    /// later archive call runs on (`state-sync-archive`), which ends with the last clone of
    /// the store; fails if it cannot.
    pub fn with_archive(
        retention: Retention,
        archive: Arc<dyn BlockArchive>,
    ) -> Result<Self, ArchiveError> {
        let span = archive.span()?;
        let last = match span {
            Some(span) => archive
                .read(span.highest, span.highest, 1, usize::MAX)?
                .into_iter()
                .next(),
            None => None,
        };
        let thread = ArchiveThread::spawn(archive.idle_hook())?;
        let mut chain = Chain {
            retention,
            archive: Some(ArchiveState {
                archive,
                thread,
                span,
                next_height: last.as_ref().map_or(1, |last| last.height + 1),
                writes: 0,
                blocks_written: 0,
                write_errors: 0,
                dropped: 0,
            }),
            ..Chain::default()
        };
        let height = last.as_ref().map_or(0, |last| last.height);
        if let Some(last) = last {
            chain.push(last);
        }
        Ok(Self::from_chain(chain, height))
    }

    /// The archive and the thread its calls run on, if the store has one.
    pub(crate) fn archive(&self) -> Option<(Arc<dyn BlockArchive>, ArchiveThread)> {
        self.lock()
            .archive
            .as_ref()
            .map(|archive| (Arc::clone(&archive.archive), archive.thread.clone()))
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
    /// it: the blocks held in memory are dropped and `block` becomes the lowest and last one,
    /// its parent taken on trust (the archive, no longer joined onto it, is not served and
    /// starts again from `block`). For a node whose next height no peer serves any more (they
    /// pruned it): as a new Aptos node bootstraps from a recent state rather than from
    /// genesis. Fails with [`Error::NotAhead`] unless `block` is above the committed height
    /// plus one.
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
        if let Some(archive) = &mut chain.archive {
            archive.next_height = height;
        }
        chain.push(block);
        self.height.send_replace(height);
        Ok(())
    }

    /// The committed height: the height of the last block, 0 when empty.
    pub fn committed_height(&self) -> u64 {
        *self.height.borrow()
    }

    /// The lowest height the store holds (and serves), in the archive or in memory; 0 when
    /// empty.
    pub fn lowest_height(&self) -> u64 {
        self.lock().lowest_held()
    }

    /// The lowest height held in memory, 0 when empty.
    pub fn lowest_in_memory(&self) -> u64 {
        self.lock().lowest()
    }

    /// What the store holds, and how much it pruned and archived.
    pub fn retained(&self) -> Retained {
        let chain = self.lock();
        let mut retained = Retained {
            blocks: chain.blocks.len(),
            bytes: chain.bytes,
            lowest_height: chain.lowest_held(),
            pruned: chain.pruned,
            ..Retained::default()
        };
        if let Some(archive) = &chain.archive {
            let span = archive.span.unwrap_or_default();
            retained.archived_blocks = span.blocks;
            retained.archived_bytes = span.bytes;
            retained.archive_writes = archive.writes;
            retained.archive_blocks_written = archive.blocks_written;
            retained.archive_write_errors = archive.write_errors;
            retained.archive_dropped = archive.dropped;
        }
        retained
    }

    /// The last block, if any.
    pub fn last_block(&self) -> Option<Block> {
        self.lock().blocks.back().cloned()
    }

    /// The block at `height`, if committed and held in memory.
    pub fn block(&self, height: u64) -> Option<Block> {
        self.lock().get(height).cloned()
    }

    /// Consecutive blocks held in memory from `start_height` up to `end_height` (both
    /// included), at most `max_blocks` of them and no more than `max_bytes` of
    /// [`Block::wire_size`] in all, though always the first one if it exists. Empty when
    /// `start_height` is not committed or not in memory ([`archived_range`](Self::archived_range)
    /// says where the archive serves it).
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

    /// Where a request from `start_height` to `end_height` is served from the archive: the
    /// archive and the last height to read from it (its highest, at most `end_height`).
    /// `None` when `start_height` is in memory, or not held.
    pub fn archived_range(
        &self,
        start_height: u64,
        end_height: u64,
    ) -> Option<(Arc<dyn BlockArchive>, u64)> {
        let chain = self.lock();
        let span = chain.joined_archive()?;
        let start_height = start_height.max(1);
        (span.lowest <= start_height && start_height < chain.lowest() && start_height <= end_height)
            .then(|| {
                let archive = chain.archive.as_ref().map(|a| Arc::clone(&a.archive))?;
                Some((archive, end_height.min(span.highest)))
            })
            .flatten()
    }

    /// The next blocks to archive (from the lowest not archived yet, at most `max_blocks`
    /// and `max_bytes`, though always one), or `None` when all are archived or there is no
    /// archive.
    pub(crate) fn next_archive_batch(
        &self,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Option<Vec<Block>> {
        let chain = self.lock();
        let from = chain.archive.as_ref()?.next_height.max(chain.lowest());
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut height = from;
        while let Some(block) = chain.get(height) {
            bytes += block.wire_size();
            if batch.len() >= max_blocks || (bytes > max_bytes && !batch.is_empty()) {
                break;
            }
            batch.push(block.clone());
            height += 1;
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Records an archive write of `written` blocks up to `last`, leaving the archive at
    /// `span`; prunes what memory no longer needs.
    pub(crate) fn archived(&self, last: u64, written: usize, span: Option<ArchiveSpan>) {
        let mut chain = self.lock();
        if let Some(archive) = &mut chain.archive {
            archive.span = span;
            archive.next_height = archive.next_height.max(last + 1);
            archive.writes += 1;
            archive.blocks_written += written as u64;
        }
        chain.prune();
    }

    /// Records an archive write that failed; logs the first and every hundredth.
    pub(crate) fn archive_failed(&self, err: &dyn std::error::Error) {
        let mut chain = self.lock();
        if let Some(archive) = &mut chain.archive {
            archive.write_errors += 1;
            if archive.write_errors % 100 == 1 {
                tracing::warn!(error = %err, failures = archive.write_errors, "state sync: archive write failed; retrying");
            }
        }
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

    /// An archive whose every write fails: a stalled disk.
    #[derive(Debug)]
    struct FailingArchive;

    impl BlockArchive for FailingArchive {
        fn append(&self, _: &[Block]) -> Result<Option<ArchiveSpan>, ArchiveError> {
            Err("disk stalled".into())
        }
        fn read(&self, _: u64, _: u64, _: usize, _: usize) -> Result<Vec<Block>, ArchiveError> {
            Ok(Vec::new())
        }
        fn span(&self) -> Result<Option<ArchiveSpan>, ArchiveError> {
            Ok(None)
        }
        fn clear(&self) -> Result<(), ArchiveError> {
            Ok(())
        }
    }

    /// Blocks wait in memory for the archive, but no more than a second retention's worth:
    /// past that the oldest go unarchived (counted), and the store serves from memory only.
    #[tokio::test]
    async fn a_stalled_archive_holds_at_most_twice_the_retention_in_memory() {
        let retention = Retention {
            max_blocks: 5,
            max_bytes: usize::MAX,
        };
        let store = StoreHandle::with_archive(retention, Arc::new(FailingArchive)).unwrap();
        let writer = crate::ArchiveWriter::new(&store).unwrap();
        linked_chain(&store, 1..=20, 10);
        writer.archive_new_blocks().await;
        let retained = store.retained();
        assert_eq!(retained.blocks, 10);
        assert_eq!(retained.archive_dropped, 10);
        assert_eq!(retained.archive_write_errors, 1);
        assert_eq!(retained.archive_writes, 0);
        assert_eq!(store.lowest_height(), 11);
        assert!(store.archived_range(1, 20).is_none());
        assert_eq!(
            store.next_archive_batch(100, usize::MAX).unwrap()[0].height,
            11
        );
    }
}
