//! The AptosNet handshake message (wire-format.md, "Handshake message"): which protocols each side speaks, on
//! which chain and network, and the negotiation that follows.
//!
//! [`HandshakeMsg::negotiate`] is pure; [`exchange_handshake`] is the one async step, run inside
//! the Noise stream right after the Noise handshake.

use std::collections::BTreeMap;
use std::fmt;

use bytes::BytesMut;
use netcore::framing::{read_u16_frame, write_u16_frame};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::network::{ChainId, MessagingProtocolVersion, NetworkId};
use crate::protocol::ProtocolId;

/// A set of [`ProtocolId`]s, encoded as AptosNet's bit vector.
///
/// On the wire it is a BCS byte vector (ULEB128 length, then the bytes) of at most 32 bytes,
/// one bit per id: id `i` is bit `0x80 >> (i % 8)` of byte `i / 8`, most significant bit
/// first. We write the shortest vector that holds the highest id; we accept any length up to
/// 32 and reject longer ones. Every bit decodes into the set, known id or not: intersecting
/// with our own set is what drops the ones we do not speak.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProtocolIdSet {
    bits: [u8; MAX_SET_BYTES],
}

impl ProtocolIdSet {
    /// The empty set.
    pub const fn empty() -> Self {
        Self {
            bits: [0; MAX_SET_BYTES],
        }
    }

    /// Adds `id`; returns whether it was absent.
    pub fn insert(&mut self, id: ProtocolId) -> bool {
        let (byte, mask) = position(id);
        let absent = self.bits[byte] & mask == 0;
        self.bits[byte] |= mask;
        absent
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: ProtocolId) -> bool {
        let (byte, mask) = position(id);
        let present = self.bits[byte] & mask != 0;
        self.bits[byte] &= !mask;
        present
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: ProtocolId) -> bool {
        let (byte, mask) = position(id);
        self.bits[byte] & mask != 0
    }

    /// The ids in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        let mut bits = self.bits;
        for (mine, theirs) in bits.iter_mut().zip(other.bits) {
            *mine &= theirs;
        }
        Self { bits }
    }

    /// Whether the set has no ids.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// The number of ids in the set.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = ProtocolId> + '_ {
        (0..=u8::MAX)
            .map(ProtocolId::from_wire)
            .filter(|&id| self.contains(id))
    }

    /// The bytes BCS writes after the length: up to the last non-zero byte.
    fn wire_bytes(&self) -> &[u8] {
        let len = self.bits.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        &self.bits[..len]
    }

    fn from_wire_bytes<E: de::Error>(bytes: &[u8]) -> Result<Self, E> {
        if bytes.len() > MAX_SET_BYTES {
            return Err(E::invalid_length(
                bytes.len(),
                &"a protocol id set of at most 32 bytes",
            ));
        }
        let mut set = Self::empty();
        set.bits[..bytes.len()].copy_from_slice(bytes);
        Ok(set)
    }
}

impl FromIterator<ProtocolId> for ProtocolIdSet {
    fn from_iter<I: IntoIterator<Item = ProtocolId>>(iter: I) -> Self {
        let mut set = Self::empty();
        set.extend(iter);
        set
    }
}

impl Extend<ProtocolId> for ProtocolIdSet {
    fn extend<I: IntoIterator<Item = ProtocolId>>(&mut self, iter: I) {
        for id in iter {
            self.insert(id);
        }
    }
}

impl fmt::Debug for ProtocolIdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for ProtocolIdSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.wire_bytes())
    }
}

impl<'de> Deserialize<'de> for ProtocolIdSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(SetVisitor)
    }
}

/// Accepts the bytes of a [`ProtocolIdSet`], or a sequence of byte values in formats (JSON)
/// that write byte strings that way.
struct SetVisitor;

impl<'de> Visitor<'de> for SetVisitor {
    type Value = ProtocolIdSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a protocol id bit vector of at most 32 bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ProtocolIdSet, E> {
        ProtocolIdSet::from_wire_bytes(bytes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProtocolIdSet, A::Error> {
        let mut bytes = [0u8; MAX_SET_BYTES];
        let mut len = 0;
        while let Some(byte) = seq.next_element::<u8>()? {
            // Count past the limit so the error says how long the input was, but never store
            // beyond it.
            if let Some(slot) = bytes.get_mut(len) {
                *slot = byte;
            }
            len += 1;
        }
        if len > MAX_SET_BYTES {
            return Err(de::Error::invalid_length(len, &self));
        }
        ProtocolIdSet::from_wire_bytes(&bytes[..len])
    }
}

/// The message each side sends right after the Noise handshake (wire-format.md, "Handshake message"). Field order
/// is the BCS order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeMsg {
    /// For each messaging protocol version we speak, the application protocols we speak on it.
    pub supported_protocols: BTreeMap<MessagingProtocolVersion, ProtocolIdSet>,
    /// The chain we are on.
    pub chain_id: ChainId,
    /// The network this connection belongs to.
    pub network_id: NetworkId,
}

impl HandshakeMsg {
    /// A message offering `protocols` on [`MessagingProtocolVersion::V1`], the only version.
    pub fn new(chain_id: ChainId, network_id: NetworkId, protocols: ProtocolIdSet) -> Self {
        Self {
            supported_protocols: BTreeMap::from([(MessagingProtocolVersion::V1, protocols)]),
            chain_id,
            network_id,
        }
    }

    /// Decides what a connection between us (`self`) and `other` speaks: the highest version
    /// both list whose protocol sets intersect, with that intersection.
    ///
    /// Checks in AptosNet's order: [`Error::InvalidChainId`], then [`Error::InvalidNetworkId`],
    /// then [`Error::NoCommonProtocols`]. AptosNet closes the socket on any of them without
    /// sending anything.
    pub fn negotiate(
        &self,
        other: &Self,
    ) -> Result<(MessagingProtocolVersion, ProtocolIdSet), Error> {
        if self.chain_id != other.chain_id {
            return Err(Error::InvalidChainId {
                ours: self.chain_id,
                theirs: other.chain_id,
            });
        }
        if self.network_id != other.network_id {
            return Err(Error::InvalidNetworkId {
                ours: self.network_id,
                theirs: other.network_id,
            });
        }
        highest_common(&self.supported_protocols, &other.supported_protocols)
            .ok_or(Error::NoCommonProtocols)
    }
}

/// Sends `own` and receives the remote's handshake message: `own` BCS-encoded in a u16
/// big-endian frame, a flush, then the remote's frame, decoded. Both sides write before they
/// read, so neither waits on the other.
///
/// Errors: [`Error::Framing`] for I/O failures (EOF included) and for an `own` message over
/// 65,535 bytes; [`Error::Io`] when the flush fails; [`Error::MalformedHandshake`] when the
/// remote's bytes do not decode. Negotiation is left to the caller
/// ([`HandshakeMsg::negotiate`]). Not cancel-safe; run it under the connection set-up timeout.
pub async fn exchange_handshake<S>(
    socket: &mut S,
    own: &HandshakeMsg,
) -> Result<HandshakeMsg, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let bytes = bcs::to_bytes(own).map_err(Error::Serialize)?;
    write_u16_frame(socket, &bytes).await?;
    socket.flush().await?;
    let mut frame = BytesMut::new();
    read_u16_frame(socket, &mut frame).await?;
    bcs::from_bytes(&frame).map_err(|source| Error::MalformedHandshake {
        len: frame.len(),
        source,
    })
}

/// The highest version in both maps whose protocol sets intersect, with the intersection.
/// Generic so that the choice among several versions can be tested while V1 is the only one.
fn highest_common<V: Ord + Copy>(
    ours: &BTreeMap<V, ProtocolIdSet>,
    theirs: &BTreeMap<V, ProtocolIdSet>,
) -> Option<(V, ProtocolIdSet)> {
    // Highest version first: the map iterates in ascending key order.
    ours.iter().rev().find_map(|(version, ours)| {
        let common = ours.intersection(theirs.get(version)?);
        (!common.is_empty()).then_some((*version, common))
    })
}

/// Byte index and bit mask of `id` in the bit vector, most significant bit first.
fn position(id: ProtocolId) -> (usize, u8) {
    let id = id.as_u8();
    (usize::from(id / 8), 0x80 >> (id % 8))
}

/// 256 ids, one bit each. AptosNet rejects longer vectors (its `MAX_BUCKETS`).
const MAX_SET_BYTES: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits are most significant first, and the vector is as short as the highest id allows.
    #[test]
    fn protocol_id_set_layout_is_msb_first_and_minimal() {
        let set: ProtocolIdSet = [
            ProtocolId::CONSENSUS_RPC_BCS,
            ProtocolId::HEALTH_CHECKER_RPC,
        ]
        .into_iter()
        .collect();
        // Length 1; bit 0 is 0x80, bit 5 is 0x04.
        assert_eq!(bcs::to_bytes(&set).unwrap(), [0x01, 0x84]);
        let set: ProtocolIdSet = [ProtocolId::from_wire(9)].into_iter().collect();
        // Length 2; id 9 is byte 1 under 0x40.
        assert_eq!(bcs::to_bytes(&set).unwrap(), [0x02, 0x00, 0x40]);
        assert_eq!(bcs::to_bytes(&ProtocolIdSet::empty()).unwrap(), [0x00]);
    }

    /// A 32-byte vector decodes (trailing zero bytes included); a 33-byte one does not.
    #[test]
    fn protocol_id_set_longer_than_32_bytes_is_rejected() {
        let mut ok = vec![32u8];
        ok.extend([0xff; 31]);
        ok.push(0x01);
        let set: ProtocolIdSet = bcs::from_bytes(&ok).unwrap();
        assert_eq!(set.len(), 31 * 8 + 1);
        assert!(set.contains(ProtocolId::from_wire(255)));

        let mut too_long = vec![33u8];
        too_long.extend([0u8; 33]);
        assert!(bcs::from_bytes::<ProtocolIdSet>(&too_long).is_err());

        let padded: ProtocolIdSet = bcs::from_bytes(&[0x03, 0x04, 0x00, 0x00]).unwrap();
        assert_eq!(
            padded.iter().collect::<Vec<_>>(),
            [ProtocolId::HEALTH_CHECKER_RPC]
        );
    }

    fn set(ids: &[u8]) -> ProtocolIdSet {
        ids.iter().copied().map(ProtocolId::from_wire).collect()
    }

    /// Among several versions, the highest one both sides list with a common protocol wins;
    /// a higher shared version without one is skipped, and a version only one side lists is
    /// ignored.
    #[test]
    fn highest_common_version_is_chosen() {
        let ours = BTreeMap::from([
            (1, set(&[1, 2])),
            (2, set(&[3])),
            (3, set(&[4])),
            (4, set(&[5])),
        ]);
        let theirs = BTreeMap::from([(1, set(&[2, 9])), (2, set(&[3, 4])), (3, set(&[5]))]);
        // 4: only we list it; 3: no common protocol; 2: {3}.
        assert_eq!(highest_common(&ours, &theirs), Some((2, set(&[3]))));
        assert_eq!(highest_common(&theirs, &ours), Some((2, set(&[3]))));
        let disjoint = BTreeMap::from([(1, set(&[7]))]);
        assert_eq!(highest_common(&ours, &disjoint), None);
    }

    /// Set operations behave like a set.
    #[test]
    fn protocol_id_set_operations() {
        let mut a: ProtocolIdSet = [0, 5, 64, 255]
            .map(ProtocolId::from_wire)
            .into_iter()
            .collect();
        let b: ProtocolIdSet = [5, 6, 255].map(ProtocolId::from_wire).into_iter().collect();
        assert_eq!(
            a.intersection(&b).iter().map(u8::from).collect::<Vec<_>>(),
            [5, 255]
        );
        assert!(!a.insert(ProtocolId::from_wire(5)));
        assert!(a.remove(ProtocolId::from_wire(5)));
        assert!(!a.contains(ProtocolId::from_wire(5)));
        assert_eq!(a.len(), 3);
        assert!(a.intersection(&ProtocolIdSet::empty()).is_empty());
    }
}
