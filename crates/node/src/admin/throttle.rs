//! A log line rate limit: at most one line per interval, the next one saying how many were
//! left out meanwhile. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// At most one log line per `interval`.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// A limit of one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether a line may be written at `now`: `Some(lines left out since the last one)`, or
    /// `None` (and it is counted as left out).
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per second; the next one admitted carries the count of those left out.
    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let mut throttle = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(throttle.admit(at(0)), Some(0));
        assert_eq!(throttle.admit(at(10)), None);
        assert_eq!(throttle.admit(at(999)), None);
        assert_eq!(throttle.admit(at(1000)), Some(2));
        assert_eq!(throttle.admit(at(1500)), None);
        assert_eq!(throttle.admit(at(5000)), Some(1));
        assert_eq!(throttle.admit(at(6000)), Some(0));
    }
}
