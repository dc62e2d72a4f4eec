//! [`choose_peer`]: which peer ahead of us to ask for blocks next. Pure.
//!
//! A peer is ahead when the height it announced (state sync's `Announce`) or the best height
//! of its chain status (the facade's `ChainStatus`, protocol 65) is above ours. Among those,
//! the fastest answer first: the peers whose last ping round-trip time is within
//! [`FAST_SET_SLACK`] of the best are taken in turn (so one fast peer is not asked for
//! everything), and peers without a measured round-trip time come after all measured ones.

use std::time::Duration;

use peerlane::PeerNetworkId;

/// How much slower than the fastest peer a peer may be and still share its turn: one and a
/// half times its round-trip time, plus 1 ms for the jitter of loopback-fast peers.
pub(crate) const FAST_SET_SLACK: (u32, u32) = (3, 2);

/// A peer ahead of us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) peer: PeerNetworkId,
    /// The height it is at, as far as we know.
    pub(crate) height: u64,
    /// Its last measured round-trip time.
    pub(crate) rtt: Option<Duration>,
}

/// The peer to ask on turn `turn`; `None` without candidates.
pub(crate) fn choose_peer(mut candidates: Vec<Candidate>, turn: usize) -> Option<Candidate> {
    candidates.sort_by_key(|candidate| (candidate.rtt.is_none(), candidate.rtt, candidate.peer));
    let first = candidates.first()?;
    let fast: Vec<Candidate> = match first.rtt {
        Some(best) => {
            let (num, den) = FAST_SET_SLACK;
            let bound = best * num / den + Duration::from_millis(1);
            candidates
                .iter()
                .copied()
                .filter(|candidate| candidate.rtt.is_some_and(|rtt| rtt <= bound))
                .collect()
        }
        // Nobody measured: every candidate takes its turn.
        None => candidates,
    };
    fast.get(turn % fast.len()).copied()
}

#[cfg(test)]
mod tests {
    use wire::{NetworkId, PeerId};

    use super::*;

    fn candidate(n: u8, rtt_ms: Option<u64>) -> Candidate {
        Candidate {
            peer: PeerNetworkId::new(NetworkId::Public, PeerId::new([n; 32])),
            height: 10,
            rtt: rtt_ms.map(Duration::from_millis),
        }
    }

    /// The fast peers share the turns; a slow one and an unmeasured one are never asked while
    /// fast ones are ahead.
    #[test]
    fn fast_peers_take_turns_and_slow_ones_wait() {
        let candidates = vec![
            candidate(1, Some(300)),
            candidate(2, Some(10)),
            candidate(3, None),
            candidate(4, Some(12)),
        ];
        let chosen: Vec<u8> = (0..4)
            .map(|turn| {
                choose_peer(candidates.clone(), turn)
                    .unwrap()
                    .peer
                    .peer_id
                    .as_bytes()[0]
            })
            .collect();
        assert_eq!(chosen, vec![2, 4, 2, 4]);
    }

    /// Without any measurement every peer takes its turn; without candidates, none.
    #[test]
    fn unmeasured_peers_take_turns() {
        let candidates = vec![candidate(1, None), candidate(2, None)];
        assert_eq!(choose_peer(candidates.clone(), 0), Some(candidate(1, None)));
        assert_eq!(choose_peer(candidates, 1), Some(candidate(2, None)));
        assert_eq!(choose_peer(Vec::new(), 0), None);
    }
}
