//! [`PublicKey`]: a node's static x25519 public key, as addresses, configs and the trusted
//! sets name it.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::byte_string::{ByteBufVisitor, BytesRef};
use crate::error::Error;
use crate::hex32;

/// A static x25519 public key: 32 bytes, the key of the Noise IK handshake and of
/// `/noise-ik/<key>` in a [`NetworkAddress`](crate::NetworkAddress).
///
/// # Encodings
///
/// - Text: [`Display`](fmt::Display) prints 64 lowercase hex digits, no prefix;
///   [`FromStr`] reads 64 hex digits with or without a `0x` prefix (AptosNet prints one).
///   [`Debug`](fmt::Debug) is short: `PublicKey(` the first 4 bytes in hex `)`.
/// - Human-readable serde formats (JSON, TOML configs): the text form, as a string.
/// - Binary serde formats (BCS): AptosNet's `x25519::PublicKey`, a newtype struct named
///   `PublicKey` around a byte string: in BCS `0x20` then the 32 bytes.
///
/// Converts to and from [`x25519_dalek::PublicKey`] for the cryptography.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; Self::LENGTH]);

impl PublicKey {
    /// Length of a key in bytes.
    pub const LENGTH: usize = 32;

    /// Wraps 32 raw bytes.
    pub const fn new(bytes: [u8; Self::LENGTH]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; Self::LENGTH] {
        &self.0
    }

    /// The raw bytes, by value.
    pub const fn to_bytes(self) -> [u8; Self::LENGTH] {
        self.0
    }

    /// Whether the key is one of the known encodings of a low-order point of Curve25519
    /// (order 1, 2, 4 or 8; RFC 7748 §7, libsodium's list), top bit ignored as X25519 ignores
    /// it. A Diffie-Hellman with such a key gives a fixed result (all zeros) whatever the
    /// other private key: no node has it as its key, and a handshake with it would prove
    /// nothing. Parsing text refuses these keys; the Noise layer refuses them on the wire.
    pub fn is_low_order(&self) -> bool {
        let mut masked = self.0;
        masked[31] &= 0x7f;
        LOW_ORDER_POINTS.contains(&masked)
    }
}

/// The encodings of Curve25519's low-order points, top bit clear: 0 and 1, the two points of
/// order 8, and p - 1, p, p + 1 (the non-canonical forms of order 2, 4 and 1).
const LOW_ORDER_POINTS: [[u8; 32]; 7] = {
    const fn ff(first: u8) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[0] = first;
        bytes[31] = 0x7f;
        bytes
    }
    let mut one = [0; 32];
    one[0] = 1;
    [
        [0; 32],
        one,
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ],
        [
            0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
            0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
            0xd0, 0x9f, 0x11, 0x57,
        ],
        ff(0xec),
        ff(0xed),
        ff(0xee),
    ]
};

/// Every low-order encoding, top bit clear and set: for tests of the layers that must refuse
/// them. Not a public API.
#[doc(hidden)]
pub fn low_order_points() -> impl Iterator<Item = PublicKey> {
    LOW_ORDER_POINTS.into_iter().flat_map(|bytes| {
        let mut high = bytes;
        high[31] |= 0x80;
        [PublicKey(bytes), PublicKey(high)]
    })
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex32::write(&self.0, f)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell keys apart in logs; Display gives the whole key.
        write!(f, "PublicKey({})", hex::encode(&self.0[..4]))
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    /// Parses 64 hex digits, with or without a `0x` prefix. Refuses a low-order point
    /// ([`PublicKey::is_low_order`]): no node has one as its key.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| Error::InvalidPublicKey {
            input: text.to_owned(),
            reason,
        };
        let key = hex32::parse(text).map(Self).map_err(invalid)?;
        if key.is_low_order() {
            return Err(invalid("a low-order point, which no node has as its key"));
        }
        Ok(key)
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<PublicKey> for [u8; 32] {
    fn from(key: PublicKey) -> Self {
        key.0
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<x25519_dalek::PublicKey> for PublicKey {
    fn from(key: x25519_dalek::PublicKey) -> Self {
        Self(key.to_bytes())
    }
}

impl From<PublicKey> for x25519_dalek::PublicKey {
    fn from(key: PublicKey) -> Self {
        Self::from(key.0)
    }
}

impl From<&x25519_dalek::StaticSecret> for PublicKey {
    /// The public half of a static private key.
    fn from(private_key: &x25519_dalek::StaticSecret) -> Self {
        x25519_dalek::PublicKey::from(private_key).into()
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_newtype_struct("PublicKey", &BytesRef(&self.0))
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(de::Error::custom)
        } else {
            let bytes = deserializer.deserialize_newtype_struct("PublicKey", ByteBufVisitor)?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|bytes: Vec<u8>| de::Error::invalid_length(bytes.len(), &"32 bytes"))?;
            Ok(Self(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display and FromStr are inverse, with and without `0x`; Debug is the short form.
    #[test]
    fn hex_round_trip() {
        let key = PublicKey::new([0xab; 32]);
        let text = key.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(format!("0x{text}").parse::<PublicKey>().unwrap(), key);
        assert_eq!(format!("{key:?}"), "PublicKey(abababab)");
    }

    /// Wrong lengths and non-hex digits are typed errors that say what was wrong.
    #[test]
    fn malformed_hex_is_rejected() {
        assert!(matches!(
            "abcd".parse::<PublicKey>(),
            Err(Error::InvalidPublicKey {
                reason: "expected 64 hex digits",
                ..
            })
        ));
        let err = "zz".repeat(32).parse::<PublicKey>().unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidPublicKey {
                reason: "not hex",
                ..
            }
        ));
        assert!(err.to_string().contains("not hex"), "{err}");
    }

    /// BCS is AptosNet's `x25519::PublicKey`: `0x20` then the bytes; JSON is the hex string.
    #[test]
    fn serde_matches_aptosnet() {
        let key = PublicKey::new([0x11; 32]);
        let mut bcs_bytes = vec![0x20];
        bcs_bytes.extend_from_slice(&[0x11; 32]);
        assert_eq!(bcs::to_bytes(&key).unwrap(), bcs_bytes);
        assert_eq!(bcs::from_bytes::<PublicKey>(&bcs_bytes).unwrap(), key);
        assert!(bcs::from_bytes::<PublicKey>(&[0x1f; 32]).is_err());

        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", "11".repeat(32)));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PublicKey>("\"11\"").is_err());
    }

    /// Every listed encoding is low order (X25519 with any secret gives all zeros), text
    /// parsing refuses them, and real keys are not low order.
    #[test]
    fn low_order_points_are_recognised_and_refused() {
        let secret = x25519_dalek::StaticSecret::from([0x42; 32]);
        let points: Vec<PublicKey> = low_order_points().collect();
        assert_eq!(points.len(), 14);
        for point in points {
            assert!(point.is_low_order(), "{point}");
            let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(point));
            assert!(!shared.was_contributory(), "{point} is not low order");
            let err = point.to_string().parse::<PublicKey>().unwrap_err();
            assert!(err.to_string().contains("low-order"), "{err}");
        }
        for seed in 0..64u8 {
            let key = PublicKey::from(&x25519_dalek::StaticSecret::from([seed; 32]));
            assert!(!key.is_low_order());
        }
        assert!(!PublicKey::new([0xab; 32]).is_low_order());
    }

    /// Converting through x25519-dalek keeps the bytes.
    #[test]
    fn x25519_conversions_keep_the_bytes() {
        let secret = x25519_dalek::StaticSecret::from([3; 32]);
        let dalek = x25519_dalek::PublicKey::from(&secret);
        let key = PublicKey::from(&secret);
        assert_eq!(key, PublicKey::from(dalek));
        assert_eq!(x25519_dalek::PublicKey::from(key), dalek);
        assert_eq!(key.to_bytes(), dalek.to_bytes());
    }
}
