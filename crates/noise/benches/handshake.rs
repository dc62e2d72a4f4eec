//! Cost of one Noise IK handshake, both ends in memory, no sockets.
//!
//! - `handshake/full/<mode>`: `initiate` (message 1), `respond` (checks, message 2, session)
//!   and `finish` (session): one full handshake per iteration, as a dial and an accept cost
//!   the two nodes together. `maybe_mutual`: the responder admits the initiator by its key;
//!   `mutual`: the initiator is in the trusted set and anti-replay runs (the timestamp grows
//!   every iteration, as a real dialer's clock does).
//! - `handshake/initiate`, `handshake/respond`: each side's share.
//!
//! Every handshake does four X25519 Diffie-Hellman operations on each side plus one fixed-base
//! multiplication per ephemeral key, so the figure shows whether curve25519-dalek's
//! precomputed basepoint tables are compiled in (see the workspace Cargo.toml).
//!
//! Run with `cargo bench -p noise --bench handshake` (about 15 s). Throughput is handshakes
//! per second.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use noise::{
    HandshakeAuthMode, HandshakeConfig, PeerRole, PublicKey, TrustedPeer, TrustedPeers, keys,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A client and a server config; in mutual mode the server trusts the client.
fn configs(mutual: bool) -> (HandshakeConfig, HandshakeConfig) {
    let mut rng = StdRng::seed_from_u64(0);
    let client_key = keys::generate_private_key(&mut rng);
    let server_key = keys::generate_private_key(&mut rng);
    let client_public = PublicKey::from(&client_key);
    let client_id = keys::peer_id_from_public_key(&client_public);
    let server_id = keys::peer_id_from_public_key(&PublicKey::from(&server_key));
    let server_mode = if mutual {
        let trusted = TrustedPeers::new();
        trusted.insert(
            client_id,
            TrustedPeer::new(PeerRole::Validator, [client_public]),
        );
        HandshakeAuthMode::mutual(trusted)
    } else {
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new())
    };
    let client = HandshakeConfig::new(
        client_id,
        client_key,
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
    );
    let server = HandshakeConfig::new(server_id, server_key, server_mode);
    (client, server)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    for (name, mutual) in [("maybe_mutual", false), ("mutual", true)] {
        let (client, server) = configs(mutual);
        let (server_id, server_key) = (server.peer_id(), server.public_key());
        let mut now = noise::now_millis();
        group.bench_function(BenchmarkId::new("full", name), |b| {
            b.iter(|| {
                now += 1;
                let (initiator, first) = client.initiate(server_id, server_key, now).unwrap();
                let accepted = server.respond(&first, now).unwrap();
                let session = initiator.finish(&accepted.second_message).unwrap();
                (session, accepted.session)
            });
        });
    }

    let (client, server) = configs(false);
    let (server_id, server_key) = (server.peer_id(), server.public_key());
    group.bench_function("initiate", |b| {
        b.iter(|| client.initiate(server_id, server_key, 1).unwrap());
    });
    let (_, first) = client.initiate(server_id, server_key, 1).unwrap();
    // The same message 1 over and over: without the replay cache, which would refuse it.
    let server = server.with_replay_cache_capacity(0);
    group.bench_function("respond", |b| {
        b.iter(|| server.respond(&first, 1).unwrap());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
