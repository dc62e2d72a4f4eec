//! The state-sync store of a node: recent blocks in memory and, with a data directory, older
//! ones in the `blocks` table of `<data_dir>/peerlane.redb` ([`DiskArchive`], state sync's
//! [`BlockArchive`] on the `store` crate's [`BlockTable`]).
//!
//! ```text
//! consensus / state sync ── append ──► StoreHandle (memory: apps.state_sync_memory_*)
//!                                          │ ArchiveWriter, every second: one transaction per batch
//!                                          ▼ (a blocking thread)
//!                        DiskArchive ─► BlockTable (apps.state_sync_archive_*), oldest pruned first
//! ```

use std::sync::Arc;

use anyhow::Context;
use state_sync::StoreHandle;
use state_sync::{ArchiveError, ArchiveSpan, ArchiveWriter, Block, BlockArchive, Retention};
use store::{BlockLimits, BlockTable};

/// The bounds of a node's state-sync store: memory, and the archive when there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockStoreSettings {
    /// The in-memory tier.
    pub(crate) memory: Retention,
    /// The on-disk archive.
    pub(crate) archive: BlockLimits,
}

/// A node's state-sync store and, with an archive, the task to run that fills it.
pub(crate) struct BlockStore {
    /// The store.
    pub(crate) store: StoreHandle,
    /// Copies new blocks into the archive; `None` without one.
    pub(crate) writer: Option<ArchiveWriter>,
}

impl BlockStore {
    /// A store in memory only: older blocks are pruned.
    pub(crate) fn in_memory(settings: BlockStoreSettings) -> Self {
        Self {
            store: StoreHandle::with_retention(settings.memory),
            writer: None,
        }
    }

    /// A store archiving into `disk`'s `blocks` table. With `fresh_chain` (the node's
    /// consensus starts its chain from genesis at every start: the example consensus keeps
    /// no state) the archive is emptied first; otherwise the store resumes at the archive's
    /// highest block. Blocks on the disk: call it from a blocking context.
    pub(crate) fn open(
        disk: &store::Store,
        settings: BlockStoreSettings,
        fresh_chain: bool,
    ) -> anyhow::Result<Self> {
        let archive = DiskArchive {
            table: BlockTable::new(disk.clone(), settings.archive),
        };
        if fresh_chain {
            archive
                .table
                .clear()
                .context("cannot empty the block archive")?;
        }
        let store = StoreHandle::with_archive(settings.memory, Arc::new(archive))
            .map_err(|err| anyhow::anyhow!("cannot read the block archive: {err}"))?;
        Ok(Self {
            writer: ArchiveWriter::new(&store),
            store,
        })
    }
}

/// State sync's archive in the node's redb file. Blocks are stored BCS-encoded.
#[derive(Debug)]
pub(crate) struct DiskArchive {
    table: BlockTable,
}

fn span(span: store::BlockSpan) -> ArchiveSpan {
    ArchiveSpan {
        lowest: span.lowest,
        highest: span.highest,
        blocks: span.blocks,
        bytes: span.bytes,
    }
}

/// `block` BCS-encoded in a buffer of exactly its size: grown by doubling, a demo block of
/// about 80 KB would take up to twice that, in the allocator's classes for larger objects.
fn encode_exact(block: &Block) -> Result<Vec<u8>, bcs::Error> {
    let mut bytes = Vec::with_capacity(bcs::serialized_size(block)?);
    bcs::serialize_into(&mut bytes, block)?;
    Ok(bytes)
}

impl BlockArchive for DiskArchive {
    fn append(&self, blocks: &[Block]) -> Result<Option<ArchiveSpan>, ArchiveError> {
        let encoded = blocks
            .iter()
            .map(|block| Ok((block.height, encode_exact(block)?)))
            .collect::<Result<Vec<_>, bcs::Error>>()?;
        let records: Vec<(u64, &[u8])> = encoded
            .iter()
            .map(|(height, bytes)| (*height, bytes.as_slice()))
            .collect();
        Ok(self.table.append(&records)?.map(span))
    }

    fn read(
        &self,
        start_height: u64,
        end_height: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Result<Vec<Block>, ArchiveError> {
        // The encoded size is at most the wire size, so the table reads no more than the
        // response may hold (plus one block); the wire sizes cut it exactly.
        let records = self
            .table
            .range(start_height, end_height, max_blocks, max_bytes)?;
        let mut blocks = Vec::with_capacity(records.len());
        let mut bytes = 0usize;
        for (height, record) in records {
            let block: Block = bcs::from_bytes(&record)?;
            if block.height != height {
                return Err(
                    format!("archived block at {height} says height {}", block.height).into(),
                );
            }
            bytes += block.wire_size();
            if bytes > max_bytes && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        Ok(blocks)
    }

    fn span(&self) -> Result<Option<ArchiveSpan>, ArchiveError> {
        Ok(self.table.span()?.map(span))
    }

    fn clear(&self) -> Result<(), ArchiveError> {
        Ok(self.table.clear()?)
    }

    fn idle_hook(&self) -> Option<fn()> {
        // The catch-up's blocks were read on the archive thread and freed on the runtime's
        // workers.
        Some(crate::heap_stats::collect_thread_heap)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use state_sync::GENESIS_PARENT;

    use super::*;

    fn settings(memory_blocks: usize, archive_blocks: u64) -> BlockStoreSettings {
        BlockStoreSettings {
            memory: Retention {
                max_blocks: memory_blocks,
                max_bytes: usize::MAX,
            },
            archive: BlockLimits {
                max_blocks: archive_blocks,
                max_bytes: u64::MAX,
            },
        }
    }

    fn append(store: &StoreHandle, heights: std::ops::RangeInclusive<u64>) {
        for height in heights {
            let parent_id = store.last_block().map_or(GENESIS_PARENT, |last| last.id);
            let mut id = [7; 32];
            id[..8].copy_from_slice(&height.to_be_bytes());
            store
                .append(Block {
                    height,
                    id,
                    parent_id,
                    payload: Bytes::from(vec![height as u8; 1000]),
                })
                .unwrap();
        }
    }

    /// A block's encoding takes exactly its size, and is its BCS encoding.
    #[test]
    fn a_block_is_encoded_in_exactly_its_size() {
        let block = Block {
            height: 9,
            id: [1; 32],
            parent_id: [2; 32],
            payload: Bytes::from(vec![3; 81_000]),
        };
        let encoded = encode_exact(&block).unwrap();
        assert_eq!(encoded.capacity(), encoded.len());
        assert_eq!(encoded, bcs::to_bytes(&block).unwrap());
    }

    /// Blocks go to the `blocks` table in batches and leave memory; after the file is
    /// reopened the store resumes at the highest archived block and serves the archived
    /// heights again, within the archive's bound; a node that starts its chain afresh
    /// empties it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_archive_survives_a_restart_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let open = move |fresh| {
            let disk = store::Store::open(&path).unwrap();
            BlockStore::open(&disk, settings(10, 50), fresh).unwrap()
        };
        let opened = tokio::task::spawn_blocking({
            let open = open.clone();
            move || open(false)
        })
        .await
        .unwrap();
        let (store, writer) = (opened.store, opened.writer.unwrap());
        for ten in 0..8 {
            append(&store, ten * 10 + 1..=ten * 10 + 10);
            writer.archive_new_blocks().await;
        }
        let retained = store.retained();
        assert_eq!(retained.blocks, 10);
        assert_eq!(retained.archived_blocks, 50);
        assert_eq!(retained.archive_writes, 8, "one transaction per batch");
        assert_eq!(store.lowest_height(), 31);
        let (archive, end) = store.archived_range(31, 80).unwrap();
        assert_eq!(end, 80);
        let read = tokio::task::spawn_blocking(move || archive.read(31, 80, 5, usize::MAX))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            read.iter().map(|b| b.height).collect::<Vec<_>>(),
            [31, 32, 33, 34, 35]
        );
        drop((store, writer));

        let reopened = tokio::task::spawn_blocking({
            let open = open.clone();
            move || open(false)
        })
        .await
        .unwrap();
        assert_eq!(reopened.store.committed_height(), 80);
        assert_eq!(reopened.store.lowest_height(), 31);
        append(&reopened.store, 81..=81);
        drop(reopened);

        let fresh = tokio::task::spawn_blocking(move || open(true))
            .await
            .unwrap();
        assert_eq!(fresh.store.committed_height(), 0);
        assert_eq!(fresh.store.lowest_height(), 0);
    }
}
