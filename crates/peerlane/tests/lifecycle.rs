//! A network's life beyond sending messages: set-up deadlines, dropping the handle, slow
//! notification subscribers, and several networks behind one client.

use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use netcore::{ConnectionOrigin, MemoryListener, MemorySocket, NetworkAddress};
use noise::PublicKey;
use peerlane::{
    ConnectionNotification, Error, Event, NetworkBuilder, NetworkClient, NetworkEvents,
    PeerNetworkId, PeersAndMetadata, QueueConfig, SetupFailure,
};
use prometheus_client::registry::Registry;
use test_support::{
    DIRECT, Msg, Net, RPC, config, eventually, next_notification, node,
    peer_id_from_seed as peer_id, within,
};
use wire::NetworkId;

/// A listener that accepts nothing and says nothing holds a dial for the whole set-up deadline
/// (30 s on the paused clock), then the dial fails with a typed timeout, counted.
#[tokio::test(start_paused = true)]
async fn a_silent_remote_fails_the_dial_at_the_setup_deadline() {
    let a = node(1, Net::Memory);
    let silent = MemoryListener::bind(0).unwrap();
    let addr = NetworkAddress::memory(silent.port())
        .with_noise_and_handshake(PublicKey::from(&test_support::key_from_seed(2)), 0)
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), a.network.dial(peer_id(2), addr))
        .await
        .expect("the set-up deadline ends the dial")
        .unwrap_err();
    assert!(matches!(err, Error::SetupTimeout { .. }), "{err:?}");
    assert!(err.is_timeout());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(
        a.network
            .metrics()
            .setup_failures(ConnectionOrigin::Outbound, SetupFailure::Timeout),
        1
    );
    drop(silent);
    a.network.shutdown().await;
}

/// A dialer that connects and then says nothing is dropped by the listener at the set-up
/// deadline and counted; the network keeps accepting others meanwhile.
#[tokio::test(start_paused = true)]
async fn a_silent_dialer_is_dropped_at_the_setup_deadline() {
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let netcore::Protocol::Memory(port) = a.network.listen_address().protocols()[0] else {
        unreachable!("memory transport")
    };
    let _silent = MemorySocket::connect(port).await.unwrap();
    // Others get in while the silent one waits.
    b.dial(&a).await.unwrap();
    let metrics = a.network.metrics().clone();
    let timed_out = || metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Timeout);
    let started = tokio::time::Instant::now();
    assert_eq!(timed_out(), 0);
    // Longer than `eventually` waits: the deadline is 30 s.
    while timed_out() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            started.elapsed() < Duration::from_secs(31),
            "no timeout after 31 s"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(29));
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// Dropping a `Network` without `shutdown` still closes its connections: the remote hears
/// `LostPeer`.
#[tokio::test(start_paused = true)]
async fn dropping_the_network_closes_its_connections() {
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let mut b_notes = b.network.peers_and_metadata().subscribe();
    a.dial(&b).await.unwrap();
    assert!(matches!(
        next_notification(&mut b_notes).await,
        ConnectionNotification::NewPeer(..)
    ));
    drop(a);
    assert!(matches!(
        next_notification(&mut b_notes).await,
        ConnectionNotification::LostPeer(..)
    ));
    b.network.shutdown().await;
}

/// A subscriber that does not keep up with `notification_capacity` notifications loses the
/// oldest ones; it learns how many, the count is shared with the metric, and the latest
/// notifications still arrive.
#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_loses_the_oldest_notifications_counted() {
    let mut hub_config = config(1, NetworkId::Public, Net::Memory);
    hub_config.notification_capacity = NonZeroUsize::new(1).unwrap();
    let hub = test_support::node_with(
        hub_config,
        Net::Memory,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let mut slow = hub.network.peers_and_metadata().subscribe();
    let spokes: Vec<_> = (2..5).map(|seed| node(seed, Net::Memory)).collect();
    for spoke in &spokes {
        spoke.dial(&hub).await.unwrap();
        eventually("hub registers the spoke", || {
            hub.network.is_connected(spoke.network.peer_id())
        })
        .await;
    }
    // Three NewPeer went through a channel of one: the first two are lost.
    let ConnectionNotification::NewPeer(metadata, _) = next_notification(&mut slow).await else {
        panic!("expected NewPeer")
    };
    assert_eq!(metadata.remote_peer_id, peer_id(4));
    assert_eq!(slow.lost(), 2);
    assert_eq!(hub.network.peers_and_metadata().notifications_lost(), 2);
    assert!(
        hub.metrics_text()
            .contains(r#"peerlane_notifications_lost_total{network="public"} 2"#),
        "{}",
        hub.metrics_text()
    );
    // It can resynchronise from the current state.
    assert_eq!(hub.network.peers_and_metadata().connected_peers().len(), 3);
    hub.network.shutdown().await;
    for spoke in spokes {
        spoke.network.shutdown().await;
    }
}

/// One node on two networks (VFN and public) with one `PeersAndMetadata`: a combined client
/// sends to peers on both, combined events receive from both with the right network, and one
/// subscription sees both networks' peers.
#[tokio::test(start_paused = true)]
async fn one_client_and_one_event_stream_serve_several_networks() {
    let net = Net::Memory;
    let peers = PeersAndMetadata::default();
    let mut registry = Registry::default();
    peers.register_metrics(&mut registry);
    let mut notes = peers.subscribe();
    let mut clients = Vec::new();
    let mut events = Vec::new();
    let mut networks = Vec::new();
    for network_id in [NetworkId::Vfn, NetworkId::Public] {
        let mut builder = NetworkBuilder::with_peers_and_metadata(
            config(1, network_id, net),
            test_support::transport(net),
            &mut registry,
            peers.clone(),
        )
        .unwrap();
        let (client, stream) = builder
            .add_application::<Msg>(DIRECT, RPC, QueueConfig::default())
            .unwrap();
        clients.push(client);
        events.push(stream);
        networks.push(builder.build().unwrap());
    }
    let client = NetworkClient::combine(clients).unwrap();
    let mut events = NetworkEvents::combine(events);
    let mut vfn_peer = test_support::node_with(
        config(2, NetworkId::Vfn, net),
        net,
        &DIRECT,
        &RPC,
        QueueConfig::default(),
    );
    let mut public_peer = node(3, net);
    networks[0]
        .dial(
            vfn_peer.network.peer_id(),
            vfn_peer.network.listen_address().clone(),
        )
        .await
        .unwrap();
    networks[1]
        .dial(
            public_peer.network.peer_id(),
            public_peer.network.listen_address().clone(),
        )
        .await
        .unwrap();
    let mut seen: Vec<NetworkId> = Vec::new();
    for _ in 0..2 {
        seen.push(next_notification(&mut notes).await.peer().network_id);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![NetworkId::Vfn, NetworkId::Public]);

    let targets = [vfn_peer.as_peer(), public_peer.as_peer()];
    let mut connected = client.connected_peers();
    connected.sort_unstable();
    let mut expected = targets.to_vec();
    expected.sort_unstable();
    assert_eq!(connected, expected);
    client
        .send_to_peers(targets, &Msg::Text("to all".into()))
        .unwrap();
    assert_eq!(vfn_peer.next_message().await.2, Msg::Text("to all".into()));
    assert_eq!(
        public_peer.next_message().await.2,
        Msg::Text("to all".into())
    );

    let me_on = |network_id| PeerNetworkId::new(network_id, peer_id(1));
    vfn_peer
        .client
        .send_to_peer(me_on(NetworkId::Vfn), &Msg::Text("vfn".into()))
        .unwrap();
    public_peer
        .client
        .send_to_peer(me_on(NetworkId::Public), &Msg::Text("public".into()))
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..2 {
        let Some(Event::Message { peer, message, .. }) =
            within("combined events", events.next()).await
        else {
            panic!("expected a message")
        };
        received.push((peer.network_id, message));
    }
    received.sort_by_key(|(network_id, _)| *network_id);
    assert_eq!(
        received,
        vec![
            (NetworkId::Vfn, Msg::Text("vfn".into())),
            (NetworkId::Public, Msg::Text("public".into())),
        ]
    );

    // A client for a network it does not serve fails with a typed error.
    let err = vfn_peer
        .client
        .send_to_peer(me_on(NetworkId::Public), &Msg::Text("x".into()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownNetwork {
                network_id: NetworkId::Public
            }
        ),
        "{err:?}"
    );
    // Two clients of the same network do not combine.
    assert!(NetworkClient::combine([client.clone(), client.clone()]).is_err());

    for network in networks {
        network.shutdown().await;
    }
    vfn_peer.network.shutdown().await;
    public_peer.network.shutdown().await;
}
