//! DirectSend throughput between two nodes over loopback TCP + Noise, through the public
//! facade (`NetworkClient` → `NetworkEvents`), next to a raw baseline measured in the same run:
//! the same 128-byte DirectSend frames fed straight into a `wire::MultiplexMessageSink` over a
//! Noise stream, with no peer actor, no queues and no application encoding.
//!
//! ```text
//! cargo run --release -p peerlane --example node_throughput [messages per round] [rounds]
//! ```
//!
//! Each round runs the baseline, then the two nodes, each on a fresh connection, and prints
//! messages per second; the summary gives the medians and the node / raw ratio. The sending
//! application retries on `QueueFull` after yielding, so the figure is what the stack sustains
//! with a full lane; the receiving application counts what it gets (a DirectSend that its full
//! inbound queue dropped is reported, not waited for).
//!
//! Last figures (2 shared cores, release, 3 rounds of 1,000,000): raw 4.56 M msg/s, nodes
//! 0.37 M msg/s delivered to the receiving application (0.08 of raw), about two thirds of the
//! messages dropped by its FIFO inbound queue. The peer actors alone move 3.66 M msg/s (0.73 of
//! raw, `-p peer --example throughput`): the gap is on the application side of the stack
//! (per-message keyed-queue lock and wake-up, per-message metric label lookups, BCS decode, the
//! per-send peer lookup in the client), which `docs/performance.md` tracks. The crate-level numbers for the peer actor alone come from
//! `cargo run --release -p peer --example throughput`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netcore::{PeerId, TcpTransport, Transport};
use noise::{HandshakeAuthMode, NoiseStream, NoiseUpgrader, PrivateKey, PublicKey, TrustedPeers};
use peerlane::{NetworkBuilder, NetworkConfig, PeerNetworkId, TransportKind};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use wire::{
    DirectSendMsg, MultiplexMessage, MultiplexMessageSink, MultiplexMessageStream, NetworkId,
    NetworkMessage, ProtocolId,
};

/// Payload bytes per message.
const PAYLOAD_BYTES: usize = 128;
/// Messages per round unless given on the command line.
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// Rounds unless given on the command line.
const DEFAULT_ROUNDS: usize = 5;
/// How often the watchdog checks that the receiving count still moves.
const QUIET: Duration = Duration::from_millis(300);
/// A low-priority, plain-BCS direct-send protocol.
const PROTOCOL: ProtocolId = ProtocolId::STATE_SYNC_DIRECT_SEND;

/// The application message: BCS writes `Bytes` as a length-prefixed byte string.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payload(Bytes);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(DEFAULT_MESSAGES, |arg| {
        arg.parse().expect("messages per round")
    });
    let rounds: usize = args
        .next()
        .map_or(DEFAULT_ROUNDS, |arg| arg.parse().expect("rounds"));
    let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
    println!(
        "{messages} DirectSend messages of {PAYLOAD_BYTES} bytes per round, loopback TCP + Noise"
    );

    let (mut raw_rates, mut node_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let raw = rate(messages, raw_round(messages, payload.clone()).await);
        let (elapsed, received) = node_round(messages, payload.clone()).await;
        let node = rate(received, elapsed);
        println!(
            "round {round}: raw {raw:>10.0} msg/s   nodes {node:>10.0} msg/s delivered   \
             ratio {:.2}   dropped by the receiving queue: {}",
            node / raw,
            messages - received
        );
        raw_rates.push(raw);
        node_rates.push(node);
    }
    let (raw, node) = (median(&mut raw_rates), median(&mut node_rates));
    println!(
        "median: raw {raw:.0} msg/s, nodes {node:.0} msg/s ({:.1} MB/s of payload), nodes / raw = {:.2}",
        node * PAYLOAD_BYTES as f64 / 1e6,
        node / raw
    );
}

/// Two nodes built from the public API; the sender's application pushes as fast as the lane
/// takes messages, the receiver's application reads decoded events.
///
/// DirectSend has no end-to-end backpressure (as in AptosNet): when the receiving application
/// falls behind, its inbound queue drops the newest messages and counts them. So the figure is
/// what the receiving application got per second, from the first send to the last message it
/// read, and the round also reports how many were dropped.
async fn node_round(messages: u64, payload: Bytes) -> (Duration, u64) {
    let start_node = || {
        let config = NetworkConfig::new(
            NetworkId::Public,
            "/ip4/127.0.0.1/tcp/0".parse().expect("address"),
        );
        let mut builder = NetworkBuilder::new(
            config,
            TransportKind::Tcp(Default::default()),
            &mut Registry::default(),
        )
        .expect("builder");
        let (client, events) = builder
            .add_application::<Payload>([PROTOCOL], [], Default::default())
            .expect("application");
        (builder.build().expect("network"), client, events)
    };
    let (sender, client, _sender_events) = start_node();
    let (receiver, _receiver_client, mut events) = start_node();
    sender
        .dial(receiver.peer_id(), receiver.listen_address().clone())
        .await
        .expect("dial");
    let to = PeerNetworkId::new(NetworkId::Public, receiver.peer_id());
    let message = Payload(payload);

    let start = Instant::now();
    let sending = tokio::spawn(async move {
        for _ in 0..messages {
            loop {
                match client.send_to_peer(to, &message) {
                    Ok(()) => break,
                    Err(err) if err.is_queue_full() => tokio::task::yield_now().await,
                    Err(err) => panic!("send failed: {err}"),
                }
            }
        }
    });
    // Messages the receiving queue dropped never arrive: a watchdog ends the round once the
    // sender is done and the count has stopped moving (no timer per message on the hot path).
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watchdog = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut last_seen = u64::MAX;
            loop {
                tokio::time::sleep(QUIET).await;
                let now_seen = received.load(Ordering::Relaxed);
                if now_seen == last_seen || now_seen == messages {
                    let _ = stop_tx.send(());
                    return;
                }
                last_seen = now_seen;
            }
        })
    };
    let mut last = start.elapsed();
    loop {
        tokio::select! {
            event = events.next() => {
                if event.is_none() {
                    break;
                }
                last = start.elapsed();
                if received.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                    break;
                }
            }
            _ = &mut stop_rx => break,
        }
    }
    watchdog.abort();
    let received = received.load(Ordering::Relaxed);
    sending.await.expect("sender");
    sender.shutdown().await;
    receiver.shutdown().await;
    (last, received)
}

/// The baseline: one task feeds frames into a sink over one Noise stream, another reads them.
async fn raw_round(messages: u64, payload: Bytes) -> Duration {
    let (dialer, listener) = tcp_noise_pair().await;
    let (_, write_half) = tokio::io::split(dialer);
    let (read_half, _) = tokio::io::split(listener);
    let mut sink = MultiplexMessageSink::new(write_half);
    let mut stream = MultiplexMessageStream::new(read_half);
    let message = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
        protocol_id: PROTOCOL,
        priority: 0,
        raw_msg: payload,
    }));
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            sink.feed(&message).await.expect("raw feed");
        }
        sink.flush().await.expect("raw flush");
        sink
    });
    for _ in 0..messages {
        stream
            .next()
            .await
            .expect("raw stream ended")
            .expect("raw frame");
    }
    let elapsed = start.elapsed();
    drop(sender.await.expect("raw sender"));
    elapsed
}

/// A loopback TCP connection upgraded with Noise IK; (dialer's stream, listener's stream).
async fn tcp_noise_pair() -> (NoiseStream<TcpStream>, NoiseStream<TcpStream>) {
    let transport = TcpTransport::default();
    let (mut listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let accept = async {
        let (upgrade, _) = listener.next().await.expect("listener").expect("accept");
        upgrade.await.expect("accepted socket")
    };
    let (dialed, accepted) =
        tokio::join!(transport.dial(PeerId::ZERO, bound).expect("dial"), accept);
    let upgrader = |seed: u8| {
        let private = PrivateKey::from([seed; 32]);
        let public = PublicKey::from(&private);
        let peer_id = noise::keys::peer_id_from_public_key(&public);
        let mode = HandshakeAuthMode::maybe_mutual(TrustedPeers::new());
        (
            NoiseUpgrader::new(peer_id, private, mode, noise::Metrics::default()),
            peer_id,
            public,
        )
    };
    let ((client, _, _), (server, server_id, server_key)) = (upgrader(1), upgrader(2));
    let (client_stream, server_side) = tokio::join!(
        client.upgrade_outbound(
            dialed.expect("dialed"),
            server_id,
            server_key,
            noise::now_millis()
        ),
        server.upgrade_inbound(accepted),
    );
    (
        client_stream.expect("noise dial"),
        server_side.expect("noise accept").0,
    )
}

fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
