//! `peerlane node`: one network of a node, from a TOML `NetworkConfig` and flags, running
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;
use peerlane::{
    ConnectionNotification, Identity, NetworkBuilder, NetworkConfig, SeedPeer, TransportKind,
};
use prometheus_client::registry::Registry;
use state_sync::{DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, StateSync, StateSyncMsg, StoreHandle};
use tokio_util::sync::CancellationToken;
use wire::{ChainId, NetworkId};

/// Arguments of `peerlane node`. Flags override the config file's fields.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// A TOML `NetworkConfig` (every field optional; unknown fields are refused).
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
    /// Serve the admin API over HTTP on HOST:PORT (port 0 picks a free port): `GET /metrics`
    /// (Prometheus text), `GET /peers` (JSON), `POST /peers` with
    /// `{"peer_id": "…", "address": "…"}` (dial), `DELETE /peers/<peer id>` (disconnect),
    /// `GET /bans`, `POST /bans` with `{"peer_id": "…"}` (ban and disconnect),
    /// `DELETE /bans/<peer id>` (unban).
    /// Unauthenticated: bind it to a loopback or otherwise private address.
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<SocketAddr>,
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

/// Reads the config, starts the network with state sync on it, prints where it listens, and
/// runs until SIGINT or SIGTERM.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let admin = args.admin;
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(node(config, admin))
}

/// The config file with the flags applied.
fn config(args: NodeArgs) -> anyhow::Result<NetworkConfig> {
    let mut config = match &args.config {
        Some(path) => read_config(path)?,
        None => NetworkConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen_address = listen;
    }
    if let Some(network) = args.network {
        config.network_id = network.into();
    }
    if let Some(chain_id) = args.chain_id {
        config.chain_id = ChainId::new(chain_id);
    }
    if let Some(path) = &args.key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let identity =
            Identity::from_hex(&text).with_context(|| format!("key file {}", path.display()))?;
        config.identity = Some(identity);
    }
    let role = if config.network_id.is_validator_network() {
        PeerRole::Validator
    } else {
        PeerRole::Upstream
    };
    for seed in &args.seed {
        let (peer_id, addr) = parse_seed(seed).with_context(|| format!("--seed {seed}"))?;
        config.seeds.insert(peer_id, SeedPeer::new(role, [addr]));
    }
    config.validate()?;
    Ok(config)
}

/// Reads a TOML `NetworkConfig`; a parse error names the file and line.
fn read_config(path: &Path) -> anyhow::Result<NetworkConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start].lines().count().max(1));
        let at = line.map_or(String::new(), |line| format!(" (line {line})"));
        anyhow!("config {}{at}: {}", path.display(), err.message())
    })
}

/// `[<peer id>@]<address>`; without a peer id, the one derived from the address's key.
fn parse_seed(seed: &str) -> anyhow::Result<(PeerId, NetworkAddress)> {
    let (peer_id, addr) = match seed.split_once('@') {
        Some((peer_id, addr)) => (Some(peer_id.parse::<PeerId>()?), addr),
        None => (None, seed),
    };
    let addr: NetworkAddress = addr.parse()?;
    let Some(key) = addr.noise_public_key() else {
        bail!("the address has no /noise-ik/<key>");
    };
    let peer_id = peer_id.unwrap_or_else(|| noise::keys::peer_id_from_public_key(&key));
    Ok((peer_id, addr))
}

async fn node(config: NetworkConfig, admin: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::default();
    let network_id = config.network_id;
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    let (client, events) = builder.add_application::<StateSyncMsg>(
        DIRECT_SEND_PROTOCOLS,
        RPC_PROTOCOLS,
        Default::default(),
    )?;
    let network = Arc::new(builder.build()?);
    // Nothing registers after the build: the admin API encodes the registry as it is.
    let registry = Arc::new(registry);
    let shutdown = CancellationToken::new();
    // Bound before the `listening on` line, so whoever reads it can use the admin API.
    let admin = match admin {
        Some(addr) => {
            let (listener, local) = crate::admin::bind(addr).await?;
            eprintln!("admin API on http://{local}");
            Some(tokio::spawn(crate::admin::serve(
                listener,
                Arc::clone(&network),
                Arc::clone(&registry),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    println!("listening on {}", network.listen_address());
    eprintln!("peer id {} on the {network_id} network", network.peer_id());

    let sync = StateSync::new(
        state_sync::Config::default(),
        client,
        events,
        StoreHandle::new(),
    );
    let sync = tokio::spawn(sync.run(shutdown.clone().cancelled_owned()));
    let mut notifications = network.peers_and_metadata().subscribe();
    let signal = termination();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = &mut signal => {
                result?;
                break;
            }
            Some(notification) = notifications.recv() => match notification {
                ConnectionNotification::NewPeer(metadata, _) => {
                    eprintln!("peer connected: {}", metadata.remote_peer_id);
                }
                ConnectionNotification::LostPeer(metadata, _, _) => {
                    eprintln!("peer disconnected: {}", metadata.remote_peer_id);
                }
            },
        }
    }
    eprintln!("shutting down");
    shutdown.cancel();
    let _ = sync.await;
    if let Some(admin) = admin {
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("admin API: {err}"),
            Err(err) => eprintln!("admin API task: {err}"),
        }
    }
    // The admin API's handlers, which held the other handles, are gone.
    let network = Arc::into_inner(network).context("the network is still in use")?;
    network.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGINT or (on unix) SIGTERM.
async fn termination() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")
    }
}
