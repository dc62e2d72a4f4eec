//! [`HealthState`]: the health checker's bookkeeping, without IO (see the module docs of
//! `health` for the rules it keeps).

use std::collections::{BTreeMap, VecDeque};

use rand::RngCore;

use crate::config::HealthCheckConfig;
use crate::metrics::PingResult;
use crate::peers::PeerNetworkId;

/// The most pings a peer may have in flight under `config`: `⌈timeout / interval⌉ + 1`, 3 with
/// the defaults. See the module docs for why that never holds back a round on schedule.
pub(crate) fn max_in_flight_per_peer(config: &HealthCheckConfig) -> usize {
    // In whole milliseconds, the unit of the config file.
    let on_schedule = config
        .timeout
        .as_millis()
        .div_ceil(config.interval.as_millis().max(1));
    usize::try_from(on_schedule.saturating_add(1)).unwrap_or(usize::MAX)
}

/// The bookkeeping of a health checker, without IO: which peers to ping, the pings each one
/// has in flight (their rounds and nonces), and how many of its pings failed in a row.
///
/// # Calling protocol
///
/// 1. [`handle_connected`](Self::handle_connected) and
///    [`handle_disconnected`](Self::handle_disconnected) as connections come and go.
/// 2. On every tick of the ping interval, [`handle_tick`](Self::handle_tick) (it returns the
///    peers it skipped), then [`poll_ping`](Self::poll_ping) until it returns `None`, sending
///    each ping.
/// 3. When a ping ends, [`handle_response`](Self::handle_response) with what came back, in the
///    order the pings end; count the [`PingResult`] it returns.
/// 4. After each `handle_response`, [`poll_disconnect`](Self::poll_disconnect) until it returns
///    `None`, disconnecting each peer.
///
/// Getters have no side effects. Time is not an input: the caller's ticker says when a round
/// starts, and the caller's RPC timeout says when a ping has failed. Randomness is: nonces come
/// from the rng given to `poll_ping`.
#[derive(Debug)]
pub(crate) struct HealthState {
    failures_before_disconnect: u32,
    /// The most pings one peer may have in flight, counting those of an ended connection.
    max_in_flight_per_peer: usize,
    /// Rounds started so far; the current round's number.
    round: u64,
    /// Every connected peer we ping, and every disconnected one with pings still in flight.
    /// Ordered, so that a seeded rng gives the same nonces to the same peers.
    peers: BTreeMap<PeerNetworkId, PeerHealth>,
    /// Peers to ping this round, in order.
    due: VecDeque<PeerNetworkId>,
    /// Peers that just failed too often, to disconnect.
    to_disconnect: VecDeque<PeerNetworkId>,
}

/// A ping to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PingRequest {
    pub(crate) peer: PeerNetworkId,
    pub(crate) round: u64,
    pub(crate) nonce: u32,
}

/// What came back for a ping, as [`HealthState::handle_response`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PingResponse {
    /// A pong with this nonce.
    Pong(u32),
    /// Nothing within the timeout, and nothing else from the peer either.
    Timeout,
    /// Nothing within the timeout, but other bytes from the peer meanwhile.
    TimeoutBusy,
    /// The RPC failed otherwise, or the answer was not a pong.
    Failed,
}

/// A peer to disconnect, and how many pings it failed in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Disconnect {
    pub(crate) peer: PeerNetworkId,
    pub(crate) failures: u32,
}

/// One peer's record.
#[derive(Clone, Debug, Default)]
struct PeerHealth {
    /// False for a peer that is gone but whose pings have not all ended yet.
    connected: bool,
    /// Pings failed in a row.
    failures: u32,
    /// Set once the peer failed too often: it is not pinged again and its failures no longer
    /// count, until it reconnects.
    disconnecting: bool,
    /// The pings in flight, by round (one per round at most): each with the nonce its pong
    /// must carry. At most `max_in_flight_per_peer` entries.
    in_flight: BTreeMap<u64, InFlight>,
}

/// A ping in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// The nonce it carries, which its pong must echo.
    nonce: u32,
    /// False once the connection it went out on has ended or been replaced: its outcome says
    /// nothing about the current connection.
    counts: bool,
}

impl HealthState {
    /// No peers yet, round 0; a peer is disconnected at its `failures_before_disconnect`th
    /// failure in a row (at least the first) and has at most `max_in_flight_per_peer` pings in
    /// flight (at least one).
    pub(crate) fn new(failures_before_disconnect: u32, max_in_flight_per_peer: usize) -> Self {
        Self {
            failures_before_disconnect: failures_before_disconnect.max(1),
            max_in_flight_per_peer: max_in_flight_per_peer.max(1),
            round: 0,
            peers: BTreeMap::new(),
            due: VecDeque::new(),
            to_disconnect: VecDeque::new(),
        }
    }

    /// `peer` connected, or reconnected over a new connection: it is pinged from the next
    /// round on, with a clean record.
    pub(crate) fn handle_connected(&mut self, peer: PeerNetworkId) {
        let health = self.peers.entry(peer).or_default();
        health.connected = true;
        health.failures = 0;
        health.disconnecting = false;
        // Pings still in flight went out on the previous connection.
        health.stop_counting();
    }

    /// `peer` is gone: it is no longer pinged, and its pings in flight no longer count.
    pub(crate) fn handle_disconnected(&mut self, peer: PeerNetworkId) {
        let Some(health) = self.peers.get_mut(&peer) else {
            return;
        };
        if health.in_flight.is_empty() {
            self.peers.remove(&peer);
        } else {
            // Kept until those pings end, so that a quick reconnect cannot give the peer more
            // than `max_in_flight_per_peer` pings in flight.
            health.connected = false;
            health.failures = 0;
            health.disconnecting = false;
            health.stop_counting();
        }
    }

    /// Starts a new round: every connected peer is due for a ping, except those that failed
    /// too often and those that have `max_in_flight_per_peer` pings in flight already. Returns
    /// the latter, which this round skips.
    pub(crate) fn handle_tick(&mut self) -> Vec<PeerNetworkId> {
        self.round += 1;
        self.due.clear();
        let mut skipped = Vec::new();
        for (peer, health) in &self.peers {
            if !health.is_pinged() {
                continue;
            }
            if health.in_flight.len() < self.max_in_flight_per_peer {
                self.due.push_back(*peer);
            } else {
                skipped.push(*peer);
            }
        }
        skipped
    }

    /// The next ping of this round, its nonce drawn from `rng`; `None` once every due peer has
    /// had its ping.
    pub(crate) fn poll_ping(&mut self, rng: &mut impl RngCore) -> Option<PingRequest> {
        while let Some(peer) = self.due.pop_front() {
            // The peer may have gone (or come back) since the tick.
            let Some(health) = self.peers.get_mut(&peer).filter(|health| {
                health.is_pinged() && health.in_flight.len() < self.max_in_flight_per_peer
            }) else {
                continue;
            };
            let nonce = rng.next_u32();
            health.in_flight.insert(
                self.round,
                InFlight {
                    nonce,
                    counts: true,
                },
            );
            return Some(PingRequest {
                peer,
                round: self.round,
                nonce,
            });
        }
        None
    }

    /// `peer`'s ping of `round` ended with `response`. Returns how it counts, or `None` for a
    /// ping that no longer counts (its connection ended or was replaced) or that we do not
    /// know.
    ///
    /// The pong must carry that ping's nonce. A success resets the peer's failures; a failure
    /// adds one, and the `failures_before_disconnect`th in a row queues the peer for
    /// [`poll_disconnect`](Self::poll_disconnect), once per connection.
    pub(crate) fn handle_response(
        &mut self,
        peer: PeerNetworkId,
        round: u64,
        response: PingResponse,
    ) -> Option<PingResult> {
        let health = self.peers.get_mut(&peer)?;
        let in_flight = health.in_flight.remove(&round)?;
        if !health.connected {
            if health.in_flight.is_empty() {
                self.peers.remove(&peer);
            }
            return None;
        }
        if !in_flight.counts {
            return None;
        }
        let result = match response {
            PingResponse::Pong(nonce) if nonce == in_flight.nonce => PingResult::Ok,
            PingResponse::Pong(_) => PingResult::WrongNonce,
            PingResponse::Timeout => PingResult::Timeout,
            PingResponse::TimeoutBusy => PingResult::TimeoutBusy,
            PingResponse::Failed => PingResult::Error,
        };
        if health.disconnecting {
            // Being disconnected already: counted in the metrics, not in the record.
            return Some(result);
        }
        if result.is_failure() {
            health.failures = health.failures.saturating_add(1);
            if health.failures >= self.failures_before_disconnect {
                health.disconnecting = true;
                self.to_disconnect.push_back(peer);
            }
        } else if result == PingResult::Ok {
            health.failures = 0;
        }
        Some(result)
    }

    /// The next peer to disconnect, once per connection that failed too often.
    pub(crate) fn poll_disconnect(&mut self) -> Option<Disconnect> {
        while let Some(peer) = self.to_disconnect.pop_front() {
            // It may have gone, or reconnected with a clean record, since.
            if let Some(health) = self.peers.get(&peer)
                && health.connected
                && health.disconnecting
            {
                return Some(Disconnect {
                    peer,
                    failures: health.failures,
                });
            }
        }
        None
    }

    /// The current round's number (0 before the first tick).
    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    /// The most pings one peer may have in flight.
    pub(crate) fn max_in_flight_per_peer(&self) -> usize {
        self.max_in_flight_per_peer
    }

    /// How many pings `peer` failed in a row; `None` if it is not connected.
    pub(crate) fn failures(&self, peer: PeerNetworkId) -> Option<u32> {
        self.peers
            .get(&peer)
            .filter(|health| health.connected)
            .map(|health| health.failures)
    }

    /// The connected peers we ping.
    pub(crate) fn connected_peers(&self) -> impl Iterator<Item = PeerNetworkId> + '_ {
        self.peers
            .iter()
            .filter(|(_, health)| health.connected)
            .map(|(peer, _)| *peer)
    }

    /// Pings in flight, to all peers.
    pub(crate) fn in_flight(&self) -> usize {
        self.peers
            .values()
            .map(|health| health.in_flight.len())
            .sum()
    }

    /// Pings in flight to `peer`, counting those of an ended connection.
    pub(crate) fn in_flight_to(&self, peer: PeerNetworkId) -> usize {
        self.peers
            .get(&peer)
            .map_or(0, |health| health.in_flight.len())
    }

    /// Peers with a record: the connected ones and the gone ones with pings in flight. Times
    /// [`max_in_flight_per_peer`](Self::max_in_flight_per_peer), bounds the pings in flight.
    pub(crate) fn tracked(&self) -> usize {
        self.peers.len()
    }
}

impl PeerHealth {
    /// Whether rounds ping this peer (if it has room for another ping in flight).
    fn is_pinged(&self) -> bool {
        self.connected && !self.disconnecting
    }

    /// Marks every ping in flight as sent on a connection that has ended.
    fn stop_counting(&mut self) {
        for in_flight in self.in_flight.values_mut() {
            in_flight.counts = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use netcore::PeerId;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use wire::NetworkId;

    use super::*;

    fn peer(n: u8) -> PeerNetworkId {
        PeerNetworkId::new(NetworkId::Public, PeerId::new([n; 32]))
    }

    /// Starts the next round: its pings, and the peers it skipped for having the most pings in
    /// flight.
    fn round_skipping(
        state: &mut HealthState,
        rng: &mut StdRng,
    ) -> (Vec<PingRequest>, Vec<PeerNetworkId>) {
        let skipped = state.handle_tick();
        let pings = std::iter::from_fn(|| state.poll_ping(rng)).collect();
        (pings, skipped)
    }

    /// Every ping of the next round, which skips no peer.
    fn round(state: &mut HealthState, rng: &mut StdRng) -> Vec<PingRequest> {
        let (pings, skipped) = round_skipping(state, rng);
        assert_eq!(skipped, [], "round {} skipped peers", state.round());
        pings
    }

    /// The only ping of the next round.
    fn one_ping(state: &mut HealthState, rng: &mut StdRng) -> PingRequest {
        let pings = round(state, rng);
        assert_eq!(pings.len(), 1, "{pings:?}");
        pings[0]
    }

    /// The answer to `ping` that echoes its nonce.
    fn pong(ping: &PingRequest) -> PingResponse {
        PingResponse::Pong(ping.nonce)
    }

    /// A round pings every connected peer, with nonces drawn from the rng in peer order, even
    /// a peer whose earlier pings are still in flight: two rounds without answers leave two
    /// pings in flight per peer, each with its own round and nonce.
    #[test]
    fn a_round_pings_every_peer_even_with_earlier_pings_in_flight() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut expected_rng = rng.clone();
        let mut state = HealthState::new(4, 3);
        assert!(round(&mut state, &mut rng).is_empty());
        state.handle_connected(peer(2));
        state.handle_connected(peer(1));

        let first = round(&mut state, &mut rng);
        let second = round(&mut state, &mut rng);
        // The empty round drew nothing.
        let nonces: Vec<u32> = (0..4).map(|_| expected_rng.next_u32()).collect();
        let ping = |n, round, nonce| PingRequest {
            peer: peer(n),
            round,
            nonce,
        };
        assert_eq!(first, [ping(1, 2, nonces[0]), ping(2, 2, nonces[1])]);
        assert_eq!(second, [ping(1, 3, nonces[2]), ping(2, 3, nonces[3])]);
        assert_eq!(state.in_flight(), 4);
        assert_eq!(state.in_flight_to(peer(1)), 2);
        assert_eq!(state.tracked(), 2);

        // Peer 1 answers its first ping; the next round pings both peers again.
        assert_eq!(
            state.handle_response(peer(1), 2, pong(&first[0])),
            Some(PingResult::Ok)
        );
        let third = round(&mut state, &mut rng);
        let peers_and_rounds: Vec<_> = third.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(1), 4), (peer(2), 4)]);
        assert_eq!(state.in_flight(), 5);
    }

    /// A timeout while the peer sent other bytes (`TimeoutBusy`) neither counts towards a
    /// disconnect nor resets the count: two failures, busy timeouts, and a third failure
    /// still disconnect at three.
    #[test]
    fn a_busy_timeout_neither_counts_nor_resets() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut state = HealthState::new(3, 2);
        state.handle_connected(peer(1));
        let mut end = |state: &mut HealthState, response| {
            let ping = one_ping(state, &mut rng);
            state.handle_response(peer(1), ping.round, response)
        };
        assert_eq!(
            end(&mut state, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        assert_eq!(
            end(&mut state, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        for _ in 0..5 {
            assert_eq!(
                end(&mut state, PingResponse::TimeoutBusy),
                Some(PingResult::TimeoutBusy)
            );
            assert_eq!(state.failures(peer(1)), Some(2));
            assert_eq!(state.poll_disconnect(), None);
        }
        assert_eq!(
            end(&mut state, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        assert_eq!(
            state.poll_disconnect(),
            Some(Disconnect {
                peer: peer(1),
                failures: 3
            })
        );
    }

    /// The cap on a peer's pings in flight is one more than the rounds a timeout spans:
    /// `⌈timeout / interval⌉ + 1`, 2 with the defaults (5 s, 5 s), and it saturates.
    #[test]
    fn the_cap_on_pings_in_flight_is_one_more_than_the_rounds_a_timeout_spans() {
        let config = |interval_ms, timeout_ms| HealthCheckConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            ..HealthCheckConfig::default()
        };
        assert_eq!(max_in_flight_per_peer(&HealthCheckConfig::default()), 2);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 20_000)), 3);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 25_000)), 4);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 10_000)), 2);
        assert_eq!(max_in_flight_per_peer(&config(10_000, 1)), 2);
        assert_eq!(max_in_flight_per_peer(&config(1, u64::MAX)), usize::MAX);
        // `HealthState` takes at least one.
        assert_eq!(HealthState::new(4, 0).max_in_flight_per_peer(), 1);
    }

    /// A round skips a peer that has the most pings in flight already, and returns it (the
    /// actor logs it); once one of its pings ends, the next round pings it again. The pings in
    /// flight never exceed the cap times the peers.
    #[test]
    fn a_round_skips_a_peer_with_the_most_pings_in_flight_and_names_it() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        state.handle_connected(peer(2));
        let first = round(&mut state, &mut rng);
        round(&mut state, &mut rng);
        round(&mut state, &mut rng);
        assert_eq!(state.in_flight(), 6);

        // Peer 2's oldest ping ends; all of peer 1's are still out.
        assert_eq!(
            state.handle_response(peer(2), first[1].round, pong(&first[1])),
            Some(PingResult::Ok)
        );
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!(skipped, [peer(1)]);
        let peers_and_rounds: Vec<_> = pings.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(2), 4)]);
        assert_eq!(state.in_flight_to(peer(1)), 3);
        assert_eq!(state.in_flight_to(peer(2)), 3);
        assert!(state.in_flight() <= state.tracked() * state.max_in_flight_per_peer());

        // Peer 1's oldest ping times out: it is pinged again, and now peer 2 is at the cap.
        assert_eq!(
            state.handle_response(peer(1), first[0].round, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!(skipped, [peer(2)]);
        let peers_and_rounds: Vec<_> = pings.iter().map(|p| (p.peer, p.round)).collect();
        assert_eq!(peers_and_rounds, [(peer(1), 5)]);
        assert_eq!(state.in_flight(), 6);
    }

    /// With several pings in flight, each pong must carry its own ping's nonce, and outcomes
    /// count in the order they come in, not the order the pings went out: the newer ping
    /// answered with the older one's nonce fails, then the older one answered right resets
    /// the count. A ping ends once; answers for it after that, or for a round it was not
    /// pinged in, are ignored.
    #[test]
    fn each_ping_expects_its_own_nonce_and_outcomes_count_as_they_come() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let older = one_ping(&mut state, &mut rng);
        let newer = one_ping(&mut state, &mut rng);
        assert_ne!(older.nonce, newer.nonce);

        assert_eq!(
            state.handle_response(peer(1), newer.round, pong(&older)),
            Some(PingResult::WrongNonce)
        );
        assert_eq!(state.failures(peer(1)), Some(1));
        assert_eq!(
            state.handle_response(peer(1), older.round, pong(&older)),
            Some(PingResult::Ok)
        );
        assert_eq!(state.failures(peer(1)), Some(0));

        assert_eq!(
            state.handle_response(peer(1), older.round, pong(&older)),
            None
        );
        assert_eq!(
            state.handle_response(peer(1), 99, PingResponse::Timeout),
            None
        );
        assert_eq!(state.failures(peer(1)), Some(0));
        assert_eq!(state.in_flight(), 0);
    }

    /// AptosNet's schedule, a round every 10 s and a 20 s timeout: a silent peer is pinged at
    /// rounds 1 to 5 (10 to 50 s), each ping timing out two rounds later, just before that
    /// round starts. Failures 1 to 3 (30, 40, 50 s) do not disconnect it; the 4th (60 s) does,
    /// once: round 6 does not ping it, and round 5's ping failing later (70 s) is counted but
    /// queues no second disconnect.
    #[test]
    fn a_silent_peer_is_disconnected_once_at_the_fourth_of_its_overlapping_failures() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let mut out = VecDeque::new();
        for round_number in 1..=6_u64 {
            if round_number >= 3 {
                // The ping of two rounds before times out at this round's instant.
                let ping: PingRequest = out.pop_front().expect("a ping in flight");
                assert_eq!(ping.round, round_number - 2);
                assert_eq!(
                    state.handle_response(ping.peer, ping.round, PingResponse::Timeout),
                    Some(PingResult::Timeout)
                );
                let failures = u32::try_from(round_number - 2).unwrap();
                assert_eq!(state.failures(peer(1)), Some(failures));
                let disconnect = (failures == 4).then_some(Disconnect {
                    peer: peer(1),
                    failures: 4,
                });
                assert_eq!(state.poll_disconnect(), disconnect);
                assert_eq!(state.poll_disconnect(), None);
            }
            if round_number <= 5 {
                out.push_back(one_ping(&mut state, &mut rng));
                assert_eq!(state.in_flight(), out.len());
                assert!(state.in_flight() <= 2);
            } else {
                assert!(round(&mut state, &mut rng).is_empty());
            }
        }

        let last = out.pop_front().expect("round 5's ping");
        assert_eq!(last.round, 5);
        assert_eq!(
            state.handle_response(last.peer, last.round, PingResponse::Failed),
            Some(PingResult::Error)
        );
        assert_eq!(state.poll_disconnect(), None);
        assert_eq!(state.in_flight(), 0);
        state.handle_disconnected(peer(1));
        assert_eq!(state.tracked(), 0);
    }

    /// A pong with another nonce is a failure of its own kind, and counts towards the
    /// disconnect like a timeout.
    #[test]
    fn a_wrong_nonce_counts_as_a_failure() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut state = HealthState::new(2, 3);
        state.handle_connected(peer(1));
        let pings = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];
        for ping in pings {
            let wrong = PingResponse::Pong(ping.nonce.wrapping_add(1));
            assert_eq!(
                state.handle_response(ping.peer, ping.round, wrong),
                Some(PingResult::WrongNonce)
            );
        }
        assert_eq!(state.poll_disconnect().map(|d| d.failures), Some(2));
    }

    /// A success resets the count, with two pings in flight all along (each answered after
    /// the next round went out): three failures, a success and three more failures do not
    /// disconnect; the fourth failure in a row after the success does.
    #[test]
    fn a_success_resets_the_failure_count() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut state = HealthState::new(4, 3);
        state.handle_connected(peer(1));
        let script = [false, false, false, true, false, false, false, false];
        let mut previous = one_ping(&mut state, &mut rng);
        for (n, answers) in script.into_iter().enumerate() {
            let next = one_ping(&mut state, &mut rng);
            assert_eq!(state.in_flight(), 2);
            let response = if answers {
                pong(&previous)
            } else {
                PingResponse::Pong(!previous.nonce)
            };
            state.handle_response(previous.peer, previous.round, response);
            previous = next;
            if n < script.len() - 1 {
                assert_eq!(state.poll_disconnect(), None, "answer {n}");
            }
        }
        assert_eq!(state.failures(peer(1)), Some(4));
        assert_eq!(state.poll_disconnect().map(|d| d.peer), Some(peer(1)));
    }

    /// Pings that went out on a connection that has since ended or been replaced do not
    /// count, not even a success; they still take room under the cap until they end, and a
    /// peer that left keeps its record only until its last ping ends.
    #[test]
    fn pings_of_an_ended_connection_do_not_count() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut state = HealthState::new(1, 3);
        state.handle_connected(peer(1));
        let old = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];

        // Replaced: the old connection's pings do not count for the new one.
        state.handle_connected(peer(1));
        assert_eq!(
            state.handle_response(peer(1), old[0].round, PingResponse::Failed),
            None
        );
        assert_eq!(state.poll_disconnect(), None);
        assert_eq!(state.failures(peer(1)), Some(0));
        let new = one_ping(&mut state, &mut rng);
        assert_eq!(state.in_flight_to(peer(1)), 2);
        assert_eq!(
            state.handle_response(peer(1), old[1].round, pong(&old[1])),
            None
        );

        // Gone with pings in flight and back before they end: they take room under the cap.
        let another = one_ping(&mut state, &mut rng);
        state.handle_disconnected(peer(1));
        assert_eq!(state.failures(peer(1)), None);
        assert_eq!(state.tracked(), 1);
        state.handle_connected(peer(1));
        let third = one_ping(&mut state, &mut rng);
        let (pings, skipped) = round_skipping(&mut state, &mut rng);
        assert_eq!((pings, skipped), (vec![], vec![peer(1)]));
        for ping in [new, another] {
            assert_eq!(
                state.handle_response(peer(1), ping.round, PingResponse::Timeout),
                None
            );
        }
        assert_eq!(state.poll_disconnect(), None);
        // The current connection's ping counts.
        assert_eq!(
            state.handle_response(peer(1), third.round, PingResponse::Timeout),
            Some(PingResult::Timeout)
        );
        assert_eq!(state.poll_disconnect().map(|d| d.peer), Some(peer(1)));

        // Gone for good: the record goes when the last ping ends.
        state.handle_disconnected(peer(1));
        assert_eq!(state.tracked(), 0);
        state.handle_connected(peer(1));
        let pings = [
            one_ping(&mut state, &mut rng),
            one_ping(&mut state, &mut rng),
        ];
        state.handle_disconnected(peer(1));
        for (ping, tracked) in pings.into_iter().zip([1, 0]) {
            assert_eq!(
                state.handle_response(peer(1), ping.round, pong(&ping)),
                None
            );
            assert_eq!(state.tracked(), tracked);
        }

        // Unknown peers are ignored.
        assert_eq!(
            state.handle_response(peer(9), 1, PingResponse::Timeout),
            None
        );
    }
}
