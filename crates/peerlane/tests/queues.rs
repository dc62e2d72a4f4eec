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
