//! The node's persistent peer store (`node.data_dir`): `<data_dir>/peerlane.redb`, opened at
//! start, fed while the node runs, read again at the next start.
//!
//! ```text
//! admin bans ──commit (waits for the fsync)──┐
//! NewPeer / LostPeer ──record (never waits)──┤ bounded queue (QUEUE_CAPACITY; full: dropped, counted)
//! touch every TOUCH_INTERVAL ────────────────┘
//!                                            ▼
//!                      writer thread: one PeerStore::apply per batch (≤ MAX_BATCH events)
//! ```
//!
//! Store calls block on the disk, so they run on a thread of their own rather than on a tokio
//! worker. What the store held at start ([`Opened`]): the active bans (restored into the
//! network's ban lists) and the redial list (long-lived outbound peers first, then by score).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use netcore::{NetworkAddress, PeerId};
use peerlane::{DiscoveredPeer, IpPrefix};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use store::{
    Ban, IpBanKey, Network, PeerEvent, PeerKey, PeerStore, PeerStoreConfig, RedialCandidate, Store,
    TrustLevel, UnixMillis,
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

/// The most stored peers dialed at start; the connectivity manager and inbound peers fill the
/// rest.
pub(crate) const MAX_REDIALS: usize = 64;

/// Dials at start running at once: enough that dead addresses (each up to the dial timeout)
/// do not hold up the live ones much, few enough not to burst.
pub(crate) const REDIAL_CONCURRENCY: usize = 8;

/// One change for the store.
#[derive(Debug)]
pub(crate) enum Change {
    /// A peer event (connection, ban, ...).
    Peer(PeerEvent),
    /// An IP or prefix banned until lifted.
    BanIp(IpBanKey),
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
    let mut peers = PeerStore::open(store, config).context("cannot load the peer store")?;
    let network = store_network(network_id);
    let now = UnixMillis::now();
    // Seeds dropped from the config since the last start may now expire like any peer.
    let unconfigured: Vec<PeerEvent> = peers
        .table()
        .iter()
        .filter(|(key, record)| {
            key.network == network
                && record.trust == TrustLevel::Configured
                && !seeds.contains_key(&key.peer_id)
        })
        .map(|(key, _)| PeerEvent::Unconfigured { key: *key })
        .collect();
    let discovered = seeds.iter().map(|(peer_id, seed)| PeerEvent::Discovered {
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
        self.record(Change::Peer(PeerEvent::Connected {
            key: self.key(peer_id),
            address,
            direction: origin.into(),
        }));
    }

    /// A peer's connection closed.
    pub(crate) fn disconnected(&self, peer_id: PeerId) {
        self.record(Change::Peer(PeerEvent::Disconnected {
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
                Change::BanIp(key) => peers
                    .ban_ip(*key, store::BanReason::Manual, None, now)
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

/// Dials the first [`MAX_REDIALS`] of `candidates` in order (long-lived outbound peers first),
/// [`REDIAL_CONCURRENCY`] at a time, each at its addresses best first until one connects;
/// failed dials are recorded (they lower the address's score). Peers already connected (a
/// seed the connectivity manager dialed, a peer that dialed us) are skipped. Returns how many
/// it connected.
pub(crate) async fn redial(
    network: std::sync::Arc<peerlane::Network>,
    writer: StoreWriter,
    candidates: Vec<RedialCandidate>,
    shutdown: tokio_util::sync::CancellationToken,
) -> usize {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(REDIAL_CONCURRENCY));
    let mut dials = tokio::task::JoinSet::new();
    for candidate in candidates.into_iter().take(MAX_REDIALS) {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = std::sync::Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (network, writer) = (std::sync::Arc::clone(&network), writer.clone());
        dials.spawn(async move {
            let _permit = permit;
            for address in candidate.addresses {
                if network.is_connected(candidate.peer_id) {
                    return false;
                }
                match network.dial(candidate.peer_id, address.clone()).await {
                    Ok(()) => return true,
                    Err(
                        peerlane::Error::AlreadyConnected { .. } | peerlane::Error::Banned { .. },
                    ) => {
                        return false;
                    }
                    Err(_) => writer.record(Change::Peer(PeerEvent::DialFailed {
                        key: writer.key(candidate.peer_id),
                        address,
                    })),
                }
            }
            false
        });
    }
    let mut connected = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return connected,
            joined = dials.join_next() => match joined {
                Some(Ok(true)) => connected += 1,
                Some(_) => {}
                None => return connected,
            },
        }
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
            .commit(Change::Peer(PeerEvent::Banned {
                key,
                reason: store::BanReason::Manual,
                until: None,
            }))
            .await
            .unwrap();
        let prefix: IpPrefix = "10.1.2.0/24".parse().unwrap();
        writer
            .commit(Change::BanIp(ip_ban_key(prefix)))
            .await
            .unwrap();
        drop(writer);
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
        assert_eq!(opened.bans.len(), 1);
        assert_eq!(opened.bans[0].0, banned);
        assert_eq!(opened.ip_bans.len(), 1);
        assert_eq!(opened.ip_bans[0].0, prefix);
        assert_eq!(opened.redial[0].peer_id, seed);
        assert_eq!(opened.redial[0].addresses, [address]);
        drop(opened.writer);
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
