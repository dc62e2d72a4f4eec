//! The mempool over the memory transport: deduplication, the bounded pool, and gossip across
//! three nodes. Runs on tokio's paused clock: the gossip interval costs no real time.

use std::time::Duration;

use mempool::{Error, Mempool, MempoolConfig, MempoolHandle, MempoolMsg, Transaction};
use peerlane::{Identity, Network, NetworkBuilder, NetworkConfig, TransportKind};
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::{eventually, key_from_seed};
use wire::{NetworkId, ProtocolId};

/// A node running a mempool.
struct Node {
    network: Network,
    mempool: MempoolHandle,
    registry: Registry,
}

/// Node `seed` with a mempool of `config`, its actor spawned.
fn node(seed: u64, config: MempoolConfig) -> Node {
    let mut registry = Registry::default();
    let mut network_config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
    network_config.identity = Some(Identity::new(key_from_seed(seed)));
    let mut builder =
        NetworkBuilder::new(network_config, TransportKind::Memory, &mut registry).unwrap();
    let (client, events) = builder
        .add_application::<MempoolMsg>([ProtocolId::MEMPOOL_DIRECT_SEND], [], Default::default())
        .unwrap();
    let network = builder.build().unwrap();
    let (actor, mempool) = Mempool::new(config, client, events, &mut registry);
    tokio::spawn(actor.run(std::future::pending()));
    Node {
        network,
        mempool,
        registry,
    }
}

impl Node {
    async fn dial(&self, other: &Self) {
        self.network
            .dial(
                other.network.peer_id(),
                other.network.listen_address().clone(),
            )
            .await
            .unwrap();
    }
}

/// A transaction with a random payload of 256 to 512 bytes.
fn random_txn(rng: &mut impl Rng) -> Transaction {
    let len = rng.gen_range(256..=512);
    let payload: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    Transaction::new(payload)
}

/// A client's second copy of a transaction is refused as a duplicate and counted, and the pool
/// keeps one.
#[tokio::test(start_paused = true)]
async fn a_duplicate_submission_is_refused_and_counted() {
    let node = node(1, MempoolConfig::default());
    let txn = random_txn(&mut StdRng::seed_from_u64(7));
    let id = node.mempool.submit(txn.clone()).unwrap();
    assert_eq!(id, txn.id());
    assert_eq!(node.mempool.submit(txn), Err(Error::Duplicate { id }));
    let counts = node.mempool.counts();
    assert_eq!(
        (counts.pending, counts.accepted, counts.duplicates),
        (1, 1, 1)
    );
    node.network.shutdown().await;
}

/// A pool at capacity refuses with `Error::Full`, counts it in the registry, and takes
/// transactions again once consensus commits some.
#[tokio::test(start_paused = true)]
async fn a_full_pool_refuses_with_a_typed_error_until_a_commit() {
    let config = MempoolConfig {
        capacity: 3,
        ..MempoolConfig::default()
    };
    let node = node(1, config);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..3 {
        node.mempool.submit(random_txn(&mut rng)).unwrap();
    }
    assert_eq!(
        node.mempool.submit(random_txn(&mut rng)),
        Err(Error::Full { capacity: 3 })
    );
    assert_eq!(node.mempool.counts().rejected_full, 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry).unwrap();
    assert!(text.contains("mempool_rejected_full_total 1"), "{text}");

    let batch = node.mempool.take_batch(2);
    assert_eq!(batch.len(), 2);
    assert_eq!(node.mempool.commit(batch.iter().map(Transaction::id)), 2);
    node.mempool.submit(random_txn(&mut rng)).unwrap();
    assert_eq!(node.mempool.pending(), 2);
    node.network.shutdown().await;
}

/// On a line a—b—c, transactions submitted at a reach b and, forwarded by b, c; nothing is
/// sent back to the peer it came from: a receives nothing, b receives each transaction once.
#[tokio::test(start_paused = true)]
async fn gossip_reaches_every_node_of_a_line_and_never_returns_to_its_sender() {
    let (a, b, c) = (
        node(1, MempoolConfig::default()),
        node(2, MempoolConfig::default()),
        node(3, MempoolConfig::default()),
    );
    a.dial(&b).await;
    b.dial(&c).await;
    let mut rng = StdRng::seed_from_u64(7);
    let txns: Vec<Transaction> = (0..250).map(|_| random_txn(&mut rng)).collect();
    for txn in &txns {
        a.mempool.submit(txn.clone()).unwrap();
    }
    eventually("c has every transaction", || c.mempool.pending() == 250).await;
    // A few more gossip intervals, for any echo to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ids: Vec<_> = txns.iter().map(Transaction::id).collect();
    for node in [&a, &b, &c] {
        let batch = node.mempool.take_batch(1000);
        assert_eq!(batch.len(), 250);
        assert!(batch.iter().all(|txn| ids.contains(&txn.id())));
    }
    let (a_counts, b_counts, c_counts) =
        (a.mempool.counts(), b.mempool.counts(), c.mempool.counts());
    assert_eq!(a_counts.received, 0, "echoed back to a: {a_counts:?}");
    assert_eq!(a_counts.gossiped, 250);
    assert_eq!(b_counts.received, 250, "echoed back to b: {b_counts:?}");
    assert_eq!(b_counts.gossiped, 250, "b sends to c only: {b_counts:?}");
    assert_eq!((c_counts.received, c_counts.gossiped), (250, 0));
    for node in [a, b, c] {
        node.network.shutdown().await;
    }
}

/// In a full mesh of three, the same transaction submitted at two nodes ends up once in every
/// pool; the copies that cross are counted as duplicates.
#[tokio::test(start_paused = true)]
async fn a_transaction_from_two_sides_is_kept_once_by_every_node() {
    let (a, b, c) = (
        node(1, MempoolConfig::default()),
        node(2, MempoolConfig::default()),
        node(3, MempoolConfig::default()),
    );
    a.dial(&b).await;
    b.dial(&c).await;
    a.dial(&c).await;
    let txn = random_txn(&mut StdRng::seed_from_u64(7));
    a.mempool.submit(txn.clone()).unwrap();
    c.mempool.submit(txn.clone()).unwrap();
    eventually("b has the transaction", || b.mempool.pending() == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&a, &b, &c] {
        assert_eq!(node.mempool.take_batch(10), vec![txn.clone()]);
    }
    let duplicates: u64 = [&a, &b, &c]
        .iter()
        .map(|node| node.mempool.counts().duplicates)
        .sum();
    assert!(duplicates >= 2, "the crossing copies: {duplicates}");
    for node in [a, b, c] {
        node.network.shutdown().await;
    }
}

/// `run` returns once its shutdown future completes; the handle keeps answering afterwards.
#[tokio::test(start_paused = true)]
async fn the_actor_stops_when_its_shutdown_completes() {
    let mut registry = Registry::default();
    let mut network_config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
    network_config.identity = Some(Identity::new(key_from_seed(1)));
    let mut builder =
        NetworkBuilder::new(network_config, TransportKind::Memory, &mut registry).unwrap();
    let (client, events) = builder
        .add_application::<MempoolMsg>([ProtocolId::MEMPOOL_DIRECT_SEND], [], Default::default())
        .unwrap();
    let network = builder.build().unwrap();
    let (actor, handle) = Mempool::new(MempoolConfig::default(), client, events, &mut registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(actor.run(async move {
        let _ = stopped.await;
    }));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the actor stops")
        .unwrap();
    handle
        .submit(random_txn(&mut StdRng::seed_from_u64(3)))
        .unwrap();
    assert_eq!(handle.pending(), 1);
    network.shutdown().await;
}
