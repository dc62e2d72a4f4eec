//! The peer store over redb: round trips through a file and through memory, batching,
//! metrics, a corrupt record, and the bound with 10,000+ peers on disk.

use std::time::Duration;

use netcore::{NetworkAddress, PeerId};
use prometheus_client::registry::Registry;
use store::{
    BanReason, Direction, EvictionReason, IpBanKey, Metrics, Network, PeerChange, PeerKey,
    PeerStatus, PeerStore, PeerStoreConfig, Store, Table, TrustLevel, UnixMillis,
};

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn peer(n: u32) -> PeerKey {
    let mut bytes = [0; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    PeerKey::new(Network::Public, PeerId::new(bytes))
}

fn addr(port: u16) -> NetworkAddress {
    format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
}

fn discovered(key: PeerKey, trust: TrustLevel) -> PeerChange {
    PeerChange::Discovered {
        key,
        addresses: vec![addr(6180)],
        trust,
    }
}

/// A few peers in every state: configured, connected (outbound, long), banned, plus an IP ban.
fn populate(peers: &mut PeerStore) {
    peers
        .apply(
            [
                discovered(peer(1), TrustLevel::Configured),
                discovered(peer(2), TrustLevel::Indirect),
                PeerChange::Connected {
                    key: peer(2),
                    address: Some(addr(6180)),
                    direction: Direction::Outbound,
                },
                discovered(peer(3), TrustLevel::Indirect),
            ],
            T0,
        )
        .unwrap();
    peers
        .apply(
            [PeerChange::Disconnected { key: peer(2) }],
            T0.saturating_add(Duration::from_secs(900)),
        )
        .unwrap();
    peers
        .ban_for_default(
            Network::Public,
            peer(3).peer_id,
            BanReason::BadHandshake,
            T0,
        )
        .unwrap();
    let ip = IpBanKey {
        addr: "192.0.2.0".parse().unwrap(),
        prefix_len: 24,
    };
    peers.ban_ip(ip, BanReason::Manual, None, T0).unwrap();
}

#[test]
fn everything_survives_a_reopen_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut peers =
            PeerStore::open(Store::open(dir.path()).unwrap(), PeerStoreConfig::default()).unwrap();
        populate(&mut peers);
        peers.table().clone()
    };
    let peers =
        PeerStore::open(Store::open(dir.path()).unwrap(), PeerStoreConfig::default()).unwrap();
    assert_eq!(peers.len(), 3);
    for n in 1..=3 {
        assert_eq!(
            peers.table().get(&peer(n)),
            before.get(&peer(n)),
            "peer {n}"
        );
    }
    let bans = peers.active_bans(T0);
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].1.reason, BanReason::BadHandshake);
    assert_eq!(
        bans[0].1.until,
        Some(T0.saturating_add(Duration::from_secs(3 * 3600)))
    );
    assert_eq!(peers.active_ip_bans(T0).len(), 1);
    let redial = peers.redial_candidates(Network::Public, T0);
    assert_eq!(redial[0].peer_id, peer(2).peer_id);
    assert!(redial[0].long_lived);
}

#[test]
fn the_in_memory_backend_behaves_like_a_file() {
    let store = Store::in_memory().unwrap();
    assert!(store.path().is_none());
    let mut peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    populate(&mut peers);
    let reloaded = PeerStore::open(store, PeerStoreConfig::default()).unwrap();
    assert_eq!(reloaded.len(), 3);
    assert_eq!(
        reloaded
            .get(Network::Public, peer(2).peer_id)
            .unwrap()
            .status,
        PeerStatus::NotConnected
    );
}

#[test]
fn a_connection_open_when_the_process_died_is_closed_at_reopen() {
    let store = Store::in_memory().unwrap();
    let mut peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    peers
        .apply(
            [PeerChange::Connected {
                key: peer(1),
                address: Some(addr(1)),
                direction: Direction::Outbound,
            }],
            T0,
        )
        .unwrap();
    peers
        .touch_connected(T0.saturating_add(Duration::from_secs(1200)))
        .unwrap();
    drop(peers);
    let peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    let record = peers.get(Network::Public, peer(1).peer_id).unwrap();
    assert!(!record.is_connected());
    assert_eq!(record.last_connection.unwrap().duration_ms, 1_200_000);
    drop(peers);
    // The closed status was written back: a third open finds it so.
    let writes = store.metrics().writes();
    PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    assert_eq!(store.metrics().writes(), writes, "nothing left to fix");
}

#[test]
fn a_batch_of_events_is_one_write_and_metrics_are_registered() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let store = Store::in_memory_with_metrics(metrics.clone()).unwrap();
    let mut peers = PeerStore::open(store, PeerStoreConfig::default()).unwrap();
    let writes = metrics.writes();
    let events = (0..1000).map(|n| discovered(peer(n), TrustLevel::Indirect));
    let changes = peers.apply(events, T0).unwrap();
    assert_eq!(changes.peers.len(), 1000);
    assert_eq!(metrics.writes(), writes + 1);
    assert_eq!(metrics.peers(), 1000);
    // Nothing changed: nothing written.
    peers
        .apply([PeerChange::Disconnected { key: peer(5000) }], T0)
        .unwrap();
    assert_eq!(metrics.writes(), writes + 1);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for name in [
        "peerlane_store_writes_total 1",
        "peerlane_store_write_seconds_count 1",
        "peerlane_store_peers 1000",
        "peerlane_store_write_failures_total 0",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
}

#[test]
fn expiry_and_eviction_are_written_and_counted() {
    let metrics = Metrics::default();
    let store = Store::in_memory_with_metrics(metrics.clone()).unwrap();
    let config = PeerStoreConfig {
        max_peers: 2,
        ..PeerStoreConfig::default()
    };
    let mut peers = PeerStore::open(store.clone(), config.clone()).unwrap();
    peers
        .apply(
            [
                discovered(peer(1), TrustLevel::Indirect),
                discovered(peer(2), TrustLevel::Configured),
            ],
            T0,
        )
        .unwrap();
    let later = T0.saturating_add(Duration::from_secs(60));
    peers
        .apply([discovered(peer(3), TrustLevel::Indirect)], later)
        .unwrap();
    assert_eq!(metrics.evictions(EvictionReason::Capacity), 1);
    let changes = peers
        .apply([discovered(peer(4), TrustLevel::Indirect)], T0)
        .unwrap();
    assert_eq!(
        changes.refused,
        [peer(4)],
        "older than every evictable peer"
    );
    assert_eq!(metrics.peers_refused(), 1);

    peers
        .prune(later.saturating_add(Duration::from_secs(7 * 24 * 3600)))
        .unwrap();
    assert_eq!(metrics.evictions(EvictionReason::Expired), 1);
    assert_eq!(metrics.peers(), 1);
    drop(peers);
    let reloaded = PeerStore::open(store, config).unwrap();
    assert_eq!(reloaded.len(), 1);
    assert!(reloaded.get(Network::Public, peer(2).peer_id).is_some());
}

#[test]
fn a_corrupt_record_is_skipped_counted_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut peers =
            PeerStore::open(Store::open(dir.path()).unwrap(), PeerStoreConfig::default()).unwrap();
        populate(&mut peers);
    }
    // Damage the file's records with redb directly: a value that is not BCS, a key of the
    // wrong length, a record of an unknown version, and an IP ban with a bad key.
    {
        let db = redb::Database::open(dir.path().join(store::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let peers: redb::TableDefinition<'_, &[u8], &[u8]> =
                redb::TableDefinition::new("peers");
            let mut table = txn.open_table(peers).unwrap();
            table
                .insert(peer(7).to_bytes().as_slice(), [0xFF, 0xFF, 0x01].as_slice())
                .unwrap();
            table.insert([1, 2, 3].as_slice(), [0].as_slice()).unwrap();
            table
                .insert(peer(8).to_bytes().as_slice(), [9, 0, 0].as_slice())
                .unwrap();
            let ip_bans: redb::TableDefinition<'_, &[u8], &[u8]> =
                redb::TableDefinition::new("ip_bans");
            let mut table = txn.open_table(ip_bans).unwrap();
            table.insert([1].as_slice(), [0].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let metrics = Metrics::default();
    let store = Store::open_with_metrics(dir.path(), metrics.clone()).unwrap();
    let peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    assert_eq!(peers.len(), 3, "the good records are all there");
    assert_eq!(metrics.records_skipped_corrupt(Table::Peers), 3);
    assert_eq!(metrics.records_skipped_corrupt(Table::IpBans), 1);
    assert_eq!(peers.active_ip_bans(T0).len(), 1);
    drop(peers);
    // They were dropped: the next open finds none.
    PeerStore::open(store, PeerStoreConfig::default()).unwrap();
    assert_eq!(metrics.records_skipped_corrupt(Table::Peers), 3);
}

#[test]
fn more_than_ten_thousand_peers_on_disk_stay_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let store = Store::open_with_metrics(dir.path(), metrics.clone()).unwrap();
    let mut peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    // 12,000 peers in batches of 1,000, each batch a little later.
    for batch in 0..12u32 {
        let now = T0.saturating_add(Duration::from_secs(u64::from(batch)));
        let events =
            (batch * 1000..(batch + 1) * 1000).map(|n| discovered(peer(n), TrustLevel::Indirect));
        peers.apply(events, now).unwrap();
    }
    assert_eq!(peers.len(), 10_000);
    assert_eq!(metrics.evictions(EvictionReason::Capacity), 2_000);
    assert_eq!(metrics.peers(), 10_000);
    drop(peers);
    let peers = PeerStore::open(store, PeerStoreConfig::default()).unwrap();
    assert_eq!(peers.len(), 10_000);
    // The first 2,000 (oldest) went.
    assert!(peers.get(Network::Public, peer(1_999).peer_id).is_none());
    assert!(peers.get(Network::Public, peer(2_000).peer_id).is_some());
}

/// The facade drives the store from a blocking thread: the handles must move there.
#[test]
fn handles_are_send() {
    fn send<T: Send + 'static>() {}
    send::<PeerStore>();
    send::<Store>();
    send::<store::ComponentTable>();
}
