//! [`RecentPeers`]: the peers this node was connected to recently, at the addresses it
//! dialed them at, and the random sample an answer hands out. Pure: time and randomness are
//! arguments.

use std::collections::HashMap;
use std::time::Duration;

use netcore::{NetworkAddress, PeerId};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::peer_exchange::message::ExchangedPeer;

/// Peers we dialed and connected to, by when we last were connected. Only outbound
/// connections count: their address is one we reached the peer at ourselves, where an
/// inbound connection's is only its source port. Bounded: at most `max` peers, the least
/// recently seen going first.
#[derive(Debug)]
pub(crate) struct RecentPeers {
    max: usize,
    window: Duration,
    peers: HashMap<PeerId, Recent>,
}

#[derive(Clone, Debug)]
struct Recent {
    address: NetworkAddress,
    /// When we were last connected (`None` while we are).
    last_seen: Option<Instant>,
}

impl RecentPeers {
    /// At most `max` peers, handed out for `window` after we were last connected.
    pub(crate) fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            peers: HashMap::new(),
        }
    }

    /// We connected to `peer_id` by dialing `address`.
    pub(crate) fn connected(&mut self, peer_id: PeerId, address: NetworkAddress, now: Instant) {
        if self.max == 0 {
            return;
        }
        self.peers.insert(
            peer_id,
            Recent {
                address,
                last_seen: None,
            },
        );
        if self.peers.len() > self.max {
            self.evict_oldest(now);
        }
    }

    /// The connection to `peer_id` closed at `now`.
    pub(crate) fn disconnected(&mut self, peer_id: PeerId, now: Instant) {
        if let Some(recent) = self.peers.get_mut(&peer_id) {
            recent.last_seen = Some(now);
        }
    }

    /// Up to `max` peers seen within the window, chosen at random, without `asker`.
    pub(crate) fn sample<R: Rng + ?Sized>(
        &mut self,
        max: usize,
        asker: PeerId,
        now: Instant,
        rng: &mut R,
    ) -> Vec<ExchangedPeer> {
        let window = self.window;
        self.peers.retain(|_, recent| {
            recent
                .last_seen
                .is_none_or(|seen| now.saturating_duration_since(seen) <= window)
        });
        let mut eligible: Vec<(&PeerId, &Recent)> = self
            .peers
            .iter()
            .filter(|(peer_id, _)| **peer_id != asker)
            .collect();
        // Sorted first so that a seeded rng gives the same sample every run.
        eligible.sort_unstable_by_key(|(peer_id, _)| **peer_id);
        eligible
            .choose_multiple(rng, max)
            .map(|(peer_id, recent)| ExchangedPeer {
                peer_id: **peer_id,
                addresses: vec![recent.address.clone()],
            })
            .collect()
    }

    /// Peers remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    fn evict_oldest(&mut self, now: Instant) {
        // Connected peers (`None`) count as seen now: the disconnected one seen longest ago
        // goes.
        let oldest = self
            .peers
            .iter()
            .min_by_key(|(_, recent)| recent.last_seen.unwrap_or(now))
            .map(|(peer_id, _)| *peer_id);
        if let Some(oldest) = oldest {
            self.peers.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::new([n; 32])
    }

    /// A sample is random, leaves out the asker and peers not seen within the window, and is
    /// at most `max` long; successive samples differ, so one asker maps the table slowly.
    #[test]
    fn samples_are_random_recent_and_bounded() {
        let window = Duration::from_secs(3600);
        let mut recent = RecentPeers::new(100, window);
        let t0 = Instant::now();
        for n in 1..=50 {
            recent.connected(id(n), NetworkAddress::memory(u16::from(n)), t0);
        }
        recent.disconnected(id(50), t0);
        let mut rng = StdRng::seed_from_u64(1);
        let later = t0 + window + Duration::from_secs(1);
        let first = recent.sample(16, id(1), later, &mut rng);
        assert_eq!(first.len(), 16);
        assert!(first.iter().all(|peer| peer.peer_id != id(1)));
        assert!(
            first.iter().all(|peer| peer.peer_id != id(50)),
            "out of the window"
        );
        let second = recent.sample(16, id(1), later, &mut rng);
        assert_ne!(first, second);
        assert_eq!(recent.len(), 49);
    }

    /// The table never outgrows its cap; the disconnected peer seen longest ago goes first.
    #[test]
    fn the_table_is_bounded() {
        let mut recent = RecentPeers::new(4, Duration::from_secs(60));
        let t0 = Instant::now();
        recent.connected(id(1), NetworkAddress::memory(1), t0);
        recent.disconnected(id(1), t0);
        for n in 2..=200 {
            recent.connected(id(n), NetworkAddress::memory(u16::from(n)), t0);
        }
        assert_eq!(recent.len(), 4);
    }
}
