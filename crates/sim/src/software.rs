//! What runs on a simulated host: [`NodeSoftware`] starts a node from its [`HostEnv`] (the
//! node's key, address, transport and the configs the scenario implies) and hands back a
//! [`RunningNode`] for the engine to watch and stop.
//!
//! The engine does not know the applications; `peerlane sim` (the node binary) plugs in
//! mempool, consensus and state sync, and [`NetworkOnly`] runs bare networks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::LocalBoxFuture;
use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;
use peerlane::{
    DiscoveredPeer, HANDSHAKE_VERSION, Identity, Network, NetworkBuilder, NetworkConfig,
    TransportKind,
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use wire::NetworkId;

use crate::scenario::HealthCheckSection;
use crate::transport::{SimTransport, address};

/// The validator network's port on every validator.
pub const VALIDATOR_PORT: u16 = 6180;
/// The public network's port on every node.
pub const PUBLIC_PORT: u16 = 6182;

/// An error a node's software reports.
pub type SoftwareError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the software of one node on the current simulated host.
pub trait NodeSoftware {
    /// Builds and starts the node `env` describes. Called again, with the same `env`, when a
    /// crashed node restarts.
    fn start(&self, env: &HostEnv) -> Result<Box<dyn RunningNode>, SoftwareError>;
}

/// A started node, as the engine sees it.
pub trait RunningNode {
    /// Its networks, whose connections the trace records.
    fn networks(&self) -> Vec<&Network>;
    /// The height it has committed (validators) or synced (full nodes).
    fn committed_height(&self) -> u64;
    /// Stops everything it started and waits until it has ended.
    fn shutdown(self: Box<Self>) -> LocalBoxFuture<'static, ()>;
}

/// Validator or full node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// On the validator network and the public network.
    Validator,
    /// On the public network only.
    FullNode,
}

/// A node's reachable identity.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its name (`v0`, `f3`).
    pub name: String,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its validator network address (validators), with Noise key and handshake version.
    pub validator_address: Option<NetworkAddress>,
    /// Its public network address, with Noise key and handshake version.
    pub public_address: NetworkAddress,
}

/// Everything a node's software needs to start on its host.
#[derive(Clone, Debug)]
pub struct HostEnv {
    /// The node's index in the scenario (validators first).
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Validator or full node.
    pub role: NodeRole,
    /// Its key: derived from the seed and the index, so a restart keeps it.
    pub identity: Identity,
    /// Its simulated IP.
    pub ip: IpAddr,
    /// Every validator, in leader order.
    pub validators: Arc<Vec<PeerInfo>>,
    /// The public-network peers this node gets as seeds.
    pub public_seeds: Vec<PeerInfo>,
    /// Seeds the networks' random choices ([`NetworkBuilder::rng_seed`]).
    pub rng_seed: u64,
    /// The scenario's health-checker override, if any.
    pub health_check: Option<HealthCheckSection>,
}

impl HostEnv {
    /// The simulated transport from this host.
    pub fn transport(&self) -> TransportKind {
        SimTransport::new(self.ip).into_kind()
    }

    /// The validators' peer ids, in leader order.
    pub fn validator_ids(&self) -> Vec<PeerId> {
        self.validators.iter().map(|v| v.peer_id).collect()
    }

    /// The validator network's config: our key, port [`VALIDATOR_PORT`], every other
    /// validator as a seed (mutual authentication trusts exactly them).
    pub fn validator_network_config(&self) -> NetworkConfig {
        let mut config = NetworkConfig::new(NetworkId::Validator, listen(VALIDATOR_PORT));
        self.common(&mut config);
        config.seeds = self
            .validators
            .iter()
            .filter_map(|v| {
                let addr = v.validator_address.clone()?;
                Some((
                    v.peer_id,
                    DiscoveredPeer::new(PeerRole::Validator, [addr], []),
                ))
            })
            .collect();
        config
    }

    /// The public network's config: our key, port [`PUBLIC_PORT`], [`public_seeds`] as
    /// upstream seeds.
    ///
    /// [`public_seeds`]: Self::public_seeds
    pub fn public_network_config(&self) -> NetworkConfig {
        let mut config = NetworkConfig::new(NetworkId::Public, listen(PUBLIC_PORT));
        self.common(&mut config);
        config.seeds = self
            .public_seeds
            .iter()
            .map(|seed| {
                let peer =
                    DiscoveredPeer::new(PeerRole::Upstream, [seed.public_address.clone()], []);
                (seed.peer_id, peer)
            })
            .collect();
        config
    }

    /// Our key and the scenario's health-checker override.
    fn common(&self, config: &mut NetworkConfig) {
        config.identity = Some(self.identity.clone());
        if let Some(health) = self.health_check {
            config.health_check.interval = Duration::from_millis(health.interval_ms);
            config.health_check.timeout = Duration::from_millis(health.timeout_ms);
            config.health_check.failures_before_disconnect = health.failures;
        }
    }

    /// A builder for `config` over the simulated transport, seeded.
    pub fn builder(
        &self,
        config: NetworkConfig,
        registry: &mut Registry,
    ) -> Result<NetworkBuilder, peerlane::Error> {
        let salt = u64::from(matches!(config.network_id, NetworkId::Public));
        let mut builder = NetworkBuilder::new(config, self.transport(), registry)?;
        builder
            .rng_seed(self.rng_seed ^ salt)
            .on_simulator(simulated_wall_clock);
        Ok(builder)
    }
}

/// The time of day on the simulated network: the run's fixed epoch plus simulated time.
fn simulated_wall_clock() -> SystemTime {
    turmoil::since_epoch().map_or_else(SystemTime::now, |since| SystemTime::UNIX_EPOCH + since)
}

/// The key of node `index` in a run seeded with `seed`.
pub fn identity(seed: u64, index: usize) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"peerlane-sim node key");
    hasher.update(seed.to_le_bytes());
    hasher.update((index as u64).to_le_bytes());
    let bytes: [u8; 32] = hasher.finalize().into();
    Identity::new(noise::PrivateKey::from(bytes))
}

/// What node `name` at `ip` with `identity` is reachable at.
pub fn peer_info(name: String, role: NodeRole, ip: IpAddr, identity: &Identity) -> PeerInfo {
    let with_key = |port| {
        address(SocketAddr::new(ip, port))
            .with_noise_and_handshake(identity.public_key(), HANDSHAKE_VERSION)
            .expect("an ip and tcp base takes a noise suffix")
    };
    PeerInfo {
        name,
        peer_id: identity.peer_id(),
        validator_address: (role == NodeRole::Validator).then(|| with_key(VALIDATOR_PORT)),
        public_address: with_key(PUBLIC_PORT),
    }
}

fn listen(port: u16) -> NetworkAddress {
    format!("/ip4/0.0.0.0/tcp/{port}")
        .parse()
        .expect("a listen address parses")
}

/// Software with no applications: the validator network on validators and the public
/// network on every node, with their connectivity managers and health checkers. For runs
/// about the network alone; its height is always 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkOnly;

/// [`NetworkOnly`]'s running node.
struct BareNode {
    networks: Vec<Network>,
}

impl NodeSoftware for NetworkOnly {
    fn start(&self, env: &HostEnv) -> Result<Box<dyn RunningNode>, SoftwareError> {
        let mut registry = Registry::default();
        let mut networks = Vec::new();
        if env.role == NodeRole::Validator {
            networks.push(
                env.builder(env.validator_network_config(), &mut registry)?
                    .build()?,
            );
        }
        networks.push(
            env.builder(env.public_network_config(), &mut registry)?
                .build()?,
        );
        Ok(Box::new(BareNode { networks }))
    }
}

impl RunningNode for BareNode {
    fn networks(&self) -> Vec<&Network> {
        self.networks.iter().collect()
    }

    fn committed_height(&self) -> u64 {
        0
    }

    fn shutdown(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        Box::pin(async move {
            for network in self.networks {
                network.shutdown().await;
            }
        })
    }
}
