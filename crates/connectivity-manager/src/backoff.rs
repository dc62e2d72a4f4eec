//! [`Backoff`]: capped exponential backoff with jitter, one per peer. Pure: the caller passes
//! the random number generator.

use std::time::Duration;

use rand::Rng;

use crate::config::Config;

/// The redial delay of one peer: `base × 2^failures`, capped at `max`, plus a uniformly random
/// jitter in `[0, max_jitter]`.
///
/// With the defaults, successive delays are 2, 4, 8, 16, 32, 60, 60, ... s, each plus up to
/// 100 ms. The policy [`reset`](Self::reset)s it when a connection to the peer is established
/// and when the peer's address set changes.
///
/// ```
/// # use std::time::Duration;
/// # use connectivity_manager::Backoff;
/// # use rand::{SeedableRng, rngs::StdRng};
/// let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60), Duration::ZERO);
/// let mut rng = StdRng::seed_from_u64(0);
/// assert_eq!(backoff.next_delay(&mut rng), Duration::from_secs(2));
/// assert_eq!(backoff.next_delay(&mut rng), Duration::from_secs(4));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(&mut rng), Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    max_jitter: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures recorded.
    pub const fn new(base: Duration, max: Duration, max_jitter: Duration) -> Self {
        Self {
            base,
            max,
            max_jitter,
            failures: 0,
        }
    }

    /// A backoff with the config's base, cap and jitter.
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.backoff_base,
            config.max_backoff,
            config.max_backoff_jitter,
        )
    }

    /// The delay for the next failure, without jitter: `base × 2^failures`, capped.
    pub fn delay(&self) -> Duration {
        // 2^31 × base overflows any useful cap; stop doubling there.
        let factor = 1u32 << self.failures.min(31);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A fresh uniformly random jitter in `[0, max_jitter]`.
    pub fn jitter<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        // Nanosecond resolution; a jitter above u64::MAX ns (584 years) is clamped.
        let max_nanos = u64::try_from(self.max_jitter.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=max_nanos))
    }

    /// Records one more failure: the next [`delay`](Self::delay) doubles, up to the cap.
    pub fn record_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The delay to wait after a failure, jitter included, and records that failure.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let delay = self.delay() + self.jitter(rng);
        self.record_failure();
        delay
    }

    /// Forgets every failure: the next delay is `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures recorded since the last reset.
    pub const fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const JITTER: Duration = Duration::from_millis(100);

    /// With the defaults the delays are 2, 4, 8, 16, 32, 60, 60 s, each plus a jitter of at
    /// most 100 ms, and the jitter is not always zero.
    #[test]
    fn backoff_doubles_from_two_seconds_up_to_the_sixty_second_cap() {
        let mut backoff = Backoff::from_config(&Config::default());
        let mut rng = StdRng::seed_from_u64(42);
        let mut total_jitter = Duration::ZERO;
        for expected_secs in [2, 4, 8, 16, 32, 60, 60, 60] {
            let expected = Duration::from_secs(expected_secs);
            let delay = backoff.next_delay(&mut rng);
            assert!(
                delay >= expected && delay <= expected + JITTER,
                "{delay:?} is not {expected:?} + [0, 100 ms]"
            );
            total_jitter += delay - expected;
        }
        assert!(total_jitter > Duration::ZERO);
        assert_eq!(backoff.failures(), 8);
    }

    /// Reset starts the sequence over at the base delay.
    #[test]
    fn reset_returns_to_the_base_delay() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60), JITTER);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..4 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.delay(), Duration::from_secs(32));
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.delay(), Duration::from_secs(2));
    }

    /// Thousands of failures neither overflow nor exceed the cap.
    #[test]
    fn many_failures_saturate_at_the_cap() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60), JITTER);
        for _ in 0..10_000 {
            backoff.record_failure();
        }
        assert_eq!(backoff.delay(), Duration::from_secs(60));
    }

    /// The same seed gives the same jitter, so tests of the policy are reproducible.
    #[test]
    fn seeded_jitter_is_reproducible() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60), JITTER);
        let a = backoff.jitter(&mut StdRng::seed_from_u64(9));
        let b = backoff.jitter(&mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
        assert!(a <= JITTER);
    }
}
