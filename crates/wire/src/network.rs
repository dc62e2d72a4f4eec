//! Identifiers exchanged in the handshake: [`NetworkId`], [`ChainId`] and
//! [`MessagingProtocolVersion`].

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Which of a node's networks a connection belongs to.
///
/// On the wire (BCS) it keeps AptosNet's legacy encoding (wire-format.md, "Handshake
/// message"): `Validator` is `00`, `Public` is `01`, and `Vfn` is variant 2 carrying the
/// string `"vfn"` (`02 03 76 66 6e`). Decoding accepts what AptosNet's decoder accepts, so
/// that a later change of AptosNet's encoding does not break handshakes: variant 2 with any
/// string (`Private(name)`, which AptosNet reads as its VFN network), and the migration tags
/// 3 (`Vfn`) and 4 (`NewPublic`, read as `Public`). Any other tag fails to decode. In
/// human-readable formats (config files) it is [`NetworkId::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkId {
    /// The validators' own network (mutual authentication).
    Validator,
    /// Between validators and their full nodes.
    Vfn,
    /// The public full-node network.
    Public,
}

impl NetworkId {
    /// `"validator"`, `"vfn"` or `"public"`: the name AptosNet uses in configs, usable as a
    /// metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Vfn => "vfn",
            Self::Public => "public",
        }
    }

    /// Whether this is the validator network.
    pub const fn is_validator_network(self) -> bool {
        matches!(self, Self::Validator)
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NetworkId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serializer.serialize_str(self.as_str());
        }
        // The names are those of AptosNet's legacy enum `{ Validator, Public, Private(String) }`;
        // BCS writes only the variant index and the string.
        match self {
            Self::Validator => serializer.serialize_unit_variant(LEGACY_NAME, 0, "Validator"),
            Self::Public => serializer.serialize_unit_variant(LEGACY_NAME, 1, "Public"),
            Self::Vfn => {
                serializer.serialize_newtype_variant(LEGACY_NAME, 2, "Private", VFN_PRIVATE_NAME)
            }
        }
    }
}

impl<'de> Deserialize<'de> for NetworkId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let name = String::deserialize(deserializer)?;
            return match name.as_str() {
                "validator" => Ok(Self::Validator),
                "vfn" => Ok(Self::Vfn),
                "public" => Ok(Self::Public),
                other => Err(de::Error::unknown_variant(
                    other,
                    &["validator", "vfn", "public"],
                )),
            };
        }
        match LegacyNetworkId::deserialize(deserializer)? {
            LegacyNetworkId::Validator => Ok(Self::Validator),
            LegacyNetworkId::Public => Ok(Self::Public),
            // AptosNet has one private network, and reads any name as it.
            LegacyNetworkId::Private(_) | LegacyNetworkId::Vfn => Ok(Self::Vfn),
            LegacyNetworkId::NewPublic => Ok(Self::Public),
        }
    }
}

/// AptosNet's on-the-wire network id, as its decoder reads it: the legacy variants 0-2 and
/// the migration variants 3 and 4, which no AptosNet node writes yet.
#[derive(Deserialize)]
#[serde(rename = "NetworkId")]
enum LegacyNetworkId {
    Validator,
    Public,
    // Only read by the decoder's match; its name is not needed.
    Private(#[allow(dead_code)] String),
    Vfn,
    NewPublic,
}

/// The chain a node is on; both ends of a connection must agree. One byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(u8);

impl ChainId {
    /// Wraps a chain id. Every byte is a valid chain id.
    pub const fn new(id: u8) -> Self {
        Self(id)
    }

    /// The id's byte.
    pub const fn id(self) -> u8 {
        self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Version of the messaging protocol (the frame and message formats). V1 is the only one;
/// versions are ordered, and negotiation picks the highest both ends support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MessagingProtocolVersion {
    /// Variant 0: the AptosNet v1 format in this crate.
    V1,
}

impl MessagingProtocolVersion {
    /// `"v1"`, usable as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
        }
    }
}

impl fmt::Display for MessagingProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legacy enum's name; BCS does not write it, but serde wants one.
const LEGACY_NAME: &str = "NetworkId";

/// The string AptosNet's `Private` variant carries for the VFN network.
const VFN_PRIVATE_NAME: &str = "vfn";

#[cfg(test)]
mod tests {
    use super::*;

    /// The legacy encoding is exact; decoding accepts what AptosNet's decoder accepts.
    #[test]
    fn network_id_uses_the_legacy_encoding() {
        assert_eq!(bcs::to_bytes(&NetworkId::Validator).unwrap(), [0x00]);
        assert_eq!(bcs::to_bytes(&NetworkId::Public).unwrap(), [0x01]);
        assert_eq!(
            bcs::to_bytes(&NetworkId::Vfn).unwrap(),
            [0x02, 0x03, b'v', b'f', b'n']
        );
        for id in [NetworkId::Validator, NetworkId::Vfn, NetworkId::Public] {
            let bytes = bcs::to_bytes(&id).unwrap();
            assert_eq!(bcs::from_bytes::<NetworkId>(&bytes).unwrap(), id);
        }
        // As AptosNet's decoder: variant 2 with any name is the VFN network, and the
        // migration tags 3 (Vfn) and 4 (NewPublic) read as Vfn and Public.
        assert_eq!(
            bcs::from_bytes::<NetworkId>(&[0x02, 0x03, b'a', b'b', b'c']).unwrap(),
            NetworkId::Vfn
        );
        assert_eq!(
            bcs::from_bytes::<NetworkId>(&[0x03]).unwrap(),
            NetworkId::Vfn
        );
        assert_eq!(
            bcs::from_bytes::<NetworkId>(&[0x04]).unwrap(),
            NetworkId::Public
        );
        // Unknown tags.
        assert!(bcs::from_bytes::<NetworkId>(&[0x05]).is_err());
        assert!(bcs::from_bytes::<NetworkId>(&[0xff]).is_err());
    }

    /// In JSON the id is its name, so configs read naturally.
    #[test]
    fn network_id_is_a_name_in_json() {
        assert_eq!(serde_json::to_string(&NetworkId::Vfn).unwrap(), "\"vfn\"");
        assert_eq!(
            serde_json::from_str::<NetworkId>("\"validator\"").unwrap(),
            NetworkId::Validator
        );
        assert!(serde_json::from_str::<NetworkId>("\"private\"").is_err());
    }

    /// V1 is variant 0 and a chain id is its byte.
    #[test]
    fn version_and_chain_id_are_single_bytes() {
        assert_eq!(bcs::to_bytes(&MessagingProtocolVersion::V1).unwrap(), [0]);
        assert_eq!(bcs::to_bytes(&ChainId::new(4)).unwrap(), [4]);
    }
}
