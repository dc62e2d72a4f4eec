//! The health checker between real networks over the memory transport, on tokio's paused
//! clock: rounds every 10 s, a 20 s timeout and a disconnect at the 4th failure in a row cost
//! no real time, and every instant below is exact.
//!
//! A "scripted" peer runs with its own health checker disabled and serves `HealthCheckerRpc`
//! (5) from the test instead, so the test decides what each ping gets back.

mod common;

use std::time::Duration;

use common::{Net, Node, config, next_notification, node, node_with, within};
use futures::StreamExt;
use peer::DisconnectReason;
use peerlane::{
    ConnectionNotification, ConnectionNotifications, Error, Event, HealthCheckerMsg, Network,
    NetworkBuilder, NetworkEvents, PingResult, Pong, QueueConfig,
};
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use wire::{NetworkId, ProtocolId};

/// A node whose health checker is off and whose protocol 5 the test serves through `events`.
struct Scripted {
    network: Network,
    events: NetworkEvents<HealthCheckerMsg>,
}

/// The scripted peer of node `seed`.
fn scripted(seed: u64) -> Scripted {
    let mut config = config(seed, NetworkId::Public, Net::Memory);
    config.health_check.enabled = false;
    let mut builder = NetworkBuilder::new(
        config,
        common::transport(Net::Memory),
        &mut Registry::default(),
    )
    .unwrap();
    let (_client, events) = builder
        .add_application::<HealthCheckerMsg>(
            [],
            [ProtocolId::HEALTH_CHECKER_RPC],
            QueueConfig::default(),
        )
        .unwrap();
    Scripted {
        network: builder.build().unwrap(),
        events,
    }
}

impl Scripted {
    /// Answers the `n`th ping (from 0) with `Pong(answer(n, nonce))` in a task of its own,
    /// until the network shuts down.
    fn answer_with(self, mut answer: impl FnMut(usize, u32) -> u32 + Send + 'static) -> Network {
        let Self {
            network,
            mut events,
        } = self;
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(event) = events.next().await {
                if let Event::RpcRequest {
                    request: HealthCheckerMsg::Ping(ping),
                    responder,
                    ..
                } = event
                {
                    let _ = responder.reply(HealthCheckerMsg::Pong(Pong(answer(n, ping.0))));
                    n += 1;
                }
            }
        });
        network
    }
}

/// `node` dials `network` and waits until the connection is up.
async fn dial(node: &Node, network: &Network) {
    within(
        "dial",
        node.network
            .dial(network.peer_id(), network.listen_address().clone()),
    )
    .await
    .unwrap();
}

/// `node`'s count of health-check pings that ended with `result`.
fn pings(node: &Node, result: PingResult) -> u64 {
    node.network.metrics().health_pings(result)
}

/// Sleeps (on the paused clock) until `secs` seconds after `start`.
async fn at(start: Instant, secs: f64) {
    tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
}

/// Waits for the next `LostPeer` and returns it, skipping anything else.
async fn lost_peer(notes: &mut ConnectionNotifications) -> ConnectionNotification {
    loop {
        let note = next_notification(notes).await;
        if matches!(note, ConnectionNotification::LostPeer(..)) {
            return note;
        }
    }
}

/// Two healthy nodes ping each other every 10 s and answer each other's pings: after five
/// rounds each side has counted five `ok` pings and nothing else, and the connection never
/// dropped.
#[tokio::test(start_paused = true)]
async fn connected_nodes_ping_each_other_and_stay_connected() {
    let start = Instant::now();
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    a.dial(&b).await.unwrap();
    assert!(matches!(
        next_notification(&mut a_notes).await,
        ConnectionNotification::NewPeer(..)
    ));

    // Rounds at 10, 20, 30, 40 and 50 s.
    at(start, 55.0).await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        assert!(me.network.is_connected(other.network.peer_id()));
        assert_eq!(pings(me, PingResult::Ok), 5);
        for failure in [
            PingResult::Timeout,
            PingResult::WrongNonce,
            PingResult::Error,
        ] {
            assert_eq!(pings(me, failure), 0, "{failure:?}");
        }
        assert_eq!(me.network.metrics().health_disconnects(), 0);
        assert!(
            me.metrics_text()
                .contains(r#"peerlane_health_pings_total{network="public",result="ok"} 5"#),
            "{}",
            me.metrics_text()
        );
    }
    assert!(a_notes.try_recv().is_none(), "the connection changed");
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// A peer that takes pings and never answers is disconnected when its 4th ping in a row times
/// out, and not before. With one ping in flight per peer, the pings go out at 10, 30, 50 and
/// 70 s and time out 20 s later: still connected at 89.9 s with three timeouts, gone at 90 s
/// with four, by a requested disconnect that both sides see as `LostPeer`.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_disconnected_at_its_fourth_failed_ping_and_not_before() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    // Holds the pings without reading them, so nothing is ever answered.
    let Scripted {
        network: b,
        events: _held,
    } = scripted(2);
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    let mut b_notes = b.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 89.9).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(pings(&a, PingResult::Timeout), 3);
    assert_eq!(a.network.metrics().health_disconnects(), 0);

    let ConnectionNotification::LostPeer(metadata, _, reason) = lost_peer(&mut a_notes).await
    else {
        unreachable!()
    };
    assert_eq!(start.elapsed(), Duration::from_secs(90));
    assert_eq!(metadata.remote_peer_id, b.peer_id());
    assert_eq!(reason, DisconnectReason::Requested);
    assert_eq!(pings(&a, PingResult::Timeout), 4);
    assert_eq!(pings(&a, PingResult::Ok), 0);
    assert_eq!(a.network.metrics().health_disconnects(), 1);
    assert!(
        a.metrics_text()
            .contains(r#"peerlane_health_disconnects_total{network="public"} 1"#),
        "{}",
        a.metrics_text()
    );
    let ConnectionNotification::LostPeer(_, _, reason) = lost_peer(&mut b_notes).await else {
        unreachable!()
    };
    assert!(!reason.is_local(), "{reason:?}");
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A pong that does not carry the ping's nonce is a failure (`wrong_nonce`): a peer that always
/// answers with the wrong one is still connected after three rounds and disconnected at the
/// fourth, 40 s in.
#[tokio::test(start_paused = true)]
async fn a_pong_with_the_wrong_nonce_counts_as_a_failure() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let b = scripted(2).answer_with(|_, nonce| nonce.wrapping_add(1));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 35.0).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(pings(&a, PingResult::WrongNonce), 3);

    lost_peer(&mut a_notes).await;
    assert_eq!(start.elapsed(), Duration::from_secs(40));
    assert_eq!(pings(&a, PingResult::WrongNonce), 4);
    assert_eq!(pings(&a, PingResult::Ok), 0);
    assert_eq!(a.network.metrics().health_disconnects(), 1);
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A pong in time resets the count: three wrong answers, a right one and three wrong ones keep
/// the peer connected through seven rounds; the fourth wrong answer in a row, at 80 s,
/// disconnects it.
#[tokio::test(start_paused = true)]
async fn a_pong_in_time_resets_the_failure_count() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let b = scripted(2).answer_with(|n, nonce| if n == 3 { nonce } else { !nonce });
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 75.0).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(pings(&a, PingResult::WrongNonce), 6);
    assert_eq!(pings(&a, PingResult::Ok), 1);
    assert_eq!(a.network.metrics().health_disconnects(), 0);

    lost_peer(&mut a_notes).await;
    assert_eq!(start.elapsed(), Duration::from_secs(80));
    assert_eq!(pings(&a, PingResult::WrongNonce), 7);
    assert_eq!(a.network.metrics().health_disconnects(), 1);
    a.network.shutdown().await;
    b.shutdown().await;
}

/// With health checking enabled (the default), protocol 5 belongs to the health checker and
/// an application cannot register it; disabled, the node does not offer it, so a node with
/// health checking on does not ping it and keeps the connection.
#[tokio::test(start_paused = true)]
async fn a_node_with_health_checking_off_does_not_offer_it_and_is_not_pinged() {
    let mut builder = NetworkBuilder::new(
        config(1, NetworkId::Public, Net::Memory),
        common::transport(Net::Memory),
        &mut Registry::default(),
    )
    .unwrap();
    let err = builder
        .add_application::<HealthCheckerMsg>(
            [],
            [ProtocolId::HEALTH_CHECKER_RPC],
            QueueConfig::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProtocolAlreadyRegistered { protocol }
                if protocol == ProtocolId::HEALTH_CHECKER_RPC
        ),
        "{err:?}"
    );

    let start = Instant::now();
    let a = node(1, Net::Memory);
    let mut off = config(2, NetworkId::Public, Net::Memory);
    off.health_check.enabled = false;
    let b = node_with(
        off,
        Net::Memory,
        &common::DIRECT,
        &common::RPC,
        QueueConfig::default(),
    );
    a.dial(&b).await.unwrap();
    let offered = a
        .network
        .peers_and_metadata()
        .supported_protocols(b.as_peer())
        .unwrap();
    assert!(!offered.contains(ProtocolId::HEALTH_CHECKER_RPC));

    at(start, 120.0).await;
    assert!(a.network.is_connected(b.network.peer_id()));
    for result in [
        PingResult::Ok,
        PingResult::Timeout,
        PingResult::WrongNonce,
        PingResult::Error,
    ] {
        assert_eq!(pings(&a, result), 0, "{result:?}");
        assert_eq!(pings(&b, result), 0, "{result:?}");
    }
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// `shutdown` stops the health checker even with a ping in flight (sent at 10 s to a peer that
/// never answers): it returns at once, without waiting for the ping's timeout.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_health_checker_with_a_ping_in_flight() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let Scripted {
        network: b,
        events: _held,
    } = scripted(2);
    dial(&a, &b).await;
    at(start, 15.0).await;
    within("shutdown", a.network.shutdown()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    b.shutdown().await;
}
