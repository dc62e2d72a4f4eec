//! Discovery: where peers come from and how the sources' views merge. Pure: reading the
//! discovery file is [`FileSource`](crate::FileSource)'s job.
//!
//! Each [`DiscoverySource`] produces a full view of the peers it knows, a
//! `HashMap<PeerId, DiscoveredPeer>`. An update from a source replaces that source's view and
//! nothing else. [`DiscoveredSet`] merges the views into one peer set, which is both the set
//! the policy dials from and the trusted-peer map the Noise layer authenticates against
//! ([`DiscoveredSet::trusted_peers`], for [`noise::TrustedPeers::replace`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use netcore::{NetworkAddress, PeerId, Protocol};
use noise::{PeerRole, PublicKey, TrustedPeer};
use serde::{Deserialize, Serialize};

/// Where a peer was discovered. Sources are ordered by priority, highest first: when two
/// sources list the same peer, the higher one decides its addresses and role (see
/// [`DiscoveredSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiscoverySource {
    /// The on-chain validator set, fed by the node through a `watch` channel. Highest
    /// priority: it is what the chain agreed on.
    OnChain,
    /// A TOML file re-read on an interval ([`Config::discovery_file`](crate::Config)). Its
    /// format, one table per peer keyed by PeerId (64 hex digits):
    ///
    /// ```toml
    /// [peers.9a3b5c7d9a3b5c7d9a3b5c7d9a3b5c7d9a3b5c7d9a3b5c7d9a3b5c7d9a3b5c7d]
    /// role = "validator"   # validator, preferred_upstream, upstream, validator_full_node,
    ///                      # downstream, known or unknown
    /// addresses = ["/ip4/10.0.0.1/tcp/6180/noise-ik/<64 hex digits>/handshake/0"]
    /// keys = []            # optional: more x25519 keys (64 hex digits each)
    /// ```
    File,
    /// The seed peers of the config ([`Config::seeds`](crate::Config::seeds)), in the same
    /// per-peer format as the file. A static fallback.
    Config,
    /// Peers a persistent store kept from earlier runs
    /// ([`ConnectivityManager::stored_peers`](crate::ConnectivityManager::stored_peers)), in
    /// the store's order (long-lived outbound connections first, then by score). Below the
    /// seeds, above peer exchange, and like it never trusted: the store is a memory of whom we
    /// reached, not the operator's or the chain's word. Never a source of keys or addresses
    /// for a peer a higher source lists.
    Stored,
    /// Peers other nodes told us about (peerlane's peer exchange, protocol 66), validated by
    /// the facade. Lowest priority, and *indirect*: never trusted (they stay out of
    /// [`DiscoveredSet::trusted_peers`]), never a source of keys or addresses for a peer
    /// another source lists, and dialed after the peers of the other sources.
    PeerExchange,
}

impl DiscoverySource {
    /// Every source, highest priority first.
    pub const ALL: [Self; 5] = [
        Self::OnChain,
        Self::File,
        Self::Config,
        Self::Stored,
        Self::PeerExchange,
    ];

    /// `"on_chain"`, `"file"`, `"config"`, `"stored"` or `"peer_exchange"`: for logs and the
    /// `source` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OnChain => "on_chain",
            Self::File => "file",
            Self::Config => "config",
            Self::Stored => "stored",
            Self::PeerExchange => "peer_exchange",
        }
    }

    /// Whether the source's peers earn trust (the chain, the operator's file and config);
    /// the stored and exchanged peers do not.
    pub const fn is_trusted(self) -> bool {
        matches!(self, Self::OnChain | Self::File | Self::Config)
    }
}

/// A peer as one source (or the merge of all of them) knows it.
///
/// The x25519 key in an address's `/noise-ik/<key>` part counts as one of the peer's keys,
/// as in AptosNet's seed configs: a seed needs only its addresses. So the keys a source
/// vouches for are `keys` plus the keys in `addresses` ([`DiscoveredPeer::all_keys`]).
///
/// Serialized (config seeds, the discovery file) as `addresses` (strings), `keys` (64 hex
/// digits each, optional) and `role` (snake_case, as [`PeerRole::as_str`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredPeer {
    /// Where to dial the peer, in the order to try them.
    #[serde(default)]
    pub addresses: Vec<NetworkAddress>,
    /// Static keys the peer may authenticate with, besides those in `addresses`.
    #[serde(default, with = "sorted_keys")]
    pub keys: HashSet<PublicKey>,
    /// What the peer is to us.
    pub role: PeerRole,
}

impl DiscoveredPeer {
    /// A peer with the given role, addresses and extra keys.
    pub fn new(
        role: PeerRole,
        addresses: impl IntoIterator<Item = NetworkAddress>,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Self {
        Self {
            addresses: addresses.into_iter().collect(),
            keys: keys.into_iter().collect(),
            role,
        }
    }

    /// `keys` plus the key of every address that has a `/noise-ik/<key>` part.
    pub fn all_keys(&self) -> HashSet<PublicKey> {
        let mut keys = self.keys.clone();
        keys.extend(
            self.addresses
                .iter()
                .filter_map(NetworkAddress::noise_public_key),
        );
        keys
    }
}

/// The views of every source and their merge.
///
/// # How views merge
///
/// For each peer listed by at least one source:
/// - **addresses** come from the highest-priority source that lists at least one address for
///   it (duplicates removed, order kept). We do not take the union: a stale seed or file
///   entry must not be dialed when the chain says where the validator is now. A source that
///   lists the peer without addresses (say, an on-chain validator that has not published
///   any yet) lets a lower source's addresses through.
/// - **keys** are the union over all sources ([`DiscoveredPeer::all_keys`] of each). Every
///   source is trusted (the chain, or the operator's own file and config), and the union lets
///   a key rotation that one source already knows about authenticate at once.
/// - **role** comes from the highest-priority source that lists it.
///
/// A peer with no key at all cannot authenticate, so it is left out of
/// [`trusted_peers`](Self::trusted_peers); the policy does not dial it either.
///
/// The untrusted sources ([`DiscoverySource::Stored`], [`DiscoverySource::PeerExchange`])
/// add nothing to a peer a trusted source lists; a peer only they list is taken whole from
/// the highest of them, and stays out of [`trusted_peers`](Self::trusted_peers).
#[derive(Clone, Debug, Default)]
pub struct DiscoveredSet {
    views: BTreeMap<DiscoverySource, HashMap<PeerId, DiscoveredPeer>>,
    merged: BTreeMap<PeerId, DiscoveredPeer>,
    /// The merged peers only [`DiscoverySource::PeerExchange`] lists.
    indirect: BTreeSet<PeerId>,
    /// The merged peers [`DiscoverySource::Stored`] lists and no trusted source does.
    stored: BTreeSet<PeerId>,
}

impl DiscoveredSet {
    /// No views, no peers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces `source`'s view with `view` and re-merges. Returns whether the merged set
    /// changed. An empty view removes the source's peers.
    pub fn update(
        &mut self,
        source: DiscoverySource,
        view: HashMap<PeerId, DiscoveredPeer>,
    ) -> bool {
        if view.is_empty() {
            self.views.remove(&source);
        } else {
            self.views.insert(source, view);
        }
        let (merged, indirect, stored) = self.merge();
        let changed = merged != self.merged;
        self.merged = merged;
        self.indirect = indirect;
        self.stored = stored;
        changed
    }

    /// The merged peers, by PeerId.
    pub fn peers(&self) -> &BTreeMap<PeerId, DiscoveredPeer> {
        &self.merged
    }

    /// One merged peer.
    pub fn get(&self, peer_id: &PeerId) -> Option<&DiscoveredPeer> {
        self.merged.get(peer_id)
    }

    /// The current view of `source`, if it has listed any peer.
    pub fn view(&self, source: DiscoverySource) -> Option<&HashMap<PeerId, DiscoveredPeer>> {
        self.views.get(&source)
    }

    /// Whether `peer_id` is known only from peer exchange (indirect).
    pub fn is_indirect(&self, peer_id: &PeerId) -> bool {
        self.indirect.contains(peer_id)
    }

    /// How many merged peers are known only from peer exchange.
    pub fn indirect_count(&self) -> usize {
        self.indirect.len()
    }

    /// Whether `peer_id` is known from the store and from no trusted source.
    pub fn is_stored(&self, peer_id: &PeerId) -> bool {
        self.stored.contains(peer_id)
    }

    /// How many merged peers are known from the store and from no trusted source.
    pub fn stored_count(&self) -> usize {
        self.stored.len()
    }

    /// The merged peers that have at least one key, as Noise's trusted-peer map: feed it to
    /// [`noise::TrustedPeers::replace`]. Peers known only from peer exchange or the store are
    /// left out: what a stranger tells us, or what we remember, earns no trust.
    pub fn trusted_peers(&self) -> HashMap<PeerId, TrustedPeer> {
        self.trusted()
            .map(|(peer_id, peer)| {
                let trusted = TrustedPeer::new(peer.role, peer.keys.iter().copied());
                (*peer_id, trusted)
            })
            .collect()
    }

    /// The IPs of the `/ip4` and `/ip6` addresses of the peers in
    /// [`trusted_peers`](Self::trusted_peers): a listener recognises a socket from one of them
    /// as a trusted peer's before the Noise handshake names the peer.
    pub fn trusted_ips(&self) -> HashSet<IpAddr> {
        self.trusted()
            .flat_map(|(_, peer)| &peer.addresses)
            .filter_map(|address| match address.protocols().first() {
                Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(*ip)),
                Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(*ip)),
                _ => None,
            })
            .collect()
    }

    /// The merged peers that earn trust: with a key, and listed by a source other than peer
    /// exchange or the store.
    fn trusted(&self) -> impl Iterator<Item = (&PeerId, &DiscoveredPeer)> {
        self.merged.iter().filter(|(peer_id, peer)| {
            !peer.keys.is_empty()
                && !self.indirect.contains(peer_id)
                && !self.stored.contains(peer_id)
        })
    }

    fn merge(
        &self,
    ) -> (
        BTreeMap<PeerId, DiscoveredPeer>,
        BTreeSet<PeerId>,
        BTreeSet<PeerId>,
    ) {
        let mut merged: BTreeMap<PeerId, DiscoveredPeer> = BTreeMap::new();
        let mut indirect = BTreeSet::new();
        let mut stored = BTreeSet::new();
        // `views` iterates highest priority first, so the first source to list a peer sets
        // its role, and the first to list addresses sets them.
        for (source, view) in &self.views {
            for (peer_id, peer) in view {
                if !source.is_trusted() {
                    // Adds nothing to a peer a higher source lists.
                    if merged.contains_key(peer_id) {
                        continue;
                    }
                    match source {
                        DiscoverySource::Stored => stored.insert(*peer_id),
                        _ => indirect.insert(*peer_id),
                    };
                }
                let entry = merged.entry(*peer_id).or_insert_with(|| DiscoveredPeer {
                    addresses: Vec::new(),
                    keys: HashSet::new(),
                    role: peer.role,
                });
                if entry.addresses.is_empty() {
                    entry.addresses = dedup(&peer.addresses);
                }
                entry.keys.extend(peer.all_keys());
            }
        }
        (merged, indirect, stored)
    }
}

/// `addresses` without repeats, first occurrence kept.
fn dedup(addresses: &[NetworkAddress]) -> Vec<NetworkAddress> {
    let mut seen = HashSet::new();
    addresses
        .iter()
        .filter(|addr| seen.insert(*addr))
        .cloned()
        .collect()
}

/// Serde for a set of x25519 keys: a list of [`PublicKey`]s in their own serde form (64 hex
/// digits), written sorted so that the same set always prints the same way.
mod sorted_keys {
    use std::collections::{BTreeSet, HashSet};

    use noise::PublicKey;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        set: &HashSet<PublicKey>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        set.iter().collect::<BTreeSet<_>>().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<HashSet<PublicKey>, D::Error> {
        HashSet::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from([byte; 32])
    }

    fn addr(port: u16) -> NetworkAddress {
        NetworkAddress::memory(port)
    }

    fn peer(role: PeerRole, ports: &[u16], keys: &[u8]) -> DiscoveredPeer {
        DiscoveredPeer::new(
            role,
            ports.iter().copied().map(addr),
            keys.iter().copied().map(key),
        )
    }

    /// Addresses and role come from the highest-priority source that lists them, keys from
    /// every source; a source without addresses lets a lower one's through.
    #[test]
    fn merge_takes_addresses_from_the_highest_source_and_keys_from_all() {
        let a = PeerId::new([1; 32]);
        let b = PeerId::new([2; 32]);
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::Config,
            HashMap::from([
                (a, peer(PeerRole::Upstream, &[1, 2], &[1])),
                (b, peer(PeerRole::Upstream, &[3], &[2])),
            ]),
        );
        assert!(set.update(
            DiscoverySource::OnChain,
            HashMap::from([
                (a, peer(PeerRole::Validator, &[9, 9], &[3])),
                (b, peer(PeerRole::Validator, &[], &[4])),
            ]),
        ));

        let merged_a = set.get(&a).unwrap();
        assert_eq!(
            merged_a.addresses,
            vec![addr(9)],
            "on-chain wins, deduplicated"
        );
        assert_eq!(merged_a.keys, HashSet::from([key(1), key(3)]));
        assert_eq!(merged_a.role, PeerRole::Validator);

        let merged_b = set.get(&b).unwrap();
        assert_eq!(merged_b.addresses, vec![addr(3)], "falls through to config");
        assert_eq!(merged_b.role, PeerRole::Validator);

        let trusted = set.trusted_peers();
        assert_eq!(trusted[&a].keys, HashSet::from([key(1), key(3)]));
        assert_eq!(trusted[&a].role, PeerRole::Validator);
    }

    /// An update replaces only its own source's view, and an identical update reports no
    /// change.
    #[test]
    fn update_replaces_only_its_own_view() {
        let a = PeerId::new([1; 32]);
        let b = PeerId::new([2; 32]);
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::Config,
            HashMap::from([(a, peer(PeerRole::Upstream, &[1], &[1]))]),
        );
        let file_view = HashMap::from([(b, peer(PeerRole::Upstream, &[2], &[2]))]);
        assert!(set.update(DiscoverySource::File, file_view.clone()));
        assert!(!set.update(DiscoverySource::File, file_view));
        assert_eq!(set.peers().len(), 2);

        assert!(set.update(DiscoverySource::File, HashMap::new()));
        assert_eq!(set.peers().keys().copied().collect::<Vec<_>>(), vec![a]);
        assert!(set.view(DiscoverySource::File).is_none());
    }

    /// The key of a `/noise-ik/` address counts as a key, and a peer without any key is not
    /// trusted.
    #[test]
    fn address_keys_are_trusted_and_keyless_peers_are_not() {
        let with_key: NetworkAddress =
            format!("/memory/1/noise-ik/{}/handshake/0", "07".repeat(32))
                .parse()
                .unwrap();
        let a = PeerId::new([1; 32]);
        let b = PeerId::new([2; 32]);
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::Config,
            HashMap::from([
                (a, DiscoveredPeer::new(PeerRole::Upstream, [with_key], [])),
                (b, peer(PeerRole::Upstream, &[2], &[])),
            ]),
        );
        let trusted = set.trusted_peers();
        assert_eq!(trusted[&a].keys, HashSet::from([key(7)]));
        assert!(!trusted.contains_key(&b));
    }

    /// Peers from peer exchange are merged (dialable) but never trusted, and add nothing to a
    /// peer a direct source lists.
    #[test]
    fn exchanged_peers_are_indirect_and_untrusted() {
        let a = PeerId::new([1; 32]);
        let b = PeerId::new([2; 32]);
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::Config,
            HashMap::from([(a, peer(PeerRole::Upstream, &[1], &[1]))]),
        );
        set.update(
            DiscoverySource::PeerExchange,
            HashMap::from([
                (a, peer(PeerRole::Known, &[9], &[9])),
                (b, peer(PeerRole::Known, &[2], &[2])),
            ]),
        );
        assert_eq!(set.get(&a).unwrap().addresses, vec![addr(1)]);
        assert_eq!(set.get(&a).unwrap().keys, HashSet::from([key(1)]));
        assert!(!set.is_indirect(&a));
        assert!(set.is_indirect(&b));
        assert_eq!(set.indirect_count(), 1);
        let trusted = set.trusted_peers();
        assert!(trusted.contains_key(&a));
        assert!(!trusted.contains_key(&b));
    }

    /// The IPs a listener trusts at accept: those of the `/ip4` and `/ip6` addresses of peers
    /// with a key, never of peers known only from peer exchange or the store.
    #[test]
    fn trusted_ips_are_those_of_keyed_direct_peers() {
        let at = |address: &str, keys: &[u8]| {
            let mut discovered = peer(PeerRole::Upstream, &[], keys);
            discovered.addresses = vec![address.parse().unwrap()];
            discovered
        };
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::File,
            HashMap::from([
                (PeerId::new([1; 32]), at("/ip4/10.0.0.1/tcp/6180", &[1])),
                (PeerId::new([2; 32]), at("/ip6/::2/tcp/6180", &[2])),
                (PeerId::new([3; 32]), at("/ip4/10.0.0.3/tcp/6180", &[])),
                (PeerId::new([5; 32]), at("/dns/seed.example/tcp/6180", &[5])),
            ]),
        );
        set.update(
            DiscoverySource::PeerExchange,
            HashMap::from([(PeerId::new([4; 32]), at("/ip4/10.0.0.4/tcp/6180", &[4]))]),
        );
        let expected: HashSet<IpAddr> =
            HashSet::from(["10.0.0.1".parse().unwrap(), "::2".parse().unwrap()]);
        assert_eq!(set.trusted_ips(), expected);
    }

    /// Stored peers are merged (dialable) but never trusted, add nothing to a peer a trusted
    /// source lists, and take precedence over peer exchange.
    #[test]
    fn stored_peers_are_untrusted_and_below_the_seeds() {
        let (a, b, c) = (
            PeerId::new([1; 32]),
            PeerId::new([2; 32]),
            PeerId::new([3; 32]),
        );
        let mut set = DiscoveredSet::new();
        set.update(
            DiscoverySource::Config,
            HashMap::from([(a, peer(PeerRole::Upstream, &[1], &[1]))]),
        );
        set.update(
            DiscoverySource::PeerExchange,
            HashMap::from([(b, peer(PeerRole::Known, &[8], &[8]))]),
        );
        set.update(
            DiscoverySource::Stored,
            HashMap::from([
                (a, peer(PeerRole::Known, &[9], &[9])),
                (b, peer(PeerRole::Known, &[2], &[2])),
                (c, peer(PeerRole::Known, &[3], &[3])),
            ]),
        );
        assert_eq!(set.get(&a).unwrap().addresses, vec![addr(1)]);
        assert_eq!(set.get(&a).unwrap().keys, HashSet::from([key(1)]));
        assert_eq!(set.get(&b).unwrap().addresses, vec![addr(2)]);
        assert!(!set.is_stored(&a));
        assert!(set.is_stored(&b) && set.is_stored(&c));
        assert!(!set.is_indirect(&b));
        assert_eq!((set.stored_count(), set.indirect_count()), (2, 0));
        let trusted = set.trusted_peers();
        assert!(trusted.contains_key(&a));
        assert!(!trusted.contains_key(&b) && !trusted.contains_key(&c));
    }

    /// A set of peers written with serde comes back the same.
    #[test]
    fn discovered_peers_round_trip_through_toml() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Seeds {
            seeds: HashMap<PeerId, DiscoveredPeer>,
        }
        let seeds = Seeds {
            seeds: HashMap::from([
                (
                    PeerId::new([1; 32]),
                    peer(PeerRole::Validator, &[1, 2], &[1, 2]),
                ),
                (PeerId::new([2; 32]), peer(PeerRole::Downstream, &[], &[])),
            ]),
        };
        let text = toml::to_string(&seeds).unwrap();
        assert_eq!(toml::from_str::<Seeds>(&text).unwrap(), seeds);
    }
}
