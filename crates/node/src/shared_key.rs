//! [`SharedKeyDetector`]: spots a peer id whose connections keep replacing each other, the
//! pattern two nodes sharing one key make (each connection of one closes the other's, which
//! redials, forever). Pure: the node feeds it connection notifications and logs what it says.
//!
//! A new connection of a peer that is still connected replaces the old one. An honest peer
//! does that rarely (a restart noticed late, a simultaneous dial); a peer id that does it
//! [`REPLACEMENTS`] times within [`WINDOW`] is most likely two nodes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use netcore::PeerId;

/// Replacements within [`WINDOW`] that make a peer id suspect.
pub(crate) const REPLACEMENTS: usize = 3;

/// How far back replacements count.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// How often one peer id is reported at most.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Most peer ids tracked; when full, the one seen longest ago is forgotten (a hostile peer
/// minting ids cannot grow it).
pub(crate) const MAX_TRACKED: usize = 1024;

/// Per peer id: the current connection's remote address, recent replacements and the last
/// report.
#[derive(Debug, Default)]
struct Track {
    connected_from: Option<String>,
    replacements: VecDeque<Instant>,
    /// The remote addresses of the last replacements, for the report.
    addresses: VecDeque<String>,
    reported: Option<Instant>,
    last_seen: Option<Instant>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct SharedKeyDetector {
    peers: HashMap<PeerId, Track>,
}

/// What to tell the operator about a peer id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Suspect {
    /// The peer id.
    pub(crate) peer_id: PeerId,
    /// Replacements within the window.
    pub(crate) replacements: usize,
    /// The remote addresses the connections came from (at most [`REPLACEMENTS`] + 1).
    pub(crate) addresses: Vec<String>,
}

impl SharedKeyDetector {
    /// A connection of `peer_id` from `remote_addr` was registered at `now`; `Some` when that
    /// makes the peer id a suspect to report.
    pub(crate) fn connected(
        &mut self,
        peer_id: PeerId,
        remote_addr: String,
        now: Instant,
    ) -> Option<Suspect> {
        if !self.peers.contains_key(&peer_id) && self.peers.len() >= MAX_TRACKED {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, track)| track.last_seen)
                .map(|(peer_id, _)| *peer_id);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let track = self.peers.entry(peer_id).or_default();
        track.last_seen = Some(now);
        // A first connection (or one after a disconnect) replaces nothing.
        let previous = track.connected_from.replace(remote_addr.clone())?;
        while track
            .replacements
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > WINDOW)
        {
            track.replacements.pop_front();
        }
        track.replacements.push_back(now);
        for address in [previous, remote_addr] {
            if !track.addresses.contains(&address) {
                track.addresses.push_back(address);
            }
        }
        while track.addresses.len() > REPLACEMENTS + 1 {
            track.addresses.pop_front();
        }
        if track.replacements.len() < REPLACEMENTS
            || track
                .reported
                .is_some_and(|at| now.saturating_duration_since(at) < REPORT_INTERVAL)
        {
            return None;
        }
        track.reported = Some(now);
        Some(Suspect {
            peer_id,
            replacements: track.replacements.len(),
            addresses: track.addresses.iter().cloned().collect(),
        })
    }

    /// `peer_id`'s current connection closed.
    pub(crate) fn disconnected(&mut self, peer_id: PeerId) {
        if let Some(track) = self.peers.get_mut(&peer_id) {
            track.connected_from = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::new([n; 32])
    }

    /// Connections that replace a live one, three times within the window, make a suspect,
    /// reported once per interval; reconnecting after a disconnect does not count.
    #[test]
    fn repeated_replacements_make_a_suspect() {
        let mut detector = SharedKeyDetector::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        // An honest peer that reconnects after each loss.
        for s in 0..10 {
            assert_eq!(detector.connected(peer(1), "a:1".into(), at(s)), None);
            detector.disconnected(peer(1));
        }
        // Two nodes with one key, each replacing the other.
        assert_eq!(detector.connected(peer(2), "a:1".into(), at(0)), None);
        assert_eq!(detector.connected(peer(2), "b:1".into(), at(2)), None);
        assert_eq!(detector.connected(peer(2), "a:2".into(), at(4)), None);
        let suspect = detector.connected(peer(2), "b:2".into(), at(6)).unwrap();
        assert_eq!(suspect.peer_id, peer(2));
        assert_eq!(suspect.replacements, 3);
        assert_eq!(
            suspect.addresses,
            ["a:1", "b:1", "a:2", "b:2"].map(String::from)
        );
        // Not again within the report interval, again after it.
        assert_eq!(detector.connected(peer(2), "a:3".into(), at(8)), None);
        assert_eq!(detector.connected(peer(2), "b:3".into(), at(30)), None);
        assert_eq!(detector.connected(peer(2), "a:4".into(), at(50)), None);
        assert!(detector.connected(peer(2), "b:4".into(), at(67)).is_some());
    }

    /// Replacements spread wider than the window do not add up.
    #[test]
    fn old_replacements_expire() {
        let mut detector = SharedKeyDetector::default();
        let t0 = Instant::now();
        for s in [0, 40, 80, 120, 160] {
            assert_eq!(
                detector.connected(peer(3), format!("a:{s}"), t0 + Duration::from_secs(s)),
                None
            );
        }
    }

    /// The table is bounded: the peer seen longest ago makes room.
    #[test]
    fn the_table_is_bounded() {
        let mut detector = SharedKeyDetector::default();
        let t0 = Instant::now();
        for n in 0..=MAX_TRACKED {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let _ = detector.connected(
                PeerId::new(id),
                "a:1".into(),
                t0 + Duration::from_millis(n as u64),
            );
        }
        assert_eq!(detector.peers.len(), MAX_TRACKED);
    }
}
