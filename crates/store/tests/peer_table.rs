//! The peer store's rules, on the pure `PeerTable`: scores, trust, the bound and its eviction
//! order, expiry, bans and the redial order. Time is passed in; nothing sleeps.

use std::time::Duration;

use netcore::{NetworkAddress, PeerId};
use store::{
    BanReason, Direction, EvictionReason, IpBanKey, Network, PeerChange, PeerKey, PeerStoreConfig,
    PeerTable, SCORE_FAILURE, SCORE_MAX, SCORE_MIN, SCORE_SUCCESS, TrustLevel, UnixMillis,
};

const T0: UnixMillis = UnixMillis(1_700_000_000_000);
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn at(offset: Duration) -> UnixMillis {
    T0.saturating_add(offset)
}

fn peer(n: u16) -> PeerKey {
    let mut bytes = [0; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    PeerKey::new(Network::Public, PeerId::new(bytes))
}

fn addr(port: u16) -> NetworkAddress {
    format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
}

fn discovered(key: PeerKey, ports: &[u16], trust: TrustLevel) -> PeerChange {
    PeerChange::Discovered {
        key,
        addresses: ports.iter().map(|&port| addr(port)).collect(),
        trust,
    }
}

fn connected_out(key: PeerKey, port: u16) -> PeerChange {
    PeerChange::Connected {
        key,
        address: Some(addr(port)),
        direction: Direction::Outbound,
    }
}

fn dial_failed(key: PeerKey, port: u16) -> PeerChange {
    PeerChange::DialFailed {
        key,
        address: addr(port),
    }
}

fn table_with(max_peers: usize) -> PeerTable {
    PeerTable::new(PeerStoreConfig {
        max_peers,
        ..PeerStoreConfig::default()
    })
}

fn score_of(table: &PeerTable, key: PeerKey, port: u16) -> Option<i32> {
    let record = table.get(&key)?;
    record
        .addresses
        .iter()
        .find(|entry| entry.address == addr(port))
        .map(|entry| entry.score)
}

#[test]
fn successes_raise_and_failures_lower_an_address_score_within_the_bounds() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    table.apply(discovered(p, &[1, 2], TrustLevel::Indirect), T0);
    assert_eq!(score_of(&table, p, 1), Some(0));

    table.apply(connected_out(p, 1), T0);
    assert_eq!(score_of(&table, p, 1), Some(SCORE_SUCCESS));
    for _ in 0..20 {
        table.apply(connected_out(p, 1), T0);
    }
    assert_eq!(score_of(&table, p, 1), Some(SCORE_MAX), "capped at the top");

    table.apply(dial_failed(p, 1), T0);
    assert_eq!(score_of(&table, p, 1), Some(SCORE_MAX + SCORE_FAILURE));
    assert_eq!(table.get(&p).unwrap().score(), SCORE_MAX + SCORE_FAILURE);

    // Address 2 never worked: three failures take it to the floor, where it is dropped.
    table.apply(dial_failed(p, 2), T0);
    table.apply(dial_failed(p, 2), T0);
    assert_eq!(score_of(&table, p, 2), Some(2 * SCORE_FAILURE));
    table.apply(dial_failed(p, 2), T0);
    assert_eq!(
        score_of(&table, p, 2),
        None,
        "an address at the floor is dropped"
    );

    // A failure of an unknown peer creates nothing.
    let changes = table.apply(dial_failed(peer(99), 1), T0);
    assert!(changes.is_empty());
    assert!(table.get(&peer(99)).is_none());
}

#[test]
fn a_configured_peers_address_stays_at_the_floor() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let seed = peer(1);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    for _ in 0..5 {
        table.apply(dial_failed(seed, 1), T0);
    }
    assert_eq!(score_of(&table, seed, 1), Some(SCORE_MIN));
}

#[test]
fn trust_only_goes_up() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    table.apply(discovered(p, &[1], TrustLevel::Indirect), T0);
    assert_eq!(table.get(&p).unwrap().trust, TrustLevel::Indirect);
    table.apply(connected_out(p, 1), T0);
    assert_eq!(table.get(&p).unwrap().trust, TrustLevel::Direct);
    table.apply(discovered(p, &[1], TrustLevel::Indirect), T0);
    assert_eq!(table.get(&p).unwrap().trust, TrustLevel::Direct);
    table.apply(discovered(p, &[1], TrustLevel::Configured), T0);
    table.apply(discovered(p, &[1], TrustLevel::Indirect), T0);
    assert_eq!(table.get(&p).unwrap().trust, TrustLevel::Configured);
}

#[test]
fn a_peer_removed_from_the_config_can_be_evicted_and_expire_again() {
    let mut table = table_with(2);
    let seed = peer(1);
    let was_connected = peer(2);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    table.apply(discovered(was_connected, &[1], TrustLevel::Configured), T0);
    table.apply(connected_out(was_connected, 1), T0);
    table.apply(PeerChange::Disconnected { key: was_connected }, T0);
    // Both configured: an indirect newcomer is refused, nothing expires.
    let changes = table.apply(discovered(peer(3), &[1], TrustLevel::Indirect), at(MINUTE));
    assert_eq!(changes.refused, [peer(3)]);
    assert!(table.prune(at(30 * DAY)).evicted.is_empty());

    table.apply(PeerChange::Unconfigured { key: seed }, T0);
    table.apply(PeerChange::Unconfigured { key: was_connected }, T0);
    assert_eq!(table.get(&seed).unwrap().trust, TrustLevel::Indirect);
    assert_eq!(table.get(&was_connected).unwrap().trust, TrustLevel::Direct);
    let changes = table.apply(discovered(peer(3), &[1], TrustLevel::Indirect), at(MINUTE));
    assert_eq!(changes.evicted, [(seed, EvictionReason::Capacity)]);
    let changes = table.prune(at(30 * DAY));
    assert!(
        changes
            .evicted
            .contains(&(was_connected, EvictionReason::Expired))
    );
    // Unconfiguring a peer that is not configured changes nothing.
    assert!(
        table
            .apply(PeerChange::Unconfigured { key: peer(3) }, T0)
            .is_empty()
    );
}

#[test]
fn connections_record_first_and_last_seen_status_and_the_last_connection() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    table.apply(discovered(p, &[1], TrustLevel::Indirect), T0);
    table.apply(connected_out(p, 1), at(MINUTE));
    let record = table.get(&p).unwrap();
    assert!(record.is_connected());
    assert_eq!(record.first_seen, T0);
    assert_eq!(record.last_seen, at(MINUTE));

    table.apply(PeerChange::Disconnected { key: p }, at(16 * MINUTE));
    let record = table.get(&p).unwrap();
    assert!(!record.is_connected());
    let last = record.last_connection.unwrap();
    assert_eq!(last.started, at(MINUTE));
    assert_eq!(last.duration_ms, 15 * 60_000);
    assert_eq!(last.direction, Direction::Outbound);
    assert_eq!(record.first_seen, T0);
    assert_eq!(record.last_seen, at(16 * MINUTE));

    // An inbound connection from an unknown peer makes a direct record with no address.
    let inbound = peer(2);
    table.apply(
        PeerChange::Connected {
            key: inbound,
            address: None,
            direction: Direction::Inbound,
        },
        T0,
    );
    let record = table.get(&inbound).unwrap();
    assert_eq!(record.trust, TrustLevel::Direct);
    assert!(record.addresses.is_empty());
}

#[test]
fn addresses_per_peer_are_bounded_and_good_ones_are_not_displaced() {
    let mut table = PeerTable::new(PeerStoreConfig {
        max_addresses_per_peer: 3,
        ..PeerStoreConfig::default()
    });
    let p = peer(1);
    table.apply(discovered(p, &[1, 2, 3], TrustLevel::Indirect), T0);
    table.apply(connected_out(p, 1), T0);
    table.apply(connected_out(p, 2), T0);
    table.apply(connected_out(p, 3), T0);
    // All three have worked: gossip cannot push them out.
    table.apply(discovered(p, &[4, 5, 6, 7], TrustLevel::Indirect), T0);
    let ports: Vec<_> = table
        .get(&p)
        .unwrap()
        .addresses
        .iter()
        .map(|e| e.address.clone())
        .collect();
    assert_eq!(ports, [addr(1), addr(2), addr(3)]);
    // One that failed twice makes room for a new one.
    table.apply(dial_failed(p, 2), T0);
    table.apply(dial_failed(p, 2), T0);
    table.apply(discovered(p, &[8], TrustLevel::Indirect), T0);
    let record = table.get(&p).unwrap();
    assert_eq!(record.addresses.len(), 3);
    assert!(record.addresses.iter().any(|e| e.address == addr(8)));
    assert!(!record.addresses.iter().any(|e| e.address == addr(2)));
}

#[test]
fn at_the_bound_the_lowest_scoring_oldest_indirect_peer_goes_first_and_configured_never() {
    let mut table = table_with(4);
    let seed = peer(1);
    let direct = peer(2);
    let old_indirect = peer(3);
    let failing_indirect = peer(4);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    table.apply(connected_out(direct, 1), T0);
    table.apply(discovered(old_indirect, &[1], TrustLevel::Indirect), T0);
    table.apply(
        discovered(failing_indirect, &[1], TrustLevel::Indirect),
        at(MINUTE),
    );
    table.apply(dial_failed(failing_indirect, 1), at(MINUTE));
    assert_eq!(table.len(), 4);

    // The lowest score goes first, even though it was seen more recently.
    let changes = table.apply(
        discovered(peer(5), &[1], TrustLevel::Indirect),
        at(2 * MINUTE),
    );
    assert_eq!(
        changes.evicted,
        [(failing_indirect, EvictionReason::Capacity)]
    );
    // Then the oldest of equal score.
    let changes = table.apply(
        discovered(peer(6), &[1], TrustLevel::Indirect),
        at(3 * MINUTE),
    );
    assert_eq!(changes.evicted, [(old_indirect, EvictionReason::Capacity)]);
    assert_eq!(table.len(), 4);

    // A direct peer outranks an indirect newcomer: the oldest indirect one goes instead.
    let changes = table.apply(
        discovered(peer(7), &[1], TrustLevel::Indirect),
        at(4 * MINUTE),
    );
    assert_eq!(changes.evicted, [(peer(5), EvictionReason::Capacity)]);
    assert!(table.get(&direct).is_some());

    // A full table of peers that rank higher refuses an indirect newcomer.
    let mut table = table_with(2);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    table.apply(connected_out(direct, 1), T0);
    let changes = table.apply(discovered(peer(9), &[1], TrustLevel::Indirect), at(MINUTE));
    assert_eq!(changes.refused, [peer(9)]);
    assert!(changes.evicted.is_empty());
    assert!(table.get(&peer(9)).is_none());

    // A table full of configured peers still admits a configured one, and evicts nothing.
    let mut table = table_with(1);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    let changes = table.apply(discovered(peer(8), &[1], TrustLevel::Configured), T0);
    assert!(changes.evicted.is_empty() && changes.refused.is_empty());
    assert_eq!(table.len(), 2);
    assert!(table.get(&seed).is_some());
}

#[test]
fn connected_peers_are_evicted_after_idle_ones_of_the_same_trust() {
    let mut table = table_with(2);
    table.apply(connected_out(peer(1), 1), T0); // connected, direct
    table.apply(connected_out(peer(2), 1), T0);
    table.apply(PeerChange::Disconnected { key: peer(2) }, at(MINUTE)); // direct, idle
    let changes = table.apply(connected_out(peer(3), 1), at(2 * MINUTE));
    assert_eq!(changes.evicted, [(peer(2), EvictionReason::Capacity)]);
}

#[test]
fn ten_thousand_and_more_inserts_stay_within_the_bound() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let seeds = 10;
    for n in 0..seeds {
        table.apply(discovered(peer(n), &[1], TrustLevel::Configured), T0);
    }
    let mut evicted = 0;
    for n in seeds..15_000 {
        let changes = table.apply(
            discovered(peer(n), &[1], TrustLevel::Indirect),
            at(Duration::from_millis(u64::from(n))),
        );
        evicted += changes.evicted.len();
        assert!(table.len() <= 10_000);
    }
    assert_eq!(table.len(), 10_000);
    assert_eq!(evicted, 15_000 - 10_000);
    // The seeds stayed; the oldest indirect peers went.
    for n in 0..seeds {
        assert!(table.get(&peer(n)).is_some());
    }
    assert!(table.get(&peer(seeds)).is_none());
    assert!(table.get(&peer(14_999)).is_some());
}

#[test]
fn prune_drops_peers_not_seen_for_seven_days_but_keeps_configured_connected_and_banned() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let stale = peer(1);
    let fresh = peer(2);
    let seed = peer(3);
    let connected = peer(4);
    let banned = peer(5);
    table.apply(discovered(stale, &[1], TrustLevel::Indirect), T0);
    table.apply(discovered(seed, &[1], TrustLevel::Configured), T0);
    table.apply(connected_out(connected, 1), T0);
    table.apply(discovered(banned, &[1], TrustLevel::Indirect), T0);
    table.apply(
        PeerChange::Banned {
            key: banned,
            reason: BanReason::Abusive,
            until: None,
        },
        T0,
    );
    table.apply(discovered(fresh, &[1], TrustLevel::Indirect), at(DAY));

    let changes = table.prune(at(7 * DAY - MINUTE));
    assert!(changes.evicted.is_empty(), "not yet 7 days");

    let changes = table.prune(at(7 * DAY));
    assert_eq!(changes.evicted, [(stale, EvictionReason::Expired)]);
    assert!(changes.peers.contains(&stale));
    for key in [fresh, seed, connected, banned] {
        assert!(table.get(&key).is_some());
    }
    let changes = table.prune(at(8 * DAY));
    assert_eq!(changes.evicted, [(fresh, EvictionReason::Expired)]);
}

#[test]
fn bans_expire_and_are_dropped_by_prune() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    let forever = peer(2);
    let three_hours = PeerStoreConfig::default().default_ban;
    table.apply(
        PeerChange::Banned {
            key: p,
            reason: BanReason::RateLimited,
            until: Some(T0.saturating_add(three_hours)),
        },
        T0,
    );
    table.apply(
        PeerChange::Banned {
            key: forever,
            reason: BanReason::Manual,
            until: None,
        },
        T0,
    );
    let bans = table.active_bans(T0);
    assert_eq!(bans.len(), 2);
    assert_eq!(bans[0].0, p);
    assert_eq!(bans[0].1.reason, BanReason::RateLimited);
    assert!(
        table
            .get(&p)
            .unwrap()
            .is_banned(at(3 * 60 * MINUTE - MINUTE))
    );

    let later = T0.saturating_add(three_hours);
    assert_eq!(
        table.active_bans(later).len(),
        1,
        "expired bans are not active"
    );
    let changes = table.prune(later);
    assert!(changes.peers.contains(&p));
    assert_eq!(table.get(&p).unwrap().ban, None);
    assert!(table.get(&forever).unwrap().ban.is_some());

    let changes = table.apply(PeerChange::Unbanned { key: forever }, later);
    assert!(changes.peers.contains(&forever));
    assert!(table.active_bans(later).is_empty());
    assert!(
        table
            .apply(PeerChange::Unbanned { key: forever }, later)
            .is_empty()
    );
}

#[test]
fn ip_bans_expire_are_bounded_and_replace_the_one_ending_first() {
    let mut table = PeerTable::new(PeerStoreConfig {
        max_ip_bans: 2,
        ..PeerStoreConfig::default()
    });
    let ip = |s: &str, prefix_len| IpBanKey {
        addr: s.parse().unwrap(),
        prefix_len,
    };
    let ban = |until: Option<UnixMillis>| store::Ban {
        reason: BanReason::Manual,
        since: T0,
        until,
    };
    table.ban_ip(ip("10.0.0.0", 8), ban(None));
    table.ban_ip(ip("192.0.2.1", 32), ban(Some(at(MINUTE))));
    let changes = table.ban_ip(ip("2001:db8::", 32), ban(Some(at(DAY))));
    assert_eq!(changes.ip_bans_evicted, 1);
    assert!(changes.ip_bans.contains(&ip("192.0.2.1", 32)));
    let active: Vec<_> = table
        .active_ip_bans(T0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(active, [ip("10.0.0.0", 8), ip("2001:db8::", 32)]);

    assert_eq!(table.active_ip_bans(at(DAY)).len(), 1);
    let changes = table.prune(at(DAY));
    assert!(changes.ip_bans.contains(&ip("2001:db8::", 32)));
    assert!(table.ip_ban(&ip("2001:db8::", 32)).is_none());
    table.unban_ip(&ip("10.0.0.0", 8));
    assert!(table.active_ip_bans(T0).is_empty());
}

#[test]
fn redial_order_puts_long_lived_outbound_peers_first_then_the_rest_by_score() {
    let mut table = PeerTable::new(PeerStoreConfig {
        max_long_lived: 2,
        ..PeerStoreConfig::default()
    });
    // Three long-lived outbound connections, ending at different times.
    for (n, end) in [(1, 20), (2, 30), (3, 25)] {
        table.apply(connected_out(peer(n), 1), T0);
        table.apply(PeerChange::Disconnected { key: peer(n) }, at(end * MINUTE));
    }
    // A short outbound connection: high score, not long-lived.
    table.apply(connected_out(peer(4), 1), T0);
    table.apply(connected_out(peer(4), 1), T0);
    table.apply(connected_out(peer(4), 1), T0);
    table.apply(PeerChange::Disconnected { key: peer(4) }, at(MINUTE));
    // A long inbound connection: not outbound, so not at the head.
    table.apply(discovered(peer(5), &[1], TrustLevel::Indirect), T0);
    table.apply(
        PeerChange::Connected {
            key: peer(5),
            address: None,
            direction: Direction::Inbound,
        },
        T0,
    );
    table.apply(PeerChange::Disconnected { key: peer(5) }, at(60 * MINUTE));
    // An indirect peer with a failed dial; a banned peer; a connected one; no address.
    table.apply(discovered(peer(6), &[1], TrustLevel::Indirect), T0);
    table.apply(dial_failed(peer(6), 1), T0);
    table.apply(discovered(peer(7), &[1], TrustLevel::Indirect), T0);
    table.apply(
        PeerChange::Banned {
            key: peer(7),
            reason: BanReason::Abusive,
            until: Some(at(DAY)),
        },
        T0,
    );
    table.apply(connected_out(peer(8), 1), T0);
    table.apply(
        PeerChange::Connected {
            key: peer(9),
            address: None,
            direction: Direction::Inbound,
        },
        T0,
    );
    table.apply(PeerChange::Disconnected { key: peer(9) }, T0);
    // Another network's peer.
    let other = PeerKey::new(Network::Validator, peer(10).peer_id);
    table.apply(discovered(other, &[1], TrustLevel::Configured), T0);

    let now = at(61 * MINUTE);
    let order: Vec<(PeerId, bool)> = table
        .redial_candidates(Network::Public, now)
        .into_iter()
        .map(|c| (c.peer_id, c.long_lived))
        .collect();
    let expected = [
        (peer(2), true),  // ended at 30 min
        (peer(3), true),  // ended at 25 min
        (peer(4), false), // score 60
        (peer(1), false), // long-lived but over max_long_lived; score 20, seen at 20 min
        (peer(5), false), // score 0, direct
        (peer(6), false), // score -40
    ];
    let expected: Vec<(PeerId, bool)> = expected.iter().map(|(k, l)| (k.peer_id, *l)).collect();
    assert_eq!(order, expected);

    // Once its ban ends, the banned peer is a candidate again.
    let later = table.redial_candidates(Network::Public, at(DAY));
    assert!(later.iter().any(|c| c.peer_id == peer(7).peer_id));
    // Each network has its own list.
    let validators = table.redial_candidates(Network::Validator, now);
    assert_eq!(validators.len(), 1);
    assert_eq!(validators[0].trust, TrustLevel::Configured);
}

#[test]
fn redial_addresses_come_best_first() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    table.apply(discovered(p, &[1, 2, 3], TrustLevel::Indirect), T0);
    table.apply(dial_failed(p, 1), T0);
    table.apply(connected_out(p, 3), T0);
    table.apply(PeerChange::Disconnected { key: p }, T0);
    let candidates = table.redial_candidates(Network::Public, T0);
    assert_eq!(candidates[0].addresses, [addr(3), addr(2), addr(1)]);
    assert_eq!(candidates[0].score, SCORE_SUCCESS);
}

#[test]
fn a_connection_open_at_load_is_closed_as_of_its_last_seen() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    let p = peer(1);
    table.apply(connected_out(p, 1), T0);
    table.touch_connected(at(12 * MINUTE));
    let records: Vec<_> = table.iter().map(|(k, r)| (*k, r.clone())).collect();
    let (loaded, changes) = PeerTable::from_records(PeerStoreConfig::default(), records, []);
    assert!(changes.peers.contains(&p));
    let record = loaded.get(&p).unwrap();
    assert!(!record.is_connected());
    assert_eq!(record.last_connection.unwrap().duration_ms, 12 * 60_000);
    // It lasted 12 minutes, outbound: it heads the redial list.
    assert!(loaded.redial_candidates(Network::Public, at(13 * MINUTE))[0].long_lived);
}

#[test]
fn loading_more_peers_than_a_lowered_bound_evicts_down_to_it() {
    let mut table = PeerTable::new(PeerStoreConfig::default());
    for n in 0..10 {
        table.apply(
            discovered(peer(n), &[1], TrustLevel::Indirect),
            at(Duration::from_secs(u64::from(n))),
        );
    }
    let records: Vec<_> = table.iter().map(|(k, r)| (*k, r.clone())).collect();
    let (loaded, changes) = PeerTable::from_records(
        PeerStoreConfig {
            max_peers: 4,
            ..PeerStoreConfig::default()
        },
        records,
        [],
    );
    assert_eq!(loaded.len(), 4);
    assert_eq!(changes.evicted.len(), 6);
    assert!(loaded.get(&peer(9)).is_some() && loaded.get(&peer(0)).is_none());
}

/// The attack: a peer gossips 50,000 made-up peers (and 1,000 addresses for a real one) into
/// a full table. The direct and configured peers and the real peer's working address stay;
/// the made-up peers only replace each other, and the table stays at its bound.
#[test]
fn a_gossip_flood_cannot_push_out_direct_or_configured_peers() {
    let mut table = table_with(1_000);
    for n in 0..100 {
        table.apply(discovered(peer(n), &[1], TrustLevel::Configured), T0);
    }
    for n in 100..600 {
        table.apply(connected_out(peer(n), 1), T0);
        table.apply(PeerChange::Disconnected { key: peer(n) }, T0);
    }
    let mut refused = 0;
    let mut evicted = 0;
    for n in 600..50_600u32 {
        let key = PeerKey::new(
            Network::Public,
            PeerId::new({
                let mut bytes = [0xEE; 32];
                bytes[..4].copy_from_slice(&n.to_be_bytes());
                bytes
            }),
        );
        let changes = table.apply(
            discovered(key, &[1, 2, 3], TrustLevel::Indirect),
            at(Duration::from_millis(u64::from(n))),
        );
        refused += changes.refused.len();
        evicted += changes.evicted.len();
        assert!(table.len() <= 1_000);
    }
    assert_eq!(table.len(), 1_000);
    assert_eq!(refused, 0, "newer indirect peers replace older ones");
    assert_eq!(evicted, 50_000 - 400);
    for n in 0..600 {
        assert!(table.get(&peer(n)).is_some(), "peer {n} was pushed out");
    }
    // Addresses: the one that worked stays whatever is gossiped.
    let real = peer(100);
    let flood: Vec<u16> = (1_000..2_000).collect();
    table.apply(discovered(real, &flood, TrustLevel::Indirect), T0);
    let record = table.get(&real).unwrap();
    assert_eq!(
        record.addresses.len(),
        PeerStoreConfig::default().max_addresses_per_peer
    );
    assert!(
        record
            .addresses
            .iter()
            .any(|e| e.address == addr(1) && e.score == SCORE_SUCCESS)
    );
}
