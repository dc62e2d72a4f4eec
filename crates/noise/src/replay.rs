//! Replay defences that need no cryptography: the responder's cache of recently seen
//! ephemeral keys and its freshness window on the handshake timestamp, and the initiator's
//! process-wide strictly increasing timestamps.
//!
//! A replayed message 1 is the same 168 bytes again, so its ephemeral key (in clear at bytes
//! 64..96) is one the responder has seen. [`EphemeralCache`] remembers the ephemeral keys of
//! the last [`REPLAY_CACHE_CAPACITY`] messages 1 that decrypted; a message whose key is in it is
//! refused before any Diffie-Hellman. Only a message that decrypted is recorded, so an attacker
//! cannot flush the cache with garbage: it takes as many genuine messages 1 (each costing it
//! two DH operations and us two or four). Past the cache, the timestamp in the payload must lie
//! within [`TIMESTAMP_WINDOW`] of our clock, which bounds how long a captured message is worth
//! replaying at all.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::keys::PublicKey;

/// How many ephemeral keys the responder remembers (per [`HandshakeConfig`] and its clones).
/// About 300 KiB when full: 32 bytes in a queue plus a hash-set entry per key.
///
/// [`HandshakeConfig`]: crate::HandshakeConfig
pub const REPLAY_CACHE_CAPACITY: usize = 4096;

/// How far the timestamp in message 1 may be from the responder's clock, either way, in both
/// auth modes. AptosNet initiators send their current time, so only a clock off by more than
/// this is refused.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The ephemeral keys of the last `capacity` messages 1 that decrypted, oldest first out.
#[derive(Debug)]
pub(crate) struct EphemeralCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    order: VecDeque<PublicKey>,
    keys: HashSet<PublicKey>,
}

impl EphemeralCache {
    /// A cache of `capacity` keys; 0 remembers nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// The most keys it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `key` was recorded and not yet pushed out.
    pub(crate) fn contains(&self, key: &PublicKey) -> bool {
        self.lock().keys.contains(key)
    }

    /// Records `key`; false if it was already there (a replay racing the original).
    pub(crate) fn insert(&self, key: PublicKey) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let mut entries = self.lock();
        if !entries.keys.insert(key) {
            return false;
        }
        entries.order.push_back(key);
        if entries.order.len() > self.capacity
            && let Some(oldest) = entries.order.pop_front()
        {
            entries.keys.remove(&oldest);
        }
        true
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic cannot leave the two halves apart: no code between their updates can panic
        // except on allocation failure, which aborts.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `timestamp` lies within `window` of `now_millis`, either way.
pub(crate) fn is_fresh(timestamp: u64, now_millis: u64, window: Duration) -> bool {
    let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    timestamp.abs_diff(now_millis) <= window
}

/// The last timestamp this process put in a message 1.
static LAST_SENT: AtomicU64 = AtomicU64::new(0);

/// The timestamp to send in a message 1 at `now_millis`: `max(now_millis, last sent + 1)`
/// over the whole process. A mutual-mode responder refuses a timestamp that is not greater
/// than the last one it accepted from our key, so two dials in the same millisecond, or a
/// clock that steps back, would otherwise get us refused. The value runs ahead of the clock
/// only by the number of dials made faster than one per millisecond.
pub fn handshake_timestamp(now_millis: u64) -> u64 {
    let mut last = LAST_SENT.load(Ordering::Relaxed);
    loop {
        let next = now_millis.max(last.saturating_add(1));
        match LAST_SENT.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> PublicKey {
        let mut bytes = [0x11; 32];
        bytes[..2].copy_from_slice(&n.to_le_bytes());
        PublicKey::from(bytes)
    }

    /// The cache holds the last `capacity` keys: a second insert of a held key is refused, the
    /// oldest key goes first, and it never grows past its capacity.
    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest_first() {
        let cache = EphemeralCache::new(3);
        for n in 0..3 {
            assert!(cache.insert(key(n)));
        }
        assert!(!cache.insert(key(1)));
        assert!(cache.insert(key(3)));
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&key(0)));
        assert!(cache.contains(&key(1)) && cache.contains(&key(3)));
        for n in 4..1000 {
            cache.insert(key(n));
        }
        assert_eq!(cache.len(), 3);

        let off = EphemeralCache::new(0);
        assert!(off.insert(key(1)) && off.insert(key(1)));
        assert!(!off.contains(&key(1)));
    }

    #[test]
    fn freshness_is_symmetric_and_inclusive() {
        let window = Duration::from_secs(300);
        let now = 1_000_000_000;
        assert!(is_fresh(now, now, window));
        assert!(is_fresh(now - 300_000, now, window));
        assert!(is_fresh(now + 300_000, now, window));
        assert!(!is_fresh(now - 300_001, now, window));
        assert!(!is_fresh(now + 300_001, now, window));
        assert!(!is_fresh(0, now, window));
        assert!(!is_fresh(u64::MAX, now, window));
    }

    /// Two dials in one millisecond and a clock that steps back still send strictly
    /// increasing timestamps (other tests share the counter, so only the order is checked).
    #[test]
    fn initiator_timestamps_strictly_increase_process_wide() {
        let now = crate::now_millis();
        let first = handshake_timestamp(now);
        let second = handshake_timestamp(now);
        let after_step_back = handshake_timestamp(now - 60_000);
        assert!(first >= now);
        assert!(second > first);
        assert!(after_step_back > second);
        let later = handshake_timestamp(after_step_back + 10_000);
        assert_eq!(later, after_step_back + 10_000);
    }
}
