//! `peerlane demo`: validators and a late full node in one process, over loopback TCP with
//! real Noise.
//!
//! ```text
//! load generator ── submit ──► validator mempools ◄── gossip (validator network) ──►
//! validator: mempool + consensus (validator network, mutual auth, on-chain set)
//!            consensus commits ──► state-sync store ── served on the public network
//! full node (joins late): state sync only, on the public network, catches up from the validators
//! ```
//!
//! This module starts the networks and actors and drives the run (progress lines, the full
//! node's join, the `--until-blocks` goal); `summary` turns their metrics into the report.
//!
//! Every network keeps a peer store, as `peerlane node --data-dir` does: under a temporary
//! directory removed at exit (one subdirectory per node and network), or under `--data-dir`,
//! which is kept. The state-sync store of each node keeps its recent blocks in memory and
//! archives them in the file of the network state sync runs on (the public one), so the full
//! node catches up from the validators' archives.

mod summary;
mod topology;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use consensus::{ConsensusConfig, ConsensusHandle};
use mempool::MempoolHandle;
use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;
use peerlane::{DiscoveredPeer, Identity, Network, NetworkBuilder, NetworkConfig, TransportKind};
use prometheus_client::registry::Registry;
use state_sync::StoreHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wire::NetworkId;

use self::summary::Summary;
use self::topology::{Topology, neighbours};
use crate::apps::{self, Apps, BlockPayload, Payloads};
use crate::block_archive::BlockStore;
use crate::heap_stats;
use crate::node_store;
use store::PeerStoreConfig;

/// Where every network of the demo listens: loopback, a free port.
const LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// How long the full node may take to catch up after the load stops.
const CATCH_UP_GRACE: Duration = Duration::from_secs(5);

/// The latest the full node joins unless `--join-at` says otherwise. By then each validator's
/// store has moved hundreds of blocks out of memory into its archive (8 MiB of memory holds
/// about 10 s of the demo's blocks), so the catch-up reads archives as well as memory; a later
/// join only makes the catch-up longer, and the rest of a long run shows every node running.
const LATEST_DEFAULT_JOIN: Duration = Duration::from_secs(60);

/// When the full node joins unless `--join-at` is given: at 40% of the run, at most
/// [`LATEST_DEFAULT_JOIN`].
fn default_join_at(duration: Duration) -> Duration {
    duration.mul_f64(0.4).min(LATEST_DEFAULT_JOIN)
}

/// How often a run with `--until-blocks` checks whether it is there yet.
const GOAL_CHECK: Duration = Duration::from_millis(100);

/// Arguments of `peerlane demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Validators to start (at least 1).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How long the load runs, in seconds; the full node joins at 40% of it, at most 60 s
    /// in. With `--until-blocks`, the most the run may take.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// When the full node joins, in seconds from the start, instead of at 40% of
    /// `--duration` (at most 60 s); at most `--duration`.
    #[arg(long, value_name = "SECONDS")]
    join_at: Option<u64>,
    /// End as soon as the validators have committed this many blocks and the full node has
    /// them too (the full node then joins once half of them are committed, or at its usual
    /// time or `--join-at` if that comes first); fails if that is not reached within
    /// `--duration`.
    #[arg(long, value_name = "BLOCKS")]
    until_blocks: Option<u64>,
    /// Transactions per second the load generator submits (each 256–512 random bytes).
    #[arg(long, default_value_t = 2000)]
    tps: u64,
    /// Print the summary as one JSON object instead of a table (progress lines go to
    /// stderr then).
    #[arg(long)]
    json: bool,
    /// Which validators connect directly: `full` (every pair), `ring`, `line`, or
    /// `random:K` (a random connected graph, each validator with at least K links). Each
    /// validator is given only its neighbours' addresses; consensus reaches the others
    /// through routing over signed edges.
    #[arg(long, default_value = "full", value_name = "full|ring|line|random:K")]
    topology: Topology,
    /// Keep the nodes' peer stores and block archives in DIR (one subdirectory per node and
    /// network), instead of a temporary directory removed at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Where the demo's peer stores live, and whether to remove them at exit.
struct DataRoot {
    path: PathBuf,
    temporary: bool,
}

impl DataRoot {
    /// `--data-dir`, or a new directory under the system's temporary directory.
    fn new(kept: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(path) = kept {
            return Ok(Self {
                path,
                temporary: false,
            });
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("peerlane-demo-{}-{nanos:09}", std::process::id()));
        // Fails if it exists: never reuse (and later remove) someone else's directory.
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            temporary: true,
        })
    }
}

/// A temporary directory goes at the end of the run, also when the run fails.
impl Drop for DataRoot {
    fn drop(&mut self) {
        if self.temporary
            && let Err(err) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("cannot remove {}: {err}", self.path.display());
        }
    }
}

/// One network's open peer store: its writer and the thread that writes.
struct DemoStore {
    writer: node_store::StoreWriter,
    thread: std::thread::JoinHandle<()>,
}

/// Opens the peer store of a `network_id` network in `dir` (its metrics under a
/// `network` label of `registry`) and hands its stored peers to `builder`. Blocks on the disk,
/// briefly, on the runtime's thread.
fn open_store(
    dir: &Path,
    network_id: NetworkId,
    seeds: &BTreeMap<PeerId, DiscoveredPeer>,
    registry: &mut Registry,
    builder: &mut NetworkBuilder,
) -> anyhow::Result<node_store::Opened> {
    let registry =
        registry.sub_registry_with_label(("network".into(), network_id.to_string().into()));
    let mut opened = tokio::task::block_in_place(|| {
        node_store::open(dir, PeerStoreConfig::default(), network_id, seeds, registry)
    })?;
    builder.stored_peers(node_store::stored_peers(std::mem::take(&mut opened.redial)));
    builder.routing_store(opened.routing_components.clone());
    Ok(opened)
}

/// The state-sync store of a node whose peer store is `opened`: its archive in the same file,
/// with the default bounds; emptied first for a validator (`fresh_chain`: its consensus
/// starts from genesis). Blocks on the disk, briefly, on the runtime's thread.
fn open_block_store(opened: &node_store::Opened, fresh_chain: bool) -> anyhow::Result<BlockStore> {
    let settings = crate::node_config::AppsConfig::default().block_store();
    tokio::task::block_in_place(|| BlockStore::open(&opened.store, settings, fresh_chain))
}

/// Restores the stored bans into `network` and keeps its store up to date until `shutdown`.
async fn attach_store(
    opened: node_store::Opened,
    network: &Network,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<DemoStore> {
    for (peer_id, ban) in &opened.bans {
        network
            .ban_until(*peer_id, ban.until.map(store::UnixMillis::to_system_time))
            .await?;
    }
    for (prefix, ban) in &opened.ip_bans {
        network.ban_ip_until(*prefix, ban.until.map(store::UnixMillis::to_system_time));
    }
    node_store::follow(network, &opened.writer, shutdown, tasks);
    Ok(DemoStore {
        writer: opened.writer,
        thread: opened.thread,
    })
}

/// A validator: its two networks and its actors' handles (which read its metrics).
struct Validator {
    validator_net: Network,
    public_net: Network,
    mempool: MempoolHandle,
    consensus: ConsensusHandle,
    store: StoreHandle,
}

/// The full node.
struct FullNode {
    network: Network,
    store: StoreHandle,
    metrics: state_sync::Metrics,
}

/// Runs the demo on a multi-thread runtime.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.duration < 2 {
        bail!("--duration must be at least 2 seconds");
    }
    if args.tps == 0 {
        bail!("--tps must be at least 1");
    }
    if args.until_blocks == Some(0) {
        bail!("--until-blocks must be at least 1");
    }
    if args.join_at.is_some_and(|at| at > args.duration) {
        bail!("--join-at must be at most --duration");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(demo(args))
}

/// Prints a progress line: to stdout for the table, to stderr with `--json`.
fn progress(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let data_root = DataRoot::new(args.data_dir.clone())?;
    let mut stores = Vec::new();
    // The submitted transactions' payloads, so that the state-sync blocks built from
    // consensus commits carry the real transaction bytes.
    let payloads = Payloads::default();

    let identities: Vec<Identity> = (0..args.nodes)
        .map(|_| Identity::generate(&mut rand::rngs::OsRng))
        .collect();
    let validator_ids: Vec<PeerId> = identities.iter().map(Identity::peer_id).collect();
    // Each validator's view of the on-chain validator set: empty until every validator
    // network is bound.
    let (on_chain_txs, on_chain_rxs): (Vec<_>, Vec<_>) = (0..args.nodes)
        .map(|_| watch::channel(HashMap::new()))
        .unzip();

    let mut validators = Vec::new();
    for ((index, identity), on_chain_rx) in identities.into_iter().enumerate().zip(on_chain_rxs) {
        validators.push(
            start_validator(
                identity,
                &validator_ids,
                on_chain_rx,
                &payloads,
                &data_root.path.join(format!("validator-{index}")),
                &mut stores,
                &shutdown,
                &mut tasks,
            )
            .await?,
        );
    }
    let links = args.topology.links(args.nodes, &mut rand::rngs::OsRng);
    // Every validator trusts every other before any learns an address to dial: otherwise
    // the first to hear dials one that does not trust it yet, and is refused once.
    for on_chain_tx in &on_chain_txs {
        on_chain_tx.send_replace(on_chain_view(&validators, &Default::default()));
    }
    wait_until_trusted(&validators, &validator_ids).await;
    for (index, on_chain_tx) in on_chain_txs.iter().enumerate() {
        on_chain_tx.send_replace(on_chain_view(&validators, &neighbours(&links, index)));
    }
    progress(
        args.json,
        &format!(
            "started {} validators on 127.0.0.1 (validator network + public network each); \
             topology {} ({} validator links); load {} txn/s; peer stores in {}{}",
            args.nodes,
            args.topology,
            links.len(),
            args.tps,
            data_root.path.display(),
            if data_root.temporary {
                " (removed at exit)"
            } else {
                ""
            }
        ),
    );

    tasks.spawn(apps::load(
        args.tps,
        validators.iter().map(|v| v.mempool.clone()).collect(),
        Some(payloads),
        None,
        shutdown.clone(),
    ));

    let duration = Duration::from_secs(args.duration);
    let join_at = args
        .join_at
        .map_or_else(|| default_join_at(duration), Duration::from_secs);
    let seeds: Vec<(PeerId, NetworkAddress)> = validators
        .iter()
        .map(|v| {
            (
                v.public_net.peer_id(),
                v.public_net.listen_address().clone(),
            )
        })
        .collect();
    let mut full_node: Option<FullNode> = None;
    let mut last_txns = 0;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    // With a goal, progress is checked this often too, so the run ends soon after reaching it.
    let mut goal_check = tokio::time::interval(GOAL_CHECK);
    let goal_reached = loop {
        let print = tokio::select! {
            _ = tick.tick() => true,
            _ = goal_check.tick(), if args.until_blocks.is_some() => false,
        };
        let elapsed = started.elapsed();
        let height = validators_height(&validators);
        let join = match args.until_blocks {
            Some(blocks) => height >= blocks.div_ceil(2) || elapsed >= join_at,
            None => elapsed >= join_at,
        };
        if full_node.is_none() && join {
            full_node = Some(
                start_full_node(
                    &seeds,
                    &data_root.path.join("full-node"),
                    &mut stores,
                    &shutdown,
                    &mut tasks,
                )
                .await?,
            );
            progress(
                args.json,
                "full node joined the public network, catching up from the validators",
            );
        }
        let full_height = full_node.as_ref().map(|node| node.store.committed_height());
        let goal_reached = args.until_blocks.is_some_and(|blocks| {
            height >= blocks && full_height.is_some_and(|full| full >= blocks)
        });
        if print || goal_reached {
            let txns = committed_txns(&validators);
            let full = full_height.map_or("not started".to_owned(), |h| h.to_string());
            let mut line = format!(
                "[{:>3}s] blocks {height:>5}  txns {txns:>7} ({:>5}/s)  full node {full} / {height}",
                elapsed.as_secs(),
                txns.saturating_sub(last_txns),
            );
            if heap_stats::enabled() {
                let heap = heap_stats::HeapSnapshot::take();
                line.push_str(&format!("  {}", heap.summary()));
                if elapsed.as_secs().is_multiple_of(30) {
                    line.push_str(&format!("\n       by size: {}", heap.classes()));
                }
            }
            progress(args.json, &line);
            last_txns = txns;
        }
        if goal_reached {
            break true;
        }
        if print && elapsed >= duration {
            break false;
        }
    };
    let load_time = match args.until_blocks {
        Some(_) => started.elapsed().as_secs().max(1),
        None => args.duration,
    };

    let (target, caught_up) = match (args.until_blocks, &full_node) {
        // The goal includes the full node holding the blocks.
        (Some(blocks), _) if goal_reached => (blocks, true),
        // The load stops; consensus goes on while the full node finishes catching up.
        (_, Some(node)) => {
            let target = lowest_validator_store_height(&validators);
            let mut heights = node.store.subscribe_height();
            let caught_up =
                tokio::time::timeout(CATCH_UP_GRACE, heights.wait_for(|h| *h >= target))
                    .await
                    .is_ok_and(|r| r.is_ok());
            (target, caught_up)
        }
        (_, None) => (lowest_validator_store_height(&validators), false),
    };
    let summary = Summary::collect(
        &validators,
        full_node.as_ref(),
        load_time,
        target,
        caught_up,
        args.topology.to_string(),
    );

    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    for validator in validators {
        validator.validator_net.shutdown().await;
        validator.public_net.shutdown().await;
    }
    if let Some(node) = full_node {
        node.network.shutdown().await;
    }
    close_stores(stores).await?;

    if args.json {
        println!("{}", summary.json());
    } else {
        summary.print();
    }
    let mut failures = Vec::new();
    if summary.blocks_committed == 0 {
        failures.push("no blocks were committed".to_owned());
    }
    if !summary.full_node_caught_up {
        failures.push(format!(
            "the full node did not catch up (height {} of {})",
            summary.full_node_height, summary.target_height
        ));
    }
    if let Some(blocks) = args.until_blocks.filter(|_| !goal_reached) {
        failures.push(format!(
            "{blocks} blocks were not committed and fetched by the full node within {} s",
            args.duration
        ));
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in failures {
            eprintln!("demo failed: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Writes what is queued in each store and waits for the writers.
async fn close_stores(stores: Vec<DemoStore>) -> anyhow::Result<()> {
    let threads: Vec<_> = stores
        .into_iter()
        .map(|store| {
            drop(store.writer);
            store.thread
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a peer store's writer panicked"))?;
        }
        anyhow::Ok(())
    })
    .await
    .context("the peer stores' writers")?
}

/// Builds and starts one validator: the validator network (mempool and consensus, mutual
/// auth, following `on_chain`) and the public network (state sync serving the commits), each
/// with its peer store in a subdirectory of `data_dir`.
#[allow(clippy::too_many_arguments)]
async fn start_validator(
    identity: Identity,
    validator_ids: &[PeerId],
    on_chain: watch::Receiver<HashMap<PeerId, DiscoveredPeer>>,
    payloads: &Payloads,
    data_dir: &Path,
    stores: &mut Vec<DemoStore>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Validator> {
    let mut registry = Registry::default();
    let me = identity.peer_id();

    let mut config = NetworkConfig::new(NetworkId::Validator, listen_address());
    config.identity = Some(identity.clone());
    config
        .connectivity
        .connectivity_check_interval(Duration::from_millis(500));
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    builder.on_chain_updates(on_chain);
    let mempool = apps::add_mempool(&mut builder)?;
    let consensus = apps::add_consensus(&mut builder)?;
    let opened = open_store(
        &data_dir.join("validator"),
        NetworkId::Validator,
        &BTreeMap::new(),
        &mut registry,
        &mut builder,
    )?;
    let validator_net = builder.build()?;
    stores.push(attach_store(opened, &validator_net, shutdown, tasks).await?);

    let mut config = NetworkConfig::new(NetworkId::Public, listen_address());
    config.identity = Some(identity);
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    let state_sync = apps::add_state_sync(&mut builder)?;
    let opened = open_store(
        &data_dir.join("public"),
        NetworkId::Public,
        &BTreeMap::new(),
        &mut registry,
        &mut builder,
    )?;
    let block_store = open_block_store(&opened, true)?;
    let public_net = builder.build()?;
    stores.push(attach_store(opened, &public_net, shutdown, tasks).await?);

    let apps = Apps {
        mempool: Some(mempool),
        consensus: Some((
            ConsensusConfig::new(NetworkId::Validator, validator_ids.to_vec()),
            consensus,
        )),
        state_sync: Some(state_sync),
        block_payload: BlockPayload::Recorded(payloads.clone()),
        block_store,
    };
    let running = apps::start(apps, me, &mut registry, shutdown, tasks)?;
    Ok(Validator {
        validator_net,
        public_net,
        mempool: running.mempool.context("the mempool runs")?,
        consensus: running.consensus.context("consensus runs")?,
        store: running.store,
    })
}

/// Builds and starts the full node: state sync only, on the public network, with the
/// validators' public networks as its seeds and its peer store in `data_dir`.
async fn start_full_node(
    seeds: &[(PeerId, NetworkAddress)],
    data_dir: &Path,
    stores: &mut Vec<DemoStore>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<FullNode> {
    let mut registry = Registry::default();
    let mut config = NetworkConfig::new(NetworkId::Public, listen_address());
    config.identity = Some(Identity::generate(&mut rand::rngs::OsRng));
    config
        .connectivity
        .connectivity_check_interval(Duration::from_millis(500));
    config.seeds = seeds
        .iter()
        .map(|(peer_id, addr)| {
            (
                *peer_id,
                DiscoveredPeer::new(PeerRole::Upstream, [addr.clone()], []),
            )
        })
        .collect();
    let seed_peers = config.seeds.clone();
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    let state_sync = apps::add_state_sync(&mut builder)?;
    let opened = open_store(
        data_dir,
        NetworkId::Public,
        &seed_peers,
        &mut registry,
        &mut builder,
    )?;
    let apps = Apps {
        mempool: None,
        consensus: None,
        state_sync: Some(state_sync),
        block_payload: BlockPayload::TxnIds,
        block_store: open_block_store(&opened, false)?,
    };
    let network = builder.build()?;
    stores.push(attach_store(opened, &network, shutdown, tasks).await?);
    let running = apps::start(apps, network.peer_id(), &mut registry, shutdown, tasks)?;
    Ok(FullNode {
        network,
        store: running.store,
        metrics: running.state_sync.context("state sync runs")?,
    })
}

/// Waits until every validator's network trusts every validator (its on-chain updates are
/// applied by a task of its own), for at most a second: a dial before that is refused once
/// and retried, which costs a warning, not the run.
async fn wait_until_trusted(validators: &[Validator], ids: &[PeerId]) {
    let all_trusted = || {
        validators.iter().all(|v| {
            let trusted = v.validator_net.trusted_peers().snapshot();
            ids.iter().all(|id| trusted.contains_key(id))
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !all_trusted() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A validator's view of the on-chain set: every validator is trusted (its key), but only
/// those at `neighbours` (indices) come with an address, so it dials only them and reaches
/// the others through routing.
fn on_chain_view(
    validators: &[Validator],
    neighbours: &std::collections::BTreeSet<usize>,
) -> HashMap<PeerId, DiscoveredPeer> {
    validators
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let addr = v.validator_net.listen_address().clone();
            let peer = if neighbours.contains(&index) {
                DiscoveredPeer::new(PeerRole::Validator, [addr], [])
            } else {
                DiscoveredPeer::new(PeerRole::Validator, [], addr.noise_public_key())
            };
            (v.validator_net.peer_id(), peer)
        })
        .collect()
}

fn listen_address() -> NetworkAddress {
    LISTEN.parse().expect("the loopback address parses")
}

/// The lowest height among the validators' state-sync stores: what the full node can reach.
fn lowest_validator_store_height(validators: &[Validator]) -> u64 {
    validators
        .iter()
        .map(|v| v.store.committed_height())
        .min()
        .unwrap_or(0)
}

/// The highest committed height among the validators.
fn validators_height(validators: &[Validator]) -> u64 {
    validators
        .iter()
        .map(|v| v.consensus.committed_height())
        .max()
        .unwrap_or(0)
}

/// The most transactions any validator committed.
fn committed_txns(validators: &[Validator]) -> u64 {
    validators
        .iter()
        .map(|v| v.consensus.committed_transactions())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run's full node joins at 40% of it; a long run's at most a minute in, so that
    /// the rest of the run has every node running.
    #[test]
    fn the_full_node_joins_at_forty_percent_and_at_most_a_minute_in() {
        assert_eq!(
            default_join_at(Duration::from_secs(20)),
            Duration::from_secs(8)
        );
        assert_eq!(
            default_join_at(Duration::from_secs(150)),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_join_at(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
    }
}
