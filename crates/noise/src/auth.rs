//! Who may connect: trusted peers, their roles, the two authentication modes, the
//! anti-replay timestamps of mutual mode, and the caller's ban check.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use netcore::PeerId;
use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;

/// What a peer is to us. Decided by the trusted set (or [`PeerRole::Unknown`] when the peer is
/// not in it) and used above the Noise layer for connection limits and priorities.
///
/// Config files, serde and [`Display`](fmt::Display) spell it in snake_case, as
/// [`as_str`](Self::as_str) does: `validator`, `preferred_upstream`, `upstream`,
/// `validator_full_node`, `downstream`, `known`, `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// A validator in the validator network.
    Validator,
    /// An upstream full node we prefer over other upstreams.
    PreferredUpstream,
    /// An upstream full node.
    Upstream,
    /// A validator's own full node (the VFN network).
    ValidatorFullNode,
    /// A node that syncs from us.
    Downstream,
    /// A node we know but that has none of the roles above.
    Known,
    /// A node not in the trusted set (MaybeMutual mode only).
    Unknown,
}

impl PeerRole {
    /// The lowercase, snake_case name, for logs, metric labels and config files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::PreferredUpstream => "preferred_upstream",
            Self::Upstream => "upstream",
            Self::ValidatorFullNode => "validator_full_node",
            Self::Downstream => "downstream",
            Self::Known => "known",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trusted peer: the static keys it may authenticate with, and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPeer {
    /// Static keys the peer may use; more than one while it rotates keys.
    pub keys: HashSet<PublicKey>,
    /// The role it gets once authenticated.
    pub role: PeerRole,
}

impl TrustedPeer {
    /// A trusted peer with the given role and keys. Low-order keys
    /// ([`PublicKey::is_low_order`]) are left out, with a warning: nobody holds one as a key,
    /// and a handshake with one proves nothing (the handshake refuses them anyway).
    pub fn new(role: PeerRole, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let keys = keys
            .into_iter()
            .filter(|key| {
                let low_order = key.is_low_order();
                if low_order {
                    tracing::warn!(%key, %role, "low-order key left out of a trusted peer");
                }
                !low_order
            })
            .collect();
        Self { keys, role }
    }
}

/// The caller's ban check: given the PeerId in the clear prologue of a message 1, whether to
/// refuse the initiator outright ([`Error::Banned`](crate::Error::Banned)). The responder asks
/// it right after the prologue checks, before any cryptography, in both auth modes. The PeerId
/// is not authenticated yet: refusing a banned id early costs an impostor using it nothing it
/// could have had, as the real peer would be refused after the handshake anyway.
///
/// Cloning gives another handle on the same check. The check runs on the accepting task for
/// every message 1: keep it cheap and non-blocking (a read lock on a set, say).
#[derive(Clone)]
pub struct BannedPeers(Arc<dyn Fn(&PeerId) -> bool + Send + Sync>);

impl BannedPeers {
    /// A ban check that refuses the PeerIds for which `is_banned` returns true.
    pub fn new(is_banned: impl Fn(&PeerId) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(is_banned))
    }

    /// Whether `peer_id` is banned.
    pub fn is_banned(&self, peer_id: &PeerId) -> bool {
        (self.0)(peer_id)
    }
}

impl fmt::Debug for BannedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BannedPeers(..)")
    }
}

/// The set of trusted peers, shared between the handshakes and whoever updates it at run time
/// (discovery, on-chain validator sets).
///
/// Cloning gives another handle on the same set. A handshake reads a [`snapshot`]: one read lock
/// and one `Arc` clone, and the snapshot never changes under it. Updates build a new map
/// (copy-on-write), so they cost O(peers) and never block readers for long.
///
/// [`snapshot`]: TrustedPeers::snapshot
#[derive(Clone, Default)]
pub struct TrustedPeers {
    current: Arc<RwLock<Arc<HashMap<PeerId, TrustedPeer>>>>,
}

impl TrustedPeers {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set as it is now. Later updates do not change the returned map.
    pub fn snapshot(&self) -> Arc<HashMap<PeerId, TrustedPeer>> {
        // A panic while holding the lock cannot leave the map half-updated: writers only swap
        // or mutate a private copy, so a poisoned lock still guards a consistent map.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the whole set.
    pub fn replace(&self, peers: HashMap<PeerId, TrustedPeer>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(peers);
    }

    /// Adds or replaces one peer, returning the previous entry.
    pub fn insert(&self, peer_id: PeerId, peer: TrustedPeer) -> Option<TrustedPeer> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // Copies the map only if a snapshot of it is still alive.
        Arc::make_mut(&mut current).insert(peer_id, peer)
    }

    /// Removes one peer, returning its entry.
    pub fn remove(&self, peer_id: &PeerId) -> Option<TrustedPeer> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if !current.contains_key(peer_id) {
            return None;
        }
        Arc::make_mut(&mut current).remove(peer_id)
    }
}

impl fmt::Debug for TrustedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The set can hold hundreds of peers: logs get its size, not its contents.
        f.debug_struct("TrustedPeers")
            .field("len", &self.snapshot().len())
            .finish()
    }
}

impl FromIterator<(PeerId, TrustedPeer)> for TrustedPeers {
    fn from_iter<I: IntoIterator<Item = (PeerId, TrustedPeer)>>(iter: I) -> Self {
        let peers = Self::new();
        peers.replace(iter.into_iter().collect());
        peers
    }
}

/// How the responder authenticates initiators.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HandshakeAuthMode {
    /// Validator networks: only trusted peers, with one of their keys, and a timestamp newer
    /// than the last one accepted from the same key.
    Mutual {
        /// Who may connect.
        trusted_peers: TrustedPeers,
        /// Last accepted timestamp per static key, shared by every handshake of this node.
        anti_replay: Arc<Mutex<AntiReplayTimestamps>>,
    },
    /// Other networks: anyone may connect. A trusted PeerId must use one of its keys; any other
    /// PeerId must be the one derived from the static key, and gets `unknown_peer_role`.
    /// There is no anti-replay check.
    MaybeMutual {
        /// Peers that get their configured role (and must prove it).
        trusted_peers: TrustedPeers,
        /// Role of peers outside the trusted set: [`PeerRole::Unknown`], or
        /// [`PeerRole::ValidatorFullNode`] for a validator on its VFN network.
        unknown_peer_role: PeerRole,
    },
}

impl HandshakeAuthMode {
    /// Mutual authentication against `trusted_peers`, with fresh anti-replay state.
    pub fn mutual(trusted_peers: TrustedPeers) -> Self {
        Self::Mutual {
            trusted_peers,
            anti_replay: Arc::default(),
        }
    }

    /// Optional authentication: trusted peers get their role, others [`PeerRole::Unknown`].
    pub fn maybe_mutual(trusted_peers: TrustedPeers) -> Self {
        Self::MaybeMutual {
            trusted_peers,
            unknown_peer_role: PeerRole::Unknown,
        }
    }

    /// The trusted set, in either mode.
    pub fn trusted_peers(&self) -> &TrustedPeers {
        match self {
            Self::Mutual { trusted_peers, .. } | Self::MaybeMutual { trusted_peers, .. } => {
                trusted_peers
            }
        }
    }
}

/// The last timestamp accepted from each static key (mutual mode).
///
/// A message 1 is accepted only if its timestamp is strictly greater than the last one accepted
/// from the same key; a key seen for the first time may use any timestamp. Only keys that
/// authenticated against the trusted set get an entry, and [`AntiReplayTimestamps::retain`]
/// drops keys that left it, so the map stays as large as the trusted set. A key that leaves
/// the set and comes back starts afresh, which lets an old message 1 of that key be replayed
/// once; a replayed message 1 cannot complete the handshake (the replayer lacks the ephemeral
/// key), so this only costs the responder one message 2.
#[derive(Clone, Debug, Default)]
pub struct AntiReplayTimestamps {
    last_accepted: HashMap<PublicKey, u64>,
}

impl AntiReplayTimestamps {
    /// Accepts and records `timestamp` for `key` if it is newer than the last one accepted,
    /// else returns that last timestamp and records nothing.
    pub fn check_and_record(&mut self, key: &PublicKey, timestamp: u64) -> Result<(), u64> {
        match self.last_accepted.get_mut(key) {
            Some(last) if timestamp <= *last => Err(*last),
            Some(last) => {
                *last = timestamp;
                Ok(())
            }
            None => {
                self.last_accepted.insert(*key, timestamp);
                Ok(())
            }
        }
    }

    /// The last timestamp accepted from `key`.
    pub fn last(&self, key: &PublicKey) -> Option<u64> {
        self.last_accepted.get(key).copied()
    }

    /// Number of keys with a recorded timestamp.
    pub fn len(&self) -> usize {
        self.last_accepted.len()
    }

    /// Whether no timestamp is recorded.
    pub fn is_empty(&self) -> bool {
        self.last_accepted.is_empty()
    }

    /// Keeps only the keys for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&PublicKey) -> bool) {
        self.last_accepted.retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from([byte; 32])
    }

    /// Serde and Display use the names config files use, and every role reads back.
    #[test]
    fn roles_are_spelled_as_config_files_spell_them() {
        let names = [
            (PeerRole::Validator, "validator"),
            (PeerRole::PreferredUpstream, "preferred_upstream"),
            (PeerRole::Upstream, "upstream"),
            (PeerRole::ValidatorFullNode, "validator_full_node"),
            (PeerRole::Downstream, "downstream"),
            (PeerRole::Known, "known"),
            (PeerRole::Unknown, "unknown"),
        ];
        for (role, name) in names {
            // Fails to compile when a role is added, so that this table keeps up.
            match role {
                PeerRole::Validator
                | PeerRole::PreferredUpstream
                | PeerRole::Upstream
                | PeerRole::ValidatorFullNode
                | PeerRole::Downstream
                | PeerRole::Known
                | PeerRole::Unknown => {}
            }
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&role).unwrap(), json);
            assert_eq!(serde_json::from_str::<PeerRole>(&json).unwrap(), role);
            assert_eq!(role.to_string(), name);
            assert_eq!(role.as_str(), name);
        }
        let err = serde_json::from_str::<PeerRole>("\"Validator\"").unwrap_err();
        assert!(err.to_string().contains("validator_full_node"), "{err}");
    }

    /// The sequence from the spec: 1 is accepted, 0 and 1 are replays, 2 is accepted.
    #[test]
    fn only_strictly_newer_timestamps_are_accepted() {
        let mut timestamps = AntiReplayTimestamps::default();
        assert_eq!(timestamps.check_and_record(&key(1), 1), Ok(()));
        assert_eq!(timestamps.check_and_record(&key(1), 0), Err(1));
        assert_eq!(timestamps.check_and_record(&key(1), 1), Err(1));
        assert_eq!(timestamps.check_and_record(&key(1), 2), Ok(()));
        // Keys are independent.
        assert_eq!(timestamps.check_and_record(&key(2), 0), Ok(()));
        assert_eq!(timestamps.last(&key(1)), Some(2));
        assert_eq!(timestamps.len(), 2);
    }

    /// Low-order keys never make it into a trusted peer.
    #[test]
    fn trusted_peers_leave_out_low_order_keys() {
        let peer = TrustedPeer::new(
            PeerRole::Validator,
            netcore::low_order_points().chain([key(1)]),
        );
        assert_eq!(peer.keys, HashSet::from([key(1)]));
    }

    /// Updates are visible to new snapshots and invisible to old ones.
    #[test]
    fn snapshots_do_not_change_under_updates() {
        let peers = TrustedPeers::new();
        let handle = peers.clone();
        let before = peers.snapshot();
        handle.insert(
            PeerId::new([1; 32]),
            TrustedPeer::new(PeerRole::Validator, [key(1)]),
        );
        assert!(before.is_empty());
        assert_eq!(peers.snapshot().len(), 1);
        assert!(handle.remove(&PeerId::new([1; 32])).is_some());
        assert!(handle.remove(&PeerId::new([1; 32])).is_none());
        assert!(peers.snapshot().is_empty());
    }
}
