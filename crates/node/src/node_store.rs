//! The node's persistent peer store (`node.data_dir`): `<data_dir>/peerlane.redb`, opened at
//! start, fed while the node runs, read again at the next start.
//!
//! ```text
//! admin bans ──commit (waits for the fsync)──┐
//! NewPeer / LostPeer ──record (never waits)──┤
//! network's own bans, failed dials ──record──┤ bounded queue (QUEUE_CAPACITY; full: dropped, counted)
//! touch every TOUCH_INTERVAL ────────────────┘
//!                                            ▼
//!                      writer thread: one PeerStore::apply per batch (≤ MAX_BATCH events)
//! ```
//!
//! Store calls block on the disk, so they run on a thread of their own rather than on a tokio
//! worker. What the store held at start ([`Opened`]): the active bans (restored into the
//! network's ban lists) and the redial list (long-lived outbound peers first, then by score),
//! which the node hands to the connectivity manager as its stored-peers discovery source
//! ([`stored_peers`]): it dials them after the seeds, in that order, and retries the ones
//! that are down with its backoff.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use netcore::{NetworkAddress, PeerId};
use peerlane::{DiscoveredPeer, IpPrefix};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use store::{
    Ban, IpBanKey, Network, PeerChange, PeerKey, PeerStore, PeerStoreConfig, RedialCandidate,
    Store, TrustLevel, UnixMillis,
};
use tokio::sync::{mpsc, oneshot};
use wire::NetworkId;

/// Changes waiting for the writer thread. Connection events come at most a few per
/// connection; at the bound new ones are dropped and counted.
pub(crate) const QUEUE_CAPACITY: usize = 1024;

/// The most events written in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// How often connected peers' `last_seen` is refreshed, so that a connection cut by a crash
/// still counts as long as it was (to within this) at the next start.
pub(crate) const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// The most stored peers handed to the connectivity manager at start (the head of the redial
/// list); it dials them within its outbound limits and retries them with backoff, so a longer
/// list only adds peers that are retried forever.
pub(crate) const MAX_STORED_CANDIDATES: usize = 256;

/// One change for the store.
#[derive(Debug)]
pub(crate) enum Change {
    /// A peer event (connection, ban, ...).
    Peer(PeerChange),
    /// An IP or prefix banned by the operator, until the time given or until lifted.
    BanIp(IpBanKey, Option<UnixMillis>),
    /// The ban on an IP or prefix lifted.
    UnbanIp(IpBanKey),
    /// Refresh the connected peers' `last_seen`.
    Touch,
}

/// A change and, for a commit, who waits for it to be on disk.
struct Command {
    change: Change,
    done: Option<oneshot::Sender<bool>>,
}

/// What the store held at start.
pub(crate) struct Opened {
    /// Writes to the store.
    pub(crate) writer: StoreWriter,
    /// The writer thread; it ends once every [`StoreWriter`] is dropped.
    pub(crate) thread: std::thread::JoinHandle<()>,
    /// Peers banned now on this network, with their bans.
    pub(crate) bans: Vec<(PeerId, Ban)>,
    /// IPs and prefixes banned now.
    pub(crate) ip_bans: Vec<(IpPrefix, Ban)>,
    /// Whom to dial first, in order.
    pub(crate) redial: Vec<RedialCandidate>,
    /// Where routing keeps the edges it pruned, in the same file.
    pub(crate) routing_components: store::ComponentTable,
    /// The file, for the state-sync block archive.
    pub(crate) store: Store,
}

/// Writes to the peer store of one network. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct StoreWriter {
    network: Network,
    tx: mpsc::Sender<Command>,
    dropped: Counter,
}

/// The store's network for `network_id` (the names match).
pub(crate) fn store_network(network_id: NetworkId) -> Network {
    match network_id {
        NetworkId::Validator => Network::Validator,
        NetworkId::Vfn => Network::Vfn,
        NetworkId::Public => Network::Public,
    }
}

/// The store's key for an IP ban.
pub(crate) fn ip_ban_key(prefix: IpPrefix) -> IpBanKey {
    IpBanKey {
        addr: prefix.ip(),
        prefix_len: prefix.prefix_len(),
    }
}

/// Opens `<data_dir>/peerlane.redb` (creating the directory), registers the store's metrics
/// and the queue's drop counter in `registry`, records the `seeds` as configured peers (and
/// stored configured peers no longer among them as unconfigured), and starts the writer
/// thread. Blocks on the disk: call it from a blocking context.
pub(crate) fn open(
    data_dir: &Path,
    config: PeerStoreConfig,
    network_id: NetworkId,
    seeds: &std::collections::BTreeMap<PeerId, DiscoveredPeer>,
    registry: &mut Registry,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("node.data_dir: cannot create {}", data_dir.display()))?;
    let metrics = store::Metrics::register(registry);
    let dropped = Counter::default();
    registry.register(
        "peerlane_node_store_events_dropped",
        "Peer store changes dropped because the writer's queue was full.",
        dropped.clone(),
    );
    let store = Store::open_with_metrics(data_dir, metrics).with_context(|| {
        format!(
            "node.data_dir: cannot open the store in {}",
            data_dir.display()
        )
    })?;
    let routing_components = store::ComponentTable::new(store.clone());
    let mut peers = PeerStore::open(store.clone(), config).context("cannot load the peer store")?;
    let network = store_network(network_id);
    let now = UnixMillis::now();
    // Seeds dropped from the config since the last start may now expire like any peer.
    let unconfigured: Vec<PeerChange> = peers
        .table()
        .iter()
        .filter(|(key, record)| {
            key.network == network
                && record.trust == TrustLevel::Configured
                && !seeds.contains_key(&key.peer_id)
        })
        .map(|(key, _)| PeerChange::Unconfigured { key: *key })
        .collect();
    let discovered = seeds.iter().map(|(peer_id, seed)| PeerChange::Discovered {
        key: PeerKey::new(network, *peer_id),
        addresses: seed.addresses.clone(),
        trust: TrustLevel::Configured,
    });
    peers
        .apply(
            unconfigured
                .into_iter()
                .chain(discovered)
                .collect::<Vec<_>>(),
            now,
        )
        .context("cannot record the seeds in the peer store")?;
    peers.prune(now).context("cannot prune the peer store")?;
    let bans = peers
        .active_bans(now)
        .into_iter()
        .filter(|(key, _)| key.network == network)
        .map(|(key, ban)| (key.peer_id, ban))
        .collect();
    let ip_bans = peers
        .active_ip_bans(now)
        .into_iter()
        .filter_map(|(key, ban)| Some((IpPrefix::new(key.addr, key.prefix_len)?, ban)))
        .collect();
    let redial = peers.redial_candidates(network, now);
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let thread = std::thread::Builder::new()
        .name("peer-store".to_owned())
        .spawn(move || write_loop(peers, rx))
        .context("cannot start the peer store's writer thread")?;
    Ok(Opened {
        writer: StoreWriter {
            network,
            tx,
            dropped,
        },
        thread,
        bans,
        ip_bans,
        redial,
        routing_components,
        store,
    })
}

impl StoreWriter {
    /// `peer_id`'s key on this network.
    pub(crate) fn key(&self, peer_id: PeerId) -> PeerKey {
        PeerKey::new(self.network, peer_id)
    }

    /// Queues `change` without waiting; a full queue drops it
    /// (`peerlane_node_store_events_dropped_total`).
    pub(crate) fn record(&self, change: Change) {
        let command = Command { change, done: None };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(command) {
            self.dropped.inc();
        }
    }

    /// Queues `change` (waiting for room: an operator's change is never dropped) and waits
    /// until it is on disk.
    pub(crate) async fn commit(&self, change: Change) -> anyhow::Result<()> {
        let (done, written) = oneshot::channel();
        self.tx
            .send(Command {
                change,
                done: Some(done),
            })
            .await
            .map_err(|_| anyhow::anyhow!("the peer store has stopped"))?;
        match written.await {
            Ok(true) => Ok(()),
            Ok(false) => anyhow::bail!("the peer store could not write (see the log)"),
            Err(_) => anyhow::bail!("the peer store has stopped"),
        }
    }

    /// A peer connected through `address` (outbound) or from elsewhere (inbound).
    pub(crate) fn connected(
        &self,
        peer_id: PeerId,
        origin: netcore::ConnectionOrigin,
        address: &NetworkAddress,
    ) {
        let address = (origin == netcore::ConnectionOrigin::Outbound).then(|| address.clone());
        self.record(Change::Peer(PeerChange::Connected {
            key: self.key(peer_id),
            address,
            direction: origin.into(),
        }));
    }

    /// A peer's connection closed.
    pub(crate) fn disconnected(&self, peer_id: PeerId) {
        self.record(Change::Peer(PeerChange::Disconnected {
            key: self.key(peer_id),
        }));
    }
}

/// The writer thread: takes what is queued (at most [`MAX_BATCH`] at a time), writes the peer
/// events of the batch in one transaction and the IP bans in their own, then tells the
/// waiters. Ends when every sender is gone.
fn write_loop(mut peers: PeerStore, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let now = UnixMillis::now();
        let mut events = Vec::new();
        let mut ok = true;
        for command in &batch {
            let result = match &command.change {
                Change::Peer(event) => {
                    events.push(event.clone());
                    continue;
                }
                Change::BanIp(key, until) => peers
                    .ban_ip(*key, store::BanReason::Manual, *until, now)
                    .map(drop),
                Change::UnbanIp(key) => peers.unban_ip(key).map(drop),
                Change::Touch => peers.touch_connected(now).map(drop),
            };
            if let Err(err) = result {
                ok = false;
                node_warn!("peer store: {err}");
            }
        }
        if !events.is_empty()
            && let Err(err) = peers.apply(events, now)
        {
            ok = false;
            node_warn!("peer store: {err}");
        }
        for command in batch.drain(..) {
            if let Some(done) = command.done {
                let _ = done.send(ok);
            }
        }
    }
}

/// The connectivity manager's stored-peers source from the redial list: its first
/// [`MAX_STORED_CANDIDATES`], in order (long-lived outbound peers first, then by score), each
/// with its addresses best score first.
pub(crate) fn stored_peers(candidates: Vec<RedialCandidate>) -> Vec<(PeerId, Vec<NetworkAddress>)> {
    candidates
        .into_iter()
        .take(MAX_STORED_CANDIDATES)
        .map(|candidate| (candidate.peer_id, candidate.addresses))
        .collect()
}

/// The store's record of what the network decided on its own: its bans (with their reason
/// and end) and the failed dials of its connectivity manager (they lower the address's
/// score). Runs until `shutdown` or the network's end; events the subscription lost because
/// this fell behind are counted as dropped.
pub(crate) async fn record_network_events(
    mut events: tokio::sync::broadcast::Receiver<peerlane::RecordEvent>,
    writer: StoreWriter,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                if let Some(change) = network_change(&writer, event) {
                    writer.record(change);
                }
            }
            Err(RecvError::Lagged(lost)) => {
                writer.dropped.inc_by(lost);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The store's change for a network event, if it has one.
fn network_change(writer: &StoreWriter, event: peerlane::RecordEvent) -> Option<Change> {
    Some(match event {
        peerlane::RecordEvent::Banned {
            peer_id,
            cause,
            until,
        } => Change::Peer(PeerChange::Banned {
            key: writer.key(peer_id),
            reason: ban_reason(cause),
            until: until.map(UnixMillis::from_system_time),
        }),
        peerlane::RecordEvent::DialFailed { peer_id, addr } => {
            Change::Peer(PeerChange::DialFailed {
                key: writer.key(peer_id),
                address: addr,
            })
        }
        _ => return None,
    })
}

/// The stored reason of a ban the network set itself.
pub(crate) fn ban_reason(cause: peerlane::BanCause) -> store::BanReason {
    match cause {
        peerlane::BanCause::RateLimited => store::BanReason::RateLimited,
        peerlane::BanCause::InvalidEdge => store::BanReason::InvalidEdge,
        peerlane::BanCause::RoutingMisbehaviour => store::BanReason::Abusive,
        _ => store::BanReason::Abusive,
    }
}

/// Refreshes the connected peers' `last_seen` every [`TOUCH_INTERVAL`] until `shutdown`.
pub(crate) async fn touch(writer: StoreWriter, shutdown: tokio_util::sync::CancellationToken) {
    let mut interval = tokio::time::interval(TOUCH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => writer.record(Change::Touch),
        }
    }
}

/// Keeps the peer store of `network` up to date from its connection notifications, its own
/// bans and failed dials, and the periodic touch, until `shutdown`: what `peerlane node` does
/// in its main loop, for the networks of `peerlane demo`.
pub(crate) fn follow(
    network: &peerlane::Network,
    writer: &StoreWriter,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    tasks.spawn(touch(writer.clone(), shutdown.clone()));
    tasks.spawn(record_network_events(
        network.record_events(),
        writer.clone(),
        shutdown.clone(),
    ));
    let mut notifications = network.peers_and_metadata().subscribe();
    let (writer, shutdown) = (writer.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            let notification = tokio::select! {
                () = shutdown.cancelled() => return,
                notification = notifications.recv() => notification,
            };
            match notification {
                Some(peerlane::ConnectionNotification::NewPeer(metadata, _)) => {
                    writer.connected(
                        metadata.remote_peer_id,
                        metadata.origin,
                        &metadata.remote_addr,
                    );
                }
                Some(peerlane::ConnectionNotification::LostPeer(metadata, ..)) => {
                    writer.disconnected(metadata.remote_peer_id);
                }
                None => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes reach the file in batches; a commit returns once its change is on disk; a full
    /// queue drops and counts; bans and the redial order come back at the next open.
    #[tokio::test]
    async fn changes_are_written_and_read_back() {
        let dir = std::env::temp_dir().join(format!("node-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let seed = PeerId::new([1; 32]);
        let banned = PeerId::new([2; 32]);
        let address: NetworkAddress = "/ip4/192.0.2.1/tcp/6180".parse().unwrap();
        let seeds = std::collections::BTreeMap::from([(
            seed,
            DiscoveredPeer::new(noise::PeerRole::Upstream, [address.clone()], []),
        )]);
        let mut registry = Registry::default();
        let opened = open(
            &dir,
            PeerStoreConfig::default(),
            NetworkId::Public,
            &seeds,
            &mut registry,
        )
        .unwrap();
        assert!(opened.bans.is_empty());
        assert_eq!(opened.redial.len(), 1);
        let writer = opened.writer;
        writer.connected(seed, netcore::ConnectionOrigin::Outbound, &address);
        let key = writer.key(banned);
        writer
            .commit(Change::Peer(PeerChange::Banned {
                key,
                reason: store::BanReason::Manual,
                until: None,
            }))
            .await
            .unwrap();
        let prefix: IpPrefix = "10.1.2.0/24".parse().unwrap();
        writer
            .commit(Change::BanIp(ip_ban_key(prefix), None))
            .await
            .unwrap();
        // An IP ban with an end, and a ban the network set itself that has already ended
        // (as one would be at the next start): the first comes back, the second does not.
        let until = UnixMillis::now().saturating_add(Duration::from_secs(3600));
        let timed: IpPrefix = "10.3.0.0/16".parse().unwrap();
        writer
            .commit(Change::BanIp(ip_ban_key(timed), Some(until)))
            .await
            .unwrap();
        let ended: IpPrefix = "10.4.0.0/16".parse().unwrap();
        let past = UnixMillis(UnixMillis::now().0 - 1000);
        writer
            .commit(Change::BanIp(ip_ban_key(ended), Some(past)))
            .await
            .unwrap();
        let flooder = PeerId::new([4; 32]);
        let expired = network_change(
            &writer,
            peerlane::RecordEvent::Banned {
                peer_id: flooder,
                cause: peerlane::BanCause::RateLimited,
                until: Some(std::time::SystemTime::now() - Duration::from_secs(1)),
            },
        )
        .unwrap();
        writer.commit(expired).await.unwrap();
        let still = network_change(
            &writer,
            peerlane::RecordEvent::Banned {
                peer_id: PeerId::new([5; 32]),
                cause: peerlane::BanCause::RateLimited,
                until: Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
            },
        )
        .unwrap();
        writer.commit(still).await.unwrap();
        drop(writer);
        // The routing table and the block archive share the file; it closes with its last
        // handle.
        drop(opened.routing_components);
        drop(opened.store);
        tokio::task::spawn_blocking(move || opened.thread.join().unwrap())
            .await
            .unwrap();

        let mut registry = Registry::default();
        let opened = open(
            &dir,
            PeerStoreConfig::default(),
            NetworkId::Public,
            &seeds,
            &mut registry,
        )
        .unwrap();
        let bans: std::collections::HashMap<PeerId, Ban> = opened.bans.iter().copied().collect();
        assert_eq!(bans.len(), 2, "the expired ban is gone: {bans:?}");
        assert_eq!(bans[&banned].reason, store::BanReason::Manual);
        assert_eq!(bans[&banned].until, None);
        let rate_limited = bans[&PeerId::new([5; 32])];
        assert_eq!(rate_limited.reason, store::BanReason::RateLimited);
        assert!(rate_limited.until.is_some());
        assert_eq!(opened.ip_bans.len(), 2, "the ended IP ban is gone");
        assert!(
            opened
                .ip_bans
                .iter()
                .any(|(p, ban)| *p == prefix && ban.until.is_none())
        );
        let timed_ban = opened.ip_bans.iter().find(|(p, _)| *p == timed).unwrap().1;
        assert_eq!(timed_ban.until, Some(until));
        assert_eq!(opened.redial[0].peer_id, seed);
        assert_eq!(opened.redial[0].addresses, [address]);
        drop(opened.writer);
        drop(opened.routing_components);
        drop(opened.store);
        opened.thread.join().unwrap();

        // The seed left the config: it is no longer a configured peer.
        let mut registry = Registry::default();
        let opened = open(
            &dir,
            PeerStoreConfig::default(),
            NetworkId::Public,
            &std::collections::BTreeMap::new(),
            &mut registry,
        )
        .unwrap();
        let seed_entry = opened.redial.iter().find(|c| c.peer_id == seed).unwrap();
        assert_eq!(seed_entry.trust, TrustLevel::Direct);
        drop(opened.writer);
        drop(opened.routing_components);
        drop(opened.store);
        opened.thread.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A full queue drops what does not fit and counts it.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let writer = StoreWriter {
            network: Network::Public,
            tx,
            dropped: Counter::default(),
        };
        for _ in 0..3 {
            writer.disconnected(PeerId::new([3; 32]));
        }
        assert_eq!(writer.dropped.get(), 2);
    }
}
