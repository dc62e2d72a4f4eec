//! [`ArchiveWriter`]: the task that copies a [`StoreHandle`]'s new blocks into its
//! [`BlockArchive`] in batches, off the async runtime's threads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::archive::BlockArchive;
use crate::archive_thread::ArchiveThread;
use crate::store::StoreHandle;

/// How often the [`ArchiveWriter`] copies the new blocks into the archive: one transaction
/// for all the blocks committed in that time (about ten at the demo's rate).
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(1);

/// The most blocks written in one archive transaction.
pub const MAX_ARCHIVE_BATCH_BLOCKS: usize = 256;

/// The most bytes of blocks ([`Block::wire_size`](crate::Block::wire_size)) written in one archive transaction (though
/// always one block).
pub const MAX_ARCHIVE_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The task that copies a [`StoreHandle`]'s new blocks into its archive every
/// [`ARCHIVE_INTERVAL`], in transactions of at most [`MAX_ARCHIVE_BATCH_BLOCKS`] and
/// [`MAX_ARCHIVE_BATCH_BYTES`], on the store's archive thread. The in-memory tier keeps a
/// block until it is archived; if the archive falls a whole in-memory tier behind (a stalled
/// disk, or a full archive queue), the oldest unarchived blocks are dropped instead
/// (counted), and the archive starts again after the gap. Made by [`ArchiveWriter::new`]; [`run`](Self::run) it in a task.
#[derive(Debug)]
pub struct ArchiveWriter {
    store: StoreHandle,
    archive: Arc<dyn BlockArchive>,
    thread: ArchiveThread,
}

impl ArchiveWriter {
    /// The writer of `store`'s archive; `None` for a store without one
    /// ([`StoreHandle::with_archive`] makes a store with one).
    pub fn new(store: &StoreHandle) -> Option<Self> {
        let (archive, thread) = store.archive()?;
        Some(Self {
            archive,
            thread,
            store: store.clone(),
        })
    }

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
            let result = self.thread.run(move || archive.append(&batch)).await;
            match result.and_then(|appended| appended) {
                Ok(span) => self.store.archived(last, written, span),
                Err(err) => {
                    self.store.archive_failed(&*err);
                    return;
                }
            }
        }
    }
}
