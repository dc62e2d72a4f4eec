//! [`Error`]: every way state sync fails.

use peerlane::PeerNetworkId;

/// Every failure of state sync: a block that does not extend the store, or a fetch that did
/// not work out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The block's height is not the store's next height.
    #[error("block at height {got} does not follow the committed height {committed}")]
    NotNext {
        /// The store's committed height (0 when empty).
        committed: u64,
        /// The block's height.
        got: u64,
    },
    /// A block to start the store from is not ahead of the committed height plus one.
    #[error("block at height {got} is not ahead of the committed height {committed} plus one")]
    NotAhead {
        /// The store's committed height (0 when empty).
        committed: u64,
        /// The block's height.
        got: u64,
    },
    /// The block's parent id is not the id of the store's last block.
    #[error("block at height {height} does not link to its parent")]
    ParentMismatch {
        /// The block's height.
        height: u64,
    },
    /// A peer's response was not a `Blocks` response, or was empty.
    #[error("peer {peer} sent an unusable response: {reason}")]
    BadResponse {
        /// Who sent it.
        peer: PeerNetworkId,
        /// What was wrong.
        reason: &'static str,
    },
    /// A peer's blocks did not link onto the store.
    #[error("peer {peer} sent blocks that do not link")]
    InvalidBlocks {
        /// Who sent them.
        peer: PeerNetworkId,
        /// The link that failed.
        #[source]
        source: Box<Self>,
    },
    /// The network refused or failed the RPC (not connected, time-out, decode error...).
    #[error("network error")]
    Network(#[from] peerlane::Error),
}
