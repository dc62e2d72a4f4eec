//! X25519 for snow with two additions: a shared secret of all zeros is an error (RFC 7748
//! §6.1: the peer's key was a low-order point, so the result proves nothing), and every
//! Diffie-Hellman operation is counted.
//!
//! snow picks its primitives through a [`CryptoResolver`]; [`CheckedResolver`] hands out the
//! inner resolver's primitives unchanged, except that the DH is wrapped in [`CheckedDh`].

use prometheus_client::metrics::counter::Counter;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// A resolver whose DH refuses all-zero results and counts its operations into `dh_operations`.
pub(crate) struct CheckedResolver {
    inner: BoxedCryptoResolver,
    dh_operations: Counter,
}

impl CheckedResolver {
    pub(crate) fn new(inner: BoxedCryptoResolver, dh_operations: Counter) -> Self {
        Self {
            inner,
            dh_operations,
        }
    }
}

impl CryptoResolver for CheckedResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.inner.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        let inner = self.inner.resolve_dh(choice)?;
        Some(Box::new(CheckedDh {
            inner,
            dh_operations: self.dh_operations.clone(),
        }))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        self.inner.resolve_cipher(choice)
    }
}

/// A DH that fails with [`snow::Error::Dh`] when the shared secret is all zeros.
struct CheckedDh {
    inner: Box<dyn Dh>,
    dh_operations: Counter,
}

impl Dh for CheckedDh {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn pub_len(&self) -> usize {
        self.inner.pub_len()
    }

    fn priv_len(&self) -> usize {
        self.inner.priv_len()
    }

    fn set(&mut self, privkey: &[u8]) {
        self.inner.set(privkey);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        self.inner.generate(rng)
    }

    fn pubkey(&self) -> &[u8] {
        self.inner.pubkey()
    }

    fn privkey(&self) -> &[u8] {
        self.inner.privkey()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        self.dh_operations.inc();
        self.inner.dh(pubkey, out)?;
        let len = self.inner.dh_len().min(out.len());
        // Constant time is not needed: an all-zero result is public (it is the same for every
        // private key), and any other result is only compared against zero.
        if out[..len].iter().all(|&byte| byte == 0) {
            return Err(snow::Error::Dh);
        }
        Ok(())
    }

    fn dh_len(&self) -> usize {
        self.inner.dh_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A low-order peer key gives an error, a real key a result; both are counted.
    #[test]
    fn all_zero_results_are_refused_and_every_operation_is_counted() {
        let counter = Counter::default();
        let resolver =
            CheckedResolver::new(Box::new(snow::resolvers::DefaultResolver), counter.clone());
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
}
