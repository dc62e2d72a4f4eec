//! State sync between nodes over the memory transport, on tokio's paused clock: catching up,
//! following announcements, serving past the end, and retrying after a silent peer.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use peerlane::{
    Event, Network, NetworkBuilder, NetworkClient, NetworkConfig, NetworkEvents, PeerNetworkId,
    TransportKind,
};
use prometheus_client::registry::Registry;
use state_sync::{
    ArchiveError, ArchiveSpan, ArchiveWriter, Block, BlockArchive, Config, DIRECT_SEND_PROTOCOLS,
    GENESIS_PARENT, Metrics, RPC_PROTOCOLS, Retention, StateSync, StateSyncMsg, StoreHandle,
};
use test_support::within_for;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wire::NetworkId;

/// How long (test clock) a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// The block after `parent` (or the first block), with `size` bytes of payload.
fn next_block(parent: Option<&Block>, size: usize) -> Block {
    let height = parent.map_or(1, |parent| parent.height + 1);
    let mut id = [0xab; 32];
    id[..8].copy_from_slice(&height.to_be_bytes());
    Block {
        height,
        id,
        parent_id: parent.map_or(GENESIS_PARENT, |parent| parent.id),
        payload: Bytes::from(vec![(height % 251) as u8; size]),
    }
}

/// `count` linked blocks of `size` bytes each, from height 1.
fn chain(count: usize, size: usize) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::with_capacity(count);
    for _ in 0..count {
        let block = next_block(blocks.last(), size);
        blocks.push(block);
    }
    blocks
}

/// A network on the memory transport with one application speaking [`StateSyncMsg`].
fn network() -> (
    Network,
    NetworkClient<StateSyncMsg>,
    NetworkEvents<StateSyncMsg>,
) {
    let config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
    let mut builder =
        NetworkBuilder::new(config, TransportKind::Memory, &mut Registry::default()).unwrap();
    let (client, events) = builder
        .add_application::<StateSyncMsg>(DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, Default::default())
        .unwrap();
    (builder.build().unwrap(), client, events)
}

/// A node running [`StateSync`] over its store.
struct SyncNode {
    network: Network,
    store: StoreHandle,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SyncNode {
    /// A node whose store starts with `blocks`, all kept in memory.
    fn start(config: Config, blocks: Vec<Block>) -> Self {
        let store = StoreHandle::with_retention(Retention {
            max_blocks: usize::MAX,
            max_bytes: usize::MAX,
        });
        for block in blocks {
            store.append(block).unwrap();
        }
        Self::with_store(config, store)
    }

    /// A node over `store`.
    fn with_store(config: Config, store: StoreHandle) -> Self {
        let (network, client, events) = network();
        let metrics = Metrics::register(&mut Registry::default());
        let sync =
            StateSync::new(config, client, events, store.clone()).with_metrics(metrics.clone());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sync.run(async move {
            let _ = stopped.await;
        }));
        Self {
            network,
            store,
            metrics,
            stop,
            task,
        }
    }

    /// Waits until the store reaches `height`.
    async fn reaches(&self, height: u64) {
        let mut heights = self.store.subscribe_height();
        within_for(
            &format!("height {height}"),
            WAIT,
            heights.wait_for(|h| *h >= height),
        )
        .await
        .unwrap();
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
        self.network.shutdown().await;
    }
}

/// Dials `to` from `from`.
async fn dial(from: &Network, to: &Network) {
    within_for(
        "dial",
        WAIT,
        from.dial(to.peer_id(), to.listen_address().clone()),
    )
    .await
    .unwrap();
}

fn as_peer(network: &Network) -> PeerNetworkId {
    PeerNetworkId::new(network.network_id(), network.peer_id())
}

/// An empty node catches up from a node with 50 blocks of 200 KiB in responses of up to
/// 6 MiB (above the stack's 4 MiB frames, so streamed), then follows 5 blocks its peer's
/// consensus commits afterwards, from their announcements.
#[tokio::test(start_paused = true)]
async fn an_empty_node_catches_up_then_follows_new_commits() {
    const SIZE: usize = 200 * 1024;
    let blocks = chain(50, SIZE);
    let server = SyncNode::start(Config::default(), blocks.clone());
    let client = SyncNode::start(Config::default(), Vec::new());
    assert!(client.store.caught_up(), "nothing announced yet");

    dial(&client.network, &server.network).await;
    client.reaches(50).await;
    assert!(client.store.caught_up());
    assert_eq!(client.store.highest_announced(), 50);
    for block in &blocks {
        assert_eq!(client.store.block(block.height).as_ref(), Some(block));
    }
    assert_eq!(client.metrics.blocks_fetched(), 50);
    assert_eq!(client.metrics.bytes_fetched(), 50 * SIZE as u64);
    assert_eq!(client.metrics.rpc_failures(), 0);
    assert_eq!(server.metrics.blocks_served(), 50);

    // The server's consensus commits 5 more blocks, one by one.
    let mut last = blocks.last().cloned();
    for _ in 0..5 {
        let block = next_block(last.as_ref(), 1024);
        server.store.append(block.clone()).unwrap();
        last = Some(block);
    }
    client.reaches(55).await;
    assert!(client.store.caught_up());
    assert_eq!(client.store.last_block(), last);
    assert_eq!(client.metrics.blocks_fetched(), 55);

    client.shutdown().await;
    server.shutdown().await;
}

/// A request reaching past the server's committed height gets the blocks the server has and
/// its height; one starting past it gets none.
#[tokio::test(start_paused = true)]
async fn a_request_past_the_servers_height_returns_what_it_has() {
    let blocks = chain(10, 100);
    let server = SyncNode::start(Config::default(), blocks.clone());
    let (network, client, _events) = network();
    dial(&network, &server.network).await;
    let to_server = as_peer(&server.network);

    let request = StateSyncMsg::GetBlocks {
        start_height: 8,
        end_height: 20,
    };
    let response = within_for("response", WAIT, client.send_rpc(to_server, request, WAIT))
        .await
        .unwrap();
    assert_eq!(
        response,
        StateSyncMsg::Blocks {
            blocks: blocks[7..].to_vec(),
            committed_height: 10,
            lowest_height: 1,
        }
    );

    let request = StateSyncMsg::GetBlocks {
        start_height: 11,
        end_height: 20,
    };
    let response = within_for("response", WAIT, client.send_rpc(to_server, request, WAIT))
        .await
        .unwrap();
    assert_eq!(
        response,
        StateSyncMsg::Blocks {
            blocks: Vec::new(),
            committed_height: 10,
            lowest_height: 1,
        }
    );
    assert_eq!(server.metrics.blocks_served(), 3);

    network.shutdown().await;
    server.shutdown().await;
}

/// A peer that announces a height but never answers is given up on after the RPC time-out,
/// counted as a failure, and the blocks come from another peer.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_retried_on_another_after_the_timeout() {
    let blocks = chain(10, 1024);
    let mut config = Config::default();
    config.rpc_timeout = Duration::from_secs(5);
    let node = SyncNode::start(config, Vec::new());

    // The silent peer announces height 10, then holds the request without answering.
    let (silent, silent_client, mut silent_events) = network();
    dial(&silent, &node.network).await;
    let last = blocks.last().unwrap();
    silent_client
        .send_to_peer(
            as_peer(&node.network),
            &StateSyncMsg::Announce {
                height: 10,
                block_id: last.id,
                lowest_height: 1,
            },
        )
        .unwrap();
    let started = tokio::time::Instant::now();
    let _held = loop {
        match within_for("request to the silent peer", WAIT, silent_events.next()).await {
            Some(Event::RpcRequest { responder, .. }) => break responder,
            Some(_) => {}
            None => panic!("the silent peer's events ended"),
        }
    };

    // A good server joins while the request is pending.
    let server = SyncNode::start(Config::default(), blocks.clone());
    dial(&server.network, &node.network).await;
    node.reaches(10).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "caught up before the time-out: {:?}",
        started.elapsed()
    );
    assert_eq!(node.store.last_block().as_ref(), Some(last));
    assert_eq!(node.metrics.rpc_failures(), 1);
    assert_eq!(node.metrics.blocks_fetched(), 10);
    assert_eq!(server.metrics.blocks_served(), 10);

    node.shutdown().await;
    server.shutdown().await;
    silent.shutdown().await;
}

/// A response holds at most `max_response_bytes` of blocks (here about 6 MiB of 200 KiB
/// blocks, more than one 4 MiB frame, so the stack streams it) and at most
/// `max_blocks_per_response` blocks.
#[tokio::test(start_paused = true)]
async fn responses_are_bounded_by_bytes_and_by_block_count() {
    const SIZE: usize = 200 * 1024;
    let blocks = chain(50, SIZE);
    let by_bytes = SyncNode::start(Config::default(), blocks.clone());
    let mut config = Config::default();
    config.max_blocks_per_response = 5;
    let by_count = SyncNode::start(config, blocks.clone());
    let (network, client, _events) = network();
    dial(&network, &by_bytes.network).await;
    dial(&network, &by_count.network).await;
    let request = || StateSyncMsg::GetBlocks {
        start_height: 1,
        end_height: 50,
    };

    let response = within_for(
        "response",
        WAIT,
        client.send_rpc(as_peer(&by_bytes.network), request(), WAIT),
    )
    .await
    .unwrap();
    let StateSyncMsg::Blocks { blocks: got, .. } = response else {
        panic!("not blocks: {response:?}");
    };
    let bytes: usize = got.iter().map(Block::wire_size).sum();
    assert!(
        bytes <= 6 * 1024 * 1024 && bytes > 4 * 1024 * 1024,
        "{bytes} bytes"
    );
    assert_eq!(got, blocks[..got.len()]);

    let response = within_for(
        "response",
        WAIT,
        client.send_rpc(as_peer(&by_count.network), request(), WAIT),
    )
    .await
    .unwrap();
    let StateSyncMsg::Blocks { blocks: got, .. } = response else {
        panic!("not blocks: {response:?}");
    };
    assert_eq!(got, blocks[..5]);

    network.shutdown().await;
    by_bytes.shutdown().await;
    by_count.shutdown().await;
}

/// Blocks that do not link onto the store are refused and counted as a failed request; the
/// node gets the chain from another peer.
#[tokio::test(start_paused = true)]
async fn blocks_that_do_not_link_are_refused_and_fetched_elsewhere() {
    let blocks = chain(10, 1024);
    let node = SyncNode::start(Config::default(), Vec::new());

    // The liar announces height 10 and answers with blocks of a wrong parent.
    let (liar, liar_client, mut liar_events) = network();
    dial(&liar, &node.network).await;
    let last = blocks.last().unwrap();
    liar_client
        .send_to_peer(
            as_peer(&node.network),
            &StateSyncMsg::Announce {
                height: 10,
                block_id: last.id,
                lowest_height: 1,
            },
        )
        .unwrap();
    loop {
        match within_for("request to the liar", WAIT, liar_events.next()).await {
            Some(Event::RpcRequest { responder, .. }) => {
                let mut forged = blocks.clone();
                forged[0].parent_id = [9; 32];
                responder
                    .reply(StateSyncMsg::Blocks {
                        blocks: forged,
                        committed_height: 10,
                        lowest_height: 1,
                    })
                    .unwrap();
                break;
            }
            Some(_) => {}
            None => panic!("the liar's events ended"),
        }
    }

    let server = SyncNode::start(Config::default(), blocks.clone());
    dial(&server.network, &node.network).await;
    node.reaches(10).await;
    assert_eq!(node.store.last_block().as_ref(), Some(last));
    assert_eq!(node.store.block(1).as_ref(), Some(&blocks[0]));
    assert_eq!(node.metrics.rpc_failures(), 1);
    assert_eq!(node.metrics.blocks_fetched(), 10);

    node.shutdown().await;
    server.shutdown().await;
    liar.shutdown().await;
}

/// With two peers ahead, the requests alternate between them: both serve part of the chain.
#[tokio::test(start_paused = true)]
async fn requests_go_round_robin_over_the_peers_ahead() {
    let blocks = chain(40, 1024);
    let mut config = Config::default();
    config.max_blocks_per_response = 5;
    let first = SyncNode::start(config.clone(), blocks.clone());
    let second = SyncNode::start(config.clone(), blocks.clone());
    let node = SyncNode::start(config, Vec::new());
    dial(&first.network, &node.network).await;
    dial(&second.network, &node.network).await;
    node.reaches(40).await;
    assert_eq!(node.store.highest_announced(), 40);
    assert_eq!(node.store.last_block().as_ref(), blocks.last());
    let (a, b) = (
        first.metrics.blocks_served(),
        second.metrics.blocks_served(),
    );
    assert_eq!(a + b, 40);
    assert!(a > 0 && b > 0, "served {a} and {b}");

    node.shutdown().await;
    first.shutdown().await;
    second.shutdown().await;
}

/// A store that keeps only its last 20 blocks.
fn pruning_store(blocks: &[Block]) -> StoreHandle {
    let store = StoreHandle::with_retention(Retention {
        max_blocks: 20,
        max_bytes: usize::MAX,
    });
    for block in blocks {
        store.append(block.clone()).unwrap();
    }
    store
}

/// Peers that ran past their in-memory bound no longer hold the early blocks: a node that
/// joins late starts from the lowest block they hold, catches up to their height, and then
/// holds no more than its own bound.
#[tokio::test(start_paused = true)]
async fn a_late_node_catches_up_from_peers_that_pruned_their_early_blocks() {
    let blocks = chain(100, 100);
    let servers = [
        SyncNode::with_store(Config::default(), pruning_store(&blocks)),
        SyncNode::with_store(Config::default(), pruning_store(&blocks)),
    ];
    assert_eq!(servers[0].store.lowest_height(), 81);
    let late = SyncNode::with_store(Config::default(), pruning_store(&[]));
    for server in &servers {
        dial(&late.network, &server.network).await;
    }
    late.reaches(100).await;
    assert_eq!(late.store.lowest_height(), 81);
    assert_eq!(late.store.last_block().unwrap(), blocks[99]);
    assert_eq!(late.metrics.snapshot_starts(), 1);
    assert_eq!(late.metrics.blocks_fetched(), 20);
    late.shutdown().await;
    for server in servers {
        server.shutdown().await;
    }
}

/// While one peer still holds the next height, a node fetches from it rather than skipping
/// ahead to what a pruning peer holds.
#[tokio::test(start_paused = true)]
async fn a_peer_that_holds_the_next_height_is_preferred_to_skipping_ahead() {
    let blocks = chain(100, 100);
    let pruned = SyncNode::with_store(Config::default(), pruning_store(&blocks));
    let archive = SyncNode::start(Config::default(), blocks.clone());
    let node = SyncNode::start(Config::default(), Vec::new());
    dial(&node.network, &pruned.network).await;
    dial(&node.network, &archive.network).await;
    node.reaches(100).await;
    assert_eq!(node.store.lowest_height(), 1);
    assert_eq!(node.metrics.snapshot_starts(), 0);
    assert_eq!(node.metrics.blocks_fetched(), 100);
    for node in [node, pruned, archive] {
        node.shutdown().await;
    }
}

/// One archive read: start, end, max blocks, max bytes, and the blocks returned.
type Read = (u64, u64, usize, usize, usize);

/// An archive in memory with a block bound, as the node's on-disk one behaves: consecutive
/// heights, the oldest pruned first, a batch that does not follow replaces what is held.
#[derive(Debug)]
struct MemoryArchive {
    blocks: std::sync::Mutex<std::collections::BTreeMap<u64, Block>>,
    max_blocks: usize,
    /// Every read: (start, end, max_blocks, max_bytes, blocks returned).
    reads: std::sync::Mutex<Vec<Read>>,
}

impl MemoryArchive {
    fn new(max_blocks: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            blocks: Default::default(),
            max_blocks,
            reads: Default::default(),
        })
    }
}

impl BlockArchive for MemoryArchive {
    fn append(&self, blocks: &[Block]) -> Result<Option<ArchiveSpan>, ArchiveError> {
        let mut held = self.blocks.lock().unwrap();
        let follows = held
            .last_key_value()
            .is_none_or(|(last, _)| blocks.first().is_some_and(|first| first.height == last + 1));
        if !follows {
            held.clear();
        }
        for block in blocks {
            held.insert(block.height, block.clone());
        }
        while held.len() > self.max_blocks {
            held.pop_first();
        }
        drop(held);
        self.span()
    }

    fn read(
        &self,
        start_height: u64,
        end_height: u64,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Result<Vec<Block>, ArchiveError> {
        let held = self.blocks.lock().unwrap();
        let mut out: Vec<Block> = Vec::new();
        let mut bytes = 0;
        for block in held
            .range(start_height..=end_height)
            .map(|(_, block)| block)
        {
            bytes += block.wire_size();
            if out.len() >= max_blocks || (bytes > max_bytes && !out.is_empty()) {
                break;
            }
            out.push(block.clone());
        }
        self.reads.lock().unwrap().push((
            start_height,
            end_height,
            max_blocks,
            max_bytes,
            out.len(),
        ));
        Ok(out)
    }

    fn span(&self) -> Result<Option<ArchiveSpan>, ArchiveError> {
        let held = self.blocks.lock().unwrap();
        Ok(held
            .first_key_value()
            .zip(held.last_key_value())
            .map(|((lowest, _), (highest, _))| ArchiveSpan {
                lowest: *lowest,
                highest: *highest,
                blocks: held.len() as u64,
                bytes: held.values().map(|b| b.wire_size() as u64).sum(),
            }))
    }

    fn clear(&self) -> Result<(), ArchiveError> {
        self.blocks.lock().unwrap().clear();
        Ok(())
    }
}

/// A store keeping `memory` blocks in memory over `archive`, holding `blocks`: appended ten
/// at a time, each ten archived by the writer (as its timer would).
///
/// Tests that read archives run on the real clock: an archive's calls run on its own thread,
/// which a paused clock does not wait for. While a read is under way the runtime looks idle,
/// so a paused clock jumps to the next timer, the requester's RPC deadline, and the request
/// is timed out and asked again of another peer.
async fn archiving_store(
    memory: usize,
    archive: std::sync::Arc<MemoryArchive>,
    blocks: &[Block],
) -> StoreHandle {
    let retention = Retention {
        max_blocks: memory,
        max_bytes: usize::MAX,
    };
    let store = StoreHandle::with_archive(retention, archive).unwrap();
    let writer = ArchiveWriter::new(&store).unwrap();
    for ten in blocks.chunks(10) {
        for block in ten {
            store.append(block.clone()).unwrap();
        }
        writer.archive_new_blocks().await;
    }
    store
}

/// Peers whose in-memory tier ran past its bound into their archive still serve every
/// height: a late node catches up from height 1, from their archives (no snapshot start),
/// which hold the in-memory tier's heights too.
// The real clock: see `archiving_store`.
#[tokio::test]
async fn a_late_node_catches_up_from_the_archive_of_peers_past_their_memory_bound() {
    let blocks = chain(100, 100);
    let mut servers = Vec::new();
    let mut archives = Vec::new();
    for _ in 0..2 {
        let archive = MemoryArchive::new(1000);
        let store = archiving_store(20, archive.clone(), &blocks).await;
        let retained = store.retained();
        assert_eq!((retained.blocks, retained.archived_blocks), (20, 100));
        assert_eq!(store.lowest_in_memory(), 81);
        assert_eq!(store.lowest_height(), 1);
        archives.push(archive);
        servers.push(SyncNode::with_store(Config::default(), store));
    }
    let late = SyncNode::start(Config::default(), Vec::new());
    for server in &servers {
        dial(&late.network, &server.network).await;
    }
    late.reaches(100).await;
    assert_eq!(late.store.lowest_height(), 1);
    assert_eq!(late.store.last_block().unwrap(), blocks[99]);
    assert_eq!(late.metrics.snapshot_starts(), 0);
    assert_eq!(late.metrics.blocks_fetched(), 100);
    let from_archives: u64 = servers
        .iter()
        .map(|s| s.metrics.archive_blocks_read())
        .sum();
    // The archive holds the in-memory tier's blocks too: one response of 100.
    assert_eq!(
        from_archives, 100,
        "heights 1 to 100 come from the archives"
    );
    late.shutdown().await;
    for server in servers {
        server.shutdown().await;
    }
}

/// The archive's own bound decides the lowest height a node advertises and serves.
// The real clock: see `archiving_store`.
#[tokio::test]
async fn the_archive_bound_sets_the_lowest_height_served() {
    let blocks = chain(100, 100);
    let store = archiving_store(20, MemoryArchive::new(50), &blocks).await;
    assert_eq!(store.lowest_height(), 51);
    let server = SyncNode::with_store(Config::default(), store);
    let late = SyncNode::start(Config::default(), Vec::new());
    dial(&late.network, &server.network).await;
    late.reaches(100).await;
    assert_eq!(late.store.lowest_height(), 51);
    assert_eq!(late.metrics.snapshot_starts(), 1);
    late.shutdown().await;
    server.shutdown().await;
}

/// A request for archived heights reads no more than one response from the archive (the
/// block count and byte limits are passed down), stops at the archive's highest height, and
/// is answered with no blocks while `max_concurrent_archive_reads` reads are under way (here
/// none are allowed).
// The real clock: see `archiving_store`.
#[tokio::test]
async fn archived_heights_are_served_within_the_response_limits() {
    const SIZE: usize = 200 * 1024;
    let blocks = chain(60, SIZE);
    let archive = MemoryArchive::new(1000);
    let store = archiving_store(10, archive.clone(), &blocks).await;
    let mut config = Config::default();
    config.max_blocks_per_response = 20;
    let server = SyncNode::with_store(config.clone(), store.clone());
    config.max_concurrent_archive_reads = 0;
    let refusing = SyncNode::with_store(config, store);
    let (network, client, _events) = network();
    dial(&network, &server.network).await;
    dial(&network, &refusing.network).await;
    let get = |start_height, end_height| StateSyncMsg::GetBlocks {
        start_height,
        end_height,
    };
    let ask = |peer, request| {
        let client = &client;
        async move {
            let response = within_for("response", WAIT, client.send_rpc(peer, request, WAIT))
                .await
                .unwrap();
            let StateSyncMsg::Blocks {
                blocks,
                lowest_height,
                committed_height,
            } = response
            else {
                panic!("not blocks: {response:?}");
            };
            assert_eq!((lowest_height, committed_height), (1, 60));
            blocks
        }
    };

    // By bytes: 6 MiB of 200 KiB blocks is 30 blocks, but the count says 20.
    let got = ask(as_peer(&server.network), get(1, u64::MAX)).await;
    assert_eq!(got, blocks[..20]);
    // Up to the archive's highest height only; the rest is asked for next, from memory.
    let got = ask(as_peer(&server.network), get(41, 60)).await;
    assert_eq!(got.len(), 20, "the archive holds all 60 blocks");
    let reads = archive.reads.lock().unwrap().clone();
    assert_eq!(reads.len(), 2);
    for (_, end, max_blocks, max_bytes, returned) in &reads {
        assert_eq!((*max_blocks, *max_bytes), (20, 6 * 1024 * 1024));
        assert!(*end <= 60 && *returned <= 20);
    }
    let got = ask(as_peer(&server.network), get(55, 60)).await;
    assert_eq!(got, blocks[54..], "from memory");
    assert_eq!(archive.reads.lock().unwrap().len(), 2);
    assert_eq!(server.metrics.archive_reads(), 2);

    let got = ask(as_peer(&refusing.network), get(1, 60)).await;
    assert!(got.is_empty());
    assert_eq!(refusing.metrics.archive_reads_refused(), 1);
    assert_eq!(archive.reads.lock().unwrap().len(), 2);

    network.shutdown().await;
    server.shutdown().await;
    refusing.shutdown().await;
}
