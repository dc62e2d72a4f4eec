//! Inbound rate limits and the inbound byte budget through the facade: a peer flooding a
//! protocol is cut off with `RateLimited` and banned for a while (its reconnects refused until
//! the ban expires), over memsocket and over TCP + Noise; and a spent byte budget stops the
//! readers (the sender's lane fills) until the application reads.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peer::{DisconnectReason, LimitKind, ProtocolRate, RateLimitConfig};
use peerlane::{Error, NetworkConfig, QueueConfig, QueueEvent};
use test_support::{DIRECT, Msg, Net, Node, RPC, config, eventually, node, node_with, within};
use wire::NetworkId;

/// How long the flooded node bans the flooder.
const BAN: Duration = Duration::from_secs(60);

/// Node 2, whose consensus protocols take 10 messages a second from each peer, and which
/// closes a peer after 50 drops within 10 s.
fn strict(net: Net) -> NetworkConfig {
    let mut config = config(2, NetworkId::Public, net);
    config.peer.rate_limit = RateLimitConfig {
        burst: Duration::from_secs(1),
        consensus: ProtocolRate::new(10, 1024 * 1024),
        abuse_max_drops: 50,
        abuse_window: Duration::from_secs(10),
        ban_duration: BAN,
        ..RateLimitConfig::default()
    };
    config
}

/// `a` sends to `b` as fast as its lane takes messages until the connection is gone; returns
/// how many it sent.
async fn flood(a: &Node, b: &Node) -> u64 {
    let to_b = b.as_peer();
    let mut sent = 0;
    loop {
        match a.client.send_to_peer(to_b, &Msg::Text("spam".into())) {
            Ok(()) => sent += 1,
            Err(err) if err.is_queue_full() => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(_) => return sent,
        }
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// Floods b from a until b cuts a off, and checks the reason, the drops and the ban.
async fn flood_until_banned(a: &Node, b: &Node) {
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let sent = within("b cuts the flood off", flood(a, b)).await;
    assert!(sent > 60, "only {sent} sent");
    let peer_metrics = b.network.peer_metrics();
    eventually("b counts the disconnect", || {
        peer_metrics.disconnects(DisconnectReason::RateLimited) == 1
    })
    .await;
    assert!(peer_metrics.rate_limited(DIRECT[0], LimitKind::Messages) > 50);
    eventually("b bans a", || b.network.banned() == vec![a_id]).await;
    assert!(!b.network.is_connected(a_id));
    eventually("a sees b gone", || !a.network.is_connected(b_id)).await;
    assert!(
        b.metrics_text().contains(
            r#"peerlane_peer_disconnects_total{network="public",reason="rate_limited"} 1"#
        ),
        "{}",
        b.metrics_text()
    );

    // a reconnects: Noise refuses it at b; b's own dial fails at once.
    let _ = a.dial(b).await;
    eventually("the reconnect is refused", || {
        b.metrics_text().contains(
            r#"peerlane_noise_handshakes_total{network="public",side="responder",result="banned"} 1"#,
        )
    })
    .await;
    assert!(!b.network.is_connected(a_id));
    let err = b.dial(a).await.unwrap_err();
    assert!(matches!(err, Error::Banned { .. }), "{err:?}");
}

/// Over memsocket on a paused clock: a sustained flood gets a banned for `BAN`; once it has
/// expired, a connects again.
#[tokio::test(start_paused = true)]
async fn sustained_flood_is_cut_off_and_banned_until_the_ban_expires() {
    let net = Net::Memory;
    let a = node(1, net);
    let b = node_with(strict(net), net, &DIRECT, &RPC, QueueConfig::default());
    a.dial(&b).await.unwrap();
    flood_until_banned(&a, &b).await;

    tokio::time::sleep(BAN).await;
    assert!(b.network.banned().is_empty(), "the ban expired");
    a.dial(&b).await.unwrap();
    eventually("a is back", || b.network.is_connected(a.peer_id())).await;
    // Well-behaved traffic passes.
    a.client
        .send_to_peer(b.as_peer(), &Msg::Text("hello".into()))
        .unwrap();
    // The burst of spam b took before the flood was cut off was purged with the connection.
    assert_eq!(
        b.network
            .metrics()
            .inbound_queue(DIRECT[0], QueueEvent::Purged),
        10,
        "the first connection's burst"
    );
    let mut b = b;
    assert_eq!(b.next_message().await.2, Msg::Text("hello".into()));

    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// The same attack over TCP + Noise (real clock): cut off with `RateLimited`, banned,
/// reconnect refused.
#[tokio::test]
async fn sustained_flood_over_tcp_is_cut_off_and_banned() {
    let net = Net::Tcp;
    let a = node(1, net);
    let b = node_with(strict(net), net, &DIRECT, &RPC, QueueConfig::default());
    a.dial(&b).await.unwrap();
    flood_until_banned(&a, &b).await;
    assert!(b.network.unban(a.peer_id()));
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// Messages a sends b in the budget test, and their padding: 300 × 4 KiB, against a budget
/// of 64 KiB.
const FLOOD: usize = 300;
const PADDING: usize = 4096;
const BUDGET: usize = 64 * 1024;

fn numbered(i: usize) -> Msg {
    Msg::Text(format!("{i:06}{}", "x".repeat(PADDING)))
}

/// b's application reads nothing: once b holds its byte budget of undelivered messages its
/// reader stops reading, a's lane fills and a's sends are refused, while b's queue (which
/// has room for all of them) holds no more than the budget; when b's application reads,
/// everything arrives in order and nothing was dropped.
#[tokio::test(start_paused = true)]
async fn spent_byte_budget_pauses_the_reader_until_the_application_reads() {
    let net = Net::Memory;
    let mut b_config = config(2, NetworkId::Public, net);
    b_config.peer.inbound_byte_budget = BUDGET;
    b_config.peer.rate_limit.enabled = false;
    let queue = QueueConfig {
        capacity_per_key: NonZeroUsize::new(1024).unwrap(),
        ..QueueConfig::default()
    };
    let mut b = node_with(b_config, net, &DIRECT, &RPC, queue);
    let mut a_config = config(1, NetworkId::Public, net);
    a_config.peer.outbound_lane_capacity = 8;
    let a = node_with(a_config, net, &DIRECT, &RPC, QueueConfig::default());
    a.dial(&b).await.unwrap();

    let refused = Arc::new(AtomicU64::new(0));
    let (client, to_b, refusals) = (a.client.clone(), b.as_peer(), refused.clone());
    let sender = tokio::spawn(async move {
        let mut next = 0;
        while next < FLOOD {
            match client.send_to_peer(to_b, &numbered(next)) {
                Ok(()) => next += 1,
                Err(err) if err.is_queue_full() => {
                    refusals.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(err) => panic!("send failed: {err}"),
            }
        }
    });
    // A second of refusals: a is held up, not just briefly ahead of the pipe.
    eventually("a's lane stays full", || {
        refused.load(Ordering::Relaxed) > 1_000
    })
    .await;
    let peer_metrics = b.network.peer_metrics().clone();
    assert!(
        peer_metrics.inbound_budget_waits() > 0,
        "b's reader never waited"
    );
    let held = usize::try_from(peer_metrics.inbound_budget_bytes()).unwrap();
    assert!(held >= BUDGET, "held {held}");
    let queued = b
        .network
        .metrics()
        .inbound_queue(DIRECT[0], QueueEvent::Enqueued);
    let per_message = PADDING + 16;
    assert!(
        (queued as usize) <= BUDGET / per_message + 2,
        "b queued {queued} messages: more than its budget"
    );

    for expected in 0..FLOOD {
        let (_, _, msg) = b.next_message().await;
        let Msg::Text(text) = msg else {
            panic!("expected text")
        };
        assert_eq!(text[..6].parse::<usize>().unwrap(), expected);
    }
    within("a's sender finishes", sender).await.unwrap();
    assert_eq!(
        b.network
            .metrics()
            .inbound_queue(DIRECT[0], QueueEvent::DroppedNewest),
        0
    );
    eventually("b gives the budget back", || {
        peer_metrics.inbound_budget_bytes() == 0
    })
    .await;

    a.network.shutdown().await;
    b.network.shutdown().await;
}
