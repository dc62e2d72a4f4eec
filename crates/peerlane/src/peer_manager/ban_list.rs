//! [`BanList`]: the banned peers of a network.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use netcore::PeerId;

/// The banned peers of a network, shared by its [`Network`](crate::Network) handle (which
/// changes it) and its peer manager (which refuses their connections and dials).
#[derive(Clone, Debug, Default)]
pub(crate) struct BanList(Arc<RwLock<HashSet<PeerId>>>);

impl BanList {
    /// Bans `peer_id`; whether it was not banned yet.
    pub(crate) fn insert(&self, peer_id: PeerId) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer_id)
    }

    /// Lifts the ban on `peer_id`; whether it was banned.
    pub(crate) fn remove(&self, peer_id: PeerId) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer_id)
    }

    /// Whether `peer_id` is banned.
    pub(crate) fn contains(&self, peer_id: PeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer_id)
    }

    /// The banned peers, sorted.
    pub(crate) fn to_vec(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        peers.sort();
        peers
    }
}
