//! [`ConnectivityManager`]: the actor that drives the [`Policy`] with discovery updates,
//! connection events and timers, hands its actions to the facade and records the metrics of
//! what the policy did.

use std::collections::{HashMap, HashSet};
use std::future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use netcore::{ConnectionOrigin, LogLimiter, NetworkAddress, PeerId};
use noise::TrustedPeers;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::action::{Action, CloseReason, DialFailure, DialOutcome};
use crate::config::Config;
use crate::discovery::{DiscoveredPeer, DiscoverySource};
use crate::error::Error;
use crate::exchanged::ExchangedPeers;
use crate::metrics::Metrics;
use crate::peers_file::FileSource;
use crate::policy::{Outcome, Policy, Provenance};
use crate::refusal::RemoteRefusal;
use crate::scores::PeerScores;

/// What the facade tells the manager about its connections to a peer and its dials. Sent
/// through a [`ConnectivityHandle`].
///
/// The facade keeps at most one connection per peer: it reports `Connected` when a peer gets
/// a connection and `Disconnected` when the peer has none left (not when a simultaneous-dial
/// tie replaces one connection with another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection to `peer_id` is up (after the handshakes), dialed by us or by the peer.
    Connected {
        /// The peer.
        peer_id: PeerId,
        /// Who dialed.
        origin: ConnectionOrigin,
    },
    /// The peer's connection closed, for any reason.
    Disconnected {
        /// The peer.
        peer_id: PeerId,
    },
    /// The result of an [`Action::Dial`], for every dial that was not cancelled. A
    /// successful dial may be reported here, as an outbound `Connected`, or both in either
    /// order; a failed one must be reported here, or the peer is never redialed.
    DialResult {
        /// The dialed peer.
        peer_id: PeerId,
        /// `Ok` once the connection is up, or why it failed.
        result: Result<(), DialFailure>,
        /// For a failure the operator should hear of: the line that says what failed. The
        /// manager logs it at warn (rate-limited) with when it dials again.
        detail: Option<String>,
    },
    /// Peers another node told us about (peer exchange), validated by the facade: each with
    /// the addresses to dial it at. They join the [`DiscoverySource::PeerExchange`] view, at
    /// most [`Config::max_exchanged_peers`] of them.
    Exchanged {
        /// The node that told us.
        from: PeerId,
        /// The peers and their addresses.
        peers: Vec<(PeerId, Vec<NetworkAddress>)>,
    },
    /// The peer told us why it closed or refused our connection (peerlane's `Disconnect`
    /// message). Sent before or after its `Disconnected`, in either order.
    RemoteRefusal {
        /// The peer.
        peer_id: PeerId,
        /// What it said.
        refusal: RemoteRefusal,
    },
}

impl PeerEvent {
    /// The peer the event is about.
    pub const fn peer_id(&self) -> PeerId {
        match self {
            Self::Connected { peer_id, .. }
            | Self::Disconnected { peer_id }
            | Self::DialResult { peer_id, .. }
            | Self::RemoteRefusal { peer_id, .. } => *peer_id,
            Self::Exchanged { from, .. } => *from,
        }
    }
}

/// The facade's side of the manager's event queue. Cloning gives another handle on the same
/// queue; when every handle is dropped, the manager stops
/// ([`ExitReason::HandlesDropped`]).
#[derive(Clone, Debug)]
pub struct ConnectivityHandle {
    connection_events_tx: mpsc::Sender<PeerEvent>,
    capacity: usize,
}

impl ConnectivityHandle {
    /// Queues `event` for the manager, waiting while the queue is full
    /// ([`Config::connection_events_capacity`], 1024 by default). The manager never waits
    /// on the facade, so the wait is short: it drains events as fast as the policy runs.
    ///
    /// Cancel safe: if the future is dropped before it completes, the event was not queued.
    pub async fn send(&self, event: PeerEvent) -> Result<(), Error> {
        self.connection_events_tx
            .send(event)
            .await
            .map_err(|_| Error::ManagerStopped)
    }

    /// Queues `event` if there is room, without waiting.
    pub fn try_send(&self, event: PeerEvent) -> Result<(), Error> {
        self.connection_events_tx
            .try_send(event)
            .map_err(|error| match error {
                TrySendError::Full(_) => Error::EventQueueFull {
                    capacity: self.capacity,
                },
                TrySendError::Closed(_) => Error::ManagerStopped,
            })
    }

    /// Whether the manager has stopped.
    pub fn is_closed(&self) -> bool {
        self.connection_events_tx.is_closed()
    }
}

/// Why [`ConnectivityManager::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// The shutdown token was cancelled.
    Shutdown,
    /// Every [`ConnectivityHandle`] was dropped: no more connection events can arrive.
    HandlesDropped,
    /// The action receiver was dropped: no one carries out our actions any more.
    ActionsReceiverDropped,
}

/// The connectivity manager actor: owns a [`Policy`] and feeds it discovery updates,
/// connection events and time; sends the resulting [`Action`]s to the facade.
///
/// # Channels
///
/// | channel | direction | bound | when full |
/// |---|---|---|---|
/// | connection events ([`ConnectivityHandle`]) | facade → manager | [`Config::connection_events_capacity`] (1024) | `send` waits; `try_send` fails with [`Error::EventQueueFull`] |
/// | actions (`mpsc::Receiver<Action>`) | manager → facade | [`Config::actions_capacity`] (1024) | the manager drops the action and every later one of the same poll, counts them (`peerlane_connectivity_actions_dropped_total{action}`), undoes them in the policy and polls again only at the next connectivity check |
/// | on-chain set (`watch::Receiver`) | node → manager | one value | the newest set replaces the older |
///
/// The manager never waits on the facade, so the facade may wait on the manager (`send`)
/// without risk of a deadlock.
///
/// # Sources
///
/// - the [`DiscoverySource::Config`] seeds, applied once in [`new`](Self::new);
/// - the [`DiscoverySource::Stored`] peers of a persistent store, applied once in
///   [`stored_peers`](Self::stored_peers);
/// - the [`DiscoverySource::OnChain`] set, applied at start and on every change; when its
///   sender is dropped the last set stays;
/// - the [`DiscoverySource::File`], read at start and every
///   [`Config::discovery_file_interval`]; see [`FileSource`] for errors.
///
/// After every discovery change the manager replaces the contents of the [`TrustedPeers`] it
/// was given with [`Policy::trusted_peers`]: it owns that set's contents, so nothing else
/// should write to it.
///
/// # Example
///
/// ```
/// # use std::collections::HashMap;
/// # use connectivity_manager::{Action, Config, ConnectivityManager, DiscoveredPeer, Metrics};
/// # use netcore::{NetworkAddress, PeerId};
/// # use noise::{PeerRole, PublicKey, TrustedPeers};
/// # use tokio_util::sync::CancellationToken;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let seed = PeerId::new([1; 32]);
/// let mut config = Config::default();
/// config.seeds(HashMap::from([(
///     seed,
///     DiscoveredPeer::new(PeerRole::Upstream, [NetworkAddress::memory(1)], [PublicKey::from([1; 32])]),
/// )]));
/// let trusted = TrustedPeers::new();
/// let (manager, handle, mut actions_rx) =
///     ConnectivityManager::new(PeerId::new([0; 32]), config, trusted.clone(), Metrics::default())
///         .unwrap();
/// assert!(trusted.snapshot().contains_key(&seed));
///
/// let shutdown = CancellationToken::new();
/// let task = tokio::spawn(manager.run(shutdown.clone()));
/// // The facade carries out each action and reports back through `handle`.
/// let action = actions_rx.recv().await.unwrap();
/// assert_eq!(action, Action::Dial { peer_id: seed, addr: NetworkAddress::memory(1) });
/// # drop(handle);
/// shutdown.cancel();
/// task.await.unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct ConnectivityManager {
    config: Config,
    policy: Policy,
    metrics: Metrics,
    trusted_peers: TrustedPeers,
    /// The IPs of the trusted peers' addresses, published with each change of `trusted_peers`
    /// (see [`Self::trusted_ips`]).
    trusted_ips: watch::Sender<HashSet<IpAddr>>,
    connection_events_rx: mpsc::Receiver<PeerEvent>,
    actions_tx: mpsc::Sender<Action>,
    on_chain_rx: Option<watch::Receiver<HashMap<PeerId, DiscoveredPeer>>>,
    file: Option<FileSource>,
    /// The peer exchange source's view, bounded.
    exchanged: ExchangedPeers,
    rng: StdRng,
    /// An action was dropped on a full queue: poll the policy again only at the next check.
    congested: bool,
    /// The warnings about failed dials: ten a minute, whatever the number of peers.
    dial_log: LogLimiter,
}

impl ConnectivityManager {
    /// A manager for the node `local_peer_id`, with the config's seeds applied (and written
    /// to `trusted_peers`), its event handle and the receiver of its actions.
    ///
    /// Fails with [`Error::InvalidConfig`] for settings it cannot run with
    /// ([`Config::validate`]).
    pub fn new(
        local_peer_id: PeerId,
        config: Config,
        trusted_peers: TrustedPeers,
        metrics: Metrics,
    ) -> Result<(Self, ConnectivityHandle, mpsc::Receiver<Action>), Error> {
        config.validate()?;
        let (connection_events_tx, connection_events_rx) =
            mpsc::channel(config.connection_events_capacity);
        let (actions_tx, actions_rx) = mpsc::channel(config.actions_capacity);
        let file = config
            .discovery_file
            .clone()
            .map(|path| FileSource::new(path, metrics.clone()));
        let policy = Policy::new(local_peer_id, &config);
        let mut manager = Self {
            policy,
            metrics,
            trusted_peers,
            trusted_ips: watch::Sender::new(HashSet::new()),
            connection_events_rx,
            actions_tx,
            on_chain_rx: None,
            file,
            exchanged: ExchangedPeers::new(config.max_exchanged_peers),
            rng: StdRng::from_entropy(),
            congested: false,
            dial_log: LogLimiter::new(10, std::time::Duration::from_secs(60)),
            config,
        };
        let seeds = manager.config.seeds.clone();
        manager.apply_discovery(DiscoverySource::Config, seeds);
        let handle = ConnectivityHandle {
            connection_events_tx,
            capacity: manager.config.connection_events_capacity,
        };
        Ok((manager, handle, actions_rx))
    }

    /// The IPs of the `/ip4` and `/ip6` addresses of the peers in the trusted set, kept up to
    /// date as discovery changes it (seeds, the discovery file, the on-chain set; never peers
    /// learned through peer exchange). A listener admits sockets from them as a trusted
    /// peer's before the Noise handshake names the peer.
    pub fn trusted_ips(&self) -> watch::Receiver<HashSet<IpAddr>> {
        self.trusted_ips.subscribe()
    }

    /// Follows the on-chain validator set: the node sends each new set on the `watch`
    /// channel. Without it there is no [`DiscoverySource::OnChain`] source.
    pub fn on_chain_updates(
        &mut self,
        on_chain_rx: watch::Receiver<HashMap<PeerId, DiscoveredPeer>>,
    ) -> &mut Self {
        self.on_chain_rx = Some(on_chain_rx);
        self
    }

    /// Gives the manager the peers a persistent store kept from earlier runs, best first
    /// (long-lived outbound connections, then by score), each with its addresses best first:
    /// the [`DiscoverySource::Stored`] source. They are dialed after the trusted sources'
    /// peers, in this order, within the outbound limits, and a failed dial backs off and is
    /// retried like any other discovered peer's; they are never trusted
    /// ([`Policy::handle_stored_peers`]).
    pub fn stored_peers(&mut self, peers: Vec<(PeerId, Vec<NetworkAddress>)>) -> &mut Self {
        self.metrics
            .record_discovery_update(DiscoverySource::Stored);
        if self.policy.handle_stored_peers(peers) {
            self.trusted_peers.replace(self.policy.trusted_peers());
        }
        record(&self.metrics, &self.policy, Outcome::default());
        self
    }

    /// Seeds the random number generator that picks peers on non-validator networks and
    /// draws backoff jitter, for reproducible tests. By default it is seeded from the OS.
    pub fn rng_seed(&mut self, seed: u64) -> &mut Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Reads round-trip times and scores from `scores` (the facade's measurements, or a
    /// persistent store): dial candidates are weighted by RTT, and above the target range
    /// the lowest-scoring inbound peer is closed first. Without it nothing is measured.
    pub fn scores(&mut self, scores: Arc<dyn PeerScores>) -> &mut Self {
        self.policy.set_scores(scores);
        self
    }

    /// The policy, to inspect before [`run`](Self::run).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs the manager until `shutdown` is cancelled, every [`ConnectivityHandle`] is
    /// dropped, or the action receiver is dropped.
    ///
    /// Cancel safe in the sense that dropping the future stops the manager cleanly (it holds
    /// no state anyone else depends on); the policy's state is lost with it.
    #[tracing::instrument(
        name = "connectivity_manager",
        skip_all,
        fields(network = self.config.network.as_str())
    )]
    pub async fn run(mut self, shutdown: CancellationToken) -> ExitReason {
        let mut check = tokio::time::interval(self.config.connectivity_check_interval);
        // After a stall, check once and then keep the period; never burst.
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut file_reload = self.file.as_ref().map(|_| {
            let mut reload = tokio::time::interval(self.config.discovery_file_interval);
            reload.set_missed_tick_behavior(MissedTickBehavior::Delay);
            reload
        });
        // The on-chain set as it is now; changes come through the select below.
        if let Some(on_chain_rx) = &mut self.on_chain_rx {
            let view = on_chain_rx.borrow_and_update().clone();
            self.apply_discovery(DiscoverySource::OnChain, view);
        }
        info!("connectivity manager started");

        let reason = loop {
            // While congested only the periodic check polls the policy, so a full action
            // queue cannot make us spin on an expired deadline.
            let deadline = if self.congested {
                None
            } else {
                self.policy.next_deadline()
            };
            tokio::select! {
                // Biased: shutdown first, then facts about existing connections before new
                // discovery input, then timers. Every future below is cancel safe.
                biased;

                // Shutdown: start nothing new.
                () = shutdown.cancelled() => break ExitReason::Shutdown,

                // Connection events from the facade.
                event = self.connection_events_rx.recv() => match event {
                    Some(event) => self.handle_event(event),
                    None => break ExitReason::HandlesDropped,
                },

                // A new on-chain validator set.
                changed = on_chain_changed(&mut self.on_chain_rx) => {
                    self.handle_on_chain_changed(changed.is_ok());
                }

                // Time to re-read the discovery file (also at start). The read is awaited
                // here: one small file, and no other arm is urgent enough to interrupt it.
                () = tick(&mut file_reload) => {
                    if let Some(file) = &mut self.file
                        && let Some(view) = file.reload().await
                    {
                        self.apply_discovery(DiscoverySource::File, view);
                    }
                }

                // A backoff ended.
                () = sleep_until(deadline) => {}

                // Periodic connectivity check (also at start); ends a congestion.
                _ = check.tick() => self.congested = false,
            }
            if !self.congested
                && let Err(reason) = self.send_actions()
            {
                break reason;
            }
        };
        info!(?reason, "connectivity manager stopped");
        reason
    }

    fn handle_event(&mut self, event: PeerEvent) {
        let now = now();
        let outcome = match event {
            PeerEvent::Connected { peer_id, origin } => {
                self.policy.handle_connected(peer_id, origin)
            }
            PeerEvent::Disconnected { peer_id } => self.policy.handle_disconnected(peer_id, now),
            PeerEvent::DialResult {
                peer_id,
                result,
                detail,
            } => {
                let outcome = self.policy.handle_dial_result(peer_id, result, now);
                if let Some(detail) = detail.filter(|_| result.is_err())
                    && let Some(suppressed) = self.dial_log.allow(Instant::now())
                {
                    match outcome.retry_in {
                        Some(delay) => warn!(
                            peer = %peer_id,
                            suppressed,
                            "{detail}; retry in {} s",
                            delay.as_secs_f64().ceil()
                        ),
                        None => warn!(peer = %peer_id, suppressed, "{detail}; not retried"),
                    }
                }
                outcome
            }
            PeerEvent::Exchanged { from, peers } => {
                if self.exchanged.learn(peers) {
                    debug!(%from, known = self.exchanged.len(), "peers learned through peer exchange");
                    let view = self.exchanged.view();
                    self.apply_discovery(DiscoverySource::PeerExchange, view);
                }
                Outcome::default()
            }
            PeerEvent::RemoteRefusal { peer_id, refusal } => {
                let waits = self.policy.handle_remote_refusal(peer_id, refusal, now);
                self.metrics.record_remote_refusal(refusal, waits);
                Outcome::default()
            }
        };
        record(&self.metrics, &self.policy, outcome);
    }

    /// The on-chain watch changed (`true`) or its sender is gone (`false`).
    fn handle_on_chain_changed(&mut self, changed: bool) {
        let Some(on_chain_rx) = &mut self.on_chain_rx else {
            return;
        };
        if changed {
            let view = on_chain_rx.borrow_and_update().clone();
            self.apply_discovery(DiscoverySource::OnChain, view);
        } else {
            // No more updates: the last on-chain set stays in force.
            debug!("on-chain updates ended; keeping the last set");
            self.on_chain_rx = None;
        }
    }

    fn apply_discovery(&mut self, source: DiscoverySource, view: HashMap<PeerId, DiscoveredPeer>) {
        self.metrics.record_discovery_update(source);
        if self.policy.handle_discovery_update(source, view) {
            // The IPs first: whoever sees a peer in the trusted set sees its IPs too.
            self.trusted_ips
                .send_replace(self.policy.discovered().trusted_ips());
            self.trusted_peers.replace(self.policy.trusted_peers());
        }
        record(&self.metrics, &self.policy, Outcome::default());
    }

    /// Polls the policy and queues its actions without waiting. Returns the exit reason if
    /// the facade is gone.
    fn send_actions(&mut self) -> Result<(), ExitReason> {
        let actions = self.policy.poll_actions(now(), &mut self.rng);
        for action in &actions {
            match action {
                Action::CancelDial { .. } => self.metrics.record_dial(DialOutcome::Cancelled),
                Action::Disconnect {
                    reason: CloseReason::OverTarget,
                    ..
                } => self.metrics.record_over_target_disconnect(),
                _ => {}
            }
        }
        record(&self.metrics, &self.policy, Outcome::default());
        let mut actions = actions.into_iter();
        while let Some(action) = actions.next() {
            match self.actions_tx.try_send(action) {
                Ok(()) => {}
                Err(TrySendError::Full(action)) => {
                    // The facade is behind. Drop this action and the rest of this poll, undo
                    // them in the policy (counted here), and decide again at the next check.
                    self.drop_action(&action);
                    let mut dropped = 1;
                    for action in actions.by_ref() {
                        self.drop_action(&action);
                        dropped += 1;
                    }
                    warn!(
                        dropped,
                        capacity = self.config.actions_capacity,
                        "action queue full; retrying at the next connectivity check"
                    );
                    self.congested = true;
                }
                Err(TrySendError::Closed(_)) => return Err(ExitReason::ActionsReceiverDropped),
            }
        }
        Ok(())
    }
}

impl ConnectivityManager {
    /// Undoes an action that never reached the facade, and counts it.
    fn drop_action(&mut self, action: &Action) {
        self.metrics.record_action_dropped(action.kind());
        self.policy.handle_action_dropped(action);
        record(&self.metrics, &self.policy, Outcome::default());
    }
}

/// Counts `outcome` and sets the gauges from the policy's state after the report.
pub(crate) fn record(metrics: &Metrics, policy: &Policy, outcome: Outcome) {
    metrics.record_outcome(outcome);
    metrics.set_eligible_peers(policy.eligible_count());
    for provenance in [
        Provenance::Direct,
        Provenance::Stored,
        Provenance::Indirect,
        Provenance::Verified,
    ] {
        metrics.set_discovered_peers(provenance, policy.provenance_count(provenance));
    }
    for origin in [ConnectionOrigin::Inbound, ConnectionOrigin::Outbound] {
        metrics.set_connected_peers(origin, policy.connected_count(origin));
    }
}

/// The current time on tokio's clock (paused in tests), as the policy's `Instant`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Waits for a change of the on-chain set, or forever without a source. Cancel safe
/// (`watch::Receiver::changed` is).
async fn on_chain_changed(
    on_chain_rx: &mut Option<watch::Receiver<HashMap<PeerId, DiscoveredPeer>>>,
) -> Result<(), watch::error::RecvError> {
    match on_chain_rx {
        Some(on_chain_rx) => on_chain_rx.changed().await,
        None => future::pending().await,
    }
}

/// Waits for the next tick, or forever without an interval. Cancel safe
/// (`Interval::tick` is).
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one. Cancel safe.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => future::pending().await,
    }
}
