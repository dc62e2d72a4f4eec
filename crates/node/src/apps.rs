//! The example applications, started the same way by `peerlane node` and `peerlane demo`.
//!
//! ```text
//! load ── submit ──► Mempool ◄── take_batch / commit ── Consensus
//!   └─ Payloads (demo)              commits ─► feed_store ─► StoreHandle ◄── StateSync
//! ```
//!
//! [`add_mempool`], [`add_consensus`] and [`add_state_sync`] register an application on a
//! network builder; [`start`] spawns the actors of those registered, and the feed from
//! consensus commits to the state-sync store when both run, and the store's archive writer
//! when it has one (`block_archive`); [`announce_chain_status`] keeps
//! the network's chain status at the store's last block; [`load`] is the load generator.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use consensus::{CommittedBlock, Consensus, ConsensusConfig, ConsensusHandle, ConsensusMsg};
use mempool::{Mempool, MempoolConfig, MempoolHandle, MempoolMsg, Transaction, TxnId};
use netcore::PeerId;
use peerlane::{BlockHash, ChainStatus, Network, NetworkBuilder, NetworkClient, NetworkEvents};
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use state_sync::{DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, StateSync, StateSyncMsg, StoreHandle};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::{ChainId, ProtocolId};

use crate::block_archive::BlockStore;

/// How often the load generator submits what is due.
const LOAD_TICK: Duration = Duration::from_millis(10);

/// How long a recorded payload is kept for the store feed: a transaction not committed by
/// then was most likely refused by a full mempool.
pub(crate) const PAYLOAD_RETENTION: Duration = Duration::from_secs(10);

/// An application's two ends on a network.
pub(crate) type Channels<M> = (NetworkClient<M>, NetworkEvents<M>);

/// Registers the mempool (`MempoolDirectSend`).
pub(crate) fn add_mempool(
    builder: &mut NetworkBuilder,
) -> Result<Channels<MempoolMsg>, peerlane::Error> {
    builder.add_application([ProtocolId::MEMPOOL_DIRECT_SEND], [], Default::default())
}

/// Registers consensus (`ConsensusDirectSendBcs`, `ConsensusRpcBcs`).
pub(crate) fn add_consensus(
    builder: &mut NetworkBuilder,
) -> Result<Channels<ConsensusMsg>, peerlane::Error> {
    builder.add_application(
        [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
        [ProtocolId::CONSENSUS_RPC_BCS],
        Default::default(),
    )
}

/// Registers state sync (`StateSyncDirectSend`, `StorageServiceRpc`).
pub(crate) fn add_state_sync(
    builder: &mut NetworkBuilder,
) -> Result<Channels<StateSyncMsg>, peerlane::Error> {
    builder.add_application(DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, Default::default())
}

/// The registered applications of one node, possibly over several networks.
pub(crate) struct Apps {
    /// The mempool.
    pub(crate) mempool: Option<Channels<MempoolMsg>>,
    /// Consensus with its config; needs the mempool.
    pub(crate) consensus: Option<(ConsensusConfig, Channels<ConsensusMsg>)>,
    /// State sync.
    pub(crate) state_sync: Option<Channels<StateSyncMsg>>,
    /// What the blocks consensus commits carry into the state-sync store.
    pub(crate) block_payload: BlockPayload,
    /// The state-sync store (in memory, or with its archive on disk).
    pub(crate) block_store: BlockStore,
}

/// What a committed block carries into the state-sync store.
#[derive(Clone)]
pub(crate) enum BlockPayload {
    /// Its transaction ids (32 bytes each, in order): the same bytes on every validator,
    /// whichever transactions it happened to receive.
    TxnIds,
    /// The transactions' payloads, as the load generator recorded them (one process).
    Recorded(Payloads),
}

/// The started applications' handles.
pub(crate) struct Running {
    /// The mempool, if it runs.
    pub(crate) mempool: Option<MempoolHandle>,
    /// Consensus, if it runs.
    pub(crate) consensus: Option<ConsensusHandle>,
    /// The block store: consensus commits feed it, state sync serves and fills it.
    pub(crate) store: StoreHandle,
    /// State sync's metrics, if it runs.
    pub(crate) state_sync: Option<state_sync::Metrics>,
}

impl Running {
    /// The names of the applications that run, for people.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.mempool.is_some() {
            names.push("mempool");
        }
        if self.consensus.is_some() {
            names.push("consensus");
        }
        if self.state_sync.is_some() {
            names.push("state sync");
        }
        names
    }
}

/// Spawns the actors of `apps` on `tasks` until `shutdown`, for node `me`, with their metrics
/// in `registry`; consensus commits feed the state-sync store when both run. Fails for
/// consensus without a mempool or a consensus config that does not hold `me`.
pub(crate) fn start(
    apps: Apps,
    me: PeerId,
    registry: &mut Registry,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Running> {
    let Apps {
        mempool,
        consensus,
        state_sync,
        block_payload,
        block_store: BlockStore { store, writer },
    } = apps;
    if let Some(writer) = writer {
        tasks.spawn(writer.run(shutdown.clone().cancelled_owned()));
    }
    let mempool = mempool.map(|(client, events)| {
        let (actor, handle) = Mempool::new(MempoolConfig::default(), client, events, registry);
        tasks.spawn(actor.run(shutdown.clone().cancelled_owned()));
        handle
    });
    let consensus = match consensus {
        Some((config, (client, events))) => {
            let mempool = mempool
                .clone()
                .context("apps.consensus: needs apps.mempool = true")?;
            let (actor, handle) =
                Consensus::new(config, me, client, events, mempool, registry).context("apps")?;
            if state_sync.is_some() {
                tasks.spawn(feed_store(
                    handle.subscribe_commits(),
                    store.clone(),
                    block_payload,
                    shutdown.clone(),
                ));
            }
            tasks.spawn(actor.run(shutdown.clone().cancelled_owned()));
            Some(handle)
        }
        None => None,
    };
    let state_sync = state_sync.map(|(client, events)| {
        let metrics = state_sync::Metrics::register(registry);
        let sync = StateSync::new(state_sync::Config::default(), client, events, store.clone())
            .with_metrics(metrics.clone());
        tasks.spawn(sync.run(shutdown.clone().cancelled_owned()));
        metrics
    });
    Ok(Running {
        mempool,
        consensus,
        store,
        state_sync,
    })
}

/// Appends each block consensus commits to the state-sync store, with `payload` as its
/// payload.
async fn feed_store(
    mut commits: broadcast::Receiver<CommittedBlock>,
    store: StoreHandle,
    payload: BlockPayload,
    shutdown: CancellationToken,
) {
    loop {
        let block = tokio::select! {
            () = shutdown.cancelled() => return,
            block = commits.recv() => match block {
                Ok(block) => block,
                Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // State sync fetches the missed blocks from the peers.
                    tracing::warn!(missed, "the state-sync store fell behind consensus");
                    continue;
                }
            },
        };
        // State sync may have fetched it already from a peer that committed it first.
        if block.height <= store.committed_height() {
            continue;
        }
        let payload = match &payload {
            BlockPayload::TxnIds => {
                let mut bytes = BytesMut::with_capacity(block.txn_ids.len() * 32);
                for id in &block.txn_ids {
                    bytes.extend_from_slice(&id.0);
                }
                bytes.freeze()
            }
            BlockPayload::Recorded(payloads) => payloads.concat(&block.txn_ids),
        };
        let height = block.height;
        let block = state_sync::Block {
            height,
            id: block.block_id.0,
            parent_id: block.parent_id.0,
            payload,
        };
        // State sync may have appended it meanwhile; anything else is worth a warning.
        if let Err(err) = store.append(block)
            && store.committed_height() < height
        {
            tracing::warn!(height, error = %err, "committed block not appended to the store");
        }
    }
}

/// Payloads of submitted transactions by id, kept for [`PAYLOAD_RETENTION`] after their
/// submission. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Payloads(Arc<Mutex<PayloadLog>>);

#[derive(Default)]
struct PayloadLog {
    by_id: HashMap<TxnId, Bytes>,
    /// Submission order, to prune the oldest first.
    order: VecDeque<(Instant, TxnId)>,
}

impl Payloads {
    fn record(&self, now: Instant, id: TxnId, payload: Bytes) {
        let mut log = self.0.lock().expect("payload map poisoned");
        if log.by_id.insert(id, payload).is_none() {
            log.order.push_back((now, id));
        }
    }

    /// Forgets the payloads recorded more than [`PAYLOAD_RETENTION`] before `now`.
    fn prune(&self, now: Instant) {
        let mut log = self.0.lock().expect("payload map poisoned");
        while let Some(&(at, id)) = log.order.front() {
            if now.saturating_duration_since(at) <= PAYLOAD_RETENTION {
                break;
            }
            log.order.pop_front();
            log.by_id.remove(&id);
        }
    }

    /// The payloads of `ids` that are still known, concatenated in order.
    fn concat(&self, ids: &[TxnId]) -> Bytes {
        let log = self.0.lock().expect("payload map poisoned");
        concat_exact(ids.iter().filter_map(|id| log.by_id.get(id))).freeze()
    }

    /// How many payloads are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("payload map poisoned").by_id.len()
    }
}

/// `parts` one after the other in a buffer of exactly their size. The state-sync store
/// keeps each block's payload for seconds: grown by doubling, a demo block of about 80 KB
/// would hold up to twice that, and land in the allocator's size classes for larger objects,
/// whose pages are eight times larger, so that a few long-lived blocks keep many of them
/// resident.
fn concat_exact<'a>(parts: impl Iterator<Item = &'a Bytes> + Clone) -> BytesMut {
    let mut bytes = BytesMut::with_capacity(parts.clone().map(Bytes::len).sum());
    for part in parts {
        bytes.extend_from_slice(part);
    }
    bytes
}

/// The load generator: submits `tps` random transactions of 256–512 bytes per second, round
/// robin over `mempools`, every 10 ms, recording their payloads in `payloads` if given. A
/// full mempool refuses them (counted in `mempool_rejected_full_total`), as it would a
/// client's. The transactions' bytes come from `seed` if given (a simulated run, which must
/// replay), else from the OS.
pub(crate) async fn load(
    tps: u64,
    mempools: Vec<MempoolHandle>,
    payloads: Option<Payloads>,
    seed: Option<u64>,
    shutdown: CancellationToken,
) {
    let mut next = 0;
    generate(
        tps,
        seed,
        |txn| {
            if let Some(mempool) = mempools.get(next % mempools.len().max(1)) {
                let _ = mempool.submit(txn);
            }
            next += 1;
        },
        payloads,
        shutdown,
    )
    .await;
}

/// [`load`] with the submission as a closure.
async fn generate(
    tps: u64,
    seed: Option<u64>,
    mut submit: impl FnMut(Transaction),
    payloads: Option<Payloads>,
    shutdown: CancellationToken,
) {
    let mut rng = seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64);
    let mut tick = tokio::time::interval(LOAD_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut submitted: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let elapsed_ms = u64::try_from((now - started).as_millis()).unwrap_or(u64::MAX);
        let due = elapsed_ms.saturating_mul(tps) / 1000;
        // After a stall, at most one second's worth at once: no unbounded burst.
        submitted = submitted.max(due.saturating_sub(tps));
        while submitted < due {
            let mut payload = vec![0u8; rng.gen_range(256..=512)];
            rng.fill(&mut payload[..]);
            let payload = Bytes::from(payload);
            let txn = Transaction::new(payload.clone());
            if let Some(payloads) = &payloads {
                payloads.record(now, txn.id(), payload);
            }
            submit(txn);
            submitted += 1;
        }
        if let Some(payloads) = &payloads {
            payloads.prune(now);
        }
    }
}

/// The example chain's genesis id: SHA-256 of `peerlane genesis` and the chain id, so that
/// nodes of different example chains tell each other apart by their chain status too.
pub(crate) fn genesis(chain_id: ChainId) -> BlockHash {
    let mut hash = Sha256::new();
    hash.update(b"peerlane genesis");
    hash.update([chain_id.id()]);
    BlockHash(hash.finalize().into())
}

/// Keeps `network`'s chain status (protocol 65) at the store's last block until `shutdown`:
/// its peers see this node's height, and state sync on their side asks the peers ahead. The
/// example consensus commits final blocks, so the best block is also the irreversible one.
pub(crate) async fn announce_chain_status(
    store: StoreHandle,
    network: Arc<Network>,
    chain_id: ChainId,
    shutdown: CancellationToken,
) {
    let genesis = genesis(chain_id);
    let mut heights = store.subscribe_height();
    loop {
        let (height, id) = store
            .last_block()
            .map_or((0, [0; 32]), |block| (block.height, block.id));
        network.set_chain_status(ChainStatus {
            genesis,
            best_height: height,
            best_hash: BlockHash(id),
            lib_height: height,
            lib_hash: BlockHash(id),
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = heights.changed() => if changed.is_err() { break },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Starts the generator at `tps`, counting what it submits.
    fn spawn_generator(
        tps: u64,
        payloads: Option<Payloads>,
    ) -> (Arc<AtomicU64>, CancellationToken) {
        let count = Arc::new(AtomicU64::new(0));
        let shutdown = CancellationToken::new();
        let counted = Arc::clone(&count);
        tokio::spawn(generate(
            tps,
            None,
            move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            },
            payloads,
            shutdown.clone(),
        ));
        (count, shutdown)
    }

    /// Lets the generator run at the current instant.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// On schedule the generator submits `tps` per second; after a stall of five seconds it
    /// catches up by at most one second's worth, not five.
    #[tokio::test(start_paused = true)]
    async fn a_stall_is_caught_up_by_at_most_one_second_of_load() {
        let (count, shutdown) = spawn_generator(1000, None);
        settle().await;
        for _ in 0..100 {
            tokio::time::advance(LOAD_TICK).await;
            settle().await;
        }
        assert_eq!(
            count.load(Ordering::Relaxed),
            1000,
            "one second on schedule"
        );

        // The generator's task does not run for five seconds.
        let stalled = count.load(Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        let burst = count.load(Ordering::Relaxed) - stalled;
        assert_eq!(burst, 1000, "one second's worth, not five");

        // Back on schedule from there.
        tokio::time::advance(LOAD_TICK).await;
        settle().await;
        assert_eq!(count.load(Ordering::Relaxed) - stalled, 1010);
        shutdown.cancel();
    }

    /// A block's payload takes exactly its size: 200 transactions of 256 to 512 bytes
    /// appended one by one would otherwise leave the buffer up to twice as large.
    #[test]
    fn a_concatenated_payload_takes_exactly_its_size() {
        let parts: Vec<Bytes> = (0..200u32)
            .map(|n| Bytes::from(vec![n as u8; 256 + (n as usize * 37) % 257]))
            .collect();
        let total: usize = parts.iter().map(Bytes::len).sum();
        let bytes = concat_exact(parts.iter());
        assert_eq!(bytes.len(), total);
        assert_eq!(bytes.capacity(), total);
        assert_eq!(&bytes[..parts[0].len()], &parts[0][..]);
        assert_eq!(&bytes[total - parts[199].len()..], &parts[199][..]);
    }

    /// Recorded payloads are kept for the retention, then pruned oldest first, so the map
    /// holds about `tps` × retention payloads however long the load runs.
    #[tokio::test(start_paused = true)]
    async fn recorded_payloads_are_pruned_after_the_retention() {
        let payloads = Payloads::default();
        let (count, shutdown) = spawn_generator(100, Some(payloads.clone()));
        settle().await;
        let ticks_per_second = 100;
        let mut ids_of_the_first_second = 0;
        for tick in 1..=ticks_per_second * 30 {
            tokio::time::advance(LOAD_TICK).await;
            settle().await;
            if tick == ticks_per_second {
                ids_of_the_first_second = count.load(Ordering::Relaxed);
                assert_eq!(payloads.len() as u64, ids_of_the_first_second);
            }
        }
        assert_eq!(ids_of_the_first_second, 100);
        assert_eq!(count.load(Ordering::Relaxed), 3000);
        // Ten seconds' worth (and the tick at the boundary) remain of thirty.
        let kept = payloads.len() as u64;
        assert!((1000..=1001).contains(&kept), "{kept} payloads kept");
        shutdown.cancel();

        // The pruning itself: by submission time, the boundary kept.
        let log = Payloads::default();
        let start = Instant::now();
        let id = |n: u8| TxnId([n; 32]);
        log.record(start, id(1), Bytes::from_static(b"a"));
        log.record(
            start + Duration::from_secs(1),
            id(2),
            Bytes::from_static(b"b"),
        );
        log.prune(start + PAYLOAD_RETENTION);
        assert_eq!(log.concat(&[id(1), id(2)]), Bytes::from_static(b"ab"));
        log.prune(start + PAYLOAD_RETENTION + Duration::from_millis(1));
        assert_eq!(log.concat(&[id(1), id(2)]), Bytes::from_static(b"b"));
        assert_eq!(log.len(), 1);
    }
}
