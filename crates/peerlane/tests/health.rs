//! The health checker between real networks over the memory transport, on tokio's paused
//! clock: rounds every 10 s, a 20 s timeout and a disconnect at the 4th failure in a row
//! (AptosNet's values, set by [`node`] here) cost no real time, and every instant below is
//! exact. The last tests run with peerlane's defaults (5 s, 5 s, 3).
//!
//! Every round pings every connected peer, even one whose earlier pings are still in flight,
//! as AptosNet does: a peer that never answers is pinged at 10, 20, 30, 40 (and 50) s, those
//! pings time out at 30, 40, 50 and 60 s, and it is disconnected at 60 s.
//!
//! A "scripted" peer runs with its own health checker disabled and serves `HealthCheckerRpc`
//! (5) from the test instead, so the test decides what each ping gets back, and when.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use peer::DisconnectReason;
use peerlane::{
    ConnectionNotification, ConnectionNotifications, Error, Event, HealthCheckerMsg, Network,
    NetworkBuilder, NetworkClient, NetworkEvents, PeerNetworkId, Ping, PingResult, Pong,
    QueueConfig,
};
use prometheus_client::registry::Registry;
use test_support::{Net, Node, config, next_notification, node_with, within};
use tokio::time::Instant;
use wire::{NetworkId, ProtocolId};

/// Node `seed` of test-support's kind, with AptosNet's health-check timing: pings every 10 s,
/// a 20 s timeout, a disconnect at the 4th failure in a row.
fn node(seed: u64, net: Net) -> Node {
    let mut config = config(seed, NetworkId::Public, net);
    config.health_check.interval = Duration::from_secs(10);
    config.health_check.timeout = Duration::from_secs(20);
    config.health_check.failures_before_disconnect = 4;
    node_with(
        config,
        net,
        &test_support::DIRECT,
        &test_support::RPC,
        QueueConfig::default(),
    )
}

/// A node whose health checker is off and whose protocol 5 the test serves through `events`.
struct Scripted {
    network: Network,
    /// Sends the scripted peer's own pings, when a test wants it to.
    client: NetworkClient<HealthCheckerMsg>,
    events: NetworkEvents<HealthCheckerMsg>,
}

/// The scripted peer of node `seed`. It may answer a ping up to 30 s after it came, past the
/// ping's timeout (the default limit is 10 s).
fn scripted(seed: u64) -> Scripted {
    let mut config = config(seed, NetworkId::Public, Net::Memory);
    config.health_check.enabled = false;
    config.peer.inbound_rpc_timeout = Duration::from_secs(30);
    let mut builder = NetworkBuilder::new(
        config,
        test_support::transport(Net::Memory),
        &mut Registry::default(),
    )
    .unwrap();
    let (client, events) = builder
        .add_application::<HealthCheckerMsg>(
            [],
            [ProtocolId::HEALTH_CHECKER_RPC],
            QueueConfig::default(),
        )
        .unwrap();
    Scripted {
        network: builder.build().unwrap(),
        client,
        events,
    }
}

/// What a scripted peer does with a ping.
enum Reply {
    /// Answers at once with a pong of this nonce.
    Now(u32),
    /// Answers with a pong of this nonce this long after the ping came.
    After(Duration, u32),
    /// Never answers.
    Never,
}

impl Scripted {
    /// Serves the pings in a task of its own until the network shuts down, the `n`th (from 0)
    /// as `reply(n, nonce)` says. Returns the network and the number of pings received so far.
    fn serve(
        self,
        mut reply: impl FnMut(usize, u32) -> Reply + Send + 'static,
    ) -> (Network, Arc<AtomicUsize>) {
        let Self {
            network,
            mut events,
            ..
        } = self;
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Event::RpcRequest {
                    request: HealthCheckerMsg::Ping(ping),
                    responder,
                    ..
                } = event
                else {
                    continue;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                match reply(n, ping.0) {
                    Reply::Now(nonce) => {
                        let _ = responder.reply(HealthCheckerMsg::Pong(Pong(nonce)));
                    }
                    Reply::After(delay, nonce) => {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = responder.reply(HealthCheckerMsg::Pong(Pong(nonce)));
                        });
                    }
                    // Dropped unanswered: nothing goes back, and the ping times out.
                    Reply::Never => drop(responder),
                }
            }
        });
        (network, received)
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

/// Pings a scripted peer received so far.
fn received(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
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

/// Two healthy nodes ping each other every 10 s and answer each other's pings at once: 5 s
/// after each of the rounds at 10 to 50 s, each side has counted one more `ok` ping and
/// nothing else, and the connection never dropped.
#[tokio::test(start_paused = true)]
async fn connected_nodes_ping_each_other_every_interval_and_stay_connected() {
    let start = Instant::now();
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    a.dial(&b).await.unwrap();
    assert!(matches!(
        next_notification(&mut a_notes).await,
        ConnectionNotification::NewPeer(..)
    ));

    for rounds in 1..=5_u32 {
        at(start, f64::from(rounds * 10) + 5.0).await;
        for (me, other) in [(&a, &b), (&b, &a)] {
            assert!(me.network.is_connected(other.network.peer_id()));
            assert_eq!(pings(me, PingResult::Ok), u64::from(rounds));
            for failure in [
                PingResult::Timeout,
                PingResult::WrongNonce,
                PingResult::Error,
            ] {
                assert_eq!(pings(me, failure), 0, "{failure:?}");
            }
            assert_eq!(me.network.metrics().health_disconnects(), 0);
        }
    }
    for me in [&a, &b] {
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

/// A peer that answers every ping right but 15 s late, past the next round, is pinged every
/// round anyway, with two pings in flight, each answered with its own nonce: every ping
/// counts as `ok` and the peer stays connected.
#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_after_the_next_round_is_pinged_every_round_and_stays_healthy() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, received_by_b) =
        scripted(2).serve(|_, nonce| Reply::After(Duration::from_secs(15), nonce));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;
    assert!(matches!(
        next_notification(&mut a_notes).await,
        ConnectionNotification::NewPeer(..)
    ));

    // Pings at 10 to 60 s; those of 10 to 40 s answered at 25 to 55 s, two still out.
    at(start, 62.0).await;
    assert_eq!(received(&received_by_b), 6);
    assert_eq!(pings(&a, PingResult::Ok), 4);

    // Pings at 10 to 110 s; those of 10 to 100 s answered by 115 s.
    at(start, 118.0).await;
    assert_eq!(received(&received_by_b), 11);
    assert_eq!(pings(&a, PingResult::Ok), 10);
    for failure in [
        PingResult::Timeout,
        PingResult::WrongNonce,
        PingResult::Error,
    ] {
        assert_eq!(pings(&a, failure), 0, "{failure:?}");
    }
    assert!(a.network.is_connected(b.peer_id()));
    assert!(a_notes.try_recv().is_none(), "the connection changed");
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A peer that takes pings and never answers is disconnected when its 4th ping in a row times
/// out, and not before. Pinged every round, at 10, 20, 30, 40 and 50 s, its pings time out at
/// 30, 40, 50 and 60 s: still connected at 59.9 s with three timeouts, gone at exactly 60 s
/// with four, by a requested disconnect that both sides see as `LostPeer`.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_disconnected_at_its_fourth_failed_ping_and_not_before() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, received_by_b) = scripted(2).serve(|_, _| Reply::Never);
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    let mut b_notes = b.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    // Two pings in flight from the second round on.
    at(start, 25.0).await;
    assert_eq!(received(&received_by_b), 2);
    assert_eq!(pings(&a, PingResult::Timeout), 0);

    at(start, 59.9).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(received(&received_by_b), 5);
    assert_eq!(pings(&a, PingResult::Timeout), 3);
    assert_eq!(a.network.metrics().health_disconnects(), 0);

    let ConnectionNotification::LostPeer(metadata, _, reason) = lost_peer(&mut a_notes).await
    else {
        unreachable!()
    };
    assert_eq!(start.elapsed(), Duration::from_secs(60));
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
    // A queued a `Timeout` notice (protocol 64) for B before the close, and its writer took
    // it. (Over this in-memory transport B's reader ends with an I/O error before it reads
    // the last frame, so B's side is not checked here; the notices of `tests/chain.rs` are
    // read over TCP.)
    assert_eq!(
        a.network
            .metrics()
            .extensions()
            .disconnect_notices(true, "timeout"),
        1
    );
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A pong that does not carry the ping's nonce is a failure (`wrong_nonce`): a peer that always
/// answers at once with the wrong one is pinged at 10, 20, 30 and 40 s, is still connected
/// after three wrong answers and is disconnected at the fourth, at exactly 40 s.
#[tokio::test(start_paused = true)]
async fn a_pong_with_the_wrong_nonce_counts_as_a_failure() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, received_by_b) = scripted(2).serve(|_, nonce| Reply::Now(nonce.wrapping_add(1)));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 39.9).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(received(&received_by_b), 3);
    assert_eq!(pings(&a, PingResult::WrongNonce), 3);
    assert_eq!(a.network.metrics().health_disconnects(), 0);

    lost_peer(&mut a_notes).await;
    assert_eq!(start.elapsed(), Duration::from_secs(40));
    assert_eq!(pings(&a, PingResult::WrongNonce), 4);
    assert_eq!(pings(&a, PingResult::Ok), 0);
    assert_eq!(a.network.metrics().health_disconnects(), 1);
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A pong in time resets the count: three wrong answers (10 to 30 s), a right one (40 s) and
/// three wrong ones (50 to 70 s) keep the peer connected through seven rounds; the fourth
/// wrong answer in a row, at exactly 80 s, disconnects it.
#[tokio::test(start_paused = true)]
async fn a_pong_in_time_resets_the_failure_count() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, received_by_b) =
        scripted(2).serve(|n, nonce| Reply::Now(if n == 3 { nonce } else { !nonce }));
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 79.9).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(received(&received_by_b), 7);
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
/// an application cannot register it; disabled, the node sends no pings but still offers
/// protocol 5 and answers the pings of a node with health checking on (as an AptosNet peer
/// expects), which keeps the connection.
#[tokio::test(start_paused = true)]
async fn a_node_with_health_checking_off_answers_pings_but_sends_none() {
    let mut builder = NetworkBuilder::new(
        config(1, NetworkId::Public, Net::Memory),
        test_support::transport(Net::Memory),
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
        &test_support::DIRECT,
        &test_support::RPC,
        QueueConfig::default(),
    );
    a.dial(&b).await.unwrap();
    let offered = a
        .network
        .peers_and_metadata()
        .supported_protocols(b.as_peer())
        .unwrap();
    assert!(offered.contains(ProtocolId::HEALTH_CHECKER_RPC));

    // 12 rounds of A's pings: every one answered, none sent by B.
    at(start, 125.0).await;
    assert!(a.network.is_connected(b.network.peer_id()));
    assert_eq!(pings(&a, PingResult::Ok), 12);
    for result in [
        PingResult::Ok,
        PingResult::Timeout,
        PingResult::WrongNonce,
        PingResult::Error,
    ] {
        if result != PingResult::Ok {
            assert_eq!(pings(&a, result), 0, "{result:?}");
        }
        assert_eq!(pings(&b, result), 0, "{result:?}");
    }
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// `shutdown` stops the health checker even with pings in flight (sent at 10 and 20 s to a
/// peer that never answers): it returns at once, without waiting for their timeouts.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_health_checker_with_pings_in_flight() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, received_by_b) = scripted(2).serve(|_, _| Reply::Never);
    dial(&a, &b).await;
    at(start, 25.0).await;
    assert_eq!(received(&received_by_b), 2);
    assert_eq!(pings(&a, PingResult::Timeout), 0);
    within("shutdown", a.network.shutdown()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    b.shutdown().await;
}

/// Each successful ping records its round-trip time in the peer's `PeerStats::last_rtt`: none
/// before the first round, 250 ms after a pong that came 250 ms late, then 100 ms after the
/// next; a ping that times out leaves the last value. The peer's own figures of us have no
/// round-trip time, as its health checker is off. After a disconnect the last value is
/// still known (`last_known_rtt`), for choosing whom to dial.
#[tokio::test(start_paused = true)]
async fn successful_pings_record_their_round_trip_time() {
    let start = Instant::now();
    let a = node(1, Net::Memory);
    let (b, _received) = scripted(2).serve(|n, nonce| match n {
        0 => Reply::After(Duration::from_millis(250), nonce),
        1 => Reply::After(Duration::from_millis(100), nonce),
        _ => Reply::Never,
    });
    dial(&a, &b).await;
    let peers = a.network.peers_and_metadata();
    let b_peer = PeerNetworkId::new(NetworkId::Public, b.peer_id());
    let rtt = || peers.peer_stats(b_peer).expect("b is connected").last_rtt;
    assert_eq!(rtt(), None);

    at(start, 11.0).await;
    assert_eq!(pings(&a, PingResult::Ok), 1);
    assert_eq!(rtt(), Some(Duration::from_millis(250)));
    at(start, 21.0).await;
    assert_eq!(pings(&a, PingResult::Ok), 2);
    assert_eq!(rtt(), Some(Duration::from_millis(100)));
    // The third ping (30 s) times out at 50 s.
    at(start, 51.0).await;
    assert_eq!(pings(&a, PingResult::Timeout), 1);
    assert_eq!(rtt(), Some(Duration::from_millis(100)));

    let a_peer = PeerNetworkId::new(NetworkId::Public, a.network.peer_id());
    let at_b = b.peers_and_metadata().peer_stats(a_peer).unwrap();
    assert_eq!(at_b.last_rtt, None);

    // Once b is gone its last round-trip time is remembered, for the next dial choice.
    assert_eq!(
        peers.last_known_rtt(b_peer),
        Some(Duration::from_millis(100))
    );
    a.network.disconnect(b.peer_id()).await.unwrap();
    assert_eq!(peers.rtt(b_peer), None);
    assert_eq!(
        peers.last_known_rtt(b_peer),
        Some(Duration::from_millis(100))
    );
    assert_eq!(peers.last_known_rtt(a_peer), None);
    a.network.shutdown().await;
    b.shutdown().await;
}

/// With peerlane's defaults (pings every 5 s, a 5 s timeout, 3 failures) a peer that goes
/// silent, without FIN or RST, is disconnected 20 s after it connected: pinged at 5, 10 and
/// 15 s, its pings time out at 10, 15 and 20 s. AptosNet's values take 60 s (above).
#[tokio::test(start_paused = true)]
async fn with_the_defaults_a_silent_peer_is_disconnected_within_20_s() {
    let start = Instant::now();
    let a = test_support::node(1, Net::Memory);
    let (b, received_by_b) = scripted(2).serve(|_, _| Reply::Never);
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;

    at(start, 19.9).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert_eq!(pings(&a, PingResult::Timeout), 2);
    lost_peer(&mut a_notes).await;
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert_eq!(received(&received_by_b), 3);
    assert_eq!(pings(&a, PingResult::Timeout), 3);
    assert_eq!(a.network.metrics().health_disconnects(), 1);
    a.network.shutdown().await;
    b.shutdown().await;
}

/// A peer that never answers our pings in time but keeps sending other bytes (here its own
/// pings, one a second, as a peer behind a saturated link would send its data) is alive: its
/// pings end as `timeout_busy`, which do not count, and it stays connected for a minute.
/// When it then goes quiet too, it is disconnected three pings later.
#[tokio::test(start_paused = true)]
async fn a_peer_that_sends_other_bytes_is_not_disconnected_for_late_pongs() {
    let start = Instant::now();
    let a = test_support::node(1, Net::Memory);
    let scripted = scripted(2);
    let client = scripted.client.clone();
    let (b, _received) = scripted.serve(|_, _| Reply::Never);
    let mut a_notes = a.network.peers_and_metadata().subscribe();
    dial(&a, &b).await;
    let a_peer = PeerNetworkId::new(NetworkId::Public, a.network.peer_id());
    let chatter = tokio::spawn(async move {
        for n in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ping = HealthCheckerMsg::Ping(Ping(n));
            let _ = client.send_rpc(a_peer, ping, Duration::from_secs(1)).await;
        }
    });

    at(start, 60.5).await;
    assert!(a.network.is_connected(b.peer_id()));
    assert!(pings(&a, PingResult::TimeoutBusy) >= 10);
    assert_eq!(pings(&a, PingResult::Timeout), 0);
    assert_eq!(a.network.metrics().health_disconnects(), 0);
    chatter.await.unwrap();

    // The last bytes came at about 60 s; three pings after that, the last one sent by 75 s.
    test_support::within_for("LostPeer", Duration::from_secs(30), async {
        loop {
            if let Some(ConnectionNotification::LostPeer(..)) = a_notes.recv().await {
                break;
            }
        }
    })
    .await;
    assert!(start.elapsed() <= Duration::from_secs(60 + 20));
    assert_eq!(pings(&a, PingResult::Timeout), 3);
    a.network.shutdown().await;
    b.shutdown().await;
}
