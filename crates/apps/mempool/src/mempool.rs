//! [`Mempool`]: the actor that gossips; [`MempoolHandle`]: what clients and consensus call;
//! [`MempoolConfig`]; the metrics.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use peerlane::{Event, NetworkClient, NetworkEvents, PeerNetworkId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use crate::error::Error;
use crate::pool::Pool;
use crate::types::{MempoolMsg, Transaction, TxnId};

/// How the mempool sizes its pool and paces its gossip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// At most this many pending transactions; more is [`Error::Full`].
    pub capacity: usize,
    /// New transactions are gossiped at least this often.
    pub batch_interval: Duration,
    /// At most this many transactions per gossip message; this many waiting triggers a
    /// gossip before the interval ends.
    pub max_batch: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            batch_interval: Duration::from_millis(50),
            max_batch: 100,
        }
    }
}

/// The mempool's counters, as [`MempoolHandle::counts`] reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolCounts {
    /// Transactions pending now.
    pub pending: usize,
    /// Transactions accepted into the pool (from clients and peers).
    pub accepted: u64,
    /// Transactions refused as already known.
    pub duplicates: u64,
    /// Transactions refused because the pool was full.
    pub rejected_full: u64,
    /// Transactions sent to peers (one per transaction and peer).
    pub gossiped: u64,
    /// Transactions received from peers, duplicates included.
    pub received: u64,
}

/// The mempool's prometheus metrics, under the prefix `mempool`.
#[derive(Clone, Debug, Default)]
struct Metrics {
    accepted: Counter,
    duplicates: Counter,
    rejected_full: Counter,
    gossiped: Counter,
    received: Counter,
    pending: Gauge,
}

/// What the actor and its handles share.
#[derive(Debug)]
struct Shared {
    pool: Mutex<Pool>,
    /// Woken when a full batch waits, so gossip need not wait for the interval.
    gossip_now: Notify,
    metrics: Metrics,
    max_batch: usize,
}

/// The mempool actor: reads the peers' gossip into the pool and gossips new transactions on.
/// Start it with [`run`](Self::run).
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    client: NetworkClient<MempoolMsg>,
    events: NetworkEvents<MempoolMsg>,
    shared: Arc<Shared>,
}

/// Submits transactions and lets consensus take and commit them. Cheap to clone. Works on the
/// shared pool directly: calls do not wait for the actor.
#[derive(Clone, Debug)]
pub struct MempoolHandle {
    shared: Arc<Shared>,
}

impl Mempool {
    /// A mempool over the application's `client` and `events` (registered on
    /// `ProtocolId::MEMPOOL_DIRECT_SEND`), its metrics in `registry` under `mempool_`.
    pub fn new(
        config: MempoolConfig,
        client: NetworkClient<MempoolMsg>,
        events: NetworkEvents<MempoolMsg>,
        registry: &mut Registry,
    ) -> (Self, MempoolHandle) {
        let metrics = Metrics::default();
        let registry = registry.sub_registry_with_prefix("mempool");
        registry.register(
            "transactions_accepted",
            "Transactions accepted into the pool, from clients and peers",
            metrics.accepted.clone(),
        );
        registry.register(
            "duplicates",
            "Transactions refused as already known",
            metrics.duplicates.clone(),
        );
        registry.register(
            "rejected_full",
            "Transactions refused because the pool was full",
            metrics.rejected_full.clone(),
        );
        registry.register(
            "transactions_gossiped",
            "Transactions sent to peers, one per transaction and peer",
            metrics.gossiped.clone(),
        );
        registry.register(
            "transactions_received",
            "Transactions received from peers, duplicates included",
            metrics.received.clone(),
        );
        registry.register(
            "pending",
            "Transactions pending in the pool",
            metrics.pending.clone(),
        );
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool::new(config.capacity)),
            gossip_now: Notify::new(),
            metrics,
            max_batch: config.max_batch.max(1),
        });
        let handle = MempoolHandle {
            shared: shared.clone(),
        };
        (
            Self {
                config,
                client,
                events,
                shared,
            },
            handle,
        )
    }

    /// Runs until `shutdown` completes or the network's events end.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.batch_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = self.events.next() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                () = self.shared.gossip_now.notified() => self.gossip(),
                _ = tick.tick() => self.gossip(),
            }
        }
        tracing::debug!("mempool stopped");
    }

    fn on_event(&self, event: Event<MempoolMsg>) {
        // The mempool serves no RPC: a request is dropped, and the requester times out.
        if let Event::Message {
            peer,
            message: MempoolMsg::Transactions(txns),
            ..
        } = event
        {
            self.shared.metrics.received.inc_by(txns.len() as u64);
            for txn in txns {
                // Refusals are counted by `insert`; a peer's duplicate is routine.
                let _ = self.shared.insert(txn, Some(peer));
            }
        }
    }

    /// Sends what the outbox holds to every connected peer but the one it came from.
    fn gossip(&self) {
        let outbox = self.shared.lock().take_outbox();
        if outbox.is_empty() {
            return;
        }
        for peer in self.client.connected_peers() {
            let txns: Vec<Transaction> = outbox
                .iter()
                .filter(|(_, from)| *from != Some(peer))
                .map(|(txn, _)| txn.clone())
                .collect();
            for chunk in txns.chunks(self.shared.max_batch) {
                self.send(peer, chunk.to_vec());
            }
        }
    }

    fn send(&self, peer: PeerNetworkId, txns: Vec<Transaction>) {
        let count = txns.len() as u64;
        match self
            .client
            .send_to_peer(peer, &MempoolMsg::Transactions(txns))
        {
            Ok(()) => {
                self.shared.metrics.gossiped.inc_by(count);
            }
            Err(err) => tracing::debug!(%peer, error = %err, "mempool gossip not sent"),
        }
    }
}

impl MempoolHandle {
    /// Adds a client's transaction to the pool and queues it for gossip; returns its id.
    ///
    /// Fails with [`Error::Duplicate`] if it is pending or was committed recently, and
    /// [`Error::Full`] if the pool is at capacity.
    pub fn submit(&self, txn: Transaction) -> Result<TxnId, Error> {
        self.shared.insert(txn, None)
    }

    /// Up to `max` pending transactions, oldest first, for a block. They stay pending (and
    /// may be taken again) until [`commit`](Self::commit)ted, so a block that fails loses
    /// nothing.
    pub fn take_batch(&self, max: usize) -> Vec<Transaction> {
        self.shared.lock().batch(max)
    }

    /// Removes committed transactions from the pool; later copies of them are duplicates.
    /// Returns how many were pending.
    pub fn commit(&self, ids: impl IntoIterator<Item = TxnId>) -> usize {
        let mut pool = self.shared.lock();
        let removed = pool.commit(ids);
        self.shared.metrics.pending.set(pool.len() as i64);
        removed
    }

    /// How many transactions are pending.
    pub fn pending(&self) -> usize {
        self.shared.lock().len()
    }

    /// The counters.
    pub fn counts(&self) -> MempoolCounts {
        let metrics = &self.shared.metrics;
        MempoolCounts {
            pending: self.pending(),
            accepted: metrics.accepted.get(),
            duplicates: metrics.duplicates.get(),
            rejected_full: metrics.rejected_full.get(),
            gossiped: metrics.gossiped.get(),
            received: metrics.received.get(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool's invariants hold between calls, so a panic elsewhere does not spoil it.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, txn: Transaction, from: Option<PeerNetworkId>) -> Result<TxnId, Error> {
        let mut pool = self.lock();
        let result = pool.insert(txn, from);
        match &result {
            Ok(_) => {
                self.metrics.accepted.inc();
                self.metrics.pending.set(pool.len() as i64);
                if pool.outbox_len() >= self.max_batch {
                    self.gossip_now.notify_one();
                }
            }
            Err(Error::Duplicate { .. }) => {
                self.metrics.duplicates.inc();
            }
            Err(Error::Full { .. }) => {
                self.metrics.rejected_full.inc();
            }
        }
        result
    }
}
