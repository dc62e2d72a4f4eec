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
//! Run with `cargo bench -p noise --bench noise_stream`. Settings are short on purpose (10
//! samples, 2 s each); pass `-- --quick` for a rough figure. Results are kept in
//! docs/performance.md.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use noise::{
    CryptoBackend, HandshakeAuthMode, HandshakeConfig, MAX_PLAINTEXT_LEN, NoiseStream, PublicKey,
    TrustedPeers, keys,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes moved per iteration.
const MESSAGE_LEN: usize = 64 * 1024;

/// Completed client and server sessions on `backend`.
fn sessions(backend: CryptoBackend) -> (snow::TransportState, snow::TransportState) {
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

        let (mut sender, mut receiver) = sessions(backend);
        let mut sealed = vec![0u8; MAX_PLAINTEXT_LEN + 16];
        let mut opened = vec![0u8; MAX_PLAINTEXT_LEN];
        group.bench_function(BenchmarkId::new("raw_snow", name), |bencher| {
            bencher.iter(|| {
                for chunk in message.chunks(MAX_PLAINTEXT_LEN) {
                    let n = sender.write_message(chunk, &mut sealed).unwrap();
                    let m = receiver.read_message(&sealed[..n], &mut opened).unwrap();
                    assert_eq!(m, chunk.len());
                }
            });
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
    targets = bench
}
criterion_main!(benches);
