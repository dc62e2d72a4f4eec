//! [`RequestLimiter`]: at most one answered peer exchange request per peer and interval.
//! Pure: time is an argument.

use std::collections::HashMap;
use std::time::Duration;

use netcore::PeerId;
use tokio::time::Instant;

/// Peers tracked at most. Entries older than the interval are useless and pruned first;
/// past this many peers within one interval, new askers are refused too, so the table stays
/// bounded whatever the churn of PeerIds.
pub(crate) const MAX_TRACKED_ASKERS: usize = 4096;

/// When each peer was last answered.
#[derive(Debug)]
pub(crate) struct RequestLimiter {
    interval: Duration,
    last_answered: HashMap<PeerId, Instant>,
}

impl RequestLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_answered: HashMap::new(),
        }
    }

    /// Whether `peer` may be answered at `now`; if so, records it.
    pub(crate) fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let interval = self.interval;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < interval;
        if self.last_answered.get(&peer).is_some_and(fresh) {
            return false;
        }
        if self.last_answered.len() >= MAX_TRACKED_ASKERS {
            self.last_answered.retain(|_, at| fresh(at));
            if self.last_answered.len() >= MAX_TRACKED_ASKERS {
                return false;
            }
        }
        self.last_answered.insert(peer, now);
        true
    }

    /// Peers tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last_answered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One answer per peer and interval; other peers are independent; a churn of askers
    /// never grows the table past its cap.
    #[test]
    fn one_answer_per_peer_and_interval() {
        let interval = Duration::from_secs(10);
        let mut limiter = RequestLimiter::new(interval);
        let t0 = Instant::now();
        let a = PeerId::new([1; 32]);
        let b = PeerId::new([2; 32]);
        assert!(limiter.allow(a, t0));
        assert!(!limiter.allow(a, t0 + Duration::from_secs(9)));
        assert!(limiter.allow(b, t0 + Duration::from_secs(9)));
        assert!(limiter.allow(a, t0 + interval));

        for n in 0..10_000_u32 {
            let mut bytes = [0; 32];
            bytes[..4].copy_from_slice(&n.to_le_bytes());
            limiter.allow(PeerId::new(bytes), t0 + interval);
        }
        assert!(limiter.len() <= MAX_TRACKED_ASKERS);
    }
}
