//! Back-pressure queues (`Overflow::Wait`): a full queue makes the peer's reader wait instead of
//! dropping, TCP-style flow control (here the memory pipe) pushes back to the sender, whose
//! lane fills and refuses with `QueueFull`; nothing is lost and order is kept. A consumer that
//! stops reading holds its peer up for at most `max_wait_ms` per message.

use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use peerlane::{Event, NetworkBuilder, Overflow, QueueConfig, QueueEvent, QueueStyle};
use prometheus_client::registry::Registry;
use test_support::{DIRECT, Msg, Net, Node, RPC, config, node_with, within};
use wire::{NetworkId, ProtocolId};

/// Messages a floods b with: about 1.2 MiB, far more than the memory pipe (64 KiB), the Noise
/// buffers and a's lane hold together.
const FLOOD: usize = 300;
/// Payload padding per message.
const PADDING: usize = 4096;

fn numbered(i: usize) -> Msg {
    Msg::Text(format!("{i:06}{}", "x".repeat(PADDING)))
}

fn number(msg: &Msg) -> usize {
    let Msg::Text(text) = msg else {
        panic!("expected text, got {msg:?}")
    };
    text[..6].parse().unwrap()
}

/// b's application reads nothing until a's lane is full: a sees `QueueFull` (the pressure
/// reached it), then b reads every message, in order, and none was dropped.
#[tokio::test(start_paused = true)]
async fn full_queue_pushes_back_to_the_sender_and_loses_nothing() {
    let net = Net::Memory;
    let queue = QueueConfig::backpressure(NonZeroUsize::new(4).unwrap())
        .with_max_wait(Duration::from_secs(600));
    let mut b = node_with(config(2, NetworkId::Public, net), net, &DIRECT, &RPC, queue);
    let mut a_config = config(1, NetworkId::Public, net);
    a_config.peer.outbound_lane_capacity = 8;
    let a = node_with(a_config, net, &DIRECT, &RPC, QueueConfig::default());
    a.dial(&b).await.unwrap();

    let (client, to_b) = (a.client.clone(), b.as_peer());
    let (full_tx, full_rx) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move {
        let mut full_tx = Some(full_tx);
        let mut refused = 0u64;
        let mut next = 0;
        while next < FLOOD {
            match client.send_to_peer(to_b, &numbered(next)) {
                Ok(()) => next += 1,
                Err(err) if err.is_queue_full() => {
                    refused += 1;
                    if let Some(tx) = full_tx.take() {
                        let _ = tx.send(next);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(err) => panic!("send failed: {err}"),
            }
        }
        refused
    });
    let sent_before_full = within("a's lane fills", full_rx).await.unwrap();
    assert!(sent_before_full < FLOOD, "the flood never filled a's lane");

    let metrics = b.network.metrics().clone();
    let protocol = DIRECT[0];
    // The lane may fill before b's reader gets to the full queue; it gets there.
    test_support::eventually("b's reader waits for room", || {
        metrics.inbound_queue(protocol, QueueEvent::Waited) > 0
    })
    .await;
    assert_eq!(metrics.inbound_queue(protocol, QueueEvent::Enqueued), 4);

    for expected in 0..FLOOD {
        let (_, _, msg) = b.next_message().await;
        assert_eq!(number(&msg), expected);
    }
    let refused = within("a's sender finishes", sender).await.unwrap();
    assert!(refused > 0);
    assert_eq!(
        metrics.inbound_queue(protocol, QueueEvent::DroppedNewest),
        0
    );
    assert_eq!(
        metrics.inbound_queue(protocol, QueueEvent::Dequeued),
        FLOOD as u64
    );
    for network in [a.network, b.network] {
        network.shutdown().await;
    }
}

/// b has two applications; the back-pressure one never reads. Each of its messages beyond the
/// queue's capacity holds a's connection up for `max_wait_ms` and is then dropped (counted),
/// so the other application's message, sent behind them, still arrives.
#[tokio::test(start_paused = true)]
async fn stalled_consumer_delays_its_peer_by_at_most_max_wait_per_message() {
    const MAX_WAIT_MS: u64 = 100;
    let net = Net::Memory;
    let other = ProtocolId::MEMPOOL_DIRECT_SEND;
    let mut registry = Registry::default();
    let mut builder = NetworkBuilder::new(
        config(2, NetworkId::Public, net),
        test_support::transport(net),
        &mut registry,
    )
    .unwrap();
    let stalled = QueueConfig::new(QueueStyle::Fifo, NonZeroUsize::new(1).unwrap())
        .with_overflow(Overflow::Wait)
        .with_max_wait(Duration::from_millis(MAX_WAIT_MS));
    let (_stalled_client, _stalled_events) =
        builder.add_application::<Msg>(DIRECT, [], stalled).unwrap();
    let (_client, mut events) = builder
        .add_application::<Msg>([other], [], QueueConfig::default())
        .unwrap();
    let b_network = builder.build().unwrap();

    let mut a_config = config(1, NetworkId::Public, net);
    a_config.peer.outbound_lane_capacity = 64;
    let mut registry_a = Registry::default();
    let mut builder =
        NetworkBuilder::new(a_config, test_support::transport(net), &mut registry_a).unwrap();
    let (a_stalled, _) = builder
        .add_application::<Msg>(DIRECT, [], QueueConfig::default())
        .unwrap();
    let (a_other, _) = builder
        .add_application::<Msg>([other], [], QueueConfig::default())
        .unwrap();
    let a = Node {
        network: builder.build().unwrap(),
        client: a_stalled,
        events: events_placeholder(),
        registry: registry_a,
    };
    a.network
        .dial(b_network.peer_id(), b_network.listen_address().clone())
        .await
        .unwrap();
    let to_b = peerlane::PeerNetworkId::new(NetworkId::Public, b_network.peer_id());

    let start = tokio::time::Instant::now();
    for i in 0..4 {
        a.client.send_to_peer(to_b, &Msg::Ping(i)).unwrap();
    }
    a_other
        .send_to_peer(to_b, &Msg::Text("behind".into()))
        .unwrap();
    let event = within("the other application's message", events.next())
        .await
        .unwrap();
    let Event::Message { message, .. } = event else {
        panic!("expected a message")
    };
    assert_eq!(message, Msg::Text("behind".into()));
    let waited = start.elapsed();
    // One message fits; the other three each waited `MAX_WAIT_MS`, then were dropped.
    assert!(
        waited >= Duration::from_millis(3 * MAX_WAIT_MS),
        "{waited:?}"
    );
    assert!(
        waited < Duration::from_millis(4 * MAX_WAIT_MS),
        "{waited:?}"
    );
    let metrics = b_network.metrics();
    assert_eq!(metrics.inbound_queue(DIRECT[0], QueueEvent::Enqueued), 1);
    assert_eq!(metrics.inbound_queue(DIRECT[0], QueueEvent::Waited), 3);
    assert_eq!(
        metrics.inbound_queue(DIRECT[0], QueueEvent::DroppedNewest),
        3
    );
    a.network.shutdown().await;
    b_network.shutdown().await;
}

/// An event stream that yields nothing, for a node whose events the test does not read.
fn events_placeholder() -> peerlane::NetworkEvents<Msg> {
    peerlane::NetworkEvents::combine([])
}
