//! The `peerlane node` configuration: the TOML config file (a `NetworkConfig` at the top level
//! plus the `[apps]`, `[admin]`, `[node]` and `[peer_store]` tables and `identity.key_file`),
//! the flags over it, the file `--help` prints with every default, and the checks that turn a
//! mistake (a typo, a seed without a key, apps that do not fit together) into a one-line error
//! before anything runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use consensus::ConsensusConfig;
use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;
use peerlane::{DiscoveredPeer, NetworkConfig};
use serde::{Deserialize, Serialize};
use state_sync::Retention;
use store::PeerStoreConfig;
use wire::{ChainId, NetworkId};

use crate::admin::{self, AdminConfig, AdminSettings};
use crate::block_archive::BlockStoreSettings;

/// Default of `apps.consensus_round_timeout_ms`: the consensus crate's own default.
pub(crate) const CONSENSUS_ROUND_TIMEOUT: Duration = Duration::from_secs(1);

/// The most `apps.mempool_load_tps` may ask for: far beyond what a mempool of 10,000 pending
/// transactions absorbs, and low enough that the generator's work per tick stays small.
pub(crate) const MAX_LOAD_TPS: u64 = 100_000;

/// Default of `node.status_interval_ms`: how often the status line is logged.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What the config file holds: the network's `NetworkConfig` (its fields at the top level, so
/// a plain `NetworkConfig` file stays valid), the `[apps]`, `[admin]` and `[node]` tables, and
/// `identity.key_file`.
#[derive(Debug, Default)]
pub(crate) struct NodeConfig {
    /// The network.
    pub(crate) network: NetworkConfig,
    /// Which example applications run on it.
    pub(crate) apps: AppsConfig,
    /// The admin API.
    pub(crate) admin: AdminConfig,
    /// The node's own settings.
    pub(crate) node: NodeSettings,
    /// The `[peer_store]` table: bounds of the peer store under `node.data_dir`.
    pub(crate) peer_store: PeerStoreConfig,
    /// `identity = { key_file = "…" }`: the key file, relative to the config file's directory
    /// (a `--key-file` flag wins).
    pub(crate) key_file: Option<PathBuf>,
}

/// The `[node]` table: how the node reports on itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NodeSettings {
    /// How often the status line is logged (and `GET /status` refreshed). Default
    /// [`STATUS_INTERVAL`]; at least 10 ms.
    #[serde(rename = "status_interval_ms", with = "netcore::serde_duration_ms")]
    pub(crate) status_interval: Duration,
    /// The address other nodes dial, printed instead of the listen address when that is
    /// unspecified (`/ip4/0.0.0.0/…`), e.g. `/dns/node1.example.com/tcp/6180` (its key and
    /// handshake suffix are added). Default: this host's address on its default route.
    pub(crate) advertised_address: Option<NetworkAddress>,
    /// Where the node keeps what outlives it (`<data_dir>/peerlane.redb`: peers, their scores
    /// and connections, bans), created if missing; relative to the config file's directory.
    /// Default: none, so the node keeps nothing across restarts.
    pub(crate) data_dir: Option<PathBuf>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            status_interval: STATUS_INTERVAL,
            advertised_address: None,
            data_dir: None,
        }
    }
}

/// The `identity` table when it names a key file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityKeyFile {
    key_file: PathBuf,
}

/// The `[apps]` table: which example applications the node runs, and their settings. Every
/// field is optional; unknown ones are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AppsConfig {
    /// State sync: serves the node's block store and catches up from peers that are ahead.
    /// Default true.
    pub(crate) state_sync: bool,
    /// The gossiping mempool. Default false.
    pub(crate) mempool: bool,
    /// Round-robin-leader consensus, building blocks from the mempool (so it needs `mempool`);
    /// its commits feed the state-sync store when `state_sync` is on. Default false.
    pub(crate) consensus: bool,
    /// Transactions per second the built-in load generator submits to the local mempool (each
    /// 256–512 random bytes); 0 runs no generator. Default 0.
    pub(crate) mempool_load_tps: u64,
    /// The consensus validator set, as peer ids; leaders go round robin in peer-id order,
    /// whatever the order here, so every validator can list them in its own order. Default:
    /// this node and its seeds of role `validator` (on the validator network, every `--seed`).
    pub(crate) consensus_validators: Option<Vec<PeerId>>,
    /// A consensus round with no commit ends after this long; more than the leader's 100 ms
    /// proposal delay. Default [`CONSENSUS_ROUND_TIMEOUT`].
    #[serde(
        rename = "consensus_round_timeout_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub(crate) consensus_round_timeout: Duration,
    /// Blocks the state-sync store keeps in memory (the newest). Default 1,000.
    pub(crate) state_sync_memory_max_blocks: usize,
    /// Bytes of blocks the state-sync store keeps in memory. Default 8 MiB (8388608).
    pub(crate) state_sync_memory_max_bytes: usize,
    /// Blocks kept in the on-disk archive under `node.data_dir` (the oldest go first; no
    /// archive without a data dir). Default 100,000.
    pub(crate) state_sync_archive_max_blocks: u64,
    /// Bytes of blocks kept in the on-disk archive. Default 1 GiB (1073741824).
    pub(crate) state_sync_archive_max_bytes: u64,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            state_sync: true,
            mempool: false,
            consensus: false,
            mempool_load_tps: 0,
            consensus_validators: None,
            consensus_round_timeout: CONSENSUS_ROUND_TIMEOUT,
            state_sync_memory_max_blocks: Retention::DEFAULT_MAX_BLOCKS,
            state_sync_memory_max_bytes: Retention::DEFAULT_MAX_BYTES,
            state_sync_archive_max_blocks: store::MAX_BLOCKS,
            state_sync_archive_max_bytes: store::MAX_BLOCK_BYTES,
        }
    }
}

impl AppsConfig {
    /// The bounds of the state-sync store.
    pub(crate) fn block_store(&self) -> BlockStoreSettings {
        BlockStoreSettings {
            memory: Retention {
                max_blocks: self.state_sync_memory_max_blocks,
                max_bytes: self.state_sync_memory_max_bytes,
            },
            archive: store::BlockLimits {
                max_blocks: self.state_sync_archive_max_blocks,
                max_bytes: self.state_sync_archive_max_bytes,
            },
        }
    }

    /// Checks the rules serde cannot express; the error names the field.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.consensus && !self.mempool {
            bail!("apps.consensus: needs apps.mempool = true (blocks come from the mempool)");
        }
        if self.mempool_load_tps > 0 && !self.mempool {
            bail!("apps.mempool_load_tps: needs apps.mempool = true");
        }
        if self.state_sync_memory_max_blocks == 0 || self.state_sync_archive_max_blocks == 0 {
            bail!(
                "apps.state_sync_memory_max_blocks, apps.state_sync_archive_max_blocks: must be at least 1"
            );
        }
        if self.mempool_load_tps > MAX_LOAD_TPS {
            bail!("apps.mempool_load_tps: must be at most {MAX_LOAD_TPS}");
        }
        let delay = ConsensusConfig::new(NetworkId::Validator, Vec::new()).proposal_delay;
        if self.consensus_round_timeout <= delay {
            bail!(
                "apps.consensus_round_timeout_ms: must be more than the {} ms proposal delay",
                delay.as_millis()
            );
        }
        Ok(())
    }

    /// The consensus validator set for node `me` with `seeds`, in leader (peer-id) order.
    pub(crate) fn validators(
        &self,
        me: PeerId,
        seeds: &std::collections::BTreeMap<PeerId, DiscoveredPeer>,
    ) -> anyhow::Result<Vec<PeerId>> {
        let mut validators = match &self.consensus_validators {
            Some(listed) => listed.clone(),
            None => std::iter::once(me)
                .chain(
                    seeds
                        .iter()
                        .filter(|(_, seed)| seed.role == PeerRole::Validator)
                        .map(|(peer_id, _)| *peer_id),
                )
                .collect(),
        };
        validators.sort();
        let listed = validators.len();
        validators.dedup();
        if validators.len() != listed {
            bail!("apps.consensus_validators: a peer id is listed twice");
        }
        if !validators.contains(&me) {
            bail!("apps.consensus_validators: this node ({me}) is not in the list");
        }
        Ok(validators)
    }
}

/// Arguments of `peerlane node`. Flags override the config file's fields.
#[derive(Debug, clap::Args)]
#[command(after_long_help = config_file_help())]
pub(crate) struct NodeArgs {
    /// A TOML config: `NetworkConfig` fields, an `[apps]` and an `[admin]` table (every
    /// field optional; unknown fields are refused; `--help` lists them all with defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen, e.g. /ip4/127.0.0.1/tcp/6180 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<NetworkAddress>,
    /// Which network this is.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    /// The chain id; both ends must agree.
    #[arg(long)]
    chain_id: Option<u8>,
    /// A file holding the private key (64 hex digits, as `peerlane keygen` writes it).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// A peer to trust and dial: `/…/noise-ik/<key>/handshake/0`, optionally as
    /// `<peer id>@<address>` (else the peer id derived from the key). Repeatable. Its role
    /// is `validator` on the validator network, `upstream` elsewhere.
    #[arg(long, value_name = "[PEER_ID@]ADDR")]
    seed: Vec<String>,
    /// Serve the admin API over HTTP on HOST:PORT or localhost:PORT (port 0 picks a free
    /// port): `GET /status` (JSON), `GET /health` (200, or 503 with the reason), `GET /metrics`
    /// (Prometheus text), `GET /peers` (JSON), `POST /peers` with
    /// `{"peer_id": "…", "address": "…"}` (dial), `DELETE /peers/<peer id>` (disconnect),
    /// `GET /bans`, `POST /bans` with `{"peer_id": "…"}` (ban and disconnect),
    /// `DELETE /bans/<peer id>` (unban). Overrides `admin.address`.
    /// A loopback address (`127.0.0.1`, `[::1]`) serves only requests whose Host is a loopback
    /// name; any other address needs a token.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_admin_address)]
    admin: Option<SocketAddr>,
    /// A file holding the admin API's bearer token (16 to 1024 visible ASCII characters):
    /// every request must then send `Authorization: Bearer <token>`. The token may come from
    /// the PEERLANE_ADMIN_TOKEN environment variable instead (not both). Overrides
    /// `admin.token_file`. [default: none]
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// How long an admin API connection has to send a complete request head (on connecting
    /// and between keep-alive requests) before it is closed. Overrides
    /// `admin.header_timeout_ms`. [default: 10000]
    #[arg(long, value_name = "MS")]
    admin_header_timeout_ms: Option<u64>,
    /// The most admin API connections served at once; one more is answered 503 and closed.
    /// Overrides `admin.max_connections`. [default: 16]
    #[arg(long, value_name = "N")]
    admin_max_connections: Option<usize>,
    /// Keep peers, their scores and bans in DIR/peerlane.redb across restarts (created if
    /// missing). Overrides `node.data_dir`. [default: none: nothing is kept]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// The end of `peerlane node --help`: every key of the config file with its default, written
/// from the `Default` impls at run time so that it cannot drift from them. The TOML part is a
/// valid config file as it stands (indented, which TOML allows).
fn config_file_help() -> String {
    const INTRO: [&str; 9] = [
        "Config file settings (defaults):",
        "  Every key --config FILE may set, with its default; a key left out keeps it. What each",
        "  means: docs/configuration.md. Not shown, as they default to none: identity (a fresh key",
        "  each run), auth_mode (mutual on the validator network, maybe_mutual elsewhere),",
        "  apps.consensus_validators (this node and its validator seeds), admin.address,",
        "  admin.token_file, node.advertised_address, node.data_dir (no store) and",
        "  identity.key_file (identity = { key_file = \"node.key\" }). connectivity.network is",
        "  derived from network_id and connectivity.seeds must stay empty (seeds go in [seeds]).",
        "",
    ];
    let toml = config_file_toml(NodeConfig::default())
        .unwrap_or_else(|err| format!("# cannot write the defaults: {err}"));
    let mut help = INTRO.join("\n");
    for line in toml.lines() {
        help.push('\n');
        if !line.is_empty() {
            help.push_str("    ");
        }
        help.push_str(line);
    }
    help
}

/// `config` as a config file: the `NetworkConfig` fields at the top level, then `[apps]` and
/// `[admin]`. Fields that are none are left out.
fn config_file_toml(config: NodeConfig) -> Result<String, toml::ser::Error> {
    /// The whole file.
    #[derive(Serialize)]
    struct File {
        #[serde(flatten)]
        network: NetworkConfig,
        apps: AppsConfig,
        admin: AdminConfig,
        node: NodeSettings,
        peer_store: PeerStoreConfig,
    }
    let NodeConfig {
        network,
        apps,
        node,
        peer_store,
        key_file: _,
        admin,
    } = config;
    toml::to_string(&File {
        network,
        apps,
        node,
        peer_store,
        admin,
    })
}

/// The `--network` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum NetworkArg {
    /// The validator network (mutual authentication).
    Validator,
    /// The validator full node network.
    Vfn,
    /// The public network.
    Public,
}

impl From<NetworkArg> for NetworkId {
    fn from(arg: NetworkArg) -> Self {
        match arg {
            NetworkArg::Validator => Self::Validator,
            NetworkArg::Vfn => Self::Vfn,
            NetworkArg::Public => Self::Public,
        }
    }
}

/// The config file with the flags applied, and the admin API's settings (`None` without an
/// address).
pub(crate) fn config(args: NodeArgs) -> anyhow::Result<(NodeConfig, Option<AdminSettings>)> {
    let NodeConfig {
        network: mut config,
        apps,
        admin: mut admin_config,
        node: mut settings,
        peer_store,
        key_file,
    } = match &args.config {
        Some(path) => read_config(path)?,
        None => NodeConfig::default(),
    };
    // Checked like `--seed`: a seed without a key is never dialed, which fails silently.
    if let Some(path) = &args.config {
        for (peer_id, seed) in &config.seeds {
            for addr in &seed.addresses {
                check_seed_address(addr)
                    .with_context(|| format!("config {}: seeds.{peer_id}", path.display()))?;
            }
        }
    }
    if let Some(listen) = args.listen {
        config.listen_address = listen;
    }
    if let Some(network) = args.network {
        config.network_id = network.into();
    }
    if let Some(chain_id) = args.chain_id {
        config.chain_id = ChainId::new(chain_id);
    }
    let key_file = args.key_file.clone().or_else(|| {
        // Relative to the config file, so that the pair moves together.
        let dir = args.config.as_deref().and_then(Path::parent);
        key_file.map(|file| dir.map_or(file.clone(), |dir| dir.join(&file)))
    });
    if let Some(path) = &key_file {
        if config.identity.is_some() && args.key_file.is_none() {
            bail!("identity: give either identity.key_file or identity.private_key, not both");
        }
        config.identity = Some(crate::keygen::read_key_file(path)?);
    }
    let role = if config.network_id.is_validator_network() {
        PeerRole::Validator
    } else {
        PeerRole::Upstream
    };
    for seed in &args.seed {
        let (peer_id, addr) = parse_seed(seed).with_context(|| format!("--seed {seed}"))?;
        config
            .seeds
            .insert(peer_id, DiscoveredPeer::new(role, [addr], []));
    }
    config.validate()?;
    apps.validate()?;
    if let Some(addr) = args.admin {
        admin_config.address = Some(addr);
    }
    if let Some(path) = args.admin_token_file {
        admin_config.token_file = Some(path);
    }
    if let Some(ms) = args.admin_header_timeout_ms {
        admin_config.header_timeout = Duration::from_millis(ms);
    }
    if let Some(max) = args.admin_max_connections {
        admin_config.max_connections = max;
    }
    if let Some(dir) = args.data_dir {
        settings.data_dir = Some(dir);
    } else if let Some(dir) = settings.data_dir.take() {
        // Relative to the config file, as the key file is.
        let base = args.config.as_deref().and_then(Path::parent);
        settings.data_dir = Some(base.map_or(dir.clone(), |base| base.join(&dir)));
    }
    if settings.status_interval < Duration::from_millis(10) {
        bail!("node.status_interval_ms: must be at least 10");
    }
    let admin = admin_config.resolve(std::env::var_os(admin::TOKEN_ENV))?;
    Ok((
        NodeConfig {
            network: config,
            apps,
            admin: admin_config,
            node: settings,
            peer_store,
            key_file,
        },
        admin,
    ))
}

/// Reads a TOML config file; a parse error names the file and line.
fn read_config(path: &Path) -> anyhow::Result<NodeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    parse_config(&text).map_err(|(section, err)| {
        let line = err
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1);
        let at = line.map_or(String::new(), |line| format!(" (line {line})"));
        anyhow!("config {}{at}: {section}{}", path.display(), err.message())
    })
}

/// Parses a config file's text: the `[apps]` and `[admin]` tables are taken out, the rest is
/// the `NetworkConfig` (which refuses unknown fields, so a typo anywhere is caught). All parts
/// are read from the spanned document, so errors keep their position. An error comes with the
/// section it is in (`"[apps] "`, `"[admin] "` or nothing).
fn parse_config(text: &str) -> Result<NodeConfig, (&'static str, toml::de::Error)> {
    let document = toml::de::DeTable::parse(text).map_err(|err| ("", err))?;
    let span = document.span();
    let mut table = document.into_inner();
    let apps = match table.remove("apps") {
        Some(apps) => AppsConfig::deserialize(toml::de::ValueDeserializer::from(apps))
            .map_err(|err| ("[apps] ", err))?,
        None => AppsConfig::default(),
    };
    let admin = match table.remove("admin") {
        Some(admin) => AdminConfig::deserialize(toml::de::ValueDeserializer::from(admin))
            .map_err(|err| ("[admin] ", err))?,
        None => AdminConfig::default(),
    };
    let node = match table.remove("node") {
        Some(node) => NodeSettings::deserialize(toml::de::ValueDeserializer::from(node))
            .map_err(|err| ("[node] ", err))?,
        None => NodeSettings::default(),
    };
    let peer_store = match table.remove("peer_store") {
        Some(peer_store) => {
            PeerStoreConfig::deserialize(toml::de::ValueDeserializer::from(peer_store))
                .map_err(|err| ("[peer_store] ", err))?
        }
        None => PeerStoreConfig::default(),
    };
    let names_key_file = table
        .get("identity")
        .and_then(|identity| identity.get_ref().as_table())
        .is_some_and(|identity| identity.contains_key("key_file"));
    let key_file = if names_key_file {
        let identity = table.remove("identity").expect("checked just above");
        let IdentityKeyFile { key_file } =
            IdentityKeyFile::deserialize(toml::de::ValueDeserializer::from(identity))
                .map_err(|err| ("identity: ", err))?;
        Some(key_file)
    } else {
        None
    };
    let network = NetworkConfig::deserialize(toml::de::Deserializer::from(toml::Spanned::new(
        span, table,
    )))
    .map_err(|err| ("", err))?;
    Ok(NodeConfig {
        network,
        apps,
        admin,
        node,
        peer_store,
        key_file,
    })
}

/// `--admin`'s value: an IP and port, or `localhost:PORT` (the IPv4 loopback).
fn parse_admin_address(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|err| format!("port {port:?}: {err}"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|err| {
        format!("{err}: expected IP:PORT (127.0.0.1:9101, [::1]:9101) or localhost:PORT")
    })
}

/// `[<peer id>@]<address>`; without a peer id, the one derived from the address's key.
fn parse_seed(seed: &str) -> anyhow::Result<(PeerId, NetworkAddress)> {
    let (peer_id, addr) = match seed.split_once('@') {
        Some((peer_id, addr)) => (Some(peer_id.parse::<PeerId>()?), addr),
        None => (None, seed),
    };
    let addr: NetworkAddress = addr.parse()?;
    let key = check_seed_address(&addr)?;
    let peer_id = peer_id.unwrap_or_else(|| noise::keys::peer_id_from_public_key(&key));
    Ok((peer_id, addr))
}

/// A seed's address must carry the key to authenticate it and the handshake version: one
/// without is never dialed. Returns the key.
fn check_seed_address(addr: &NetworkAddress) -> anyhow::Result<noise::PublicKey> {
    match (addr.noise_public_key(), addr.handshake_version()) {
        (Some(key), Some(0)) => Ok(key),
        _ => bail!(
            "address {addr} must end in /noise-ik/<key>/handshake/0 (`peerlane key show` \
             prints it for a key file)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::new([n; 32])
    }

    /// A file that is a plain `NetworkConfig` still reads, with the default apps (state sync
    /// only); an `[apps]` table sets the apps, and leaves the network fields alone.
    #[test]
    fn network_config_files_stay_valid_and_apps_are_optional() {
        let plain = "network_id = \"validator\"\nchain_id = 9\n[health_check]\ninterval_ms = 200\n";
        let config = parse_config(plain).unwrap();
        assert_eq!(config.network.network_id, NetworkId::Validator);
        assert_eq!(
            config.network.health_check.interval,
            Duration::from_millis(200)
        );
        assert_eq!(config.apps, AppsConfig::default());
        assert!(config.apps.state_sync && !config.apps.mempool && !config.apps.consensus);

        let with_apps = format!(
            "{plain}[apps]\nmempool = true\nconsensus = true\nstate_sync = false\n\
             mempool_load_tps = 50\nconsensus_round_timeout_ms = 500\n\
             consensus_validators = [\"{}\"]\nstate_sync_memory_max_blocks = 10\n\
             state_sync_memory_max_bytes = 1000\nstate_sync_archive_max_blocks = 20\n\
             state_sync_archive_max_bytes = 2000\n",
            peer(1)
        );
        let config = parse_config(&with_apps).unwrap();
        assert_eq!(config.network.chain_id, ChainId::new(9));
        assert_eq!(
            config.apps,
            AppsConfig {
                state_sync: false,
                mempool: true,
                consensus: true,
                mempool_load_tps: 50,
                consensus_validators: Some(vec![peer(1)]),
                consensus_round_timeout: Duration::from_millis(500),
                state_sync_memory_max_blocks: 10,
                state_sync_memory_max_bytes: 1000,
                state_sync_archive_max_blocks: 20,
                state_sync_archive_max_bytes: 2000,
            }
        );
        config.apps.validate().unwrap();
        let block_store = config.apps.block_store();
        assert_eq!(
            (block_store.memory.max_blocks, block_store.archive.max_bytes),
            (10, 2000)
        );
    }

    /// A typo is refused wherever it is, and the error says where.
    #[test]
    fn unknown_fields_are_refused_in_both_parts() {
        let (section, err) = parse_config("chain_id = 4\n[apps]\nmempol = true\n").unwrap_err();
        assert_eq!(section, "[apps] ");
        assert!(err.message().contains("mempol"), "{err}");
        assert_eq!(err.span().map(|span| span.start), Some(20));
        let (section, err) = parse_config("[apps]\nmempool = true\n[helth_check]\n").unwrap_err();
        assert_eq!(section, "");
        assert!(err.message().contains("helth_check"), "{err}");
        let (_, err) = parse_config("[apps]\nmempool = 3\n").unwrap_err();
        assert!(err.message().contains("bool"), "{err}");
    }

    /// Rules between the fields, each naming the field.
    #[test]
    fn validate_names_the_field() {
        let apps = |f: fn(&mut AppsConfig)| {
            let mut apps = AppsConfig::default();
            f(&mut apps);
            apps.validate().unwrap_err().to_string()
        };
        assert!(apps(|a| a.consensus = true).starts_with("apps.consensus:"));
        assert!(apps(|a| a.mempool_load_tps = 5).starts_with("apps.mempool_load_tps:"));
        assert!(
            apps(|a| {
                a.mempool = true;
                a.mempool_load_tps = MAX_LOAD_TPS + 1;
            })
            .starts_with("apps.mempool_load_tps:")
        );
        assert!(
            apps(|a| a.consensus_round_timeout = Duration::from_millis(100))
                .starts_with("apps.consensus_round_timeout_ms:")
        );
    }

    /// By default the validators are this node and its validator seeds, in peer-id order; a
    /// listed set is sorted too, must hold this node and must not repeat a peer.
    #[test]
    fn the_validator_set_defaults_to_this_node_and_its_validator_seeds() {
        let address: NetworkAddress = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let seeds: BTreeMap<PeerId, DiscoveredPeer> = [
            (
                peer(3),
                DiscoveredPeer::new(PeerRole::Validator, [address.clone()], []),
            ),
            (
                peer(1),
                DiscoveredPeer::new(PeerRole::Validator, [address.clone()], []),
            ),
            (
                peer(4),
                DiscoveredPeer::new(PeerRole::Upstream, [address], []),
            ),
        ]
        .into();
        let apps = AppsConfig::default();
        assert_eq!(
            apps.validators(peer(2), &seeds).unwrap(),
            vec![peer(1), peer(2), peer(3)]
        );
        let listed = |ids: Vec<PeerId>| AppsConfig {
            consensus_validators: Some(ids),
            ..AppsConfig::default()
        };
        assert_eq!(
            listed(vec![peer(9), peer(2)])
                .validators(peer(2), &seeds)
                .unwrap(),
            vec![peer(2), peer(9)]
        );
        let err = listed(vec![peer(9)])
            .validators(peer(2), &seeds)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("apps.consensus_validators:"),
            "{err}"
        );
        let err = listed(vec![peer(2), peer(2)])
            .validators(peer(2), &seeds)
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    /// The node config example in docs/configuration.md parses and validates (with real keys
    /// in place of the placeholders), so the docs cannot drift from the serde names.
    #[test]
    fn configuration_md_node_example_parses() {
        let doc = include_str!("../../../docs/configuration.md");
        let marker = doc
            .find("<!-- node config example")
            .expect("the example's marker");
        let start =
            marker + doc[marker..].find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("end of the block");
        let example = doc[start..end]
            .replace("<peer id>", &peer(7).to_string())
            .replace("<key>", &"11".repeat(32));
        let config = parse_config(&example).unwrap_or_else(|(_, err)| panic!("{err}"));
        config.network.validate().unwrap();
        config.apps.validate().unwrap();
        assert!(config.apps.mempool && config.apps.consensus && config.apps.state_sync);
        assert_eq!(config.network.network_id, NetworkId::Validator);
        assert_eq!(
            config.admin.address,
            Some("127.0.0.1:9101".parse().unwrap())
        );
        assert!(config.admin.token_file.is_some());
    }

    /// The defaults `peerlane node --help` prints are a config file that parses back to the
    /// same settings and validates.
    #[test]
    fn help_config_defaults_parse_back() {
        let toml = config_file_toml(NodeConfig::default()).unwrap();
        let help = config_file_help();
        let listed = &help[help.find("\n    network_id = ").expect("the TOML part")..];
        let config = parse_config(listed).unwrap_or_else(|(_, err)| panic!("{err}"));
        config.network.validate().unwrap();
        config.apps.validate().unwrap();
        assert_eq!(config.apps, AppsConfig::default());
        assert_eq!(config.admin, AdminConfig::default());
        assert_eq!(config_file_toml(config).unwrap(), toml);
    }

    /// `peerlane node --help` shows the admin limits' defaults as they are.
    #[test]
    fn help_shows_the_admin_defaults() {
        use clap::Args as _;
        let help = NodeArgs::augment_args(clap::Command::new("node"))
            .render_long_help()
            .to_string();
        let defaults = AdminConfig::default();
        for (flag, default) in [
            (
                "--admin-header-timeout-ms",
                defaults.header_timeout.as_millis().to_string(),
            ),
            (
                "--admin-max-connections",
                defaults.max_connections.to_string(),
            ),
            ("--admin-token-file", "none".to_owned()),
        ] {
            let start = help
                .find(flag)
                .unwrap_or_else(|| panic!("{flag} in {help}"));
            let entry = &help[start..];
            let entry = &entry[..entry.find("\n\n").unwrap_or(entry.len())];
            assert!(entry.contains(&format!("[default: {default}]")), "{entry}");
        }
    }
}
