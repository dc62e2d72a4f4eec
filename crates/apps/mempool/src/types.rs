//! What travels: [`Transaction`], its [`TxnId`], and the wire message [`MempoolMsg`].

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A client transaction: opaque bytes. Its identity is the SHA-256 of the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The opaque payload.
    pub payload: Bytes,
}

/// A transaction's id: the SHA-256 of its payload.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnId(pub [u8; 32]);

/// The mempool's only message, sent on `MempoolDirectSend` (LZ4-compressed BCS, low priority).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MempoolMsg {
    /// Transactions the sender has newly learned of.
    Transactions(Vec<Transaction>),
}

impl Transaction {
    /// A transaction carrying `payload`.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
        }
    }

    /// The SHA-256 of the payload.
    pub fn id(&self) -> TxnId {
        TxnId(Sha256::digest(&self.payload).into())
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight bytes are plenty to tell transactions apart in logs.
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnId({self})")
    }
}
