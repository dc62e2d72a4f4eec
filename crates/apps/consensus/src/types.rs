//! What travels: [`Block`] and its [`BlockId`], [`Vote`], [`Commit`], all inside
//! [`ConsensusMsg`]; and [`CommittedBlock`], what a node reports once it commits.

use std::fmt;

use mempool::{Transaction, TxnId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wire::PeerId;

/// A block's id: the SHA-256 of its round, height, parent, author and transaction ids.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockId(pub [u8; 32]);

/// A leader's proposal: the transactions to commit at `height`, on top of `parent_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The round it was proposed in.
    pub round: u64,
    /// Its height: the parent's plus one (the genesis parent is height 0).
    pub height: u64,
    /// The block it extends ([`BlockId::GENESIS`] at height 1).
    pub parent_id: BlockId,
    /// The round's leader.
    pub author: PeerId,
    /// The transactions, in order.
    pub txns: Vec<Transaction>,
}

/// A validator's vote for the leader's block, sent as an RPC to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The round voted in.
    pub round: u64,
    /// The block voted for.
    pub block_id: BlockId,
    /// Who votes.
    pub voter: PeerId,
}

/// The leader's announcement that a block has 2f+1 votes: every validator commits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The block's round.
    pub round: u64,
    /// The block.
    pub block_id: BlockId,
    /// Its height.
    pub height: u64,
}

/// The consensus messages: proposals and commits by direct send
/// (`ConsensusDirectSendBcs`, high priority), votes and their acks by RPC
/// (`ConsensusRpcBcs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsensusMsg {
    /// The leader's block for its round.
    Proposal(Block),
    /// A vote (RPC request).
    Vote(Vote),
    /// The answer to a vote (RPC response): whether the leader counted it.
    VoteAck {
        /// The vote's round.
        round: u64,
        /// Whether the vote matched the leader's proposal for the round.
        counted: bool,
    },
    /// A block is committed.
    Commit(Commit),
}

/// A block as a node committed it, for its [`subscribe_commits`] subscribers.
///
/// [`subscribe_commits`]: crate::ConsensusHandle::subscribe_commits
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBlock {
    /// The round it was proposed in.
    pub round: u64,
    /// Its height.
    pub height: u64,
    /// Its id.
    pub block_id: BlockId,
    /// Its parent.
    pub parent_id: BlockId,
    /// Its leader.
    pub author: PeerId,
    /// Its transactions' ids, in order; empty if the node committed it on the leader's word
    /// without having received the proposal.
    pub txn_ids: Vec<TxnId>,
}

impl BlockId {
    /// The parent of the first block.
    pub const GENESIS: Self = Self([0; 32]);
}

impl Block {
    /// The block's id.
    pub fn id(&self) -> BlockId {
        let mut hasher = Sha256::new();
        hasher.update(b"peerlane-consensus-block");
        hasher.update(self.round.to_le_bytes());
        hasher.update(self.height.to_le_bytes());
        hasher.update(self.parent_id.0);
        hasher.update(self.author.as_ref());
        for txn in &self.txns {
            hasher.update(txn.id().0);
        }
        BlockId(hasher.finalize().into())
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({self})")
    }
}
