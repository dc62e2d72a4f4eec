//! [`BlockArchive`]: where a [`StoreHandle`](crate::StoreHandle) keeps the blocks older than
//! its in-memory tier, implemented by the node on its on-disk store; and [`ArchiveWriter`],
//! the task that copies new blocks into it in batches, off the async runtime's threads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::message::Block;
use crate::store::StoreHandle;

/// What an archive failed with: the implementation's own error.
pub type ArchiveError = Box<dyn std::error::Error + Send + Sync>;

/// How often the [`ArchiveWriter`] copies the new blocks into the archive: one transaction
/// for all the blocks committed in that time (about ten at the demo's rate).
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(1);

/// The most blocks written in one archive transaction.
pub const MAX_ARCHIVE_BATCH_BLOCKS: usize = 256;

/// The most bytes of blocks ([`Block::wire_size`]) written in one archive transaction (though
/// always one block).
pub const MAX_ARCHIVE_BATCH_BYTES: usize = 8 * 1024 * 1024;

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
/// Every method may block on the disk: [`StoreHandle`] and [`StateSync`](crate::StateSync)
/// call them on tokio's blocking threads (`spawn_blocking`), never on the runtime's workers.
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
}

/// The task that copies a [`StoreHandle`]'s new blocks into its archive every
/// [`ARCHIVE_INTERVAL`], in transactions of at most [`MAX_ARCHIVE_BATCH_BLOCKS`] and
/// [`MAX_ARCHIVE_BATCH_BYTES`], on a blocking thread. The in-memory tier keeps a block until
/// it is archived; if the archive falls a whole in-memory tier behind (a stalled disk), the
/// oldest unarchived blocks are dropped instead (counted), and the archive starts again after
/// the gap. Made by [`StoreHandle::with_archive`]; [`run`](Self::run) it in a task.
#[derive(Debug)]
pub struct ArchiveWriter {
    pub(crate) store: StoreHandle,
    pub(crate) archive: Arc<dyn BlockArchive>,
}

impl ArchiveWriter {
    /// Copies new blocks until `shutdown` completes, then once more (what was committed
    /// until then is archived).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(ARCHIVE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => self.archive_new_blocks().await,
            }
        }
        self.archive_new_blocks().await;
    }

    /// Writes the blocks not archived yet, batch by batch; stops at the first failure (the
    /// next tick tries again).
    pub async fn archive_new_blocks(&self) {
        loop {
            let Some(batch) = self
                .store
                .next_archive_batch(MAX_ARCHIVE_BATCH_BLOCKS, MAX_ARCHIVE_BATCH_BYTES)
            else {
                return;
            };
            let archive = Arc::clone(&self.archive);
            let last = batch.last().map_or(0, |block| block.height);
            let written = batch.len();
            let result = tokio::task::spawn_blocking(move || archive.append(&batch)).await;
            match result {
                Ok(Ok(span)) => self.store.archived(last, written, span),
                Ok(Err(err)) => {
                    self.store.archive_failed(&*err);
                    return;
                }
                Err(join) => {
                    self.store.archive_failed(&join);
                    return;
                }
            }
        }
    }
}
