//! DirectSend throughput of two peers over loopback TCP + Noise, next to a raw baseline in the
//! same run: the same 128-byte DirectSend frames written straight into a
//! `wire::MultiplexMessageSink` over the same kind of Noise stream, without the peer actor.
//!
//! ```text
//! cargo run --release -p peer --example throughput [messages per round] [rounds]
//! ```
//!
//! Each round runs the raw baseline, then the peers, each on its own fresh connection, and
//! prints messages per second for both; the summary gives the median of the rounds and the
//! peer / raw ratio. The peer sender retries on `QueueFull` after yielding, so the figure is
//! what the writer sustains with a full queue.
//!
//! Last figures (2 shared AMD EPYC cores, other builds running, 9 rounds of 2,000,000):
//! raw 5.03 M msg/s (644 MB/s of payload), peer 3.66 M msg/s (468 MB/s), peer / raw 0.73
//! (rounds from 0.55 to 0.83; a second run gave 4.73 M, 3.61 M, 0.76). The peers run three
//! busy tasks (the sending application, A's writer, B's reader) on the two cores where the
//! baseline runs two, and the writer flushes about every 1,040 messages because it empties a
//! full lane faster than the application refills it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netcore::{ConnectionOrigin, PeerId, TcpTransport, Transport};
use noise::{HandshakeAuthMode, NoiseStream, NoiseUpgrader, PrivateKey, PublicKey, TrustedPeers};
use peer::{
    Config, Connection, ConnectionId, ConnectionMetadata, Error, InboundEvent, InboundRouter,
    Metrics, Peer, RouteError,
};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{
    DirectSendMsg, MessagingProtocolVersion, MultiplexMessage, MultiplexMessageSink,
    MultiplexMessageStream, NetworkMessage, ProtocolId, ProtocolIdSet,
};

/// Payload size the figures are for.
const PAYLOAD_BYTES: usize = 128;
/// Messages per round unless given on the command line.
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// Rounds unless given on the command line.
const DEFAULT_ROUNDS: usize = 5;
/// A low-lane direct-send protocol.
const PROTOCOL: ProtocolId = ProtocolId::MEMPOOL_DIRECT_SEND;

#[tokio::main(flavor = "multi_thread")]
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
    let mut raw_rates = Vec::new();
    let mut peer_rates = Vec::new();
    for round in 1..=rounds {
        let raw = rate(messages, raw_round(messages, payload.clone()).await);
        let (elapsed, flushes) = peer_round(messages, payload.clone()).await;
        let peer = rate(messages, elapsed);
        println!(
            "round {round}: raw {raw:>10.0} msg/s   peer {peer:>10.0} msg/s   ratio {:.2}   \
             peer writer: {:.0} messages per flush",
            peer / raw,
            messages as f64 / flushes.max(1) as f64,
        );
        raw_rates.push(raw);
        peer_rates.push(peer);
    }
    let (raw, peer) = (median(&mut raw_rates), median(&mut peer_rates));
    println!(
        "median: raw {raw:.0} msg/s ({:.1} MB/s of payload), peer {peer:.0} msg/s ({:.1} MB/s), \
         peer / raw = {:.2}",
        raw * PAYLOAD_BYTES as f64 / 1e6,
        peer * PAYLOAD_BYTES as f64 / 1e6,
        peer / raw
    );
}

/// The baseline: one task feeds frames into a sink over one Noise stream (flushing at the
/// end; the sink writes by itself every 64 KiB), another reads them from the other end.
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

    // Both ends run as runtime tasks, as the peers' tasks do.
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            sink.feed(&message).await.expect("raw feed");
        }
        sink.flush().await.expect("raw flush");
        sink
    });
    let receiver = tokio::spawn(async move {
        for _ in 0..messages {
            stream
                .next()
                .await
                .expect("raw stream ended early")
                .expect("raw frame");
        }
        start.elapsed()
    });
    let elapsed = receiver.await.expect("raw receiver");
    drop(sender.await.expect("raw sender"));
    elapsed
}

/// The peers: the application pushes onto A's queue (yielding when the lane is full), A's
/// writer sends, B's reader routes into a counter. Returns the time and A's writer flushes.
async fn peer_round(messages: u64, payload: Bytes) -> (Duration, u64) {
    let (dialer, listener) = tcp_noise_pair().await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let counter = Arc::new(CountingRouter {
        received: AtomicU64::new(0),
        target: messages,
        done: Notify::new(),
    });
    let metrics = Metrics::default();
    let a = Peer::spawn(
        Config::default(),
        connection(dialer, ConnectionOrigin::Outbound),
        Arc::new(CountingRouter {
            received: AtomicU64::new(0),
            target: u64::MAX,
            done: Notify::new(),
        }),
        metrics.clone(),
        &tracker,
        shutdown.clone(),
    );
    let b = Peer::spawn(
        Config::default(),
        connection(listener, ConnectionOrigin::Inbound),
        counter.clone(),
        Metrics::default(),
        &tracker,
        shutdown.clone(),
    );

    let start = Instant::now();
    let done = counter.done.notified();
    let sender = tokio::spawn(async move {
        for _ in 0..messages {
            loop {
                match a.send_direct(PROTOCOL, payload.clone()) {
                    Ok(()) => break,
                    Err(Error::QueueFull { .. }) => tokio::task::yield_now().await,
                    Err(err) => panic!("send failed: {err}"),
                }
            }
        }
        a
    });
    done.await;
    let elapsed = start.elapsed();
    let a = sender.await.expect("peer sender");
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    drop((a, b));
    (elapsed, metrics.writer_flushes())
}

/// Counts DirectSends and signals when `target` have arrived.
struct CountingRouter {
    received: AtomicU64,
    target: u64,
    done: Notify,
}

impl InboundRouter for CountingRouter {
    fn route(&self, _event: InboundEvent) -> Result<(), RouteError> {
        if self.received.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
        Ok(())
    }
}

/// Wraps a Noise stream as a peer connection.
fn connection(
    socket: NoiseStream<TcpStream>,
    origin: ConnectionOrigin,
) -> Connection<NoiseStream<TcpStream>> {
    Connection {
        metadata: ConnectionMetadata {
            remote_peer_id: socket.remote_peer_id(),
            connection_id: ConnectionId(0),
            remote_addr: "/ip4/127.0.0.1/tcp/1".parse().expect("address"),
            origin,
            messaging_protocol: MessagingProtocolVersion::V1,
            application_protocols: [PROTOCOL].into_iter().collect::<ProtocolIdSet>(),
            role: noise::PeerRole::Unknown,
        },
        socket,
    }
}

/// A loopback TCP connection upgraded with Noise IK; (dialer's stream, listener's stream).
async fn tcp_noise_pair() -> (NoiseStream<TcpStream>, NoiseStream<TcpStream>) {
    let transport = TcpTransport::default();
    let (mut listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let dial = transport.dial(PeerId::ZERO, bound).expect("dial");
    let accept = async {
        let (upgrade, _) = listener.next().await.expect("listener").expect("accept");
        upgrade.await.expect("accepted socket")
    };
    let (dialed, accepted) = tokio::join!(dial, accept);
    let dialed = dialed.expect("dialed socket");

    let (client, _, _) = upgrader(1);
    let (server, server_id, server_key) = upgrader(2);
    let (client_stream, server_side) = tokio::join!(
        client.upgrade_outbound(dialed, server_id, server_key, noise::now_millis()),
        server.upgrade_inbound(accepted),
    );
    let client_stream = client_stream.expect("noise dial");
    let (server_stream, _) = server_side.expect("noise accept");
    (client_stream, server_stream)
}

/// A Noise upgrader for a fixed key; (upgrader, its PeerId, its public key).
fn upgrader(seed: u8) -> (NoiseUpgrader, PeerId, PublicKey) {
    let private = PrivateKey::from([seed; 32]);
    let public = PublicKey::from(&private);
    let peer_id = noise::keys::peer_id_from_public_key(&public);
    let mode = HandshakeAuthMode::maybe_mutual(TrustedPeers::new());
    let upgrader = NoiseUpgrader::new(peer_id, private, mode, noise::Metrics::default());
    (upgrader, peer_id, public)
}

fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
