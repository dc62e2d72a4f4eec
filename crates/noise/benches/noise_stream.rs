//! Throughput of the encrypted stream against raw snow, on both crypto backends.
//!
//! - `noise_stream/<backend>`: write 64 KiB to a `NoiseStream`, flush, and read the 64 KiB
//!   back from the peer's `NoiseStream`, over an in-memory pipe. This is encryption, framing,
//!   two copies through the pipe and decryption. The flush ends each iteration the way an
//!   idle connection does, so the stream gives its write buffers back and allocates them again
//!   in the next iteration: the worst case for the lazy buffers.
//! - `raw_snow/<backend>`: the same 64 KiB sealed and opened with bare snow sessions in
//!   65,519-byte chunks (what the stream puts in a frame): the floor the stream is measured
//!   against.
//!
//! - `split_duplex/<halves>`: both ends send 64 KiB per iteration to each other at once over
//!   loopback TCP, each end driven by a reader task and a writer task on a 2-worker runtime:
//!   `owned` splits each `NoiseStream` with `into_split` (its own halves, TCP's owned halves),
//!   `locked` with `tokio::io::split` (one lock per read and per write, what the peer did
//!   before).
//!
//! Run with `cargo bench -p noise --bench noise_stream`. Settings are short on purpose (10
//! samples, 2 s each); pass `-- --quick` for a rough figure. Results are kept in
//! docs/performance.md.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use noise::{
    CryptoBackend, HandshakeAuthMode, HandshakeConfig, MAX_PLAINTEXT_LEN, NoiseStream, PublicKey,
    TrustedPeers, keys,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes moved per iteration.
const MESSAGE_LEN: usize = 64 * 1024;

/// Completed client and server sessions on `backend`.
fn sessions(
    backend: CryptoBackend,
) -> (snow::StatelessTransportState, snow::StatelessTransportState) {
    let mut rng = StdRng::seed_from_u64(0);
    let config = |private_key: noise::PrivateKey| {
        let peer_id = keys::peer_id_from_public_key(&PublicKey::from(&private_key));
        let mode = HandshakeAuthMode::maybe_mutual(TrustedPeers::new());
        HandshakeConfig::new(peer_id, private_key, mode).with_backend(backend)
    };
    let client = config(keys::generate_private_key(&mut rng));
    let server = config(keys::generate_private_key(&mut rng));
    let (initiator, first) = client
        .initiate(server.peer_id(), server.public_key(), 1)
        .unwrap();
    let accepted = server.respond(&first, 1).unwrap();
    (
        initiator.finish(&accepted.second_message).unwrap(),
        accepted.session,
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("encrypt_decrypt_64KiB");
    group.throughput(Throughput::Bytes(MESSAGE_LEN as u64));
    let message = vec![0x5a_u8; MESSAGE_LEN];

    for (name, backend) in [
        ("ring", CryptoBackend::Ring),
        ("rustcrypto", CryptoBackend::RustCrypto),
    ] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (client_session, server_session) = sessions(backend);
        // Room for the whole message and its framing, so write + flush completes before the
        // read starts, as on a socket with a large enough buffer.
        let (a, b) = tokio::io::duplex(2 * MESSAGE_LEN);
        let server_key = PublicKey::from([0; 32]);
        let mut client = NoiseStream::new(a, client_session, netcore::PeerId::ZERO, server_key);
        let mut server = NoiseStream::new(b, server_session, netcore::PeerId::ZERO, server_key);
        let mut received = vec![0u8; MESSAGE_LEN];
        group.bench_function(BenchmarkId::new("noise_stream", name), |bencher| {
            bencher.iter(|| {
                runtime.block_on(async {
                    client.write_all(&message).await.unwrap();
                    client.flush().await.unwrap();
                    server.read_exact(&mut received).await.unwrap();
                });
            });
        });

        let (sender, receiver) = sessions(backend);
        let mut nonce = 0;
        let mut sealed = vec![0u8; MAX_PLAINTEXT_LEN + 16];
        let mut opened = vec![0u8; MAX_PLAINTEXT_LEN];
        group.bench_function(BenchmarkId::new("raw_snow", name), |bencher| {
            bencher.iter(|| {
                for chunk in message.chunks(MAX_PLAINTEXT_LEN) {
                    let n = sender.write_message(nonce, chunk, &mut sealed).unwrap();
                    let m = receiver
                        .read_message(nonce, &sealed[..n], &mut opened)
                        .unwrap();
                    nonce += 1;
                    assert_eq!(m, chunk.len());
                }
            });
        });
    }
    group.finish();
}

/// Which way `split_duplex` splits each stream.
#[derive(Clone, Copy)]
enum Halves {
    /// `NoiseStream::into_split`.
    Owned,
    /// `tokio::io::split`.
    Locked,
}

/// A connected pair of `NoiseStream`s over loopback TCP.
async fn tcp_pair() -> (NoiseStream<TcpStream>, NoiseStream<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (dialed, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let (a, b) = (dialed.unwrap(), accepted.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let (client_session, server_session) = sessions(CryptoBackend::Ring);
    let key = PublicKey::from([0; 32]);
    (
        NoiseStream::new(a, client_session, netcore::PeerId::ZERO, key),
        NoiseStream::new(b, server_session, netcore::PeerId::ZERO, key),
    )
}

/// Writes `count` messages of 64 KiB, flushing each.
async fn send(mut writer: impl AsyncWrite + Unpin, count: u64) {
    let message = vec![0x5a_u8; MESSAGE_LEN];
    for _ in 0..count {
        writer.write_all(&message).await.unwrap();
        writer.flush().await.unwrap();
    }
}

/// Reads `count` messages of 64 KiB.
async fn receive(mut reader: impl AsyncRead + Unpin, count: u64) {
    let mut buf = vec![0u8; MESSAGE_LEN];
    for _ in 0..count {
        reader.read_exact(&mut buf).await.unwrap();
    }
}

/// Both ends send `count` messages to each other at once, a reader and a writer task per end.
async fn duplex_round(halves: Halves, count: u64) -> Duration {
    let (a, b) = tcp_pair().await;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for stream in [a, b] {
        match halves {
            Halves::Owned => {
                let (reader, writer) = stream.into_split();
                tasks.push(tokio::spawn(send(writer, count)));
                tasks.push(tokio::spawn(receive(reader, count)));
            }
            Halves::Locked => {
                let (reader, writer) = tokio::io::split(stream);
                tasks.push(tokio::spawn(send(writer, count)));
                tasks.push(tokio::spawn(receive(reader, count)));
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn bench_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("split_duplex_64KiB");
    // Bytes each end sends per iteration (it receives as many at the same time).
    group.throughput(Throughput::Bytes(MESSAGE_LEN as u64));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, halves) in [("owned", Halves::Owned), ("locked", Halves::Locked)] {
        group.bench_function(BenchmarkId::new("split_duplex", name), |bencher| {
            bencher.iter_custom(|iters| runtime.block_on(duplex_round(halves, iters)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench, bench_split
}
criterion_main!(benches);
