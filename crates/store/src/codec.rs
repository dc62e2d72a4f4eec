//! BCS encoding of the records the store keeps. Every record is written as a versioned enum
//! (`V1(..)`, later `V2(..)`), so that a newer build can still read what an older one wrote
//! and convert it; a build meets a version it does not know only in a file whose schema
//! version is newer, which [`Store::open`](crate::Store::open) refuses first.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::metrics::Table;

/// Encodes `record` for `table`.
pub(crate) fn encode<T: Serialize>(table: Table, record: &T) -> Result<Vec<u8>> {
    bcs::to_bytes(record).map_err(|source| Error::Encode {
        table: table.as_str(),
        source,
    })
}

/// Decodes a record of `table`; bytes that are not exactly one record are
/// [`Error::CorruptRecord`].
pub(crate) fn decode<T: DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T> {
    bcs::from_bytes(bytes).map_err(|err| Error::CorruptRecord {
        table: table.as_str(),
        reason: err.to_string(),
    })
}
