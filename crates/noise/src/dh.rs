//! X25519 for snow with three additions: a shared secret of all zeros is an error (RFC 7748
//! §6.1: the peer's key was a low-order point, so the result proves nothing), every
//! Diffie-Hellman operation is counted, and our static key's public half is computed once per
//! node instead of once per handshake.
//!
//! snow picks its primitives through a [`CryptoResolver`]; [`CheckedResolver`] hands out the
//! inner resolver's hash, cipher and RNG unchanged, and [`CheckedX25519`] for the DH. That is
//! snow's own `Dh25519` (the same two curve25519-dalek calls: `mul_base_clamped` for a public
//! key, `mul_clamped` for a DH) except that `set` with the node's static private key takes the
//! public key computed when the node's config was made: snow's builder would otherwise derive
//! it (a fixed-base scalar multiplication, about 5% of a handshake's instructions) on every
//! handshake. The bytes are the same by construction: the cached key is the same function of
//! the same private key (`the_cached_static_key_changes_no_byte` checks it against snow's).

use std::sync::Arc;

use curve25519_dalek::montgomery::MontgomeryPoint;
use prometheus_client::metrics::counter::Counter;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::keys::KEY_LEN;

/// A node's static X25519 key pair, its public half computed once.
pub(crate) struct StaticKeyPair {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl StaticKeyPair {
    pub(crate) fn new(private: [u8; KEY_LEN]) -> Self {
        Self {
            private,
            public: x25519_public_key(&private),
        }
    }

    /// The public half, as X25519 defines it.
    pub(crate) fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }
}

/// A resolver whose DH refuses all-zero results, counts its operations into `dh_operations`,
/// and knows the public half of `static_key` without computing it.
pub(crate) struct CheckedResolver {
    inner: BoxedCryptoResolver,
    dh_operations: Counter,
    static_key: Option<Arc<StaticKeyPair>>,
}

impl CheckedResolver {
    pub(crate) fn new(
        inner: BoxedCryptoResolver,
        dh_operations: Counter,
        static_key: Option<Arc<StaticKeyPair>>,
    ) -> Self {
        Self {
            inner,
            dh_operations,
            static_key,
        }
    }
}

impl CryptoResolver for CheckedResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.inner.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(CheckedX25519 {
                private: [0; KEY_LEN],
                public: [0; KEY_LEN],
                static_key: self.static_key.clone(),
                dh_operations: self.dh_operations.clone(),
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        self.inner.resolve_cipher(choice)
    }
}

/// X25519 that fails with [`snow::Error::Dh`] when the shared secret is all zeros, and takes
/// the static key's public half from [`StaticKeyPair`].
struct CheckedX25519 {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
    static_key: Option<Arc<StaticKeyPair>>,
    dh_operations: Counter,
}

impl Dh for CheckedX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow's `Dh25519::set` copies the first 32 bytes (snow passes exactly 32).
        let len = privkey.len().min(KEY_LEN);
        self.private = [0; KEY_LEN];
        self.private[..len].copy_from_slice(&privkey[..len]);
        self.public = match &self.static_key {
            Some(key) if same_key(&key.private, &self.private) => key.public,
            _ => x25519_public_key(&self.private),
        };
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut private = [0; KEY_LEN];
        rng.try_fill_bytes(&mut private)?;
        self.private = private;
        self.public = x25519_public_key(&self.private);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        self.dh_operations.inc();
        // snow always passes a 32-byte key and room for 32 bytes.
        let peer: [u8; KEY_LEN] = pubkey
            .get(..KEY_LEN)
            .and_then(|key| key.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = MontgomeryPoint(peer).mul_clamped(self.private).to_bytes();
        // Constant time is not needed: an all-zero result is public (it is the same for every
        // private key), and any other result is only compared against zero.
        if shared.iter().all(|&byte| byte == 0) {
            return Err(snow::Error::Dh);
        }
        let len = out.len().min(KEY_LEN);
        out[..len].copy_from_slice(&shared[..len]);
        Ok(())
    }

    fn dh_len(&self) -> usize {
        KEY_LEN
    }
}

/// The X25519 public key of `private`: snow's `Dh25519` derivation.
fn x25519_public_key(private: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// Whether two private keys are equal, without a branch per byte.
fn same_key(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A low-order peer key gives an error, a real key a result; both are counted.
    #[test]
    fn all_zero_results_are_refused_and_every_operation_is_counted() {
        let counter = Counter::default();
        let resolver = CheckedResolver::new(
            Box::new(snow::resolvers::DefaultResolver),
            counter.clone(),
            None,
        );
        let mut dh = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        dh.set(&[7; 32]);
        let mut out = [0u8; 32];
        for point in netcore::low_order_points() {
            assert!(matches!(
                dh.dh(point.as_bytes(), &mut out),
                Err(snow::Error::Dh)
            ));
        }
        let real = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9; 32]));
        dh.dh(real.as_bytes(), &mut out).unwrap();
        assert_ne!(out, [0; 32]);
        assert_eq!(counter.get(), 15);
    }

    /// Our X25519 gives snow's `Dh25519` bytes, with and without the cached static key: public
    /// keys, DH results, and whole handshakes (fixed ephemeral keys) against snow's own
    /// resolver, message for message.
    #[test]
    fn the_cached_static_key_changes_no_byte() {
        use snow::resolvers::DefaultResolver;
        for seed in 0..32u8 {
            let private = [seed.wrapping_mul(37).wrapping_add(1); 32];
            let peer = x25519_public_key(&[seed ^ 0x5a; 32]);
            let static_key = Arc::new(StaticKeyPair::new(private));
            let mut snows = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
            snows.set(&private);
            for cached in [None, Some(static_key.clone())] {
                let resolver =
                    CheckedResolver::new(Box::new(DefaultResolver), Counter::default(), cached);
                let mut ours = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
                ours.set(&private);
                assert_eq!(ours.pubkey(), snows.pubkey());
                assert_eq!(ours.privkey(), snows.privkey());
                let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
                ours.dh(&peer, &mut a).unwrap();
                snows.dh(&peer, &mut b).unwrap();
                assert_eq!(a, b);
            }
            // Another key on a resolver that caches this one derives its own.
            let resolver = CheckedResolver::new(
                Box::new(DefaultResolver),
                Counter::default(),
                Some(static_key),
            );
            let mut other = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
            other.set(&[seed ^ 0x5a; 32]);
            assert_eq!(other.pubkey(), &peer[..]);
        }

        // Whole handshakes, ours against snow's, with the same fixed ephemeral keys.
        let params = || {
            crate::PROTOCOL_NAME
                .parse::<snow::params::NoiseParams>()
                .unwrap()
        };
        let (client, server) = ([3u8; 32], [4u8; 32]);
        let server_public = x25519_public_key(&server);
        let prologue = [9u8; 64];
        let run = |resolver: fn(&[u8; 32]) -> BoxedCryptoResolver| {
            let mut initiator = snow::Builder::with_resolver(params(), resolver(&client))
                .local_private_key(&client)
                .and_then(|b| b.remote_public_key(&server_public))
                .and_then(|b| b.prologue(&prologue))
                .and_then(|b| {
                    b.fixed_ephemeral_key_for_testing_only(&[5; 32])
                        .build_initiator()
                })
                .unwrap();
            let mut responder = snow::Builder::with_resolver(params(), resolver(&server))
                .local_private_key(&server)
                .and_then(|b| b.prologue(&prologue))
                .and_then(|b| {
                    b.fixed_ephemeral_key_for_testing_only(&[6; 32])
                        .build_responder()
                })
                .unwrap();
            let (mut first, mut second) = ([0u8; 104], [0u8; 48]);
            let mut payload = [0u8; 8];
            initiator
                .write_message(&42u64.to_le_bytes(), &mut first)
                .unwrap();
            responder.read_message(&first, &mut payload).unwrap();
            responder.write_message(&[], &mut second).unwrap();
            initiator.read_message(&second, &mut []).unwrap();
            let mut sealed = [0u8; 32];
            let initiator = initiator.into_stateless_transport_mode().unwrap();
            initiator
                .write_message(0, b"transport", &mut sealed)
                .unwrap();
            (first, second, sealed)
        };
        let snows = run(|_| Box::new(DefaultResolver));
        let ours = run(|private| {
            Box::new(CheckedResolver::new(
                Box::new(DefaultResolver),
                Counter::default(),
                Some(Arc::new(StaticKeyPair::new(*private))),
            ))
        });
        assert_eq!(ours, snows);
    }
}
