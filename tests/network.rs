//! Whole networks through the public facade, over real loopback TCP with Noise: a mesh of
//! nodes, a maximum-size message crossing a small one, and priority under a saturated lane.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use peerlane::{Event, Network, NetworkBuilder, NetworkClient, NetworkConfig, NetworkEvents};
use peerlane::{PeerNetworkId, QueueConfig, TransportKind};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use test_support::{eventually_within, next_event_within};
use wire::{NetworkId, ProtocolId};

/// What the test applications send. `Bytes` serializes as a BCS byte string, so large
/// payloads cost a copy, not a per-byte loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Hello(u32),
    Blob(Bytes),
    Ping(u32),
    Pong(u32),
}

const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a test waits for an application event: generous, so a bug fails instead of
/// hanging.
const EVENT_WAIT: Duration = Duration::from_secs(60);

/// A node with two applications: `bulk` (low priority, state-sync direct sends) and
/// `consensus` (high priority direct sends and RPCs).
struct Node {
    network: Network,
    bulk: NetworkClient<Msg>,
    bulk_events: NetworkEvents<Msg>,
    consensus: NetworkClient<Msg>,
    consensus_events: NetworkEvents<Msg>,
}

fn start_node() -> Node {
    let mut config = NetworkConfig::new(NetworkId::Public, "/ip4/127.0.0.1/tcp/0".parse().unwrap());
    // These nodes do not know each other, and a stranger's messages are held to 8 MiB by
    // default; the scenarios here stream AptosNet's largest messages, so take them from anyone.
    config.peer.max_untrusted_message_size = config.peer.max_message_size;
    // Likewise what is queued to a stranger (8 MiB per lane by default): the lane tests here
    // queue 32 MiB of bulk at once.
    config.peer.max_untrusted_queued_bytes = config.peer.max_queued_bytes;
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut Registry::default(),
    )
    .unwrap();
    // The bulk application takes AptosNet's largest messages: its queue must hold one of them
    // behind a small one (the default 16 MiB per key would drop the large message whenever the
    // small one that overtook it has not been taken yet).
    let bulk_budget = NonZeroUsize::new(2 * 64 * 1024 * 1024).unwrap();
    let bulk_queue = QueueConfig::default().with_max_bytes(bulk_budget, bulk_budget);
    let (bulk, bulk_events) = builder
        .add_application::<Msg>([ProtocolId::STATE_SYNC_DIRECT_SEND], [], bulk_queue)
        .unwrap();
    let (consensus, consensus_events) = builder
        .add_application::<Msg>(
            [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
            [ProtocolId::CONSENSUS_RPC_BCS],
            Default::default(),
        )
        .unwrap();
    Node {
        network: builder.build().unwrap(),
        bulk,
        bulk_events,
        consensus,
        consensus_events,
    }
}

fn id(node: &Node) -> PeerNetworkId {
    PeerNetworkId::new(NetworkId::Public, node.network.peer_id())
}

/// Answers every consensus RPC `Ping(n)` with `Pong(n)` until the stream ends.
fn spawn_ponger(mut events: NetworkEvents<Msg>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::RpcRequest {
                request: Msg::Ping(n),
                responder,
                ..
            } = event
            {
                let _ = responder.reply(Msg::Pong(n));
            }
        }
    })
}

/// Five nodes over TCP + Noise, each dialing the ones after it, form a full mesh: every node
/// sees the four others, a broadcast from each reaches all the others exactly once, and an RPC
/// from the first node to every other one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_mesh_and_exchange_messages_over_tcp() {
    const N: usize = 5;
    let mut nodes: Vec<Node> = (0..N).map(|_| start_node()).collect();
    for i in 0..N {
        for j in i + 1..N {
            let (peer_id, addr) = (
                nodes[j].network.peer_id(),
                nodes[j].network.listen_address().clone(),
            );
            nodes[i].network.dial(peer_id, addr).await.unwrap();
        }
    }
    for node in &nodes {
        eventually_within(
            "every other node connected",
            Duration::from_secs(30),
            Duration::from_millis(5),
            || node.consensus.connected_peers().len() == N - 1,
        )
        .await;
    }

    // Everyone broadcasts on the consensus direct-send protocol.
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<_> = node.consensus.connected_peers();
        node.consensus
            .send_to_peers(others, &Msg::Hello(i as u32))
            .unwrap();
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let mut heard = Vec::new();
        while heard.len() < N - 1 {
            match next_event_within(&mut node.consensus_events, EVENT_WAIT).await {
                Event::Message {
                    message: Msg::Hello(from),
                    ..
                } => heard.push(from),
                other => panic!("node {i}: unexpected {other:?}"),
            }
        }
        heard.sort_unstable();
        let expected: Vec<u32> = (0..N as u32).filter(|&j| j != i as u32).collect();
        assert_eq!(heard, expected, "node {i}");
    }

    // The first node asks every other node for a pong.
    let mut pongers = Vec::new();
    let mut rest = nodes.split_off(1);
    for node in &mut rest {
        let events = std::mem::replace(&mut node.consensus_events, empty_events());
        pongers.push(spawn_ponger(events));
    }
    for (k, node) in rest.iter().enumerate() {
        let reply = nodes[0]
            .consensus
            .send_rpc(id(node), Msg::Ping(k as u32), RPC_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reply, Msg::Pong(k as u32));
    }

    for node in nodes.into_iter().chain(rest) {
        node.network.shutdown().await;
    }
    for ponger in pongers {
        ponger.await.unwrap();
    }
}

/// A message just under the 64 MiB maximum is streamed in 4 MiB fragments; a 1 KiB message
/// sent right after it on the same protocol passes between the fragments and arrives first,
/// and the large one arrives whole. The large message alone is over the lane's byte budget
/// (32 MiB) until the writer takes it, so the small one waits for room
/// (`send_to_peer_wait`) rather than being refused in that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_message_crosses_a_1_kib_one_and_the_small_one_arrives_first() {
    let sender = start_node();
    let mut receiver = start_node();
    sender
        .network
        .dial(
            receiver.network.peer_id(),
            receiver.network.listen_address().clone(),
        )
        .await
        .unwrap();

    // 16 bytes of head-room for the enum tag and the length of the encoded payload.
    let large: Bytes = (0..64 * 1024 * 1024 - 16)
        .map(|i: usize| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let small = Bytes::from(vec![7u8; 1024]);
    sender
        .bulk
        .send_to_peer(id(&receiver), &Msg::Blob(large.clone()))
        .unwrap();
    sender
        .bulk
        .send_to_peer_wait(id(&receiver), &Msg::Blob(small.clone()))
        .await
        .unwrap();

    let mut arrived = Vec::new();
    while arrived.len() < 2 {
        match next_event_within(&mut receiver.bulk_events, EVENT_WAIT).await {
            Event::Message {
                message: Msg::Blob(blob),
                ..
            } => arrived.push(blob),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        arrived[0].len(),
        small.len(),
        "the small message arrives first"
    );
    assert!(arrived[1] == large, "the large message arrives whole");

    sender.network.shutdown().await;
    receiver.network.shutdown().await;
}

/// With the low lane full of bulk messages, a consensus RPC (high lane both ways) is answered
/// long before the bulk traffic has drained: priorities are really scheduled. The latency is
/// printed; the assertion is on ordering, not on time.
///
/// On a current-thread runtime the 1000 bulk messages and the RPC request are all queued
/// before the writer task first runs, so the request is behind every bulk message in arrival
/// order and only the lanes can put it first.
#[tokio::test]
async fn a_high_priority_rpc_overtakes_a_saturated_low_lane() {
    const BULK: usize = 1000;
    let sender = start_node();
    let mut receiver = start_node();
    sender
        .network
        .dial(
            receiver.network.peer_id(),
            receiver.network.listen_address().clone(),
        )
        .await
        .unwrap();
    let ponger = spawn_ponger(std::mem::replace(
        &mut receiver.consensus_events,
        empty_events(),
    ));

    // Count bulk arrivals as they happen.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    let mut bulk_events = std::mem::replace(&mut receiver.bulk_events, empty_events());
    let bulk_reader = tokio::spawn(async move {
        while counter.load(std::sync::atomic::Ordering::SeqCst) < BULK {
            next_event_within(&mut bulk_events, EVENT_WAIT).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    // 1000 × 32 KiB on the low lane, queued at once (the lane holds 1024).
    let blob = Msg::Blob(Bytes::from(vec![1u8; 32 * 1024]));
    for _ in 0..BULK {
        sender.bulk.send_to_peer(id(&receiver), &blob).unwrap();
    }
    let started = Instant::now();
    let reply = sender
        .consensus
        .send_rpc(id(&receiver), Msg::Ping(1), RPC_TIMEOUT)
        .await
        .unwrap();
    let latency = started.elapsed();
    let bulk_seen = received.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "high-priority RPC behind {BULK} queued low messages: {latency:?}, {bulk_seen} bulk received by then"
    );
    assert_eq!(reply, Msg::Pong(1));
    assert!(
        bulk_seen < BULK / 2,
        "the RPC waited for {bulk_seen} of {BULK} bulk messages"
    );

    bulk_reader.await.unwrap();
    sender.network.shutdown().await;
    receiver.network.shutdown().await;
    ponger.await.unwrap();
}

/// A placeholder event stream for a field whose real stream moved into a task.
fn empty_events() -> NetworkEvents<Msg> {
    NetworkEvents::combine(std::iter::empty())
}
