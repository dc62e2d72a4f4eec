//! [`Config`]: every setting of the connectivity manager, with its default.
//!
//! Defaults are AptosNet's (`network/framework/src/constants.rs` and its connectivity
//! manager) unless a comment says otherwise. They are educated guesses: change one only with
//! a measurement, and say so in the commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netcore::PeerId;
use serde::{Deserialize, Serialize};

use crate::discovery::DiscoveredPeer;
use crate::error::Error;

/// How often the manager re-checks connectivity even when nothing happened: AptosNet's
/// `CONNECTIVITY_CHECK_INTERVAL_MS`.
pub const CONNECTIVITY_CHECK_INTERVAL_MS: u64 = 5_000;

/// Delay before the first redial of a peer; each further failure doubles it. AptosNet's
/// exponential backoff base (2 ms × a factor of 1000).
pub const BACKOFF_BASE_MS: u64 = 2_000;

/// Cap on the redial delay: AptosNet's `MAX_CONNECTION_DELAY_MS`. 2, 4, 8, 16, 32 s, then 60 s.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// Upper bound of the random delay added to every backoff, so that peers that failed
/// together do not redial together: AptosNet's `MAX_CONNECTION_DELAY_JITTER`.
pub const MAX_BACKOFF_JITTER_MS: u64 = 100;

/// Outbound connections kept on a non-validator network: AptosNet's
/// `MAX_FULLNODE_OUTBOUND_CONNECTIONS`.
pub const MAX_OUTBOUND_CONNECTIONS: usize = 6;

/// How often the discovery file is re-read. Ours: AptosNet leaves it to each config. A minute
/// keeps the cost negligible (one small read) and picks up an operator's edit quickly.
pub const DISCOVERY_FILE_INTERVAL_MS: u64 = 60_000;

/// How long a peer that said it is full waits before we dial it again. Ours: a minute lets
/// the peer's connections churn without us knocking every backoff step.
pub const FULL_RETRY_DELAY_MS: u64 = 60_000;

/// How long a peer that said it banned us, without an expiry, waits before we dial it again.
pub const BANNED_RETRY_DELAY_MS: u64 = 3_600_000;

/// How long a peer on another chain, or with no protocol in common, waits before we dial it
/// again: it does not change by itself soon.
pub const MISMATCH_RETRY_DELAY_MS: u64 = 3_600_000;

/// Cap on any delay a peer's refusal imposes (a ban's expiry included).
pub const MAX_REFUSAL_DELAY_MS: u64 = 86_400_000;

/// Peers learned through peer exchange kept at most (the indirect source's view); the oldest
/// go first. About 300 bytes each.
pub const MAX_EXCHANGED_PEERS: usize = 256;

/// NEAR's `ideal_connections_lo`: below this many connected peers (both directions) the
/// public-network policy dials up to `max_outbound_connections`.
pub const TARGET_PEERS_LOW: usize = 30;

/// NEAR's `ideal_connections_hi`: above this many connected peers the public-network policy
/// closes its worst-scoring inbound peer, one per check.
pub const TARGET_PEERS_HIGH: usize = 35;

/// NEAR's `minimum_outbound_peers`: outbound connections kept even when the target range is
/// reached (inbound peers alone would let whoever dials us choose our view of the network).
pub const MIN_OUTBOUND_CONNECTIONS: usize = 5;

/// Capacity of the connection-event queue (facade → manager) and of the action queue
/// (manager → facade): the workspace's default channel capacity (architecture.md, "Channel
/// and queue inventory"). One event or action is about 150 bytes.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Which kind of network the manager serves. It decides the dialing policy: a validator
/// network dials every eligible validator; the others keep a bounded number of outbound
/// connections.
///
/// The names match `wire::NetworkId::as_str` (`"validator"`, `"vfn"`, `"public"`), so the
/// facade maps one onto the other by name; this crate does not depend on `wire`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// The validators' own network: mutual authentication, every validator dials every other.
    Validator,
    /// Between a validator and its full nodes.
    Vfn,
    /// The public full-node network. The default: the safe choice (bounded dialing).
    #[default]
    Public,
}

impl NetworkKind {
    /// `"validator"`, `"vfn"` or `"public"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Vfn => "vfn",
            Self::Public => "public",
        }
    }

    /// Whether this is the validator network.
    pub const fn is_validator_network(self) -> bool {
        matches!(self, Self::Validator)
    }
}

/// Settings of the connectivity manager.
///
/// Built in place with `&mut self -> &mut Self` setters, or deserialized (every field is
/// optional and defaults to the value below; unknown fields are an error). Durations are
/// written in milliseconds, with an `_ms` suffix:
///
/// ```
/// # use std::time::Duration;
/// # use connectivity_manager::{Config, NetworkKind};
/// let mut config = Config::default();
/// config.network(NetworkKind::Validator).connectivity_check_interval(Duration::from_secs(1));
///
/// let config: Config = toml::from_str(r#"
///     network = "validator"
///     max_outbound_connections = 8
///     discovery_file = "/etc/peerlane/peers.toml"
///     discovery_file_interval_ms = 30000
/// "#).unwrap();
/// ```
///
/// `docs/configuration.md` (section connectivity-manager) describes every setting for
/// operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub(crate) network: NetworkKind,
    #[serde(
        rename = "connectivity_check_interval_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub(crate) connectivity_check_interval: Duration,
    #[serde(rename = "backoff_base_ms", with = "netcore::serde_duration_ms")]
    pub(crate) backoff_base: Duration,
    #[serde(rename = "max_backoff_ms", with = "netcore::serde_duration_ms")]
    pub(crate) max_backoff: Duration,
    #[serde(rename = "max_backoff_jitter_ms", with = "netcore::serde_duration_ms")]
    pub(crate) max_backoff_jitter: Duration,
    pub(crate) max_outbound_connections: usize,
    pub(crate) discovery_file: Option<PathBuf>,
    #[serde(
        rename = "discovery_file_interval_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub(crate) discovery_file_interval: Duration,
    pub(crate) seeds: HashMap<PeerId, DiscoveredPeer>,
    pub(crate) connection_events_capacity: usize,
    pub(crate) actions_capacity: usize,
    #[serde(rename = "full_retry_delay_ms", with = "netcore::serde_duration_ms")]
    pub(crate) full_retry_delay: Duration,
    #[serde(rename = "banned_retry_delay_ms", with = "netcore::serde_duration_ms")]
    pub(crate) banned_retry_delay: Duration,
    #[serde(
        rename = "mismatch_retry_delay_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub(crate) mismatch_retry_delay: Duration,
    #[serde(rename = "max_refusal_delay_ms", with = "netcore::serde_duration_ms")]
    pub(crate) max_refusal_delay: Duration,
    pub(crate) max_exchanged_peers: usize,
    pub(crate) target_peers_low: usize,
    pub(crate) target_peers_high: usize,
    pub(crate) min_outbound_connections: usize,
    pub(crate) whitelist: Vec<PeerId>,
}

impl Config {
    /// The defaults; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Which kind of network this is; see [`NetworkKind`].
    ///
    /// Default: [`NetworkKind::Public`].
    pub fn network(&mut self, network: NetworkKind) -> &mut Self {
        self.network = network;
        self
    }

    /// How often the manager re-checks connectivity when no event arrives: dials peers
    /// whose backoff expired, retries actions dropped on a full queue.
    ///
    /// Default: 5 s. Must not be zero.
    pub fn connectivity_check_interval(&mut self, interval: Duration) -> &mut Self {
        self.connectivity_check_interval = interval;
        self
    }

    /// Delay before redialing a peer after its first failure (or after a connection to it
    /// closed). Each further failure doubles it, up to [`max_backoff`](Self::max_backoff).
    ///
    /// Default: 2 s, so 2, 4, 8, 16, 32, 60, 60, ... s.
    pub fn backoff_base(&mut self, base: Duration) -> &mut Self {
        self.backoff_base = base;
        self
    }

    /// Cap on the redial delay, before jitter.
    ///
    /// Default: 60 s.
    pub fn max_backoff(&mut self, max: Duration) -> &mut Self {
        self.max_backoff = max;
        self
    }

    /// Upper bound of the uniformly random delay added to every backoff.
    ///
    /// Default: 100 ms.
    pub fn max_backoff_jitter(&mut self, jitter: Duration) -> &mut Self {
        self.max_backoff_jitter = jitter;
        self
    }

    /// How many outbound connections (established or being dialed) to keep on a
    /// non-validator network. Ignored on the validator network, which dials every eligible
    /// validator. Inbound connections do not count.
    ///
    /// Default: 6. Memory: one connection's buffers and tasks per unit.
    pub fn max_outbound_connections(&mut self, max: usize) -> &mut Self {
        self.max_outbound_connections = max;
        self
    }

    /// A TOML file of peers to re-read every
    /// [`discovery_file_interval`](Self::discovery_file_interval), or `None` for no file
    /// source. The format is described on [`DiscoverySource::File`](crate::DiscoverySource).
    ///
    /// Default: `None`.
    pub fn discovery_file(&mut self, path: Option<PathBuf>) -> &mut Self {
        self.discovery_file = path;
        self
    }

    /// How often the discovery file is re-read.
    ///
    /// Default: 60 s. Must not be zero when a file is set.
    pub fn discovery_file_interval(&mut self, interval: Duration) -> &mut Self {
        self.discovery_file_interval = interval;
        self
    }

    /// Static seed peers: the [`DiscoverySource::Config`](crate::DiscoverySource) view, the
    /// lowest-priority source.
    ///
    /// Default: none.
    pub fn seeds(&mut self, seeds: HashMap<PeerId, DiscoveredPeer>) -> &mut Self {
        self.seeds = seeds;
        self
    }

    /// Capacity of the connection-event queue from the facade. A full queue makes
    /// [`ConnectivityHandle::send`](crate::ConnectivityHandle::send) wait.
    ///
    /// Default: 1024 events (about 150 KiB). Must not be zero.
    pub fn connection_events_capacity(&mut self, capacity: usize) -> &mut Self {
        self.connection_events_capacity = capacity;
        self
    }

    /// Capacity of the action queue to the facade. When it is full the manager drops the
    /// action, counts it (`peerlane_connectivity_actions_dropped_total`) and recomputes at
    /// the next connectivity check; it never waits for the facade.
    ///
    /// Default: 1024 actions (about 150 KiB). Must not be zero.
    pub fn actions_capacity(&mut self, capacity: usize) -> &mut Self {
        self.actions_capacity = capacity;
        self
    }

    /// How long a peer that told us it is full waits before we dial it again (on top of
    /// its backoff); see [`refusal_delay`](crate::refusal_delay).
    ///
    /// Default: 60 s.
    pub fn full_retry_delay(&mut self, delay: Duration) -> &mut Self {
        self.full_retry_delay = delay;
        self
    }

    /// How long a peer that told us it banned us, without an expiry, waits before we dial it
    /// again.
    ///
    /// Default: 1 h.
    pub fn banned_retry_delay(&mut self, delay: Duration) -> &mut Self {
        self.banned_retry_delay = delay;
        self
    }

    /// How long a peer on another chain or without a protocol in common waits before we dial
    /// it again.
    ///
    /// Default: 1 h.
    pub fn mismatch_retry_delay(&mut self, delay: Duration) -> &mut Self {
        self.mismatch_retry_delay = delay;
        self
    }

    /// Cap on the delay any refusal imposes, a ban's expiry included.
    ///
    /// Default: 24 h.
    pub fn max_refusal_delay(&mut self, delay: Duration) -> &mut Self {
        self.max_refusal_delay = delay;
        self
    }

    /// How many peers learned through peer exchange the manager keeps (the
    /// [`DiscoverySource::PeerExchange`](crate::DiscoverySource) view); when full, the peers
    /// learned longest ago go first. Zero turns the source off.
    ///
    /// Default: 256.
    pub fn max_exchanged_peers(&mut self, max: usize) -> &mut Self {
        self.max_exchanged_peers = max;
        self
    }

    /// The ideal range of connected peers (both directions) on the public network:
    /// below `low` the policy dials up to
    /// [`max_outbound_connections`](Self::max_outbound_connections); at or above it, only up
    /// to [`min_outbound_connections`](Self::min_outbound_connections); above `high` it
    /// closes the worst-scoring inbound peer that is not whitelisted, one per check.
    ///
    /// Default: 30 and 35 (NEAR's `ideal_connections_lo` and `_hi`). `low` must not exceed
    /// `high`.
    pub fn target_peers(&mut self, low: usize, high: usize) -> &mut Self {
        self.target_peers_low = low;
        self.target_peers_high = high;
        self
    }

    /// Outbound connections kept on the public network even when the target range is
    /// reached. Capped by [`max_outbound_connections`](Self::max_outbound_connections).
    ///
    /// Default: 5 (NEAR's `minimum_outbound_peers`).
    pub fn min_outbound_connections(&mut self, min: usize) -> &mut Self {
        self.min_outbound_connections = min;
        self
    }

    /// Peers that bypass the connection limits: the facade admits their inbound connections
    /// over its inbound limits, and the policy never closes them to get back into the target
    /// range.
    ///
    /// Default: none.
    pub fn whitelist(&mut self, peers: impl IntoIterator<Item = PeerId>) -> &mut Self {
        self.whitelist = peers.into_iter().collect();
        self
    }

    /// The whitelisted peers.
    pub fn whitelisted(&self) -> &[PeerId] {
        &self.whitelist
    }

    /// The discovery file, if one is set.
    pub fn discovery_file_path(&self) -> Option<&Path> {
        self.discovery_file.as_deref()
    }

    /// Checks the settings the manager cannot run with: zero intervals (a zero-period timer
    /// would spin) and zero channel capacities.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |setting, reason| Err(Error::InvalidConfig { setting, reason });
        if self.connectivity_check_interval.is_zero() {
            return invalid("connectivity_check_interval_ms", "must not be zero");
        }
        if self.discovery_file.is_some() && self.discovery_file_interval.is_zero() {
            return invalid("discovery_file_interval_ms", "must not be zero");
        }
        if self.connection_events_capacity == 0 {
            return invalid("connection_events_capacity", "must not be zero");
        }
        if self.actions_capacity == 0 {
            return invalid("actions_capacity", "must not be zero");
        }
        if self.target_peers_low > self.target_peers_high {
            return invalid("target_peers_low", "must not exceed target_peers_high");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            network: NetworkKind::default(),
            connectivity_check_interval: Duration::from_millis(CONNECTIVITY_CHECK_INTERVAL_MS),
            backoff_base: Duration::from_millis(BACKOFF_BASE_MS),
            max_backoff: Duration::from_millis(MAX_BACKOFF_MS),
            max_backoff_jitter: Duration::from_millis(MAX_BACKOFF_JITTER_MS),
            max_outbound_connections: MAX_OUTBOUND_CONNECTIONS,
            discovery_file: None,
            discovery_file_interval: Duration::from_millis(DISCOVERY_FILE_INTERVAL_MS),
            seeds: HashMap::new(),
            connection_events_capacity: CHANNEL_CAPACITY,
            actions_capacity: CHANNEL_CAPACITY,
            full_retry_delay: Duration::from_millis(FULL_RETRY_DELAY_MS),
            banned_retry_delay: Duration::from_millis(BANNED_RETRY_DELAY_MS),
            mismatch_retry_delay: Duration::from_millis(MISMATCH_RETRY_DELAY_MS),
            max_refusal_delay: Duration::from_millis(MAX_REFUSAL_DELAY_MS),
            max_exchanged_peers: MAX_EXCHANGED_PEERS,
            target_peers_low: TARGET_PEERS_LOW,
            target_peers_high: TARGET_PEERS_HIGH,
            min_outbound_connections: MIN_OUTBOUND_CONNECTIONS,
            whitelist: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are architecture.md's: 5 s check, 2 s base, 60 s cap, 100 ms jitter, 6
    /// outbound connections.
    #[test]
    fn defaults_match_the_architecture() {
        let config = Config::default();
        assert_eq!(config.network, NetworkKind::Public);
        assert_eq!(config.connectivity_check_interval, Duration::from_secs(5));
        assert_eq!(config.backoff_base, Duration::from_secs(2));
        assert_eq!(config.max_backoff, Duration::from_secs(60));
        assert_eq!(config.max_backoff_jitter, Duration::from_millis(100));
        assert_eq!(config.max_outbound_connections, 6);
        assert_eq!(config.discovery_file_path(), None);
        assert!(config.validate().is_ok());
    }

    /// An empty document is the default config, a full one round-trips through TOML, and an
    /// unknown field is an error rather than silently ignored.
    #[test]
    fn config_round_trips_through_toml() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());

        let mut config = Config::default();
        config
            .network(NetworkKind::Validator)
            .max_backoff(Duration::from_secs(30))
            .discovery_file(Some(PathBuf::from("/tmp/peers.toml")));
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("network = \"validator\""), "{text}");
        assert!(text.contains("max_backoff_ms = 30000"), "{text}");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), config);

        assert!(toml::from_str::<Config>("max_outbound = 3").is_err());
    }

    /// The example in docs/configuration.md parses (with a real key in place of the
    /// placeholder), so the operator docs cannot drift from the serde names.
    #[test]
    fn config_md_example_parses() {
        let doc = include_str!("../../../docs/configuration.md");
        let marker = doc
            .find("<!-- connectivity-manager example")
            .expect("the example's marker");
        let start =
            marker + doc[marker..].find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("end of the block");
        let example = doc[start..end].replace("<64 hex digits>", &"11".repeat(32));
        let config: Config = toml::from_str(&example).unwrap();
        assert_eq!(config.network, NetworkKind::Validator);
        assert_eq!(config.seeds.len(), 1);
        assert_eq!(
            config.discovery_file_path(),
            Some(Path::new("/etc/peerlane/peers.toml"))
        );
    }

    /// Zero intervals and capacities are typed errors naming the setting.
    #[test]
    fn zero_intervals_and_capacities_are_rejected() {
        let mut config = Config::default();
        config.connectivity_check_interval(Duration::ZERO);
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig {
                setting: "connectivity_check_interval_ms",
                ..
            })
        ));

        let mut config = Config::default();
        config.actions_capacity(0);
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidConfig {
                setting: "actions_capacity",
                ..
            })
        ));

        // A zero file interval only matters when there is a file.
        let mut config = Config::default();
        config.discovery_file_interval(Duration::ZERO);
        assert!(config.validate().is_ok());
        config.discovery_file(Some(PathBuf::from("peers.toml")));
        assert!(config.validate().is_err());
    }
}
