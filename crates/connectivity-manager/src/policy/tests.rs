//! Tests of [`Policy`] with a fake clock (an `Instant` we move by hand) and seeded rngs. The
//! harness records each report's [`Outcome`] as the manager does, so the tests read metrics.

use std::collections::HashSet;
use std::time::Duration;

use noise::PublicKey;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::action::ActionKind;
use crate::manager::record;
use crate::metrics::Metrics;
use crate::scores::PeerScores;

const LOCAL: PeerId = PeerId::new([0xee; 32]);
const JITTER: Duration = Duration::from_millis(100);

fn id(n: u8) -> PeerId {
    PeerId::new([n; 32])
}

fn addr(port: u16) -> NetworkAddress {
    NetworkAddress::memory(port)
}

/// A peer with key `[n; 32]`, `role` and memory addresses on `ports`.
fn peer(n: u8, role: PeerRole, ports: &[u16]) -> DiscoveredPeer {
    DiscoveredPeer::new(
        role,
        ports.iter().copied().map(addr),
        [PublicKey::from([n; 32])],
    )
}

/// `count` peers with ids 1..=count, each at `/memory/<id>`.
fn peers(count: u8, role: PeerRole) -> HashMap<PeerId, DiscoveredPeer> {
    (1..=count)
        .map(|n| (id(n), peer(n, role, &[u16::from(n)])))
        .collect()
}

/// A policy, the metrics of its outcomes, a fake clock and a seeded rng.
struct Harness {
    policy: Policy,
    metrics: Metrics,
    now: Instant,
    rng: StdRng,
}

impl Harness {
    fn new(network: NetworkKind) -> Self {
        Self::with_config(network, |_| {})
    }

    fn with_config(network: NetworkKind, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.network(network);
        configure(&mut config);
        let metrics = Metrics::default();
        Self {
            policy: Policy::new(LOCAL, &config),
            metrics,
            now: Instant::now(),
            rng: StdRng::seed_from_u64(7),
        }
    }

    fn discover(&mut self, source: DiscoverySource, view: HashMap<PeerId, DiscoveredPeer>) {
        self.metrics.record_discovery_update(source);
        self.policy.handle_discovery_update(source, view);
        self.record(Outcome::default());
    }

    fn poll(&mut self) -> Vec<Action> {
        let actions = self.policy.poll_actions(self.now, &mut self.rng);
        for action in &actions {
            if let Action::CancelDial { .. } = action {
                self.metrics.record_dial(DialOutcome::Cancelled);
            }
        }
        self.record(Outcome::default());
        actions
    }

    fn record(&self, outcome: Outcome) {
        record(&self.metrics, &self.policy, outcome);
    }

    fn connected(&mut self, peer_id: PeerId, origin: ConnectionOrigin) {
        let outcome = self.policy.handle_connected(peer_id, origin);
        self.record(outcome);
    }

    fn disconnected(&mut self, peer_id: PeerId) {
        let outcome = self.policy.handle_disconnected(peer_id, self.now);
        self.record(outcome);
    }

    fn dial_result(&mut self, peer_id: PeerId, result: Result<(), DialFailure>) {
        let outcome = self.policy.handle_dial_result(peer_id, result, self.now);
        self.record(outcome);
    }

    fn action_dropped(&mut self, action: &Action) {
        self.metrics.record_action_dropped(action.kind());
        self.policy.handle_action_dropped(action);
        self.record(Outcome::default());
    }

    /// Polls and returns only the dials, as (peer, address).
    fn poll_dials(&mut self) -> Vec<(PeerId, NetworkAddress)> {
        dials(&self.poll())
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Moves the clock to the policy's next deadline, which must exist.
    fn advance_to_deadline(&mut self) -> Duration {
        let deadline = self.policy.next_deadline().expect("a deadline");
        let waited = deadline - self.now;
        self.now = deadline;
        waited
    }

    fn fail(&mut self, peer_id: PeerId) {
        self.dial_result(peer_id, Err(DialFailure::Unreachable));
    }

    fn connect_outbound(&mut self, peer_id: PeerId) {
        self.dial_result(peer_id, Ok(()));
        self.connected(peer_id, ConnectionOrigin::Outbound);
    }
}

fn dials(actions: &[Action]) -> Vec<(PeerId, NetworkAddress)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Dial { peer_id, addr } => Some((*peer_id, addr.clone())),
            _ => None,
        })
        .collect()
}

fn dialed_peers(actions: &[Action]) -> HashSet<PeerId> {
    dials(actions)
        .into_iter()
        .map(|(peer_id, _)| peer_id)
        .collect()
}

/// A failed dial is retried, not before the 2 s backoff and not later than 2 s + 100 ms.
#[test]
fn failed_dial_is_retried_after_the_backoff() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    assert_eq!(h.poll_dials(), vec![(id(1), addr(1))]);

    h.fail(id(1));
    assert!(h.poll().is_empty(), "no redial before the backoff ends");
    let retry_at = h.policy.next_deadline().unwrap();
    let wait = retry_at - h.now;
    assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_secs(2) + JITTER);

    h.advance(wait - Duration::from_millis(1));
    assert!(h.poll().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.poll_dials(), vec![(id(1), addr(1))]);
    assert_eq!(
        h.metrics
            .dials(DialOutcome::Failed(DialFailure::Unreachable)),
        1
    );
}

/// Successive failures wait 2, 4, 8, 16, 32, 60, 60 s, each plus at most 100 ms of jitter.
#[test]
fn backoff_grows_and_is_capped_at_sixty_seconds() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    assert_eq!(h.poll_dials().len(), 1);

    for expected_secs in [2, 4, 8, 16, 32, 60, 60] {
        h.fail(id(1));
        assert!(h.poll().is_empty());
        let waited = h.advance_to_deadline();
        let expected = Duration::from_secs(expected_secs);
        assert!(
            waited >= expected && waited <= expected + JITTER,
            "waited {waited:?}, expected {expected:?} + [0, 100 ms]"
        );
        assert_eq!(h.poll_dials(), vec![(id(1), addr(1))]);
    }
    assert_eq!(h.metrics.backoffs(), 7);
}

/// A connection resets the backoff: after it closes, the redial waits 2 s again, not the
/// 16 s the failures before it had reached.
#[test]
fn backoff_resets_when_a_connection_succeeds() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    h.poll_dials();
    for _ in 0..3 {
        h.fail(id(1));
        h.poll();
        h.advance_to_deadline();
        assert_eq!(h.poll_dials().len(), 1);
    }

    h.connect_outbound(id(1));
    assert!(h.poll().is_empty());
    assert_eq!(
        h.policy.next_deadline(),
        None,
        "connected: nothing to wait for"
    );

    h.advance(Duration::from_secs(600));
    h.disconnected(id(1));
    assert!(h.poll().is_empty(), "a closed connection also backs off");
    let waited = h.advance_to_deadline();
    assert!(waited >= Duration::from_secs(2) && waited <= Duration::from_secs(2) + JITTER);
    assert_eq!(h.poll_dials(), vec![(id(1), addr(1))]);
}

/// A new address set resets the backoff: the peer is dialed at once, at its new first
/// address, and the next failure waits 2 s.
#[test]
fn backoff_resets_when_the_address_set_changes() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    h.poll_dials();
    for _ in 0..4 {
        h.fail(id(1));
        h.poll();
        h.advance_to_deadline();
        h.poll_dials();
    }
    h.fail(id(1));
    assert!(h.poll().is_empty(), "in a 32 s backoff");

    let moved = HashMap::from([(id(1), peer(1, PeerRole::Validator, &[50, 51]))]);
    h.discover(DiscoverySource::OnChain, moved);
    assert_eq!(h.poll_dials(), vec![(id(1), addr(50))]);
    h.fail(id(1));
    h.poll();
    let waited = h.advance_to_deadline();
    assert!(waited <= Duration::from_secs(2) + JITTER);

    // The same addresses in another order are not a change: the backoff goes on (the
    // deadline is unchanged) and so does the round robin, at index 1.
    let deadline = h.policy.next_deadline();
    let reordered = HashMap::from([(id(1), peer(1, PeerRole::Validator, &[51, 50]))]);
    h.discover(DiscoverySource::OnChain, reordered);
    assert_eq!(h.policy.next_deadline(), deadline);
    assert_eq!(h.poll_dials(), vec![(id(1), addr(50))]);
}

/// Addresses are tried one per dial, round robin, wrapping at the end; when the set shrinks
/// the round restarts at the new first address and stays in range.
#[test]
fn addresses_are_tried_round_robin_wrapping_and_shrinking() {
    let mut h = Harness::new(NetworkKind::Validator);
    let three = HashMap::from([(id(1), peer(1, PeerRole::Validator, &[1, 2, 3]))]);
    h.discover(DiscoverySource::OnChain, three);

    let mut tried = Vec::new();
    for _ in 0..4 {
        let dials = h.poll_dials();
        assert_eq!(dials.len(), 1);
        tried.push(dials[0].1.clone());
        h.fail(id(1));
        h.poll();
        h.advance_to_deadline();
    }
    assert_eq!(tried, vec![addr(1), addr(2), addr(3), addr(1)]);

    // We are at index 1 of three; the set shrinks to two.
    let two = HashMap::from([(id(1), peer(1, PeerRole::Validator, &[3, 4]))]);
    h.discover(DiscoverySource::OnChain, two);
    let mut tried = Vec::new();
    for _ in 0..3 {
        let dials = h.poll_dials();
        assert_eq!(dials.len(), 1);
        tried.push(dials[0].1.clone());
        h.fail(id(1));
        h.poll();
        h.advance_to_deadline();
    }
    assert_eq!(tried, vec![addr(3), addr(4), addr(3)]);
}

/// On a public network at most 6 outbound connections (dials in flight included) exist;
/// inbound connections do not count, and a full set has no deadline.
#[test]
fn public_network_keeps_at_most_six_outbound_connections() {
    let mut h = Harness::new(NetworkKind::Public);
    h.discover(DiscoverySource::Config, peers(10, PeerRole::Upstream));
    // Two inbound connections from eligible peers and one from a stranger.
    h.connected(id(1), ConnectionOrigin::Inbound);
    h.connected(id(2), ConnectionOrigin::Inbound);
    h.connected(id(99), ConnectionOrigin::Inbound);

    let first = dialed_peers(&h.poll());
    assert_eq!(first.len(), 6);
    assert!(
        !first.contains(&id(1)) && !first.contains(&id(2)),
        "already connected"
    );
    assert!(h.poll().is_empty(), "six dials in flight fill every slot");
    assert_eq!(h.policy.next_deadline(), None);

    for peer_id in &first {
        h.connect_outbound(*peer_id);
    }
    assert!(h.poll().is_empty());

    // One outbound connection closes: exactly one replacement, never the closed peer (in
    // backoff) and never a connected one.
    let closed = *first.iter().next().unwrap();
    h.disconnected(closed);
    let replacement = dialed_peers(&h.poll());
    assert_eq!(replacement.len(), 1);
    let replacement = *replacement.iter().next().unwrap();
    assert!(![closed, id(1), id(2)].contains(&replacement) && !first.contains(&replacement));
    assert_eq!(h.metrics.connected_peers(ConnectionOrigin::Outbound), 5);
    assert_eq!(h.metrics.connected_peers(ConnectionOrigin::Inbound), 3);
}

/// The peers chosen on a public network depend on the rng: the same seed gives the same
/// choice, and different seeds spread the dials over the peers.
#[test]
fn public_network_chooses_peers_at_random() {
    let choose = |seed| {
        let mut h = Harness::new(NetworkKind::Public);
        h.rng = StdRng::seed_from_u64(seed);
        h.discover(DiscoverySource::Config, peers(30, PeerRole::Upstream));
        dialed_peers(&h.poll())
    };
    assert_eq!(choose(1), choose(1));
    let union: HashSet<PeerId> = (0..10).flat_map(choose).collect();
    assert!(
        union.len() > 12,
        "only {} distinct peers in 10 draws",
        union.len()
    );
}

/// When choosing, peers never dialed come first and among dialed peers the least recently
/// dialed comes first.
#[test]
fn recently_dialed_peers_are_chosen_last() {
    let mut h = Harness::with_config(NetworkKind::Public, |config| {
        config.max_outbound_connections(1);
    });
    h.discover(DiscoverySource::Config, peers(3, PeerRole::Upstream));

    // Dial, connect, lose the connection, wait past the backoff: each time the choice is a
    // peer that was never dialed, until there is none.
    let mut order = Vec::new();
    for _ in 0..3 {
        let chosen = dials(&h.poll());
        assert_eq!(chosen.len(), 1);
        let peer_id = chosen[0].0;
        assert!(!order.contains(&peer_id), "{peer_id:?} was dialed before");
        order.push(peer_id);
        h.connect_outbound(peer_id);
        h.advance(Duration::from_secs(10));
        h.disconnected(peer_id);
        h.advance(Duration::from_secs(10));
    }
    // All three are ready again; the least recently dialed is the first one.
    assert_eq!(dials(&h.poll())[0].0, order[0]);
}

/// The validator network dials every eligible validator at once, with no limit, and skips
/// ourselves, connected peers, peers without addresses and non-validators.
#[test]
fn validator_network_dials_every_eligible_validator() {
    let mut h = Harness::new(NetworkKind::Validator);
    let mut view = peers(20, PeerRole::Validator);
    view.insert(LOCAL, peer(0xee, PeerRole::Validator, &[1000]));
    view.insert(id(30), peer(30, PeerRole::Validator, &[]));
    view.insert(id(31), peer(31, PeerRole::Upstream, &[31]));
    h.discover(DiscoverySource::OnChain, view);
    h.connected(id(20), ConnectionOrigin::Inbound);

    let dialed = dialed_peers(&h.poll());
    let expected: HashSet<PeerId> = (1..20).map(id).collect();
    assert_eq!(dialed, expected);
    assert_eq!(h.metrics.eligible_peers(), 20);
    // Validator 30 is trusted (it may dial us) though we cannot dial it.
    assert!(h.policy.trusted_peers().contains_key(&id(30)));
}

/// Discovery updates add peers (dialed at once) and remove them (their dial is cancelled, and
/// its late result ignored); a source's update leaves the other sources' peers alone.
#[test]
fn discovery_updates_add_and_remove_peers() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::Config, peers(1, PeerRole::Validator));
    assert_eq!(dialed_peers(&h.poll()), HashSet::from([id(1)]));

    let on_chain = HashMap::from([(id(2), peer(2, PeerRole::Validator, &[2]))]);
    h.discover(DiscoverySource::OnChain, on_chain);
    assert_eq!(dialed_peers(&h.poll()), HashSet::from([id(2)]));

    h.discover(DiscoverySource::OnChain, HashMap::new());
    assert_eq!(h.poll(), vec![Action::CancelDial { peer_id: id(2) }]);
    assert_eq!(h.metrics.dials(DialOutcome::Cancelled), 1);
    assert_eq!(h.policy.pending_dials().collect::<Vec<_>>(), vec![id(1)]);

    // The cancelled dial's result arrives anyway: ignored, no backoff.
    h.fail(id(2));
    assert_eq!(h.metrics.backoffs(), 0);

    // Back again: dialed at once.
    let on_chain = HashMap::from([(id(2), peer(2, PeerRole::Validator, &[2]))]);
    h.discover(DiscoverySource::OnChain, on_chain);
    assert_eq!(dialed_peers(&h.poll()), HashSet::from([id(2)]));
}

/// A dial in flight to a peer that stays trusted but becomes ineligible (its role is no
/// longer one we dial, or it lost its addresses) is cancelled, and nothing is disconnected.
#[test]
fn dials_to_ineligible_peers_are_cancelled() {
    let mut h = Harness::new(NetworkKind::Public);
    h.discover(DiscoverySource::Config, peers(2, PeerRole::Upstream));
    assert_eq!(dials(&h.poll()).len(), 2);

    let view = HashMap::from([
        (id(1), peer(1, PeerRole::Downstream, &[1])),
        (id(2), peer(2, PeerRole::Upstream, &[])),
    ]);
    h.discover(DiscoverySource::Config, view);
    let actions = h.poll();
    assert_eq!(
        actions,
        vec![
            Action::CancelDial { peer_id: id(1) },
            Action::CancelDial { peer_id: id(2) },
        ]
    );
    assert_eq!(h.policy.trusted_peers().len(), 2);
}

/// On the validator network every connection to a peer that left the trusted set is closed
/// once, inbound or outbound; the disconnection is counted as stale.
#[test]
fn stale_connections_are_closed_on_the_validator_network() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(3, PeerRole::Validator));
    h.poll();
    h.connect_outbound(id(1));
    h.dial_result(id(2), Err(DialFailure::AlreadyConnected));
    h.connected(id(2), ConnectionOrigin::Inbound);
    h.connect_outbound(id(3));

    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    let stale = |peer_id| Action::Disconnect {
        peer_id,
        reason: CloseReason::Stale,
    };
    assert_eq!(h.poll(), vec![stale(id(2)), stale(id(3))]);
    assert!(h.poll().is_empty(), "asked once");

    h.disconnected(id(2));
    h.disconnected(id(3));
    assert_eq!(h.metrics.stale_disconnects(), 2);
    assert!(h.poll().is_empty(), "not redialed: no longer eligible");
    assert_eq!(h.policy.next_deadline(), None);
}

/// On a public network only outbound connections go stale: inbound ones from untrusted
/// peers are normal there (MaybeMutual admits them).
#[test]
fn public_network_closes_only_stale_outbound_connections() {
    let mut h = Harness::new(NetworkKind::Public);
    h.discover(DiscoverySource::Config, peers(1, PeerRole::Upstream));
    h.poll();
    h.connect_outbound(id(1));
    h.connected(id(50), ConnectionOrigin::Inbound);

    h.discover(DiscoverySource::Config, HashMap::new());
    assert_eq!(
        h.poll(),
        vec![Action::Disconnect {
            peer_id: id(1),
            reason: CloseReason::Stale,
        }]
    );
}

/// A dial that lost a simultaneous-dial tie (`AlreadyConnected`) does not back off.
#[test]
fn already_connected_failure_does_not_back_off() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    h.poll();
    h.connected(id(1), ConnectionOrigin::Inbound);
    h.dial_result(id(1), Err(DialFailure::AlreadyConnected));
    assert_eq!(h.metrics.backoffs(), 0);
    assert!(h.poll().is_empty(), "connected inbound: no redial");
}

/// A dropped dial is undone (the same address is dialed on the next poll, counted as
/// dropped), and a dropped disconnect is asked for again.
#[test]
fn dropped_actions_are_undone_and_recomputed() {
    let mut h = Harness::new(NetworkKind::Validator);
    let view = HashMap::from([
        (id(1), peer(1, PeerRole::Validator, &[1, 2])),
        (id(2), peer(2, PeerRole::Validator, &[3])),
    ]);
    h.discover(DiscoverySource::OnChain, view);
    let actions = h.poll();
    assert_eq!(dials(&actions)[0], (id(1), addr(1)));
    h.action_dropped(&actions[0]);
    assert_eq!(h.metrics.actions_dropped(ActionKind::Dial), 1);
    assert_eq!(
        h.poll_dials(),
        vec![(id(1), addr(1))],
        "same peer, same address"
    );

    h.connect_outbound(id(2));
    h.discover(
        DiscoverySource::OnChain,
        HashMap::from([(id(1), peer(1, PeerRole::Validator, &[1, 2]))]),
    );
    let disconnect = h.poll();
    assert_eq!(disconnect.len(), 1);
    h.action_dropped(&disconnect[0]);
    assert_eq!(h.poll(), disconnect);
}

/// A successful dial completes once whether the facade reports the result first or the
/// outbound connection first, and the peer is not redialed in between.
#[test]
fn success_reported_in_either_order_completes_the_dial_once() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(2, PeerRole::Validator));
    assert_eq!(h.poll_dials().len(), 2);

    // Result first: the peer already counts as connected.
    h.dial_result(id(1), Ok(()));
    assert!(h.poll().is_empty());
    h.connected(id(1), ConnectionOrigin::Outbound);

    // Connection first: the later result is ignored.
    h.connected(id(2), ConnectionOrigin::Outbound);
    assert!(h.poll().is_empty());
    h.dial_result(id(2), Ok(()));

    assert_eq!(h.metrics.dials(DialOutcome::Connected), 2);
    assert_eq!(h.policy.pending_dials().count(), 0);
    assert_eq!(h.metrics.connected_peers(ConnectionOrigin::Outbound), 2);
}

/// A dialed connection that closed at once, reported as a bare disconnection before the
/// dial's successful result, completes the dial: the late result does not count the peer as
/// connected, and the peer is redialed after its backoff.
#[test]
fn disconnection_before_the_dial_result_still_redials() {
    let mut h = Harness::new(NetworkKind::Validator);
    h.discover(DiscoverySource::OnChain, peers(1, PeerRole::Validator));
    assert_eq!(h.poll_dials().len(), 1);

    h.disconnected(id(1));
    h.dial_result(id(1), Ok(()));
    assert_eq!(h.policy.pending_dials().count(), 0);
    assert_eq!(h.metrics.connected_peers(ConnectionOrigin::Outbound), 0);
    assert_eq!(h.metrics.dials(DialOutcome::Connected), 1);

    assert!(h.poll_dials().is_empty(), "redialed before the backoff");
    h.advance_to_deadline();
    assert_eq!(dialed_peers(&h.poll()), HashSet::from([id(1)]));
}

/// A peer that said it is full is not redialed before `full_retry_delay`, though its backoff
/// ends long before; one that said it banned us waits for the ban's end; the deadline says so.
#[test]
fn a_refusal_holds_the_redial_back_until_its_wait_ends() {
    let mut h = Harness::new(NetworkKind::Public);
    h.discover(DiscoverySource::Config, peers(2, PeerRole::Upstream));
    assert_eq!(h.poll_dials().len(), 2);
    h.connect_outbound(id(1));
    h.connect_outbound(id(2));

    let t0 = h.now;
    assert!(
        h.policy
            .handle_remote_refusal(id(1), RemoteRefusal::Full, t0)
    );
    let ban = Duration::from_secs(300);
    assert!(h.policy.handle_remote_refusal(
        id(2),
        RemoteRefusal::Banned {
            remaining: Some(ban)
        },
        t0
    ));
    h.disconnected(id(1));
    h.disconnected(id(2));

    // The 2 s backoff passes: nothing.
    h.advance(Duration::from_secs(3));
    assert!(h.poll_dials().is_empty());
    assert_eq!(h.policy.next_deadline(), Some(t0 + Duration::from_secs(60)));
    h.advance_to_deadline();
    assert_eq!(h.poll_dials(), vec![(id(1), addr(1))]);
    assert_eq!(h.policy.next_deadline(), Some(t0 + ban));
    h.advance_to_deadline();
    assert_eq!(h.poll_dials(), vec![(id(2), addr(2))]);
}

/// Refusals that call for no wait, and refusals from peers we never discovered, leave no
/// state: a stranger cannot make us hold anything.
#[test]
fn refusals_without_a_wait_or_from_strangers_leave_nothing() {
    let mut h = Harness::new(NetworkKind::Public);
    h.discover(DiscoverySource::Config, peers(1, PeerRole::Upstream));
    assert!(
        !h.policy
            .handle_remote_refusal(id(1), RemoteRefusal::Timeout, h.now)
    );
    assert_eq!(h.policy.not_before(&id(1)), None);
    for n in 10..=200 {
        assert!(
            !h.policy
                .handle_remote_refusal(id(n), RemoteRefusal::Full, h.now)
        );
        assert_eq!(h.policy.not_before(&id(n)), None);
    }
}

/// Fixed round-trip times and scores for the tests.
#[derive(Debug, Default)]
struct FixedScores {
    rtts: HashMap<PeerId, Duration>,
    scores: HashMap<PeerId, i64>,
}

impl PeerScores for FixedScores {
    fn rtt(&self, peer_id: &PeerId) -> Option<Duration> {
        self.rtts.get(peer_id).copied()
    }

    fn score(&self, peer_id: &PeerId) -> i64 {
        self.scores.get(peer_id).copied().unwrap_or(0)
    }
}

/// Below the target range's low mark the policy fills `max_outbound_connections`; at or
/// above it, only `min_outbound_connections`.
#[test]
fn outbound_dials_follow_the_target_range() {
    let mut h = Harness::with_config(NetworkKind::Public, |config| {
        config
            .max_outbound_connections(4)
            .min_outbound_connections(1)
            .target_peers(3, 5);
    });
    for n in 20..23 {
        h.connected(id(n), ConnectionOrigin::Inbound);
    }
    h.discover(DiscoverySource::Config, peers(6, PeerRole::Upstream));
    assert_eq!(h.poll_dials().len(), 1, "at the low mark: the minimum only");

    let mut h = Harness::with_config(NetworkKind::Public, |config| {
        config
            .max_outbound_connections(4)
            .min_outbound_connections(1)
            .target_peers(3, 5);
    });
    h.connected(id(20), ConnectionOrigin::Inbound);
    h.discover(DiscoverySource::Config, peers(6, PeerRole::Upstream));
    assert_eq!(h.poll_dials().len(), 4, "below it: up to the maximum");
}

/// Above the high mark the lowest-scoring inbound peer that is not whitelisted is closed,
/// one per poll, never an outbound or whitelisted one.
#[test]
fn above_the_high_mark_the_worst_inbound_peer_is_closed() {
    let mut h = Harness::with_config(NetworkKind::Public, |config| {
        config
            .max_outbound_connections(0)
            .min_outbound_connections(0)
            .target_peers(1, 2)
            .whitelist([id(1)]);
    });
    h.policy.set_scores(Arc::new(FixedScores {
        rtts: HashMap::new(),
        scores: HashMap::from([(id(1), -100), (id(2), -50), (id(3), 10), (id(4), -90)]),
    }));
    h.discover(
        DiscoverySource::Config,
        HashMap::from([(id(4), peer(4, PeerRole::Upstream, &[4]))]),
    );
    for n in 1..=3 {
        h.connected(id(n), ConnectionOrigin::Inbound);
    }
    h.connected(id(4), ConnectionOrigin::Outbound);
    let actions = h.poll();
    assert_eq!(
        actions,
        vec![Action::Disconnect {
            peer_id: id(2),
            reason: CloseReason::OverTarget
        }],
        "id(1) is whitelisted, id(4) outbound"
    );
    // Being closed: one left above the mark, but the next candidate is whitelisted or better.
    let actions = h.poll();
    assert_eq!(
        actions,
        vec![Action::Disconnect {
            peer_id: id(3),
            reason: CloseReason::OverTarget
        }]
    );
    assert!(h.poll().is_empty(), "at the high mark now");
}

/// With measured round-trip times, a peer at 10 ms is drawn first about ten times as often as
/// one at 100 ms.
#[test]
fn dial_candidates_are_weighted_by_rtt() {
    let mut fast_first = 0;
    for seed in 0..1_000 {
        let mut h = Harness::with_config(NetworkKind::Public, |config| {
            config.max_outbound_connections(1);
        });
        h.rng = StdRng::seed_from_u64(seed);
        h.policy.set_scores(Arc::new(FixedScores {
            rtts: HashMap::from([
                (id(1), Duration::from_millis(100)),
                (id(2), Duration::from_millis(10)),
            ]),
            scores: HashMap::new(),
        }));
        h.discover(DiscoverySource::Config, peers(2, PeerRole::Upstream));
        let dials = h.poll_dials();
        assert_eq!(dials.len(), 1);
        fast_first += usize::from(dials[0].0 == id(2));
    }
    // Expected 1000 × 10/11 ≈ 909.
    assert!((860..=950).contains(&fast_first), "{fast_first}");
}

/// `/memory/<port>` with peer `n`'s `/noise-ik/` key: the form a stored address takes.
fn keyed_addr(n: u8, port: u16) -> NetworkAddress {
    format!(
        "/memory/{port}/noise-ik/{}/handshake/0",
        format!("{n:02x}").repeat(32)
    )
    .parse()
    .unwrap()
}

/// Stored peers are dialed after the seeds and before exchanged peers, in the store's order
/// (not at random), at their best address first; one whose dial fails is retried after its
/// backoff, like any discovered peer; they never enter the trusted set.
#[test]
fn stored_peers_come_after_the_seeds_in_the_stores_order_and_are_retried() {
    let mut h = Harness::with_config(NetworkKind::Public, |config| {
        config.max_outbound_connections = 4;
    });
    h.discover(DiscoverySource::Config, peers(1, PeerRole::Upstream));
    h.discover(
        DiscoverySource::PeerExchange,
        HashMap::from([(
            id(9),
            DiscoveredPeer::new(PeerRole::Known, [keyed_addr(9, 9)], []),
        )]),
    );
    // The store's order: 5, 3, 4, 2 (long-lived first, then by score), 5 with two addresses.
    let stored = vec![
        (id(5), vec![keyed_addr(5, 50), keyed_addr(5, 51)]),
        (id(3), vec![keyed_addr(3, 30)]),
        (id(4), vec![keyed_addr(4, 40)]),
        (id(2), vec![keyed_addr(2, 20)]),
    ];
    assert!(h.policy.handle_stored_peers(stored));
    assert_eq!(h.policy.provenance(&id(5)), Some(Provenance::Stored));
    assert_eq!(h.policy.provenance_count(Provenance::Stored), 4);
    assert_eq!(h.policy.provenance_count(Provenance::Direct), 1);
    let trusted = h.policy.trusted_peers();
    assert!(trusted.contains_key(&id(1)) && !trusted.contains_key(&id(5)));

    let dials = h.poll_dials();
    assert_eq!(
        dials,
        vec![
            (id(1), addr(1)),
            (id(5), keyed_addr(5, 50)),
            (id(3), keyed_addr(3, 30)),
            (id(4), keyed_addr(4, 40)),
        ]
    );
    // Peer 5 is down: it backs off, then is dialed again at its next address.
    h.fail(id(5));
    h.connect_outbound(id(3));
    // Its free slot goes to the next stored peer, 2, before the exchanged one.
    assert_eq!(h.poll_dials(), vec![(id(2), keyed_addr(2, 20))]);
    h.fail(id(2));
    h.fail(id(4));
    // Every stored peer is backing off: the exchanged peer gets a slot.
    assert_eq!(h.poll_dials(), vec![(id(9), keyed_addr(9, 9))]);
    let waited = h.advance_to_deadline();
    assert!(waited >= Duration::from_secs(2) && waited <= Duration::from_secs(2) + JITTER);
    let retried = h.poll_dials();
    assert!(
        retried.contains(&(id(5), keyed_addr(5, 51))),
        "peer 5 retried at its second address: {retried:?}"
    );
    h.connect_outbound(id(5));
    assert_eq!(
        h.metrics
            .dials(DialOutcome::Failed(DialFailure::Unreachable)),
        3
    );
}
