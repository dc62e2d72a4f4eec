//! [`RouteBackTable`]: for each routed request that passed through (or started at) this
//! node, the peer it came from, so that the response can go back the same way. Bounded:
//! entries expire, and when full the oldest is evicted (and counted by the caller from the
//! outcome).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use netcore::PeerId;

use crate::routed::RoutedHash;

/// What [`RouteBackTable::insert`] had to drop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteBackInsert {
    /// Entries past their expiry, removed.
    pub expired: usize,
    /// A live entry evicted because the table was full.
    pub evicted: bool,
}

/// Request hash → previous hop, bounded in size and time.
#[derive(Clone, Debug)]
pub struct RouteBackTable {
    capacity: usize,
    expiry: Duration,
    entries: HashMap<RoutedHash, (PeerId, Instant)>,
    /// Insertion order; may hold entries already taken (checked against `entries`).
    order: VecDeque<(RoutedHash, Instant)>,
}

impl RouteBackTable {
    /// An empty table of at most `capacity` (at least 1) entries living `expiry`.
    pub fn new(capacity: usize, expiry: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            expiry,
            entries: HashMap::new(),
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
            evicted: false,
        };
        if !self.entries.contains_key(&hash) && self.entries.len() >= self.capacity {
            while let Some((oldest, at)) = self.order.pop_front() {
                if self.remove_if_current(&oldest, at) {
                    outcome.evicted = true;
                    break;
                }
            }
        }
        self.entries.insert(hash, (previous_hop, now));
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
        let (peer, at) = self.entries.remove(hash)?;
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
        if self
            .entries
            .get(hash)
            .is_some_and(|(_, since)| *since == at)
        {
            self.entries.remove(hash);
            true
        } else {
            false
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
        let mut table = RouteBackTable::new(10, 120 * SEC);
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
        let mut table = RouteBackTable::new(3, 120 * SEC);
        for n in 0..3 {
            assert!(!table.insert(hash(n), peer, start).evicted);
        }
        // Taken entries do not count, and leave stale slots behind.
        assert_eq!(table.take(&hash(0), start), Some(peer));
        assert!(!table.insert(hash(3), peer, start).evicted);
        assert!(table.insert(hash(4), peer, start).evicted);
        assert_eq!(table.take(&hash(1), start), None);
        assert_eq!(table.len(), 3);
        for n in 10..200 {
            table.insert(hash(n), peer, start);
            table.take(&hash(n), start);
        }
        assert!(table.order.len() <= 6);
    }
}
