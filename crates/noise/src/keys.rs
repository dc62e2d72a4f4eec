//! x25519 static keys: the types, and how to generate, parse and print them.
//!
//! A node's identity key is an x25519 [`PrivateKey`]; its [`PublicKey`] (netcore's, re-exported
//! here: the same type that `/noise-ik/<64 hex digits>` in a network address holds) goes into
//! network addresses and trusted-peer sets. The PeerId of a node that is not in anyone's
//! trusted set is its public key ([`peer_id_from_public_key`]).

use netcore::PeerId;
use rand::{CryptoRng, RngCore};

pub use netcore::PublicKey;
pub use x25519_dalek::StaticSecret as PrivateKey;

/// Length of an x25519 key in bytes.
pub const KEY_LEN: usize = 32;

/// Generates a fresh private key from `rng` (pass a seeded RNG in tests for fixed keys).
pub fn generate_private_key(rng: &mut (impl RngCore + CryptoRng)) -> PrivateKey {
    PrivateKey::random_from_rng(rng)
}

/// Parses a public key from 64 hex digits, with or without a `0x` prefix: the same as
/// `text.parse::<PublicKey>()`.
pub fn parse_public_key(text: &str) -> Result<PublicKey, netcore::Error> {
    text.parse()
}

/// Formats a public key as 64 lowercase hex digits, the form [`parse_public_key`] reads: the
/// same as `key.to_string()`.
pub fn format_public_key(key: &PublicKey) -> String {
    key.to_string()
}

/// The PeerId AptosNet gives a node that is not in the trusted set: its static public key.
pub fn peer_id_from_public_key(key: &PublicKey) -> PeerId {
    PeerId::from_identity_public_key(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// Formatting and parsing are inverse, with and without `0x`; bad input is a typed error.
    #[test]
    fn public_keys_round_trip_through_hex() {
        let private_key = generate_private_key(&mut StdRng::seed_from_u64(7));
        let public_key = PublicKey::from(&private_key);
        let text = format_public_key(&public_key);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_public_key(&text).unwrap(), public_key);
        assert_eq!(parse_public_key(&format!("0x{text}")).unwrap(), public_key);
        assert!(matches!(
            parse_public_key("abcd"),
            Err(netcore::Error::InvalidPublicKey { .. })
        ));
        assert!(matches!(
            parse_public_key(&"zz".repeat(32)),
            Err(netcore::Error::InvalidPublicKey {
                reason: "not hex",
                ..
            })
        ));
    }

    /// The same seed gives the same key, so tests can have fixed identities.
    #[test]
    fn seeded_generation_is_deterministic() {
        let a = generate_private_key(&mut StdRng::seed_from_u64(1));
        let b = generate_private_key(&mut StdRng::seed_from_u64(1));
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(
            peer_id_from_public_key(&PublicKey::from(&a)).into_bytes(),
            PublicKey::from(&a).to_bytes()
        );
    }
}
