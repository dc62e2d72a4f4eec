//! [`Error`]: everything that can go wrong in the store.

use std::path::PathBuf;

/// Errors from opening, reading and writing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// The file was written by a newer peerlane whose schema this one does not know. Nothing
    /// was changed in the file; run the newer binary, or move the file away to start afresh.
    #[error("store schema version {found} is newer than the {supported} this build knows")]
    SchemaTooNew {
        /// The version recorded in the file.
        found: u64,
        /// The newest version this build reads and writes.
        supported: u64,
    },

    /// The file records a schema version this build never wrote (0, or a version with no
    /// migration).
    #[error("store schema version {found} is not one this build can read")]
    SchemaUnknown {
        /// The version recorded in the file.
        found: u64,
    },

    /// A record did not decode: a damaged file or a bug. Readers skip and count such records
    /// (`peerlane_store_records_skipped_corrupt_total`); this error says which one.
    #[error("corrupt record in table {table}: {reason}")]
    CorruptRecord {
        /// The table the record is in.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// A record could not be encoded (a bug: every record type is BCS-encodable).
    #[error("cannot encode a {table} record: {source}")]
    Encode {
        /// The table the record was going to.
        table: &'static str,
        /// The encoder's error.
        source: bcs::Error,
    },

    /// A routing component is larger than the table's whole byte budget; it was not stored.
    #[error("component of {size} bytes exceeds the component budget of {max} bytes")]
    ComponentTooLarge {
        /// Its encoded size.
        size: u64,
        /// `ComponentLimits::max_bytes`.
        max: u64,
    },

    /// Blocks given to [`BlockTable::append`](crate::BlockTable::append) were not at
    /// consecutive heights; nothing was written.
    #[error("blocks to archive are not at consecutive heights")]
    BlocksNotConsecutive,

    /// redb met a damaged page and panicked; the panic was caught. Move the file aside
    /// (docs/operations.md, "On-disk store").
    #[error("the store file is damaged: {reason}")]
    Damaged {
        /// redb's panic message.
        reason: String,
    },

    /// redb failed: I/O, a damaged file, or the file is already open elsewhere.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
}

impl Error {
    /// Wraps any of redb's error types.
    pub(crate) fn db(err: impl Into<redb::Error>) -> Self {
        Self::Database(err.into())
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
