//! [`ExchangedPeers`]: the peers learned through peer exchange, the view of
//! [`DiscoverySource::PeerExchange`](crate::DiscoverySource). Pure and bounded: at most
//! [`Config::max_exchanged_peers`](crate::Config::max_exchanged_peers), the peers learned (or
//! relearned) longest ago going first, so a peer that answers with fake peers can only push
//! out older fakes and honest answers alike, never grow the table.

use std::collections::{HashMap, VecDeque};

use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;

use crate::discovery::DiscoveredPeer;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct ExchangedPeers {
    max: usize,
    /// Least recently learned first.
    order: VecDeque<PeerId>,
    peers: HashMap<PeerId, Vec<NetworkAddress>>,
}

impl ExchangedPeers {
    /// An empty table holding at most `max` peers.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            order: VecDeque::new(),
            peers: HashMap::new(),
        }
    }

    /// Adds (or refreshes) `peers`, each with its addresses, evicting the least recently
    /// learned beyond the cap. Returns whether the table changed.
    pub fn learn(
        &mut self,
        peers: impl IntoIterator<Item = (PeerId, Vec<NetworkAddress>)>,
    ) -> bool {
        let mut changed = false;
        for (peer_id, addresses) in peers {
            if self.max == 0 || addresses.is_empty() {
                continue;
            }
            match self.peers.insert(peer_id, addresses.clone()) {
                Some(previous) => {
                    changed |= previous != addresses;
                    self.order.retain(|known| *known != peer_id);
                }
                None => changed = true,
            }
            self.order.push_back(peer_id);
            while self.order.len() > self.max {
                if let Some(oldest) = self.order.pop_front() {
                    self.peers.remove(&oldest);
                }
            }
        }
        changed
    }

    /// How many peers it holds.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The discovery view: each peer with role [`PeerRole::Known`], its addresses and no
    /// key of its own (its addresses carry the key its PeerId derives from).
    pub fn view(&self) -> HashMap<PeerId, DiscoveredPeer> {
        self.peers
            .iter()
            .map(|(peer_id, addresses)| {
                (
                    *peer_id,
                    DiscoveredPeer::new(PeerRole::Known, addresses.iter().cloned(), []),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PeerId {
        let mut bytes = [0; 32];
        bytes[..2].copy_from_slice(&n.to_le_bytes());
        PeerId::new(bytes)
    }

    /// A flood of learned peers never holds more than the cap, the newest kept.
    #[test]
    fn a_flood_keeps_the_newest_within_the_cap() {
        let mut table = ExchangedPeers::new(8);
        for n in 0..1_000 {
            table.learn([(id(n), vec![NetworkAddress::memory(n)])]);
        }
        assert_eq!(table.len(), 8);
        let view = table.view();
        assert!((992..1_000).all(|n| view.contains_key(&id(n))));
        // Relearning refreshes without growing; a zero cap holds nothing.
        assert!(!table.learn([(id(999), vec![NetworkAddress::memory(999)])]));
        assert_eq!(table.len(), 8);
        let mut off = ExchangedPeers::new(0);
        assert!(!off.learn([(id(1), vec![NetworkAddress::memory(1)])]));
        assert!(off.is_empty());
    }
}
