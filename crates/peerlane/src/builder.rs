//! [`NetworkBuilder`]: registers the applications of one network; its
//! [`build`](NetworkBuilder::build) starts the network's tasks (listener, peer manager,
//! connectivity manager, health checker, chain announcer, peer exchange, routing) and returns
//! the [`Network`] handle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use connectivity_manager::{ConnectivityManager, DiscoveredPeer, PeerScores};
use netcore::{NetworkAddress, PeerId};
use noise::{BannedPeers, NoiseUpgrader, TrustedPeers};
use peer::InboundBudget;
use prometheus_client::registry::Registry;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{HandshakeMsg, NetworkId, ProtocolId, ProtocolIdSet};

use crate::admission::IpBans;
use crate::chain_announcer::{self, ChainAnnouncer};
use crate::chain_status::ChainStatus;
use crate::chain_throttle::AnnounceThrottle;
use crate::client::{ClientNetwork, NetworkClient};
use crate::config::{Identity, NetworkConfig};
use crate::error::Error;
use crate::events::{self, AppQueue, NetworkEvents};
use crate::extension_config::NOTICE_WRITE_TIMEOUT_MS;
use crate::health::{self, HealthChecker, HealthCheckerMsg};
use crate::intake::Intake;
use crate::listener::{Listener, ListenerLimits};
use crate::metrics::Metrics;
use crate::network::Network;
use crate::peer_exchange::{self, PeerExchange, PeerExchangeMsg};
use crate::peer_manager::{
    BanList, Channels, Parts, PeerManager, PeerManagerHandle, RefusalNotices, drive_connectivity,
};
use crate::peers::PeersAndMetadata;
use crate::queue::QueueConfig;
use crate::record_events::RecordEvents;
use crate::router::{self, Router};
use crate::routing::storage::ComponentStorage;
use crate::routing::{Command as RoutingCommand, ROUTING_COMMAND_QUEUE, RoutingHandle};
use crate::routing_actor::{self, RoutingActor, VerifyOn};
use crate::scores::MeasuredScores;
use crate::transport::{AptosNetTransport, HANDSHAKE_VERSION, TransportKind, UpgradeContext};

/// The warnings about refused banned peers: a few per minute whatever the remote retries.
static BANNED_LOG: netcore::SharedLogLimiter =
    netcore::SharedLogLimiter::new(3, Duration::from_secs(60));
/// Mixed into [`NetworkBuilder::rng_seed`] for the health checker, so that it does not draw
/// the same numbers as the connectivity manager.
const HEALTH_RNG_STREAM: u64 = 0x6865_616c_7468;
/// Mixed into [`NetworkBuilder::rng_seed`] for routing's signatures and nonces.
const ROUTING_RNG_STREAM: u64 = 0x0072_6f75_7469_6e67;
/// Mixed into [`NetworkBuilder::rng_seed`] for the first routed request id.
const ROUTED_REQUEST_RNG_STREAM: u64 = 0x7265_7175_6573_7473;
/// Mixed into [`NetworkBuilder::rng_seed`] for the peers peer exchange samples.
const EXCHANGE_RNG_STREAM: u64 = 0x6578_6368_616e_6765;

/// Builds one network of a node (validator, VFN or public).
///
/// 1. [`new`](Self::new) with the network's config, the transport and a metrics registry;
/// 2. [`add_application`](Self::add_application) once per application, each with its own
///    protocols, getting its [`NetworkClient`] and [`NetworkEvents`];
/// 3. [`build`](Self::build) starts listening and returns the [`Network`] handle.
///
/// The handshake message offers exactly the protocols the applications registered, and
/// `HealthCheckerRpc` (5) for the network's health checker. With
/// [`HealthCheckConfig::enabled`](crate::HealthCheckConfig::enabled) off the checker sends no
/// pings but still answers the peers' pings, unless an application registered protocol 5
/// itself (it may then).
///
/// Every network runs a [`ConnectivityManager`] configured by
/// [`NetworkConfig::connectivity`]: it dials the seeds (and the on-chain set, see
/// [`on_chain_updates`](Self::on_chain_updates)), redials lost peers with backoff, closes
/// connections to peers that left the trusted set, and owns the trusted set's contents.
pub struct NetworkBuilder {
    config: NetworkConfig,
    transport: TransportKind,
    identity: Identity,
    trusted: TrustedPeers,
    peers: PeersAndMetadata,
    metrics: Metrics,
    peer_metrics: peer::Metrics,
    noise_metrics: noise::Metrics,
    connectivity_metrics: connectivity_manager::Metrics,
    /// The on-chain validator set, if the node follows one.
    on_chain: Option<watch::Receiver<HashMap<PeerId, DiscoveredPeer>>>,
    /// The peers a store kept from earlier runs, best first.
    stored: Vec<(PeerId, Vec<NetworkAddress>)>,
    /// Every registered protocol, with the queue of the application it belongs to.
    apps: BTreeMap<ProtocolId, AppQueue>,
    channels: Channels,
    manager_handle: PeerManagerHandle,
    /// The health checker's client and events, registered on `HealthCheckerRpc` when it is
    /// enabled.
    health: Option<(
        NetworkClient<HealthCheckerMsg>,
        NetworkEvents<HealthCheckerMsg>,
    )>,
    /// Sends our chain status on protocol 65 (registered for every network; the inbound side
    /// is read by the router's [`Intake`]).
    chain_client: NetworkClient<ChainStatus>,
    /// Our chain status, as the node sets it.
    chain_tx: watch::Sender<Option<ChainStatus>>,
    /// Peer exchange's events, registered on `PeerExchangeRpc` outside the validator network.
    exchange: Option<NetworkEvents<PeerExchangeMsg>>,
    /// Where the connectivity manager reads RTTs and scores; `None`: [`MeasuredScores`].
    scores: Option<Arc<dyn PeerScores>>,
    /// Seeds the health checker's and connectivity manager's random choices; `None`: the OS.
    rng_seed: Option<u64>,
    /// Routing, when it runs on this network: its signing key and its command queue (the
    /// handle is in every client, so that they can send routed messages).
    routing: Option<RoutingSetup>,
    /// Where pruned routing components go; `None`: memory.
    routing_store: Option<store::ComponentTable>,
    /// Where routing checks edge signatures.
    verify_on: VerifyOn,
    /// Where routing reads the time of day.
    wall_clock: fn() -> SystemTime,
}

/// Routing's parts made before [`NetworkBuilder::build`].
struct RoutingSetup {
    key: routing::SigningKey,
    handle: RoutingHandle,
    commands: mpsc::Receiver<RoutingCommand>,
}

impl NetworkBuilder {
    /// A builder for the network `config` describes, over `transport`, registering its
    /// metrics (and the peer and Noise layers' metrics) into `registry` under the label
    /// `network=<network id>`. Connection notifications go to a [`PeersAndMetadata`] of its
    /// own.
    ///
    /// Fails with [`Error::InvalidConfig`] or [`Error::InvalidPrivateKey`] for a config that
    /// breaks a rule ([`NetworkConfig::validate`]).
    pub fn new(
        config: NetworkConfig,
        transport: TransportKind,
        registry: &mut Registry,
    ) -> Result<Self, Error> {
        let peers = PeersAndMetadata::new(config.notification_capacity);
        let registry = network_registry(registry, config.network_id);
        peers.register_metrics(registry);
        Self::build_with(config, transport, registry, peers)
    }

    /// Like [`new`](Self::new), but recording connections in `peers`, which several networks
    /// may share so that one subscription sees them all. Its own metric
    /// (`peerlane_notifications_lost_total`) is registered by whoever created it
    /// ([`PeersAndMetadata::register_metrics`]).
    pub fn with_peers_and_metadata(
        config: NetworkConfig,
        transport: TransportKind,
        registry: &mut Registry,
        peers: PeersAndMetadata,
    ) -> Result<Self, Error> {
        let registry = network_registry(registry, config.network_id);
        Self::build_with(config, transport, registry, peers)
    }

    fn build_with(
        config: NetworkConfig,
        transport: TransportKind,
        registry: &mut Registry,
        peers: PeersAndMetadata,
    ) -> Result<Self, Error> {
        config.validate()?;
        let identity = match &config.identity {
            Some(identity) => identity.clone(),
            None => {
                let identity = Identity::generate(&mut rand::rngs::OsRng);
                tracing::info!(
                    network = %config.network_id,
                    peer_id = %identity.peer_id(),
                    "no identity configured, using a fresh key for this run"
                );
                identity
            }
        };
        let trusted: TrustedPeers = config.trusted_peers().into_iter().collect();
        let metrics = Metrics::register(registry);
        let peer_metrics = peer::Metrics::register(registry);
        let noise_metrics = noise::Metrics::register(registry);
        let connectivity_metrics = connectivity_manager::Metrics::register(registry);
        // The transport and router are only known at build time; the peer manager's channels
        // are made now so that clients can hold its handle.
        let (channels, manager_handle) = Channels::new();
        let (chain_tx, _) = watch::channel(None);
        let routing = routing_setup(&config, &identity);
        let chain_client = NetworkClient::new(
            config.network_id,
            ClientNetwork {
                peers: peers.clone(),
                manager: manager_handle.clone(),
                direct_send: vec![ProtocolId::CHAIN_STATUS],
                rpc: Vec::new(),
                routing: None,
            },
        );
        let mut builder = Self {
            config,
            transport,
            identity,
            trusted,
            peers,
            metrics,
            peer_metrics,
            noise_metrics,
            connectivity_metrics,
            on_chain: None,
            stored: Vec::new(),
            apps: BTreeMap::new(),
            channels,
            manager_handle,
            health: None,
            chain_client,
            chain_tx,
            exchange: None,
            scores: None,
            rng_seed: None,
            routing,
            routing_store: None,
            verify_on: VerifyOn::BlockingPool,
            wall_clock: SystemTime::now,
        };
        // peerlane's own direct sends, advertised by every node so that a peer knows it may
        // send them; what arrives on them is read by the router's intake, never queued.
        let mut own = vec![ProtocolId::PEERLANE_DISCONNECT, ProtocolId::CHAIN_STATUS];
        if builder.routing.is_some() {
            own.extend([ProtocolId::ROUTING_SYNC, ProtocolId::ROUTED]);
        }
        for protocol in own {
            let (queue_tx, _) = events::app_queue(health::QUEUE);
            builder.apps.insert(protocol, queue_tx);
        }
        if !builder.config.network_id.is_validator_network() {
            let (_, events) = builder.add_application::<PeerExchangeMsg>(
                [],
                [ProtocolId::PEER_EXCHANGE_RPC],
                peer_exchange::QUEUE,
            )?;
            builder.exchange = Some(events);
        }
        // Registered first, so that an application asking for its protocol is refused.
        if builder.config.health_check.enabled {
            builder.health = Some(builder.add_application(
                [],
                [ProtocolId::HEALTH_CHECKER_RPC],
                health::QUEUE,
            )?);
        }
        Ok(builder)
    }

    /// Registers an application that sends and receives `M` on the given protocols: direct
    /// sends on `direct_send_protocols`, RPCs on `rpc_protocols`, each list most preferred
    /// first. Inbound messages on any of these protocols go to the returned events, through a
    /// queue per (peer, protocol) configured by `queue_config` (usually
    /// [`NetworkConfig::inbound_queue`]).
    ///
    /// Fails with [`Error::ProtocolAlreadyRegistered`] if another application has one of the
    /// protocols (a protocol belongs to one application; `HealthCheckerRpc` belongs to the
    /// health checker unless it is disabled); nothing is registered then.
    pub fn add_application<M>(
        &mut self,
        direct_send_protocols: impl IntoIterator<Item = ProtocolId>,
        rpc_protocols: impl IntoIterator<Item = ProtocolId>,
        queue_config: QueueConfig,
    ) -> Result<(NetworkClient<M>, NetworkEvents<M>), Error>
    where
        M: Serialize + DeserializeOwned + Send + 'static,
    {
        let direct_send: Vec<ProtocolId> = dedup(direct_send_protocols);
        let rpc: Vec<ProtocolId> = dedup(rpc_protocols);
        let mut protocols = direct_send.clone();
        protocols.extend(rpc.iter().copied().filter(|p| !direct_send.contains(p)));
        if let Some(protocol) = protocols.iter().find(|p| self.apps.contains_key(p)) {
            return Err(Error::ProtocolAlreadyRegistered {
                protocol: *protocol,
            });
        }
        let (queue_tx, queue_rx) = events::app_queue(queue_config);
        for protocol in &protocols {
            self.apps.insert(*protocol, queue_tx.clone());
        }
        let network_id = self.config.network_id;
        let client = NetworkClient::new(
            network_id,
            ClientNetwork {
                peers: self.peers.clone(),
                manager: self.manager_handle.clone(),
                direct_send,
                rpc,
                routing: self.routing.as_ref().map(|setup| setup.handle.clone()),
            },
        );
        let events = NetworkEvents::new(network_id, queue_rx, self.metrics.clone());
        Ok((client, events))
    }

    /// The PeerId this network will go by.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The trusted set, shared with the running network: changes take effect on the next
    /// handshake. Before [`build`](Self::build) it holds the seeds.
    ///
    /// The network's connectivity manager owns its contents: at build, and on every discovery
    /// change, it replaces them with the merged discovered set (seeds, discovery file, on-chain
    /// set), so entries added here by hand do not last. Add peers through a discovery source
    /// instead.
    pub fn trusted_peers(&self) -> &TrustedPeers {
        &self.trusted
    }

    /// Follows the on-chain validator set: the node sends each new set on the `watch`
    /// channel, and the connectivity manager dials it (the highest-priority discovery source)
    /// and trusts it. Without it there is no on-chain source.
    pub fn on_chain_updates(
        &mut self,
        on_chain_rx: watch::Receiver<HashMap<PeerId, DiscoveredPeer>>,
    ) -> &mut Self {
        self.on_chain = Some(on_chain_rx);
        self
    }

    /// Gives the connectivity manager the peers a store kept from earlier runs, best first
    /// (say, long-lived outbound connections, then by score), each with its addresses best
    /// first: they form its stored-peers discovery source, below the seeds, dialed in this
    /// order and retried with backoff like any discovered peer, but never trusted for it
    /// (see [`ConnectivityManager::stored_peers`]).
    pub fn stored_peers(&mut self, peers: Vec<(PeerId, Vec<NetworkAddress>)>) -> &mut Self {
        self.stored = peers;
        self
    }

    /// Makes the connectivity manager read round-trip times and scores from `scores` (a
    /// persistent peer store, say) instead of the network's own measurements (the last
    /// health-check RTT of each peer, remembered after it disconnects; see
    /// `docs/configuration.md`, `target_peers_high`, for the score).
    pub fn peer_scores(&mut self, scores: Arc<dyn PeerScores>) -> &mut Self {
        self.scores = Some(scores);
        self
    }

    /// Keeps the edges routing prunes (unreachable for `routing.prune_unreachable_after_ms`)
    /// in `table`, the node's on-disk store, rather than in memory (at most
    /// `MAX_PRUNED_EDGES_IN_MEMORY` edges there).
    pub fn routing_store(&mut self, table: store::ComponentTable) -> &mut Self {
        self.routing_store = Some(table);
        self
    }

    /// Seeds the random choices of the network's own tasks (the health checker's ping
    /// nonces, the connectivity manager's peer picks and backoff jitter, the peers peer
    /// exchange offers, routing's nonces and request ids), so that a run on
    /// a deterministic simulated network replays exactly. By default they are seeded from the
    /// OS.
    pub fn rng_seed(&mut self, seed: u64) -> &mut Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Marks the network as running on a deterministic simulator that runs every host on one
    /// thread, so that a run replays from its seed:
    /// - the network's CPU-heavy work (routing's edge signature checks) runs as tasks of the
    ///   runtime, not on tokio's blocking pool, whose threads finish in wall-clock time while
    ///   the simulated clock moves on (whether a check is done by the next step would depend
    ///   on the OS scheduler);
    /// - routing reads the time of day from `wall_clock` (the simulator's), not the OS: edge
    ///   nonces and the ages of tombstones and unreachable edges follow simulated time.
    ///
    /// On a real runtime never call it: a check would hold a worker for its duration (about
    /// 43 µs per edge).
    pub fn on_simulator(&mut self, wall_clock: fn() -> SystemTime) -> &mut Self {
        self.verify_on = VerifyOn::Runtime;
        self.wall_clock = wall_clock;
        self
    }

    /// Starts listening on the configured address, and the listener, peer manager,
    /// connectivity manager (with the task that carries out its actions) and (unless disabled)
    /// health checker tasks.
    ///
    /// Fails with [`Error::Listen`] if the address cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(mut self) -> Result<Network, Error> {
        // With our own pinging off, the peers' pings are still answered (an AptosNet peer
        // disconnects a node that does not answer its 4th ping), unless an application took
        // the protocol for itself.
        if self.health.is_none() && !self.apps.contains_key(&ProtocolId::HEALTH_CHECKER_RPC) {
            self.health =
                Some(self.add_application([], [ProtocolId::HEALTH_CHECKER_RPC], health::QUEUE)?);
        }
        let Self {
            config,
            transport,
            identity,
            trusted,
            peers,
            metrics,
            peer_metrics,
            noise_metrics,
            connectivity_metrics,
            on_chain,
            stored,
            apps,
            channels,
            manager_handle,
            health,
            chain_client,
            chain_tx,
            exchange,
            scores,
            rng_seed,
            routing,
            routing_store,
            verify_on,
            wall_clock,
        } = self;
        let network_id = config.network_id;
        let peer_id = identity.peer_id();
        let protocols: ProtocolIdSet = apps.keys().copied().collect();
        let handshake = HandshakeMsg::new(config.chain_id, network_id, protocols);
        // Created before the upgrader, so that Noise refuses a banned peer's handshake before
        // any Diffie-Hellman.
        let banned = BanList::default();
        let noise = NoiseUpgrader::new(
            peer_id,
            identity.private_key().clone(),
            config.handshake_auth_mode(trusted.clone()),
            noise_metrics.clone(),
        )
        .with_banned_peers(refuse_banned(banned.clone()));
        let context = Arc::new(UpgradeContext::new(noise, handshake, trusted.clone()));
        let transport = Arc::new(AptosNetTransport::new(
            &transport,
            context,
            config.setup_timeout,
        ));
        let (incoming, bound) = transport.listen_on(config.listen_address.clone())?;
        let listen_address = bound
            .with_noise_and_handshake(identity.public_key(), HANDSHAKE_VERSION)
            .map_err(|source| Error::Listen {
                addr: config.listen_address.clone(),
                source,
            })?;

        // Replaces the trusted set with the merged discovered set (the seeds, so far) before
        // anyone can connect.
        let (mut connectivity, connectivity_handle, actions_rx) = ConnectivityManager::new(
            peer_id,
            config.connectivity_config(),
            trusted.clone(),
            connectivity_metrics.clone(),
        )
        .map_err(|source| Error::InvalidConfig {
            field: "connectivity",
            reason: "the connectivity manager config breaks a rule",
            source: Some(Box::new(source)),
        })?;
        if let Some(on_chain_rx) = on_chain {
            connectivity.on_chain_updates(on_chain_rx);
        }
        if !stored.is_empty() {
            connectivity.stored_peers(stored);
        }
        connectivity.scores(
            scores.unwrap_or_else(|| Arc::new(MeasuredScores::new(network_id, peers.clone()))),
        );
        // Two streams from one seed: the connectivity manager's and the health checker's.
        if let Some(seed) = rng_seed {
            connectivity.rng_seed(seed);
        }

        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let record_events = RecordEvents::new();
        let banned_ips = IpBans::new(config.banned_ips.iter().copied());
        // One budget for the whole network: every peer's messages count against it.
        let budget = (config.peer.inbound_byte_budget > 0)
            .then(|| InboundBudget::new(config.peer.inbound_byte_budget, &peer_metrics));
        let intake = Intake::new(
            network_id,
            peers.clone(),
            metrics.clone(),
            Some(connectivity_handle.clone()),
            chain_tx.subscribe(),
        );
        let (intake, routing_inbound) = match &routing {
            Some(_) => {
                let (inbound_tx, inbound_rx) = mpsc::channel(config.routing.max_pending_messages);
                (
                    intake.with_routing(inbound_tx, metrics.routing().clone()),
                    Some(inbound_rx),
                )
            }
            None => (intake, None),
        };
        let router = Arc::new(Router::new(apps, metrics.clone(), budget).with_intake(intake));
        let routing_handle = routing.as_ref().map(|setup| setup.handle.clone());
        if let (Some(setup), Some(inbound)) = (routing, routing_inbound) {
            let now = routing::Now {
                instant: tokio::time::Instant::now().into_std(),
                unix_ms: routing_actor::unix_ms(wall_clock()),
            };
            let seed = rng_seed.map_or_else(rand::random, |seed| seed ^ ROUTING_RNG_STREAM);
            let node = routing::RoutingNode::new(setup.key, config.routing.clone(), seed, now);
            // Subscribes to connection notifications before the peer manager can register
            // anyone.
            let actor = RoutingActor::new(routing_actor::Parts {
                network_id,
                node,
                config: config.routing.clone(),
                peers: peers.clone(),
                notifications: peers.subscribe(),
                router: router.clone(),
                banned: banned.clone(),
                record_events: record_events.clone(),
                manager: manager_handle.clone(),
                metrics: metrics.routing().clone(),
                inbound,
                commands: setup.commands,
                handle: setup.handle,
                storage: ComponentStorage::new(routing_store),
                shutdown: shutdown.child_token(),
                tracker: tracker.clone(),
                verify_on,
                wall_clock,
                // Another stream of the same seed: the node's rng is not shared with the actor.
                first_request_id: rng_seed
                    .map_or_else(rand::random, |seed| seed ^ ROUTED_REQUEST_RNG_STREAM),
            });
            tracker.spawn(actor.run());
        }
        // Subscribed before the peer manager can register anyone, so no LostPeer is missed.
        let purge =
            router::purge_lost_peers(router.clone(), peers.subscribe(), peers.clone(), network_id);
        let listener = Listener::new(
            incoming,
            channels.new_connections_tx(),
            ListenerLimits {
                max_pending: config.max_pending_inbound_upgrades.get(),
                admission: config.admission,
                trusted_ips: connectivity.trusted_ips(),
                bans: banned_ips.clone(),
            },
            metrics.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        let parts = Parts {
            network_id,
            own_peer_id: peer_id,
            peer_config: Arc::new(config.peer.clone()),
            max_inbound_connections: config.max_inbound_connections,
            max_inbound_per_ip: config.admission.max_inbound_per_ip,
            max_inbound_per_prefix: config.admission.max_inbound_per_prefix,
            transport,
            peers: peers.clone(),
            router,
            peer_metrics: Arc::new(peer_metrics.clone()),
            stream_budget: Arc::new(peer::StreamBudget::new(
                config.max_stream_bytes_in_flight,
                &peer_metrics,
            )),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            connectivity: Some(connectivity_handle.clone()),
            banned: banned.clone(),
            trusted: trusted.clone(),
            whitelist: config.connectivity.whitelisted().iter().copied().collect(),
            record_events: record_events.clone(),
            notices: RefusalNotices::new(
                config.extensions.max_pending_notices,
                Duration::from_millis(NOTICE_WRITE_TIMEOUT_MS),
                metrics.clone(),
                tracker.clone(),
            ),
        };
        if let Some((client, events)) = health {
            let health_parts = health::Parts {
                network_id,
                config: config.health_check,
                client,
                events,
                peers: peers.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.child_token(),
            };
            // Subscribes to connection notifications before the peer manager can register
            // anyone.
            let rng = match rng_seed {
                Some(seed) => StdRng::seed_from_u64(seed ^ HEALTH_RNG_STREAM),
                None => StdRng::from_entropy(),
            };
            let checker = HealthChecker::new(health_parts, rng);
            tracker.spawn(checker.run());
        }
        // Subscribes to connection notifications before the peer manager can register anyone.
        let announcer = ChainAnnouncer::new(chain_announcer::Parts {
            network_id,
            client: chain_client,
            peers: peers.clone(),
            metrics: metrics.clone(),
            local: chain_tx.subscribe(),
            throttle: AnnounceThrottle::new(config.extensions.chain_status_interval),
            shutdown: shutdown.child_token(),
        });
        tracker.spawn(announcer.run());
        if let Some(events) = exchange {
            let exchange = PeerExchange::new(
                peer_exchange::Parts {
                    network_id,
                    own_peer_id: peer_id,
                    config: config.extensions.clone(),
                    ask: network_id == NetworkId::Public && config.extensions.peer_exchange,
                    events,
                    peers: peers.clone(),
                    metrics: metrics.clone(),
                    connectivity: Some(connectivity_handle.clone()),
                    shutdown: shutdown.child_token(),
                },
                rng_seed.map_or_else(StdRng::from_entropy, |seed| {
                    StdRng::seed_from_u64(seed ^ EXCHANGE_RNG_STREAM)
                }),
            );
            tracker.spawn(exchange.run());
        }
        tracker.spawn(PeerManager::new(parts, channels).run());
        let purge_shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = purge_shutdown.cancelled() => {}
                () = purge => {}
            }
        });
        tracker.spawn(connectivity.run(shutdown.clone()));
        tracker.spawn(drive_connectivity(
            actions_rx,
            connectivity_handle,
            manager_handle.clone(),
            record_events.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(listener.run());
        tracing::info!(%network_id, %peer_id, %listen_address, "network started");

        Ok(Network {
            network_id,
            peer_id,
            listen_address,
            peers,
            trusted,
            metrics,
            peer_metrics,
            connectivity_metrics,
            noise_metrics,
            manager: manager_handle,
            banned,
            banned_ips,
            record_events,
            chain_tx,
            routing: routing_handle,
            tracker,
            _cancel_on_drop: shutdown.clone().drop_guard(),
            shutdown,
        })
    }
}

impl fmt::Debug for NetworkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkBuilder")
            .field("network_id", &self.config.network_id)
            .field("peer_id", &self.identity.peer_id())
            .field("protocols", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Routing's parts, if the network runs it: `routing.enabled` and an identity whose PeerId
/// is its key's (edges are verified against PeerIds read as keys; a network with another
/// PeerId cannot sign edges others can check, so it runs without routing, logged).
fn routing_setup(config: &NetworkConfig, identity: &Identity) -> Option<RoutingSetup> {
    if !config.routing.enabled {
        return None;
    }
    let key = routing::SigningKey::from_x25519_private_key(identity.private_key().to_bytes());
    if key.peer_id() != identity.peer_id() {
        tracing::warn!(
            network = %config.network_id,
            peer_id = %identity.peer_id(),
            "routing off: this network's PeerId is not the one its key derives"
        );
        return None;
    }
    let (commands_tx, commands) = mpsc::channel(ROUTING_COMMAND_QUEUE);
    Some(RoutingSetup {
        key,
        handle: RoutingHandle::new(commands_tx),
        commands,
    })
}

/// Noise's check of an inbound handshake's peer against `banned`, warning (rate-limited)
/// about each refusal.
fn refuse_banned(banned: BanList) -> BannedPeers {
    BannedPeers::new(move |peer_id| {
        let Some(ban) = banned.describe(*peer_id) else {
            return false;
        };
        // Warn on the side that can lift the ban: the remote only sees a closed socket.
        if let Some(suppressed) = BANNED_LOG.allow(std::time::Instant::now()) {
            tracing::warn!(
                peer = %peer_id,
                suppressed,
                "inbound connection from {peer_id} refused: banned {ban} (DELETE /bans/{peer_id} lifts it)"
            );
        }
        true
    })
}

/// `registry`'s sub-registry for `network_id`.
fn network_registry(registry: &mut Registry, network_id: NetworkId) -> &mut Registry {
    registry.sub_registry_with_label(("network".into(), network_id.as_str().into()))
}

/// `protocols` without repeats, in order.
fn dedup(protocols: impl IntoIterator<Item = ProtocolId>) -> Vec<ProtocolId> {
    let mut unique = Vec::new();
    for protocol in protocols {
        if !unique.contains(&protocol) {
            unique.push(protocol);
        }
    }
    unique
}
