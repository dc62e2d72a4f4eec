//! [`Consensus`]: the round-robin-leader actor; [`ConsensusHandle`]: its progress;
//! [`ConsensusConfig`]. Its metrics are in `metrics`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use mempool::{MempoolHandle, Transaction};
use peerlane::{Event, NetworkClient, NetworkEvents, PeerNetworkId, RpcReplier};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wire::{NetworkId, PeerId};

use crate::error::Error;
use crate::metrics::{Metrics, Rejected};
use crate::types::{Block, BlockId, Commit, CommittedBlock, ConsensusMsg, Vote};

/// Routed proposals and commits in flight, per validator: beyond this many, a message for a
/// validator we are not connected to is not sent (and counted).
const ROUTED_SENDS_PER_VALIDATOR: usize = 4;

/// The validator set and the protocol's timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// The network the validators talk on.
    pub network_id: NetworkId,
    /// The validators, in leader order: round `r`'s leader is `validators[r % n]`.
    pub validators: Vec<PeerId>,
    /// A round with no commit ends after this long, and the next leader takes over.
    pub round_timeout: Duration,
    /// The leader waits this long into its round before proposing, letting transactions
    /// gather; shorter than `round_timeout`.
    pub proposal_delay: Duration,
    /// At most this many transactions per block.
    pub max_block_txns: usize,
    /// How many commits a slow [`subscribe_commits`](ConsensusHandle::subscribe_commits)
    /// subscriber may fall behind before it lags.
    pub commit_channel_capacity: usize,
}

impl ConsensusConfig {
    /// A config for `validators` on `network_id`, with a 1 s round timeout, a 100 ms proposal
    /// delay and blocks of up to 500 transactions.
    pub fn new(network_id: NetworkId, validators: Vec<PeerId>) -> Self {
        Self {
            network_id,
            validators,
            round_timeout: Duration::from_secs(1),
            proposal_delay: Duration::from_millis(100),
            max_block_txns: 500,
            commit_channel_capacity: 1024,
        }
    }

    /// Votes needed to commit, the leader's own included: 2f+1 of n = 3f+1.
    pub fn quorum(&self) -> usize {
        let n = self.validators.len();
        n - n.saturating_sub(1) / 3
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.validators.is_empty() {
            return invalid("validators", "must not be empty");
        }
        if self.validators.iter().collect::<HashSet<_>>().len() != self.validators.len() {
            return invalid("validators", "must not repeat a validator");
        }
        if self.proposal_delay >= self.round_timeout {
            return invalid("proposal_delay", "must be shorter than round_timeout");
        }
        if self.commit_channel_capacity == 0 {
            return invalid("commit_channel_capacity", "must be at least 1");
        }
        Ok(())
    }
}

/// Where a node is, as [`ConsensusHandle::status`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsensusStatus {
    /// The current round.
    pub round: u64,
    /// The height of the last committed block (0: none yet).
    pub committed_height: u64,
    /// The last committed block ([`BlockId::GENESIS`] before the first).
    pub committed_block: BlockId,
    /// Blocks this node committed.
    pub committed_blocks: u64,
    /// Transactions in the blocks this node committed.
    pub committed_transactions: u64,
    /// Rounds that ended by timeout.
    pub round_timeouts: u64,
}

/// The consensus actor. Start it with [`run`](Self::run).
#[derive(Debug)]
pub struct Consensus {
    config: ConsensusConfig,
    me: PeerId,
    quorum: usize,
    client: NetworkClient<ConsensusMsg>,
    events: NetworkEvents<ConsensusMsg>,
    mempool: MempoolHandle,
    metrics: Metrics,
    status: watch::Sender<ConsensusStatus>,
    commits: broadcast::Sender<CommittedBlock>,
    /// Vote RPCs in flight.
    votes_in_flight: JoinSet<()>,
    /// Routed proposals and commits in flight (bounded, see [`ROUTED_SENDS_PER_VALIDATOR`]).
    routed_in_flight: JoinSet<()>,

    round: u64,
    round_deadline: Instant,
    /// When this node, the round's leader, proposes; none once it has (or if not leader).
    propose_at: Option<Instant>,
    /// This node's proposal in the current round and who voted for it (itself included).
    proposal: Option<(BlockId, HashSet<PeerId>)>,
    /// The round this node last voted in.
    voted_round: Option<u64>,
    committed_height: u64,
    committed_id: BlockId,
    /// Proposals for the next height, by id.
    candidates: HashMap<BlockId, Block>,
    /// The current round's proposal if it is above the next height: the commit below it,
    /// sent by another leader on another connection, may still be on its way. Voted for once
    /// that commit makes it the next height; dropped when the round changes.
    ahead: Option<(PeerNetworkId, Block)>,
}

/// Reads a node's consensus progress. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConsensusHandle {
    status: watch::Receiver<ConsensusStatus>,
    commits: broadcast::Sender<CommittedBlock>,
    metrics: Metrics,
}

impl Consensus {
    /// The consensus actor of validator `me`, over the application's `client` and `events`
    /// (registered on `ConsensusDirectSendBcs` and `ConsensusRpcBcs`), taking transactions
    /// from `mempool`; metrics go to `registry` under `consensus_`.
    ///
    /// Fails with [`Error::InvalidConfig`] or [`Error::NotAValidator`].
    pub fn new(
        config: ConsensusConfig,
        me: PeerId,
        client: NetworkClient<ConsensusMsg>,
        events: NetworkEvents<ConsensusMsg>,
        mempool: MempoolHandle,
        registry: &mut Registry,
    ) -> Result<(Self, ConsensusHandle), Error> {
        config.validate()?;
        if !config.validators.contains(&me) {
            return Err(Error::NotAValidator { peer_id: me });
        }
        let (status, status_rx) = watch::channel(ConsensusStatus::default());
        let (commits, _) = broadcast::channel(config.commit_channel_capacity);
        let metrics = Metrics::register(registry);
        let handle = ConsensusHandle {
            status: status_rx,
            commits: commits.clone(),
            metrics: metrics.clone(),
        };
        let consensus = Self {
            quorum: config.quorum(),
            config,
            me,
            client,
            events,
            mempool,
            metrics,
            status,
            commits,
            votes_in_flight: JoinSet::new(),
            routed_in_flight: JoinSet::new(),
            round: 0,
            round_deadline: Instant::now(),
            propose_at: None,
            proposal: None,
            voted_round: None,
            committed_height: 0,
            committed_id: BlockId::GENESIS,
            candidates: HashMap::new(),
            ahead: None,
        };
        Ok((consensus, handle))
    }

    /// Runs from round 0 until `shutdown` completes or the network's events end. Start every
    /// validator at about the same time, once they are connected.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        self.enter_round(0);
        loop {
            let wake = self
                .propose_at
                .map_or(self.round_deadline, |at| at.min(self.round_deadline));
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = self.events.next() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(_) = self.votes_in_flight.join_next(), if !self.votes_in_flight.is_empty() => {}
                Some(_) = self.routed_in_flight.join_next(), if !self.routed_in_flight.is_empty() => {}
                () = tokio::time::sleep_until(wake) => self.on_timer(),
            }
        }
        tracing::debug!(round = self.round, "consensus stopped");
    }

    fn leader(&self, round: u64) -> PeerId {
        let n = self.config.validators.len() as u64;
        self.config.validators[(round % n) as usize]
    }

    fn enter_round(&mut self, round: u64) {
        let now = Instant::now();
        self.round = round;
        self.round_deadline = now + self.config.round_timeout;
        self.proposal = None;
        self.ahead = None;
        self.propose_at = (self.leader(round) == self.me).then(|| now + self.config.proposal_delay);
        self.status.send_modify(|status| status.round = round);
        tracing::trace!(round, leader = %self.leader(round), "new round");
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        // A timer that fires late (a starved process) may find the round over: proposing then
        // would only load the others with a block this node abandons at once.
        if self.propose_at.is_some_and(|at| at <= now) && self.round_deadline > now {
            self.propose_at = None;
            self.propose();
        }
        if self.round_deadline <= now {
            tracing::debug!(round = self.round, "round timed out");
            self.metrics.round_timeouts.inc();
            self.status.send_modify(|status| status.round_timeouts += 1);
            self.enter_round(self.round + 1);
        }
    }

    /// Sends every other validator a message: at once to those connected, routed through
    /// others to the rest (in the background, a bounded number at a time). Failures are
    /// logged; routed messages that could not be sent are counted.
    fn broadcast(&mut self, message: &ConsensusMsg) {
        let connected: HashSet<PeerNetworkId> = self
            .client
            .connected_peers()
            .into_iter()
            .filter(|peer| peer.network_id == self.config.network_id)
            .collect();
        let (direct, routed): (Vec<PeerNetworkId>, Vec<PeerNetworkId>) = self
            .config
            .validators
            .iter()
            .filter(|validator| **validator != self.me)
            .map(|validator| PeerNetworkId::new(self.config.network_id, *validator))
            .partition(|peer| connected.contains(peer));
        if let Err(err) = self.client.send_to_peers(direct, message) {
            tracing::debug!(error = %err, "consensus message not sent to every validator");
        }
        let limit = ROUTED_SENDS_PER_VALIDATOR * self.config.validators.len();
        for peer in routed {
            if self.routed_in_flight.len() >= limit {
                tracing::debug!(%peer, "too many routed consensus messages in flight; not sent");
                self.metrics.routed_not_sent.inc();
                continue;
            }
            let client = self.client.clone();
            let metrics = self.metrics.clone();
            let message = message.clone();
            self.routed_in_flight.spawn(async move {
                if let Err(err) = client.send_routed(peer, &message).await {
                    tracing::debug!(%peer, error = %err, "consensus message not routed");
                    metrics.routed_not_sent.inc();
                }
            });
        }
    }

    fn propose(&mut self) {
        let block = Block {
            round: self.round,
            height: self.committed_height + 1,
            parent_id: self.committed_id,
            author: self.me,
            txns: self.mempool.take_batch(self.config.max_block_txns),
        };
        let id = block.id();
        tracing::debug!(round = self.round, height = block.height, block = %id, txns = block.txns.len(), "proposing");
        self.metrics.proposals.inc();
        self.broadcast(&ConsensusMsg::Proposal(block.clone()));
        self.candidates.insert(id, block);
        self.proposal = Some((id, HashSet::from([self.me])));
        self.maybe_commit_proposal();
    }

    fn on_event(&mut self, event: Event<ConsensusMsg>) {
        match event {
            Event::Message {
                peer,
                message: ConsensusMsg::Proposal(block),
                ..
            } => self.on_proposal(peer, block),
            Event::Message {
                peer,
                message: ConsensusMsg::Commit(commit),
                ..
            } => self.on_commit_from(peer, commit),
            Event::RpcRequest {
                peer,
                request: ConsensusMsg::Vote(vote),
                responder,
                ..
            } => self.on_vote(peer, vote, responder),
            _ => tracing::debug!("unexpected consensus message; dropped"),
        }
    }

    fn on_proposal(&mut self, peer: PeerNetworkId, block: Block) {
        if block.author != peer.peer_id || block.author != self.leader(block.round) {
            tracing::debug!(%peer, round = block.round, "proposal not from the round's leader; dropped");
            return;
        }
        if block.round < self.round {
            return;
        }
        if block.round > self.round {
            // The leader is ahead (we missed a commit or a timeout): catch up.
            self.enter_round(block.round);
        }
        if self.voted_round == Some(block.round) {
            return;
        }
        if block.height > self.committed_height + 1 {
            tracing::debug!(%peer, round = block.round, height = block.height, committed = self.committed_height, "proposal above the next height; kept for the commit below it");
            self.ahead = Some((peer, block));
            return;
        }
        if block.height != self.committed_height + 1 || block.parent_id != self.committed_id {
            tracing::debug!(%peer, round = block.round, height = block.height, committed = self.committed_height, "proposal not on the last commit; not voted for");
            return;
        }
        let id = block.id();
        let vote = Vote {
            round: block.round,
            block_id: id,
            voter: self.me,
        };
        self.voted_round = Some(block.round);
        self.candidates.insert(id, block);
        self.metrics.votes_sent.inc();
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let timeout = self.config.round_timeout;
        self.votes_in_flight.spawn(async move {
            let start = Instant::now();
            match client
                .rpc_routed(peer, ConsensusMsg::Vote(vote), timeout)
                .await
            {
                Ok(ConsensusMsg::VoteAck { .. }) => {
                    metrics.observe_vote_latency(start.elapsed());
                }
                Ok(other) => tracing::debug!(%peer, ?other, "vote answered with something else"),
                Err(err) => tracing::debug!(%peer, error = %err, "vote not delivered"),
            }
        });
    }

    fn on_vote(&mut self, peer: PeerNetworkId, vote: Vote, responder: RpcReplier<ConsensusMsg>) {
        // The body names the voter; only the authenticated sender may vote as itself, or one
        // validator could make a quorum alone.
        let from_voter = vote.voter == peer.peer_id;
        if !from_voter {
            tracing::debug!(%peer, voter = %vote.voter, "vote not from its voter; not counted");
            self.metrics.reject(Rejected::VoteNotFromVoter);
        }
        let counted = from_voter
            && vote.round == self.round
            && self.config.validators.contains(&vote.voter)
            && match &mut self.proposal {
                Some((id, voters)) if *id == vote.block_id => voters.insert(vote.voter),
                _ => false,
            };
        if counted {
            self.metrics.votes_counted.inc();
        }
        let _ = responder.reply(ConsensusMsg::VoteAck {
            round: vote.round,
            counted,
        });
        self.maybe_commit_proposal();
    }

    /// Commits this node's proposal once it has a quorum, and tells the others.
    fn maybe_commit_proposal(&mut self) {
        let Some((id, voters)) = &self.proposal else {
            return;
        };
        if voters.len() < self.quorum {
            return;
        }
        let id = *id;
        let Some(block) = self.candidates.get(&id) else {
            return;
        };
        let commit = Commit {
            round: block.round,
            block_id: id,
            height: block.height,
        };
        self.broadcast(&ConsensusMsg::Commit(commit));
        self.on_commit(commit);
    }

    /// A commit from `peer`: accepted only from the leader of its round, as proposals are.
    fn on_commit_from(&mut self, peer: PeerNetworkId, commit: Commit) {
        if peer.peer_id != self.leader(commit.round) {
            tracing::debug!(%peer, round = commit.round, "commit not from the round's leader; dropped");
            self.metrics.reject(Rejected::CommitNotFromLeader);
            return;
        }
        self.on_commit(commit);
    }

    fn on_commit(&mut self, commit: Commit) {
        if commit.height <= self.committed_height {
            return;
        }
        let block = self.candidates.remove(&commit.block_id);
        let committed = match block {
            Some(block) if commit.height == self.committed_height + 1 => {
                let txn_ids: Vec<_> = block.txns.iter().map(Transaction::id).collect();
                self.mempool.commit(txn_ids.iter().copied());
                CommittedBlock {
                    round: block.round,
                    height: block.height,
                    block_id: commit.block_id,
                    parent_id: block.parent_id,
                    author: block.author,
                    txn_ids,
                }
            }
            // The proposal never arrived (or we are behind): follow the leader's word so the
            // chain goes on; the transactions stay in the mempool.
            _ => {
                tracing::warn!(height = commit.height, block = %commit.block_id, "committing a block not received");
                CommittedBlock {
                    round: commit.round,
                    height: commit.height,
                    block_id: commit.block_id,
                    parent_id: self.committed_id,
                    author: self.leader(commit.round),
                    txn_ids: Vec::new(),
                }
            }
        };
        tracing::debug!(height = committed.height, block = %committed.block_id, txns = committed.txn_ids.len(), "committed");
        self.committed_height = committed.height;
        self.committed_id = committed.block_id;
        self.candidates.clear();
        self.metrics.commits.inc();
        self.metrics.committed_height.set(committed.height as i64);
        let txns = committed.txn_ids.len() as u64;
        self.status.send_modify(|status| {
            status.committed_height = committed.height;
            status.committed_block = committed.block_id;
            status.committed_blocks += 1;
            status.committed_transactions += txns;
        });
        // No subscriber is fine.
        let _ = self.commits.send(committed);
        if commit.round >= self.round {
            self.enter_round(commit.round + 1);
        }
        // The round did not change: a proposal kept for this commit may be next now.
        if let Some((peer, block)) = self.ahead.take() {
            self.on_proposal(peer, block);
        }
    }
}

impl ConsensusHandle {
    /// Where the node is now.
    pub fn status(&self) -> ConsensusStatus {
        *self.status.borrow()
    }

    /// The height of the last committed block.
    pub fn committed_height(&self) -> u64 {
        self.status.borrow().committed_height
    }

    /// How many blocks this node committed.
    pub fn committed_blocks(&self) -> u64 {
        self.status.borrow().committed_blocks
    }

    /// How many transactions the blocks this node committed hold.
    pub fn committed_transactions(&self) -> u64 {
        self.status.borrow().committed_transactions
    }

    /// A watch of [`status`](Self::status): wakes on every round change and commit.
    pub fn watch_status(&self) -> watch::Receiver<ConsensusStatus> {
        self.status.clone()
    }

    /// Every block committed from now on, in order (a bounded broadcast: a subscriber more
    /// than [`ConsensusConfig::commit_channel_capacity`] behind lags). For a state-sync
    /// application to announce commits.
    pub fn subscribe_commits(&self) -> broadcast::Receiver<CommittedBlock> {
        self.commits.subscribe()
    }

    /// The node's consensus metrics, as registered under `consensus_`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators(n: u8) -> Vec<PeerId> {
        (1..=n).map(|i| PeerId::from([i; 32])).collect()
    }

    /// The quorum is 2f+1 of n = 3f+1 (the leader's vote included), and n itself for n ≤ 3.
    #[test]
    fn the_quorum_is_two_f_plus_one() {
        let quorum = |n| ConsensusConfig::new(NetworkId::Validator, validators(n)).quorum();
        assert_eq!([quorum(1), quorum(2), quorum(3)], [1, 2, 3]);
        assert_eq!([quorum(4), quorum(7), quorum(10)], [3, 5, 7]);
    }

    /// An empty or repeating validator set, or a proposal delay not shorter than the round,
    /// is refused with the field named.
    #[test]
    fn a_config_breaking_a_rule_is_refused_with_its_field() {
        let field = |config: ConsensusConfig| match config.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(ConsensusConfig::new(NetworkId::Validator, vec![])),
            "validators"
        );
        let mut repeated = validators(2);
        repeated.push(repeated[0]);
        assert_eq!(
            field(ConsensusConfig::new(NetworkId::Validator, repeated)),
            "validators"
        );
        let mut slow = ConsensusConfig::new(NetworkId::Validator, validators(4));
        slow.proposal_delay = slow.round_timeout;
        assert_eq!(field(slow), "proposal_delay");
    }
}
