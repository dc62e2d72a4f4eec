//! peerlane: the facade applications link against. It sets up one network of a node
//! (validator, VFN or public) over the layers below (`netcore` transports, `noise`, `wire`,
//! `peer`) and gives each application a typed client and a typed event stream.
//!
//! # How data flows
//!
//! ```text
//! application ── NetworkClient<M>: pick protocol, encode ──► PeerHandle (peer crate) ──► wire
//! application ◄── NetworkEvents<M>: decode ◄── keyed queue per (peer, protocol) ◄── Router
//!                                                                       ▲ InboundRouter::route
//!                  Intake (64, 65; 67, 68 ─► RoutingActor) ◄──────────────┤ before any queue
//! NetworkBuilder::build ─► Listener ──┐                                 │
//!                          dial ──────┴─► PeerManager ── peer::spawn ───┘
//!                                            └─► PeersAndMetadata ─► NewPeer / LostPeer
//!                                                                      │
//!                          HealthChecker ◄── who to ping ──────────────┘
//!                            └─ Ping/Pong over its own NetworkClient / NetworkEvents (protocol 5)
//! ```
//!
//! 1. A [`NetworkBuilder`] takes a [`NetworkConfig`], a [`TransportKind`] and a metrics
//!    registry. Each application registers its protocols with
//!    [`add_application`](NetworkBuilder::add_application) and gets a [`NetworkClient`] and a
//!    [`NetworkEvents`]; [`build`](NetworkBuilder::build) starts the network's tasks and
//!    returns the [`Network`] handle, through which the node dials, disconnects, bans peers
//!    and IPs, sets its chain status, reads the counters and shuts the network down.
//! 2. Connections, dialed ([`Network::dial`]) or accepted, are set up by the AptosNet upgrade
//!    (Noise IK, then the handshake message) and handed to the peer manager, which resolves
//!    simultaneous dials, enforces the inbound limit, spawns a peer (`peer::spawn`) per connection and
//!    records it in [`PeersAndMetadata`]. Before an accepted socket's set-up starts, the
//!    listener checks its IP ([`AdmissionConfig`], [`NetworkConfig::banned_ips`]): banned IPs
//!    and prefixes, a per-IP accept rate, per-IP and per-prefix caps on set-ups in progress.
//! 3. [`NetworkClient`] picks, per peer, the first of the application's protocols the peer
//!    negotiated, encodes with that protocol's encoding (BCS, JSON, LZ4) and sends.
//! 4. Inbound messages go, without waiting, into the application's keyed queue (one
//!    bounded queue per peer and protocol, popped round-robin) and are decoded when the
//!    application polls its [`NetworkEvents`]. Each (peer, protocol) queue holds at most
//!    `capacity_per_key` messages and `max_bytes_per_key` payload bytes, each application's
//!    queue at most `max_bytes` ([`QueueConfig`]); when a peer disconnects, the messages it
//!    left in the queues are purged. A full queue drops ([`QueueStyle`]), unless
//!    the application asked for back-pressure ([`Overflow::Wait`]): then the peer's reader
//!    waits for room and TCP slows the sender down. The reader hands over the direct sends it
//!    read in a row together (one lock and one budget charge per protocol for up to 64 KiB),
//!    wakes the application once per burst of messages, and the application takes a batch per
//!    wake-up. Each message
//!    queued is charged to the network's `peer::InboundBudget` (`peer.inbound_byte_budget`)
//!    until the application takes it (the first 64 KiB of each batch it takes are given back
//!    in one update): while the budget is spent the readers stop reading.
//!    A peer the peer layer cut off for flooding (`DisconnectReason::RateLimited`) is banned
//!    for `peer.rate_limit.ban_duration_ms`; such bans, and the failed dials of the
//!    connectivity manager, are published as [`RecordEvent`]s ([`Network::record_events`])
//!    for a node that keeps them in a peer store.
//! 5. Every network runs a health checker, an application of the facade itself on
//!    `HealthCheckerRpc` (5): it answers the peers' pings ([`HealthCheckerMsg`]) and, unless
//!    [`HealthCheckConfig::enabled`] is off, pings each connected peer that offers the
//!    protocol every 10 s, and disconnects a peer whose 4th ping in a row fails (time-out, wrong nonce or
//!    error), counted in `peerlane_health_pings_total{result}` and
//!    `peerlane_health_disconnects_total`.
//! 6. Every network runs a `connectivity_manager::ConnectivityManager` ([`NetworkConfig`]'s
//!    `connectivity` section): it dials the seeds, the discovery file's peers and the on-chain
//!    set ([`NetworkBuilder::on_chain_updates`]), and the peers a store kept from earlier runs
//!    ([`NetworkBuilder::stored_peers`]), redials lost peers with backoff, closes
//!    connections to peers that left the trusted set (reason `stale`) and owns the trusted
//!    set. The peer manager reports its connections to it and carries out its actions.
//!
//! 7. Every network speaks peerlane's own protocols (`wire-format.md` section 8), offered in
//!    the handshake and sent only to peers that offered them, so AptosNet peers never see
//!    them: a [`Disconnect`] notice (64) tells a refused or closed peer why
//!    ([`DisconnectCode`]), and its connectivity manager backs off by that reason; the node's
//!    [`ChainStatus`] (65, set with [`Network::set_chain_status`]) goes to each peer when it
//!    connects and again on change (throttled per peer, the latest winning), lands in
//!    [`PeerStats::chain_status`], and a peer on another genesis is closed with
//!    `ChainMismatch`; peer exchange (66, [`PeerExchangeMsg`]) answers with a random sample of
//!    recently dialed peers, and on the public network asks one peer per interval and hands
//!    the checked answer to the connectivity manager as untrusted, indirect peers. Messages
//!    on 64 and 65 are read in the router before any queue (one slot per peer), settings are
//!    in [`ExtensionsConfig`], counters in [`ExtensionMetrics`].
//! 8. On the public network the connectivity manager keeps the peer count in a target range
//!    with a minimum of outbound peers, closes the worst-scoring inbound peer above it, lets
//!    whitelisted peers past every connection limit, and weights dial candidates by the
//!    round-trip times the health checker measured (`connectivity_manager::PeerScores`, filled
//!    from [`PeersAndMetadata`]).
//! 9. Routed messages (NEAR-style, protocols `RoutingSync` 67 and `Routed` 68, offered when
//!    `routing.enabled`, the default, and only ever sent to peers that offered them): a
//!    routing actor per network drives the `routing` crate's `RoutingNode`. Each connection
//!    between routing peers becomes an edge signed by both ends; edges spread by summary
//!    reconciliation and batched broadcasts, verified on the blocking pool within per-sender
//!    budgets (a bad signature bans the sender with a `BadSignature` notice); next hops are
//!    recomputed on change. [`NetworkClient::send_routed`] and [`NetworkClient::rpc_routed`]
//!    reach any reachable peer (directly if connected), failing with [`Error::NoRoute`]
//!    otherwise; routed messages arrive in the same [`NetworkEvents`] with the author as the
//!    sender. Counters in [`RoutingMetrics`], state in [`Network::routing_snapshot`].
//!
//! Types to read first: [`NetworkBuilder`], [`NetworkClient`], [`NetworkEvents`], then
//! [`PeersAndMetadata`]. Every failure is a [`peerlane::Error`](Error).
//!
//! # Example
//!
//! Two nodes over the in-memory transport; one sends a direct message and an RPC, the other
//! reads and answers:
//!
//! ```
//! use futures::StreamExt;
//! use peerlane::{Event, NetworkBuilder, NetworkConfig, PeerNetworkId, TransportKind};
//! use prometheus_client::registry::Registry;
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//! use wire::{NetworkId, ProtocolId};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum Chat {
//!     Hello(String),
//!     Ping(u32),
//!     Pong(u32),
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let direct = [ProtocolId::CONSENSUS_DIRECT_SEND_BCS];
//! let rpc = [ProtocolId::CONSENSUS_RPC_BCS];
//! let mut registry = Registry::default();
//! let config = || NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
//!
//! let mut alice = NetworkBuilder::new(config(), TransportKind::Memory, &mut registry).unwrap();
//! let (alice_client, _alice_events) = alice
//!     .add_application::<Chat>(direct, rpc, Default::default())
//!     .unwrap();
//! let alice = alice.build().unwrap();
//!
//! let mut bob = NetworkBuilder::new(config(), TransportKind::Memory, &mut Registry::default())
//!     .unwrap();
//! let (_bob_client, mut bob_events) = bob
//!     .add_application::<Chat>(direct, rpc, Default::default())
//!     .unwrap();
//! let bob = bob.build().unwrap();
//!
//! // Alice dials Bob at his advertised address (it carries his Noise key).
//! alice.dial(bob.peer_id(), bob.listen_address().clone()).await.unwrap();
//! let to_bob = PeerNetworkId::new(NetworkId::Public, bob.peer_id());
//!
//! alice_client.send_to_peer(to_bob, &Chat::Hello("hi bob".into())).unwrap();
//! let Some(Event::Message { message, .. }) = bob_events.next().await else { panic!() };
//! assert_eq!(message, Chat::Hello("hi bob".into()));
//!
//! // Bob answers RPCs in a task of his own.
//! tokio::spawn(async move {
//!     while let Some(event) = bob_events.next().await {
//!         if let Event::RpcRequest { request: Chat::Ping(n), responder, .. } = event {
//!             responder.reply(Chat::Pong(n)).unwrap();
//!         }
//!     }
//! });
//! let response = alice_client
//!     .send_rpc(to_bob, Chat::Ping(7), Duration::from_secs(5))
//!     .await
//!     .unwrap();
//! assert_eq!(response, Chat::Pong(7));
//!
//! alice.shutdown().await;
//! bob.shutdown().await;
//! # });
//! ```

mod admission;
mod builder;
mod chain_announcer;
mod chain_status;
mod chain_throttle;
mod client;
mod config;
mod disconnect_notice;
mod error;
mod events;
mod extension_config;
mod extension_metrics;
mod health;
mod intake;
mod listener;
mod metrics;
mod network;
mod peer_exchange;
mod peer_manager;
mod peers;
mod queue;
mod record_events;
mod router;
mod routing;
mod routing_actor;
mod scores;
mod transport;

pub use self::routing::storage::MAX_PRUNED_EDGES_IN_MEMORY;
pub use self::routing::{
    MAX_PENDING_ROUTED_RPCS, ROUTING_COMMAND_QUEUE, RouteEntry, RoutingMetrics, RoutingSnapshot,
};
pub use ::routing::RoutingConfig;
pub use admission::{
    ACCEPT_BURST_PER_IP, ACCEPT_RATE_PER_IP, AdmissionConfig, IpPrefix, MAX_INBOUND_PER_IP,
    MAX_INBOUND_PER_PREFIX, MAX_PENDING_PER_IP, MAX_PENDING_PER_PREFIX,
};
pub use builder::NetworkBuilder;
pub use chain_status::{BlockHash, CHAIN_STATUS_BYTES, ChainStatus, PeerChainStatus};
pub use client::NetworkClient;
pub use config::{
    AuthMode, DEFAULT_CHAIN_ID, DEFAULT_LISTEN_ADDRESS, HEALTH_CHECK_FAILURES,
    HEALTH_CHECK_INTERVAL_MS, HEALTH_CHECK_TIMEOUT_MS, HealthCheckConfig, Identity,
    MAX_INBOUND_CONNECTIONS, MAX_PENDING_INBOUND_UPGRADES, NOTIFICATION_CAPACITY, NetworkConfig,
    SETUP_TIMEOUT_MS,
};
pub use connectivity_manager::{
    Config as ConnectivityConfig, DiscoveredPeer, Metrics as ConnectivityMetrics, PeerScores,
    Provenance, RemoteRefusal,
};
pub use disconnect_notice::{Disconnect, DisconnectCode, MAX_DISCONNECT_BYTES};
pub use error::{Error, ProtocolKind};
pub use events::{Event, NetworkEvents, RpcReplier};
pub use extension_config::{
    CHAIN_STATUS_INTERVAL_MS, ExtensionsConfig, MAX_PENDING_NOTICES, NOTICE_WRITE_TIMEOUT_MS,
    PEER_EXCHANGE_INTERVAL_MS, PEER_EXCHANGE_MAX_PEERS, PEER_EXCHANGE_MAX_RECENT,
    PEER_EXCHANGE_MIN_REQUEST_INTERVAL_MS, PEER_EXCHANGE_RECENT_WINDOW_MS,
    PEER_EXCHANGE_TIMEOUT_MS,
};
pub use extension_metrics::ExtensionMetrics;
pub use health::{HealthCheckerMsg, Ping, Pong};
pub use metrics::{ConnectionChange, Metrics, PingResult, QueueEvent, RefusalReason, SetupFailure};
pub use network::Network;
pub use peer_exchange::{ExchangedPeer, MAX_ADDRESSES_PER_PEER, MAX_ANSWER_BYTES, PeerExchangeMsg};
pub use peers::{
    ConnectionNotification, ConnectionNotifications, MAX_REMEMBERED_RTTS, PeerNetworkId, PeerStats,
    PeersAndMetadata,
};
pub use queue::{
    DEFAULT_CAPACITY_PER_KEY, DEFAULT_MAX_BYTES, DEFAULT_MAX_BYTES_PER_KEY, DEFAULT_MAX_WAIT_MS,
    Overflow, QueueConfig, QueueStyle,
};
pub use record_events::{BanCause, RECORD_EVENTS_CAPACITY, RecordEvent};
pub use routing_actor::{MAX_EDGES_AWAITING_VERIFICATION, MAX_VERIFY_BATCHES};
pub use transport::{CustomSocket, CustomTransport, HANDSHAKE_VERSION, TransportKind};

/// The keyed queue behind [`NetworkEvents`], public only for the criterion benches
/// (`benches/keyed_queue.rs`); applications never see it, and it may change at any time.
#[doc(hidden)]
pub use queue::{
    Dropped, KeyedQueue, KeyedReceiver, KeyedSender, QueueCounters, keyed_channel,
    weighed_keyed_channel,
};
