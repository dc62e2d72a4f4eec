//! [`Error`]: every way a mempool call fails.

use crate::types::TxnId;

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool holds `capacity` transactions already; counted in
    /// `mempool_rejected_full_total`.
    #[error("mempool is full ({capacity} transactions)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The pool holds (or recently committed) a transaction with this id; counted in
    /// `mempool_duplicates_total`.
    #[error("transaction {id} is already known")]
    Duplicate {
        /// The transaction's id.
        id: TxnId,
    },
}
