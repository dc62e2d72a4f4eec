//! [`DeadlineTable`]: the skeleton both RPC tables (`rpc`) are built on. Entries are keyed by
//! an id and carry a deadline; the table caps how many are live, and expires them by a `now`
//! passed in. Pure: no clock, no timers, no metrics.
//!
//! Nothing needs a timer for correctness: a deadline is enforced the first time the table is
//! given a `now` past it ([`DeadlineTable::expire`] or [`DeadlineTable::take`]). Expired
//! entries wait in a queue for [`DeadlineTable::poll_expired`], so that the owner can tell
//! whoever was waiting on them.
//!
//! The keys come from the owner's own counter ([`DeadlineTable::insert_with`]: outbound request
//! ids, inbound slots), never from the remote, so the table need not resist chosen keys: an
//! entry lives at place `key mod capacity` of a ring whose capacity is a power of two, and a
//! look-up is one index and one compare instead of a hash. The counter skips keys whose place
//! is taken. The ring doubles while more than half of it would be live, so it always has a
//! free place, an idle table holds no ring at all, and a busy one at most four places per live
//! entry.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A key of a [`DeadlineTable`]: an id from a counter that counts up by one (wrapping), so that
/// consecutive keys take consecutive places of the ring.
pub trait RingKey: Copy + Eq {
    /// The counter's value; its low bits are the key's place.
    fn ring_bits(self) -> u64;
}

/// The smallest ring allocated, in places.
const MIN_RING: usize = 4;

/// Live entries `K → V` with a deadline each, at most `max_live` of them, and the entries that
/// expired and were not polled yet.
#[derive(Debug)]
pub struct DeadlineTable<K, V> {
    /// Empty, or a power of two long; a live entry sits at `key.ring_bits() mod len`.
    ring: Vec<Option<Timed<K, V>>>,
    live: usize,
    expired: VecDeque<(K, V)>,
    /// No live deadline is earlier than this (a lower bound, kept up to date by inserts and by
    /// scans): [`expire`](Self::expire) before it has nothing to do and skips its scan, so that
    /// a busy connection does not scan every live entry per request.
    due_from: Option<Instant>,
    max_live: usize,
    closed: bool,
}

#[derive(Debug)]
struct Timed<K, V> {
    key: K,
    deadline: Instant,
    value: V,
}

/// Why an entry was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max_live` entries are live already.
    TooMany,
    /// The table was closed: the peer is disconnecting.
    Closed,
}

/// What [`DeadlineTable::take`] found under a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<V> {
    /// A live entry, now removed.
    Live(V),
    /// A live entry whose deadline had passed: it is now in the expired queue.
    Expired,
    /// No live entry (never inserted, removed, or expired earlier).
    Missing,
}

impl<K: RingKey, V> DeadlineTable<K, V> {
    /// An empty, open table admitting at most `max_live` entries at once.
    pub fn new(max_live: usize) -> Self {
        Self {
            ring: Vec::new(),
            live: 0,
            expired: VecDeque::new(),
            due_from: None,
            max_live,
            closed: false,
        }
    }

    /// Whether one more entry would be admitted. Call [`expire`](Self::expire) first, so that
    /// expired entries do not hold places.
    pub fn check_room(&self) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if self.live >= self.max_live {
            return Err(Refused::TooMany);
        }
        Ok(())
    }

    /// Adds `value`, to expire at `deadline`, if [`check_room`](Self::check_room) allows,
    /// under the first key from `next_key` whose place is free; returns that key. `next_key`
    /// must count up by one per call (wrapping), so that it reaches a free place within as
    /// many calls as the ring has places.
    pub fn insert_with(
        &mut self,
        mut next_key: impl FnMut() -> K,
        deadline: Instant,
        value: V,
    ) -> Result<K, Refused> {
        self.check_room()?;
        if (self.live + 1) * 2 > self.ring.len() {
            self.grow();
        }
        let mask = self.ring.len() - 1;
        let (key, place) = loop {
            let key = next_key();
            let place = key.ring_bits() as usize & mask;
            if self.ring[place].is_none() {
                break (key, place);
            }
        };
        self.ring[place] = Some(Timed {
            key,
            deadline,
            value,
        });
        self.live += 1;
        if self.due_from.is_none_or(|due_from| deadline < due_from) {
            self.due_from = Some(deadline);
        }
        Ok(key)
    }

    /// Doubles the ring (or allocates the first) and puts every live entry at its new place.
    fn grow(&mut self) {
        let len = (self.ring.len() * 2).max(MIN_RING);
        let old = std::mem::replace(&mut self.ring, (0..len).map(|_| None).collect());
        for timed in old.into_iter().flatten() {
            let place = timed.key.ring_bits() as usize & (len - 1);
            // Keys that shared a place modulo the old length cannot: they held different
            // places, and the new length is a multiple of the old.
            self.ring[place] = Some(timed);
        }
    }

    /// The place of `key`'s entry, if it is live.
    fn place_of(&mut self, key: K) -> Option<&mut Option<Timed<K, V>>> {
        if self.ring.is_empty() {
            return None;
        }
        let mask = self.ring.len() - 1;
        let place = &mut self.ring[key.ring_bits() as usize & mask];
        place
            .as_ref()
            .is_some_and(|timed| timed.key == key)
            .then_some(place)
    }

    /// Whether `key` is live.
    #[cfg(test)]
    pub(crate) fn contains(&mut self, key: K) -> bool {
        self.place_of(key).is_some()
    }

    /// Removes the live entry under `key`, whatever its deadline.
    pub fn remove(&mut self, key: K) -> Option<V> {
        let timed = self.place_of(key)?.take()?;
        self.live -= 1;
        Some(timed.value)
    }

    /// Removes the live entry under `key` at `now`: handed back if its deadline is still ahead,
    /// else moved to the expired queue.
    pub fn take(&mut self, key: K, now: Instant) -> Taken<V> {
        let Some(timed) = self.place_of(key).and_then(Option::take) else {
            return Taken::Missing;
        };
        self.live -= 1;
        if timed.deadline <= now {
            self.expired.push_back((key, timed.value));
            Taken::Expired
        } else {
            Taken::Live(timed.value)
        }
    }

    /// Moves every live entry whose deadline is at or before `now` to the expired queue,
    /// earliest deadline first.
    pub fn expire(&mut self, now: Instant) {
        if self.due_from.is_none_or(|due_from| now < due_from) {
            return;
        }
        let mut due: Vec<Timed<K, V>> = Vec::new();
        for place in &mut self.ring {
            if place.as_ref().is_some_and(|timed| timed.deadline <= now) {
                due.extend(place.take());
            }
        }
        self.live -= due.len();
        due.sort_by_key(|timed| timed.deadline);
        self.expired
            .extend(due.into_iter().map(|timed| (timed.key, timed.value)));
        self.due_from = self.next_deadline();
    }

    /// A lower bound of the live deadlines (`None` when none is live since the last
    /// [`expire`](Self::expire) that scanned): the time at which `expire` next has something
    /// to do, at the earliest.
    pub fn due_from(&self) -> Option<Instant> {
        self.due_from
    }

    /// Whether an expired entry waits for [`poll_expired`](Self::poll_expired).
    #[inline]
    pub fn has_expired(&self) -> bool {
        !self.expired.is_empty()
    }

    /// The next expired entry, oldest expiry first.
    pub fn poll_expired(&mut self) -> Option<(K, V)> {
        self.expired.pop_front()
    }

    /// Refuses every later insert and returns every entry, expired-but-unpolled first, then
    /// live.
    pub fn close(&mut self) -> Vec<V> {
        self.closed = true;
        self.due_from = None;
        self.live = 0;
        let mut values: Vec<V> = self.expired.drain(..).map(|(_, value)| value).collect();
        values.extend(self.ring.drain(..).flatten().map(|timed| timed.value));
        values
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The live entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.ring
            .iter()
            .flatten()
            .map(|timed| (timed.key, &timed.value))
    }

    /// The earliest deadline among live entries.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ring.iter().flatten().map(|timed| timed.deadline).min()
    }

    /// Live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The most entries live at once.
    pub fn max_live(&self) -> usize {
        self.max_live
    }
}

/// `now + timeout`, or about a century from now if that overflows (a caller asking for
/// `Duration::MAX` means "no timeout").
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(FAR_FUTURE_SECS))
}

/// What "no timeout" turns into: 100 years.
const FAR_FUTURE_SECS: u64 = 100 * 365 * 24 * 60 * 60;

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    impl RingKey for u64 {
        fn ring_bits(self) -> u64 {
            self
        }
    }

    /// A counter from `first`, as the tables' owners keep one.
    fn counter(first: u64) -> impl FnMut() -> u64 {
        let mut next = first;
        move || {
            next += 1;
            next - 1
        }
    }

    /// `expire` moves exactly the entries at or past their deadline, oldest expiry polled
    /// first; `take` hands back a live entry and expires a late one.
    #[test]
    fn expire_and_take_follow_the_deadlines() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(10);
        assert_eq!(table.insert_with(counter(1), now + SEC, "a"), Ok(1));
        assert_eq!(table.insert_with(counter(2), now + 3 * SEC, "b"), Ok(2));
        assert_eq!(table.insert_with(counter(3), now + 5 * SEC, "c"), Ok(3));
        assert_eq!(table.next_deadline(), Some(now + SEC));
        table.expire(now);
        assert_eq!(table.poll_expired(), None);
        table.expire(now + SEC);
        assert_eq!(table.poll_expired(), Some((1, "a")));
        assert_eq!(table.poll_expired(), None);
        assert_eq!(table.take(1, now + SEC), Taken::Missing);
        assert_eq!(table.take(2, now + 4 * SEC), Taken::Expired);
        assert_eq!(table.poll_expired(), Some((2, "b")));
        assert_eq!(table.take(3, now + 4 * SEC), Taken::Live("c"));
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_deadline(), None);
    }

    /// Entries expiring together are polled earliest deadline first, whatever their places.
    #[test]
    fn expired_entries_come_out_by_deadline() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(10);
        let mut keys = counter(0);
        for delay in [3, 1, 2] {
            table
                .insert_with(&mut keys, now + delay * SEC, delay)
                .unwrap();
        }
        table.expire(now + 3 * SEC);
        let polled: Vec<_> = std::iter::from_fn(|| table.poll_expired()).collect();
        assert_eq!(polled, [(1, 1), (2, 2), (0, 3)]);
    }

    /// The cap refuses, a removal frees a place, and a closed table refuses and hands
    /// everything back.
    #[test]
    fn cap_and_close_refuse_inserts() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(2);
        let mut keys = counter(1);
        table.insert_with(&mut keys, now + SEC, 1).unwrap();
        table.insert_with(&mut keys, now + 2 * SEC, 2).unwrap();
        assert_eq!(table.insert_with(&mut keys, now, 3), Err(Refused::TooMany));
        assert_eq!(table.remove(2), Some(2));
        assert!(!table.contains(2));
        table.insert_with(&mut keys, now + 2 * SEC, 4).unwrap();
        table.expire(now + SEC);
        let mut values = table.close();
        values.sort_unstable();
        assert_eq!(values, [1, 4]);
        assert_eq!(table.check_room(), Err(Refused::Closed));
        assert_eq!(table.poll_expired(), None);
    }

    /// Keys whose place is taken are skipped; a key that maps to a live entry's place but is
    /// not its key finds nothing; growing keeps every entry reachable.
    #[test]
    fn taken_places_are_skipped_and_growth_keeps_entries() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(100);
        // The first ring has MIN_RING places: key MIN_RING shares key 0's place.
        assert_eq!(table.insert_with(counter(0), now + SEC, 0), Ok(0));
        assert_eq!(
            table.insert_with(counter(MIN_RING as u64), now + SEC, 1),
            Ok(MIN_RING as u64 + 1)
        );
        assert_eq!(table.take(MIN_RING as u64, now), Taken::Missing);
        assert_eq!(table.remove(MIN_RING as u64), None);
        let mut keys = counter(1000);
        let more: Vec<u64> = (0..50)
            .map(|value| table.insert_with(&mut keys, now + SEC, value).unwrap())
            .collect();
        assert_eq!(table.len(), 52);
        assert!(table.ring.len() >= 104);
        assert_eq!(table.take(0, now), Taken::Live(0));
        assert_eq!(table.take(MIN_RING as u64 + 1, now), Taken::Live(1));
        for (value, key) in more.into_iter().enumerate() {
            assert_eq!(table.remove(key), Some(value as u64));
        }
        assert_eq!(table.len(), 0);
    }

    /// A timeout too large to add means "never", not a panic.
    #[test]
    fn deadline_after_saturates_to_the_far_future() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, SEC), now + SEC);
        assert!(
            deadline_after(now, Duration::MAX) > now + Duration::from_secs(FAR_FUTURE_SECS / 2)
        );
    }
}
