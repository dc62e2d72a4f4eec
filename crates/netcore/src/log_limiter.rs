//! [`LogLimiter`]: at most N log lines per interval from one call site, for logs a remote peer
//! can trigger at will (replays, bad keys, unknown peers). Metrics still count every event;
//! only the lines are limited.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets at most `max_per_interval` events through per `interval` and counts the rest, so that
/// the next line let through can say how many were suppressed before it.
///
/// Pure: the caller passes `now` (`Instant::now()`, or tokio's paused clock's instant in
/// tests). The interval is fixed, starting at the first event after the previous one ended.
/// Memory: a few words, whatever the event rate.
///
/// ```
/// use std::time::{Duration, Instant};
/// use netcore::LogLimiter;
///
/// let mut limiter = LogLimiter::new(2, Duration::from_secs(60));
/// let t0 = Instant::now();
/// assert_eq!(limiter.allow(t0), Some(0));
/// assert_eq!(limiter.allow(t0), Some(0));
/// assert_eq!(limiter.allow(t0), None); // suppressed, and counted
/// // The first line of the next interval reports the one suppressed line.
/// assert_eq!(limiter.allow(t0 + Duration::from_secs(60)), Some(1));
/// ```
#[derive(Clone, Debug)]
pub struct LogLimiter {
    max_per_interval: u32,
    interval: Duration,
    interval_start: Option<Instant>,
    allowed: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Lets `max_per_interval` lines through per `interval` (0 suppresses every line, and
    /// only the count grows).
    pub const fn new(max_per_interval: u32, interval: Duration) -> Self {
        Self {
            max_per_interval,
            interval,
            interval_start: None,
            allowed: 0,
            suppressed: 0,
        }
    }

    /// Records one event at `now`. `Some(suppressed)`: log it, and say that `suppressed`
    /// earlier lines were dropped since the last line let through (the count then restarts);
    /// `None`: drop the line.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let expired = self
            .interval_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            self.interval_start = Some(now);
            self.allowed = 0;
        }
        if self.allowed < self.max_per_interval {
            self.allowed += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }

    /// Lines dropped since the last one let through.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// A [`LogLimiter`] behind a mutex, for a `static` at a call site or a handle shared by the
/// clones of a component. `const`-constructible.
///
/// ```
/// use std::time::{Duration, Instant};
/// use netcore::SharedLogLimiter;
///
/// static REPLAYS: SharedLogLimiter = SharedLogLimiter::new(10, Duration::from_secs(60));
///
/// if let Some(suppressed) = REPLAYS.allow(Instant::now()) {
///     eprintln!("replayed message refused ({suppressed} similar lines suppressed)");
/// }
/// ```
#[derive(Debug)]
pub struct SharedLogLimiter(Mutex<LogLimiter>);

impl SharedLogLimiter {
    /// See [`LogLimiter::new`].
    pub const fn new(max_per_interval: u32, interval: Duration) -> Self {
        Self(Mutex::new(LogLimiter::new(max_per_interval, interval)))
    }

    /// See [`LogLimiter::allow`].
    pub fn allow(&self, now: Instant) -> Option<u64> {
        // A poisoned limiter is still a consistent one: every update is a few plain writes.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// N lines per interval; the rest are counted and reported by the next line let through,
    /// once, and the count restarts.
    #[test]
    fn limits_lines_per_interval_and_reports_the_suppressed_count() {
        let mut limiter = LogLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let seconds = |s| t0 + Duration::from_secs(s);
        let first: Vec<_> = (0..5).map(|_| limiter.allow(t0)).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(limiter.suppressed(), 2);
        // Still the same interval.
        assert_eq!(limiter.allow(seconds(9)), None);
        // A new interval: the first line carries the three suppressed ones, the next none.
        assert_eq!(limiter.allow(seconds(10)), Some(3));
        assert_eq!(limiter.allow(seconds(11)), Some(0));
        assert_eq!(limiter.suppressed(), 0);
    }

    /// A zero budget lets nothing through; a clock that goes back does not panic or reopen the
    /// interval.
    #[test]
    fn zero_budget_and_clock_steps_are_safe() {
        let mut limiter = LogLimiter::new(0, Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(5);
        assert_eq!(limiter.allow(t0), None);
        assert_eq!(limiter.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limiter.suppressed(), 2);

        let mut limiter = LogLimiter::new(1, Duration::from_secs(1));
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 - Duration::from_secs(5)), None);
    }

    /// The shared form behaves like the plain one.
    #[test]
    fn shared_limiter_counts_across_callers() {
        static LIMITER: SharedLogLimiter = SharedLogLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(LIMITER.allow(now), Some(0));
        assert_eq!(LIMITER.allow(now), None);
        assert_eq!(LIMITER.allow(now + Duration::from_secs(60)), Some(1));
    }
}
