//! [`Store`]: the one redb file under the data directory, its schema version, and the
//! write path every table goes through (one transaction per call, timed and counted).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcore::SharedLogLimiter;

use redb::backends::InMemoryBackend;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::error::{Error, Result};
use crate::metrics::{Metrics, Table};
use crate::tables;

/// The schema this build reads and writes. Bump it when a table, a key layout or a record
/// changes in a way an older build could not read, and add the migration in
/// [`Store::open`].
pub const SCHEMA_VERSION: u64 = 1;

/// Log lines about corrupt records: a damaged file can hold many, and each would be logged
/// at every load.
static CORRUPT_RECORD_LOG: SharedLogLimiter = SharedLogLimiter::new(10, Duration::from_secs(60));

/// redb's page cache (read cache and write buffer together) for one file. redb's default
/// is 1 GiB, which a block archive of that size would fill: the process would grow with the
/// file. The tables' working set (B-tree pages, a batch of blocks being written, a response
/// being read) fits in a few MiB; reads beyond it go to the OS page cache, which the kernel
/// can reclaim.
pub const CACHE_SIZE: usize = 4 * 1024 * 1024;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "peerlane.redb";

/// The embedded store: one redb file (or memory, for tests), shared by the peer store and the
/// routing component table. Cloning gives another handle on the same database.
///
/// Every write is one redb transaction, committed with immediate durability: when a write
/// method returns `Ok`, the change is on disk and survives a crash or a power cut; when it
/// returns `Err`, nothing of it was applied. The methods block (a commit waits for `fsync`):
/// call them from a blocking thread (`tokio::task::spawn_blocking`) or batch updates.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    path: Option<PathBuf>,
    metrics: Metrics,
}

impl Store {
    /// Opens `data_dir/peerlane.redb`, creating the directory and the file if needed, with
    /// unregistered metrics.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_metrics(data_dir, Metrics::default())
    }

    /// [`open`](Self::open), recording into `metrics`.
    ///
    /// Fails with [`Error::SchemaTooNew`] if a newer build wrote the file (which is left
    /// untouched), and with [`Error::Database`] if the file is damaged beyond redb's repair
    /// or open in another process.
    pub fn open_with_metrics(data_dir: impl AsRef<Path>, metrics: Metrics) -> Result<Self> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        // `create` opens an existing file (repairing it after a crash) or makes a new one.
        // The integrity check reads the whole file once and verifies every page's checksum:
        // without it a damaged page makes redb panic when it is first read; with it the open
        // fails with a typed error (milliseconds for a few MiB; docs/operations.md).
        let db = unwind_to_error(|| {
            redb::Builder::new()
                .set_check_integrity_on_open(true)
                .set_cache_size(CACHE_SIZE)
                .create(&path)
                .map_err(Error::db)
        })?;
        unwind_to_error(|| Self::init(db, Some(path), metrics))
    }

    /// A store held in memory only, gone when the last handle is dropped: for tests.
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with_metrics(Metrics::default())
    }

    /// [`in_memory`](Self::in_memory), recording into `metrics`.
    pub fn in_memory_with_metrics(metrics: Metrics) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_SIZE)
            .create_with_backend(InMemoryBackend::new())
            .map_err(Error::db)?;
        Self::init(db, None, metrics)
    }

    /// Checks the schema version (recording it in a new file) and creates missing tables,
    /// so that readers never meet a table that does not exist.
    fn init(db: Database, path: Option<PathBuf>, metrics: Metrics) -> Result<Self> {
        let txn = db.begin_write().map_err(Error::db)?;
        {
            let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
            let found = meta
                .get(tables::SCHEMA_VERSION_KEY)
                .map_err(Error::db)?
                .map(|guard| guard.value());
            match found {
                None => {
                    meta.insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(Error::db)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(Error::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(found) => return Err(Error::SchemaUnknown { found }),
            }
            txn.open_table(tables::PEERS).map_err(Error::db)?;
            txn.open_table(tables::IP_BANS).map_err(Error::db)?;
            txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
            txn.open_multimap_table(tables::COMPONENT_INDEX)
                .map_err(Error::db)?;
            txn.open_table(tables::BLOCKS).map_err(Error::db)?;
        }
        txn.commit().map_err(Error::db)?;
        Ok(Self {
            inner: Arc::new(Inner { db, path, metrics }),
        })
    }

    /// The file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The metrics this store records into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Runs `write` in one write transaction and commits it: all of it is applied, or none.
    /// Counts and times the commit.
    pub(crate) fn write<T>(&self, write: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = unwind_to_error(|| {
            let txn = self.inner.db.begin_write().map_err(Error::db)?;
            // On an error `txn` is dropped uncommitted, which aborts it.
            let value = write(&txn)?;
            txn.commit().map_err(Error::db)?;
            Ok(value)
        });
        self.inner
            .metrics
            .record_write(start.elapsed(), result.is_ok());
        if let Err(err) = &result {
            // Writes are the node's own, not a peer's: no log limiter needed beyond what the
            // callers' batching gives.
            tracing::warn!(error = %err, "store write failed");
        }
        result
    }

    /// Counts a record of `table` that did not decode (it is skipped) and logs it, rate-limited.
    pub(crate) fn report_corrupt(&self, table: Table, err: &Error) {
        self.inner.metrics.record_corrupt(table);
        if let Some(suppressed) = CORRUPT_RECORD_LOG.allow(Instant::now()) {
            tracing::warn!(
                table = table.as_str(),
                error = %err,
                suppressed,
                "corrupt store record skipped and dropped"
            );
        }
    }

    /// Runs `read` on a snapshot of the committed state.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        unwind_to_error(|| {
            let txn = self.inner.db.begin_read().map_err(Error::db)?;
            read(&txn)
        })
    }
}

/// Runs `f`, turning a panic into [`Error::Damaged`]. redb panics on some damaged pages
/// instead of returning an error (its docs say so of an open without the integrity check; a
/// page damaged while the file is open is read without one). The store is then unusable
/// (its calls fail) but the node is not brought down by its peer cache.
fn unwind_to_error<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("redb panicked")
            .to_string();
        Err(Error::Damaged { reason })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_directory_and_one_file_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let store = Store::open(&data_dir).unwrap();
        assert_eq!(store.path(), Some(data_dir.join(FILE_NAME).as_path()));
        drop(store);
        let files: Vec<_> = std::fs::read_dir(&data_dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        Store::open(&data_dir).unwrap();
    }

    #[test]
    fn a_newer_schema_is_a_typed_error_and_the_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|txn| {
                let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
                meta.insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)
                    .map_err(Error::db)?;
                Ok(())
            })
            .unwrap();
        drop(store);
        for _ in 0..2 {
            match Store::open(dir.path()) {
                Err(Error::SchemaTooNew { found, supported }) => {
                    assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
                }
                other => panic!("expected SchemaTooNew, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_second_open_of_the_same_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(Error::Database(redb::Error::DatabaseAlreadyOpen))
        ));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), vec![0xA5; 10_000]).unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::Database(_))));
    }

    #[test]
    fn a_panic_inside_redb_becomes_a_typed_error() {
        let result: Result<()> = unwind_to_error(|| panic!("Invalid page type byte 255"));
        assert!(
            matches!(&result, Err(Error::Damaged { reason }) if reason.contains("page type")),
            "{result:?}"
        );
    }

    #[test]
    fn a_failed_write_applies_nothing_and_is_counted() {
        let store = Store::in_memory().unwrap();
        let result: Result<()> = store.write(|txn| {
            let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
            meta.insert("scratch", 7).map_err(Error::db)?;
            Err(Error::SchemaUnknown { found: 0 })
        });
        assert!(result.is_err());
        assert_eq!(store.metrics().write_failures(), 1);
        let scratch = store
            .read(|txn| {
                let meta = txn.open_table(tables::META).map_err(Error::db)?;
                Ok(meta.get("scratch").map_err(Error::db)?.map(|v| v.value()))
            })
            .unwrap();
        assert_eq!(scratch, None);
    }
}
