//! [`PeerScores`]: what the policy may know about the quality of a peer, from measurements
//! made elsewhere (the facade's health checks today, a persistent peer store later). The
//! policy only reads it: to weight dial candidates by round-trip time, and to pick the
//! inbound peer to close above the target range.

use std::fmt;
use std::time::Duration;

use netcore::PeerId;

/// A source of peer measurements. Implementations must be cheap (the policy asks once per
/// candidate per poll) and must not block.
pub trait PeerScores: Send + Sync + fmt::Debug {
    /// The peer's last measured round-trip time, if any (also after it disconnected).
    fn rtt(&self, peer_id: &PeerId) -> Option<Duration>;

    /// How much we want to keep the peer: higher is better. Above the target range the
    /// connected inbound peer with the lowest score is closed first.
    fn score(&self, peer_id: &PeerId) -> i64;
}

/// No measurements: every RTT unknown, every score 0 (the policy then falls back to its
/// other rules: least recently dialed first, and among inbound peers the lowest PeerId).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoScores;

impl PeerScores for NoScores {
    fn rtt(&self, _peer_id: &PeerId) -> Option<Duration> {
        None
    }

    fn score(&self, _peer_id: &PeerId) -> i64 {
        0
    }
}

/// The RTT a dial candidate's weight is computed from: at least 10 ms, so that loopback-fast
/// peers do not take every slot.
pub const MIN_WEIGHTED_RTT: Duration = Duration::from_millis(10);

/// A dial candidate's weight: inversely proportional to its round-trip time, so a peer at
/// 50 ms is drawn four times as often as one at 200 ms (Aptos measured several hundred
/// milliseconds of transaction latency saved by preferring close peers).
pub fn rtt_weight(rtt: Duration) -> f64 {
    1.0 / rtt.max(MIN_WEIGHTED_RTT).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_inverse_to_rtt_with_a_floor() {
        let fast = rtt_weight(Duration::from_millis(50));
        let slow = rtt_weight(Duration::from_millis(200));
        assert!((fast / slow - 4.0).abs() < 1e-9);
        assert_eq!(rtt_weight(Duration::ZERO), rtt_weight(MIN_WEIGHTED_RTT));
    }
}
