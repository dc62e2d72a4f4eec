//! Messages from different leaders travel on different connections, so they may arrive out of
//! order: a proposal for the next height can come before the commit of the height below it,
//! and a commit of an earlier round after a timeout has moved on to another leader; and a
//! starved leader's timer may fire only after its round is over. One honest validator runs
//! consensus; the leaders of rounds 1 and 2 are bare networks sending hand-made messages.
//! Runs on tokio's paused clock, over the memory transport.

use std::time::Duration;

use consensus::{Block, BlockId, Commit, ConsensusHandle, ConsensusMsg, Rejected, Vote};
use futures::StreamExt;
use peerlane::{Event, Network, NetworkClient, NetworkEvents, PeerNetworkId};
use prometheus_client::registry::Registry;
use wire::PeerId;

mod common;

use common::{HonestValidator, NETWORK, consensus_network, identity};

/// A bare network with a validator's identity, connected to the honest validator.
struct Peer {
    network: Network,
    client: NetworkClient<ConsensusMsg>,
    events: NetworkEvents<ConsensusMsg>,
}

impl Peer {
    fn id(&self) -> PeerId {
        self.network.peer_id()
    }

    /// Sends `message` to the honest validator.
    fn send(&self, honest: &Network, message: &ConsensusMsg) {
        let to = PeerNetworkId::new(NETWORK, honest.peer_id());
        self.client.send_to_peer(to, message).unwrap();
    }

    /// The next vote this peer receives, acked as counted; `None` if none comes within `wait`.
    async fn next_vote(&mut self, wait: Duration) -> Option<Vote> {
        tokio::time::timeout(wait, async {
            loop {
                match self.events.next().await.expect("events end") {
                    Event::RpcRequest {
                        request: ConsensusMsg::Vote(vote),
                        responder,
                        ..
                    } => {
                        let _ = responder.reply(ConsensusMsg::VoteAck {
                            round: vote.round,
                            counted: true,
                        });
                        return vote;
                    }
                    _ => continue,
                }
            }
        })
        .await
        .ok()
    }
}

/// The honest validator (first of four, leader of round 0) running mempool and consensus, and
/// the leaders of rounds 1 and 2 connected to it; the fourth validator never shows up.
struct Setup {
    honest: Network,
    consensus: ConsensusHandle,
    leader_1: Peer,
    leader_2: Peer,
}

impl Setup {
    async fn start() -> Self {
        let (leader_1, leader_2) = (identity(1), identity(2));
        let validators = vec![
            identity(0).peer_id(),
            leader_1.peer_id(),
            leader_2.peer_id(),
            identity(3).peer_id(),
        ];
        let validator = HonestValidator::new(validators);
        let mut peers = Vec::new();
        for identity in [leader_1, leader_2] {
            let (builder, client, events) = consensus_network(identity, &mut Registry::default());
            let network = builder.build().unwrap();
            network
                .dial(
                    validator.network.peer_id(),
                    validator.network.listen_address().clone(),
                )
                .await
                .unwrap();
            peers.push(Peer {
                network,
                client,
                events,
            });
        }
        let (honest, consensus) = validator.run();
        let leader_2 = peers.pop().unwrap();
        let leader_1 = peers.pop().unwrap();
        Self {
            honest,
            consensus,
            leader_1,
            leader_2,
        }
    }

    async fn shutdown(self) {
        self.leader_1.network.shutdown().await;
        self.leader_2.network.shutdown().await;
        self.honest.shutdown().await;
    }
}

/// An empty block of `author` at `round` and `height` on `parent_id`.
fn block(author: PeerId, round: u64, height: u64, parent_id: BlockId) -> Block {
    Block {
        round,
        height,
        parent_id,
        author,
        txns: Vec::new(),
    }
}

fn commit_of(block: &Block) -> ConsensusMsg {
    ConsensusMsg::Commit(Commit {
        round: block.round,
        block_id: block.id(),
        height: block.height,
    })
}

/// Round 2's proposal (height 2) arrives before round 1's commit (height 1), which its leader
/// sent first but on another connection: once the commit is in, the proposal extends the
/// chain, and the validator votes for it rather than sit out the round.
#[tokio::test(start_paused = true)]
async fn a_proposal_that_arrives_before_the_commit_below_it_is_voted_for() {
    let mut setup = Setup::start().await;
    let block_1 = block(setup.leader_1.id(), 1, 1, BlockId::GENESIS);
    let block_2 = block(setup.leader_2.id(), 2, 2, block_1.id());

    setup
        .leader_2
        .send(&setup.honest, &ConsensusMsg::Proposal(block_2.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    setup
        .leader_1
        .send(&setup.honest, &ConsensusMsg::Proposal(block_1.clone()));
    setup.leader_1.send(&setup.honest, &commit_of(&block_1));

    // Well within round 2 (1 s from the proposal).
    let vote = setup
        .leader_2
        .next_vote(Duration::from_millis(500))
        .await
        .expect("a vote for round 2's proposal");
    assert_eq!(
        (vote.round, vote.block_id, vote.voter),
        (2, block_2.id(), setup.honest.peer_id())
    );
    assert_eq!(setup.consensus.committed_height(), 1);
    setup.shutdown().await;
}

/// After round timeouts have moved the validator on to round 2 (another leader), round 1's
/// commit, even without its proposal, is still taken from round 1's leader: the leader check
/// follows the commit's round, not the validator's.
#[tokio::test(start_paused = true)]
async fn a_late_commit_is_taken_from_its_rounds_leader_after_a_timeout() {
    let setup = Setup::start().await;
    let mut status = setup.consensus.watch_status();
    status.wait_for(|status| status.round >= 2).await.unwrap();

    let block_1 = block(setup.leader_1.id(), 1, 1, BlockId::GENESIS);
    setup.leader_1.send(&setup.honest, &commit_of(&block_1));
    let status = status
        .wait_for(|status| status.committed_height == 1)
        .await
        .unwrap()
        .to_owned();
    assert_eq!(status.committed_block, block_1.id());
    assert_eq!(
        status.round, 2,
        "a commit of an earlier round keeps the round"
    );
    assert_eq!(
        setup
            .consensus
            .metrics()
            .rejected(Rejected::CommitNotFromLeader),
        0
    );
    setup.shutdown().await;
}

/// A leader whose timer fires only after its round is over (a stalled or starved process)
/// moves to the next round without proposing: a proposal it would at once abandon, with the
/// votes it would draw, is only load on the others.
#[tokio::test(start_paused = true)]
async fn a_leader_woken_after_its_round_ended_does_not_propose_in_it() {
    let mut setup = Setup::start().await;
    // Let the actor start and set its timers, then wake it past both the proposal time
    // (100 ms) and the end of round 0 (1 s) at once.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_millis(1500)).await;
    let mut status = setup.consensus.watch_status();
    status.wait_for(|status| status.round >= 1).await.unwrap();
    assert_eq!(setup.consensus.status().round_timeouts, 1);

    // Round 1's leader is absent from this test's script: nothing more comes for a while.
    let proposal = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Event::Message {
                message: ConsensusMsg::Proposal(block),
                ..
            } = setup.leader_1.events.next().await.expect("events end")
            {
                return block;
            }
        }
    })
    .await;
    assert!(proposal.is_err(), "proposed after its round: {proposal:?}");
    setup.shutdown().await;
}
