//! [`Policy`]: the pure decision of whom to dial and whom to drop. No IO, no timers, no tasks,
//! no metrics: it takes discovery updates, connection events, `now` and a random number
//! generator, and returns [`Action`]s, its next deadline and the [`Outcome`] of each report
//! for the caller to count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::{PeerRole, TrustedPeer};
use rand::Rng;
use rand::seq::SliceRandom;
use tracing::{debug, info};

use crate::action::{Action, CloseReason, DialFailure, DialOutcome};
use crate::backoff::Backoff;
use crate::config::{Config, NetworkKind};
use crate::discovery::{DiscoveredPeer, DiscoveredSet, DiscoverySource};
use crate::refusal::{RemoteRefusal, refusal_delay};
use crate::scores::{NoScores, PeerScores, rtt_weight};

/// What one report to the [`Policy`] did that is worth counting. The policy keeps no metrics:
/// its caller ([`ConnectivityManager`](crate::ConnectivityManager)) records these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "the policy keeps no metrics: count the outcome"]
pub struct Outcome {
    /// The report ended our dial to the peer, this way.
    pub dial: Option<DialOutcome>,
    /// The peer was put in backoff.
    pub backoff: bool,
    /// With `backoff`: how long until the peer may be dialed again (before jitter).
    pub retry_in: Option<Duration>,
    /// The closed connection was one the policy had asked to close as stale.
    pub stale_disconnect: bool,
}

/// Decides whom to dial and whom to drop, from what discovery says and what the facade
/// reports. Sans-IO: time and randomness are arguments, and the caller owns the timers.
///
/// # What it decides
///
/// - **Eligible** peers are the discovered peers ([`DiscoveredSet`]) other than ourselves
///   that have at least one address and one key and a role we dial: on the validator network
///   only [`PeerRole::Validator`]; on the others every role except
///   [`PeerRole::ValidatorFullNode`], [`PeerRole::Downstream`] and [`PeerRole::Unknown`],
///   which are peers that dial us.
/// - **Validator network**: dial every eligible peer that is not connected (in either
///   direction), not being dialed and not in backoff.
/// - **Other networks**: keep at most [`max_outbound_connections`] outbound connections,
///   counting established ones and dials in flight. Free slots go to eligible peers chosen at
///   random, peers never dialed first and the most recently dialed last. Inbound connections
///   count toward nothing here (the listener limits them).
/// - **Backoff**: after a failed dial, or when a connection closes, the peer waits
///   [`Backoff`]'s delay plus jitter before the next dial. A connection resets it, and so
///   does a change of the peer's address set.
/// - **Addresses** are tried round robin, one per dial, wrapping at the end of the list. When
///   the address set changes the round starts again at the first address, so a shrunk list
///   is never indexed past its end.
/// - **Cancelled dials**: a dial in flight to a peer that is no longer eligible is cancelled
///   ([`Action::CancelDial`]).
/// - **Stale connections**: a connection to a peer that is no longer trusted (no source
///   lists it with a key) is closed ([`Action::Disconnect`] with
///   [`CloseReason::Stale`]). On non-validator networks only outbound connections are
///   checked: the Noise layer admits unknown peers there (`MaybeMutual`), so an inbound
///   connection from an untrusted peer is normal.
///
/// # Calling protocol
///
/// 1. Feed inputs as they happen, in any order: [`handle_discovery_update`],
///    [`handle_connected`], [`handle_disconnected`], [`handle_dial_result`], and
///    [`handle_action_dropped`] for an action that could not be delivered.
/// 2. After any input, and whenever `now` reaches [`next_deadline`], call [`poll_actions`]
///    and carry out every action it returns, in order (cancels, then disconnects, then
///    dials).
/// 3. Then read [`next_deadline`]: the caller must call [`poll_actions`] again no later than
///    that instant. It may call it earlier or more often (a periodic check); extra calls are
///    harmless and return nothing new.
///
/// `now` must not go backwards between calls. [`next_deadline`] read before [`poll_actions`]
/// may be up to the jitter early, never late.
///
/// The facade must report every connection it establishes or loses ([`handle_connected`],
/// [`handle_disconnected`]) with at most one connection per peer, and a result for every
/// [`Action::Dial`] that was not cancelled: a failed [`handle_dial_result`], or a success
/// reported as a successful [`handle_dial_result`], an outbound [`handle_connected`], or
/// both in either order.
///
/// [`max_outbound_connections`]: Config::max_outbound_connections
/// [`handle_discovery_update`]: Self::handle_discovery_update
/// [`handle_connected`]: Self::handle_connected
/// [`handle_disconnected`]: Self::handle_disconnected
/// [`handle_dial_result`]: Self::handle_dial_result
/// [`handle_action_dropped`]: Self::handle_action_dropped
/// [`poll_actions`]: Self::poll_actions
/// [`next_deadline`]: Self::next_deadline
#[derive(Debug)]
pub struct Policy {
    local_peer_id: PeerId,
    network: NetworkKind,
    max_outbound: usize,
    /// Template for each peer's backoff (the config's base, cap and jitter).
    backoff: Backoff,
    discovered: DiscoveredSet,
    /// Dial bookkeeping per discovered peer, created on first need and dropped when the peer
    /// leaves the discovered set.
    dial_states: BTreeMap<PeerId, DialState>,
    connected: BTreeMap<PeerId, Connection>,
    pending_dials: BTreeMap<PeerId, PendingDial>,
    /// The settings the refusal delays come from.
    config: Config,
    /// Peers known only from peer exchange that we have connected to ourselves: no longer
    /// merely heard of. Pruned when they leave the discovered set.
    verified: BTreeSet<PeerId>,
    /// Peers never closed to get back into the target range.
    whitelist: BTreeSet<PeerId>,
    /// Round-trip times and scores measured elsewhere.
    scores: Arc<dyn PeerScores>,
    /// The place of each stored peer in the store's order (0 first): stored peers are dialed
    /// in that order.
    stored_rank: HashMap<PeerId, usize>,
}

impl Policy {
    /// A policy for the node `local_peer_id` (never dialed), with no peers discovered yet
    /// and nothing connected. The config's seeds are not applied: feed them as a
    /// [`DiscoverySource::Config`] update.
    pub fn new(local_peer_id: PeerId, config: &Config) -> Self {
        Self {
            local_peer_id,
            network: config.network,
            max_outbound: config.max_outbound_connections,
            backoff: Backoff::from_config(config),
            discovered: DiscoveredSet::new(),
            dial_states: BTreeMap::new(),
            connected: BTreeMap::new(),
            pending_dials: BTreeMap::new(),
            config: config.clone(),
            verified: BTreeSet::new(),
            whitelist: config.whitelist.iter().copied().collect(),
            scores: Arc::new(NoScores),
            stored_rank: HashMap::new(),
        }
    }

    /// Replaces the [`DiscoverySource::Stored`] view with `peers`, best first, each with its
    /// addresses best first: each becomes a peer of role [`PeerRole::Known`] keyed by its
    /// addresses' `/noise-ik/` keys, dialed after the trusted sources' peers and before
    /// those of peer exchange, in this order. Returns whether the merged set changed.
    pub fn handle_stored_peers(&mut self, peers: Vec<(PeerId, Vec<NetworkAddress>)>) -> bool {
        self.stored_rank = peers
            .iter()
            .enumerate()
            .map(|(rank, (peer_id, _))| (*peer_id, rank))
            .collect();
        let view = peers
            .into_iter()
            .filter(|(_, addresses)| !addresses.is_empty())
            .map(|(peer_id, addresses)| {
                (peer_id, DiscoveredPeer::new(PeerRole::Known, addresses, []))
            })
            .collect();
        self.handle_discovery_update(DiscoverySource::Stored, view)
    }

    /// Reads round-trip times and scores from `scores` from now on (by default none are
    /// known: [`NoScores`]).
    pub fn set_scores(&mut self, scores: Arc<dyn PeerScores>) {
        self.scores = scores;
    }

    /// Where a discovered peer comes from; `None` if it is not discovered.
    pub fn provenance(&self, peer_id: &PeerId) -> Option<Provenance> {
        self.discovered.get(peer_id)?;
        Some(if self.discovered.is_stored(peer_id) {
            Provenance::Stored
        } else if !self.discovered.is_indirect(peer_id) {
            Provenance::Direct
        } else if self.verified.contains(peer_id) {
            Provenance::Verified
        } else {
            Provenance::Indirect
        })
    }

    /// How many discovered peers have `provenance`.
    pub fn provenance_count(&self, provenance: Provenance) -> usize {
        let indirect = self.discovered.indirect_count();
        let stored = self.discovered.stored_count();
        match provenance {
            Provenance::Direct => self.discovered.peers().len() - indirect - stored,
            Provenance::Stored => stored,
            Provenance::Verified => self.verified.len(),
            Provenance::Indirect => indirect - self.verified.len(),
        }
    }

    /// `peer_id` told us why it closed or refused our connection ([`RemoteRefusal`]). For a
    /// discovered peer whose reason calls for it ([`refusal_delay`]), no dial starts before
    /// `now` plus that delay, whatever its backoff says; a later refusal can only push that
    /// instant further out. Returns whether a wait was imposed.
    ///
    /// A peer we did not discover leaves no state behind: a stranger's refusals cost nothing.
    pub fn handle_remote_refusal(
        &mut self,
        peer_id: PeerId,
        refusal: RemoteRefusal,
        now: Instant,
    ) -> bool {
        let Some(delay) = refusal_delay(refusal, &self.config) else {
            return false;
        };
        if !self.discovered.peers().contains_key(&peer_id) {
            return false;
        }
        let state = self
            .dial_states
            .entry(peer_id)
            .or_insert_with(|| DialState::new(self.backoff.clone()));
        let until = now + delay;
        state.not_before = Some(state.not_before.map_or(until, |earlier| earlier.max(until)));
        debug!(peer = %peer_id, reason = refusal.as_str(), ?delay, "peer refused us; waiting");
        true
    }

    /// When `peer_id` may be dialed again after its refusal, if it refused us.
    pub fn not_before(&self, peer_id: &PeerId) -> Option<Instant> {
        self.dial_states.get(peer_id)?.not_before
    }

    /// Replaces `source`'s view of the peers. Returns whether the merged peer set (and so
    /// the trusted-peer map, [`trusted_peers`](Self::trusted_peers)) changed.
    ///
    /// A peer whose address set changed gets a fresh backoff and starts again at its first
    /// address. A peer that left the set loses its dial bookkeeping; the next
    /// [`poll_actions`](Self::poll_actions) cancels its dial and closes its connection if it
    /// became ineligible or untrusted.
    pub fn handle_discovery_update(
        &mut self,
        source: DiscoverySource,
        view: HashMap<PeerId, DiscoveredPeer>,
    ) -> bool {
        let before = self.discovered.peers().clone();
        if !self.discovered.update(source, view) {
            return false;
        }
        let after = self.discovered.peers();
        let discovered = &self.discovered;
        self.verified
            .retain(|peer_id| discovered.is_indirect(peer_id));
        self.dial_states.retain(|peer_id, state| {
            let Some(peer) = after.get(peer_id) else {
                return false;
            };
            let old_addrs = before.get(peer_id).map(|old| &old.addresses);
            if old_addrs.is_none_or(|old| !same_set(old, &peer.addresses)) {
                state.reset();
            }
            true
        });
        debug!(
            source = source.as_str(),
            peers = after.len(),
            "discovered peers changed"
        );
        true
    }

    /// A connection to `peer_id` was established. Resets the peer's backoff.
    ///
    /// An outbound connection completes our dial to the peer, if one is in flight, as a
    /// successful [`handle_dial_result`](Self::handle_dial_result) would (the later result is
    /// then ignored). An inbound one leaves our dial in flight until its result arrives.
    pub fn handle_connected(&mut self, peer_id: PeerId, origin: ConnectionOrigin) -> Outcome {
        let mut outcome = Outcome::default();
        self.connected.insert(
            peer_id,
            Connection {
                origin,
                disconnecting: false,
            },
        );
        if origin == ConnectionOrigin::Outbound && self.pending_dials.remove(&peer_id).is_some() {
            outcome.dial = Some(DialOutcome::Connected);
        }
        if let Some(state) = self.dial_states.get_mut(&peer_id) {
            state.reset_backoff();
        }
        if origin == ConnectionOrigin::Outbound && self.discovered.is_indirect(&peer_id) {
            // We reached it at an address a stranger gave us: it exists.
            self.verified.insert(peer_id);
        }
        outcome
    }

    /// The connection to `peer_id` closed. If the peer is still eligible it is redialed after
    /// its backoff, which starts at `now`.
    ///
    /// The facade may report a connection that closed at once as a bare disconnection (its
    /// `Connected` report merged away while both waited), ahead of the result of the dial that
    /// made it. With our dial to the peer in flight, such a disconnection completes that dial:
    /// the later successful result is then ignored, instead of leaving the peer counted as
    /// connected and never redialed.
    pub fn handle_disconnected(&mut self, peer_id: PeerId, now: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(connection) = self.connected.remove(&peer_id) else {
            if self.pending_dials.remove(&peer_id).is_some() {
                debug!(peer = %peer_id, "dialed connection closed before the dial's result");
                outcome.dial = Some(DialOutcome::Connected);
                outcome.backoff = self.is_eligible(&peer_id) && self.start_backoff(peer_id, now);
            } else {
                debug!(peer = %peer_id, "disconnection of a peer we did not know as connected");
            }
            return outcome;
        };
        outcome.stale_disconnect = connection.disconnecting;
        outcome.backoff = self.is_eligible(&peer_id) && self.start_backoff(peer_id, now);
        outcome
    }

    /// The facade finished the dial to `peer_id`. On failure the peer backs off from `now`
    /// (except for [`DialFailure::AlreadyConnected`]). On success its backoff is reset and
    /// the peer counts as connected outbound until
    /// [`handle_disconnected`](Self::handle_disconnected), whether or not
    /// [`handle_connected`](Self::handle_connected) is also called.
    ///
    /// A result for a dial that is not in flight (it was cancelled, or an outbound
    /// connection already completed it) is ignored.
    pub fn handle_dial_result(
        &mut self,
        peer_id: PeerId,
        result: Result<(), DialFailure>,
        now: Instant,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(pending) = self.pending_dials.remove(&peer_id) else {
            debug!(peer = %peer_id, ?result, "result of a dial not in flight ignored");
            return outcome;
        };
        match result {
            Ok(()) => {
                outcome.dial = Some(DialOutcome::Connected);
                // The connection exists even if its `Connected` report is still on its way.
                self.connected.entry(peer_id).or_insert(Connection {
                    origin: ConnectionOrigin::Outbound,
                    disconnecting: false,
                });
                if let Some(state) = self.dial_states.get_mut(&peer_id) {
                    state.reset_backoff();
                }
            }
            Err(failure) => {
                outcome.dial = Some(DialOutcome::Failed(failure));
                debug!(
                    peer = %peer_id,
                    addr = %pending.addr,
                    failure = failure.as_str(),
                    "dial failed"
                );
                outcome.backoff = failure != DialFailure::AlreadyConnected
                    && self.is_eligible(&peer_id)
                    && self.start_backoff(peer_id, now);
                if outcome.backoff {
                    outcome.retry_in = self
                        .dial_states
                        .get(&peer_id)
                        .and_then(|state| state.retry_at)
                        .map(|at| at.saturating_duration_since(now));
                }
            }
        }
        outcome
    }

    /// `action`, returned by [`poll_actions`](Self::poll_actions), never reached the facade
    /// (its queue was full). Undoes its bookkeeping so that the next
    /// [`poll_actions`](Self::poll_actions) decides again: a dropped dial is no longer in
    /// flight (and will try the same address), a dropped disconnect will be asked for again.
    /// A dropped cancel needs nothing: the dial is already forgotten.
    pub fn handle_action_dropped(&mut self, action: &Action) {
        match action {
            Action::Dial { peer_id, .. } => {
                if let Some(pending) = self.pending_dials.remove(peer_id)
                    && let Some(state) = self.dial_states.get_mut(peer_id)
                {
                    state.last_dial = pending.previous_last_dial;
                    state.next_addr = pending.addr_index;
                }
            }
            Action::Disconnect { peer_id, .. } => {
                if let Some(connection) = self.connected.get_mut(peer_id) {
                    connection.disconnecting = false;
                }
            }
            Action::CancelDial { .. } => {}
        }
    }

    /// What to do now: cancels of dials to ineligible peers, then disconnects of stale
    /// connections, then new dials. Each action is returned once; the policy records dials
    /// as in flight and disconnects as requested. Each [`Action::CancelDial`] ends a dial as
    /// [`DialOutcome::Cancelled`], for the caller to count.
    pub fn poll_actions<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Vec<Action> {
        // Backoffs started since the last poll get their jitter now, where the rng is.
        for state in self.dial_states.values_mut() {
            if state.jitter_due {
                state.jitter_due = false;
                if let Some(retry_at) = &mut state.retry_at {
                    *retry_at += self.backoff.jitter(rng);
                }
            }
        }

        let mut actions = Vec::new();

        let cancelled: Vec<PeerId> = self
            .pending_dials
            .keys()
            .filter(|peer_id| !self.is_eligible(peer_id))
            .copied()
            .collect();
        for peer_id in cancelled {
            self.pending_dials.remove(&peer_id);
            debug!(peer = %peer_id, "dial cancelled: peer no longer eligible");
            actions.push(Action::CancelDial { peer_id });
        }

        let stale: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(peer_id, connection)| {
                !connection.disconnecting && self.is_stale(peer_id, connection.origin)
            })
            .map(|(peer_id, _)| *peer_id)
            .collect();
        for peer_id in stale {
            if let Some(connection) = self.connected.get_mut(&peer_id) {
                connection.disconnecting = true;
            }
            info!(peer = %peer_id, "closing connection: peer no longer trusted");
            actions.push(Action::Disconnect {
                peer_id,
                reason: CloseReason::Stale,
            });
        }

        if let Some(peer_id) = self.choose_inbound_to_close() {
            if let Some(connection) = self.connected.get_mut(&peer_id) {
                connection.disconnecting = true;
            }
            info!(peer = %peer_id, "closing the worst inbound connection: above the target range");
            actions.push(Action::Disconnect {
                peer_id,
                reason: CloseReason::OverTarget,
            });
        }

        for peer_id in self.choose_peers_to_dial(now, rng) {
            actions.extend(self.start_dial(peer_id, now));
        }
        actions
    }

    /// When [`poll_actions`](Self::poll_actions) must next be called if no input arrives: the
    /// earliest end of a backoff that would lead to a dial. `None` when only an input can
    /// lead to new actions (nothing in backoff, or no free outbound slot).
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.network.is_validator_network() && self.free_outbound_slots() == 0 {
            return None;
        }
        self.dial_states
            .iter()
            .filter(|(peer_id, _)| self.is_dial_candidate(peer_id))
            .filter_map(|(_, state)| state.ready_at())
            .min()
    }

    /// The merged discovered peers.
    pub fn discovered(&self) -> &DiscoveredSet {
        &self.discovered
    }

    /// The trusted-peer map for [`noise::TrustedPeers::replace`]: every discovered peer with
    /// at least one key.
    pub fn trusted_peers(&self) -> HashMap<PeerId, TrustedPeer> {
        self.discovered.trusted_peers()
    }

    /// The peers we may dial (see the type's doc), by PeerId.
    pub fn eligible_peers(&self) -> Vec<PeerId> {
        self.discovered
            .peers()
            .keys()
            .filter(|peer_id| self.is_eligible(peer_id))
            .copied()
            .collect()
    }

    /// How many peers we may dial: [`eligible_peers`](Self::eligible_peers)`.len()`, without
    /// the list.
    pub fn eligible_count(&self) -> usize {
        self.discovered
            .peers()
            .keys()
            .filter(|peer_id| self.is_eligible(peer_id))
            .count()
    }

    /// How many peers are connected with `origin`.
    pub fn connected_count(&self, origin: ConnectionOrigin) -> usize {
        self.connected
            .values()
            .filter(|connection| connection.origin == origin)
            .count()
    }

    /// The connected peers and the origin of their connection, by PeerId.
    pub fn connected_peers(&self) -> impl Iterator<Item = (PeerId, ConnectionOrigin)> + '_ {
        self.connected
            .iter()
            .map(|(peer_id, connection)| (*peer_id, connection.origin))
    }

    /// The peers being dialed, by PeerId.
    pub fn pending_dials(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.pending_dials.keys().copied()
    }

    /// When `peer_id` may be dialed again, if it is in backoff. Before the next
    /// [`poll_actions`](Self::poll_actions) this may lack the jitter.
    pub fn retry_at(&self, peer_id: &PeerId) -> Option<Instant> {
        self.dial_states.get(peer_id)?.retry_at
    }

    /// Whether we may dial `peer_id`: discovered, not ourselves, with an address, a key and a
    /// role we dial on this network.
    fn is_eligible(&self, peer_id: &PeerId) -> bool {
        *peer_id != self.local_peer_id
            && self.discovered.get(peer_id).is_some_and(|peer| {
                !peer.addresses.is_empty()
                    && !peer.keys.is_empty()
                    && dials_role(self.network, peer.role)
            })
    }

    /// Whether a connection to `peer_id` with `origin` must be closed.
    fn is_stale(&self, peer_id: &PeerId, origin: ConnectionOrigin) -> bool {
        let trusted = self
            .discovered
            .get(peer_id)
            .is_some_and(|peer| !peer.keys.is_empty());
        !trusted && (self.network.is_validator_network() || origin == ConnectionOrigin::Outbound)
    }

    /// Eligible, not connected and not being dialed (backoff aside).
    fn is_dial_candidate(&self, peer_id: &PeerId) -> bool {
        self.is_eligible(peer_id)
            && !self.connected.contains_key(peer_id)
            && !self.pending_dials.contains_key(peer_id)
    }

    /// Outbound connections plus dials in flight, each peer once.
    fn outbound_count(&self) -> usize {
        let outbound: BTreeSet<&PeerId> = self
            .connected
            .iter()
            .filter(|(_, connection)| connection.origin == ConnectionOrigin::Outbound)
            .map(|(peer_id, _)| peer_id)
            .chain(self.pending_dials.keys())
            .collect();
        outbound.len()
    }

    /// On the public network: up to `max_outbound_connections` while fewer peers than the
    /// target range's low mark are connected, else up to `min_outbound_connections`. On the
    /// others: up to `max_outbound_connections`.
    fn free_outbound_slots(&self) -> usize {
        let want = if self.network != NetworkKind::Public
            || self.connected.len() < self.config.target_peers_low
        {
            self.max_outbound
        } else {
            self.config.min_outbound_connections.min(self.max_outbound)
        };
        want.saturating_sub(self.outbound_count())
    }

    /// Above the target range's high mark on the public network: the connected inbound
    /// peer, not whitelisted and not being closed already, with the lowest score (ties: the
    /// lowest PeerId). One per poll, so the range is approached one check at a time.
    fn choose_inbound_to_close(&self) -> Option<PeerId> {
        let open = self
            .connected
            .values()
            .filter(|connection| !connection.disconnecting)
            .count();
        if self.network != NetworkKind::Public || open <= self.config.target_peers_high {
            return None;
        }
        self.connected
            .iter()
            .filter(|(peer_id, connection)| {
                connection.origin == ConnectionOrigin::Inbound
                    && !connection.disconnecting
                    && !self.whitelist.contains(peer_id)
            })
            .min_by_key(|(peer_id, _)| (self.scores.score(peer_id), **peer_id))
            .map(|(peer_id, _)| *peer_id)
    }

    fn choose_peers_to_dial<R: Rng + ?Sized>(&self, now: Instant, rng: &mut R) -> Vec<PeerId> {
        // `discovered.peers()` is a BTreeMap: the candidates come in PeerId order, so a seeded
        // rng gives the same choice every run.
        let mut candidates: Vec<(PeerId, (Tier, Option<Instant>))> = self
            .discovered
            .peers()
            .keys()
            .filter(|peer_id| self.is_dial_candidate(peer_id))
            .filter_map(|peer_id| {
                let state = self.dial_states.get(peer_id);
                let ready = state
                    .and_then(DialState::ready_at)
                    .is_none_or(|ready_at| ready_at <= now);
                let tier = if self.discovered.is_indirect(peer_id) {
                    Tier::Exchanged
                } else if self.discovered.is_stored(peer_id) {
                    Tier::Stored(self.stored_rank.get(peer_id).copied().unwrap_or(usize::MAX))
                } else {
                    Tier::Trusted
                };
                ready.then(|| (*peer_id, (tier, state.and_then(|state| state.last_dial))))
            })
            .collect();
        if !self.network.is_validator_network() {
            candidates.shuffle(rng);
            // Each candidate with a measured RTT draws a key of an exponential race weighted
            // by `rtt_weight`: sorting by it is a weighted random order (Efraimidis–Spirakis),
            // so close peers are likely, not certain, to come first.
            let mut keyed: Vec<(PeerId, DialOrder)> = candidates
                .into_iter()
                .map(|(peer_id, (tier, last_dial))| {
                    let race = self.scores.rtt(&peer_id).map_or(f64::INFINITY, |rtt| {
                        let draw: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                        -draw.ln() / rtt_weight(rtt)
                    });
                    (
                        peer_id,
                        (
                            tier.class(),
                            last_dial.is_some(),
                            tier.rank(),
                            race,
                            last_dial,
                        ),
                    )
                })
                .collect();
            // Stable: peers of the trusted sources, then stored peers, then those only peer
            // exchange knows; within each, peers never dialed first; stored peers in the
            // store's order; then peers with a measured RTT in their weighted random order;
            // then the rest, least recently dialed first, in random order among equals.
            keyed.sort_by(|(_, a), (_, b)| {
                (a.0, a.1, a.2)
                    .cmp(&(b.0, b.1, b.2))
                    .then(a.3.total_cmp(&b.3))
                    .then(a.4.cmp(&b.4))
            });
            keyed.truncate(self.free_outbound_slots());
            return keyed.into_iter().map(|(peer_id, _)| peer_id).collect();
        }
        candidates.into_iter().map(|(peer_id, _)| peer_id).collect()
    }

    /// Records a dial to `peer_id` as in flight and returns it, or `None` if the peer has no
    /// address (never the case for an eligible peer).
    fn start_dial(&mut self, peer_id: PeerId, now: Instant) -> Option<Action> {
        let addresses = &self.discovered.get(&peer_id)?.addresses;
        let state = self
            .dial_states
            .entry(peer_id)
            .or_insert_with(|| DialState::new(self.backoff.clone()));
        // Wraps at the end of the list; `next_addr` is reset when the list changes, and the
        // modulo also keeps it in range for a list that shrank.
        let addr_index = state.next_addr.checked_rem(addresses.len())?;
        let addr = addresses.get(addr_index)?.clone();
        state.next_addr = addr_index + 1;
        let previous_last_dial = state.last_dial.replace(now);
        state.retry_at = None;
        self.pending_dials.insert(
            peer_id,
            PendingDial {
                addr: addr.clone(),
                addr_index,
                previous_last_dial,
            },
        );
        debug!(peer = %peer_id, %addr, "dialing");
        Some(Action::Dial { peer_id, addr })
    }

    /// Puts `peer_id` in backoff from `now`; always `true` (a backoff started), so that callers
    /// can fold it into their [`Outcome`].
    fn start_backoff(&mut self, peer_id: PeerId, now: Instant) -> bool {
        let state = self
            .dial_states
            .entry(peer_id)
            .or_insert_with(|| DialState::new(self.backoff.clone()));
        state.retry_at = Some(now + state.backoff.delay());
        state.backoff.record_failure();
        state.jitter_due = true;
        true
    }
}

/// The order of dial candidates: the tier's class, dialed before, the rank in the store's
/// order, the weighted race's draw, when last dialed; smaller first.
type DialOrder = (u8, bool, usize, f64, Option<Instant>);

/// Which sources a dial candidate comes from, for the dial order.
#[derive(Clone, Copy, Debug)]
enum Tier {
    /// A trusted source lists it.
    Trusted,
    /// Only the store (and perhaps peer exchange) lists it, at this place in its order.
    Stored(usize),
    /// Only peer exchange lists it.
    Exchanged,
}

impl Tier {
    /// Trusted first, then stored, then exchanged.
    const fn class(self) -> u8 {
        match self {
            Self::Trusted => 0,
            Self::Stored(_) => 1,
            Self::Exchanged => 2,
        }
    }

    /// The place in the store's order; 0 outside the store.
    const fn rank(self) -> usize {
        match self {
            Self::Stored(rank) => rank,
            Self::Trusted | Self::Exchanged => 0,
        }
    }
}

/// Where a discovered peer comes from, as far as trust goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provenance {
    /// Listed by the chain, the discovery file or the config (`direct`).
    Direct,
    /// Listed by the peer store from earlier runs and by no trusted source (`stored`).
    Stored,
    /// Known only from peer exchange, never connected to by us (`indirect`).
    Indirect,
    /// Known only from peer exchange, and we have connected to it ourselves (`verified`).
    Verified,
}

impl Provenance {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Stored => "stored",
            Self::Indirect => "indirect",
            Self::Verified => "verified",
        }
    }
}

/// Dial bookkeeping of one peer.
#[derive(Clone, Debug)]
struct DialState {
    backoff: Backoff,
    /// Index of the address to try next, into the peer's merged address list.
    next_addr: usize,
    /// When we last dialed the peer: recently dialed peers go last.
    last_dial: Option<Instant>,
    /// Not before this instant: the end of the current backoff.
    retry_at: Option<Instant>,
    /// `retry_at` still lacks its jitter; the next poll adds it.
    jitter_due: bool,
    /// Not before this instant either: the peer refused us for a reason that asks for a
    /// wait ([`refusal_delay`]). Unlike `retry_at` a connection does not clear it (the
    /// refusal may be read after the connection is reported); it simply passes.
    not_before: Option<Instant>,
}

impl DialState {
    fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            next_addr: 0,
            last_dial: None,
            retry_at: None,
            jitter_due: false,
            not_before: None,
        }
    }

    /// When the peer may be dialed: the later of its backoff's end and its refusal's wait;
    /// `None` when neither holds it back.
    fn ready_at(&self) -> Option<Instant> {
        match (self.retry_at, self.not_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// A connection succeeded: no more waiting.
    fn reset_backoff(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
        self.jitter_due = false;
    }

    /// The peer's addresses changed: a fresh backoff, and the round robin starts over.
    /// `last_dial` stays, so the peer keeps its place in the "recently dialed last" order.
    fn reset(&mut self) {
        self.reset_backoff();
        self.next_addr = 0;
    }
}

/// A connection the facade reported.
#[derive(Clone, Copy, Debug)]
struct Connection {
    origin: ConnectionOrigin,
    /// We asked for it to be closed and wait for the disconnection.
    disconnecting: bool,
}

/// A dial in flight, with what is needed to undo it if the action is dropped.
#[derive(Clone, Debug)]
struct PendingDial {
    addr: NetworkAddress,
    addr_index: usize,
    previous_last_dial: Option<Instant>,
}

/// Whether we dial peers of `role` on `network`.
fn dials_role(network: NetworkKind, role: PeerRole) -> bool {
    match network {
        NetworkKind::Validator => role == PeerRole::Validator,
        NetworkKind::Vfn | NetworkKind::Public => !matches!(
            role,
            PeerRole::ValidatorFullNode | PeerRole::Downstream | PeerRole::Unknown
        ),
    }
}

/// Whether two address lists hold the same addresses, in any order.
fn same_set(a: &[NetworkAddress], b: &[NetworkAddress]) -> bool {
    a.len() == b.len() && a.iter().all(|addr| b.contains(addr))
}

#[cfg(test)]
mod tests;
