//! Deterministic identities: the same seed gives the same key, and so the same PeerId, in
//! every run.

use netcore::PeerId;
use noise::{PrivateKey, PublicKey};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// The static key of seed `seed`: 32 bytes from `StdRng::seed_from_u64(seed)`. The same key
/// as `noise::keys::generate_private_key` (and `peerlane::Identity::generate`) with that rng.
pub fn key_from_seed(seed: u64) -> PrivateKey {
    let mut bytes = [0u8; 32];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    PrivateKey::from(bytes)
}

/// The public key of seed `seed`.
pub fn public_key_from_seed(seed: u64) -> PublicKey {
    PublicKey::from(&key_from_seed(seed))
}

/// The PeerId of seed `seed`, derived from its public key as a node derives its own.
pub fn peer_id_from_seed(seed: u64) -> PeerId {
    noise::keys::peer_id_from_public_key(&public_key_from_seed(seed))
}

/// A static key of 32 bytes all equal to `byte`: for tests that only need distinct keys.
pub fn key_from_byte(byte: u8) -> PrivateKey {
    PrivateKey::from([byte; 32])
}
