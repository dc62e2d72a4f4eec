//! [`PeerId`]: the 32-byte identity of a node on the network.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::hex32;

/// Identity of a node: an AptosNet account address, 32 bytes.
///
/// On the wire (the Noise prologue, BCS messages) it is the 32 raw bytes with no length prefix.
/// In human-readable formats (config files, logs) it is 64 lowercase hex digits.
///
/// A node that is not in anyone's trusted set is known by the identity derived from its
/// static x25519 key, see [`PeerId::from_identity_public_key`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId([u8; Self::LENGTH]);

impl PeerId {
    /// Length of a PeerId in bytes.
    pub const LENGTH: usize = 32;

    /// The all-zero PeerId, used by tests and as a placeholder in examples.
    pub const ZERO: Self = Self([0; Self::LENGTH]);

    /// Wraps 32 raw bytes.
    pub const fn new(bytes: [u8; Self::LENGTH]) -> Self {
        Self(bytes)
    }

    /// The PeerId AptosNet derives from a static x25519 public key: the last 32 bytes of the
    /// key, which for a 32-byte key is the key itself.
    pub const fn from_identity_public_key(public_key: [u8; 32]) -> Self {
        Self(public_key)
    }

    /// Reads a PeerId from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; Self::LENGTH] = bytes.try_into().map_err(|_| Error::InvalidPeerId {
            input: hex::encode(bytes),
            reason: "expected 32 bytes",
        })?;
        Ok(Self(array))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; Self::LENGTH] {
        &self.0
    }

    /// The raw bytes, by value.
    pub const fn into_bytes(self) -> [u8; Self::LENGTH] {
        self.0
    }

    /// The first 4 bytes in hex: enough to tell peers apart in logs.
    pub fn short_str(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Full hex, so that a logged id can be pasted into a config file.
        hex32::write(&self.0, f)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short_str())
    }
}

impl FromStr for PeerId {
    type Err = Error;

    /// Parses 64 hex digits, with or without a `0x` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex32::parse(s)
            .map(Self)
            .map_err(|reason| Error::InvalidPeerId {
                input: s.to_owned(),
                reason,
            })
    }
}

impl From<[u8; 32]> for PeerId {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for PeerId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            // A fixed-size array is a tuple to serde: BCS writes the 32 bytes with no prefix,
            // as AptosNet's AccountAddress does.
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            s.parse().map_err(de::Error::custom)
        } else {
            <[u8; Self::LENGTH]>::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display and FromStr are inverse, with and without the `0x` prefix.
    #[test]
    fn hex_round_trip() {
        let id = PeerId::new([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert_eq!(format!("0x{text}").parse::<PeerId>().unwrap(), id);
    }

    /// Wrong lengths and non-hex digits are typed errors.
    #[test]
    fn malformed_hex_is_rejected() {
        assert!(matches!(
            "abc".parse::<PeerId>(),
            Err(Error::InvalidPeerId { .. })
        ));
        let not_hex = "zz".repeat(32);
        assert!(matches!(
            not_hex.parse::<PeerId>(),
            Err(Error::InvalidPeerId { .. })
        ));
        assert!(PeerId::from_slice(&[0; 31]).is_err());
    }
}
