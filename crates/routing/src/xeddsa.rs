//! XEdDSA (Signal's specification, revision 1): Ed25519-style signatures made with a node's
//! X25519 private key and checked against its X25519 public key, that is its [`PeerId`].
//!
//! Why this is sound for a key that also does Diffie-Hellman, and what the verifier checks,
//! is in `docs/routing.md`. In short: signing converts the Montgomery private scalar `k` to
//! the Edwards key pair `(A, a)` with the sign bit of `A` forced to 0 (negating `a` when it
//! is 1), so that a verifier that only knows the Montgomery `u` can rebuild `A`; the rest is
//! Ed25519 with a randomised nonce. Every message signed in this crate starts with a domain
//! string of its own (`EDGE_DOMAIN`, `ROUTED_DOMAIN`), so a
//! signature made for one purpose can never be taken for another.

use std::fmt;

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use netcore::PeerId;
use rand::{CryptoRng, RngCore};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

/// Length of a signature in bytes: `R` (32) then `s` (32).
pub const SIGNATURE_LENGTH: usize = 64;

/// The prefix of XEdDSA's `hash1`: the 32-byte encoding of `2^256 - 2`, so that the nonce
/// hash can never collide with the challenge hash (which starts with a point `R`).
const HASH1_PREFIX: [u8; 32] = {
    let mut prefix = [0xff; 32];
    prefix[0] = 0xfe;
    prefix
};

/// An XEdDSA signature: `R || s`, 64 bytes. In BCS the 64 raw bytes, no length prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; SIGNATURE_LENGTH]);

impl Signature {
    /// Wraps 64 raw bytes (not checked: [`verify`] checks).
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LENGTH]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LENGTH] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex_prefix(&self.0[..4]))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A fixed-size tuple: BCS writes the 64 bytes with no length prefix.
        let mut tuple = serializer.serialize_tuple(SIGNATURE_LENGTH)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SignatureVisitor;
        impl<'de> Visitor<'de> for SignatureVisitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut bytes = [0u8; SIGNATURE_LENGTH];
                for (index, slot) in bytes.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(index, &self))?;
                }
                Ok(Signature(bytes))
            }
        }
        deserializer.deserialize_tuple(SIGNATURE_LENGTH, SignatureVisitor)
    }
}

/// The signing half of a node's identity: the same 32-byte X25519 private key the Noise
/// handshake uses (what the key file holds, before clamping), with its Edwards form
/// precomputed.
#[derive(Clone)]
pub struct SigningKey {
    /// The Edwards private scalar `a` (k or -k mod q), whichever makes `A`'s sign bit 0.
    scalar: Scalar,
    /// What `hash1` hashes as `a`: the clamped key bytes as they are when `a = k`, or the
    /// reduced `-k` when negated (as the reference implementation does, so its vectors hold).
    nonce_key: [u8; 32],
    /// `A` compressed, sign bit 0.
    public_edwards: [u8; 32],
    peer_id: PeerId,
}

impl SigningKey {
    /// The signing key of the X25519 private key `private_key` (32 bytes, clamped here as
    /// X25519 clamps it).
    pub fn from_x25519_private_key(private_key: [u8; 32]) -> Self {
        let clamped = clamp_integer(private_key);
        let k = Scalar::from_bytes_mod_order(clamped);
        let edwards = EdwardsPoint::mul_base_clamped(private_key);
        let compressed = edwards.compress().to_bytes();
        let negate = compressed[31] & 0x80 != 0;
        let (scalar, nonce_key) = if negate {
            let negated = -k;
            (negated, negated.to_bytes())
        } else {
            (k, clamped)
        };
        let mut public_edwards = compressed;
        public_edwards[31] &= 0x7f;
        let montgomery = edwards.to_montgomery().to_bytes();
        Self {
            scalar,
            nonce_key,
            public_edwards,
            peer_id: PeerId::from_identity_public_key(montgomery),
        }
    }

    /// The PeerId that verifies this key's signatures: its X25519 public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Signs the concatenation of `message_parts` with fresh randomness from `rng`.
    pub fn sign(&self, message_parts: &[&[u8]], rng: &mut (impl RngCore + CryptoRng)) -> Signature {
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        self.sign_with_random(message_parts, &random)
    }

    /// Signs with the 64 bytes `random` as XEdDSA's `Z`. Public for test vectors; callers
    /// use [`SigningKey::sign`].
    pub fn sign_with_random(&self, message_parts: &[&[u8]], random: &[u8; 64]) -> Signature {
        let mut hash1 = Sha512::new();
        hash1.update(HASH1_PREFIX);
        hash1.update(self.nonce_key);
        for part in message_parts {
            hash1.update(part);
        }
        hash1.update(random);
        let r = scalar_from_hash(hash1);
        let big_r = (&r * ED25519_BASEPOINT_TABLE).compress().to_bytes();
        let h = challenge(&big_r, &self.public_edwards, message_parts);
        let s = r + h * self.scalar;
        let mut bytes = [0u8; SIGNATURE_LENGTH];
        bytes[..32].copy_from_slice(&big_r);
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature(bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "SigningKey({:?})", self.peer_id)
    }
}

/// A signer's public key made ready for verification: its PeerId (X25519 `u`) checked and
/// converted to the Edwards point `A` (sign bit 0) once, for checking many signatures of the
/// same signer (a batch of edges names the same peers again and again).
#[derive(Clone, Copy, Debug)]
pub struct VerifyingKey {
    point: EdwardsPoint,
    compressed: [u8; 32],
}

impl VerifyingKey {
    /// The verifying key of `signer`, or `None` for a key no signature can be valid for: a
    /// `u` not below p, a `u` with no Edwards point (on the twist, or p - 1), a low-order key.
    pub fn from_peer_id(signer: &PeerId) -> Option<Self> {
        let u = signer.as_bytes();
        if !is_canonical_field_element(u) {
            return None;
        }
        let point = MontgomeryPoint(*u).to_edwards(0)?;
        if point.is_small_order() {
            return None;
        }
        Some(Self {
            point,
            compressed: point.compress().to_bytes(),
        })
    }

    /// Checks `signature` over the concatenation of `message_parts`. Refuses an `s` not below
    /// q (no malleability) and any `R` that does not re-encode to exactly the 32 bytes sent.
    pub fn verify(&self, message_parts: &[&[u8]], signature: &Signature) -> bool {
        let mut big_r = [0u8; 32];
        big_r.copy_from_slice(&signature.0[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature.0[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let h = challenge(&big_r, &self.compressed, message_parts);
        // R' = sB - hA
        let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &-self.point, &s);
        check.compress() == CompressedEdwardsY(big_r)
    }
}

/// Checks `signature` over the concatenation of `message_parts` against `signer`, an X25519
/// public key (Montgomery `u`): [`VerifyingKey::from_peer_id`] then
/// [`VerifyingKey::verify`].
pub fn verify(signer: &PeerId, message_parts: &[&[u8]], signature: &Signature) -> bool {
    VerifyingKey::from_peer_id(signer).is_some_and(|key| key.verify(message_parts, signature))
}

fn challenge(big_r: &[u8; 32], public_edwards: &[u8; 32], message_parts: &[&[u8]]) -> Scalar {
    let mut hash = Sha512::new();
    hash.update(big_r);
    hash.update(public_edwards);
    for part in message_parts {
        hash.update(part);
    }
    scalar_from_hash(hash)
}

fn scalar_from_hash(hash: Sha512) -> Scalar {
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&hash.finalize());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Whether the 32 little-endian bytes are below p = 2^255 - 19 (XEdDSA rejects `u >= p`).
fn is_canonical_field_element(bytes: &[u8; 32]) -> bool {
    if bytes[31] & 0x80 != 0 {
        return false;
    }
    // Values in [p, 2^255): 0x7f ff..ff then a first byte >= 0xed.
    let top_all_ones = bytes[31] == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    !(top_all_ones && bytes[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn unhex<const N: usize>(text: &str) -> [u8; N] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    /// The X25519 public key derived here is the one libsignal derives (its agreement test
    /// vectors: alice's and bob's key pairs).
    #[test]
    fn peer_id_is_the_x25519_public_key() {
        let alice = unhex("c806439dc9d2c476ffed8f2580c0888d58ab406bf7ae3698879021b96bb4bf59");
        let bob = unhex("b03b34c33a1c44f225b662d2bf4859b8135411fa7b0386d45fb75dc5b91b4466");
        assert_eq!(
            hex::encode(
                SigningKey::from_x25519_private_key(alice)
                    .peer_id()
                    .as_bytes()
            ),
            "1bb75966f2e93a3691dfff942bb2a466a1c08b8d78ca3f4d6df8b8bfa2e4ee28"
        );
        assert_eq!(
            hex::encode(
                SigningKey::from_x25519_private_key(bob)
                    .peer_id()
                    .as_bytes()
            ),
            "653614993d2b15ee9e5fd3d86ce719ef4ec1daae1886a87b3f5fa9565a27a22f"
        );
    }

    /// A Noise identity key (x25519-dalek's `StaticSecret`, as the key files hold it) signs
    /// for the PeerId the Noise layer derives from it: its X25519 public key.
    #[test]
    fn noise_identity_keys_sign_as_their_peer_id() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..16 {
            let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
            let public = x25519_dalek::PublicKey::from(&secret);
            let key = SigningKey::from_x25519_private_key(secret.to_bytes());
            assert_eq!(
                key.peer_id(),
                PeerId::from_identity_public_key(public.to_bytes())
            );
            let signature = key.sign(&[b"edge"], &mut rng);
            assert!(verify(
                &PeerId::new(public.to_bytes()),
                &[b"edge"],
                &signature
            ));
        }
    }

    /// The reference implementation's `xeddsa_fast_test` (curve25519 "ref10 additions" by
    /// Trevor Perrin, as shipped in libsignal-protocol-c): private key all zero but byte 8 =
    /// 189, message 200 zero bytes, Z 64 zero bytes.
    #[test]
    fn reference_vector_signs_and_verifies() {
        let mut private_key = [0u8; 32];
        private_key[8] = 189;
        let key = SigningKey::from_x25519_private_key(private_key);
        let message = [0u8; 200];
        let signature = key.sign_with_random(&[&message], &[0u8; 64]);
        assert_eq!(
            hex::encode(signature.as_bytes()),
            "11c7f3e6c4df9e8a5150e1db3b30f92de3a3b3aa438656545fa7390f4bcc7bb2\
             6c431d9e90643e4f0eaa0e9c557766fa69ada576d63dcaf2ac326c11d0b97702"
        );
        assert!(verify(&key.peer_id(), &[&message], &signature));
        let mut tampered = *signature.as_bytes();
        tampered[0] ^= 1;
        assert!(!verify(
            &key.peer_id(),
            &[&message],
            &Signature::from_bytes(tampered)
        ));
    }

    /// The reference implementation's `xeddsa_slow_test`: 10,000 chained iterations (each key
    /// and Z derived from the previous, tampered, signature; half the keys negate), checking
    /// every signature verifies, every tamper fails, and the 10,000th signature matches.
    /// About 10,000 signatures and 20,000 verifications: run in release,
    /// `cargo test -p routing --release --lib reference_slow_vector -- --ignored`.
    #[test]
    #[ignore = "slow in debug builds; run with --release --ignored"]
    fn reference_slow_vector() {
        use sha2::Digest;
        let mut signature = [1u8; 64];
        let mut message = [0u8; 200];
        for count in 1..=10_000usize {
            let b = Sha512::digest(signature);
            let mut private_key = [0u8; 32];
            private_key.copy_from_slice(&b[..32]);
            let b = Sha512::digest(private_key);
            let mut random = [0u8; 64];
            random.copy_from_slice(&b);
            let key = SigningKey::from_x25519_private_key(private_key);
            signature = *key.sign_with_random(&[&message], &random).as_bytes();
            assert!(verify(&key.peer_id(), &[&message], &Signature(signature)));
            if b[63] & 1 == 1 {
                signature[count % 64] ^= 1;
            } else {
                message[count % 200] ^= 1;
            }
            assert!(!verify(&key.peer_id(), &[&message], &Signature(signature)));
        }
        assert_eq!(
            hex::encode(signature),
            "152903386616cd26bb3eece29f72a25c7d05c9cb843f9296b3fbb9ddd6ed9904\
             c1a80216cf493ff1be69f9f1cc16d7dc6ed378aa04eb71519de87a5bd8497b05"
        );
    }

    /// Flipping any bit of the signature, the message or the key makes it fail.
    #[test]
    fn every_tamper_is_refused() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut private_key = [0u8; 32];
        rng.fill_bytes(&mut private_key);
        let key = SigningKey::from_x25519_private_key(private_key);
        let message = b"peerlane edge".to_vec();
        let signature = key.sign(&[&message], &mut rng);
        assert!(verify(&key.peer_id(), &[&message], &signature));
        for byte in 0..SIGNATURE_LENGTH {
            let mut bytes = *signature.as_bytes();
            bytes[byte] ^= 1 << (byte % 8);
            assert!(!verify(
                &key.peer_id(),
                &[&message],
                &Signature::from_bytes(bytes)
            ));
        }
        for byte in 0..message.len() {
            let mut changed = message.clone();
            changed[byte] ^= 0x20;
            assert!(!verify(&key.peer_id(), &[&changed], &signature));
        }
        let mut other = key.peer_id().into_bytes();
        other[3] ^= 1;
        assert!(!verify(&PeerId::new(other), &[&message], &signature));
    }

    /// Splitting the message into parts signs the same bytes as one slice.
    #[test]
    fn message_parts_are_concatenated() {
        let key = SigningKey::from_x25519_private_key([7; 32]);
        let signature = key.sign_with_random(&[b"ab", b"cd"], &[1; 64]);
        assert!(verify(&key.peer_id(), &[b"abcd"], &signature));
        assert!(verify(&key.peer_id(), &[b"a", b"", b"bcd"], &signature));
    }

    /// Both signs of the Edwards key (half of all keys negate) sign and verify.
    #[test]
    fn keys_of_both_edwards_signs_work() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut seen = [false; 2];
        for _ in 0..32 {
            let mut private_key = [0u8; 32];
            rng.fill_bytes(&mut private_key);
            let sign = EdwardsPoint::mul_base_clamped(private_key)
                .compress()
                .to_bytes()[31]
                >> 7;
            seen[usize::from(sign)] = true;
            let key = SigningKey::from_x25519_private_key(private_key);
            let signature = key.sign(&[b"m"], &mut rng);
            assert!(verify(&key.peer_id(), &[b"m"], &signature));
        }
        assert_eq!(seen, [true, true]);
    }

    /// Low-order keys, keys on the twist and non-canonical `u` or `s` are refused.
    #[test]
    fn malformed_keys_and_scalars_are_refused() {
        let key = SigningKey::from_x25519_private_key([3; 32]);
        let signature = key.sign_with_random(&[b"m"], &[0; 64]);
        for low in netcore::low_order_points() {
            assert!(!verify(&PeerId::new(low.to_bytes()), &[b"m"], &signature));
        }
        // s + q: the same point equation, a different encoding.
        let mut s = [0u8; 32];
        s.copy_from_slice(&signature.as_bytes()[32..]);
        let q_bytes =
            unhex::<32>("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let total = u16::from(s[i]) + u16::from(q_bytes[i]) + carry;
            sum[i] = total as u8;
            carry = total >> 8;
        }
        let mut malleated = *signature.as_bytes();
        malleated[32..].copy_from_slice(&sum);
        assert!(!verify(
            &key.peer_id(),
            &[b"m"],
            &Signature::from_bytes(malleated)
        ));
        // u = p - 1 has no Edwards point; u >= p is not canonical.
        let mut p_minus_one = [0xff; 32];
        p_minus_one[0] = 0xec;
        p_minus_one[31] = 0x7f;
        assert!(!verify(&PeerId::new(p_minus_one), &[b"m"], &signature));
        let mut u_plus_p = key.peer_id().into_bytes();
        u_plus_p[31] |= 0x80;
        assert!(!verify(&PeerId::new(u_plus_p), &[b"m"], &signature));
    }

    /// BCS writes the 64 bytes with no prefix and reads them back.
    #[test]
    fn signature_bcs_is_64_raw_bytes() {
        let signature = Signature::from_bytes([0xab; 64]);
        let bytes = bcs::to_bytes(&signature).unwrap();
        assert_eq!(bytes, vec![0xab; 64]);
        assert_eq!(bcs::from_bytes::<Signature>(&bytes).unwrap(), signature);
        assert!(bcs::from_bytes::<Signature>(&bytes[..63]).is_err());
    }
}
