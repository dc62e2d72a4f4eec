//! XEdDSA verification, the CPU cost a remote peer can make the node pay per edge.
//!
//! - `xeddsa/verify_one`: one signature over an edge's 96 signed bytes.
//! - `xeddsa/verify_prepared`: the same with the signer's key already converted
//!   (`VerifyingKey`), as `verify_batch` does for a signer it has seen in the batch.
//! - `xeddsa/verifying_key_from_peer_id`: that conversion alone (checks, `u` to Edwards).
//! - `xeddsa/sign_one`: one signature made (the local node's side of an edge).
//! - `edges/verify_batch/<n>`: `verify_batch` over `n` active edges (two signatures each),
//!   as the blocking pool runs it; throughput in edges per second.
//!
//! Run with `cargo bench -p routing --bench verify -- --warm-up-time 1 --measurement-time 3`
//! (under a minute).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use routing::{
    Edge, EdgeKey, EdgeProof, SigningKey, VerifyingKey, edge_signing_bytes, verify, verify_batch,
};

fn key(rng: &mut StdRng) -> SigningKey {
    let mut private_key = [0u8; 32];
    rng.fill_bytes(&mut private_key);
    SigningKey::from_x25519_private_key(private_key)
}

fn edge(a: &SigningKey, b: &SigningKey, nonce: u64, rng: &mut StdRng) -> Edge {
    let key = EdgeKey::new(a.peer_id(), b.peer_id()).expect("distinct keys");
    let bytes = edge_signing_bytes(&key, nonce);
    let (k0, k1) = if key.peer0() == a.peer_id() {
        (a, b)
    } else {
        (b, a)
    };
    Edge {
        key,
        nonce,
        proof: EdgeProof::Active {
            signature0: k0.sign(&[&bytes], rng),
            signature1: k1.sign(&[&bytes], rng),
        },
    }
}

fn xeddsa(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let (a, b) = (key(&mut rng), key(&mut rng));
    let edge_key = EdgeKey::new(a.peer_id(), b.peer_id()).expect("distinct keys");
    let bytes = edge_signing_bytes(&edge_key, 1_700_000_000_001);
    let signature = a.sign(&[&bytes], &mut rng);
    let mut group = c.benchmark_group("xeddsa");
    group.bench_function("verify_one", |bench| {
        bench.iter(|| assert!(verify(&a.peer_id(), &[&bytes], &signature)))
    });
    let prepared = VerifyingKey::from_peer_id(&a.peer_id()).expect("a valid key");
    group.bench_function("verify_prepared", |bench| {
        bench.iter(|| assert!(prepared.verify(&[&bytes], &signature)))
    });
    group.bench_function("verifying_key_from_peer_id", |bench| {
        bench.iter(|| VerifyingKey::from_peer_id(&a.peer_id()))
    });
    group.bench_function("sign_one", |bench| {
        bench.iter(|| a.sign(&[&bytes], &mut rng))
    });
    group.finish();
}

fn edges(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let keys: Vec<SigningKey> = (0..64).map(|_| key(&mut rng)).collect();
    let mut group = c.benchmark_group("edges");
    for n in [100usize, 1_000] {
        let batch: Vec<Edge> = (0..n)
            .map(|i| {
                edge(
                    &keys[i % 64],
                    &keys[(i / 64 + i + 1) % 64],
                    1_700_000_000_001,
                    &mut rng,
                )
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("verify_batch", n),
            &batch,
            |bench, batch| {
                bench.iter(|| {
                    let verified = verify_batch(batch.clone());
                    assert!(verified.bad.is_none());
                    verified
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, xeddsa, edges);
criterion_main!(benches);
