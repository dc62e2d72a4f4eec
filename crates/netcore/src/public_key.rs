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

    /// Parses 64 hex digits, with or without a `0x` prefix.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        hex32::parse(text)
            .map(Self)
            .map_err(|reason| Error::InvalidPublicKey {
                input: text.to_owned(),
                reason,
            })
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
