//! `peerlane demo`: validators and a late full node in one process, over loopback TCP with
//! real Noise.
//!
//! ```text
//! load generator ── submit ──► validator mempools ◄── gossip (validator network) ──►
//! validator: mempool + consensus (validator network, mutual auth, on-chain set)
//!            consensus commits ──► state-sync store ── served on the public network
//! full node (joins late): state sync only, on the public network, catches up from the validators
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use consensus::{CommittedBlock, Consensus, ConsensusConfig, ConsensusHandle, ConsensusMsg};
use mempool::{Mempool, MempoolConfig, MempoolHandle, MempoolMsg, Transaction, TxnId};
use netcore::{NetworkAddress, PeerId};
use noise::PeerRole;
use peerlane::{DiscoveredPeer, Identity, Network, NetworkBuilder, NetworkConfig, TransportKind};
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use state_sync::{DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, StateSync, StateSyncMsg, StoreHandle};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wire::{NetworkId, ProtocolId};

use crate::prom;

/// Where every network of the demo listens: loopback, a free port.
const LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// The consensus metric the RPC latency comes from (a histogram, in seconds).
const VOTE_LATENCY: &str = "consensus_vote_rpc_latency_seconds";

/// The peer layer's count of messages sent as a stream of fragments.
const STREAMS: &str = "peerlane_peer_streams_total";

/// How long the full node may take to catch up after the load stops.
const CATCH_UP_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `peerlane demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Validators to start (at least 1).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How long the load runs, in seconds; the full node joins at 40% of it.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Transactions per second the load generator submits (each 256–512 random bytes).
    #[arg(long, default_value_t = 2000)]
    tps: u64,
    /// Print the summary as one JSON object instead of a table (progress lines go to
    /// stderr then).
    #[arg(long)]
    json: bool,
}

/// A validator: its two networks, its actors' handles and its metrics.
struct Validator {
    validator_net: Network,
    public_net: Network,
    mempool: MempoolHandle,
    consensus: ConsensusHandle,
    store: StoreHandle,
    registry: Registry,
}

/// The full node.
struct FullNode {
    network: Network,
    store: StoreHandle,
    metrics: state_sync::Metrics,
    registry: Registry,
}

/// Payloads of the submitted transactions by id, so that the state-sync blocks built from
/// consensus commits carry the real transaction bytes.
type Payloads = Arc<Mutex<HashMap<TxnId, Bytes>>>;

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
    let payloads: Payloads = Arc::default();

    let identities: Vec<Identity> = (0..args.nodes)
        .map(|_| Identity::generate(&mut rand::rngs::OsRng))
        .collect();
    let validator_ids: Vec<PeerId> = identities.iter().map(Identity::peer_id).collect();
    // The on-chain validator set: empty until every validator network is bound.
    let (on_chain_tx, on_chain_rx) = watch::channel(HashMap::new());

    let mut validators = Vec::new();
    for identity in identities {
        validators.push(start_validator(
            identity,
            &validator_ids,
            on_chain_rx.clone(),
            &payloads,
            &shutdown,
            &mut tasks,
        )?);
    }
    let on_chain: HashMap<PeerId, DiscoveredPeer> = validators
        .iter()
        .map(|v| {
            let addr = v.validator_net.listen_address().clone();
            let peer = DiscoveredPeer::new(PeerRole::Validator, [addr], []);
            (v.validator_net.peer_id(), peer)
        })
        .collect();
    on_chain_tx.send_replace(on_chain);
    progress(
        args.json,
        &format!(
            "started {} validators on 127.0.0.1 (validator network + public network each); \
             load {} txn/s",
            args.nodes, args.tps
        ),
    );

    tasks.spawn(load(
        args.tps,
        validators.iter().map(|v| v.mempool.clone()).collect(),
        Arc::clone(&payloads),
        shutdown.clone(),
    ));

    let duration = Duration::from_secs(args.duration);
    let join_at = duration.mul_f64(0.4);
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
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if full_node.is_none() && elapsed >= join_at {
            full_node = Some(start_full_node(&seeds, &shutdown, &mut tasks)?);
            progress(
                args.json,
                "full node joined the public network, catching up from the validators",
            );
        }
        let height = validators_height(&validators);
        let txns = committed_txns(&validators);
        let full = match &full_node {
            Some(node) => format!("{}", node.store.committed_height()),
            None => "not started".to_owned(),
        };
        progress(
            args.json,
            &format!(
                "[{:>3}s] blocks {height:>5}  txns {txns:>7} ({:>5}/s)  full node {full} / {height}",
                elapsed.as_secs(),
                txns.saturating_sub(last_txns),
            ),
        );
        last_txns = txns;
        if elapsed >= duration {
            break;
        }
    }

    // The load stops; consensus goes on while the full node finishes catching up.
    let target = validators
        .iter()
        .map(|v| v.store.committed_height())
        .min()
        .unwrap_or(0);
    let caught_up = match &full_node {
        Some(node) => {
            let mut heights = node.store.subscribe_height();
            tokio::time::timeout(CATCH_UP_GRACE, heights.wait_for(|h| *h >= target))
                .await
                .is_ok_and(|r| r.is_ok())
        }
        None => false,
    };
    let summary = Summary::collect(&args, &validators, full_node.as_ref(), target, caught_up);

    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    for validator in validators {
        validator.validator_net.shutdown().await;
        validator.public_net.shutdown().await;
    }
    if let Some(node) = full_node {
        node.network.shutdown().await;
    }

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
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in failures {
            eprintln!("demo failed: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Builds and starts one validator: the validator network (mempool and consensus, mutual
/// auth, following `on_chain`) and the public network (state sync serving the commits).
fn start_validator(
    identity: Identity,
    validator_ids: &[PeerId],
    on_chain: watch::Receiver<HashMap<PeerId, DiscoveredPeer>>,
    payloads: &Payloads,
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
    let (mempool_client, mempool_events) = builder.add_application::<MempoolMsg>(
        [ProtocolId::MEMPOOL_DIRECT_SEND],
        [],
        Default::default(),
    )?;
    let (consensus_client, consensus_events) = builder.add_application::<ConsensusMsg>(
        [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
        [ProtocolId::CONSENSUS_RPC_BCS],
        Default::default(),
    )?;
    let validator_net = builder.build()?;

    let mut config = NetworkConfig::new(NetworkId::Public, listen_address());
    config.identity = Some(identity);
    let mut builder = NetworkBuilder::new(
        config,
        TransportKind::Tcp(Default::default()),
        &mut registry,
    )?;
    let (sync_client, sync_events) = builder.add_application::<StateSyncMsg>(
        DIRECT_SEND_PROTOCOLS,
        RPC_PROTOCOLS,
        Default::default(),
    )?;
    let public_net = builder.build()?;

    let (mempool_actor, mempool) = Mempool::new(
        MempoolConfig::default(),
        mempool_client,
        mempool_events,
        &mut registry,
    );
    let config = ConsensusConfig::new(NetworkId::Validator, validator_ids.to_vec());
    let (consensus_actor, consensus) = Consensus::new(
        config,
        me,
        consensus_client,
        consensus_events,
        mempool.clone(),
        &mut registry,
    )?;
    let store = StoreHandle::new();
    let sync = StateSync::new(
        state_sync::Config::default(),
        sync_client,
        sync_events,
        store.clone(),
    )
    .with_metrics(state_sync::Metrics::register(&mut registry));

    tasks.spawn(feed_store(
        consensus.subscribe_commits(),
        store.clone(),
        Arc::clone(payloads),
        shutdown.clone(),
    ));
    tasks.spawn(mempool_actor.run(shutdown.clone().cancelled_owned()));
    tasks.spawn(consensus_actor.run(shutdown.clone().cancelled_owned()));
    tasks.spawn(sync.run(shutdown.clone().cancelled_owned()));
    Ok(Validator {
        validator_net,
        public_net,
        mempool,
        consensus,
        store,
        registry,
    })
}

/// Builds and starts the full node: state sync only, on the public network, with the
/// validators' public networks as its seeds.
fn start_full_node(
    seeds: &[(PeerId, NetworkAddress)],
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
    let network = builder.build()?;
    let store = StoreHandle::new();
    let metrics = state_sync::Metrics::register(&mut registry);
    let sync = StateSync::new(state_sync::Config::default(), client, events, store.clone())
        .with_metrics(metrics.clone());
    tasks.spawn(sync.run(shutdown.clone().cancelled_owned()));
    Ok(FullNode {
        network,
        store,
        metrics,
        registry,
    })
}

fn listen_address() -> NetworkAddress {
    LISTEN.parse().expect("the loopback address parses")
}

/// Appends each block consensus commits to the state-sync store, with the committed
/// transactions' payloads as its payload.
async fn feed_store(
    mut commits: broadcast::Receiver<CommittedBlock>,
    store: StoreHandle,
    payloads: Payloads,
    shutdown: CancellationToken,
) {
    loop {
        let block = tokio::select! {
            () = shutdown.cancelled() => return,
            block = commits.recv() => match block {
                Ok(block) => block,
                Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the store fell behind consensus");
                    continue;
                }
            },
        };
        // The store may have this block already: the node's state sync fetches blocks that a
        // peer announced before this node's own consensus committed them.
        if block.height <= store.committed_height() {
            continue;
        }
        let payload = {
            let payloads = payloads.lock().expect("payload map poisoned");
            let mut bytes = BytesMut::new();
            for id in &block.txn_ids {
                if let Some(payload) = payloads.get(id) {
                    bytes.extend_from_slice(payload);
                }
            }
            bytes.freeze()
        };
        let block = state_sync::Block {
            height: block.height,
            id: block.block_id.0,
            parent_id: block.parent_id.0,
            payload,
        };
        let height = block.height;
        // State sync may have appended it meanwhile; anything else is worth a warning.
        if let Err(err) = store.append(block)
            && store.committed_height() < height
        {
            tracing::warn!(%err, "committed block not appended to the store");
        }
    }
}

/// Submits `tps` random transactions of 256–512 bytes per second, round robin over the
/// mempools, every 10 ms.
async fn load(
    tps: u64,
    mempools: Vec<MempoolHandle>,
    payloads: Payloads,
    shutdown: CancellationToken,
) {
    const TICK: Duration = Duration::from_millis(10);
    let mut rng = StdRng::from_entropy();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut submitted: u64 = 0;
    let mut next = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = started.elapsed().as_millis() as u64 * tps / 1000;
        while submitted < due {
            let mut payload = vec![0u8; rng.gen_range(256..=512)];
            rng.fill(&mut payload[..]);
            let payload = Bytes::from(payload);
            let txn = Transaction::new(payload.clone());
            payloads
                .lock()
                .expect("payload map poisoned")
                .insert(txn.id(), payload);
            // A full mempool refuses: the load is dropped, as a client's would be.
            let _ = mempools[next % mempools.len()].submit(txn);
            next += 1;
            submitted += 1;
        }
    }
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

/// What the demo reports at the end.
struct Summary {
    validators: usize,
    duration_s: u64,
    blocks_committed: u64,
    transactions_committed: u64,
    full_node_caught_up: bool,
    full_node_height: u64,
    target_height: u64,
    full_node_blocks_fetched: u64,
    full_node_bytes_fetched: u64,
    connections: u64,
    messages_sent: u64,
    bytes_sent: u64,
    sent_by_kind: Vec<(String, u64, u64)>,
    received_by_protocol: Vec<(String, u64)>,
    rpc_p50_us: Option<u64>,
    rpc_p99_us: Option<u64>,
    streamed_messages: u64,
    queue_drops: u64,
    refused_connections: u64,
}

impl Summary {
    fn collect(
        args: &DemoArgs,
        validators: &[Validator],
        full_node: Option<&FullNode>,
        target_height: u64,
        full_node_caught_up: bool,
    ) -> Self {
        let mut text = String::new();
        let registries = validators
            .iter()
            .map(|v| &v.registry)
            .chain(full_node.map(|n| &n.registry));
        for registry in registries {
            // Encoding into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        }
        let samples = prom::parse(&text);
        let count = |value: f64| value.max(0.0).round() as u64;
        let sent = [("direction", "sent")];
        let messages = prom::sum_by(&samples, "peerlane_peer_messages_total", &sent, "kind");
        let bytes = prom::sum_by(&samples, "peerlane_peer_payload_bytes_total", &sent, "kind");
        let sent_by_kind = messages
            .iter()
            .map(|(kind, n)| {
                let b = bytes.get(kind).copied().unwrap_or(0.0);
                (kind.clone(), count(*n), count(b))
            })
            .collect();
        let received_by_protocol = prom::sum_by(
            &samples,
            "peerlane_inbound_queue_messages_total",
            &[("event", "enqueued")],
            "protocol",
        )
        .into_iter()
        .map(|(protocol, n)| (protocol, count(n)))
        .collect();
        let queue_drops = prom::sum(
            &samples,
            "peerlane_inbound_queue_messages_total",
            &[("event", "dropped_newest")],
        ) + prom::sum(
            &samples,
            "peerlane_inbound_queue_messages_total",
            &[("event", "dropped_oldest")],
        ) + prom::sum(&samples, "peerlane_peer_outbound_dropped_total", &[])
            + prom::sum(&samples, "peerlane_peer_inbound_dropped_total", &[]);
        let micros =
            |q| prom::histogram_quantile(&samples, VOTE_LATENCY, q).map(|s| count(s * 1e6));
        let full = full_node.map(|n| n.store.committed_height()).unwrap_or(0);
        Self {
            validators: validators.len(),
            duration_s: args.duration,
            blocks_committed: validators_height(validators),
            transactions_committed: committed_txns(validators),
            full_node_caught_up,
            full_node_height: full,
            target_height,
            full_node_blocks_fetched: full_node.map_or(0, |n| n.metrics.blocks_fetched()),
            full_node_bytes_fetched: full_node.map_or(0, |n| n.metrics.bytes_fetched()),
            // Every connection is open at both of its ends, both in this process.
            connections: count(prom::sum(&samples, "peerlane_connections", &[])) / 2,
            messages_sent: messages.values().map(|n| count(*n)).sum(),
            bytes_sent: bytes.values().map(|n| count(*n)).sum(),
            sent_by_kind,
            received_by_protocol,
            rpc_p50_us: micros(0.5),
            rpc_p99_us: micros(0.99),
            // The family is registered by every peer layer and empty until a stream is sent.
            streamed_messages: count(prom::sum(&samples, STREAMS, &sent)),
            queue_drops: count(queue_drops),
            refused_connections: count(prom::sum(
                &samples,
                "peerlane_connections_refused_total",
                &[],
            )),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "validators": self.validators,
            "duration_s": self.duration_s,
            "blocks_committed": self.blocks_committed,
            "transactions_committed": self.transactions_committed,
            "full_node_caught_up": self.full_node_caught_up,
            "full_node_height": self.full_node_height,
            "validator_height": self.target_height,
            "full_node_blocks_fetched": self.full_node_blocks_fetched,
            "full_node_bytes_fetched": self.full_node_bytes_fetched,
            "connections": self.connections,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "sent_by_kind": self.sent_by_kind.iter().map(|(kind, n, b)| {
                (kind.clone(), json!({ "messages": n, "bytes": b }))
            }).collect::<serde_json::Map<_, _>>(),
            "received_by_protocol": self.received_by_protocol.iter().map(|(p, n)| {
                (p.clone(), json!(n))
            }).collect::<serde_json::Map<_, _>>(),
            "rpc_p50_us": self.rpc_p50_us,
            "rpc_p99_us": self.rpc_p99_us,
            "streamed_messages": self.streamed_messages,
            "queue_drops": self.queue_drops,
            "refused_connections": self.refused_connections,
        })
    }

    fn print(&self) {
        let rate = self.transactions_committed / self.duration_s.max(1);
        println!();
        println!(
            "summary: {} validators + 1 full node, {} s of load",
            self.validators, self.duration_s
        );
        println!("  {:<28} {}", "connections open", self.connections);
        println!("  {:<28} {}", "blocks committed", self.blocks_committed);
        println!(
            "  {:<28} {} (~{rate}/s)",
            "transactions committed", self.transactions_committed
        );
        println!(
            "  {:<28} {} (height {} of {}; {} blocks, {} fetched)",
            "full node",
            if self.full_node_caught_up {
                "caught up"
            } else {
                "NOT caught up"
            },
            self.full_node_height,
            self.target_height,
            self.full_node_blocks_fetched,
            mib(self.full_node_bytes_fetched),
        );
        println!(
            "  {:<28} {} ({})",
            "messages sent",
            self.messages_sent,
            mib(self.bytes_sent)
        );
        for (kind, n, b) in &self.sent_by_kind {
            println!("    {kind:<26} {n} ({})", mib(*b));
        }
        println!("  {:<28}", "messages received, by protocol");
        for (protocol, n) in &self.received_by_protocol {
            println!("    {protocol:<26} {n}");
        }
        let us = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| format!("{v} µs"));
        println!(
            "  {:<28} p50 {}, p99 {} ({VOTE_LATENCY})",
            "RPC latency (votes)",
            us(self.rpc_p50_us),
            us(self.rpc_p99_us)
        );
        println!(
            "  {:<28} {} (messages above the frame size, sent as fragments)",
            "streamed messages", self.streamed_messages
        );
        println!("  {:<28} {}", "queue drops", self.queue_drops);
        println!(
            "  {:<28} {}",
            "refused connections", self.refused_connections
        );
    }
}

/// `bytes` in MiB, for people.
fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}
