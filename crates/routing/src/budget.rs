//! [`VerifyBudget`]: how many edges each sending peer may make this node verify, as a token
//! bucket per sender. Edges from a peer's own Sybil identities verify fine, so the ban on a
//! bad signature does not bound them; this does. The burst lets the first reconciliation with
//! a peer through; after it, a peer gets `rate_per_sec`. What is over the budget is dropped
//! before verification (and comes again with a later reconciliation).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netcore::PeerId;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-sender token buckets of edges to verify. Holds one bucket per sender the caller
/// reports; the caller forgets a sender when its connection ends.
#[derive(Clone, Debug)]
pub struct VerifyBudget {
    rate_per_sec: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

impl VerifyBudget {
    /// Buckets of `burst` edges refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate_per_sec: f64::from(rate_per_sec),
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// How many of `wanted` edges from `sender` may be verified at `now` (taken from its
    /// bucket). Truncate the precheck's list to it; count the rest as over budget.
    pub fn admit(&mut self, sender: PeerId, wanted: usize, now: Instant) -> usize {
        let (rate, burst) = (self.rate_per_sec, self.burst);
        let bucket = self.buckets.entry(sender).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        let admitted = (bucket.tokens.floor() as usize).min(wanted);
        bucket.tokens -= admitted as f64;
        admitted
    }

    /// Forgets `sender` (its connection ended).
    pub fn forget(&mut self, sender: &PeerId) {
        self.buckets.remove(sender);
    }

    /// Senders tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How long until `sender` may verify `edges` more, at the current rate.
    pub fn wait_for(&self, sender: &PeerId, edges: usize) -> Duration {
        let tokens = self
            .buckets
            .get(sender)
            .map_or(self.burst, |bucket| bucket.tokens);
        let missing = (edges as f64 - tokens).max(0.0);
        if self.rate_per_sec <= 0.0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(missing / self.rate_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The burst goes through, then the rate; senders are independent; forgetting resets.
    #[test]
    fn burst_then_rate_per_sender() {
        let start = Instant::now();
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let mut budget = VerifyBudget::new(100, 1_000);
        assert_eq!(budget.admit(a, 800, start), 800);
        assert_eq!(budget.admit(a, 800, start), 200);
        assert_eq!(budget.admit(a, 800, start), 0);
        assert_eq!(budget.admit(b, 800, start), 800);
        assert_eq!(budget.admit(a, 800, start + Duration::from_secs(2)), 200);
        assert_eq!(budget.wait_for(&a, 50), Duration::from_millis(500));
        budget.forget(&a);
        assert_eq!(budget.len(), 1);
        assert_eq!(
            budget.admit(a, 2_000, start + Duration::from_secs(3)),
            1_000
        );
        // Refill is capped at the burst.
        assert_eq!(
            budget.admit(b, 5_000, start + Duration::from_secs(3_600)),
            1_000
        );
    }
}
