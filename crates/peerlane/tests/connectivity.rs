//! The connectivity manager inside a network: nodes started with seeds connect on their own,
//! lost peers are redialed after their backoff, and the listener's admission rules hold under
//! load (the inbound limit, a flood of sockets that never speak).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use connectivity_manager::{DialFailure, DialOutcome};
use netcore::{ConnectionOrigin, PeerId};
use noise::{PeerRole, PublicKey};
use peerlane::{DiscoveredPeer, NetworkConfig, QueueConfig, RefusalReason, SetupFailure};
use test_support::{
    DIRECT, Net, Node, RPC, config, eventually, key_from_seed as key, node, node_with,
    peer_id_from_seed as peer_id,
};
use tokio::time::Instant;
use wire::NetworkId;

/// Who `node` is connected to, by seed, among `seeds`.
fn neighbours(node: &Node, seeds: &[u64]) -> BTreeSet<u64> {
    seeds
        .iter()
        .copied()
        .filter(|seed| node.network.is_connected(peer_id(*seed)))
        .collect()
}

/// A scratch path for a discovery file, unique to this process and `name`.
fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("peerlane-{}-{name}.toml", std::process::id()))
}

/// Five nodes over real TCP and Noise, started with seeds that describe a ring (node i seeds
/// node i−1; the last node also seeds node 0, closing the ring), connect in that ring without
/// any dial by the test. Each node listens on port 0 and is started after its predecessor, so
/// its seed is the address the predecessor's running network reports. Once a discovery file
/// (re-read every 100 ms) lists all five, they form the full mesh: every node connected to
/// the 4 others, one connection per pair, within the deadline.
#[tokio::test]
async fn seeded_nodes_form_their_ring_and_then_the_full_mesh_over_tcp() {
    const N: u64 = 5;
    let seeds: Vec<u64> = (0..N).collect();
    let file = scratch_file("mesh");
    let _ = std::fs::remove_file(&file);

    let mut nodes: Vec<Node> = Vec::new();
    for &seed in &seeds {
        let mut config = config(seed, NetworkId::Public, Net::Tcp);
        // Seeds are fixed at build: node 0 cannot know node N−1's address yet, so node N−1
        // seeds node 0 as well.
        let mut seeded: Vec<&Node> = nodes.last().into_iter().collect();
        if seed == N - 1 {
            seeded.push(&nodes[0]);
        }
        for other in seeded {
            config.seeds.insert(
                other.network.peer_id(),
                DiscoveredPeer::new(
                    PeerRole::Upstream,
                    [other.network.listen_address().clone()],
                    [],
                ),
            );
        }
        config
            .connectivity
            .max_outbound_connections(6)
            .discovery_file(Some(file.clone()))
            .discovery_file_interval(Duration::from_millis(100));
        nodes.push(node_with(
            config,
            Net::Tcp,
            &DIRECT,
            &RPC,
            QueueConfig::default(),
        ));
    }

    // The seeds alone: each node is connected to its predecessor and its successor.
    for (i, node) in nodes.iter().enumerate() {
        let i = i as u64;
        let ring = BTreeSet::from([(i + N - 1) % N, (i + 1) % N]);
        eventually("the seed ring", || neighbours(node, &seeds) == ring).await;
    }

    // Everyone in the discovery file: the full mesh.
    let mut text = String::new();
    for node in &nodes {
        text.push_str(&format!(
            "[peers.{}]\nrole = \"upstream\"\naddresses = [\"{}\"]\n\n",
            node.network.peer_id(),
            node.network.listen_address()
        ));
    }
    std::fs::write(&file, text).unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let others: BTreeSet<u64> = seeds.iter().copied().filter(|s| *s != i as u64).collect();
        eventually("the full mesh", || neighbours(node, &seeds) == others).await;
    }
    // One connection per pair: 4 per node, 20 ends in all.
    eventually("one connection per pair", || {
        nodes.iter().all(|node| {
            let metrics = node.network.metrics();
            metrics.connections(ConnectionOrigin::Inbound)
                + metrics.connections(ConnectionOrigin::Outbound)
                == 4
        })
    })
    .await;

    for node in nodes {
        node.network.shutdown().await;
    }
    let _ = std::fs::remove_file(&file);
}

/// A seed that shuts down is redialed after its backoff, never before: the first redial
/// (2 s after the loss, plus at most 100 ms of jitter) fails while it is down, the second
/// waits the doubled backoff (4 s more) and reconnects to the seed, back on the same address
/// with the same key. Memory transport on the paused clock.
#[tokio::test(start_paused = true)]
async fn a_lost_seed_is_redialed_after_its_backoff_and_reconnects_when_back() {
    let seed_config = || config(2, NetworkId::Public, Net::Memory);
    let seed = node(2, Net::Memory);
    let seed_address = seed.network.listen_address().clone();
    let mut dialer_config = config(1, NetworkId::Public, Net::Memory);
    dialer_config.seeds.insert(
        peer_id(2),
        DiscoveredPeer::new(PeerRole::Upstream, [seed_address.clone()], []),
    );
    let dialer = node_with(
        dialer_config,
        Net::Memory,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let dials = dialer.network.connectivity_metrics().clone();

    // Dialed at start, without the test dialing.
    eventually("the seed is dialed", || {
        dialer.network.is_connected(peer_id(2))
    })
    .await;
    assert_eq!(dials.dials(DialOutcome::Connected), 1);

    seed.network.shutdown().await;
    eventually("the loss is seen", || {
        !dialer.network.is_connected(peer_id(2))
    })
    .await;
    let lost_at = Instant::now();
    let unreachable = || dials.dials(DialOutcome::Failed(DialFailure::Unreachable));

    // First redial: not before 2 s; by 2.1 s it has failed (nobody listens).
    tokio::time::sleep_until(lost_at + Duration::from_millis(1_990)).await;
    assert_eq!(unreachable(), 0, "redialed before the backoff");
    tokio::time::sleep_until(lost_at + Duration::from_millis(2_110)).await;
    assert_eq!(unreachable(), 1);

    // Back on the same address with the same key.
    let port = match seed_address.to_string().split('/').nth(2) {
        Some(port) => port.to_owned(),
        None => panic!("no port in {seed_address}"),
    };
    let mut back = seed_config();
    back.listen_address = format!("/memory/{port}").parse().unwrap();
    let back = node_with(back, Net::Memory, &DIRECT, &RPC, QueueConfig::default());
    assert_eq!(back.network.listen_address(), &seed_address);

    // Second redial: 4 s after the failed one (plus jitter), not before.
    tokio::time::sleep_until(lost_at + Duration::from_millis(5_990)).await;
    assert!(
        !dialer.network.is_connected(peer_id(2)),
        "redialed before the doubled backoff"
    );
    assert_eq!(dials.dials(DialOutcome::Connected), 1);
    tokio::time::sleep_until(lost_at + Duration::from_millis(6_300)).await;
    eventually("reconnected", || dialer.network.is_connected(peer_id(2))).await;
    assert!(Instant::now() < lost_at + Duration::from_millis(6_300) + Duration::from_secs(1));
    assert_eq!(dials.dials(DialOutcome::Connected), 2);

    dialer.network.shutdown().await;
    back.network.shutdown().await;
}

/// At the default `max_inbound_connections` of 100, the 101st unknown peer's inbound
/// connection is closed right after set-up and counted as `too_many_inbound`, while a trusted
/// peer still gets in.
#[tokio::test(start_paused = true)]
async fn the_unknown_peer_past_the_inbound_limit_is_refused_but_a_trusted_peer_gets_in() {
    const LIMIT: usize = peerlane::MAX_INBOUND_CONNECTIONS;
    let mut limited = config(1, NetworkId::Public, Net::Memory);
    assert_eq!(limited.max_inbound_connections, LIMIT);
    // This is about the inbound limit alone: no trimming to the target range (35 by default),
    // and no routing (a hub of 100 routing peers verifies each one's edge for every other,
    // about 20,000 signature checks: minutes in a debug build).
    limited.connectivity.target_peers(2 * LIMIT, 2 * LIMIT);
    limited.routing.enabled = false;
    let mut trusted = DiscoveredPeer::new(PeerRole::Downstream, [], []);
    trusted.keys.insert(PublicKey::from(&key(9)));
    limited.seeds.insert(peer_id(9), trusted);
    let server = node_with(limited, Net::Memory, &DIRECT, &RPC, QueueConfig::default());

    let unknown: Vec<Node> = (0..=LIMIT as u64)
        .map(|i| node(1000 + i, Net::Memory))
        .collect();
    for client in &unknown[..LIMIT] {
        client.dial(&server).await.unwrap();
        let id = client.network.peer_id();
        eventually("registered", || server.network.is_connected(id)).await;
    }
    // The set-up of the 101st completes, then the server closes it.
    unknown[LIMIT].dial(&server).await.unwrap();
    eventually("the 101st is refused", || {
        server
            .network
            .metrics()
            .refused(RefusalReason::InboundLimit)
            == 1
    })
    .await;
    assert!(
        !server
            .network
            .is_connected(unknown[LIMIT].network.peer_id())
    );
    assert!(
        server.metrics_text().contains(
            r#"peerlane_connections_refused_total{network="public",reason="too_many_inbound"} 1"#
        ),
        "{}",
        server.metrics_text()
    );

    let trusted = node(9, Net::Memory);
    trusted.dial(&server).await.unwrap();
    eventually("the trusted peer is in", || {
        server.network.is_connected(peer_id(9))
    })
    .await;
    assert_eq!(
        server
            .network
            .metrics()
            .refused(RefusalReason::InboundLimit),
        1
    );

    for node in unknown.into_iter().chain([server, trusted]) {
        node.network.shutdown().await;
    }
}

/// A flood of half-open sockets (TCP connections that never send a byte), more than
/// `max_pending_inbound_upgrades`, does not keep a legitimate peer out: each newly accepted
/// socket evicts the oldest set-up in progress, so the silent ones are pushed out (counted as
/// `evicted`) and the legitimate peer, whose set-up takes milliseconds, gets in long before
/// any set-up deadline. Here 2 slots, the default 30 s deadline and 6 silent sockets.
#[tokio::test]
async fn a_flood_of_silent_sockets_does_not_keep_a_legitimate_peer_out() {
    let mut guarded = config(1, NetworkId::Public, Net::Tcp);
    guarded.max_pending_inbound_upgrades = 2.try_into().unwrap();
    let server = node_with(guarded, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());
    let socket_address = {
        let text = server.network.listen_address().to_string();
        let parts: Vec<&str> = text.split('/').collect();
        format!("{}:{}", parts[2], parts[4])
    };

    let mut flood = Vec::new();
    for _ in 0..6 {
        flood.push(
            tokio::net::TcpStream::connect(&socket_address)
                .await
                .unwrap(),
        );
    }
    let legit = node(2, Net::Tcp);
    let started = std::time::Instant::now();
    legit.dial(&server).await.unwrap();
    let waited = started.elapsed();
    eventually("registered", || server.network.is_connected(peer_id(2))).await;

    let metrics = server.network.metrics();
    let evicted = metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Evicted);
    // The six silent sockets and the legitimate one were accepted in order; every silent one
    // but at most one still holding a slot was evicted, and none waited for its deadline.
    assert!(evicted >= 5, "evicted {evicted}, waited {waited:?}");
    assert_eq!(
        metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Timeout),
        0
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");

    drop(flood);
    server.network.shutdown().await;
    legit.network.shutdown().await;
}

/// A connectivity section that carries its own seeds is refused: seeds belong in the network
/// config, where they also form the trusted set.
#[test]
fn seeds_inside_the_connectivity_section_are_refused() {
    let mut config = NetworkConfig::default();
    let seed = DiscoveredPeer::new(PeerRole::Upstream, [], [PublicKey::from(&key(3))]);
    config
        .connectivity
        .seeds(HashMap::from([(PeerId::new([3; 32]), seed)]));
    assert!(config.validate().is_err());
    assert!(NetworkConfig::default().validate().is_ok());
}

/// A network with no seeds and no other discovery source dials nobody, however long it runs.
#[tokio::test(start_paused = true)]
async fn a_network_without_seeds_dials_nobody() {
    let lone = node(1, Net::Memory);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let dials = lone.network.connectivity_metrics();
    assert_eq!(dials.dials(DialOutcome::Connected), 0);
    assert_eq!(
        dials.dials(DialOutcome::Failed(DialFailure::Unreachable)),
        0
    );
    lone.network.shutdown().await;
}

/// The on-chain hook: a validator dials the peer the on-chain set lists (no seed, no dial by
/// the test), and once the set drops it, closes the connection as stale: counted in
/// `peerlane_connectivity_stale_disconnects_total`, and the peer is no longer trusted.
#[tokio::test(start_paused = true)]
async fn a_peer_dropped_from_the_on_chain_set_is_disconnected_as_stale() {
    let other = node_with(
        {
            let mut config = config(2, NetworkId::Validator, Net::Memory);
            let mut me = DiscoveredPeer::new(PeerRole::Validator, [], []);
            me.keys.insert(PublicKey::from(&key(1)));
            config.seeds.insert(peer_id(1), me);
            config
        },
        Net::Memory,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let listed = HashMap::from([(
        peer_id(2),
        DiscoveredPeer::new(
            PeerRole::Validator,
            [other.network.listen_address().clone()],
            [],
        ),
    )]);
    let (on_chain_tx, on_chain_rx) = tokio::sync::watch::channel(listed);
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder = peerlane::NetworkBuilder::new(
        config(1, NetworkId::Validator, Net::Memory),
        test_support::transport(Net::Memory),
        &mut registry,
    )
    .unwrap();
    builder.on_chain_updates(on_chain_rx);
    let validator = builder.build().unwrap();

    eventually("the listed validator is dialed", || {
        validator.is_connected(peer_id(2))
    })
    .await;
    on_chain_tx.send_replace(HashMap::new());
    eventually("the dropped validator is disconnected", || {
        !validator.is_connected(peer_id(2))
    })
    .await;
    eventually("counted as stale", || {
        validator.connectivity_metrics().stale_disconnects() == 1
    })
    .await;
    assert!(
        !validator
            .trusted_peers()
            .snapshot()
            .contains_key(&peer_id(2))
    );

    validator.shutdown().await;
    other.network.shutdown().await;
}
