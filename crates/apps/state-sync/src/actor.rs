//! [`StateSync`]: the actor that serves blocks, catches up from peers and announces commits.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use peerlane::{Event, NetworkClient, NetworkEvents, PeerNetworkId, RpcReplier};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use wire::ProtocolId;

use crate::config::Config;
use crate::error::Error;
use crate::message::{Block, StateSyncMsg};
use crate::metrics::Metrics;
use crate::peer_choice::{Candidate, choose_peer};
use crate::store::StoreHandle;

/// The direct-send protocols to register state sync on: `StateSyncDirectSend` (3).
pub const DIRECT_SEND_PROTOCOLS: [ProtocolId; 1] = [ProtocolId::STATE_SYNC_DIRECT_SEND];
/// The RPC protocols to register state sync on: `StorageServiceRpc` (8).
pub const RPC_PROTOCOLS: [ProtocolId; 1] = [ProtocolId::STORAGE_SERVICE_RPC];

/// The block request in flight: resolves to the peer asked and its answer.
type Fetch =
    Pin<Box<dyn Future<Output = (PeerNetworkId, Result<StateSyncMsg, peerlane::Error>)> + Send>>;

/// State sync for one node: serves `GetBlocks` from the store, fetches the blocks peers
/// announced and the store lacks (one request at a time, to the fastest peers ahead in turn,
/// passing over a peer whose request failed for [`Config::retry_after`]), and announces every
/// new committed height to the connected peers.
///
/// Register it with [`DIRECT_SEND_PROTOCOLS`] and [`RPC_PROTOCOLS`], then [`run`](Self::run) it
/// in a task of its own.
#[derive(Debug)]
pub struct StateSync {
    config: Config,
    client: NetworkClient<StateSyncMsg>,
    events: NetworkEvents<StateSyncMsg>,
    store: StoreHandle,
    metrics: Metrics,
}

/// The heights a peer holds: what it can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerHeights {
    committed: u64,
    /// The lowest height it still holds (it pruned those below); 0 when it holds none.
    lowest: u64,
}

impl PeerHeights {
    fn serves(self, height: u64) -> bool {
        self.lowest != 0 && self.lowest <= height && height <= self.committed
    }
}

/// The actor's state apart from its event stream.
struct Actor {
    config: Config,
    client: NetworkClient<StateSyncMsg>,
    store: StoreHandle,
    metrics: Metrics,
    /// The heights each connected peer announced (or last answered) as held.
    peer_heights: HashMap<PeerNetworkId, PeerHeights>,
    /// The connected peers told our height since they connected.
    announced_to: HashSet<PeerNetworkId>,
    /// Peers passed over until the instant, after a failed request.
    failed: HashMap<PeerNetworkId, Instant>,
    /// The turn among the fastest peers ahead (see `peer_choice`).
    next_peer: usize,
    /// Permits for the archive reads under way ([`Config::max_concurrent_archive_reads`]).
    archive_reads: Arc<Semaphore>,
}

impl StateSync {
    /// State sync over `client` and `events` (registered on [`DIRECT_SEND_PROTOCOLS`] and
    /// [`RPC_PROTOCOLS`]), serving and filling `store`. Its metrics are unregistered until
    /// [`with_metrics`](Self::with_metrics).
    pub fn new(
        config: Config,
        client: NetworkClient<StateSyncMsg>,
        events: NetworkEvents<StateSyncMsg>,
        store: StoreHandle,
    ) -> Self {
        Self {
            config,
            client,
            events,
            store,
            metrics: Metrics::default(),
        }
    }

    /// Counts into `metrics` (say [`Metrics::register`]ed) instead.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The counters this actor updates.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes or the network's events end.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            config,
            client,
            mut events,
            store,
            metrics,
        } = self;
        let mut height_rx = store.subscribe_height();
        let config_reads = config.max_concurrent_archive_reads;
        let mut ticker = tokio::time::interval(config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut actor = Actor {
            config,
            client,
            store,
            metrics,
            peer_heights: HashMap::new(),
            announced_to: HashSet::new(),
            failed: HashMap::new(),
            next_peer: 0,
            archive_reads: Arc::new(Semaphore::new(config_reads)),
        };
        let mut fetch: Option<Fetch> = None;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if fetch.is_none() {
                fetch = actor.next_fetch();
            }
            tokio::select! {
                () = &mut shutdown => break,
                event = events.next() => match event {
                    Some(event) => actor.on_event(event),
                    None => break,
                },
                changed = height_rx.changed() => {
                    // The store, and so the sender, lives as long as the actor.
                    if changed.is_ok() {
                        height_rx.borrow_and_update();
                        actor.announce_to_all();
                    }
                }
                _ = ticker.tick() => actor.on_tick(),
                (peer, result) = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                    fetch = None;
                    if let Err(err) = actor.on_response(peer, result) {
                        actor.on_failure(peer, &err);
                    }
                }
            }
        }
    }
}

/// Answers a `GetBlocks` with `blocks` and the heights `store` holds.
fn reply_blocks(
    store: &StoreHandle,
    metrics: &Metrics,
    peer: PeerNetworkId,
    responder: RpcReplier<StateSyncMsg>,
    blocks: Vec<Block>,
) {
    let served = blocks.len();
    match responder.reply(StateSyncMsg::Blocks {
        blocks,
        committed_height: store.committed_height(),
        lowest_height: store.lowest_height(),
    }) {
        Ok(()) => metrics.served(served),
        Err(err) => tracing::debug!(%peer, error = %err, "state sync: response not sent"),
    }
}

impl Actor {
    fn on_event(&mut self, event: Event<StateSyncMsg>) {
        match event {
            Event::Message {
                peer,
                message:
                    StateSyncMsg::Announce {
                        height,
                        lowest_height,
                        ..
                    },
                ..
            } => {
                self.peer_heights.insert(
                    peer,
                    PeerHeights {
                        committed: height,
                        lowest: lowest_height,
                    },
                );
                self.store.note_announced(height);
            }
            Event::RpcRequest {
                peer,
                request:
                    StateSyncMsg::GetBlocks {
                        start_height,
                        end_height,
                    },
                responder,
                ..
            } => self.serve(peer, start_height, end_height, responder),
            other => tracing::debug!(?other, "state sync: unexpected message; dropped"),
        }
    }

    fn serve(
        &self,
        peer: PeerNetworkId,
        start_height: u64,
        end_height: u64,
        responder: RpcReplier<StateSyncMsg>,
    ) {
        let (max_blocks, max_bytes) = (
            self.config.max_blocks_per_response,
            self.config.max_response_bytes,
        );
        if let Some((archive, end_height)) = self.store.archived_range(start_height, end_height)
            && let Some((_, thread)) = self.store.archive()
        {
            // Older heights: read from the disk on the store's archive thread, a bounded
            // number at once.
            let Ok(permit) = Arc::clone(&self.archive_reads).try_acquire_owned() else {
                self.metrics.archive_read_refused();
                self.reply(peer, responder, Vec::new());
                return;
            };
            let (store, metrics) = (self.store.clone(), self.metrics.clone());
            tokio::spawn(async move {
                let read = thread
                    .run(move || archive.read(start_height, end_height, max_blocks, max_bytes))
                    .await;
                let blocks = match read.and_then(|read| read) {
                    Ok(blocks) => {
                        metrics.archive_read(Ok(blocks.len()));
                        blocks
                    }
                    Err(err) => {
                        metrics.archive_read(Err(()));
                        tracing::debug!(%peer, error = %err, "state sync: archive read failed");
                        Vec::new()
                    }
                };
                reply_blocks(&store, &metrics, peer, responder, blocks);
                drop(permit);
            });
            return;
        }
        let blocks = self
            .store
            .blocks(start_height, end_height, max_blocks, max_bytes);
        self.reply(peer, responder, blocks);
    }

    fn reply(&self, peer: PeerNetworkId, responder: RpcReplier<StateSyncMsg>, blocks: Vec<Block>) {
        reply_blocks(&self.store, &self.metrics, peer, responder, blocks);
    }

    /// Whether a connected peer holds `height`, whether or not it is passed over.
    fn any_peer_serves(&self, height: u64) -> bool {
        self.peer_heights.values().any(|held| held.serves(height))
    }

    /// The next block request, if a connected peer is ahead and not passed over: for the next
    /// height from the peers that still hold it, or, when every peer ahead pruned it, from
    /// the lowest height a peer holds (the store then starts from there).
    fn next_fetch(&mut self) -> Option<Fetch> {
        let committed = self.store.committed_height();
        let next = committed + 1;
        let now = Instant::now();
        self.failed.retain(|_, until| now < *until);
        // Where each connected peer is: the higher of what it announced to us and the best
        // height of its chain status, with its round-trip time, and the lowest height it said
        // it holds (1 until it says otherwise: a peer known by its chain status only).
        let mut ahead: Vec<(Candidate, PeerHeights)> = self
            .client
            .connected_peers()
            .into_iter()
            .filter(|peer| !self.failed.contains_key(peer))
            .filter_map(|peer| {
                let stats = self.client.peer_stats(peer);
                let announced = self.peer_heights.get(&peer).copied();
                let status = stats
                    .and_then(|stats| stats.chain_status)
                    .map(|chain| chain.status.best_height);
                let height = announced.map(|held| held.committed).max(status)?;
                let held = PeerHeights {
                    committed: height,
                    lowest: announced.map_or(1, |held| held.lowest),
                };
                (height > committed).then(|| {
                    let candidate = Candidate {
                        peer,
                        height,
                        rtt: stats.and_then(|stats| stats.last_rtt),
                    };
                    (candidate, held)
                })
            })
            .collect();
        if ahead.iter().any(|(_, held)| held.serves(next)) {
            ahead.retain(|(_, held)| held.serves(next));
        } else if self.any_peer_serves(next) {
            // A peer that holds the next height is only passed over for now: wait for it
            // rather than skip ahead.
            return None;
        }
        let held_by: HashMap<PeerNetworkId, PeerHeights> = ahead
            .iter()
            .map(|(candidate, held)| (candidate.peer, *held))
            .collect();
        let candidates = ahead.into_iter().map(|(candidate, _)| candidate).collect();
        let Candidate { peer, .. } = choose_peer(candidates, self.next_peer)?;
        let held = *held_by.get(&peer)?;
        self.next_peer = self.next_peer.wrapping_add(1);
        let start_height = if held.serves(next) { next } else { held.lowest };
        let most = self.config.max_blocks_per_response.max(1) as u64;
        let end_height = held.committed.min(start_height + most - 1);
        let client = self.client.clone();
        let timeout = self.config.rpc_timeout;
        tracing::debug!(%peer, start_height, end_height, "state sync: requesting blocks");
        Some(Box::pin(async move {
            let request = StateSyncMsg::GetBlocks {
                start_height,
                end_height,
            };
            (peer, client.send_rpc(peer, request, timeout).await)
        }))
    }

    /// Appends the blocks of a response.
    fn on_response(
        &mut self,
        peer: PeerNetworkId,
        result: Result<StateSyncMsg, peerlane::Error>,
    ) -> Result<(), Error> {
        let StateSyncMsg::Blocks {
            blocks,
            committed_height,
            lowest_height,
        } = result?
        else {
            return Err(Error::BadResponse {
                peer,
                reason: "not a Blocks response",
            });
        };
        // The peer's own word on its heights replaces its announcement.
        if let Some(held) = self.peer_heights.get_mut(&peer) {
            *held = PeerHeights {
                committed: committed_height,
                lowest: lowest_height,
            };
        }
        let committed = self.store.committed_height();
        if blocks.is_empty() {
            // A peer that pruned the height asked for is not at fault: the next request
            // takes that into account.
            if committed_height > committed && lowest_height <= committed + 1 {
                return Err(Error::BadResponse {
                    peer,
                    reason: "no blocks, though ahead",
                });
            }
            return Ok(());
        }
        let (mut appended, mut bytes) = (0u64, 0u64);
        let mut blocks = blocks
            .into_iter()
            .filter(|block| block.height > committed)
            .peekable();
        // No peer holds the next height any more: start from the first block this peer holds.
        // Only then, so that one peer cannot make the node skip what others still serve.
        if let Some(first) = blocks
            .next_if(|first| first.height > committed + 1 && !self.any_peer_serves(committed + 1))
        {
            let (height, size) = (first.height, first.payload.len() as u64);
            self.store
                .start_from(first)
                .map_err(|source| Error::InvalidBlocks {
                    peer,
                    source: Box::new(source),
                })?;
            tracing::info!(%peer, height, skipped_from = committed + 1, "state sync: no peer holds the next height any more; starting from the lowest block a peer holds");
            self.metrics.started_from_snapshot();
            appended += 1;
            bytes += size;
        }
        // Blocks the node committed meanwhile (from its own consensus) are skipped.
        for block in blocks {
            let size = block.payload.len() as u64;
            if let Err(source) = self.store.append(block) {
                self.metrics.fetched(appended, bytes);
                return Err(Error::InvalidBlocks {
                    peer,
                    source: Box::new(source),
                });
            }
            appended += 1;
            bytes += size;
        }
        self.metrics.fetched(appended, bytes);
        if appended == 0 {
            // Only blocks the node has: asking the same peer again would get the same.
            return Err(Error::BadResponse {
                peer,
                reason: "no new blocks",
            });
        }
        Ok(())
    }

    fn on_failure(&mut self, peer: PeerNetworkId, err: &Error) {
        self.metrics.rpc_failed();
        tracing::debug!(%peer, error = %err, "state sync: block request failed; trying another peer");
        self.failed
            .insert(peer, Instant::now() + self.config.retry_after);
    }

    /// Announces the committed height to every connected peer.
    fn announce_to_all(&mut self) {
        let peers = self.client.connected_peers();
        self.announce(peers.iter().copied());
        self.announced_to = peers.into_iter().collect();
    }

    /// Forgets disconnected peers, and announces the committed height to new ones.
    fn on_tick(&mut self) {
        self.metrics.retained(self.store.retained());
        // Sorted (the client lists peers in order), so that announcements leave in the same
        // order in every run.
        let listed = self.client.connected_peers();
        let connected: HashSet<PeerNetworkId> = listed.iter().copied().collect();
        self.peer_heights.retain(|peer, _| connected.contains(peer));
        self.failed.retain(|peer, _| connected.contains(peer));
        self.announced_to.retain(|peer| connected.contains(peer));
        let new: Vec<PeerNetworkId> = listed
            .into_iter()
            .filter(|peer| !self.announced_to.contains(peer))
            .collect();
        self.announce(new.iter().copied());
        self.announced_to.extend(new);
    }

    fn announce(&self, peers: impl IntoIterator<Item = PeerNetworkId>) {
        let Some(last) = self.store.last_block() else {
            return;
        };
        let message = StateSyncMsg::Announce {
            height: last.height,
            block_id: last.id,
            lowest_height: self.store.lowest_height(),
        };
        if let Err(err) = self.client.send_to_peers(peers, &message) {
            tracing::debug!(error = %err, "state sync: announcement not sent to every peer");
        }
    }
}
