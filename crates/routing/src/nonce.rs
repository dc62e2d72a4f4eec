//! Edge nonces: milliseconds since the Unix epoch, odd while the edge is active, even once it
//! is removed. A higher nonce replaces a lower one.
//!
//! Taking the clock keeps nonces increasing across restarts without storing them; the low
//! bit carries the state. A node that knows a nonce at or above the clock's (its clock is
//! behind, or it reconnected within the same millisecond) steps above the known one
//! instead. Nonces too far in the future are refused ([`check_not_future`]) so that nobody
//! can sign an edge no later edge could ever replace.

use crate::error::Error;

/// Whether `nonce` marks an active edge (odd).
pub const fn is_active(nonce: u64) -> bool {
    nonce % 2 == 1
}

/// A new active (odd) nonce for an edge: the clock made odd, or the first odd value above
/// `known` (the highest nonce seen for the edge) if that is higher.
pub fn fresh_active(now_ms: u64, known: Option<u64>) -> u64 {
    let from_clock = now_ms | 1;
    match known {
        Some(known) if known >= from_clock => {
            if is_active(known) {
                known.saturating_add(2)
            } else {
                known.saturating_add(1)
            }
        }
        _ => from_clock,
    }
}

/// The removal (even) nonce that replaces the active nonce `active`, or the parity error.
pub fn removal_of(active: u64) -> Result<u64, Error> {
    if is_active(active) && active < u64::MAX {
        Ok(active + 1)
    } else {
        Err(Error::NonceParity { nonce: active })
    }
}

/// Refuses a nonce more than `max_future_ms` ahead of `now_ms`.
pub fn check_not_future(nonce: u64, now_ms: u64, max_future_ms: u64) -> Result<(), Error> {
    if nonce > now_ms.saturating_add(max_future_ms) {
        Err(Error::NonceInFuture {
            nonce,
            now_ms,
            max_future_ms,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd is active, even removed; removal is the next value; a fresh nonce follows the
    /// clock unless a known one is ahead.
    #[test]
    fn nonce_rules() {
        assert!(is_active(1) && !is_active(2));
        assert_eq!(fresh_active(1000, None), 1001);
        assert_eq!(fresh_active(1001, None), 1001);
        assert_eq!(fresh_active(1000, Some(500)), 1001);
        assert_eq!(fresh_active(1000, Some(1001)), 1003);
        assert_eq!(fresh_active(1000, Some(2000)), 2001);
        assert_eq!(removal_of(1001), Ok(1002));
        assert!(removal_of(1002).is_err());
        assert!(removal_of(u64::MAX).is_err());
        assert!(fresh_active(1000, Some(1002)) > removal_of(1001).unwrap());
    }

    /// Five minutes ahead is accepted, one millisecond more is not.
    #[test]
    fn future_nonces_are_refused() {
        let now = 1_700_000_000_000;
        let five_min = 300_000;
        assert!(check_not_future(now + five_min, now, five_min).is_ok());
        assert!(matches!(
            check_not_future(now + five_min + 1, now, five_min),
            Err(Error::NonceInFuture { .. })
        ));
        assert!(check_not_future(u64::MAX, u64::MAX - 1, five_min).is_ok());
    }
}
