//! Which peer a syncing node asks, through the facade over the memory transport on tokio's
//! paused clock: among the peers ahead of it, the one with the low round-trip time (measured
//! by the facade's health checker), and never a peer behind it. One server's sockets deliver
//! what they receive 50 ms late, so its pings take 50 ms; the other answers at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use netcore::{MemorySocket, MemoryTransport, TransportExt};
use peerlane::{
    CustomSocket, Event, Network, NetworkBuilder, NetworkClient, NetworkConfig, NetworkEvents,
    PeerNetworkId, TransportKind,
};
use prometheus_client::registry::Registry;
use state_sync::{
    Block, Config, DIRECT_SEND_PROTOCOLS, GENESIS_PARENT, Metrics, RPC_PROTOCOLS, StateSync,
    StateSyncMsg, StoreHandle,
};
use test_support::{eventually, within_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wire::NetworkId;

/// How long (test clock) a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// What the slow server's sockets add to everything it receives.
const SLOW: Duration = Duration::from_millis(50);

/// `count` linked blocks of 1 KiB, from height 1.
fn chain(count: u64) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for height in 1..=count {
        let mut id = [0xcd; 32];
        id[..8].copy_from_slice(&height.to_be_bytes());
        let parent_id = blocks.last().map_or(GENESIS_PARENT, |parent| parent.id);
        blocks.push(Block {
            height,
            id,
            parent_id,
            payload: Bytes::from(vec![(height % 251) as u8; 1024]),
        });
    }
    blocks
}

/// The memory transport with every socket's incoming bytes held back `delay` (each chunk
/// is delivered `delay` after it arrived, in order).
fn delayed_transport(delay: Duration) -> TransportKind {
    let transport = MemoryTransport::new()
        .and_then(move |socket: MemorySocket, _endpoint| async move {
            Ok::<_, netcore::Error>(Box::new(delayed(socket, delay)) as Box<dyn CustomSocket>)
        })
        .boxed();
    TransportKind::Custom(Arc::new(transport))
}

/// A socket that reads what `socket` received `delay` late, and writes to it directly.
fn delayed(socket: MemorySocket, delay: Duration) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut inner_read, mut inner_write) = tokio::io::split(socket);
    let (mut theirs_read, mut theirs_write) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(read) = inner_read.read(&mut buf).await {
            if read == 0 {
                break;
            }
            tokio::time::sleep(delay).await;
            if theirs_write.write_all(&buf[..read]).await.is_err() {
                break;
            }
        }
        let _ = theirs_write.shutdown().await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut theirs_read, &mut inner_write).await;
        let _ = inner_write.shutdown().await;
    });
    ours
}

/// A public network speaking [`StateSyncMsg`], pinging its peers every second.
fn network(
    transport: TransportKind,
) -> (
    Network,
    NetworkClient<StateSyncMsg>,
    NetworkEvents<StateSyncMsg>,
) {
    let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
    config.health_check.interval = Duration::from_secs(1);
    let mut builder = NetworkBuilder::new(config, transport, &mut Registry::default()).unwrap();
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
    fn start(transport: TransportKind, blocks: Vec<Block>) -> Self {
        let (network, client, events) = network(transport);
        let store = StoreHandle::with_blocks(blocks).unwrap();
        let metrics = Metrics::register(&mut Registry::default());
        let mut config = Config::default();
        config.max_blocks_per_response = 5;
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

/// A node at height 5 is connected to a fast and a slow server (both at 5 too, so nothing
/// to fetch yet) and to a peer behind it (it announces height 2 and counts the block requests
/// it gets). Once the node has measured both servers' round-trip times, both commit blocks
/// 6 to 40 and announce them: the node fetches all 35 from the fast server, none from the
/// slow one, and never asks the peer behind it.
#[tokio::test(start_paused = true)]
async fn a_syncing_node_asks_the_fast_peer_ahead_and_never_one_behind() {
    let blocks = chain(40);
    let node = SyncNode::start(TransportKind::Memory, blocks[..5].to_vec());
    let fast = SyncNode::start(TransportKind::Memory, blocks[..5].to_vec());
    let slow = SyncNode::start(delayed_transport(SLOW), blocks[..5].to_vec());
    let (behind, behind_client, mut behind_events) = network(TransportKind::Memory);
    dial(&fast.network, &node.network).await;
    dial(&slow.network, &node.network).await;
    dial(&behind, &node.network).await;

    // The peer behind: announces height 2 and counts the block requests it gets.
    let asked = Arc::new(AtomicU64::new(0));
    behind_client
        .send_to_peer(
            as_peer(&node.network),
            &StateSyncMsg::Announce {
                height: 2,
                block_id: blocks[1].id,
                lowest_height: 1,
            },
        )
        .unwrap();
    let counter = Arc::clone(&asked);
    let behind_task = tokio::spawn(async move {
        while let Some(event) = behind_events.next().await {
            if let Event::RpcRequest {
                request: StateSyncMsg::GetBlocks { .. },
                ..
            } = event
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let peers = node.network.peers_and_metadata();
    let (fast_peer, slow_peer) = (as_peer(&fast.network), as_peer(&slow.network));
    eventually("both servers' round-trip times measured", || {
        peers.rtt(fast_peer).is_some() && peers.rtt(slow_peer).is_some()
    })
    .await;
    let slow_rtt = peers.rtt(slow_peer).unwrap();
    assert!(slow_rtt >= SLOW, "slow server's RTT {slow_rtt:?}");
    assert!(peers.rtt(fast_peer).unwrap() < SLOW / 2);

    for block in &blocks[5..] {
        slow.store.append(block.clone()).unwrap();
        fast.store.append(block.clone()).unwrap();
    }
    let mut heights = node.store.subscribe_height();
    within_for("the node at 40", WAIT, heights.wait_for(|h| *h >= 40))
        .await
        .unwrap();
    assert_eq!(node.store.last_block().as_ref(), blocks.last());
    assert_eq!(fast.metrics.blocks_served(), 35);
    assert_eq!(slow.metrics.blocks_served(), 0);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        0,
        "the peer behind was asked"
    );

    behind_task.abort();
    behind.shutdown().await;
    node.shutdown().await;
    fast.shutdown().await;
    slow.shutdown().await;
}
