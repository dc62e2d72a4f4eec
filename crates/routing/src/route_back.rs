//! [`RouteBackTable`]: for each routed request that passed through (or started at) this
//! node, the peer it came from, so that the response can go back the same way. Bounded:
//! entries expire; one previous hop may hold at most its share (so a flooding neighbour
//! cannot push out everyone else's entries: its new request is refused instead); when the
//! table is full the oldest entry is evicted. The outcome of each insert says which, for the
//! caller's counters.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use netcore::PeerId;

use crate::routed::RoutedHash;

/// What [`RouteBackTable::insert`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteBackInsert {
    /// Entries past their expiry, removed.
    pub expired: usize,
    /// A live entry evicted because the table was full.
    pub evicted: bool,
    /// The entry was not recorded: its previous hop already holds its share. Drop the
    /// request (its response could not come back).
    pub refused: bool,
}

/// Request hash → previous hop, bounded in size, per hop and in time.
#[derive(Clone, Debug)]
pub struct RouteBackTable {
    capacity: usize,
    per_hop: usize,
    expiry: Duration,
    entries: HashMap<RoutedHash, (PeerId, Instant)>,
    per_hop_count: HashMap<PeerId, usize>,
    /// Insertion order; may hold entries already taken (checked against `entries`).
    order: VecDeque<(RoutedHash, Instant)>,
}

impl RouteBackTable {
    /// An empty table of at most `capacity` entries (at least 1), at most `per_hop` of them
    /// from one previous hop (at least 1), each living `expiry`.
    pub fn new(capacity: usize, per_hop: usize, expiry: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            per_hop: per_hop.max(1),
            expiry,
            entries: HashMap::new(),
            per_hop_count: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that the request `hash` came from `previous_hop` (the local node's own id
    /// for its own requests).
    pub fn insert(
        &mut self,
        hash: RoutedHash,
        previous_hop: PeerId,
        now: Instant,
    ) -> RouteBackInsert {
        let mut outcome = RouteBackInsert {
            expired: self.expire(now),
            ..RouteBackInsert::default()
        };
        if let Some((hop, _)) = self.entries.get(&hash).copied() {
            // The same request again (a retry, or a loop): the newer hop takes over.
            self.remove(&hash, hop);
        }
        if self.per_hop_count.get(&previous_hop).copied().unwrap_or(0) >= self.per_hop {
            outcome.refused = true;
            return outcome;
        }
        if self.entries.len() >= self.capacity {
            while let Some((oldest, at)) = self.order.pop_front() {
                if self.remove_if_current(&oldest, at) {
                    outcome.evicted = true;
                    break;
                }
            }
        }
        self.entries.insert(hash, (previous_hop, now));
        *self.per_hop_count.entry(previous_hop).or_default() += 1;
        self.order.push_back((hash, now));
        // Taken entries leave stale order slots; keep the queue within twice the capacity.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(hash, at)| entries.get(hash).is_some_and(|(_, since)| since == at));
        }
        outcome
    }

    /// The previous hop of the request `hash`, removing the entry (one response per
    /// request). `None` if unknown or expired.
    pub fn take(&mut self, hash: &RoutedHash, now: Instant) -> Option<PeerId> {
        let (peer, at) = self.entries.get(hash).copied()?;
        self.remove(hash, peer);
        (now.saturating_duration_since(at) < self.expiry).then_some(peer)
    }

    /// Removes expired entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(hash, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.expiry {
                break;
            }
            self.order.pop_front();
            if self.remove_if_current(&hash, at) {
                expired += 1;
            }
        }
        expired
    }

    fn remove_if_current(&mut self, hash: &RoutedHash, at: Instant) -> bool {
        match self.entries.get(hash).copied() {
            Some((hop, since)) if since == at => {
                self.remove(hash, hop);
                true
            }
            _ => false,
        }
    }

    fn remove(&mut self, hash: &RoutedHash, hop: PeerId) {
        self.entries.remove(hash);
        if let Some(count) = self.per_hop_count.get_mut(&hop) {
            *count -= 1;
            if *count == 0 {
                self.per_hop_count.remove(&hop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> RoutedHash {
        RoutedHash([n; 32])
    }

    const SEC: Duration = Duration::from_secs(1);

    /// An entry is found once, and not after its expiry.
    #[test]
    fn entries_expire_and_are_taken_once() {
        let start = Instant::now();
        let peer = PeerId::new([1; 32]);
        let mut table = RouteBackTable::new(10, 10, 120 * SEC);
        table.insert(hash(1), peer, start);
        table.insert(hash(2), peer, start + 60 * SEC);
        assert_eq!(table.take(&hash(1), start + 10 * SEC), Some(peer));
        assert_eq!(table.take(&hash(1), start + 10 * SEC), None);
        assert_eq!(table.take(&hash(2), start + 180 * SEC), None);
        table.insert(hash(3), peer, start + 65 * SEC);
        let outcome = table.insert(hash(4), peer, start + 190 * SEC);
        assert_eq!(outcome.expired, 1);
        assert_eq!(table.len(), 1);
    }

    /// When full, the oldest live entry is evicted and reported; the queue stays bounded.
    #[test]
    fn capacity_evicts_the_oldest() {
        let start = Instant::now();
        let peer = PeerId::new([1; 32]);
        let mut table = RouteBackTable::new(3, 3, 120 * SEC);
        for n in 0..3 {
            assert!(!table.insert(hash(n), peer, start).evicted);
        }
        // Taken entries do not count, and leave stale slots behind.
        assert_eq!(table.take(&hash(0), start), Some(peer));
        assert!(!table.insert(hash(3), peer, start).evicted);
        let other = PeerId::new([2; 32]);
        assert!(table.insert(hash(4), other, start).evicted);
        assert_eq!(table.take(&hash(1), start), None);
        assert_eq!(table.len(), 3);
        for n in 10..200 {
            table.insert(hash(n), other, start);
            table.take(&hash(n), start);
        }
        assert!(table.order.len() <= 6);
    }

    /// A hop that holds its share has its next request refused; the others' entries stay,
    /// and its share frees up as its entries are taken.
    #[test]
    fn one_hop_cannot_take_the_whole_table() {
        let start = Instant::now();
        let (flooder, honest) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let mut table = RouteBackTable::new(10, 4, 120 * SEC);
        table.insert(hash(200), honest, start);
        for n in 0..4 {
            assert!(!table.insert(hash(n), flooder, start).refused);
        }
        for n in 4..50 {
            let outcome = table.insert(hash(n), flooder, start);
            assert!(outcome.refused && !outcome.evicted);
        }
        assert_eq!(table.len(), 5);
        assert_eq!(table.take(&hash(200), start), Some(honest));
        assert_eq!(table.take(&hash(0), start), Some(flooder));
        assert!(!table.insert(hash(60), flooder, start).refused);
    }
}
