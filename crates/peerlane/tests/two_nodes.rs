//! Two (or three) nodes through the whole facade: builder, dial, client, events, notifications,
//! disconnect and shutdown, over the memory transport and over real TCP with Noise.

use std::collections::HashMap;
use std::time::Duration;

use netcore::ConnectionOrigin;
use noise::{HandshakeOutcome, PeerRole, PublicKey, Side};
use peer::DisconnectReason;
use peerlane::{
    ConnectionNotification, DiscoveredPeer, Error, Event, ProtocolKind, QueueConfig, RefusalReason,
};
use test_support::{
    DIRECT, Msg, Net, Node, RPC, config, eventually, next_notification, node, node_with,
    peer_id_from_seed as peer_id, within,
};
use wire::{NetworkId, ProtocolId};

/// Direct sends flow both ways over one connection, each tagged with its sender and protocol.
async fn direct_sends_flow_both_ways(net: Net) {
    let (mut a, mut b) = (node(1, net), node(2, net));
    a.dial(&b).await.unwrap();

    a.client
        .send_to_peer(b.as_peer(), &Msg::Text("a to b".into()))
        .unwrap();
    let (from, protocol, message) = b.next_message().await;
    assert_eq!(
        (from, protocol, message),
        (a.as_peer(), DIRECT[0], Msg::Text("a to b".into()))
    );

    // b never dialed: it answers over the connection a opened.
    b.client
        .send_to_peer(a.as_peer(), &Msg::Text("b to a".into()))
        .unwrap();
    let (from, _, message) = a.next_message().await;
    assert_eq!((from, message), (b.as_peer(), Msg::Text("b to a".into())));

    // One Noise handshake, counted on each side in the network's Noise metrics.
    let handshakes = |node: &Node, side| {
        let metrics = node.network.noise_metrics();
        metrics.handshakes(side, HandshakeOutcome::Ok)
    };
    assert_eq!(handshakes(&a, Side::Initiator), 1);
    assert_eq!(handshakes(&b, Side::Responder), 1);
    assert!(a.network.noise_metrics().dh_operations() > 0);

    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// An RPC goes out on the RPC protocol, the remote's reply comes back decoded; the request
/// may be lent rather than given.
async fn rpc_round_trips(net: Net) {
    let (a, mut b) = (node(1, net), node(2, net));
    a.dial(&b).await.unwrap();
    let server = b.serve_pings();
    let response = within(
        "rpc",
        a.client
            .send_rpc(b.as_peer(), Msg::Ping(42), Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(response, Msg::Pong(42));
    let kept = Msg::Ping(43);
    let response = within(
        "rpc",
        a.client
            .send_rpc(b.as_peer(), &kept, Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!((response, kept), (Msg::Pong(43), Msg::Ping(43)));
    a.network.shutdown().await;
    b.network.shutdown().await;
    server.await.unwrap();
}

/// Over memsocket: direct sends both ways.
#[tokio::test(start_paused = true)]
async fn direct_sends_flow_both_ways_over_memory() {
    direct_sends_flow_both_ways(Net::Memory).await;
}

/// Over real TCP on loopback with real Noise: direct sends both ways.
#[tokio::test]
async fn direct_sends_flow_both_ways_over_tcp_and_noise() {
    direct_sends_flow_both_ways(Net::Tcp).await;
}

/// Over memsocket: an RPC round trip.
#[tokio::test(start_paused = true)]
async fn rpc_round_trips_over_memory() {
    rpc_round_trips(Net::Memory).await;
}

/// Over real TCP with real Noise: an RPC round trip.
#[tokio::test]
async fn rpc_round_trips_over_tcp_and_noise() {
    rpc_round_trips(Net::Tcp).await;
}

/// A client uses the first protocol of its preference list that the peer negotiated: a peer
/// without the first gets the second, for direct sends and RPCs alike. A peer with none of
/// them is a typed error naming the kind and the list.
#[tokio::test(start_paused = true)]
async fn protocol_preference_picks_the_first_protocol_the_peer_has() {
    let net = Net::Memory;
    let direct = [
        ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED,
        ProtocolId::CONSENSUS_DIRECT_SEND_BCS,
    ];
    let rpc = [
        ProtocolId::CONSENSUS_RPC_COMPRESSED,
        ProtocolId::CONSENSUS_RPC_BCS,
    ];
    let a = node_with(
        config(1, NetworkId::Public, net),
        net,
        &direct,
        &rpc,
        QueueConfig::default(),
    );
    // b speaks only the second protocol of each list.
    let mut b = node(2, net);
    // c speaks both: it gets the first.
    let mut c = node_with(
        config(3, NetworkId::Public, net),
        net,
        &direct,
        &rpc,
        QueueConfig::default(),
    );
    a.dial(&b).await.unwrap();
    a.dial(&c).await.unwrap();

    assert_eq!(
        a.client.direct_send_protocol(b.as_peer()).unwrap(),
        ProtocolId::CONSENSUS_DIRECT_SEND_BCS
    );
    assert_eq!(
        a.client.rpc_protocol(b.as_peer()).unwrap(),
        ProtocolId::CONSENSUS_RPC_BCS
    );
    assert_eq!(
        a.client.direct_send_protocol(c.as_peer()).unwrap(),
        ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED
    );
    a.client
        .send_to_peers([b.as_peer(), c.as_peer()], &Msg::Text("hi".into()))
        .unwrap();
    assert_eq!(
        b.next_message().await.1,
        ProtocolId::CONSENSUS_DIRECT_SEND_BCS
    );
    assert_eq!(
        c.next_message().await.1,
        ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED
    );

    let server = b.serve_pings();
    let pong = a
        .client
        .send_rpc(b.as_peer(), Msg::Ping(1), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pong, Msg::Pong(1));

    // A second application on a whose protocols b does not speak.
    let mut builder_registry = prometheus_client::registry::Registry::default();
    let mut builder = peerlane::NetworkBuilder::new(
        config(4, NetworkId::Public, net),
        test_support::transport(net),
        &mut builder_registry,
    )
    .unwrap();
    let (_first, _) = builder
        .add_application::<Msg>(DIRECT, RPC, QueueConfig::default())
        .unwrap();
    let (mempool, _mempool_events) = builder
        .add_application::<Msg>(
            [ProtocolId::MEMPOOL_DIRECT_SEND],
            [ProtocolId::MEMPOOL_RPC],
            QueueConfig::default(),
        )
        .unwrap();
    let d = builder.build().unwrap();
    d.dial(b.network.peer_id(), b.network.listen_address().clone())
        .await
        .unwrap();
    let err = mempool
        .send_to_peer(b.as_peer(), &Msg::Text("tx".into()))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NoCommonProtocol { kind: ProtocolKind::DirectSend, preferences, .. }
                if preferences == &[ProtocolId::MEMPOOL_DIRECT_SEND]
        ),
        "{err:?}"
    );
    let err = mempool
        .send_rpc(b.as_peer(), Msg::Ping(2), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoCommonProtocol {
                kind: ProtocolKind::Rpc,
                ..
            }
        ),
        "{err:?}"
    );

    for network in [a.network, b.network, c.network, d] {
        network.shutdown().await;
    }
    server.await.unwrap();
}

/// Registering a protocol twice on one network is refused: a protocol belongs to one
/// application.
#[tokio::test(start_paused = true)]
async fn a_protocol_belongs_to_one_application() {
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder = peerlane::NetworkBuilder::new(
        config(1, NetworkId::Public, Net::Memory),
        test_support::transport(Net::Memory),
        &mut registry,
    )
    .unwrap();
    builder
        .add_application::<Msg>(DIRECT, RPC, QueueConfig::default())
        .unwrap();
    let err = builder
        .add_application::<Msg>(
            [ProtocolId::MEMPOOL_DIRECT_SEND],
            RPC,
            QueueConfig::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::ProtocolAlreadyRegistered { protocol } if protocol == RPC[0]),
        "{err:?}"
    );
}

/// JSON and LZ4-compressed BCS protocols carry messages and RPCs end to end: each side encodes
/// and decodes with the protocol's own encoding (a large, compressible blob included).
#[tokio::test(start_paused = true)]
async fn json_and_compressed_protocols_round_trip() {
    let net = Net::Memory;
    for (direct, rpc) in [
        (
            ProtocolId::CONSENSUS_DIRECT_SEND_JSON,
            ProtocolId::CONSENSUS_RPC_JSON,
        ),
        (
            ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED,
            ProtocolId::CONSENSUS_RPC_COMPRESSED,
        ),
    ] {
        let make = |seed| {
            node_with(
                config(seed, NetworkId::Public, net),
                net,
                &[direct],
                &[rpc],
                QueueConfig::default(),
            )
        };
        let (a, mut b) = (make(1), make(2));
        a.dial(&b).await.unwrap();
        let blob = Msg::Blob(vec![7; 200_000]);
        a.client.send_to_peer(b.as_peer(), &blob).unwrap();
        let (_, protocol, message) = b.next_message().await;
        assert_eq!((protocol, message), (direct, blob));

        let server = b.serve_pings();
        let pong = a
            .client
            .send_rpc(b.as_peer(), Msg::Ping(9), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(pong, Msg::Pong(9));
        a.network.shutdown().await;
        b.network.shutdown().await;
        server.await.unwrap();
    }
}

/// A payload the application's type cannot decode is counted and skipped; the next message
/// still arrives.
#[tokio::test(start_paused = true)]
async fn undecodable_payloads_are_counted_and_skipped() {
    let net = Net::Memory;
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder = peerlane::NetworkBuilder::new(
        config(1, NetworkId::Public, net),
        test_support::transport(net),
        &mut registry,
    )
    .unwrap();
    // a sends bare strings; b expects `Msg` on the same protocol.
    let (strings, _) = builder
        .add_application::<String>(DIRECT, RPC, QueueConfig::default())
        .unwrap();
    let a = builder.build().unwrap();
    let mut b = node(2, net);
    a.dial(b.network.peer_id(), b.network.listen_address().clone())
        .await
        .unwrap();
    // BCS of a String is its length, then its bytes. Length 11 is no variant of `Msg`.
    strings
        .send_to_peer(b.as_peer(), &"not a msg!!".to_string())
        .unwrap();
    // The empty string is the byte 0: `Msg::Text` without its string.
    strings.send_to_peer(b.as_peer(), &String::new()).unwrap();
    // "\x02ab" is 03 02 61 62: `Msg::Blob(vec![0x61, 0x62])`, which decodes.
    strings
        .send_to_peer(b.as_peer(), &"\u{2}ab".to_string())
        .unwrap();
    let (_, _, message) = b.next_message().await;
    assert_eq!(message, Msg::Blob(b"ab".to_vec()));
    assert_eq!(b.network.metrics().decode_failures(DIRECT[0]), 2);
    a.shutdown().await;
    b.network.shutdown().await;
}

/// Subscribers hear `NewPeer` on both ends when a connection is set up, with the right origin,
/// and `LostPeer` on both ends when one side disconnects: `Requested` on that side, the
/// remote closing on the other. A subscription started later replays who is connected.
#[tokio::test(start_paused = true)]
async fn new_peer_and_lost_peer_are_announced_on_both_sides() {
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    let mut b_notes = b.network.peers_and_metadata().subscribe();
    a.dial(&b).await.unwrap();

    let ConnectionNotification::NewPeer(metadata, network) = next_notification(&mut a_notes).await
    else {
        panic!("expected NewPeer")
    };
    assert_eq!(
        (metadata.remote_peer_id, metadata.origin, network),
        (
            b.network.peer_id(),
            ConnectionOrigin::Outbound,
            NetworkId::Public
        )
    );
    let ConnectionNotification::NewPeer(metadata, _) = next_notification(&mut b_notes).await else {
        panic!("expected NewPeer")
    };
    assert_eq!(
        (metadata.remote_peer_id, metadata.origin),
        (a.network.peer_id(), ConnectionOrigin::Inbound)
    );
    assert!(metadata.application_protocols.contains(DIRECT[0]));

    // A late subscriber is told who is connected already.
    let mut late = b.network.peers_and_metadata().subscribe();
    assert!(matches!(
        next_notification(&mut late).await,
        ConnectionNotification::NewPeer(..)
    ));

    a.client.disconnect(b.as_peer()).await.unwrap();
    assert!(!a.network.is_connected(b.network.peer_id()));
    let ConnectionNotification::LostPeer(_, _, reason) = next_notification(&mut a_notes).await
    else {
        panic!("expected LostPeer")
    };
    assert_eq!(reason, DisconnectReason::Requested);
    let ConnectionNotification::LostPeer(metadata, _, reason) =
        next_notification(&mut b_notes).await
    else {
        panic!("expected LostPeer")
    };
    assert_eq!(metadata.remote_peer_id, a.network.peer_id());
    assert!(!reason.is_local(), "{reason:?}");
    assert!(a.client.connected_peers().is_empty());
    eventually("b forgets a", || b.client.connected_peers().is_empty()).await;
    assert_eq!(a_notes.lost(), 0);

    // Disconnecting a peer that is not connected is a typed error.
    let err = a.client.disconnect(b.as_peer()).await.unwrap_err();
    assert!(err.is_not_connected(), "{err:?}");
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// Disconnecting a peer with RPCs in flight fails them at once as not connected, and so does
/// shutting the network down; shutdown returns once every task has ended and every peer has
/// been announced lost.
#[tokio::test(start_paused = true)]
async fn disconnect_and_shutdown_fail_rpcs_in_flight() {
    let (a, mut b) = (node(1, Net::Memory), node(2, Net::Memory));
    let c = node(3, Net::Memory);
    a.dial(&b).await.unwrap();
    a.dial(&c).await.unwrap();

    // b holds the request without answering.
    let rpc = a
        .client
        .send_rpc(b.as_peer(), Msg::Ping(1), Duration::from_secs(60));
    let hold = async {
        let Event::RpcRequest { responder, .. } = b.next_event().await else {
            panic!("expected an rpc request")
        };
        a.client.disconnect(b.as_peer()).await.unwrap();
        responder
    };
    let (result, _responder) = tokio::join!(rpc, hold);
    let err = result.unwrap_err();
    assert!(err.is_not_connected(), "{err:?}");

    // Now c holds one, and a shuts down.
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    assert!(matches!(
        next_notification(&mut a_notes).await,
        ConnectionNotification::NewPeer(..)
    ));
    let client = a.client.clone();
    let to_c = c.as_peer();
    let pending = tokio::spawn(async move {
        client
            .send_rpc(to_c, Msg::Ping(2), Duration::from_secs(60))
            .await
    });
    tokio::task::yield_now().await;
    within("shutdown", a.network.shutdown()).await;
    let err = pending.await.unwrap().unwrap_err();
    assert!(err.is_not_connected() || err.is_shut_down(), "{err:?}");
    let ConnectionNotification::LostPeer(_, _, reason) = next_notification(&mut a_notes).await
    else {
        panic!("expected LostPeer")
    };
    assert_eq!(reason, DisconnectReason::Shutdown);
    // The client outlives the network and fails cleanly.
    let err = a
        .client
        .send_to_peer(c.as_peer(), &Msg::Text("late".into()))
        .unwrap_err();
    assert!(err.is_not_connected(), "{err:?}");
    b.network.shutdown().await;
    c.network.shutdown().await;
}

/// On a validator network (mutual authentication by default), a node outside the trusted set
/// is refused during the Noise handshake: its dial fails as rejected, the listener counts an
/// unknown peer and never announces it. Once trusted (through the on-chain set, as the
/// connectivity manager owns the trusted set), the same node gets in.
#[tokio::test(start_paused = true)]
async fn mutual_mode_refuses_an_untrusted_node() {
    let net = Net::Memory;
    let validator = |seed: u64, trusted: &[u64]| {
        let mut config = config(seed, NetworkId::Validator, net);
        for other in trusted {
            let key = PublicKey::from(&test_support::key_from_seed(*other));
            let mut seed_peer = DiscoveredPeer::new(PeerRole::Validator, [], []);
            seed_peer.keys.insert(key);
            config.seeds.insert(peer_id(*other), seed_peer);
        }
        node_with(config, net, &DIRECT, &RPC, QueueConfig::default())
    };
    // a follows an on-chain set, empty for now.
    let mut a_config = config(1, NetworkId::Validator, net);
    let mut b_seed = DiscoveredPeer::new(PeerRole::Validator, [], []);
    b_seed
        .keys
        .insert(PublicKey::from(&test_support::key_from_seed(2)));
    a_config.seeds.insert(peer_id(2), b_seed);
    let (on_chain_tx, on_chain_rx) = tokio::sync::watch::channel(HashMap::new());
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder =
        peerlane::NetworkBuilder::new(a_config, test_support::transport(net), &mut registry)
            .unwrap();
    let (client, events) = builder
        .add_application::<Msg>(DIRECT, RPC, QueueConfig::default())
        .unwrap();
    builder.on_chain_updates(on_chain_rx);
    let a = Node {
        network: builder.build().unwrap(),
        client,
        events,
        registry,
    };
    let b = validator(2, &[1]);
    let stranger = validator(9, &[1]);
    let mut a_notes = a.network.peers_and_metadata().subscribe();

    b.dial(&a).await.unwrap();
    let err = stranger.dial(&a).await.unwrap_err();
    assert!(
        matches!(err, Error::Noise(noise::Error::Rejected { .. })),
        "{err:?}"
    );
    assert!(
        a.metrics_text().contains(
            r#"peerlane_noise_handshakes_total{network="validator",side="responder",result="unknown_peer"} 1"#
        ),
        "{}",
        a.metrics_text()
    );
    let ConnectionNotification::NewPeer(metadata, _) = next_notification(&mut a_notes).await else {
        panic!("expected NewPeer")
    };
    assert_eq!(metadata.remote_peer_id, b.network.peer_id());
    assert_eq!(metadata.role, PeerRole::Validator);
    assert!(!a.network.is_connected(peer_id(9)));

    on_chain_tx.send_replace(HashMap::from([(
        peer_id(9),
        DiscoveredPeer::new(
            PeerRole::Validator,
            [],
            [PublicKey::from(&test_support::key_from_seed(9))],
        ),
    )]));
    eventually("a trusts the stranger", || {
        a.network
            .trusted_peers()
            .snapshot()
            .contains_key(&peer_id(9))
    })
    .await;
    stranger.dial(&a).await.unwrap();
    assert!(a.network.is_connected(peer_id(9)));
    for network in [a.network, b.network, stranger.network] {
        network.shutdown().await;
    }
}

/// At most `max_inbound_connections` inbound connections from peers outside the trusted set:
/// one more is closed right after set-up and counted; a trusted peer still gets in.
#[tokio::test(start_paused = true)]
async fn inbound_connections_from_unknown_peers_are_limited() {
    let net = Net::Memory;
    let mut limited = config(1, NetworkId::Public, net);
    limited.max_inbound_connections = 1;
    let mut trusted_seed = DiscoveredPeer::new(PeerRole::Upstream, [], []);
    trusted_seed
        .keys
        .insert(PublicKey::from(&test_support::key_from_seed(4)));
    limited.seeds.insert(peer_id(4), trusted_seed);
    let a = node_with(limited, net, &DIRECT, &RPC, QueueConfig::default());
    let (b, c, d) = (node(2, net), node(3, net), node(4, net));

    b.dial(&a).await.unwrap();
    eventually("a registers b", || a.network.is_connected(peer_id(2))).await;
    // c's set-up completes, then a closes the connection: c hears LostPeer.
    let mut c_notes = c.network.peers_and_metadata().subscribe();
    c.dial(&a).await.unwrap();
    eventually("a refuses c", || {
        a.network.metrics().refused(RefusalReason::InboundLimit) == 1
    })
    .await;
    loop {
        if let ConnectionNotification::LostPeer(..) = next_notification(&mut c_notes).await {
            break;
        }
    }
    assert!(!a.network.is_connected(peer_id(3)));

    d.dial(&a).await.unwrap();
    eventually("a registers trusted d", || {
        a.network.is_connected(peer_id(4))
    })
    .await;
    assert_eq!(
        a.network.metrics().connections(ConnectionOrigin::Inbound),
        2
    );
    for network in [a.network, b.network, c.network, d.network] {
        network.shutdown().await;
    }
}

/// A dial to an address that asks for another handshake version fails before connecting; a
/// dial to a peer we are connected to is refused without dialing.
#[tokio::test(start_paused = true)]
async fn unusable_dials_fail_before_connecting() {
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let key = PublicKey::from(&test_support::key_from_seed(2));
    let v1 = b
        .network
        .listen_address()
        .clone()
        .with_noise_and_handshake(key, 1)
        .unwrap();
    let err = a.network.dial(b.network.peer_id(), v1).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedHandshakeVersion {
                version: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    let bare = b.network.listen_address().base();
    let err = a.network.dial(b.network.peer_id(), bare).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedHandshakeVersion { version: None, .. }
        ),
        "{err:?}"
    );
    // Nothing reached b.
    assert!(!b.metrics_text().contains(r#"side="responder""#));

    a.dial(&b).await.unwrap();
    let err = a.dial(&b).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyConnected { .. }), "{err:?}");
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// A dial must name a PeerId that may use the address's Noise key: a trusted peer's PeerId
/// with someone else's key, or an untrusted PeerId that is not the key's own, is refused before
/// connecting and counted, so that a node cannot register a stranger as a trusted validator.
/// The PeerId a key derives, and a trusted peer at one of its keys, are dialed as before.
#[tokio::test(start_paused = true)]
async fn dials_to_a_key_the_peer_id_may_not_use_are_refused() {
    let net = Net::Memory;
    let mut a_config = config(1, NetworkId::Public, net);
    for (seed, role) in [(5, PeerRole::Validator), (3, PeerRole::Upstream)] {
        let mut trusted = DiscoveredPeer::new(role, [], []);
        trusted
            .keys
            .insert(PublicKey::from(&test_support::key_from_seed(seed)));
        a_config.seeds.insert(peer_id(seed), trusted);
    }
    let a = node_with(a_config, net, &DIRECT, &RPC, QueueConfig::default());
    let (b, c) = (node(2, net), node(3, net));
    eventually("a trusts validator 5", || {
        a.network
            .trusted_peers()
            .snapshot()
            .contains_key(&peer_id(5))
    })
    .await;

    // Validator 5's PeerId at b's address (b's key): refused.
    let b_addr = b.network.listen_address().clone();
    let err = a
        .network
        .dial(peer_id(5), b_addr.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DialKeyMismatch { peer_id: refused, .. } if refused == peer_id(5)),
        "{err:?}"
    );
    // An untrusted PeerId that is not derived from b's key: refused.
    let err = a.network.dial(peer_id(4), b_addr).await.unwrap_err();
    assert!(matches!(err, Error::DialKeyMismatch { .. }), "{err:?}");
    assert!(!a.network.is_connected(peer_id(5)));
    assert!(!a.network.is_connected(peer_id(4)));
    // Nothing reached b.
    assert!(!b.metrics_text().contains(r#"side="responder""#));
    assert!(
        a.metrics_text().contains(
            r#"peerlane_connection_setup_failures_total{network="public",origin="outbound",reason="dial_key_mismatch"} 2"#
        ),
        "{}",
        a.metrics_text()
    );

    // b at its own key, and trusted c at its trusted key, are dialed.
    a.dial(&b).await.unwrap();
    a.dial(&c).await.unwrap();
    assert!(a.network.is_connected(b.network.peer_id()));
    assert!(a.network.is_connected(peer_id(3)));
    for network in [a.network, b.network, c.network] {
        network.shutdown().await;
    }
}

/// Sending to several peers goes on past a peer that cannot be sent to, and reports how many
/// failed with the first failure as the source.
#[tokio::test(start_paused = true)]
async fn send_to_peers_reports_partial_failure_and_still_sends_to_the_others() {
    let (a, mut b) = (node(1, Net::Memory), node(2, Net::Memory));
    a.dial(&b).await.unwrap();
    let absent = peerlane::PeerNetworkId::new(NetworkId::Public, peer_id(7));
    let err = a
        .client
        .send_to_peers([absent, b.as_peer()], &Msg::Text("some".into()))
        .unwrap_err();
    let Error::SendToPeers {
        failed,
        attempted,
        first,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*failed, *attempted), (1, 2));
    assert!(first.is_not_connected(), "{first:?}");
    assert_eq!(b.next_message().await.2, Msg::Text("some".into()));
    a.network.shutdown().await;
    b.network.shutdown().await;
}
