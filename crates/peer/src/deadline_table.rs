//! [`DeadlineTable`]: the skeleton both RPC tables (`rpc`) are built on. Entries are keyed by
//! an id and carry a deadline; the table caps how many are live, and expires them by a `now`
//! passed in. Pure: no clock, no timers, no metrics.
//!
//! Nothing needs a timer for correctness: a deadline is enforced the first time the table is
//! given a `now` past it ([`DeadlineTable::expire`] or [`DeadlineTable::take`]). Expired
//! entries wait in a queue for [`DeadlineTable::poll_expired`], so that the owner can tell
//! whoever was waiting on them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Live entries `K → V` with a deadline each, at most `max_live` of them, and the entries that
/// expired and were not polled yet.
#[derive(Debug)]
pub(crate) struct DeadlineTable<K, V> {
    live: HashMap<K, Timed<V>>,
    expired: VecDeque<(K, V)>,
    /// No live deadline is earlier than this (a lower bound, kept up to date by inserts and by
    /// scans): [`expire`](Self::expire) before it has nothing to do and skips its scan, so that
    /// a busy connection does not scan every live entry per request.
    due_from: Option<Instant>,
    max_live: usize,
    closed: bool,
}

#[derive(Debug)]
struct Timed<V> {
    deadline: Instant,
    value: V,
}

/// Why an entry was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_live` entries are live already.
    TooMany,
    /// The table was closed: the peer is disconnecting.
    Closed,
}

/// What [`DeadlineTable::take`] found under a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken<V> {
    /// A live entry, now removed.
    Live(V),
    /// A live entry whose deadline had passed: it is now in the expired queue.
    Expired,
    /// No live entry (never inserted, removed, or expired earlier).
    Missing,
}

impl<K: Copy + Eq + Hash, V> DeadlineTable<K, V> {
    /// An empty, open table admitting at most `max_live` entries at once.
    pub(crate) fn new(max_live: usize) -> Self {
        Self {
            live: HashMap::new(),
            expired: VecDeque::new(),
            due_from: None,
            max_live,
            closed: false,
        }
    }

    /// Whether one more entry would be admitted. Call [`expire`](Self::expire) first, so that
    /// expired entries do not hold places.
    pub(crate) fn check_room(&self) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if self.live.len() >= self.max_live {
            return Err(Refused::TooMany);
        }
        Ok(())
    }

    /// Adds `value` under a key not in use, to expire at `deadline`, if
    /// [`check_room`](Self::check_room) allows.
    pub(crate) fn insert(&mut self, key: K, deadline: Instant, value: V) -> Result<(), Refused> {
        self.check_room()?;
        if self.due_from.is_none_or(|due_from| deadline < due_from) {
            self.due_from = Some(deadline);
        }
        self.live.insert(key, Timed { deadline, value });
        Ok(())
    }

    /// Whether `key` is live.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.live.contains_key(key)
    }

    /// Removes the live entry under `key`, whatever its deadline.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.live.remove(key).map(|timed| timed.value)
    }

    /// Removes the live entry under `key` at `now`: handed back if its deadline is still ahead,
    /// else moved to the expired queue.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> Taken<V> {
        let Entry::Occupied(entry) = self.live.entry(key) else {
            return Taken::Missing;
        };
        let timed = entry.remove();
        if timed.deadline <= now {
            self.expired.push_back((key, timed.value));
            Taken::Expired
        } else {
            Taken::Live(timed.value)
        }
    }

    /// Moves every live entry whose deadline is at or before `now` to the expired queue.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.due_from.is_none_or(|due_from| now < due_from) {
            return;
        }
        let due: Vec<K> = self
            .live
            .iter()
            .filter(|(_, timed)| timed.deadline <= now)
            .map(|(&key, _)| key)
            .collect();
        for key in due {
            if let Some(timed) = self.live.remove(&key) {
                self.expired.push_back((key, timed.value));
            }
        }
        self.due_from = self.next_deadline();
    }

    /// The next expired entry, oldest expiry first.
    pub(crate) fn poll_expired(&mut self) -> Option<(K, V)> {
        self.expired.pop_front()
    }

    /// Refuses every later insert and returns every entry, expired-but-unpolled first, then
    /// live.
    pub(crate) fn close(&mut self) -> Vec<V> {
        self.closed = true;
        self.due_from = None;
        let mut values: Vec<V> = self.expired.drain(..).map(|(_, value)| value).collect();
        values.extend(self.live.drain().map(|(_, timed)| timed.value));
        values
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The live entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.live.iter().map(|(key, timed)| (key, &timed.value))
    }

    /// The earliest deadline among live entries.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.live.values().map(|timed| timed.deadline).min()
    }

    /// Live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The most entries live at once.
    pub(crate) fn max_live(&self) -> usize {
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

    /// `expire` moves exactly the entries at or past their deadline, oldest expiry polled
    /// first; `take` hands back a live entry and expires a late one.
    #[test]
    fn expire_and_take_follow_the_deadlines() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(10);
        table.insert(1, now + SEC, "a").unwrap();
        table.insert(2, now + 3 * SEC, "b").unwrap();
        table.insert(3, now + 5 * SEC, "c").unwrap();
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

    /// The cap refuses, a removal frees a place, and a closed table refuses and hands
    /// everything back.
    #[test]
    fn cap_and_close_refuse_inserts() {
        let now = Instant::now();
        let mut table = DeadlineTable::new(2);
        table.insert(1, now + SEC, 1).unwrap();
        table.insert(2, now + 2 * SEC, 2).unwrap();
        assert_eq!(table.insert(3, now, 3), Err(Refused::TooMany));
        assert_eq!(table.remove(&2), Some(2));
        assert!(!table.contains(&2));
        table.insert(4, now + 2 * SEC, 4).unwrap();
        table.expire(now + SEC);
        let mut values = table.close();
        values.sort_unstable();
        assert_eq!(values, [1, 4]);
        assert_eq!(table.check_room(), Err(Refused::Closed));
        assert_eq!(table.poll_expired(), None);
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
