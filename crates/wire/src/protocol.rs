//! [`ProtocolId`]: which application a message belongs to, and how its payload is encoded;
//! [`RequestId`]: the id pairing an RPC response with its request.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Error};
use crate::limits::MAX_MESSAGE_SIZE;

/// Identifies the application protocol a message belongs to (wire-format.md, "Protocol ids and payload encodings"). One byte on
/// the wire.
///
/// AptosNet defines ids 0 to 28, available as associated constants (`ProtocolId::MEMPOOL_RPC`,
/// …). peerlane's own protocols use ids from 64 up, made with [`ProtocolId::custom`]. Any byte
/// decodes: whether an unknown id is acceptable is the peer layer's decision, not a parse
/// error.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProtocolId(u8);

impl ProtocolId {
    /// 0: consensus RPC, BCS.
    pub const CONSENSUS_RPC_BCS: Self = Self(0);
    /// 1: consensus direct send, BCS.
    pub const CONSENSUS_DIRECT_SEND_BCS: Self = Self(1);
    /// 2: mempool direct send, LZ4-compressed BCS.
    pub const MEMPOOL_DIRECT_SEND: Self = Self(2);
    /// 3: state sync direct send, BCS.
    pub const STATE_SYNC_DIRECT_SEND: Self = Self(3);
    /// 4: discovery direct send, BCS.
    pub const DISCOVERY_DIRECT_SEND: Self = Self(4);
    /// 5: health checker RPC (Ping/Pong), BCS.
    pub const HEALTH_CHECKER_RPC: Self = Self(5);
    /// 6: consensus direct send, JSON.
    pub const CONSENSUS_DIRECT_SEND_JSON: Self = Self(6);
    /// 7: consensus RPC, JSON.
    pub const CONSENSUS_RPC_JSON: Self = Self(7);
    /// 8: storage service RPC, BCS.
    pub const STORAGE_SERVICE_RPC: Self = Self(8);
    /// 9: mempool RPC, BCS.
    pub const MEMPOOL_RPC: Self = Self(9);
    /// 10: peer monitoring service RPC, BCS.
    pub const PEER_MONITORING_SERVICE_RPC: Self = Self(10);
    /// 11: consensus RPC, LZ4-compressed BCS.
    pub const CONSENSUS_RPC_COMPRESSED: Self = Self(11);
    /// 12: consensus direct send, LZ4-compressed BCS.
    pub const CONSENSUS_DIRECT_SEND_COMPRESSED: Self = Self(12);
    /// 13: network benchmark direct send, BCS.
    pub const NETBENCH_DIRECT_SEND: Self = Self(13);
    /// 14: network benchmark RPC, BCS.
    pub const NETBENCH_RPC: Self = Self(14);
    /// 15: DKG direct send, LZ4-compressed BCS.
    pub const DKG_DIRECT_SEND_COMPRESSED: Self = Self(15);
    /// 16: DKG direct send, BCS.
    pub const DKG_DIRECT_SEND_BCS: Self = Self(16);
    /// 17: DKG direct send "JSON". AptosNet encodes it as BCS despite the name, and so do we.
    pub const DKG_DIRECT_SEND_JSON: Self = Self(17);
    /// 18: DKG RPC, LZ4-compressed BCS.
    pub const DKG_RPC_COMPRESSED: Self = Self(18);
    /// 19: DKG RPC, BCS.
    pub const DKG_RPC_BCS: Self = Self(19);
    /// 20: DKG RPC "JSON". AptosNet encodes it as BCS despite the name, and so do we.
    pub const DKG_RPC_JSON: Self = Self(20);
    /// 21: JWK consensus direct send, LZ4-compressed BCS.
    pub const JWK_CONSENSUS_DIRECT_SEND_COMPRESSED: Self = Self(21);
    /// 22: JWK consensus direct send, BCS.
    pub const JWK_CONSENSUS_DIRECT_SEND_BCS: Self = Self(22);
    /// 23: JWK consensus direct send "JSON". AptosNet encodes it as BCS despite the name.
    pub const JWK_CONSENSUS_DIRECT_SEND_JSON: Self = Self(23);
    /// 24: JWK consensus RPC, LZ4-compressed BCS.
    pub const JWK_CONSENSUS_RPC_COMPRESSED: Self = Self(24);
    /// 25: JWK consensus RPC, BCS.
    pub const JWK_CONSENSUS_RPC_BCS: Self = Self(25);
    /// 26: JWK consensus RPC "JSON". AptosNet encodes it as BCS despite the name.
    pub const JWK_CONSENSUS_RPC_JSON: Self = Self(26);
    /// 27: consensus observer direct send, LZ4-compressed BCS.
    pub const CONSENSUS_OBSERVER: Self = Self(27);
    /// 28: consensus observer RPC, BCS.
    pub const CONSENSUS_OBSERVER_RPC: Self = Self(28);

    /// 64: peerlane, direct send: one `Disconnect { reason }` sent before a refusal or a
    /// close, so that the other side can read why (only to peers that advertised it).
    pub const PEERLANE_DISCONNECT: Self = Self(64);
    /// 65: peerlane, direct send: the sender's chain status (best and irreversible block),
    /// sent when a connection starts and re-announced on change.
    pub const CHAIN_STATUS: Self = Self(65);
    /// 66: peerlane, RPC: peer exchange (a sample of the peers the answering node knows).
    pub const PEER_EXCHANGE_RPC: Self = Self(66);
    /// 67: peerlane, direct send: routing-graph synchronisation (signed edges).
    pub const ROUTING_SYNC: Self = Self(67);
    /// 68: peerlane, direct send: routed messages, forwarded hop by hop to their target.
    pub const ROUTED: Self = Self(68);

    /// peerlane's own protocols, in id order: never sent to a peer that did not advertise them.
    pub const PEERLANE: [Self; PEERLANE_NAMES.len()] = [
        Self::PEERLANE_DISCONNECT,
        Self::CHAIN_STATUS,
        Self::PEER_EXCHANGE_RPC,
        Self::ROUTING_SYNC,
        Self::ROUTED,
    ];

    /// Every id AptosNet defines, in id order.
    pub const KNOWN: [Self; KNOWN_NAMES.len()] = {
        let mut ids = [Self(0); KNOWN_NAMES.len()];
        let mut i = 0;
        while i < ids.len() {
            ids[i] = Self(i as u8);
            i += 1;
        }
        ids
    };

    /// The first id available to peerlane's own protocols. AptosNet peers ignore ids they do
    /// not know in the handshake's protocol set, and we only send such ids to peers that
    /// listed them.
    pub const FIRST_CUSTOM: u8 = 64;

    /// A peerlane protocol id. Fails with [`Error::ReservedProtocolId`] below
    /// [`ProtocolId::FIRST_CUSTOM`], the range AptosNet owns.
    pub const fn custom(id: u8) -> Result<Self, Error> {
        if id < Self::FIRST_CUSTOM {
            Err(Error::ReservedProtocolId { id })
        } else {
            Ok(Self(id))
        }
    }

    /// Any id as read from the wire, known or not. To name a protocol of your own, use
    /// [`ProtocolId::custom`].
    pub const fn from_wire(id: u8) -> Self {
        Self(id)
    }

    /// The id's byte on the wire.
    pub const fn as_u8(self) -> u8 {
        self.0
    }

    /// Whether AptosNet defines this id (0 to 28).
    pub const fn is_known(self) -> bool {
        (self.0 as usize) < KNOWN_NAMES.len()
    }

    /// AptosNet's name for the id (`"ConsensusRpcBcs"`, …), peerlane's for its own
    /// (`"PeerlaneDisconnect"`, …), or `"Unknown"`: usable as a metric label.
    pub const fn name(self) -> &'static str {
        if self.is_known() {
            KNOWN_NAMES[self.0 as usize]
        } else if self.0 >= Self::FIRST_CUSTOM
            && ((self.0 - Self::FIRST_CUSTOM) as usize) < PEERLANE_NAMES.len()
        {
            PEERLANE_NAMES[(self.0 - Self::FIRST_CUSTOM) as usize]
        } else {
            "Unknown"
        }
    }

    /// How payloads of this protocol are encoded (wire-format.md, "Protocol ids and payload encodings"). Unknown and custom ids
    /// use plain BCS.
    pub const fn encoding(self) -> Encoding {
        match self {
            Self::CONSENSUS_DIRECT_SEND_JSON | Self::CONSENSUS_RPC_JSON => Encoding::Json,
            Self::MEMPOOL_DIRECT_SEND
            | Self::CONSENSUS_RPC_COMPRESSED
            | Self::CONSENSUS_DIRECT_SEND_COMPRESSED
            | Self::DKG_DIRECT_SEND_COMPRESSED
            | Self::DKG_RPC_COMPRESSED
            | Self::JWK_CONSENSUS_DIRECT_SEND_COMPRESSED
            | Self::JWK_CONSENSUS_RPC_COMPRESSED
            | Self::CONSENSUS_OBSERVER => Encoding::CompressedBcs,
            _ => Encoding::Bcs,
        }
    }

    /// Encodes an application value as this protocol's payload.
    ///
    /// Fails with [`Error::EncodePayload`] if the encoder does, and for compressed protocols
    /// with [`Error::UncompressedTooLarge`] when the BCS bytes exceed [`MAX_COMPRESS_SIZE`]
    /// (AptosNet's limit, 64 MiB − 2.125 MiB), which an AptosNet receiver would not decompress.
    pub fn to_bytes<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, Error> {
        let encode_err = |source: BoxError| Error::EncodePayload {
            protocol: *self,
            source,
        };
        match self.encoding() {
            Encoding::Bcs => {
                if let Some(bytes) =
                    with_scratch_bcs(value, self.bcs_depth_limit(), Bytes::copy_from_slice)
                {
                    return Ok(bytes);
                }
                bcs_to_vec(value, self.bcs_depth_limit())
                    .map(Bytes::from)
                    .map_err(|e| encode_err(e.into()))
            }
            Encoding::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| encode_err(e.into())),
            Encoding::CompressedBcs => {
                // A payload that fits the scratch buffer is far below `MAX_COMPRESS_SIZE`.
                if let Some(compressed) = with_scratch_bcs(
                    value,
                    self.bcs_depth_limit(),
                    lz4_flex::block::compress_prepend_size,
                ) {
                    return Ok(Bytes::from(compressed));
                }
                let raw =
                    bcs_to_vec(value, self.bcs_depth_limit()).map_err(|e| encode_err(e.into()))?;
                if raw.len() > MAX_COMPRESS_SIZE {
                    return Err(Error::UncompressedTooLarge {
                        len: raw.len(),
                        max: MAX_COMPRESS_SIZE,
                    });
                }
                // A 4-byte little-endian uncompressed size, then one LZ4 block: the layout
                // aptos-compression writes (lz4 `block::compress` with `prepend_size`).
                Ok(Bytes::from(lz4_flex::block::compress_prepend_size(&raw)))
            }
        }
    }

    /// Decodes this protocol's payload into an application value.
    ///
    /// Fails with [`Error::DecodePayload`] on malformed input. For compressed protocols the
    /// declared uncompressed size is checked first ([`Error::UncompressedTooLarge`]), so a
    /// small payload cannot make us allocate more than 64 MiB, nor more than 255 times its
    /// own size.
    pub fn from_bytes<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error> {
        let decode_err = |source: BoxError| Error::DecodePayload {
            protocol: *self,
            len: bytes.len(),
            source,
        };
        match self.encoding() {
            Encoding::Bcs => bcs::from_bytes_with_limit(bytes, self.bcs_depth_limit())
                .map_err(|e| decode_err(e.into())),
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| decode_err(e.into())),
            Encoding::CompressedBcs => {
                let raw = decompress(bytes).map_err(|e| match e {
                    DecompressFailure::TooLarge { len, max } => {
                        Error::UncompressedTooLarge { len, max }
                    }
                    DecompressFailure::Malformed(source) => decode_err(source),
                })?;
                bcs::from_bytes_with_limit(&raw, self.bcs_depth_limit())
                    .map_err(|e| decode_err(e.into()))
            }
        }
    }

    /// The BCS container depth limit AptosNet applies to this protocol's payloads: tighter for
    /// mempool, whose payloads carry user input.
    const fn bcs_depth_limit(self) -> usize {
        match self {
            Self::MEMPOOL_DIRECT_SEND | Self::MEMPOOL_RPC => USER_INPUT_RECURSION_LIMIT,
            _ => RECURSION_LIMIT,
        }
    }
}

impl From<ProtocolId> for u8 {
    fn from(id: ProtocolId) -> Self {
        id.0
    }
}

impl fmt::Display for ProtocolId {
    /// The name for AptosNet's and peerlane's ids, `unknown(<id>)` for the others.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "Unknown" => write!(f, "unknown({})", self.0),
            name => f.write_str(name),
        }
    }
}

impl fmt::Debug for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// How a protocol's payloads are encoded, see [`ProtocolId::encoding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Plain BCS.
    Bcs,
    /// serde_json.
    Json,
    /// BCS, then one LZ4 block prefixed by the uncompressed size as a 4-byte little-endian
    /// integer.
    CompressedBcs,
}

impl Encoding {
    /// A short lowercase name, usable as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bcs => "bcs",
            Self::Json => "json",
            Self::CompressedBcs => "compressed_bcs",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pairs an RPC response with its request. Allocated by the requester, per connection; one u32
/// on the wire (little-endian, as BCS writes integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u32);

impl RequestId {
    /// The id after this one, wrapping at `u32::MAX`.
    pub const fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// BCS-encodes `value` into a vector of exactly its encoded size, with the depth limit
/// `limit`, for payloads larger than the scratch buffer. Sizing first walks the value without copying its bytes; growing from an empty
/// vector instead reallocated (and copied) about log2(len) times, page-faulting afresh for
/// each large buffer, and left spare capacity that made `Bytes::from` allocate a header.
fn bcs_to_vec<T: Serialize + ?Sized>(value: &T, limit: usize) -> Result<Vec<u8>, bcs::Error> {
    let len = bcs::serialized_size_with_limit(value, limit)?;
    let mut out = Vec::with_capacity(len);
    bcs::serialize_into_with_limit(&mut out, value, limit)?;
    Ok(out)
}

/// Why decompression failed, before it becomes an [`Error`] naming the protocol.
enum DecompressFailure {
    TooLarge { len: usize, max: usize },
    Malformed(BoxError),
}

/// Payloads up to this many BCS bytes are encoded in one pass into a per-thread scratch
/// buffer, then copied into an allocation of their exact size.
const SCRATCH_LEN: usize = 4096;

thread_local! {
    static BCS_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `value` as BCS into the per-thread scratch buffer and hands the bytes to `use_bytes`.
///
/// `None` when the value does not fit in [`SCRATCH_LEN`] bytes, when encoding fails (the
/// caller's sized path then reports the error), or when the buffer is already in use (a
/// `Serialize` impl that encodes a payload itself). Small payloads, the common case, so cost
/// one encoding pass and one exact-size allocation instead of a sizing pass, an encoding pass
/// and the allocation.
fn with_scratch_bcs<T: Serialize + ?Sized, R>(
    value: &T,
    limit: usize,
    use_bytes: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    BCS_SCRATCH
        .try_with(|cell| {
            let mut scratch = cell.try_borrow_mut().ok()?;
            if scratch.len() < SCRATCH_LEN {
                scratch.resize(SCRATCH_LEN, 0);
            }
            let mut rest: &mut [u8] = &mut scratch[..];
            // Writing past the end of the slice fails, which is how a large value is noticed.
            bcs::serialize_into_with_limit(&mut rest, value, limit).ok()?;
            let len = SCRATCH_LEN - rest.len();
            Some(use_bytes(&scratch[..len]))
        })
        .ok()
        .flatten()
}

/// Undoes `compress_prepend_size`, checking the declared size before allocating for it.
fn decompress(bytes: &[u8]) -> Result<Vec<u8>, DecompressFailure> {
    let (declared, block) = lz4_flex::block::uncompressed_size(bytes)
        .map_err(|e| DecompressFailure::Malformed(e.into()))?;
    // Each input byte yields at most 255 output bytes in LZ4 (a match length extension byte
    // of 0xff), so a larger claim is a lie we need not allocate for.
    let max = MAX_UNCOMPRESSED_SIZE.min(block.len().saturating_mul(MAX_LZ4_EXPANSION));
    if declared > max {
        return Err(DecompressFailure::TooLarge { len: declared, max });
    }
    let mut raw = vec![0; declared];
    let written = lz4_flex::block::decompress_into(block, &mut raw)
        .map_err(|e| DecompressFailure::Malformed(e.into()))?;
    if written != declared {
        return Err(DecompressFailure::Malformed(
            format!("lz4 block holds {written} bytes, its prefix declares {declared}").into(),
        ));
    }
    Ok(raw)
}

/// AptosNet's names for ids 0 to 28, indexed by id.
/// Names of peerlane's own protocols, from id 64 ([`ProtocolId::PEERLANE`]).
const PEERLANE_NAMES: [&str; 5] = [
    "PeerlaneDisconnect",
    "ChainStatus",
    "PeerExchangeRpc",
    "RoutingSync",
    "Routed",
];

const KNOWN_NAMES: [&str; 29] = [
    "ConsensusRpcBcs",
    "ConsensusDirectSendBcs",
    "MempoolDirectSend",
    "StateSyncDirectSend",
    "DiscoveryDirectSend",
    "HealthCheckerRpc",
    "ConsensusDirectSendJson",
    "ConsensusRpcJson",
    "StorageServiceRpc",
    "MempoolRpc",
    "PeerMonitoringServiceRpc",
    "ConsensusRpcCompressed",
    "ConsensusDirectSendCompressed",
    "NetbenchDirectSend",
    "NetbenchRpc",
    "DKGDirectSendCompressed",
    "DKGDirectSendBcs",
    "DKGDirectSendJson",
    "DKGRpcCompressed",
    "DKGRpcBcs",
    "DKGRpcJson",
    "JWKConsensusDirectSendCompressed",
    "JWKConsensusDirectSendBcs",
    "JWKConsensusDirectSendJson",
    "JWKConsensusRpcCompressed",
    "JWKConsensusRpcBcs",
    "JWKConsensusRpcJson",
    "ConsensusObserver",
    "ConsensusObserverRpc",
];

/// Largest uncompressed payload we decompress: the maximum message size, since a payload
/// cannot be larger than the message carrying it once decoded.
const MAX_UNCOMPRESSED_SIZE: usize = MAX_MESSAGE_SIZE;

/// Largest uncompressed payload we compress: AptosNet's `MAX_APPLICATION_MESSAGE_SIZE`
/// (64 MiB − 128 KiB of metadata − 2 MiB of padding = 64,880,640 bytes), the most an AptosNet
/// peer decompresses; a larger payload is refused here rather than by the peer.
pub const MAX_COMPRESS_SIZE: usize = MAX_MESSAGE_SIZE - 128 * 1024 - 2 * 1024 * 1024;

/// LZ4's worst-case expansion ratio (see `decompress`).
const MAX_LZ4_EXPANSION: usize = 255;

/// BCS container depth limit for payloads, as in aptos-core's `network/framework`
/// (`RECURSION_LIMIT`).
const RECURSION_LIMIT: usize = 64;

/// Tighter depth limit for payloads carrying user input (aptos-core's
/// `USER_INPUT_RECURSION_LIMIT`).
const USER_INPUT_RECURSION_LIMIT: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every known id has its own name, and the constants sit at the ids the spec gives.
    #[test]
    fn known_ids_have_names_and_the_spec_values() {
        assert_eq!(ProtocolId::CONSENSUS_RPC_BCS.as_u8(), 0);
        assert_eq!(ProtocolId::HEALTH_CHECKER_RPC.name(), "HealthCheckerRpc");
        assert_eq!(ProtocolId::DKG_RPC_JSON.as_u8(), 20);
        assert_eq!(ProtocolId::JWK_CONSENSUS_RPC_JSON.as_u8(), 26);
        assert_eq!(ProtocolId::CONSENSUS_OBSERVER_RPC.as_u8(), 28);
        assert_eq!(
            ProtocolId::CONSENSUS_OBSERVER_RPC.name(),
            "ConsensusObserverRpc"
        );
        assert!(ProtocolId::KNOWN.iter().all(|id| id.is_known()));
        assert!(!ProtocolId::from_wire(29).is_known());
        assert_eq!(ProtocolId::from_wire(29).name(), "Unknown");
        assert_eq!(ProtocolId::from_wire(200).to_string(), "unknown(200)");
    }

    /// peerlane's own ids sit from 64 up, in the custom range, each with its own name.
    #[test]
    fn peerlane_ids_are_custom_and_named() {
        for (i, id) in ProtocolId::PEERLANE.iter().enumerate() {
            assert_eq!(id.as_u8(), ProtocolId::FIRST_CUSTOM + i as u8);
            assert_eq!(ProtocolId::custom(id.as_u8()).unwrap(), *id);
            assert!(!id.is_known());
            assert_ne!(id.name(), "Unknown");
        }
        assert_eq!(ProtocolId::ROUTED.to_string(), "Routed");
        assert_eq!(ProtocolId::from_wire(69).name(), "Unknown");
    }

    /// Encodings follow wire-format.md ("Protocol ids and payload encodings"), including the "JSON"-named DKG/JWK ids being BCS.
    #[test]
    fn encodings_follow_the_spec() {
        let json: Vec<u8> = ProtocolId::KNOWN
            .iter()
            .filter(|id| id.encoding() == Encoding::Json)
            .map(|id| id.as_u8())
            .collect();
        assert_eq!(json, [6, 7]);
        let compressed: Vec<u8> = ProtocolId::KNOWN
            .iter()
            .filter(|id| id.encoding() == Encoding::CompressedBcs)
            .map(|id| id.as_u8())
            .collect();
        assert_eq!(compressed, [2, 11, 12, 15, 18, 21, 24, 27]);
        assert_eq!(ProtocolId::from_wire(70).encoding(), Encoding::Bcs);
    }

    /// Custom ids start at 64; below that is AptosNet's range.
    #[test]
    fn custom_ids_below_64_are_rejected() {
        assert!(matches!(
            ProtocolId::custom(63),
            Err(Error::ReservedProtocolId { id: 63 })
        ));
        assert_eq!(ProtocolId::custom(64).unwrap().as_u8(), 64);
        assert_eq!(ProtocolId::custom(255).unwrap().as_u8(), 255);
    }

    /// Each encoding round trips, and the compressed one is the size-prefixed LZ4 block.
    #[test]
    fn payload_encodings_round_trip() {
        let value = (7u32, String::from("peerlane"), vec![1u8; 300]);
        for id in [
            ProtocolId::HEALTH_CHECKER_RPC,
            ProtocolId::CONSENSUS_RPC_JSON,
            ProtocolId::CONSENSUS_OBSERVER,
        ] {
            let bytes = id.to_bytes(&value).unwrap();
            let back: (u32, String, Vec<u8>) = id.from_bytes(&bytes).unwrap();
            assert_eq!(back, value, "{id}");
        }
        let compressed = ProtocolId::MEMPOOL_DIRECT_SEND.to_bytes(&value).unwrap();
        let raw = bcs::to_bytes(&value).unwrap();
        // The prefix is the uncompressed length, little-endian.
        assert_eq!(compressed[..4], (raw.len() as u32).to_le_bytes());
        assert!(compressed.len() < raw.len());
    }

    /// The pre-sized encoder writes what `bcs::to_bytes` writes, and keeps each protocol's
    /// depth limit.
    #[test]
    fn bcs_payloads_match_bcs_and_keep_the_depth_limit() {
        #[derive(Serialize)]
        struct Nest(Option<Box<Self>>);
        fn nest(depth: usize) -> Nest {
            (1..depth).fold(Nest(None), |inner, _| Nest(Some(Box::new(inner))))
        }

        let value = (7u32, vec![3u8; 5000], String::from("peerlane"));
        let bytes = ProtocolId::CONSENSUS_RPC_BCS.to_bytes(&value).unwrap();
        assert_eq!(bytes, bcs::to_bytes(&value).unwrap());

        let deep = nest(40);
        assert!(ProtocolId::CONSENSUS_RPC_BCS.to_bytes(&deep).is_ok());
        for id in [ProtocolId::MEMPOOL_RPC, ProtocolId::MEMPOOL_DIRECT_SEND] {
            let err = id.to_bytes(&deep).unwrap_err();
            assert!(matches!(err, Error::EncodePayload { .. }), "{id}: {err:?}");
        }
        assert!(ProtocolId::MEMPOOL_RPC.to_bytes(&nest(32)).is_ok());
    }

    /// Both encoders (the scratch buffer's for small payloads, the sized one above it) write
    /// what `bcs::to_bytes` writes, compressed or not, on either side of the scratch size.
    #[test]
    fn bcs_and_compressed_payloads_match_bcs_at_every_size() {
        // A 2-byte length prefix from 128 bytes on: these are 4,095, 4,096 and 4,097 bytes.
        for len in [0, 1, 127, 128, 4093, 4094, 4095, 10_000] {
            let value = vec![0xa5u8; len];
            let raw = bcs::to_bytes(&value).unwrap();
            let bytes = ProtocolId::CONSENSUS_DIRECT_SEND_BCS
                .to_bytes(&value)
                .unwrap();
            assert_eq!(bytes, raw, "{len}");
            let compressed = ProtocolId::MEMPOOL_DIRECT_SEND.to_bytes(&value).unwrap();
            assert_eq!(
                compressed,
                lz4_flex::block::compress_prepend_size(&raw),
                "{len}"
            );
        }
    }

    /// A compressed payload whose prefix claims more than 64 MiB fails before allocating.
    #[test]
    fn lz4_bomb_is_rejected_before_allocation() {
        // Declared size 0xffff_ffff (4 GiB), then a few bytes of "block".
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x01, 0x00];
        let err = ProtocolId::CONSENSUS_OBSERVER
            .from_bytes::<Vec<u8>>(&bomb)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::UncompressedTooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
        // 64 MiB declared from 4 block bytes: within 64 MiB but not within 255 × 4.
        let mut small_bomb = (64u32 << 20).to_le_bytes().to_vec();
        small_bomb.extend_from_slice(&[0x1f, 0x00, 0x01, 0x00]);
        let err = ProtocolId::CONSENSUS_OBSERVER
            .from_bytes::<Vec<u8>>(&small_bomb)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::UncompressedTooLarge { len, max: 1020 } if len == 64 << 20
        ));
    }

    /// Compression stops at AptosNet's limit (64,880,640 bytes), so a peer never gets a payload
    /// it refuses to decompress; one byte less is compressed.
    #[test]
    fn compression_stops_at_aptos_limit() {
        assert_eq!(MAX_COMPRESS_SIZE, 64_880_640);
        // BCS of a Vec<u8> is a ULEB128 length (4 bytes here) then the bytes.
        let fits = vec![0u8; MAX_COMPRESS_SIZE - 4];
        assert!(ProtocolId::CONSENSUS_OBSERVER.to_bytes(&fits).is_ok());
        let over = vec![0u8; MAX_COMPRESS_SIZE - 3];
        let err = ProtocolId::CONSENSUS_OBSERVER.to_bytes(&over).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UncompressedTooLarge { len, max: MAX_COMPRESS_SIZE } if len == MAX_COMPRESS_SIZE + 1
            ),
            "{err:?}"
        );
    }

    /// A block that decompresses to fewer bytes than its prefix declares is malformed.
    #[test]
    fn lz4_size_mismatch_is_a_decode_error() {
        let mut payload = lz4_flex::block::compress_prepend_size(&[1, 2, 3]);
        payload[0] = 4;
        let err = ProtocolId::CONSENSUS_OBSERVER
            .from_bytes::<Vec<u8>>(&payload)
            .unwrap_err();
        assert!(matches!(err, Error::DecodePayload { .. }), "{err:?}");
    }
}
