//! Routed messages over TCP + Noise: nodes reach peers they are not connected to through the
//! graph of signed edges (protocols 67 and 68), a neighbour that forges an edge is banned,
//! routes follow the graph when a node dies, and a peer that does not speak routing never
//! sees it.

use std::time::{Duration, Instant};

use peerlane::{DisconnectCode, Error, NetworkBuilder, NetworkConfig, QueueConfig, RoutingConfig};
use prometheus_client::registry::Registry;
use routing::{Edge, EdgeKey, EdgeProof, RoutingSyncMessage, Signature};
use test_support::{
    DIRECT, Msg, Net, Node, RPC, config, eventually, eventually_within, node_with, transport,
    within,
};
use wire::{NetworkId, ProtocolId};

/// Node `seed` over TCP + Noise with routing on (the default) and peer exchange off, so that
/// the only connections are the ones the test dials.
fn routing_node(seed: u64) -> Node {
    node_with(
        quiet_config(seed),
        Net::Tcp,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    )
}

fn quiet_config(seed: u64) -> NetworkConfig {
    let mut config = config(seed, NetworkId::Public, Net::Tcp);
    config.extensions.peer_exchange = false;
    config
}

/// Nodes `first..first + count`, each dialing the next.
async fn line(first: u64, count: u64) -> Vec<Node> {
    let nodes: Vec<Node> = (first..first + count).map(routing_node).collect();
    for pair in nodes.windows(2) {
        pair[0].dial(&pair[1]).await.unwrap();
    }
    nodes
}

async fn all_reach(nodes: &[Node], reachable: i64) {
    eventually("every node reaches every other", || {
        nodes
            .iter()
            .all(|node| node.network.metrics().routing().reachable_peers() == reachable)
    })
    .await;
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.network.shutdown().await;
    }
}

/// A line of five: node 1 sends a direct message and an RPC to node 5, which it is not
/// connected to; both cross the three nodes between, the message arrives from node 1, and
/// the answer comes back.
#[tokio::test]
async fn a_line_of_five_routes_rpc_and_direct_send() {
    let started = Instant::now();
    let mut nodes = line(1, 5).await;
    all_reach(&nodes, 4).await;
    println!(
        "line of 5 converged {:?} after the first dial",
        started.elapsed()
    );
    let (first, last) = (nodes[0].as_peer(), nodes[4].as_peer());
    assert!(!nodes[0].network.is_connected(last.peer_id));

    nodes[0]
        .client
        .send_routed(last, &Msg::Text("over three hops".into()))
        .await
        .unwrap();
    let (sender, protocol, message) = within("the routed message", nodes[4].next_message()).await;
    assert_eq!(sender, first);
    assert_eq!(protocol, DIRECT[0]);
    assert_eq!(message, Msg::Text("over three hops".into()));

    let _server = nodes[4].serve_pings();
    let sent = Instant::now();
    let response = nodes[0]
        .client
        .rpc_routed(last, Msg::Ping(7), Duration::from_secs(5))
        .await
        .unwrap();
    println!("routed rpc over 4 hops answered in {:?}", sent.elapsed());
    assert_eq!(response, Msg::Pong(7));

    // The request and the response crossed the middle node; everything was delivered.
    let middle = nodes[2].network.metrics().routing().clone();
    assert_eq!(middle.routed("forwarded"), 3);
    assert_eq!(nodes[4].network.metrics().routing().routed("delivered"), 2);
    assert_eq!(nodes[0].network.metrics().routing().routed("delivered"), 1);
    assert_eq!(nodes[0].network.metrics().routing().routed("sent"), 2);
    for node in &nodes {
        let routing = node.network.metrics().routing();
        assert_eq!(routing.edges_rejected("bad_signature"), 0);
        for reason in ["ttl", "no_route", "budget", "bad_signature"] {
            assert_eq!(routing.routed_dropped(reason), 0, "{reason}");
        }
    }
    let snapshot = nodes[0].network.routing_snapshot(0, 10).await.unwrap();
    assert_eq!(snapshot.reachable, 4);
    assert_eq!(snapshot.routes.len(), 4);
    let to_last = snapshot
        .routes
        .iter()
        .find(|route| route.target == last.peer_id)
        .unwrap();
    assert_eq!(to_last.distance, 4);
    assert_eq!(to_last.next_hops, vec![nodes[1].peer_id()]);
    shutdown(nodes).await;
}

/// A neighbour that sends an edge whose signatures are forged is disconnected and banned,
/// with a `BadSignature` notice, and counted.
#[tokio::test]
async fn a_forged_edge_bans_its_sender() {
    let victim = routing_node(11);
    // The forger speaks 67 and 68 through an application of its own (its routing is off,
    // so that the protocols are free), and sends what it likes.
    let mut config = quiet_config(12);
    config.routing.enabled = false;
    let mut registry = Registry::default();
    let mut builder = NetworkBuilder::new(config, transport(Net::Tcp), &mut registry).unwrap();
    let (forger_client, _forger_events) = builder
        .add_application::<RoutingSyncMessage>(
            [ProtocolId::ROUTING_SYNC, ProtocolId::ROUTED],
            [],
            QueueConfig::default(),
        )
        .unwrap();
    let forger = builder.build().unwrap();
    forger
        .dial(victim.peer_id(), victim.network.listen_address().clone())
        .await
        .unwrap();
    eventually(
        "the victim counts the forger as a routing neighbour",
        || {
            victim
                .metrics_text()
                .contains("peerlane_routing_neighbours{network=\"public\"} 1")
        },
    )
    .await;

    let ends = EdgeKey::new(
        test_support::peer_id_from_seed(90),
        test_support::peer_id_from_seed(91),
    )
    .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let forged = Edge {
        key: ends,
        nonce: now_ms | 1,
        proof: EdgeProof::Active {
            signature0: Signature::from_bytes([7; 64]),
            signature1: Signature::from_bytes([9; 64]),
        },
    };
    let to_victim = peerlane::PeerNetworkId::new(NetworkId::Public, victim.peer_id());
    forger_client
        .send_to_peer(to_victim, &RoutingSyncMessage::Edges(vec![forged]))
        .unwrap();

    let routing = victim.network.metrics().routing().clone();
    eventually("the forger is banned", || {
        routing.bans("bad_edge_signature") == 1
    })
    .await;
    assert_eq!(victim.network.banned(), vec![forger.peer_id()]);
    eventually("the forger is gone", || {
        !victim.network.is_connected(forger.peer_id())
    })
    .await;
    assert_eq!(routing.edges_rejected("bad_signature"), 1);
    assert_eq!(routing.edges_verified(), 0);
    let notices = forger.metrics().extensions().clone();
    eventually("the forger is told why", || {
        notices.disconnect_notices(false, DisconnectCode::BadSignature.as_str()) == 1
    })
    .await;
    // Nothing of the forged edge stayed.
    let snapshot = victim.network.routing_snapshot(0, 10).await.unwrap();
    // The forger never proposed an edge, and the forged one was not kept.
    assert_eq!(snapshot.edges, 0);
    victim.network.shutdown().await;
    forger.shutdown().await;
}

/// A neighbour flooding protocol 68 with junk fills the routing actor's queue
/// (`routing.max_pending_messages`, 4 here): what does not fit is dropped in the reader and
/// counted, the rest is read and counted as malformed, nothing is held, and the connection
/// stays up (junk is not a signature: no ban).
#[tokio::test(start_paused = true)]
async fn a_flood_on_the_routing_protocols_is_dropped_and_counted() {
    let mut config = config(51, NetworkId::Public, Net::Memory);
    config.extensions.peer_exchange = false;
    config.routing.max_pending_messages = 4;
    let victim = node_with(config, Net::Memory, &DIRECT, &RPC, QueueConfig::default());
    let mut flooder_config = test_support::config(52, NetworkId::Public, Net::Memory);
    flooder_config.routing.enabled = false;
    let mut builder = NetworkBuilder::new(
        flooder_config,
        transport(Net::Memory),
        &mut Registry::default(),
    )
    .unwrap();
    let (flood, _events) = builder
        .add_application::<Vec<u8>>(
            [ProtocolId::ROUTED, ProtocolId::ROUTING_SYNC],
            [],
            QueueConfig::default(),
        )
        .unwrap();
    let flooder = builder.build().unwrap();
    flooder
        .dial(victim.peer_id(), victim.network.listen_address().clone())
        .await
        .unwrap();
    let to_victim = peerlane::PeerNetworkId::new(NetworkId::Public, victim.peer_id());
    const SENT: u64 = 500;
    for i in 0..SENT {
        flood
            .send_to_peer_wait(to_victim, &vec![0xff; 64 + (i % 7) as usize])
            .await
            .unwrap();
    }
    let routing = victim.network.metrics().routing().clone();
    eventually("every junk message is accounted for", || {
        routing.inbound_dropped("Routed") + routing.malformed("Routed") == SENT
    })
    .await;
    assert!(routing.inbound_dropped("Routed") > 0);
    assert_eq!(
        routing.bans("misbehaviour") + routing.bans("bad_routed_signature"),
        0
    );
    assert!(victim.network.is_connected(flooder.peer_id()));
    victim.network.shutdown().await;
    flooder.shutdown().await;
}

/// Edges a node can no longer reach leave its memory for its on-disk store, grouped as a
/// component, and come back from it when their peers are reachable again (memory transport,
/// paused clock: the housekeeping runs every minute).
#[tokio::test(start_paused = true)]
async fn unreachable_edges_go_to_the_store_and_come_back() {
    let memory_node = |seed: u64| {
        let mut config = config(seed, NetworkId::Public, Net::Memory);
        config.extensions.peer_exchange = false;
        node_with(config, Net::Memory, &DIRECT, &RPC, QueueConfig::default())
    };
    let mut config = config(71, NetworkId::Public, Net::Memory);
    config.extensions.peer_exchange = false;
    // At the first housekeeping after they become unreachable.
    config.routing.prune_unreachable_after = Duration::ZERO;
    let components = store::ComponentTable::new(store::Store::in_memory().unwrap());
    let mut builder =
        NetworkBuilder::new(config, transport(Net::Memory), &mut Registry::default()).unwrap();
    builder.routing_store(components.clone());
    let a = builder.build().unwrap();
    let (b, c, d) = (memory_node(72), memory_node(73), memory_node(74));
    a.dial(b.peer_id(), b.network.listen_address().clone())
        .await
        .unwrap();
    b.dial(&c).await.unwrap();
    c.dial(&d).await.unwrap();
    let routing = a.metrics().routing().clone();
    eventually("a reaches d", || routing.reachable_peers() == 3).await;

    b.network.disconnect(c.peer_id()).await.unwrap();
    eventually("a loses c and d", || routing.reachable_peers() == 1).await;
    eventually_within(
        "the c–d island is stored",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || components.len().unwrap() == 1,
    )
    .await;
    let stored = components.components_of(&c.peer_id()).unwrap();
    assert_eq!(stored.len(), 1);
    let snapshot = a.routing_snapshot(0, 10).await.unwrap();
    assert_eq!(snapshot.reachable, 1);
    assert!(routing.pruned_edges("pruned") >= 1);

    b.dial(&c).await.unwrap();
    eventually("a reaches d again", || routing.reachable_peers() == 3).await;
    eventually("the component is taken back", || {
        components.len().unwrap() == 0
    })
    .await;
    a.shutdown().await;
    for node in [b, c, d] {
        node.network.shutdown().await;
    }
}

/// In a ring of five, when node 3 dies its neighbours reach each other the other way round;
/// in a line of five, the two halves report `NoRoute`.
#[tokio::test]
async fn routes_follow_the_graph_when_the_middle_node_dies() {
    let mut ring = line(21, 5).await;
    ring[4].dial(&ring[0]).await.unwrap();
    all_reach(&ring, 4).await;
    let dead = ring.remove(2);
    dead.network.shutdown().await;
    // Nodes 2 and 4 (now at 1 and 2) lost their edge to node 3 and learn each other's way
    // round.
    all_reach(&ring, 3).await;
    let target = ring[2].as_peer();
    let _server = ring[2].serve_pings();
    let started = Instant::now();
    let response = ring[1]
        .client
        .rpc_routed(target, Msg::Ping(3), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response, Msg::Pong(3));
    println!(
        "rerouted rpc answered {:?} after the ring converged",
        started.elapsed()
    );
    let snapshot = ring[1].network.routing_snapshot(0, 10).await.unwrap();
    let route = snapshot
        .routes
        .iter()
        .find(|r| r.target == target.peer_id)
        .unwrap();
    assert_eq!(route.distance, 3);
    shutdown(ring).await;

    let mut line = line(31, 5).await;
    all_reach(&line, 4).await;
    let dead = line.remove(2);
    dead.network.shutdown().await;
    all_reach(&line, 1).await;
    let far = line[3].as_peer();
    let err = line[0]
        .client
        .send_routed(far, &Msg::Text("lost".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoRoute { peer } if peer == far),
        "{err:?}"
    );
    let err = line[0]
        .client
        .rpc_routed(far, Msg::Ping(1), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err:?}");
    assert!(
        line[0]
            .network
            .metrics()
            .routing()
            .routed_dropped("no_route")
            >= 2
    );
    shutdown(line).await;
}

/// A peer that does not offer 67 and 68 (an AptosNet node, or routing turned off) gets no
/// routing traffic: no proposal, no summaries, no broadcasts, and it is not in anyone's
/// graph. Direct sends to it work as ever.
#[tokio::test]
async fn a_peer_without_routing_gets_no_routing_traffic() {
    let mut config = quiet_config(42);
    config.routing = RoutingConfig {
        enabled: false,
        ..RoutingConfig::default()
    };
    let mut plain = node_with(config, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());
    assert!(!plain.network.routing_enabled());
    let nodes = line(43, 2).await;
    // The routing node in the middle dials the plain one and is dialed by it.
    nodes[0].dial(&plain).await.unwrap();
    all_reach(&nodes, 1).await;
    // Node 44 disconnects and reconnects: a new edge, broadcast to every routing neighbour.
    nodes[1]
        .network
        .disconnect(nodes[0].peer_id())
        .await
        .unwrap();
    nodes[1].dial(&nodes[0]).await.unwrap();
    let middle = nodes[0].network.metrics().routing().clone();
    // The first edge, then its removal and the new one (in one batch if close together).
    eventually("the broadcasts went out", || middle.broadcast_edges() >= 2).await;
    assert!(
        nodes[0]
            .metrics_text()
            .contains("peerlane_routing_neighbours{network=\"public\"} 1"),
        "{}",
        nodes[0].metrics_text()
    );
    // The plain node was sent nothing it does not know.
    let text = plain.metrics_text();
    assert!(
        !text
            .lines()
            .any(|line| line.contains("reason=\"unknown_protocol\"") && !line.ends_with(" 0")),
        "{text}"
    );
    // Not in the graph: no route to it from afar; directly, messages go as ever.
    let err = nodes[1]
        .client
        .send_routed(plain.as_peer(), &Msg::Text("x".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err:?}");
    nodes[0]
        .client
        .send_routed(plain.as_peer(), &Msg::Text("direct".into()))
        .await
        .unwrap();
    let (sender, _, message) = within("the direct message", plain.next_message()).await;
    assert_eq!(sender, nodes[0].as_peer());
    assert_eq!(message, Msg::Text("direct".into()));
    plain.network.shutdown().await;
    shutdown(nodes).await;
}
