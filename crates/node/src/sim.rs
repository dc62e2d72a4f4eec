//! `peerlane sim`: the node's applications (mempool, consensus, state sync, started as
//! `peerlane demo` starts them, through `apps`) on the simulated network of the
//! `peerlane-sim` crate, driven by a scenario file and a seed.
//!
//! ```text
//! scenario.toml ─► sim::Scenario::plan ─► sim::run(plan, seed, AppSoftware) ─► timeline + summary
//!                                                   │
//!                     validator: validator net (mempool, consensus) + public net (state sync)
//!                     full node: public net (state sync, seeded with validators)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;
use consensus::{ConsensusConfig, ConsensusHandle};
use futures::future::LocalBoxFuture;
use peerlane::Network;
use prometheus_client::registry::Registry;
use sim::software::SoftwareError;
use sim::{HostEnv, NodeRole, NodeSoftware, RunningNode, Scenario};
use state_sync::StoreHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wire::NetworkId;

use crate::apps::{self, Apps, BlockPayload};

/// `peerlane sim` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// The scenario file (TOML; docs/simulator.md lists every key).
    scenario: PathBuf,
    /// Seeds the simulator (message latencies), the node keys and the stack's random
    /// choices: the same seed replays the same run and prints the same trace hash.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Transactions per second each validator submits to its own mempool.
    #[arg(long, default_value_t = 20)]
    tps: u64,
    /// Print one JSON object (seed, summary with the trace hash, timeline) instead of text.
    #[arg(long)]
    json: bool,
    /// Print every trace event, whatever the network's size, instead of the timeline (to
    /// compare two runs line by line, as `diff` does).
    #[arg(long, conflicts_with = "json")]
    events: bool,
}

/// Runs the scenario; exits with 1 if a node's stack left tasks behind after shutdown.
pub(crate) fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.scenario)
        .with_context(|| format!("cannot read {}", args.scenario.display()))?;
    let plan = Scenario::from_toml(&text)?.plan()?;
    let report = sim::run(&plan, args.seed, Rc::new(AppSoftware { tps: args.tps }))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if args.events {
        for event in report.trace.events() {
            println!("{event}");
        }
        print_summary(&report);
    } else {
        for line in &report.timeline {
            println!("{line}");
        }
        print_summary(&report);
    }
    Ok(if report.summary.leaking_nodes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(report: &sim::Report) {
    let s = &report.summary;
    println!();
    println!("seed                  {}", report.seed);
    println!("nodes                 {}", s.nodes);
    println!(
        "simulated time        {:.3} s",
        s.simulated_ms as f64 / 1000.0
    );
    println!("trace events          {}", s.events);
    println!("validator height min  {}", s.min_validator_height);
    println!("highest height        {}", s.max_height);
    let lowest_full = s
        .heights
        .iter()
        .filter(|(name, _)| name.starts_with('f'))
        .map(|(_, h)| *h)
        .min();
    if let Some(lowest) = lowest_full {
        println!("full node height min  {lowest}");
    }
    println!("connections made      {}", s.connections);
    let disconnects: Vec<String> = s
        .disconnects
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!("disconnects           {}", disconnects.join(", "));
    println!(
        "nodes stopped         {} ({} leaked tasks)",
        s.stopped_nodes, s.leaking_nodes
    );
    println!("trace hash            {}", s.trace_hash);
}

/// Mixed into a host's seed for its load generator, so that it does not draw the same numbers
/// as the host's networks.
const LOAD_RNG_STREAM: u64 = 0x6c6f_6164;

/// The node software of `peerlane sim`: the demo's applications on each host.
pub(crate) struct AppSoftware {
    /// Per-validator load.
    pub(crate) tps: u64,
}

/// One running node of [`AppSoftware`].
struct AppNode {
    networks: Vec<Network>,
    consensus: Option<ConsensusHandle>,
    store: StoreHandle,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeSoftware for AppSoftware {
    fn start(&self, env: &HostEnv) -> Result<Box<dyn RunningNode>, SoftwareError> {
        let mut registry = Registry::default();
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut networks = Vec::new();
        let me = env.identity.peer_id();
        let mut apps = Apps {
            mempool: None,
            consensus: None,
            state_sync: None,
            block_payload: BlockPayload::TxnIds,
            // Simulated hosts keep no files: blocks in memory only.
            block_store: crate::block_archive::BlockStore::in_memory(
                crate::node_config::AppsConfig::default().block_store(),
            ),
        };
        if env.role == NodeRole::Validator {
            let mut builder = env.builder(env.validator_network_config(), &mut registry)?;
            apps.mempool = Some(apps::add_mempool(&mut builder)?);
            let consensus = apps::add_consensus(&mut builder)?;
            let config = ConsensusConfig::new(NetworkId::Validator, env.validator_ids());
            apps.consensus = Some((config, consensus));
            networks.push(builder.build()?);
        }
        let mut builder = env.builder(env.public_network_config(), &mut registry)?;
        apps.state_sync = Some(apps::add_state_sync(&mut builder)?);
        networks.push(builder.build()?);
        let running = apps::start(apps, me, &mut registry, &shutdown, &mut tasks)?;
        if let Some(mempool) = running.mempool.clone().filter(|_| self.tps > 0) {
            // Seeded from the host's seed, so that a run with load replays too.
            let seed = Some(env.rng_seed ^ LOAD_RNG_STREAM);
            tasks.spawn(apps::load(
                self.tps,
                vec![mempool],
                None,
                seed,
                shutdown.clone(),
            ));
        }
        Ok(Box::new(AppNode {
            networks,
            consensus: running.consensus,
            store: running.store,
            shutdown,
            tasks,
        }))
    }
}

impl RunningNode for AppNode {
    fn networks(&self) -> Vec<&Network> {
        self.networks.iter().collect()
    }

    fn committed_height(&self) -> u64 {
        match &self.consensus {
            Some(consensus) => consensus.committed_height(),
            None => self.store.committed_height(),
        }
    }

    fn shutdown(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        let Self {
            networks,
            shutdown,
            mut tasks,
            ..
        } = *self;
        Box::pin(async move {
            shutdown.cancel();
            while tasks.join_next().await.is_some() {}
            for network in networks {
                network.shutdown().await;
            }
        })
    }
}

#[cfg(test)]
mod tests;
