//! The listener's admission rules against a flood, over TCP on loopback with several 127.x
//! source addresses (Linux routes all of 127.0.0.0/8 to `lo`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use netcore::{ConnectionOrigin, NetworkAddress};
use noise::{PeerRole, PublicKey};
use peerlane::{DiscoveredPeer, SetupFailure};
use test_support::{
    DIRECT, Net, RPC, config, key_from_seed as key, node, node_with, peer_id_from_seed as peer_id,
};
use tokio::net::{TcpSocket, TcpStream};
use wire::NetworkId;

/// The IP and port a node listens on.
fn socket_addr(address: &NetworkAddress) -> SocketAddr {
    let text = address.to_string();
    let parts: Vec<&str> = text.split('/').collect();
    format!("{}:{}", parts[2], parts[4]).parse().unwrap()
}

/// Opens silent sockets to `target` from `source_ip` as fast as it can, 100 connects in
/// flight at a time (many per round trip), keeping each connector's newest 10 open, until
/// aborted.
async fn flood(source_ip: &str, target: SocketAddr) {
    let source: SocketAddr = format!("{source_ip}:0").parse().unwrap();
    let mut connectors = tokio::task::JoinSet::new();
    for _ in 0..100 {
        connectors.spawn(async move {
            let mut open = VecDeque::new();
            loop {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(source).unwrap();
                if let Ok(stream) = socket.connect(target).await {
                    open.push_back(stream);
                }
                if open.len() > 10 {
                    open.pop_front();
                }
                tokio::task::yield_now().await;
            }
        });
    }
    connectors.join_all().await;
}

/// While 127.0.0.3 floods silent sockets (many per round trip) at a node with room for 8 set-ups,
/// a trusted peer (a seed, recognised by its address's IP, 127.0.0.1, in the same /24 as the
/// flood) still connects within 2 s. Without per-source admission the flood evicts every
/// set-up, the trusted one included, before its handshake can finish. The flood is counted:
/// refused at accept (rate, per-IP cap) or evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_connects_while_one_ip_floods_silent_sockets() {
    let mut guarded = config(1, NetworkId::Public, Net::Tcp);
    guarded.max_pending_inbound_upgrades = 8.try_into().unwrap();
    // A seed with an address on 127.0.0.1 (nothing listens at port 9, so the server's own
    // dials to it fail): sockets from that IP count as a trusted peer's.
    let seed_address: NetworkAddress = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let seed_address = seed_address
        .with_noise_and_handshake(PublicKey::from(&key(2)), 0)
        .unwrap();
    guarded.seeds.insert(
        peer_id(2),
        DiscoveredPeer::new(PeerRole::Upstream, [seed_address], []),
    );
    let server = node_with(guarded, Net::Tcp, &DIRECT, &RPC, Default::default());
    let target = socket_addr(server.network.listen_address());

    let flooder = tokio::spawn(flood("127.0.0.3", target));
    // Let the flood fill the set-up slots first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let trusted = node(2, Net::Tcp);
    // One dial: a set-up evicted by the flood fails it.
    let connected = tokio::time::timeout(
        Duration::from_secs(2),
        trusted
            .network
            .dial(peer_id(1), server.network.listen_address().clone()),
    )
    .await;
    flooder.abort();
    let metrics = server.network.metrics();
    let counted: u64 = [
        SetupFailure::RateLimited,
        SetupFailure::IpPendingCap,
        SetupFailure::PrefixPendingCap,
        SetupFailure::Evicted,
    ]
    .into_iter()
    .map(|reason| metrics.setup_failures(ConnectionOrigin::Inbound, reason))
    .sum();
    assert!(
        matches!(connected, Ok(Ok(()))),
        "the trusted peer did not connect within 2 s: {connected:?}; flood counted {counted}"
    );
    assert!(counted > 0);
    server.network.shutdown().await;
    trusted.network.shutdown().await;
}

/// Opens `count` silent sockets to `target` from `source_ip`, and keeps them open.
async fn silent_sockets(source_ip: &str, target: SocketAddr, count: usize) -> Vec<TcpStream> {
    let source: SocketAddr = format!("{source_ip}:0").parse().unwrap();
    let mut open = Vec::new();
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(source).unwrap();
        open.push(socket.connect(target).await.unwrap());
    }
    open
}

/// Four IPs of 127.0.0.0/24 take every set-up slot of that /24 with silent sockets (4 each,
/// `max_pending_per_prefix` = 16), so a stranger dialing from 127.0.0.1 is refused at accept.
/// Once the on-chain set names that peer, at an address on 127.0.0.1, the listener
/// recognises its IP as a trusted peer's and its next dial gets in: trust at accept follows
/// the trusted set as discovery changes it, not only the seeds the node started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_trusted_after_start_gets_in_while_its_prefix_is_full() {
    use std::collections::HashMap;
    use test_support::eventually;

    let (on_chain_tx, on_chain_rx) = tokio::sync::watch::channel(HashMap::new());
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder = peerlane::NetworkBuilder::new(
        config(1, NetworkId::Public, Net::Tcp),
        test_support::transport(Net::Tcp),
        &mut registry,
    )
    .unwrap();
    builder.on_chain_updates(on_chain_rx);
    let server = builder.build().unwrap();
    let target = socket_addr(server.listen_address());
    let mut held = Vec::new();
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        held.push(silent_sockets(ip, target, 8).await);
    }
    let metrics = server.metrics();
    eventually("the /24's set-up slots are taken", || {
        metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::IpPendingCap) == 16
    })
    .await;

    let peer = node(2, Net::Tcp);
    let refused = peer
        .network
        .dial(peer_id(1), server.listen_address().clone())
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::PrefixPendingCap),
        1
    );

    // Nothing listens at port 9: the server's own dials to the listed address fail.
    let listed_address: NetworkAddress = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let listed_address = listed_address
        .with_noise_and_handshake(PublicKey::from(&key(2)), 0)
        .unwrap();
    on_chain_tx.send_replace(HashMap::from([(
        peer_id(2),
        DiscoveredPeer::new(PeerRole::Upstream, [listed_address], []),
    )]));
    eventually("the listed peer is trusted", || {
        server.trusted_peers().snapshot().contains_key(&peer_id(2))
    })
    .await;
    peer.network
        .dial(peer_id(1), server.listen_address().clone())
        .await
        .unwrap();
    eventually("the server registers it", || {
        server.is_connected(peer_id(2))
    })
    .await;
    drop(held);
    server.shutdown().await;
    peer.network.shutdown().await;
}

/// A node without a health checker, so that its peers stay silent unless the test speaks.
fn quiet_node(seed: u64, max_inbound: usize) -> test_support::Node {
    let mut quiet = config(seed, NetworkId::Public, Net::Memory);
    quiet.health_check.enabled = false;
    quiet.max_inbound_connections = max_inbound;
    node_with(quiet, Net::Memory, &DIRECT, &RPC, Default::default())
}

/// At `max_inbound_connections` (2 here) a newcomer outside the trusted set takes the slot of
/// the untrusted inbound peer silent longest, if it has been silent for 5 s
/// (`evicted_idle`), instead of being refused while idle peers hold every slot. When every
/// slot is held by a peer that spoke recently, the newcomer is refused as before.
#[tokio::test(start_paused = true)]
async fn at_the_inbound_limit_the_peer_silent_longest_makes_room() {
    use peerlane::{ConnectionChange, RefusalReason};
    use test_support::eventually;

    let server = quiet_node(1, 2);
    let (a, b) = (quiet_node(11, 100), quiet_node(12, 100));
    a.dial(&server).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.dial(&server).await.unwrap();
    eventually("both registered", || {
        server.network.is_connected(peer_id(11)) && server.network.is_connected(peer_id(12))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    // a has been silent longest: it makes room for c.
    let c = quiet_node(13, 100);
    c.dial(&server).await.unwrap();
    eventually("c in, a out", || {
        server.network.is_connected(peer_id(13)) && !server.network.is_connected(peer_id(11))
    })
    .await;
    assert!(server.network.is_connected(peer_id(12)));
    // b, silent for 10 s, makes room for d.
    let d = quiet_node(14, 100);
    d.dial(&server).await.unwrap();
    eventually("d in, b out", || {
        server.network.is_connected(peer_id(14)) && !server.network.is_connected(peer_id(12))
    })
    .await;
    let metrics = server.network.metrics();
    assert_eq!(metrics.connection_events(ConnectionChange::EvictedIdle), 2);

    // c and d just connected: nobody is idle enough, so e is refused.
    let e = quiet_node(15, 100);
    e.dial(&server).await.unwrap();
    eventually("e refused", || {
        metrics.refused(RefusalReason::InboundLimit) == 1
    })
    .await;
    assert!(!server.network.is_connected(peer_id(15)));
    assert!(server.network.is_connected(peer_id(13)) && server.network.is_connected(peer_id(14)));

    for node in [server, a, b, c, d, e] {
        node.network.shutdown().await;
    }
}

/// Of untrusted inbound peers silent since the same instant (the idle clock counts whole
/// milliseconds; here all connect at one instant of the paused clock), the oldest connection
/// makes room, whatever order the peer manager's map lists them in.
#[tokio::test(start_paused = true)]
async fn of_peers_silent_equally_long_the_oldest_connection_makes_room() {
    use test_support::eventually;

    let server = quiet_node(1, 4);
    // Dialed in an order unrelated to their peer ids' order.
    let seeds = [23, 21, 24, 22];
    let mut peers = Vec::new();
    for seed in seeds {
        let peer = quiet_node(seed, 100);
        peer.dial(&server).await.unwrap();
        peers.push(peer);
    }
    eventually("all registered", || {
        seeds
            .iter()
            .all(|seed| server.network.is_connected(peer_id(*seed)))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let newcomer = quiet_node(25, 100);
    newcomer.dial(&server).await.unwrap();
    eventually("the newcomer in, the first dialer out", || {
        server.network.is_connected(peer_id(25)) && !server.network.is_connected(peer_id(23))
    })
    .await;
    for seed in [21, 24, 22] {
        assert!(server.network.is_connected(peer_id(seed)), "{seed} kept");
    }

    for node in peers.into_iter().chain([server, newcomer]) {
        node.network.shutdown().await;
    }
}

/// Sockets from a banned IP (`banned_ips` in the config) are closed at accept and counted as
/// `refused{reason="banned_ip"}`; others get in. A prefix banned at run time keeps out a
/// peer from inside it until the ban is lifted.
#[tokio::test]
async fn banned_ips_and_prefixes_are_closed_at_accept() {
    use peerlane::{IpPrefix, RefusalReason};
    use test_support::eventually;

    let mut guarded = config(1, NetworkId::Public, Net::Tcp);
    guarded.banned_ips = vec!["127.0.0.3".parse().unwrap()];
    let server = node_with(guarded, Net::Tcp, &DIRECT, &RPC, Default::default());
    let target = socket_addr(server.network.listen_address());
    let metrics = server.network.metrics();

    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let _banned = socket.connect(target).await.unwrap();
    eventually("refused", || metrics.refused(RefusalReason::BannedIp) == 1).await;

    let peer = node(2, Net::Tcp);
    peer.dial(&server).await.unwrap();
    peer.network.disconnect(peer_id(1)).await.unwrap();
    eventually("gone", || !server.network.is_connected(peer_id(2))).await;

    let loopback: IpPrefix = "127.0.0.0/24".parse().unwrap();
    assert!(server.network.ban_ip(loopback));
    assert!(!server.network.ban_ip(loopback));
    assert_eq!(
        server.network.banned_ips(),
        vec![loopback, "127.0.0.3".parse().unwrap()]
    );
    assert!(peer.dial(&server).await.is_err());
    assert_eq!(metrics.refused(RefusalReason::BannedIp), 2);

    assert!(server.network.unban_ip(loopback));
    assert!(!server.network.unban_ip(loopback));
    peer.dial(&server).await.unwrap();

    server.network.shutdown().await;
    peer.network.shutdown().await;
}

/// Established inbound connections from untrusted peers are capped per IP: with
/// `admission.max_inbound_per_ip` 2, a third peer from 127.0.0.1 is closed right after set-up
/// (`too_many_from_ip`), although `max_inbound_connections` has room; a trusted peer from the
/// same IP still gets in.
#[tokio::test]
async fn inbound_connections_are_capped_per_ip() {
    use peerlane::RefusalReason;
    use test_support::eventually;

    let mut guarded = config(1, NetworkId::Public, Net::Tcp);
    guarded.admission.max_inbound_per_ip = 2;
    let mut trusted = DiscoveredPeer::new(PeerRole::Downstream, [], []);
    trusted.keys.insert(PublicKey::from(&key(9)));
    guarded.seeds.insert(peer_id(9), trusted);
    let server = node_with(guarded, Net::Tcp, &DIRECT, &RPC, Default::default());
    let metrics = server.network.metrics();

    let peers: Vec<_> = (2..=4).map(|seed| node(seed, Net::Tcp)).collect();
    for peer in &peers[..2] {
        peer.dial(&server).await.unwrap();
        let id = peer.network.peer_id();
        eventually("registered", || server.network.is_connected(id)).await;
    }
    peers[2].dial(&server).await.unwrap();
    eventually("the third is refused", || {
        metrics.refused(RefusalReason::TooManyFromIp) == 1
    })
    .await;
    assert!(!server.network.is_connected(peer_id(4)));

    let trusted = node(9, Net::Tcp);
    trusted.dial(&server).await.unwrap();
    eventually("the trusted peer is in", || {
        server.network.is_connected(peer_id(9))
    })
    .await;

    server.network.shutdown().await;
    trusted.network.shutdown().await;
    for peer in peers {
        peer.network.shutdown().await;
    }
}
