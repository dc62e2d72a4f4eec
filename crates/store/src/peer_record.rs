//! What the peer store keeps about a peer: [`PeerKey`], [`PeerRecord`] and their parts, and
//! [`IpBanKey`] / [`Ban`] for bans. Plain data with BCS layouts; the rules that change them
//! are [`PeerTable`](crate::PeerTable)'s.

use std::net::IpAddr;

use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// Which network a peer record belongs to. The names (and BCS tags 0, 1, 2) match
/// `wire::NetworkId`'s `as_str` (`"validator"`, `"vfn"`, `"public"`), so the facade maps one
/// onto the other by name; this crate does not depend on `wire`. Never reorder the variants:
/// the tag is part of every peer key on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The validators' own network.
    Validator,
    /// Between validators and their full nodes.
    Vfn,
    /// The public full-node network.
    Public,
}

impl Network {
    /// `"validator"`, `"vfn"` or `"public"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Vfn => "vfn",
            Self::Public => "public",
        }
    }

    /// The network named `name` (as [`as_str`](Self::as_str) writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Validator, Self::Vfn, Self::Public]
            .into_iter()
            .find(|network| network.as_str() == name)
    }

    const fn tag(self) -> u8 {
        match self {
            Self::Validator => 0,
            Self::Vfn => 1,
            Self::Public => 2,
        }
    }

    const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::Validator),
            1 => Some(Self::Vfn),
            2 => Some(Self::Public),
            _ => None,
        }
    }
}

/// A peer on one network: the key of the peer store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    /// The network.
    pub network: Network,
    /// The peer.
    pub peer_id: PeerId,
}

impl PeerKey {
    /// Length of [`to_bytes`](Self::to_bytes).
    pub const LENGTH: usize = 1 + PeerId::LENGTH;

    /// `peer_id` on `network`.
    pub const fn new(network: Network, peer_id: PeerId) -> Self {
        Self { network, peer_id }
    }

    /// The key on disk: the network's tag, then the 32 bytes of the PeerId.
    pub fn to_bytes(&self) -> [u8; Self::LENGTH] {
        let mut bytes = [0; Self::LENGTH];
        bytes[0] = self.network.tag();
        bytes[1..].copy_from_slice(self.peer_id.as_bytes());
        bytes
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` for any other layout.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, id) = bytes.split_first()?;
        Some(Self {
            network: Network::from_tag(tag)?,
            peer_id: PeerId::from_slice(id).ok()?,
        })
    }
}

/// How much we know a peer is real. Ordered: a record's trust only goes up
/// (`Indirect` < `Direct` < `Configured`), and eviction takes the lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    /// Heard of from another peer (peer exchange, routing): maybe not real.
    Indirect,
    /// We had a connection with it ourselves.
    Direct,
    /// Seeds and configured peers: never evicted nor expired.
    Configured,
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

impl From<ConnectionOrigin> for Direction {
    fn from(origin: ConnectionOrigin) -> Self {
        match origin {
            ConnectionOrigin::Inbound => Self::Inbound,
            ConnectionOrigin::Outbound => Self::Outbound,
        }
    }
}

/// Whether a peer is connected now, as the store was last told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerStatus {
    /// Not connected.
    NotConnected,
    /// Connected since `since`, opened by `direction`.
    Connected {
        /// When the connection was set up.
        since: UnixMillis,
        /// Who opened it.
        direction: Direction,
    },
}

/// One address of a peer and how well dialing it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEntry {
    /// Where to dial.
    pub address: NetworkAddress,
    /// Between [`SCORE_MIN`](crate::SCORE_MIN) and [`SCORE_MAX`](crate::SCORE_MAX): up by
    /// [`SCORE_SUCCESS`](crate::SCORE_SUCCESS) per connection, down by
    /// [`SCORE_FAILURE`](crate::SCORE_FAILURE) per failed dial. New addresses start at 0.
    pub score: i32,
    /// The last connection made through this address.
    pub last_success: Option<UnixMillis>,
    /// The last failed dial of this address.
    pub last_failure: Option<UnixMillis>,
}

/// The last connection with a peer that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastConnection {
    /// When it was set up.
    pub started: UnixMillis,
    /// How long it lasted, in milliseconds.
    pub duration_ms: u64,
    /// Who opened it.
    pub direction: Direction,
}

netcore::metric_label_enum! {
    /// Why a peer or an IP is banned. The BCS tag is the variant's position: never reorder or
    /// insert variants, only append.
    #[derive(PartialOrd, Ord, Serialize, Deserialize)]
    pub enum BanReason {
        /// An operator's ban (admin API, config).
        Manual => "manual",
        /// Sustained rate-limit abuse.
        RateLimited => "rate_limited",
        /// A handshake that broke the protocol.
        BadHandshake => "bad_handshake",
        /// Other abuse of the protocol.
        Abusive => "abusive",
        /// A message with a bad signature.
        InvalidSignature => "invalid_signature",
        /// A peer whose id does not match its key.
        InvalidPeerId => "invalid_peer_id",
        /// A routing edge that was invalid.
        InvalidEdge => "invalid_edge",
    }
}

/// A ban on a peer or an IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Why.
    pub reason: BanReason,
    /// When it was set.
    pub since: UnixMillis,
    /// When it ends; `None`: until lifted.
    pub until: Option<UnixMillis>,
}

impl Ban {
    /// Whether the ban is in force at `now`.
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// Everything the peer store keeps about one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// How we know it.
    pub trust: TrustLevel,
    /// Where it can be dialed, at most `peer_store.max_addresses_per_peer`.
    pub addresses: Vec<AddressEntry>,
    /// When the store first heard of it.
    pub first_seen: UnixMillis,
    /// The last event about it (heard of, dialed, connected, disconnected).
    pub last_seen: UnixMillis,
    /// The last connection with it that ended.
    pub last_connection: Option<LastConnection>,
    /// Connected now or not.
    pub status: PeerStatus,
    /// A ban, active or expired (expired ones are dropped by `prune`).
    pub ban: Option<Ban>,
}

impl PeerRecord {
    /// A peer first heard of at `now`, with no address yet.
    pub fn new(trust: TrustLevel, now: UnixMillis) -> Self {
        Self {
            trust,
            addresses: Vec::new(),
            first_seen: now,
            last_seen: now,
            last_connection: None,
            status: PeerStatus::NotConnected,
            ban: None,
        }
    }

    /// The best address score, or [`SCORE_MIN`](crate::SCORE_MIN) with no address: the
    /// peer's score for eviction and redial order.
    pub fn score(&self) -> i32 {
        self.addresses
            .iter()
            .map(|entry| entry.score)
            .max()
            .unwrap_or(crate::peer_config::SCORE_MIN)
    }

    /// Whether the peer is banned at `now`.
    pub fn is_banned(&self, now: UnixMillis) -> bool {
        self.ban.is_some_and(|ban| ban.is_active(now))
    }

    /// Whether the store thinks it is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.status, PeerStatus::Connected { .. })
    }
}

/// The on-disk form of a [`PeerRecord`]: one variant per version.
#[derive(Deserialize)]
pub(crate) enum VersionedPeerRecord {
    V1(PeerRecord),
}

/// What [`VersionedPeerRecord`] reads, written from a borrowed record (BCS encodes only the
/// variant index, so the bytes are the same).
#[derive(Serialize)]
pub(crate) enum VersionedPeerRecordRef<'a> {
    V1(&'a PeerRecord),
}

/// A banned IP address or CIDR prefix (`addr` with the bits past `prefix_len` cleared). The
/// facade's `IpPrefix` maps onto it one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBanKey {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length in bits (32 or 128 for one address).
    pub prefix_len: u8,
}

impl IpBanKey {
    /// The key on disk: the 4 or 16 address bytes, then the prefix length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = match self.addr {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        bytes.push(self.prefix_len);
        bytes
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` for any other layout.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&prefix_len, addr) = bytes.split_last()?;
        let addr = match addr.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(addr).ok()?),
            16 => IpAddr::from(<[u8; 16]>::try_from(addr).ok()?),
            _ => return None,
        };
        Some(Self { addr, prefix_len })
    }
}

/// The on-disk form of an IP [`Ban`].
#[derive(Serialize, Deserialize)]
pub(crate) enum VersionedIpBan {
    V1(Ban),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_reject_other_layouts() {
        let key = PeerKey::new(Network::Vfn, PeerId::new([7; 32]));
        assert_eq!(PeerKey::from_bytes(&key.to_bytes()), Some(key));
        assert_eq!(key.to_bytes()[0], 1);
        assert_eq!(PeerKey::from_bytes(&[9; 33]), None);
        assert_eq!(PeerKey::from_bytes(&[0; 32]), None);

        for key in [
            IpBanKey {
                addr: "10.1.2.0".parse().unwrap(),
                prefix_len: 24,
            },
            IpBanKey {
                addr: "2001:db8::1".parse().unwrap(),
                prefix_len: 128,
            },
        ] {
            assert_eq!(IpBanKey::from_bytes(&key.to_bytes()), Some(key));
        }
        assert_eq!(IpBanKey::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn network_names_match_wire() {
        for network in [Network::Validator, Network::Vfn, Network::Public] {
            assert_eq!(Network::from_name(network.as_str()), Some(network));
        }
        assert_eq!(Network::from_name("mainnet"), None);
    }
}
