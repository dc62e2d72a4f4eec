//! [`BlockTable`]: an archive of a chain's blocks by height, the oldest pruned first past its
//! bound ([`BlockLimits`]). The blocks are opaque bytes: this crate does not know the
//! applications' block type. State sync keeps the blocks older than its in-memory tier here.

use redb::{ReadableTable, ReadableTableMetadata};

use crate::db::Store;
use crate::error::{Error, Result};
use crate::tables;

/// Blocks kept by default: 100,000, with [`MAX_BLOCK_BYTES`] the bound that comes first for
/// blocks over 10 KiB.
pub const MAX_BLOCKS: u64 = 100_000;

/// Bytes of blocks kept by default: 1 GiB, about 20 minutes of the demo's blocks
/// (81 KB, 9.5 a second) and nearly two hours of a `peerlane node` validator's (16 KB).
pub const MAX_BLOCK_BYTES: u64 = 1024 * 1024 * 1024;

/// The bounds of a [`BlockTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Blocks kept (at least the newest one): [`MAX_BLOCKS`].
    pub max_blocks: u64,
    /// Bytes kept, all blocks together (though always the newest block): [`MAX_BLOCK_BYTES`].
    pub max_bytes: u64,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self {
            max_blocks: MAX_BLOCKS,
            max_bytes: MAX_BLOCK_BYTES,
        }
    }
}

/// What a [`BlockTable`] holds: consecutive heights `lowest..=highest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// The lowest height held.
    pub lowest: u64,
    /// The highest height held.
    pub highest: u64,
    /// Blocks held.
    pub blocks: u64,
    /// Bytes held, all blocks together.
    pub bytes: u64,
}

/// The block archive in a [`Store`]. Each call is one transaction; the methods block on the
/// disk (see [`Store`]).
#[derive(Clone, Debug)]
pub struct BlockTable {
    store: Store,
    limits: BlockLimits,
}

impl BlockTable {
    /// The block table of `store`, bounded by `limits` (applied at the next append).
    pub fn new(store: Store, limits: BlockLimits) -> Self {
        Self { store, limits }
    }

    /// Writes `blocks` (height and bytes, each the height after the one before) in one
    /// transaction, then prunes the oldest past the bounds. A batch whose first height does
    /// not follow the highest held replaces what is held: the table keeps consecutive heights
    /// only. Returns what is held after.
    pub fn append(&self, blocks: &[(u64, &[u8])]) -> Result<Option<BlockSpan>> {
        if blocks.windows(2).any(|pair| pair[1].0 != pair[0].0 + 1) {
            return Err(Error::BlocksNotConsecutive);
        }
        let limits = self.limits;
        self.store.write(|txn| {
            let mut table = txn.open_table(tables::BLOCKS).map_err(Error::db)?;
            let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
            let mut bytes = meta
                .get(tables::BLOCK_BYTES_KEY)
                .map_err(Error::db)?
                .map_or(0, |guard| guard.value());
            let highest = table.last().map_err(Error::db)?.map(|(key, _)| key.value());
            if let (Some(highest), Some(&(first, _))) = (highest, blocks.first())
                && first != highest + 1
            {
                table.retain(|_, _| false).map_err(Error::db)?;
                bytes = 0;
            }
            for (height, block) in blocks {
                let replaced = table.insert(*height, *block).map_err(Error::db)?;
                if let Some(old) = replaced {
                    bytes = bytes.saturating_sub(old.value().len() as u64);
                }
                bytes += block.len() as u64;
            }
            let mut count = table.len().map_err(Error::db)?;
            while count > 1 && (count > limits.max_blocks || bytes > limits.max_bytes) {
                let Some((_, oldest)) = table.pop_first().map_err(Error::db)? else {
                    break;
                };
                bytes = bytes.saturating_sub(oldest.value().len() as u64);
                count -= 1;
            }
            meta.insert(tables::BLOCK_BYTES_KEY, bytes)
                .map_err(Error::db)?;
            span_of(&table, bytes)
        })
    }

    /// Consecutive blocks from `start` up to `end` (both included), at most `max_blocks` of
    /// them and no more than `max_bytes` in all, though always the first if held. Reads no
    /// block past those it returns (and the one that would overflow `max_bytes`).
    pub fn range(
        &self,
        start: u64,
        end: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        self.store.read(|txn| {
            let table = txn.open_table(tables::BLOCKS).map_err(Error::db)?;
            let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut total = 0usize;
            let entries = table.range(start..=end).map_err(Error::db)?;
            for (expected, entry) in (start..).zip(entries) {
                if out.len() >= max_blocks {
                    break;
                }
                let (height, value) = entry.map_err(Error::db)?;
                let height = height.value();
                if height != expected {
                    break;
                }
                let value = value.value();
                total = total.saturating_add(value.len());
                if total > max_bytes && !out.is_empty() {
                    break;
                }
                out.push((height, value.to_vec()));
            }
            Ok(out)
        })
    }

    /// The block at `height`, if held.
    pub fn get(&self, height: u64) -> Result<Option<Vec<u8>>> {
        self.store.read(|txn| {
            let table = txn.open_table(tables::BLOCKS).map_err(Error::db)?;
            Ok(table
                .get(height)
                .map_err(Error::db)?
                .map(|value| value.value().to_vec()))
        })
    }

    /// What the table holds, `None` when empty.
    pub fn span(&self) -> Result<Option<BlockSpan>> {
        self.store.read(|txn| {
            let table = txn.open_table(tables::BLOCKS).map_err(Error::db)?;
            let meta = txn.open_table(tables::META).map_err(Error::db)?;
            let bytes = meta
                .get(tables::BLOCK_BYTES_KEY)
                .map_err(Error::db)?
                .map_or(0, |guard| guard.value());
            span_of(&table, bytes)
        })
    }

    /// Removes every block.
    pub fn clear(&self) -> Result<()> {
        self.store.write(|txn| {
            let mut table = txn.open_table(tables::BLOCKS).map_err(Error::db)?;
            table.retain(|_, _| false).map_err(Error::db)?;
            let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
            meta.insert(tables::BLOCK_BYTES_KEY, 0).map_err(Error::db)?;
            Ok(())
        })
    }
}

fn span_of(
    table: &impl ReadableTable<u64, &'static [u8]>,
    bytes: u64,
) -> Result<Option<BlockSpan>> {
    let first = table
        .first()
        .map_err(Error::db)?
        .map(|(key, _)| key.value());
    let last = table.last().map_err(Error::db)?.map(|(key, _)| key.value());
    let blocks = table.len().map_err(Error::db)?;
    Ok(first.zip(last).map(|(lowest, highest)| BlockSpan {
        lowest,
        highest,
        blocks,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(height: u64, size: usize) -> Vec<u8> {
        vec![height as u8; size]
    }

    fn append(
        table: &BlockTable,
        heights: std::ops::RangeInclusive<u64>,
        size: usize,
    ) -> Option<BlockSpan> {
        let blocks: Vec<(u64, Vec<u8>)> = heights.map(|h| (h, block(h, size))).collect();
        let refs: Vec<(u64, &[u8])> = blocks.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        table.append(&refs).unwrap()
    }

    /// Past the block count or the byte bound the oldest blocks go, in the same write.
    #[test]
    fn the_oldest_blocks_are_pruned_past_either_bound() {
        let store = Store::in_memory().unwrap();
        let table = BlockTable::new(
            store.clone(),
            BlockLimits {
                max_blocks: 5,
                max_bytes: 1000,
            },
        );
        let span = append(&table, 1..=8, 100).unwrap();
        assert_eq!(
            (span.lowest, span.highest, span.blocks, span.bytes),
            (4, 8, 5, 500)
        );
        let span = append(&table, 9..=10, 400).unwrap();
        // 4 and 5 go for the count; 6 for the bytes: 7 to 10 are 100 + 100 + 400 + 400.
        assert_eq!(
            (span.lowest, span.highest, span.blocks, span.bytes),
            (7, 10, 4, 1000)
        );
        assert_eq!(table.get(6).unwrap(), None);
        // One block larger than the budget stays, alone.
        let span = append(&table, 11..=11, 5000).unwrap();
        assert_eq!((span.lowest, span.highest, span.blocks), (11, 11, 1));
    }

    /// A batch that does not follow the highest height replaces what is held.
    #[test]
    fn a_batch_that_does_not_follow_starts_the_table_afresh() {
        let table = BlockTable::new(Store::in_memory().unwrap(), BlockLimits::default());
        append(&table, 1..=3, 10);
        let span = append(&table, 7..=8, 10).unwrap();
        assert_eq!(
            (span.lowest, span.highest, span.blocks, span.bytes),
            (7, 8, 2, 20)
        );
        assert!(
            table
                .append(&[(9, b"a".as_slice()), (11, b"b".as_slice())])
                .is_err()
        );
    }

    /// Ranges stop at the count, the bytes (never below one block) and the end of the table.
    #[test]
    fn ranges_stop_at_the_count_the_bytes_or_the_end() {
        let table = BlockTable::new(Store::in_memory().unwrap(), BlockLimits::default());
        append(&table, 1..=10, 100);
        let heights =
            |blocks: Vec<(u64, Vec<u8>)>| blocks.into_iter().map(|(h, _)| h).collect::<Vec<_>>();
        assert_eq!(
            heights(table.range(2, 9, 3, usize::MAX).unwrap()),
            [2, 3, 4]
        );
        assert_eq!(heights(table.range(1, 10, 100, 250).unwrap()), [1, 2]);
        assert_eq!(heights(table.range(5, 10, 100, 1).unwrap()), [5]);
        assert_eq!(
            heights(table.range(8, 50, 100, usize::MAX).unwrap()),
            [8, 9, 10]
        );
        assert!(table.range(11, 50, 100, usize::MAX).unwrap().is_empty());
        table.clear().unwrap();
        assert_eq!(table.span().unwrap(), None);
    }

    /// The blocks and their byte count are back after the file is reopened.
    #[test]
    fn the_archive_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BlockLimits {
            max_blocks: 4,
            max_bytes: u64::MAX,
        };
        let before = append(
            &BlockTable::new(Store::open(dir.path()).unwrap(), limits),
            1..=6,
            10,
        );
        let table = BlockTable::new(Store::open(dir.path()).unwrap(), limits);
        let after = table.span().unwrap();
        assert_eq!(after, before);
        assert_eq!(
            after.map(|span| (span.lowest, span.highest, span.bytes)),
            Some((3, 6, 40))
        );
        assert_eq!(table.get(6).unwrap(), Some(block(6, 10)));
    }
}
