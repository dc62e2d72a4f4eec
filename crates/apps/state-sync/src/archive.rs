//! [`BlockArchive`]: where a [`StoreHandle`](crate::StoreHandle) keeps the blocks older than
//! its in-memory tier, implemented by the node on its on-disk store.

use crate::message::Block;

/// What an archive failed with: the implementation's own error.
pub type ArchiveError = Box<dyn std::error::Error + Send + Sync>;

/// What an archive holds: consecutive heights `lowest..=highest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveSpan {
    /// The lowest height held.
    pub lowest: u64,
    /// The highest height held.
    pub highest: u64,
    /// Blocks held.
    pub blocks: u64,
    /// Bytes held (as the archive counts them).
    pub bytes: u64,
}

/// An archive of consecutive blocks, bounded by the implementation (the oldest go first).
/// Every method may block on the disk: [`StoreHandle`](crate::StoreHandle) opens it from
/// the caller's (blocking) thread, then it and [`StateSync`](crate::StateSync) call it on the
/// store's archive thread, never on the runtime's workers.
pub trait BlockArchive: Send + Sync + std::fmt::Debug + 'static {
    /// Writes `blocks` (non-empty, consecutive heights) in one transaction, then prunes the
    /// oldest past the archive's bound. When the first does not follow the highest height
    /// held, what is held is dropped first: the archive holds consecutive heights only.
    /// Returns what is held after.
    fn append(&self, blocks: &[Block]) -> Result<Option<ArchiveSpan>, ArchiveError>;

    /// Consecutive blocks from `start_height` to `end_height` (both included), at most
    /// `max_blocks` and no more than `max_bytes` of [`Block::wire_size`] (though always the
    /// first if held); reads no more than it returns, plus one block.
    fn read(
        &self,
        start_height: u64,
        end_height: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Result<Vec<Block>, ArchiveError>;

    /// What is held, `None` when empty.
    fn span(&self) -> Result<Option<ArchiveSpan>, ArchiveError>;

    /// Removes every block.
    fn clear(&self) -> Result<(), ArchiveError>;

    /// A function the store's archive thread calls after a second without a call, once per
    /// such quiet spell, and every 5 s while calls keep coming (a validator's archive writer
    /// calls every second): the place to give back memory the calls left on that thread (the
    /// node returns the thread's freed allocator pages). A plain function, so that the thread
    /// holds nothing of the archive: the archive closes when the store is dropped. None by
    /// default.
    fn idle_hook(&self) -> Option<fn()> {
        None
    }
}
