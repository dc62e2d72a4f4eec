//! Serde byte strings (in BCS: ULEB128 length, then the bytes), as AptosNet's
//! `serde_bytes` fields write them: used by the binary encodings of
//! [`NetworkAddress`](crate::NetworkAddress) and [`PublicKey`](crate::PublicKey).

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{Serialize, Serializer};

/// Serializes a borrowed byte slice as a serde byte string.
pub(crate) struct BytesRef<'a>(pub(crate) &'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Reads a serde byte string, borrowed or owned, or a newtype around one.
pub(crate) struct ByteBufVisitor;

impl<'de> de::Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_bytes(self)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
        Ok(bytes)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Formats without a native byte string (e.g. serde_json values) give a sequence.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}
