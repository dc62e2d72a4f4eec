//! [`PendingEvents`]: the connection events waiting for the connectivity manager, at most one
//! per peer. Pure bookkeeping.

use std::collections::{HashMap, VecDeque};

use connectivity_manager::PeerEvent;
use netcore::PeerId;

/// Connection events waiting for the connectivity manager's queue, at most one per peer: a
/// newer event for a peer replaces the one still waiting (keeping its place in line), since
/// the manager only needs each peer's latest state. So the backlog is bounded by the number of
/// peers, whatever the connection churn while the manager's queue is full.
#[derive(Debug, Default)]
pub(super) struct PendingEvents {
    order: VecDeque<PeerId>,
    latest: HashMap<PeerId, PeerEvent>,
}

impl PendingEvents {
    /// Queues `event`, replacing a waiting event for the same peer.
    pub(super) fn push(&mut self, event: PeerEvent) {
        let peer_id = event.peer_id();
        if self.latest.insert(peer_id, event).is_none() {
            self.order.push_back(peer_id);
        }
    }

    /// The event whose turn it is.
    pub(super) fn front(&self) -> Option<PeerEvent> {
        self.order
            .front()
            .and_then(|peer_id| self.latest.get(peer_id))
            .cloned()
    }

    /// Removes the event whose turn it was.
    pub(super) fn pop_front(&mut self) {
        if let Some(peer_id) = self.order.pop_front() {
            self.latest.remove(&peer_id);
        }
    }

    pub(super) fn clear(&mut self) {
        self.order.clear();
        self.latest.clear();
    }
}

#[cfg(test)]
mod tests {
    use netcore::ConnectionOrigin;

    use super::*;

    /// Events waiting for the connectivity manager keep one entry per peer: churn on one peer
    /// replaces its waiting event in place, so the backlog never outgrows the peer count.
    #[test]
    fn pending_connectivity_events_keep_one_per_peer() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let mut pending = PendingEvents::default();
        for _ in 0..1000 {
            pending.push(PeerEvent::Connected {
                peer_id: a,
                origin: ConnectionOrigin::Outbound,
            });
            pending.push(PeerEvent::Disconnected { peer_id: a });
        }
        pending.push(PeerEvent::Disconnected { peer_id: b });
        assert_eq!(pending.order.len(), 2);
        assert_eq!(
            pending.front(),
            Some(PeerEvent::Disconnected { peer_id: a })
        );
        pending.pop_front();
        assert_eq!(
            pending.front(),
            Some(PeerEvent::Disconnected { peer_id: b })
        );
        pending.pop_front();
        assert_eq!(pending.front(), None);
    }
}
