//! Four validators over the memory transport, each running a mempool and consensus: they
//! commit the same blocks at the same heights, with the transactions clients submitted, and go
//! on without a validator that shuts down. Runs on tokio's paused clock: round timeouts and
//! proposal delays cost no real time.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use consensus::{
    BlockId, CommittedBlock, Consensus, ConsensusConfig, ConsensusHandle, ConsensusMsg,
};
use mempool::{Mempool, MempoolConfig, MempoolHandle, MempoolMsg, Transaction, TxnId};
use peerlane::{Identity, Network, NetworkBuilder, NetworkConfig, TransportKind};
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::{eventually_within, key_from_seed};
use tokio::sync::{broadcast, oneshot};
use wire::{NetworkId, PeerId, ProtocolId};

/// A validator: its network, mempool and consensus, and the switch that stops both actors.
struct Validator {
    network: Network,
    mempool: MempoolHandle,
    consensus: ConsensusHandle,
    commits: broadcast::Receiver<CommittedBlock>,
    stop: Vec<oneshot::Sender<()>>,
    registry: Registry,
}

fn identity(seed: u64) -> Identity {
    Identity::new(key_from_seed(seed))
}

/// Builds, connects (full mesh) and starts `n` validators.
async fn validators(n: u64) -> Vec<Validator> {
    validators_linked(n, false).await
}

/// Builds and starts `n` validators, connected in a full mesh, or with `line` only each to
/// the next (the others reached through routing, which has converged before the start).
async fn validators_linked(n: u64, line: bool) -> Vec<Validator> {
    let ids: Vec<PeerId> = (0..n).map(|seed| identity(seed).peer_id()).collect();
    let mut nodes = Vec::new();
    let mut actors = Vec::new();
    for seed in 0..n {
        let mut registry = Registry::default();
        let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
        config.identity = Some(identity(seed));
        let mut builder =
            NetworkBuilder::new(config, TransportKind::Memory, &mut registry).unwrap();
        let (mempool_client, mempool_events) = builder
            .add_application::<MempoolMsg>(
                [ProtocolId::MEMPOOL_DIRECT_SEND],
                [],
                Default::default(),
            )
            .unwrap();
        let (client, events) = builder
            .add_application::<ConsensusMsg>(
                [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
                [ProtocolId::CONSENSUS_RPC_BCS],
                Default::default(),
            )
            .unwrap();
        let network = builder.build().unwrap();
        let (mempool_actor, mempool) = Mempool::new(
            MempoolConfig::default(),
            mempool_client,
            mempool_events,
            &mut registry,
        );
        let config = ConsensusConfig::new(NetworkId::Public, ids.clone());
        let (consensus_actor, consensus) = Consensus::new(
            config,
            network.peer_id(),
            client,
            events,
            mempool.clone(),
            &mut registry,
        )
        .unwrap();
        let commits = consensus.subscribe_commits();
        actors.push((mempool_actor, consensus_actor));
        nodes.push(Validator {
            network,
            mempool,
            consensus,
            commits,
            stop: Vec::new(),
            registry,
        });
    }
    for (i, a) in nodes.iter().enumerate() {
        let others = if line {
            &nodes[i + 1..(i + 2).min(nodes.len())]
        } else {
            &nodes[i + 1..]
        };
        for b in others {
            a.network
                .dial(b.network.peer_id(), b.network.listen_address().clone())
                .await
                .unwrap();
        }
    }
    if line {
        let everyone = i64::try_from(n).unwrap() - 1;
        eventually_within(
            "every validator has a route to every other",
            Duration::from_secs(30),
            POLL,
            || {
                nodes
                    .iter()
                    .all(|node| node.network.metrics().routing().reachable_peers() == everyone)
            },
        )
        .await;
    }
    // Everyone connected: start every actor at the same instant.
    for (node, (mempool_actor, consensus_actor)) in nodes.iter_mut().zip(actors) {
        let (mempool_stop, mempool_shutdown) = oneshot::channel::<()>();
        let (consensus_stop, consensus_shutdown) = oneshot::channel::<()>();
        node.stop = vec![mempool_stop, consensus_stop];
        tokio::spawn(mempool_actor.run(async move {
            let _ = mempool_shutdown.await;
        }));
        tokio::spawn(consensus_actor.run(async move {
            let _ = consensus_shutdown.await;
        }));
    }
    nodes
}

impl Validator {
    /// The blocks committed since the last call, by height.
    fn drain_commits(&mut self, into: &mut BTreeMap<u64, CommittedBlock>) {
        loop {
            match self.commits.try_recv() {
                Ok(block) => {
                    into.insert(block.height, block);
                }
                Err(broadcast::error::TryRecvError::Empty) => return,
                Err(err) => panic!("commit subscription: {err}"),
            }
        }
    }

    async fn shutdown(self) {
        for stop in self.stop {
            let _ = stop.send(());
        }
        self.network.shutdown().await;
    }
}

/// Random transactions of 256 to 512 bytes.
fn random_txns(rng: &mut impl Rng, count: usize) -> Vec<Transaction> {
    (0..count)
        .map(|_| {
            let len = rng.gen_range(256..=512);
            Transaction::new((0..len).map(|_| rng.r#gen()).collect::<Vec<u8>>())
        })
        .collect()
}

/// How often (test clock) a wait checks its condition.
const POLL: Duration = Duration::from_millis(10);

/// Asserts that the chains agree: the same block id at every height two nodes both committed,
/// each chain links to its parent, and no transaction is committed twice.
fn assert_same_chain(chains: &[BTreeMap<u64, CommittedBlock>]) {
    let mut by_height: BTreeMap<u64, BlockId> = BTreeMap::new();
    for chain in chains {
        let mut parent = None;
        let mut seen: HashSet<TxnId> = HashSet::new();
        for (height, block) in chain {
            let id = *by_height.entry(*height).or_insert(block.block_id);
            assert_eq!(block.block_id, id, "a different block at height {height}");
            if let Some(parent) = parent {
                assert_eq!(
                    block.parent_id, parent,
                    "height {height} does not extend its parent"
                );
            }
            parent = Some(block.block_id);
            for txn in &block.txn_ids {
                assert!(seen.insert(*txn), "transaction {txn} committed twice");
            }
        }
    }
}

/// Four validators connected in a line (each only to the next) still commit the same blocks:
/// proposals, votes and commits between validators that are not connected go through
/// routing, and arrive.
#[tokio::test(start_paused = true)]
async fn validators_in_a_line_commit_through_routing() {
    let mut nodes = validators_linked(4, true).await;
    for (i, node) in nodes.iter().enumerate() {
        let connected = node.network.peers_and_metadata().connected_peers().len();
        assert_eq!(
            connected,
            if i == 0 || i == 3 { 1 } else { 2 },
            "validator {i}"
        );
    }
    let mut rng = StdRng::seed_from_u64(12);
    for txn in random_txns(&mut rng, 50) {
        nodes[0].mempool.submit(txn).unwrap();
    }
    eventually_within(
        "every node reaches height 4",
        Duration::from_secs(60),
        POLL,
        || {
            nodes
                .iter()
                .all(|node| node.consensus.committed_height() >= 4)
        },
    )
    .await;
    let mut chains = vec![BTreeMap::new(); nodes.len()];
    for (node, chain) in nodes.iter_mut().zip(&mut chains) {
        node.drain_commits(chain);
    }
    assert_same_chain(&chains);
    // A leader at an end of the line is connected to one validator only: its blocks need
    // routed votes to reach a quorum of three.
    let ends = [nodes[0].network.peer_id(), nodes[3].network.peer_id()];
    assert!(
        chains[1].values().any(|block| ends.contains(&block.author)),
        "{:?}",
        chains[1]
            .values()
            .map(|block| block.author)
            .collect::<Vec<_>>()
    );
    let delivered: u64 = nodes
        .iter()
        .map(|node| node.network.metrics().routing().routed("delivered"))
        .sum();
    assert!(delivered > 0);
    for node in nodes {
        node.shutdown().await;
    }
}

/// Four validators commit blocks holding the transactions submitted at two of them; every node
/// commits the same block id at every height, and each mempool is emptied by the commits.
#[tokio::test(start_paused = true)]
async fn four_validators_commit_the_same_blocks_with_the_submitted_transactions() {
    let mut nodes = validators(4).await;
    let mut rng = StdRng::seed_from_u64(11);
    let txns = random_txns(&mut rng, 300);
    for (i, txn) in txns.iter().enumerate() {
        nodes[i % 2].mempool.submit(txn.clone()).unwrap();
    }
    eventually_within(
        "every transaction is committed everywhere",
        Duration::from_secs(60),
        POLL,
        || {
            nodes
                .iter()
                .all(|node| node.consensus.committed_transactions() == 300)
        },
    )
    .await;
    eventually_within(
        "every node reaches height 6",
        Duration::from_secs(60),
        POLL,
        || {
            nodes
                .iter()
                .all(|node| node.consensus.committed_height() >= 6)
        },
    )
    .await;

    let mut chains = vec![BTreeMap::new(); nodes.len()];
    for (node, chain) in nodes.iter_mut().zip(&mut chains) {
        node.drain_commits(chain);
        assert_eq!(node.mempool.pending(), 0);
        assert_eq!(
            chain.keys().next(),
            Some(&1),
            "every node commits from height 1"
        );
    }
    assert_same_chain(&chains);
    let committed: HashSet<TxnId> = chains[0].values().flat_map(|b| b.txn_ids.clone()).collect();
    assert_eq!(committed, txns.iter().map(Transaction::id).collect());
    // Every leader proposed: blocks come from all four.
    let authors: HashSet<PeerId> = chains[0].values().map(|b| b.author).collect();
    assert_eq!(authors.len(), 4);
    let status = nodes[0].consensus.status();
    assert_eq!(status.round_timeouts, 0, "{status:?}");

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &nodes[1].registry).unwrap();
    let votes_timed: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("consensus_vote_rpc_latency_seconds_count "))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no vote latency histogram: {text}"));
    assert!(votes_timed > 0, "{text}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// With one of four validators shut down, the other three still reach quorum: its rounds
/// time out, the next leader takes over, and the three keep committing the same blocks,
/// including transactions submitted after the shutdown.
#[tokio::test(start_paused = true)]
async fn three_of_four_validators_go_on_when_one_shuts_down() {
    let mut nodes = validators(4).await;
    eventually_within("height 3", Duration::from_secs(30), POLL, || {
        nodes
            .iter()
            .all(|node| node.consensus.committed_height() >= 3)
    })
    .await;
    let dead = nodes.remove(2);
    let dead_id = dead.network.peer_id();
    dead.shutdown().await;
    let height = nodes
        .iter()
        .map(|n| n.consensus.committed_height())
        .max()
        .unwrap();

    let txns = random_txns(&mut StdRng::seed_from_u64(5), 50);
    for txn in &txns {
        nodes[0].mempool.submit(txn.clone()).unwrap();
    }
    eventually_within("eight more blocks", Duration::from_secs(60), POLL, || {
        nodes
            .iter()
            .all(|node| node.consensus.committed_height() >= height + 8)
    })
    .await;
    eventually_within(
        "the new transactions are committed",
        Duration::from_secs(60),
        POLL,
        || nodes.iter().all(|node| node.mempool.pending() == 0),
    )
    .await;

    let mut chains = vec![BTreeMap::new(); nodes.len()];
    for (node, chain) in nodes.iter_mut().zip(&mut chains) {
        node.drain_commits(chain);
        let status = node.consensus.status();
        assert!(
            status.round_timeouts >= 2,
            "the dead leader's rounds time out: {status:?}"
        );
    }
    assert_same_chain(&chains);
    let after: Vec<&CommittedBlock> = chains[0]
        .values()
        .filter(|b| b.height > height + 1)
        .collect();
    assert!(
        after.iter().all(|b| b.author != dead_id),
        "a dead node does not lead"
    );
    let committed: HashSet<TxnId> = chains[0].values().flat_map(|b| b.txn_ids.clone()).collect();
    assert!(txns.iter().all(|txn| committed.contains(&txn.id())));
    for node in nodes {
        node.shutdown().await;
    }
}
