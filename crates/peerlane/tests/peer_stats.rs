//! `PeersAndMetadata::peer_stats`: the bytes each connection moved on the wire, counted below
//! Noise, and when it was registered; over the memory transport on tokio's paused clock. (The
//! round-trip time of health-check pings is tested with the health checker, in `health.rs`.)

use std::time::SystemTime;

use peerlane::{ConnectionNotification, PeerNetworkId};
use rand::{RngCore, SeedableRng};
use test_support::{Msg, Net, eventually, node, within};

/// After the handshake both ends have counted bytes both ways, the connection's id and a
/// registration time; a 200 KiB message adds at least its size to the sender's `bytes_sent`,
/// and once it is delivered the receiver has read exactly what the sender wrote. After a
/// disconnect there are no figures for the peer.
#[tokio::test(start_paused = true)]
async fn byte_counters_and_connect_time_follow_the_connection() {
    let before = SystemTime::now();
    let (a, mut b) = (node(1, Net::Memory), node(2, Net::Memory));
    a.dial(&b).await.unwrap();
    // Handles of their own, so that `b` can be borrowed mutably for its events.
    let a_peers = a.network.peers_and_metadata().clone();
    let b_peers = b.network.peers_and_metadata().clone();
    let (a_as_peer, b_as_peer) = (a.as_peer(), b.as_peer());
    eventually("b registers a", || b_peers.is_connected(a_as_peer)).await;

    let at_a = a_peers.peer_stats(b_as_peer).expect("b is connected");
    let at_b = b_peers.peer_stats(a_as_peer).expect("a is connected");
    for stats in [at_a, at_b] {
        // Noise IK and the handshake messages went both ways.
        assert!(stats.bytes_sent > 0, "{stats:?}");
        assert!(stats.bytes_received > 0, "{stats:?}");
        assert!(stats.connected_since >= before, "{stats:?}");
        assert!(stats.connected_since <= SystemTime::now(), "{stats:?}");
        // No health-check round yet (the first is one interval, 5 s, after start).
        assert_eq!(stats.last_rtt, None);
    }
    let metadata = a_peers.metadata(b_as_peer).unwrap();
    assert_eq!(at_a.connection_id, metadata.connection_id);
    let listed = a_peers.connected_peers_with_stats();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, b_as_peer);
    assert_eq!(listed[0].2.connection_id, metadata.connection_id);

    // Random bytes: no compression can shrink them below their size on the wire.
    let mut blob = vec![0u8; 200 * 1024];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut blob);
    a.client
        .send_to_peer(b_as_peer, &Msg::Blob(blob.clone()))
        .unwrap();
    let (_, _, message) = b.next_message().await;
    assert_eq!(message, Msg::Blob(blob));
    let sent = a_peers.peer_stats(b_as_peer).unwrap().bytes_sent;
    assert!(
        sent >= at_a.bytes_sent + 200 * 1024,
        "{sent} after {at_a:?}"
    );
    eventually("b has read all a wrote", || {
        b_peers.peer_stats(a_as_peer).unwrap().bytes_received
            == a_peers.peer_stats(b_as_peer).unwrap().bytes_sent
    })
    .await;

    within("disconnect", a.network.disconnect(b.network.peer_id()))
        .await
        .unwrap();
    assert_eq!(a_peers.peer_stats(b_as_peer), None);
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// Every listing of the connected peers is in `PeerNetworkId` order, whatever order the peers
/// connected in: whoever sends to every peer sends in the order listed, and a simulated run
/// replays only if that order does not depend on a map's per-process order.
#[tokio::test(start_paused = true)]
async fn connected_peers_are_listed_in_order() {
    let hub = node(1, Net::Memory);
    let spokes: Vec<_> = (2..10).rev().map(|seed| node(seed, Net::Memory)).collect();
    for spoke in &spokes {
        spoke.dial(&hub).await.unwrap();
    }
    let peers = hub.network.peers_and_metadata().clone();
    eventually("the hub registers every spoke", || {
        peers.connected_peers().len() == spokes.len()
    })
    .await;
    let mut expected: Vec<_> = spokes.iter().map(|spoke| spoke.as_peer()).collect();
    expected.sort_unstable();
    assert_eq!(peers.connected_peers(), expected);
    assert_eq!(peers.connected_peers_on(hub.as_peer().network_id), expected);
    let with_metadata: Vec<_> = peers
        .connected_peers_and_metadata()
        .into_iter()
        .map(|(peer, _)| peer)
        .collect();
    assert_eq!(with_metadata, expected);
    let with_stats: Vec<_> = peers
        .connected_peers_with_stats()
        .into_iter()
        .map(|(peer, _, _)| peer)
        .collect();
    assert_eq!(with_stats, expected);
    // A late subscriber hears of the peers already connected in the same order.
    let mut late = peers.subscribe();
    let replayed: Vec<_> = std::iter::from_fn(|| late.try_recv())
        .map(|note| match note {
            ConnectionNotification::NewPeer(metadata, network_id) => {
                PeerNetworkId::new(network_id, metadata.remote_peer_id)
            }
            other => panic!("a late subscriber first hears of connected peers, not {other:?}"),
        })
        .collect();
    assert_eq!(replayed, expected);
}
