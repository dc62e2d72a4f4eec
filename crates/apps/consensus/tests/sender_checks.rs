//! Votes and commits are taken from the peers entitled to send them: a vote counts only from
//! the validator it names, a commit only from the leader of its round. One honest validator
//! runs consensus; the other side is a bare network sending hand-made messages. Runs on
//! tokio's paused clock, over the memory transport.

use std::time::Duration;

use consensus::{BlockId, Commit, ConsensusHandle, ConsensusMsg, Rejected, Vote};
use futures::StreamExt;
use peerlane::{Event, Identity, Network, NetworkClient, NetworkEvents, PeerNetworkId};
use prometheus_client::registry::Registry;
use wire::PeerId;

mod common;

use common::{HonestValidator, NETWORK, consensus_network, identity};

/// The honest validator (first in `validators`, so the leader of round 0) running mempool and
/// consensus, and a bare network with `other`'s identity connected to it.
struct Setup {
    honest: Network,
    consensus: ConsensusHandle,
    other: Network,
    client: NetworkClient<ConsensusMsg>,
    events: NetworkEvents<ConsensusMsg>,
}

impl Setup {
    async fn start(validators: Vec<PeerId>, other: Identity) -> Self {
        let validator = HonestValidator::new(validators);
        let honest_id = validator.network.peer_id();
        let honest_address = validator.network.listen_address().clone();

        let (builder, client, events) = consensus_network(other, &mut Registry::default());
        let other = builder.build().unwrap();
        other.dial(honest_id, honest_address).await.unwrap();
        let (honest, consensus) = validator.run();
        Self {
            honest,
            consensus,
            other,
            client,
            events,
        }
    }

    fn to_honest(&self) -> PeerNetworkId {
        PeerNetworkId::new(NETWORK, self.honest.peer_id())
    }

    async fn vote(&self, round: u64, block_id: BlockId, voter: PeerId) -> bool {
        let vote = ConsensusMsg::Vote(Vote {
            round,
            block_id,
            voter,
        });
        match self
            .client
            .send_rpc(self.to_honest(), vote, Duration::from_secs(1))
            .await
            .unwrap()
        {
            ConsensusMsg::VoteAck { counted, .. } => counted,
            other => panic!("not a vote ack: {other:?}"),
        }
    }

    async fn shutdown(self) {
        self.other.shutdown().await;
        self.honest.shutdown().await;
    }
}

/// A validator that forges votes in the names of two others cannot make a quorum of three
/// alone: only its own vote counts, the forged ones are acked as not counted and counted as
/// rejected, and the leader commits nothing.
#[tokio::test(start_paused = true)]
async fn a_validator_cannot_vote_for_others() {
    let (absent_1, absent_2) = (identity(2).peer_id(), identity(3).peer_id());
    let forger = identity(1);
    let forger_id = forger.peer_id();
    let validators = vec![identity(0).peer_id(), forger_id, absent_1, absent_2];
    let mut setup = Setup::start(validators, forger).await;

    // The honest leader proposes round 0 after its proposal delay.
    let block = loop {
        match setup.events.next().await.expect("events end") {
            Event::Message {
                message: ConsensusMsg::Proposal(block),
                ..
            } => break block,
            _ => continue,
        }
    };
    assert_eq!(block.round, 0);
    let id = block.id();
    assert!(setup.vote(0, id, forger_id).await, "its own vote counts");
    assert!(
        !setup.vote(0, id, absent_1).await,
        "a vote forged for another"
    );
    assert!(
        !setup.vote(0, id, absent_2).await,
        "a vote forged for a third"
    );

    // Well within the round (1 s): a quorum would have committed at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(setup.consensus.committed_height(), 0);
    let metrics = setup.consensus.metrics();
    assert_eq!(metrics.votes_counted(), 1);
    assert_eq!(metrics.rejected(Rejected::VoteNotFromVoter), 2);
    setup.shutdown().await;
}

/// A commit from a peer outside the validator set, or from a validator that is not the
/// leader of the commit's round, is dropped and counted; the same commit from the round's
/// leader is taken.
#[tokio::test(start_paused = true)]
async fn a_commit_is_taken_only_from_the_leader_of_its_round() {
    let outsider = identity(9);
    let validator = identity(1);
    let validators = vec![
        identity(0).peer_id(),
        validator.peer_id(),
        identity(2).peer_id(),
        identity(3).peer_id(),
    ];
    let commit = |round| {
        ConsensusMsg::Commit(Commit {
            round,
            block_id: BlockId([7; 32]),
            height: 5,
        })
    };

    // Not a validator at all.
    let setup = Setup::start(validators.clone(), outsider).await;
    setup
        .client
        .send_to_peer(setup.to_honest(), &commit(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(setup.consensus.committed_height(), 0);
    assert_eq!(
        setup
            .consensus
            .metrics()
            .rejected(Rejected::CommitNotFromLeader),
        1
    );
    setup.shutdown().await;

    // A validator, but round 2's leader is the third validator; round 1's is this one.
    let setup = Setup::start(validators, validator).await;
    setup
        .client
        .send_to_peer(setup.to_honest(), &commit(2))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(setup.consensus.committed_height(), 0);
    assert_eq!(
        setup
            .consensus
            .metrics()
            .rejected(Rejected::CommitNotFromLeader),
        1
    );
    setup
        .client
        .send_to_peer(setup.to_honest(), &commit(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(setup.consensus.committed_height(), 5, "the leader's word");
    setup.shutdown().await;
}
