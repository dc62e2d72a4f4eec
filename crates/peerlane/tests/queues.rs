//! The applications' inbound queues under load: a slow application loses what does not fit,
//! counted, while other peers' messages still get through.

use std::num::NonZeroUsize;

use peerlane::{QueueConfig, QueueEvent, QueueStyle};
use test_support::{DIRECT, Msg, Net, RPC, config, eventually, node, node_with};
use wire::NetworkId;

const CAPACITY: usize = 4;
const FLOOD: u32 = 20;

/// b's application reads nothing while a floods it; c sends one message. b's (a, protocol)
/// queue keeps `CAPACITY` messages and the rest are counted as dropped, and c's message is
/// among the first two b reads, because c's queue takes its turn. The style decides which of
/// a's messages survive: the first ones (FIFO, drop newest) or the last ones (LIFO, drop
/// oldest, newest first).
async fn slow_application_drops_are_counted_while_another_peer_flows(style: QueueStyle) {
    let net = Net::Memory;
    let queue = QueueConfig::new(style, NonZeroUsize::new(CAPACITY).unwrap());
    let mut b = node_with(config(2, NetworkId::Public, net), net, &DIRECT, &RPC, queue);
    let (a, c) = (node(1, net), node(3, net));
    a.dial(&b).await.unwrap();
    c.dial(&b).await.unwrap();

    for i in 0..FLOOD {
        a.client
            .send_to_peer(b.as_peer(), &Msg::Text(format!("a{i}")))
            .unwrap();
    }
    let metrics = b.network.metrics().clone();
    let arrived = |metrics: &peerlane::Metrics| {
        let dropped = match style {
            QueueStyle::Fifo => metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedNewest),
            QueueStyle::Lifo => 0,
        };
        metrics.inbound_queue(DIRECT[0], QueueEvent::Enqueued) + dropped
    };
    eventually("a's flood reaches b", || {
        arrived(&metrics) == u64::from(FLOOD)
    })
    .await;
    c.client
        .send_to_peer(b.as_peer(), &Msg::Text("c".into()))
        .unwrap();
    eventually("c's message reaches b", || {
        arrived(&metrics) == u64::from(FLOOD) + 1
    })
    .await;

    let dropped = u64::from(FLOOD) - CAPACITY as u64;
    let (newest, oldest) = match style {
        QueueStyle::Fifo => (dropped, 0),
        QueueStyle::Lifo => (0, dropped),
    };
    assert_eq!(
        metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedNewest),
        newest
    );
    assert_eq!(
        metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedOldest),
        oldest
    );

    let mut from_a = Vec::new();
    let mut c_position = None;
    for position in 0..=CAPACITY {
        let (from, _, Msg::Text(text)) = b.next_message().await else {
            panic!("expected text")
        };
        if from == c.as_peer() {
            c_position = Some(position);
        } else {
            from_a.push(text);
        }
    }
    assert!(
        c_position.is_some_and(|p| p <= 1),
        "c waited: {c_position:?}"
    );
    let expected: Vec<String> = match style {
        QueueStyle::Fifo => (0..CAPACITY as u32).map(|i| format!("a{i}")).collect(),
        QueueStyle::Lifo => (FLOOD - CAPACITY as u32..FLOOD)
            .rev()
            .map(|i| format!("a{i}"))
            .collect(),
    };
    assert_eq!(from_a, expected);
    assert_eq!(
        metrics.inbound_queue(DIRECT[0], QueueEvent::Dequeued),
        CAPACITY as u64 + 1
    );
    for network in [a.network, b.network, c.network] {
        network.shutdown().await;
    }
}

/// FIFO: the first `CAPACITY` messages survive, the rest are dropped as they arrive.
#[tokio::test(start_paused = true)]
async fn fifo_queue_of_a_slow_application_drops_newest_and_other_peers_flow() {
    slow_application_drops_are_counted_while_another_peer_flows(QueueStyle::Fifo).await;
}

/// LIFO: the last `CAPACITY` messages survive, read newest first.
#[tokio::test(start_paused = true)]
async fn lifo_queue_of_a_slow_application_drops_oldest_and_other_peers_flow() {
    slow_application_drops_are_counted_while_another_peer_flows(QueueStyle::Lifo).await;
}

/// A peer floods an application that reads nothing with messages of 1 MiB, `MESSAGES` of
/// them, well under the item count (1024, which alone would let its (peer, protocol) queue
/// hold 1 GiB of such messages, or stop every reader at the network's 256 MiB inbound
/// budget): the queue holds at most `max_bytes_per_key` (16 MiB) and drops the rest, counted
/// `over_budget`. When the peer disconnects, what it left queued is purged and counted, so a
/// peer that reconnects under a fresh PeerId leaves nothing behind. The rate limits are off,
/// so that every message reaches the queue.
#[tokio::test(start_paused = true)]
async fn a_flood_of_large_messages_holds_at_most_the_per_key_budget_and_is_purged() {
    // 64 MiB: four times the per-key budget, and cheap enough for a debug build (1024 such
    // messages take minutes there, and end the same way).
    const MESSAGES: u64 = 64;
    const SIZE: usize = 1024 * 1024;
    let net = Net::Memory;
    let mut b_config = config(2, NetworkId::Public, net);
    b_config.peer.rate_limit.enabled = false;
    let b = node_with(b_config, net, &DIRECT, &RPC, QueueConfig::default());
    let a = node(1, net);
    a.dial(&b).await.unwrap();
    let per_key = QueueConfig::default().max_bytes_per_key.get();
    assert_eq!(per_key, 16 * 1024 * 1024);

    let blob = Msg::Blob(vec![7; SIZE]);
    for _ in 0..MESSAGES {
        // a's outbound lane holds 32 MiB: wait for room rather than lose messages there.
        while a.client.send_to_peer(b.as_peer(), &blob).is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let metrics = b.network.metrics().clone();
    eventually("a's flood reaches b", || {
        metrics.inbound_queue(DIRECT[0], QueueEvent::Enqueued)
            + metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedNewest)
            == MESSAGES
    })
    .await;
    let held = b.events.queued_bytes();
    let enqueued = metrics.inbound_queue(DIRECT[0], QueueEvent::Enqueued);
    println!("queued bytes held by the flood: {held} in {enqueued} messages");
    assert!(held <= per_key, "{held} bytes queued");
    // The network's inbound budget, charged for every message queued, says the same.
    let charged = budget_bytes(&b.metrics_text());
    assert_eq!(charged, held, "network budget holds {charged} bytes");
    assert!(held > per_key - 2 * SIZE, "{held} bytes queued");
    let over = metrics.inbound_queue(DIRECT[0], QueueEvent::OverBudget);
    assert_eq!(over, MESSAGES - enqueued);
    assert_eq!(
        metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedNewest),
        over
    );

    a.network.disconnect(b.network.peer_id()).await.unwrap();
    eventually("a's messages are purged", || b.events.queued_bytes() == 0).await;
    eventually("the purge is counted", || {
        metrics.inbound_queue(DIRECT[0], QueueEvent::Purged) == enqueued
    })
    .await;
    assert!(
        b.metrics_text().contains(&format!(
            r#"peerlane_inbound_queue_messages_total{{network="public",protocol="{}",event="purged"}} {enqueued}"#,
            DIRECT[0]
        )),
        "{}",
        b.metrics_text()
    );
    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// `peerlane_peer_inbound_budget_bytes` of the public network in a metrics text.
fn budget_bytes(text: &str) -> usize {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(r#"peerlane_peer_inbound_budget_bytes{network="public"} "#)
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
