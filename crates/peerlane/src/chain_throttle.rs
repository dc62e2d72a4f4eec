//! [`AnnounceThrottle`]: when to send our chain status to each peer. Pure: the caller passes
//! the time.
//!
//! Each peer gets our status as soon as it connects, then again after each change, but never
//! twice within `interval`: changes in between are merged, and the one message sent at the
//! end of the interval carries the latest status (the caller reads it when sending). So a
//! node producing blocks faster than `interval` costs each peer one message per interval.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::peers::PeerNetworkId;

/// The per-peer schedule; see the module docs. Holds one slot per connected peer.
#[derive(Debug)]
pub(crate) struct AnnounceThrottle {
    interval: Duration,
    peers: HashMap<PeerNetworkId, Slot>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// When we last sent it our status.
    last_sent: Option<Instant>,
    /// It has not seen our latest status yet.
    due: bool,
}

impl AnnounceThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            peers: HashMap::new(),
        }
    }

    /// `peer` connected (or replaced its connection): it is due at once.
    pub(crate) fn connected(&mut self, peer: PeerNetworkId) {
        self.peers.insert(
            peer,
            Slot {
                last_sent: None,
                due: true,
            },
        );
    }

    /// `peer` is gone.
    pub(crate) fn disconnected(&mut self, peer: PeerNetworkId) {
        self.peers.remove(&peer);
    }

    /// Our status changed: every peer is due. Returns how many were due already (their
    /// pending announcement now carries the newer status: merged).
    pub(crate) fn changed(&mut self) -> usize {
        let mut merged = 0;
        for slot in self.peers.values_mut() {
            merged += usize::from(slot.due);
            slot.due = true;
        }
        merged
    }

    /// The peers to send our status to now; each is recorded as sent at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<PeerNetworkId> {
        let interval = self.interval;
        let mut ready = Vec::new();
        for (peer, slot) in &mut self.peers {
            if slot.due && slot.last_sent.is_none_or(|last| now >= last + interval) {
                slot.due = false;
                slot.last_sent = Some(now);
                ready.push(*peer);
            }
        }
        ready.sort_unstable();
        ready
    }

    /// When [`poll`](Self::poll) next has something, if a peer waits on its interval.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|slot| slot.due)
            .filter_map(|slot| slot.last_sent.map(|last| last + self.interval))
            .min()
    }

    /// The peers tracked.
    pub(crate) fn peers(&self) -> Vec<PeerNetworkId> {
        self.peers.keys().copied().collect()
    }

    /// Peers tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use netcore::PeerId;
    use wire::NetworkId;

    use super::*;

    fn peer(byte: u8) -> PeerNetworkId {
        PeerNetworkId::new(NetworkId::Public, PeerId::new([byte; 32]))
    }

    /// A new peer is sent at once; a burst of changes within the interval costs one more
    /// message at its end.
    #[test]
    fn bursts_are_merged_into_one_message_per_interval() {
        let interval = Duration::from_millis(250);
        let mut throttle = AnnounceThrottle::new(interval);
        let t0 = Instant::now();
        throttle.connected(peer(1));
        assert_eq!(throttle.poll(t0), vec![peer(1)]);
        assert_eq!(throttle.next_deadline(), None);

        // 100 changes in the next 100 ms: nothing goes out before the interval ends.
        let mut merged = 0;
        for ms in 1..=100 {
            merged += throttle.changed();
            assert!(throttle.poll(t0 + Duration::from_millis(ms)).is_empty());
        }
        assert_eq!(merged, 99, "every change after the first merges");
        assert_eq!(throttle.next_deadline(), Some(t0 + interval));
        assert_eq!(throttle.poll(t0 + interval), vec![peer(1)]);
        assert!(throttle.poll(t0 + interval * 2).is_empty(), "nothing new");
    }

    /// Peers keep their own schedules, and a gone peer leaves nothing behind.
    #[test]
    fn peers_are_independent_and_forgotten() {
        let interval = Duration::from_millis(250);
        let mut throttle = AnnounceThrottle::new(interval);
        let t0 = Instant::now();
        throttle.connected(peer(1));
        assert_eq!(throttle.poll(t0), vec![peer(1)]);
        throttle.connected(peer(2));
        throttle.changed();
        assert_eq!(throttle.poll(t0 + Duration::from_millis(10)), vec![peer(2)]);
        assert_eq!(throttle.poll(t0 + interval), vec![peer(1)]);
        throttle.disconnected(peer(1));
        throttle.disconnected(peer(2));
        assert_eq!(throttle.len(), 0);
        assert_eq!(throttle.next_deadline(), None);
    }
}
