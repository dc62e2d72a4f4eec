//! peerlane's own protocols between nodes over loopback TCP and Noise: disconnect notices
//! (64) and the connectivity manager's backoff by reason, chain status (65) exchanged on
//! connect and re-announced with a throttle, and peers on another chain refused with the
//! reason.

use std::time::Duration;

use noise::PeerRole;
use peerlane::{BlockHash, ChainStatus, DiscoveredPeer, QueueConfig, RefusalReason, RemoteRefusal};
use test_support::{DIRECT, Net, RPC, config, eventually, node, node_with};
use wire::NetworkId;

fn status(genesis: u8, height: u64) -> ChainStatus {
    ChainStatus {
        genesis: BlockHash([genesis; 32]),
        best_height: height,
        best_hash: BlockHash([height as u8; 32]),
        lib_height: height / 2,
        lib_hash: BlockHash([0xee; 32]),
    }
}

/// A node at its inbound limit refuses a newcomer with a `Full` notice; the newcomer reads
/// it, counts it, and its connectivity manager holds the redial back for
/// `full_retry_delay` (60 s) although its own backoff is 100 ms.
#[tokio::test]
async fn a_full_node_tells_its_dialer_why_and_the_dialer_waits() {
    let mut full = config(1, NetworkId::Public, Net::Tcp);
    full.max_inbound_connections = 0;
    let full = node_with(full, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    let mut dialer = config(2, NetworkId::Public, Net::Tcp);
    dialer.seeds.insert(
        full.peer_id(),
        DiscoveredPeer::new(
            PeerRole::Upstream,
            [full.network.listen_address().clone()],
            [],
        ),
    );
    dialer
        .connectivity
        .backoff_base(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(100))
        .connectivity_check_interval(Duration::from_millis(50));
    let dialer = node_with(dialer, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    let received = dialer.network.metrics().extensions().clone();
    eventually("the dialer reads `full`", || {
        received.disconnect_notices(false, "full") == 1
    })
    .await;
    eventually("its connectivity manager hears it", || {
        dialer
            .network
            .connectivity_metrics()
            .remote_refusals(RemoteRefusal::Full)
            == 1
    })
    .await;
    assert_eq!(
        full.network
            .metrics()
            .extensions()
            .disconnect_notices(true, "full"),
        1
    );
    // Ten backoffs' worth of time: without the notice the dialer would have knocked again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        full.network.metrics().refused(RefusalReason::InboundLimit),
        1,
        "no redial while the refusal's wait runs"
    );
    assert!(
        dialer
            .metrics_text()
            .contains("reason=\"full\",wait=\"true\"} 1"),
        "{}",
        dialer.metrics_text()
    );
    full.network.shutdown().await;
    dialer.network.shutdown().await;
}

/// A banned peer reads `banned` before its connection closes.
#[tokio::test]
async fn a_banned_peer_reads_why() {
    let a = node(1, Net::Tcp);
    let b = node(2, Net::Tcp);
    a.dial(&b).await.unwrap();
    eventually("b registers a", || b.network.is_connected(a.peer_id())).await;
    a.network.ban(b.peer_id()).await.unwrap();
    let received = b.network.metrics().extensions().clone();
    eventually("b reads `banned`", || {
        received.disconnect_notices(false, "banned") == 1
    })
    .await;
    eventually("b is disconnected", || !b.network.is_connected(a.peer_id())).await;
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// Both ends send their chain status as the first message on protocol 65; a change is
/// re-announced; `PeerStats` shows it with its time.
#[tokio::test]
async fn chain_status_is_exchanged_on_connect_and_reannounced() {
    let a = node(1, Net::Tcp);
    let b = node(2, Net::Tcp);
    a.network.set_chain_status(status(9, 10));
    b.network.set_chain_status(status(9, 20));
    a.dial(&b).await.unwrap();
    let (a_peer, b_peer) = (a.as_peer(), b.as_peer());
    eventually("a knows b's status", || {
        a.network
            .peers_and_metadata()
            .chain_status(b_peer)
            .map(|s| s.status)
            == Some(status(9, 20))
    })
    .await;
    eventually("b knows a's status", || {
        b.network
            .peers_and_metadata()
            .chain_status(a_peer)
            .map(|s| s.status)
            == Some(status(9, 10))
    })
    .await;

    // Metrics show each peer's status while it is connected.
    assert_eq!(
        a.network
            .metrics()
            .extensions()
            .peer_best_height(&b.peer_id()),
        Some(20)
    );
    assert!(
        a.metrics_text()
            .contains("peerlane_peer_chain_status_updated_seconds")
    );

    a.network.set_chain_status(status(9, 11));
    eventually("b hears the change", || {
        b.network
            .peers_and_metadata()
            .peer_stats(a_peer)
            .and_then(|stats| stats.chain_status)
            .is_some_and(|s| s.status.best_height == 11 && s.updates == 2)
    })
    .await;
    // Gone peers take their series with them.
    let b_id = b.peer_id();
    b.network.shutdown().await;
    eventually("a's series for b removed", || {
        a.network
            .metrics()
            .extensions()
            .peer_best_height(&b_id)
            .is_none()
    })
    .await;
    a.network.shutdown().await;
}

/// A thousand changes in a burst reach the peer as a handful of messages, the last carrying
/// the latest status.
#[tokio::test]
async fn status_bursts_are_throttled_and_the_latest_wins() {
    let a = node(1, Net::Tcp);
    let b = node(2, Net::Tcp);
    a.network.set_chain_status(status(9, 0));
    a.dial(&b).await.unwrap();
    let a_peer = a.as_peer();
    eventually("b has a's first status", || {
        b.network
            .peers_and_metadata()
            .chain_status(a_peer)
            .is_some()
    })
    .await;
    for height in 1..=1_000 {
        a.network.set_chain_status(status(9, height));
    }
    eventually("b has the latest", || {
        b.network
            .peers_and_metadata()
            .chain_status(a_peer)
            .is_some_and(|s| s.status.best_height == 1_000)
    })
    .await;
    let sent = a.network.metrics().extensions().chain_status("sent");
    assert!(sent <= 5, "{sent} messages for 1001 statuses");
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// A node that learns its genesis differs from a connected peer's closes the connection with
/// `ChainMismatch`, which the peer reads and hands to its connectivity manager.
#[tokio::test]
async fn a_peer_on_another_chain_is_refused_with_the_reason() {
    let a = node(1, Net::Tcp);
    let b = node(2, Net::Tcp);
    b.network.set_chain_status(status(2, 5));
    a.dial(&b).await.unwrap();
    let b_peer = b.as_peer();
    eventually("a has b's status", || {
        a.network
            .peers_and_metadata()
            .chain_status(b_peer)
            .is_some()
    })
    .await;
    // Now a learns its own chain: another genesis.
    a.network.set_chain_status(status(1, 5));
    let received = b.network.metrics().extensions().clone();
    eventually("b reads `chain_mismatch`", || {
        received.disconnect_notices(false, "chain_mismatch") == 1
    })
    .await;
    eventually("they are disconnected", || {
        !a.network.is_connected(b.peer_id()) && !b.network.is_connected(a.peer_id())
    })
    .await;
    assert_eq!(
        a.network
            .metrics()
            .extensions()
            .chain_status("chain_mismatch"),
        1
    );
    eventually("b's connectivity manager hears it", || {
        b.network
            .connectivity_metrics()
            .remote_refusals(RemoteRefusal::ChainMismatch)
            == 1
    })
    .await;

    // Reconnecting with both statuses known: the first status exchanged refuses it.
    a.dial(&b).await.unwrap();
    eventually("refused again", || {
        a.network
            .metrics()
            .extensions()
            .chain_status("chain_mismatch")
            >= 2
            || b.network
                .metrics()
                .extensions()
                .chain_status("chain_mismatch")
                >= 1
    })
    .await;
    eventually("disconnected again", || {
        !a.network.is_connected(b.peer_id())
    })
    .await;
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// A node's config on loopback TCP with peer exchange asking every 100 ms (seed 1 only; the
/// others only answer); `private` lets loopback addresses through answers.
fn exchange_config(seed: u64, private: bool) -> peerlane::NetworkConfig {
    let mut config = config(seed, NetworkId::Public, Net::Tcp);
    config.extensions.peer_exchange = seed == 1;
    config.extensions.peer_exchange_interval = Duration::from_millis(100);
    config.extensions.private_network = private;
    config
}

fn seed_of(node: &test_support::Node) -> DiscoveredPeer {
    DiscoveredPeer::new(
        PeerRole::Upstream,
        [node.network.listen_address().clone()],
        [],
    )
}

/// Peer exchange over TCP: A knows only B (its seed), and B dialed C. A asks B, learns C as an
/// indirect peer, dials it itself and C becomes verified, yet never trusted. B answers A once
/// per interval and `Busy` in between.
#[tokio::test]
async fn peer_exchange_finds_a_third_node_that_stays_untrusted() {
    let c = node_with(
        exchange_config(3, true),
        Net::Tcp,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let b = node_with(
        exchange_config(2, true),
        Net::Tcp,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    b.dial(&c).await.unwrap();
    let mut a = exchange_config(1, true);
    a.seeds.insert(b.peer_id(), seed_of(&b));
    let a = node_with(a, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    eventually("a connects to c", || a.network.is_connected(c.peer_id())).await;
    assert!(
        !a.network
            .trusted_peers()
            .snapshot()
            .contains_key(&c.peer_id())
    );
    assert!(
        a.network
            .trusted_peers()
            .snapshot()
            .contains_key(&b.peer_id())
    );
    eventually("c is verified", || {
        a.network
            .connectivity_metrics()
            .discovered_peers(connectivity_manager::Provenance::Verified)
            == 1
    })
    .await;
    assert!(
        a.network
            .metrics()
            .extensions()
            .peer_exchange_peers("accepted")
            >= 1
    );

    let served = b.network.metrics().extensions().clone();
    eventually("b refuses a's next asks", || {
        served.peer_exchange_requests("served", "busy") >= 2
    })
    .await;
    assert_eq!(served.peer_exchange_requests("served", "ok"), 1);
    for node in [a, b, c] {
        node.network.shutdown().await;
    }
}

/// On a public (not private) network, loopback addresses from an answer are refused by name
/// and never dialed.
#[tokio::test]
async fn peer_exchange_refuses_private_addresses_on_a_public_network() {
    let c = node_with(
        exchange_config(3, true),
        Net::Tcp,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let b = node_with(
        exchange_config(2, true),
        Net::Tcp,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    b.dial(&c).await.unwrap();
    let mut a = exchange_config(1, false);
    a.seeds.insert(b.peer_id(), seed_of(&b));
    let a = node_with(a, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    let extensions = a.network.metrics().extensions().clone();
    eventually("a refuses c's loopback address", || {
        extensions.peer_exchange_peers("private_address") >= 1
    })
    .await;
    assert_eq!(extensions.peer_exchange_peers("accepted"), 0);
    assert!(!a.network.is_connected(c.peer_id()));
    for node in [a, b, c] {
        node.network.shutdown().await;
    }
}

/// A whitelisted peer connects to a node whose inbound limit is zero; a stranger does not.
#[tokio::test]
async fn a_whitelisted_peer_bypasses_the_inbound_limit() {
    let b = node(2, Net::Tcp);
    let c = node(3, Net::Tcp);
    let mut a = config(1, NetworkId::Public, Net::Tcp);
    a.max_inbound_connections = 0;
    a.connectivity.whitelist([b.peer_id()]);
    let a = node_with(a, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    b.dial(&a).await.unwrap();
    eventually("a keeps b", || a.network.is_connected(b.peer_id())).await;
    c.dial(&a).await.unwrap();
    eventually("c reads `full`", || {
        c.network
            .metrics()
            .extensions()
            .disconnect_notices(false, "full")
            == 1
    })
    .await;
    assert!(a.network.is_connected(b.peer_id()));
    assert!(!a.network.is_connected(c.peer_id()));
    for node in [a, b, c] {
        node.network.shutdown().await;
    }
}

/// Above the target range's high mark the node closes its worst inbound peer with a `Full`
/// notice, and keeps the whitelisted one.
#[tokio::test]
async fn above_the_high_mark_the_worst_inbound_peer_is_told_full() {
    let b = node(2, Net::Tcp);
    let c = node(3, Net::Tcp);
    let d = node(4, Net::Tcp);
    let mut a = config(1, NetworkId::Public, Net::Tcp);
    a.connectivity
        .target_peers(0, 2)
        .min_outbound_connections(0)
        .max_outbound_connections(0)
        .whitelist([b.peer_id()]);
    let a = node_with(a, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());

    for dialer in [&b, &c, &d] {
        dialer.dial(&a).await.unwrap();
    }
    eventually("one peer closed", || {
        a.network.connectivity_metrics().over_target_disconnects() == 1
    })
    .await;
    eventually("the closed one read `full`", || {
        [&c, &d].iter().any(|node| {
            node.network
                .metrics()
                .extensions()
                .disconnect_notices(false, "full")
                == 1
        })
    })
    .await;
    eventually("two peers left", || {
        a.network.peers_and_metadata().connected_peers().len() == 2
    })
    .await;
    assert!(a.network.is_connected(b.peer_id()), "whitelisted");
    for node in [a, b, c, d] {
        node.network.shutdown().await;
    }
}

/// With no room for notices (`max_pending_notices = 0`) a refused connection is closed
/// without one, and that is counted: a flood of refusals cannot hold sockets open.
#[tokio::test]
async fn refusals_past_the_notice_cap_are_closed_silently_and_counted() {
    let mut full = config(1, NetworkId::Public, Net::Tcp);
    full.max_inbound_connections = 0;
    full.extensions.max_pending_notices = 0;
    let full = node_with(full, Net::Tcp, &DIRECT, &RPC, QueueConfig::default());
    let dialer = node(2, Net::Tcp);
    dialer.dial(&full).await.unwrap();
    eventually("skipped", || {
        full.network
            .metrics()
            .extensions()
            .disconnect_notices_skipped()
            == 1
    })
    .await;
    eventually("closed", || !dialer.network.is_connected(full.peer_id())).await;
    assert_eq!(
        dialer
            .network
            .metrics()
            .extensions()
            .disconnect_notices(false, "full"),
        0
    );
    full.network.shutdown().await;
    dialer.network.shutdown().await;
}
