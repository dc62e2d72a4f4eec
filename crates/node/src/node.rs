//! `peerlane node`: one network of a node, from its config file and flags (`node_config`),
//! running the example applications the config enables (and the admin API, when it has an
//! address) until SIGINT or SIGTERM. It tells its operator what goes on: a status line every
//! `node.status_interval_ms` (`status`), why consensus does not commit, peers connecting and
//! leaving with the reason, and two nodes sharing a key (`shared_key`); mistakes in the
//! config (a seed without a key, its own id among its seeds) end it with status 2.
//!
//! ```text
//! [apps] mempool ── Mempool (MempoolDirectSend) ◄── load generator (mempool_load_tps)
//!        consensus ── Consensus (ConsensusDirectSendBcs, ConsensusRpcBcs), blocks from the mempool
//!                       └─ commits ─► state-sync store (when state_sync is on too)
//!        state_sync ── StateSync (StateSyncDirectSend, StorageServiceRpc) over that store
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use consensus::ConsensusConfig;
use netcore::PeerId;
use peerlane::{ConnectionNotification, NetworkBuilder, TransportKind};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminMetrics, AdminSettings};
use crate::advertise;
use crate::apps::{self, Apps, BlockPayload};
use crate::block_archive::BlockStore;
use crate::node_config::{self, NodeArgs, NodeConfig};
use crate::node_metrics::NodeMetrics;
use crate::node_store;
use crate::shared_key::{self, SharedKeyDetector};
use crate::status::{self, Status};

/// How long in-flight admin requests (a dial to a silent peer) may hold up a shutdown.
const ADMIN_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Reads the config, starts the network with the applications it enables, prints where it
/// listens, and runs until SIGINT or SIGTERM.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let (config, admin) = node_config::config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(node(config, admin))
}

async fn node(config: NodeConfig, admin: Option<AdminSettings>) -> anyhow::Result<ExitCode> {
    let NodeConfig {
        network: config,
        apps,
        admin: _,
        node: settings,
        peer_store,
        key_file: _,
    } = config;
    let mut registry = Registry::default();
    let network_id = config.network_id;
    let chain_id = config.chain_id;
    let seeds = config.seeds.clone();
    let throwaway_key = config.identity.is_none();
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    let me = builder.peer_id();
    // A copied config lists its own node among the seeds: say so, rather than let it surface
    // as a validator listed twice.
    if seeds.contains_key(&me) {
        bail!(
            "seeds: {me} is this node's own peer id (a config copied from this node, or this \
             node's key file given to another?): remove it from [seeds] / --seed"
        );
    }
    if throwaway_key && network_id.is_validator_network() {
        node_warn!(
            peer = %me,
            "no key file: this validator runs with a throwaway key (peer id {me}) that changes \
             at every start, so the other validators' seeds will not match it; give it \
             --key-file or identity = {{ key_file = \"…\" }} (peerlane keygen writes one)"
        );
    }
    // Checked before anything runs, so that a bad set is a config error.
    let validators = if apps.consensus {
        apps.validators(me, &seeds)?
    } else {
        Vec::new()
    };
    let mut registered = Apps {
        state_sync: apps
            .state_sync
            .then(|| apps::add_state_sync(&mut builder))
            .transpose()?,
        mempool: apps
            .mempool
            .then(|| apps::add_mempool(&mut builder))
            .transpose()?,
        consensus: if apps.consensus {
            let mut config = ConsensusConfig::new(network_id, validators);
            config.round_timeout = apps.consensus_round_timeout;
            Some((config, apps::add_consensus(&mut builder)?))
        } else {
            None
        },
        block_payload: BlockPayload::TxnIds,
        block_store: BlockStore::in_memory(apps.block_store()),
    };
    let consensus_set = registered
        .consensus
        .as_ref()
        .map(|(config, _)| (config.validators.clone(), config.quorum()));
    let mut stored = match &settings.data_dir {
        Some(dir) => {
            let (dir, seeds) = (dir.clone(), seeds.clone());
            let (opened, back) = tokio::task::spawn_blocking(move || {
                let opened = node_store::open(&dir, peer_store, network_id, &seeds, &mut registry);
                (opened, registry)
            })
            .await
            .context("the peer store's open task")?;
            registry = back;
            let opened = opened?;
            if registered.state_sync.is_some() {
                let (disk, settings) = (opened.store.clone(), apps.block_store());
                // The example consensus starts its chain afresh at every start.
                let fresh_chain = registered.consensus.is_some();
                let block_store = tokio::task::spawn_blocking(move || {
                    BlockStore::open(&disk, settings, fresh_chain)
                })
                .await
                .context("the block archive's open task")??;
                node_info!(
                    height = block_store.store.committed_height(),
                    lowest = block_store.store.lowest_height(),
                    "state-sync block archive in the same store: resuming at height {}",
                    block_store.store.committed_height()
                );
                registered.block_store = block_store;
            }
            node_info!(
                bans = opened.bans.len(),
                ip_bans = opened.ip_bans.len(),
                redial = opened.redial.len(),
                "peer store {}: {} peers to redial (given to the connectivity manager), {} bans, {} IP bans",
                settings
                    .data_dir
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display(),
                opened.redial.len(),
                opened.bans.len(),
                opened.ip_bans.len()
            );
            Some(opened)
        }
        None => None,
    };
    if let Some(opened) = &mut stored {
        builder.stored_peers(node_store::stored_peers(std::mem::take(&mut opened.redial)));
        builder.routing_store(opened.routing_components.clone());
    }
    let network = Arc::new(builder.build()?);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut ban_reasons = std::collections::HashMap::new();
    let (store_writer, store_thread) = match stored {
        Some(opened) => {
            for (peer_id, ban) in &opened.bans {
                ban_reasons.insert(*peer_id, ban.reason);
                network
                    .ban_until(*peer_id, ban.until.map(store::UnixMillis::to_system_time))
                    .await?;
            }
            for (prefix, ban) in &opened.ip_bans {
                network.ban_ip_until(*prefix, ban.until.map(store::UnixMillis::to_system_time));
            }
            tasks.spawn(node_store::touch(opened.writer.clone(), shutdown.clone()));
            tasks.spawn(node_store::record_network_events(
                network.record_events(),
                opened.writer.clone(),
                shutdown.clone(),
            ));
            (Some(opened.writer), Some(opened.thread))
        }
        None => (None, None),
    };
    let running = apps::start(registered, me, &mut registry, &shutdown, &mut tasks)?;
    tasks.spawn(apps::announce_chain_status(
        running.store.clone(),
        Arc::clone(&network),
        chain_id,
        shutdown.clone(),
    ));
    if let Some(mempool) = &running.mempool
        && apps.mempool_load_tps > 0
    {
        tasks.spawn(apps::load(
            apps.mempool_load_tps,
            vec![mempool.clone()],
            None,
            None,
            shutdown.clone(),
        ));
    }
    if let Some((set, quorum)) = &consensus_set {
        let tolerated = status::fault_tolerance(set.len(), *quorum);
        node_info!(
            validators = set.len(),
            quorum,
            tolerated,
            "consensus with {} validators: commits need {quorum} of them connected (tolerates {tolerated} down)",
            set.len()
        );
    }
    let node_metrics = NodeMetrics::register(&mut registry);
    let admin_metrics = admin
        .as_ref()
        .map(|_| AdminMetrics::register(&mut registry));
    // Caught before the `listening on` line: whoever reads it may stop the node at once.
    let mut termination = Termination::catch()?;
    // Nothing registers after this: the admin API encodes the registry as it is.
    let registry = Arc::new(registry);
    let bound = network.listen_address().clone();
    let dialable = advertise::dialable(&bound, settings.advertised_address.as_ref());
    let (status_tx, status_rx) = watch::channel(Status::default());
    let about = admin::About {
        peer_id: me,
        network_id,
        chain_id: chain_id.id(),
        version: env!("CARGO_PKG_VERSION"),
        started: Instant::now(),
        listen_address: bound.to_string(),
        advertised_address: dialable.to_string(),
        status: status_rx,
        node_metrics: node_metrics.clone(),
    };
    // Bound before the `listening on` line, so whoever reads it can use the admin API.
    let admin = match admin.zip(admin_metrics) {
        Some((settings, metrics)) => {
            let (listener, local) = admin::bind(settings.address).await?;
            node_info!("admin API on http://{local}");
            Some(tokio::spawn(admin::serve(
                listener,
                settings,
                Arc::clone(&network),
                Arc::clone(&registry),
                metrics,
                about,
                admin::BanRecords {
                    store: store_writer.clone(),
                    reasons: ban_reasons,
                },
                shutdown.clone(),
            )))
        }
        None => None,
    };
    println!("listening on {dialable}");
    if dialable != bound {
        node_info!(listen = %bound, advertised = %dialable, "listening on {bound}, reachable at {dialable}");
    }
    node_info!(peer = %me, network = %network_id, chain_id = chain_id.id(), "peer id {me} on the {network_id} network, chain id {chain_id}");
    let names = running.names();
    if names.is_empty() {
        node_info!("applications: none");
    } else {
        node_info!("applications: {}", names.join(", "));
    }
    tasks.spawn(report_status(
        StatusSources {
            network: Arc::clone(&network),
            consensus: running.consensus.clone(),
            store: running.store.clone(),
            state_sync: running.state_sync.is_some(),
            validators: consensus_set,
            me,
        },
        settings.status_interval,
        status_tx,
        node_metrics,
        shutdown.clone(),
    ));

    let mut notifications = network.peers_and_metadata().subscribe();
    let mut shared_keys = SharedKeyDetector::default();
    loop {
        tokio::select! {
            result = termination.wait() => {
                result?;
                break;
            }
            Some(notification) = notifications.recv() => match notification {
                ConnectionNotification::NewPeer(metadata, _) => {
                    let peer_id = metadata.remote_peer_id;
                    if let Some(writer) = &store_writer {
                        writer.connected(peer_id, metadata.origin, &metadata.remote_addr);
                    }
                    let direction = match metadata.origin {
                        netcore::ConnectionOrigin::Inbound => "inbound from",
                        netcore::ConnectionOrigin::Outbound => "outbound to",
                    };
                    node_info!(
                        peer = %peer_id,
                        "peer connected: {peer_id} ({}, {direction} {})",
                        metadata.role.as_str(),
                        metadata.remote_addr.base()
                    );
                    if let Some(suspect) = shared_keys.connected(
                        peer_id,
                        metadata.remote_addr.to_string(),
                        std::time::Instant::now(),
                    ) {
                        node_warn!(
                            peer = %peer_id,
                            replacements = suspect.replacements,
                            "peer {peer_id} keeps replacing its own connection ({} times in {} s, \
                             from {}): two nodes share key {peer_id}? Give each node its own \
                             key (peerlane keygen)",
                            suspect.replacements,
                            shared_key::WINDOW.as_secs(),
                            suspect.addresses.join(", ")
                        );
                    }
                }
                ConnectionNotification::LostPeer(metadata, _, reason) => {
                    let peer_id = metadata.remote_peer_id;
                    shared_keys.disconnected(peer_id);
                    if let Some(writer) = &store_writer {
                        writer.disconnected(peer_id);
                    }
                    node_info!(
                        peer = %peer_id,
                        reason = %reason,
                        "peer disconnected: {peer_id} ({reason})"
                    );
                }
            },
        }
    }
    node_info!("shutting down (a second SIGINT or SIGTERM exits at once)");
    tokio::spawn(async move {
        if termination.wait().await.is_ok() {
            node_warn!("second signal: exiting without a clean shutdown");
            std::process::exit(130);
        }
    });
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(mut admin) = admin {
        // In-flight requests end with the shutdown token; one that does not is cut off.
        match tokio::time::timeout(ADMIN_SHUTDOWN_GRACE, &mut admin).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => node_warn!("admin API: {err}"),
            Ok(Err(err)) => node_warn!("admin API task: {err}"),
            Err(_) => {
                node_warn!(
                    "admin API requests still running after {} s: cut off",
                    ADMIN_SHUTDOWN_GRACE.as_secs()
                );
                admin.abort();
                let _ = admin.await;
            }
        }
    }
    // The admin API's handlers, which held the other handles, are gone.
    let network = Arc::into_inner(network).context("the network is still in use")?;
    network.shutdown().await;
    // The last changes are written once every writer is gone.
    drop(store_writer);
    if let Some(thread) = store_thread {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("the peer store's writer")?
            .map_err(|_| anyhow!("the peer store's writer panicked"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What the status task reads.
struct StatusSources {
    network: Arc<peerlane::Network>,
    consensus: Option<consensus::ConsensusHandle>,
    store: state_sync::StoreHandle,
    state_sync: bool,
    /// The consensus validator set and quorum, with consensus on.
    validators: Option<(Vec<PeerId>, usize)>,
    me: PeerId,
}

impl StatusSources {
    fn sample(&self) -> status::Sample {
        let peers = self
            .network
            .peers_and_metadata()
            .connected_peers_with_stats();
        let mut peers_by_role = std::collections::BTreeMap::new();
        for (_, metadata, _) in &peers {
            *peers_by_role.entry(metadata.role.as_str()).or_insert(0) += 1;
        }
        let validators = self.validators.as_ref().map(|(set, quorum)| {
            let connected = set
                .iter()
                .filter(|peer_id| **peer_id == self.me || self.network.is_connected(**peer_id))
                .count();
            status::Validators {
                expected: set.len(),
                connected,
                quorum: *quorum,
            }
        });
        status::Sample {
            height: self
                .consensus
                .as_ref()
                .map_or_else(|| self.store.committed_height(), |c| c.committed_height()),
            peers_by_role,
            validators,
            state_sync: self.state_sync,
        }
    }
}

/// Every `interval`: samples the node, publishes the status (for `GET /status` and
/// `/health`), logs the status line and, without a quorum, why the node does not commit.
async fn report_status(
    sources: StatusSources,
    interval: Duration,
    status_tx: watch::Sender<Status>,
    metrics: NodeMetrics,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    // The first tick is at once: /status has figures from the start, and the first line
    // waits one interval.
    let mut first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let status = status_tx.borrow().next(sources.sample(), now - last);
        last = now;
        metrics.record(&status);
        metrics.refresh_process();
        if !first {
            node_info!(
                height = status.height,
                validators_connected = status.validators.map(|v| v.connected),
                peers = status.peers,
                "{}",
                status.line()
            );
            if let Some(warning) = status.quorum_warning() {
                node_warn!("{warning}");
            }
        }
        first = false;
        status_tx.send_replace(status);
    }
}

/// SIGINT and (on unix) SIGTERM, caught from the moment this is created: before that, a
/// SIGTERM kills the process without a clean shutdown.
struct Termination {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Termination {
    /// Starts catching the signals (inside the runtime).
    fn catch() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for one of the signals.
    async fn wait(&mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok(()),
                _ = self.terminate.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("cannot listen for Ctrl-C")
        }
    }
}
