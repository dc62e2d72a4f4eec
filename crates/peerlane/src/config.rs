//! [`NetworkConfig`]: everything one network of a node needs, with AptosNet's defaults.
//!
//! Every default comes from a named constant below, with its unit in the name. The config
//! reads from and writes to any serde format; in JSON a minimal validator config is
//!
//! ```json
//! {
//!   "network_id": "validator",
//!   "listen_address": "/ip4/0.0.0.0/tcp/6180",
//!   "chain_id": 1,
//!   "identity": { "private_key": "<64 hex digits>", "peer_id": "<64 hex digits>" },
//!   "seeds": { "<peer id>": { "addresses": ["/dns/v1.example/tcp/6180/noise-ik/<key>/handshake/0"],
//!                             "role": "validator" } }
//! }
//! ```
//!
//! and every field left out takes its default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use connectivity_manager::{DiscoveredPeer, NetworkKind};
use netcore::{NetworkAddress, PeerId};
use noise::{HandshakeAuthMode, PrivateKey, PublicKey, TrustedPeer, TrustedPeers};
use routing::RoutingConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wire::{ChainId, NetworkId};

use crate::admission::{AdmissionConfig, IpPrefix};
use crate::error::Error;
use crate::extension_config::ExtensionsConfig;
use crate::queue::QueueConfig;

/// Where a node listens unless configured: all interfaces, AptosNet's validator port.
pub const DEFAULT_LISTEN_ADDRESS: &str = "/ip4/0.0.0.0/tcp/6180";

/// The chain id unless configured: AptosNet's `TESTING` chain (4), so a node never joins a
/// real chain by accident.
pub const DEFAULT_CHAIN_ID: u8 = 4;

/// Connecting, the Noise handshake and the handshake message together (AptosNet's
/// `TRANSPORT_TIMEOUT`): a peer that stalls during set-up holds a socket no longer than this.
pub const SETUP_TIMEOUT_MS: u64 = 30_000;

/// Inbound connections from peers outside the trusted set (AptosNet's
/// `MAX_INBOUND_CONNECTIONS`). Trusted peers are never refused for this limit.
pub const MAX_INBOUND_CONNECTIONS: usize = 100;

/// Accepted sockets whose Noise and handshake set-up may run at once. At the cap, a newly
/// accepted socket evicts the oldest set-up of the busiest /24 or /64 still in progress, never
/// a trusted IP's (counted as `evicted`), so a flood of silent sockets cannot keep legitimate
/// dialers out. Bounds the memory a burst of
/// slow dialers can hold.
pub const MAX_PENDING_INBOUND_UPGRADES: usize = 100;

/// Capacity of the connection-notification broadcast (AptosNet's channel capacity): a
/// subscriber that falls further behind than this loses the oldest notifications.
pub const NOTIFICATION_CAPACITY: usize = 1024;

/// The health checker pings each peer this often. AptosNet pings every 10 s; every 5 s
/// notices a silently partitioned peer in at most 20 s with the other defaults, rather than
/// 60 s (see the `health` module docs), for one 40-byte ping each way per peer per 5 s.
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 5_000;

/// A health-check ping without a pong within this long fails, unless the peer sent other
/// bytes meanwhile (AptosNet waits 20 s). A live peer on an idle link answers in a round trip;
/// one behind a saturated link sends its own pings or data, which counts as alive.
pub const HEALTH_CHECK_TIMEOUT_MS: u64 = 5_000;

/// The health checker disconnects a peer after this many consecutive failed pings
/// (AptosNet's `ping_failures_tolerated` of 3 plus the failing one is 4; a failure here needs
/// a peer silent for a whole timeout, so three in a row are evidence enough).
pub const HEALTH_CHECK_FAILURES: u32 = 3;

/// The configuration of one network (validator, VFN or public) of a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// Which network this is. Default [`NetworkId::Public`]. Sent in the handshake message;
    /// both ends must agree.
    pub network_id: NetworkId,
    /// Where to listen. Default [`DEFAULT_LISTEN_ADDRESS`]. Port 0 picks a free port; the
    /// bound address is [`Network::listen_address`](crate::Network::listen_address).
    pub listen_address: NetworkAddress,
    /// The chain this node is on. Default [`DEFAULT_CHAIN_ID`]. Both ends must agree.
    pub chain_id: ChainId,
    /// The node's static key and PeerId. Default none: the builder generates a fresh key for
    /// this run (fine for a public full node; a validator needs a stable identity).
    pub identity: Option<Identity>,
    /// How inbound Noise handshakes are authenticated. Default none: [`AuthMode::Mutual`] on
    /// the validator network, [`AuthMode::MaybeMutual`] elsewhere; see
    /// [`auth_mode`](Self::auth_mode). [`validate`](Self::validate) refuses
    /// [`AuthMode::MaybeMutual`] on the validator network.
    pub auth_mode: Option<AuthMode>,
    /// Peers we trust, by PeerId: their keys authenticate them, their role travels in the
    /// connection metadata, and their addresses are where to find them. Default empty.
    ///
    /// Each seed is written `{ "addresses": [...], "keys": [...], "role": "..." }`, the
    /// discovery file's per-peer form (see [`DiscoveredPeer`]): `addresses` with their
    /// `/noise-ik/<key>` (default empty), `keys` as 64 hex digits each in addition to those
    /// (default empty), `role` in snake case (required).
    pub seeds: BTreeMap<PeerId, DiscoveredPeer>,
    /// Per-connection settings: lanes, RPC limits, message sizes, with AptosNet's defaults
    /// (see [`peer::Config`]; its timeouts are `_ms` fields in config files).
    pub peer: peer::Config,
    /// Payload bytes all connections of this network may hold in unfinished inbound streams
    /// together; a stream piece that would take them over closes its connection
    /// (`stream_budget_exceeded`). At least `peer.max_message_size`. Default
    /// [`peer::DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT`] (256 MiB).
    pub max_stream_bytes_in_flight: usize,
    /// The default inbound queue of an application: capacity per (peer, protocol) 1024, drop
    /// newest. [`NetworkBuilder::add_application`](crate::NetworkBuilder::add_application)
    /// takes a queue config of its own; this is the usual value to pass.
    pub inbound_queue: QueueConfig,
    /// Inbound connections from peers outside the trusted set (whatever role they claim). At
    /// the limit, a newcomer takes the slot of the one silent longest if it has received
    /// nothing for 5 s (`evicted_idle`); otherwise the newcomer is refused
    /// (`too_many_inbound`). Default [`MAX_INBOUND_CONNECTIONS`].
    pub max_inbound_connections: usize,
    /// Accepted sockets being set up at once (concurrent inbound handshakes). Default
    /// [`MAX_PENDING_INBOUND_UPGRADES`].
    pub max_pending_inbound_upgrades: NonZeroUsize,
    /// Per-IP and per-prefix limits on inbound sockets, checked at accept before any crypto
    /// ([`AdmissionConfig`]): set-ups in progress per IP and per /24 or /64, and sockets per IP
    /// per second.
    pub admission: AdmissionConfig,
    /// IPs and CIDR prefixes (`"10.1.2.3"`, `"10.1.2.0/24"`, `"2001:db8::/32"`) whose sockets
    /// are closed at accept, before any work (`refused{reason="banned_ip"}`). Default empty;
    /// [`Network::ban_ip`](crate::Network::ban_ip) adds more at run time.
    pub banned_ips: Vec<IpPrefix>,
    /// Deadline for setting up one connection (connect, Noise, handshake message). Default
    /// [`SETUP_TIMEOUT_MS`]. In config files `setup_timeout_ms`, in milliseconds.
    #[serde(rename = "setup_timeout_ms", with = "netcore::serde_duration_ms")]
    pub setup_timeout: Duration,
    /// Connection notifications a subscriber may fall behind before it loses the oldest.
    /// Default [`NOTIFICATION_CAPACITY`].
    pub notification_capacity: NonZeroUsize,
    /// Settings for the health checker.
    pub health_check: HealthCheckConfig,
    /// Settings for the network's connectivity manager, which decides whom to dial and owns
    /// the trusted set ([`connectivity_manager::Config`]; its `_ms` fields are milliseconds).
    /// Its `network` is derived from [`network_id`](Self::network_id) and its seeds are
    /// [`seeds`](Self::seeds): set `seeds` here, not inside this section (a non-empty
    /// `connectivity.seeds` is rejected by [`validate`](Self::validate)).
    pub connectivity: connectivity_manager::Config,
    /// Settings of peerlane's own protocols: chain status (65), disconnect notices (64),
    /// peer exchange (66) ([`ExtensionsConfig`]).
    pub extensions: ExtensionsConfig,
    /// Routed messages over signed edges (protocols 67 and 68): on by default, every limit
    /// of [`routing::RoutingConfig`] (`_ms` fields in milliseconds).
    pub routing: RoutingConfig,
}

/// How the responder side of the Noise handshake authenticates initiators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Only peers in [`NetworkConfig::seeds`] (or added to the trusted set later), with one of
    /// their keys, and a fresh timestamp. For validator networks.
    Mutual,
    /// Anyone; trusted peers must use their keys and get their role, others get
    /// [`PeerRole::Unknown`](noise::PeerRole::Unknown).
    MaybeMutual,
}

/// A node's static x25519 key, and the PeerId it goes by.
///
/// In config files: `{ "private_key": "<64 hex digits>", "peer_id": "<64 hex digits>" }`, with
/// `peer_id` optional (it defaults to the one derived from the key, which is what nodes outside
/// the validator set use). `Debug` does not print the key.
#[derive(Clone)]
pub struct Identity {
    private_key: PrivateKey,
    peer_id: Option<PeerId>,
}

/// The settings the health checker reads.
///
/// With the defaults each peer is pinged every 10 s whether or not its earlier pings have
/// ended, as in AptosNet (at most `⌈timeout / interval⌉ + 1` = 3 in flight), so a peer
/// that stops answering is disconnected when its 4th ping in a row times out: 3 × 10 s + 20 s
/// = 50 s after the first unanswered ping went out, at most 60 s after it went silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Whether the network pings its peers. Default true. When false the network sends no
    /// pings but still answers the peers' pings on `HealthCheckerRpc` (5) (an AptosNet peer
    /// disconnects a node that does not), unless an application registers that protocol
    /// itself, which it may then.
    pub enabled: bool,
    /// How often each peer is pinged. Default [`HEALTH_CHECK_INTERVAL_MS`]. In config files
    /// `interval_ms`, in milliseconds.
    #[serde(rename = "interval_ms", with = "netcore::serde_duration_ms")]
    pub interval: Duration,
    /// How long a ping may wait for its pong. Default [`HEALTH_CHECK_TIMEOUT_MS`]. In config
    /// files `timeout_ms`, in milliseconds.
    #[serde(rename = "timeout_ms", with = "netcore::serde_duration_ms")]
    pub timeout: Duration,
    /// Consecutive failed pings after which the peer is disconnected. Default
    /// [`HEALTH_CHECK_FAILURES`].
    pub failures_before_disconnect: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            network_id: NetworkId::Public,
            listen_address: DEFAULT_LISTEN_ADDRESS
                .parse()
                .expect("the default listen address parses"),
            chain_id: ChainId::new(DEFAULT_CHAIN_ID),
            identity: None,
            auth_mode: None,
            seeds: BTreeMap::new(),
            peer: peer::Config::default(),
            max_stream_bytes_in_flight: peer::DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT,
            inbound_queue: QueueConfig::default(),
            max_inbound_connections: MAX_INBOUND_CONNECTIONS,
            max_pending_inbound_upgrades: NonZeroUsize::new(MAX_PENDING_INBOUND_UPGRADES)
                .expect("the constant is not zero"),
            admission: AdmissionConfig::default(),
            banned_ips: Vec::new(),
            setup_timeout: Duration::from_millis(SETUP_TIMEOUT_MS),
            notification_capacity: NonZeroUsize::new(NOTIFICATION_CAPACITY)
                .expect("the constant is not zero"),
            health_check: HealthCheckConfig::default(),
            connectivity: connectivity_manager::Config::default(),
            extensions: ExtensionsConfig::default(),
            routing: RoutingConfig::default(),
        }
    }
}

impl NetworkConfig {
    /// The defaults for network `network_id`, listening on `listen_address`.
    pub fn new(network_id: NetworkId, listen_address: NetworkAddress) -> Self {
        Self {
            network_id,
            listen_address,
            ..Self::default()
        }
    }

    /// The configured auth mode, or the network's default: mutual on the validator network,
    /// maybe-mutual elsewhere.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth_mode
            .unwrap_or(if self.network_id.is_validator_network() {
                AuthMode::Mutual
            } else {
                AuthMode::MaybeMutual
            })
    }

    /// The trusted set the seeds describe: each seed with the keys it lists and those in its
    /// addresses.
    pub fn trusted_peers(&self) -> HashMap<PeerId, TrustedPeer> {
        self.seeds
            .iter()
            .map(|(peer_id, seed)| (*peer_id, TrustedPeer::new(seed.role, seed.all_keys())))
            .collect()
    }

    /// The connectivity manager's config as the network runs it: [`connectivity`](Self::connectivity)
    /// with `network` derived from [`network_id`](Self::network_id) and the
    /// [`seeds`](Self::seeds) as its seed peers (role, addresses, keys).
    pub fn connectivity_config(&self) -> connectivity_manager::Config {
        let network = match self.network_id {
            NetworkId::Validator => NetworkKind::Validator,
            NetworkId::Vfn => NetworkKind::Vfn,
            NetworkId::Public => NetworkKind::Public,
        };
        let seeds = self
            .seeds
            .iter()
            .map(|(peer_id, seed)| (*peer_id, seed.clone()))
            .collect();
        let mut config = self.connectivity.clone();
        config.network(network).seeds(seeds);
        config
    }

    /// The Noise auth mode over `trusted`.
    pub(crate) fn handshake_auth_mode(&self, trusted: TrustedPeers) -> HandshakeAuthMode {
        match self.auth_mode() {
            AuthMode::Mutual => HandshakeAuthMode::mutual(trusted),
            AuthMode::MaybeMutual => HandshakeAuthMode::maybe_mutual(trusted),
        }
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), Error> {
        // As Aptos's config sanitizer: a validator network that let any key in would hand
        // consensus connections to strangers.
        if self.network_id.is_validator_network() && self.auth_mode() != AuthMode::Mutual {
            return Err(Error::InvalidConfig {
                field: "auth_mode",
                reason: "the validator network must use mutual authentication, not maybe_mutual",
                source: None,
            });
        }
        if let Err(error) = self.routing.validate() {
            return Err(Error::InvalidConfig {
                field: "routing",
                reason: "the routing config breaks a rule",
                source: Some(Box::new(error)),
            });
        }
        if self.setup_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "setup_timeout_ms",
                reason: "must be at least 1 ms",
                source: None,
            });
        }
        if self.health_check.interval.is_zero() || self.health_check.timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "health_check",
                reason: "interval_ms and timeout_ms must be at least 1 ms",
                source: None,
            });
        }
        if self.health_check.failures_before_disconnect == 0 {
            return Err(Error::InvalidConfig {
                field: "health_check",
                reason: "failures_before_disconnect must be at least 1",
                source: None,
            });
        }
        let mut without_seeds = self.connectivity.clone();
        without_seeds.seeds(HashMap::new());
        if without_seeds != self.connectivity {
            return Err(Error::InvalidConfig {
                field: "connectivity",
                reason: "seeds belong in the network config's `seeds`, not in `connectivity`",
                source: None,
            });
        }
        self.connectivity_config()
            .validate()
            .map_err(|source| Error::InvalidConfig {
                field: "connectivity",
                reason: "the connectivity manager config breaks a rule",
                source: Some(Box::new(source)),
            })?;
        self.peer
            .validate()
            .map_err(|source| Error::InvalidConfig {
                field: "peer",
                reason: "the peer config breaks a rule",
                source: Some(Box::new(source)),
            })?;
        if self.extensions.chain_status_interval.is_zero()
            || self.extensions.peer_exchange_interval.is_zero()
            || self.extensions.peer_exchange_timeout.is_zero()
        {
            return Err(Error::InvalidConfig {
                field: "extensions",
                reason: "chain_status_interval_ms, peer_exchange_interval_ms and peer_exchange_timeout_ms must be at least 1 ms",
                source: None,
            });
        }
        if self.max_stream_bytes_in_flight < self.peer.max_message_size {
            return Err(Error::InvalidConfig {
                field: "max_stream_bytes_in_flight",
                reason: "must hold at least one message of peer.max_message_size",
                source: None,
            });
        }
        Ok(())
    }
}

impl Identity {
    /// An identity for `private_key`, going by the PeerId derived from its public key.
    pub fn new(private_key: PrivateKey) -> Self {
        Self {
            private_key,
            peer_id: None,
        }
    }

    /// A fresh random identity.
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        Self::new(noise::keys::generate_private_key(rng))
    }

    /// Parses a private key of 64 hex digits (with or without `0x`).
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        parse_private_key(text).map(Self::new)
    }

    /// The same key, going by `peer_id` (a validator's account address) instead of the
    /// derived PeerId.
    pub fn with_peer_id(mut self, peer_id: PeerId) -> Self {
        self.peer_id = Some(peer_id);
        self
    }

    /// The PeerId: the configured one, or the one derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
            .unwrap_or_else(|| noise::keys::peer_id_from_public_key(&self.public_key()))
    }

    /// The static public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(&self.private_key)
    }

    /// The static private key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.private_key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key: configs end up in logs.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field(
                "public_key",
                &noise::keys::format_public_key(&self.public_key()),
            )
            .finish_non_exhaustive()
    }
}

/// How an [`Identity`] is written in config files.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRepr {
    private_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_id: Option<PeerId>,
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        IdentityRepr {
            private_key: hex::encode(self.private_key.as_bytes()),
            peer_id: self.peer_id,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = IdentityRepr::deserialize(deserializer)?;
        let private_key = parse_private_key(&repr.private_key).map_err(serde::de::Error::custom)?;
        Ok(Self {
            private_key,
            peer_id: repr.peer_id,
        })
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_millis(HEALTH_CHECK_INTERVAL_MS),
            timeout: Duration::from_millis(HEALTH_CHECK_TIMEOUT_MS),
            failures_before_disconnect: HEALTH_CHECK_FAILURES,
        }
    }
}

/// Parses 64 hex digits (an optional `0x` first) into a private key. The error never contains
/// the input.
fn parse_private_key(text: &str) -> Result<PrivateKey, Error> {
    netcore::hex32::parse(text.trim())
        .map(PrivateKey::from)
        .map_err(|reason| Error::InvalidPrivateKey { reason })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use noise::PeerRole;

    use super::*;

    /// The defaults are the architecture's: 30 s set-up, 100 inbound connections, 1024 per
    /// queue, health checks on, every 5 s with a 5 s timeout and 3 failures; the auth mode
    /// follows the network.
    #[test]
    fn defaults_are_the_architectures() {
        let config = NetworkConfig::default();
        assert_eq!(config.setup_timeout, Duration::from_secs(30));
        assert_eq!(config.max_inbound_connections, 100);
        assert_eq!(config.inbound_queue.capacity_per_key.get(), 1024);
        assert_eq!(config.health_check.interval, Duration::from_secs(5));
        assert_eq!(config.health_check.timeout, Duration::from_secs(5));
        assert_eq!(config.health_check.failures_before_disconnect, 3);
        assert!(config.health_check.enabled);
        assert_eq!(config.auth_mode(), AuthMode::MaybeMutual);
        let validator = NetworkConfig::new(NetworkId::Validator, NetworkAddress::memory(0));
        assert_eq!(validator.auth_mode(), AuthMode::Mutual);
        config.validate().unwrap();
    }

    /// A JSON config with only some fields set reads, takes defaults for the rest, and writes
    /// back to the same values; the identity and seed keys travel as hex.
    #[test]
    fn json_config_round_trips_with_defaults_filled_in() {
        let identity = Identity::generate(&mut StdRng::seed_from_u64(1));
        let seed_key = PublicKey::from(&noise::keys::generate_private_key(
            &mut StdRng::seed_from_u64(2),
        ));
        let seed_id = noise::keys::peer_id_from_public_key(&seed_key);
        let address = NetworkAddress::memory(7)
            .with_noise_and_handshake(seed_key, 0)
            .unwrap();
        let json = serde_json::json!({
            "network_id": "validator",
            "listen_address": "/memory/0",
            "chain_id": 1,
            "identity": { "private_key": hex::encode(identity.private_key().as_bytes()) },
            "seeds": { seed_id.to_string(): {
                "addresses": [address.to_string()],
                "role": "validator",
            } },
            "health_check": { "interval_ms": 5000 },
        });
        let config: NetworkConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.network_id, NetworkId::Validator);
        assert_eq!(config.chain_id, ChainId::new(1));
        assert_eq!(
            config.identity.as_ref().unwrap().peer_id(),
            identity.peer_id()
        );
        assert_eq!(config.health_check.interval, Duration::from_millis(5000));
        assert_eq!(
            config.health_check.timeout,
            Duration::from_millis(HEALTH_CHECK_TIMEOUT_MS)
        );
        assert_eq!(config.max_inbound_connections, MAX_INBOUND_CONNECTIONS);
        let trusted = config.trusted_peers();
        assert_eq!(trusted[&seed_id].role, PeerRole::Validator);
        assert!(trusted[&seed_id].keys.contains(&seed_key));

        let again: NetworkConfig =
            serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(again.seeds, config.seeds);
        assert_eq!(
            again.identity.unwrap().private_key().as_bytes(),
            identity.private_key().as_bytes()
        );
    }

    /// A bad private key is a typed error that does not echo the (secret) input; Debug does
    /// not print the key either.
    #[test]
    fn bad_private_keys_are_refused_without_echoing_them() {
        let err = Identity::from_hex("zz".repeat(32).as_str()).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidPrivateKey { reason: "not hex" }
        ));
        assert!(!err.to_string().contains("zz"));
        assert!(matches!(
            Identity::from_hex("00"),
            Err(Error::InvalidPrivateKey { .. })
        ));
        let identity = Identity::from_hex(&format!("0x{}", "11".repeat(32))).unwrap();
        assert!(!format!("{identity:?}").contains(&"11".repeat(32)));
    }

    /// Rules serde cannot express are checked by `validate`, naming the field.
    #[test]
    fn validate_names_the_offending_field() {
        let mut config = NetworkConfig {
            setup_timeout: Duration::ZERO,
            ..NetworkConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig {
                field: "setup_timeout_ms",
                ..
            })
        ));
        config.setup_timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
        config.peer.outbound_lane_capacity = 0;
        let err = config.validate().unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "peer", .. }),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
        config.peer = peer::Config::default();
        config.max_stream_bytes_in_flight = config.peer.max_message_size - 1;
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig {
                field: "max_stream_bytes_in_flight",
                ..
            })
        ));
        config.max_stream_bytes_in_flight = peer::DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT;
        config.health_check.failures_before_disconnect = 0;
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig {
                field: "health_check",
                ..
            })
        ));
    }

    /// A validator network is mutually authenticated: `maybe_mutual` there is refused, and
    /// stays allowed on the other networks.
    #[test]
    fn validator_network_refuses_maybe_mutual() {
        let mut validator = NetworkConfig::new(NetworkId::Validator, NetworkAddress::memory(0));
        validator.validate().unwrap();
        validator.auth_mode = Some(AuthMode::Mutual);
        validator.validate().unwrap();
        validator.auth_mode = Some(AuthMode::MaybeMutual);
        let err = validator.validate().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "auth_mode",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("maybe_mutual"), "{err}");
        for network_id in [NetworkId::Vfn, NetworkId::Public] {
            let mut config = NetworkConfig::new(network_id, NetworkAddress::memory(0));
            config.auth_mode = Some(AuthMode::MaybeMutual);
            config.validate().unwrap();
        }
    }

    /// Unknown fields are refused, so a typo in a config file is caught.
    #[test]
    fn unknown_fields_are_refused() {
        let result = serde_json::from_value::<NetworkConfig>(serde_json::json!({
            "max_inbound_conections": 5,
        }));
        assert!(result.is_err());
    }
}
