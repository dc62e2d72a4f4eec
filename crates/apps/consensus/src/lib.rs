//! peerlane-consensus: a simple round-robin-leader protocol over the peerlane facade, to
//! drive realistic validator traffic. It is not a safe BFT protocol: it makes no safety claim
//! under timeouts that race commits.
//!
//! # How data flows
//!
//! ```text
//! round r, leader = validators[r % n]
//!   leader: MempoolHandle::take_batch ─► Block ── Proposal (ConsensusDirectSendBcs, high) ──► validators
//!   validator: checks sender, height and parent ── Vote RPC (ConsensusRpcBcs) ──► leader ── VoteAck ──►
//!   leader: 2f+1 votes (its own included), each from its voter ── Commit (direct send) ──► validators
//!   validator: accepts a Commit from the round's leader only
//!   everyone: MempoolHandle::commit(txn ids), CommittedBlock ─► ConsensusHandle, round r+1
//!   no commit within round_timeout: everyone moves to round r+1 (a dead leader is skipped)
//! ```
//!
//! Every message reaches validators this node is not connected to as well: proposals and
//! commits go with `NetworkClient::send_to_peers` to the connected ones and
//! `NetworkClient::send_routed` (hop by hop over routing's signed edges) to the others, a
//! bounded number in flight (beyond it, or when routing refuses, counted in
//! `consensus_routed_not_sent_total`); votes go with `NetworkClient::rpc_routed`, which is a
//! plain RPC when the leader is connected. A fully connected validator set behaves exactly as
//! before.
//!
//! 1. Every validator runs a [`Consensus`] actor with the same [`ConsensusConfig`]: the
//!    ordered validator set, the round timeout (1 s by default) and the proposal delay.
//! 2. The round's leader waits [`ConsensusConfig::proposal_delay`], takes up to
//!    [`ConsensusConfig::max_block_txns`] transactions from its mempool and sends a [`Block`]
//!    at `committed height + 1` on the last committed block to every validator.
//! 3. A validator votes once per round, for a block from the round's leader (the
//!    authenticated sender must be the block's author) that extends its last commit, by an
//!    RPC to the leader ([`Vote`]); the latency lands in `consensus_vote_rpc_latency_seconds`.
//!    A proposal of the current round above the next height is kept until the round ends:
//!    the commit below it comes from another leader on another connection and may arrive
//!    after it, and once it does the proposal is voted for.
//!    The leader counts a vote only if its `voter` is the authenticated peer that sent it, so
//!    one validator cannot vote for others.
//! 4. With [`ConsensusConfig::quorum`] votes the leader commits and sends [`Commit`]; each
//!    node accepts a commit only from the leader of the commit's round (as it does
//!    proposals), commits the block it received with that id, removes its transactions from
//!    its mempool, publishes a [`CommittedBlock`] and moves to the next round. Votes and
//!    commits dropped by these sender checks are counted in `consensus_rejected_total`
//!    ([`Rejected`], readable through [`ConsensusHandle::metrics`]).
//!
//! Types to read first: [`Consensus`], [`ConsensusHandle`], [`ConsensusMsg`]; [`Metrics`] for
//! the counters.
//!
//! Modules: `consensus` (the actor, its config, status and handle), `metrics` ([`Metrics`],
//! [`Rejected`], the vote latency buckets), `types` (the wire messages and blocks), `error`.
//!
//! Setting up a validator beside its mempool:
//!
//! ```no_run
//! # async fn example(
//! #     builder: &mut peerlane::NetworkBuilder,
//! #     mempool: mempool::MempoolHandle,
//! #     validators: Vec<wire::PeerId>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use consensus::{Consensus, ConsensusConfig, ConsensusMsg};
//! use prometheus_client::registry::Registry;
//! use wire::{NetworkId, ProtocolId};
//!
//! let me = builder.peer_id();
//! let (client, events) = builder.add_application::<ConsensusMsg>(
//!     [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
//!     [ProtocolId::CONSENSUS_RPC_BCS],
//!     Default::default(),
//! )?;
//! let config = ConsensusConfig::new(NetworkId::Validator, validators);
//! let (consensus, handle) =
//!     Consensus::new(config, me, client, events, mempool, &mut Registry::default())?;
//! tokio::spawn(consensus.run(std::future::pending()));
//! let mut commits = handle.subscribe_commits();
//! let first = commits.recv().await?;
//! assert_eq!(first.height, 1);
//! # Ok(()) }
//! ```

mod consensus;
mod error;
mod metrics;
mod types;

pub use crate::consensus::{Consensus, ConsensusConfig, ConsensusHandle, ConsensusStatus};
pub use crate::error::Error;
pub use crate::metrics::{Metrics, Rejected, VoteLatencies};
pub use crate::types::{Block, BlockId, Commit, CommittedBlock, ConsensusMsg, Vote};
