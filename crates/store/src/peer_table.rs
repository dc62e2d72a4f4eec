//! [`PeerTable`]: the peer store's rules, in memory and without I/O. It takes [`PeerChange`]s
//! and the time, and returns [`Changes`]: which peers and IP bans to write (or delete) and
//! what it evicted or refused. [`PeerStore`](crate::PeerStore) writes the changes and records
//! the metrics.
//!
//! The rules:
//! - **Scores**: each address has a score in [`SCORE_MIN`]..=[`SCORE_MAX`], starting at 0,
//!   [`SCORE_SUCCESS`] per connection through it, [`SCORE_FAILURE`] per failed dial. An
//!   address that reaches the floor is dropped, except a configured peer's. A peer's score is
//!   its best address's.
//! - **Trust** only goes up: heard of ([`TrustLevel::Indirect`]), connected
//!   ([`TrustLevel::Direct`]), configured ([`TrustLevel::Configured`]).
//! - **Bound**: at `max_peers` a new peer evicts the lowest-ranked stored one, ranked by
//!   trust, then connected or not, banned or not, score, and last seen (lowest first), if that
//!   one ranks below the newcomer; otherwise the newcomer is refused. Configured peers are
//!   never evicted, and are admitted even over the bound (their number is the operator's).
//!   A banned peer ranks above an unbanned one of the same trust, so that gossip cannot wash
//!   bans out; callers should therefore record bans only for identities a handshake proved
//!   (a remote can make up PeerIds for free, and each ban of one would take a slot).
//! - **Expiry** (`prune`): peers not seen for `expire_after` go, unless configured,
//!   connected or banned; expired bans are lifted first.
//! - **Redial order** (`redial_candidates`): first up to `max_long_lived` peers whose last
//!   connection was outbound and lasted `long_lived_min`, most recent first; then the others
//!   by score, trust and last seen. Connected and banned peers, and peers with no address,
//!   are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use netcore::{NetworkAddress, PeerId};

use crate::metrics::EvictionReason;
use crate::peer_config::{PeerStoreConfig, SCORE_FAILURE, SCORE_MAX, SCORE_MIN, SCORE_SUCCESS};
use crate::peer_record::{
    AddressEntry, Ban, BanReason, Direction, IpBanKey, LastConnection, Network, PeerKey,
    PeerRecord, PeerStatus, TrustLevel,
};
use crate::time::UnixMillis;

/// Something that happened to a peer, as the facade and the connectivity manager see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// We heard of the peer: from config or seeds ([`TrustLevel::Configured`]), or from
    /// another peer ([`TrustLevel::Indirect`]). Adds the addresses and refreshes `last_seen`.
    Discovered {
        /// The peer.
        key: PeerKey,
        /// Where it listens.
        addresses: Vec<NetworkAddress>,
        /// How we heard of it.
        trust: TrustLevel,
    },
    /// A dial of `address` failed. Ignored for a peer the store does not know.
    DialFailed {
        /// The peer.
        key: PeerKey,
        /// The address dialed.
        address: NetworkAddress,
    },
    /// A connection with the peer was set up. `address` is the dialed address of an
    /// outbound connection; pass `None` for an inbound one (its remote port is not one the
    /// peer listens on).
    Connected {
        /// The peer.
        key: PeerKey,
        /// The address dialed, for an outbound connection.
        address: Option<NetworkAddress>,
        /// Who opened it.
        direction: Direction,
    },
    /// The connection with the peer closed. Ignored for a peer the store does not know.
    Disconnected {
        /// The peer.
        key: PeerKey,
    },
    /// The peer was banned until `until` (`None`: until unbanned).
    Banned {
        /// The peer.
        key: PeerKey,
        /// Why.
        reason: BanReason,
        /// When the ban ends.
        until: Option<UnixMillis>,
    },
    /// The ban on the peer was lifted.
    Unbanned {
        /// The peer.
        key: PeerKey,
    },
    /// The peer is no longer in the config or the seeds: it becomes direct if we ever had a
    /// connection with it, indirect otherwise, and may then be evicted and expire.
    Unconfigured {
        /// The peer.
        key: PeerKey,
    },
}

/// What one or more calls on a [`PeerTable`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Peers whose record changed: write the record, or delete it if the table no longer has
    /// the peer.
    pub peers: BTreeSet<PeerKey>,
    /// IP bans that changed: write the ban, or delete it if the table no longer has it.
    pub ip_bans: BTreeSet<IpBanKey>,
    /// Peers removed by the bound or by expiry, with why.
    pub evicted: Vec<(PeerKey, EvictionReason)>,
    /// IP bans removed to make room for another.
    pub ip_bans_evicted: u64,
    /// New peers not stored because every stored peer ranks higher.
    pub refused: Vec<PeerKey>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.ip_bans.is_empty() && self.refused.is_empty()
    }

    fn merge(&mut self, other: Self) {
        self.peers.extend(other.peers);
        self.ip_bans.extend(other.ip_bans);
        self.evicted.extend(other.evicted);
        self.ip_bans_evicted += other.ip_bans_evicted;
        self.refused.extend(other.refused);
    }
}

/// A peer to dial after a restart, from [`PeerTable::redial_candidates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedialCandidate {
    /// The peer.
    pub peer_id: PeerId,
    /// Its addresses, best score first.
    pub addresses: Vec<NetworkAddress>,
    /// Whether it heads the list for a long-lived outbound connection.
    pub long_lived: bool,
    /// Its score (best address's).
    pub score: i32,
    /// How we know it.
    pub trust: TrustLevel,
}

/// The order in which peers are evicted, lowest first. Field order is the comparison order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EvictionRank {
    trust: TrustLevel,
    connected: bool,
    banned: bool,
    score: i32,
    last_seen: UnixMillis,
}

impl EvictionRank {
    fn of(record: &PeerRecord) -> Self {
        Self {
            trust: record.trust,
            connected: record.is_connected(),
            banned: record.ban.is_some(),
            score: record.score(),
            last_seen: record.last_seen,
        }
    }
}

/// The peers and IP bans the store knows, and the rules that change them (see the module
/// doc). Feed it with [`apply`](Self::apply), [`prune`](Self::prune) and the ban methods;
/// each returns [`Changes`] for the caller to persist. Getters have no side effects.
#[derive(Clone, Debug)]
pub struct PeerTable {
    config: PeerStoreConfig,
    peers: HashMap<PeerKey, PeerRecord>,
    /// Every peer that may be evicted (not configured), lowest rank first.
    eviction_order: BTreeSet<(EvictionRank, PeerKey)>,
    ip_bans: BTreeMap<IpBanKey, Ban>,
}

impl PeerTable {
    /// An empty table.
    pub fn new(config: PeerStoreConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            eviction_order: BTreeSet::new(),
            ip_bans: BTreeMap::new(),
        }
    }

    /// A table of what was on disk. A peer stored as connected is not any more (the process
    /// that had the connection is gone): its connection is closed as of its `last_seen`.
    /// Then the bounds are enforced, in case they were lowered. Returns what to write back.
    pub fn from_records(
        config: PeerStoreConfig,
        peers: impl IntoIterator<Item = (PeerKey, PeerRecord)>,
        ip_bans: impl IntoIterator<Item = (IpBanKey, Ban)>,
    ) -> (Self, Changes) {
        let mut table = Self::new(config);
        let mut changes = Changes::default();
        for (key, mut record) in peers {
            if let PeerStatus::Connected { since, direction } = record.status {
                let last_seen = record.last_seen;
                close_connection(&mut record, since, direction, last_seen);
                changes.peers.insert(key);
            }
            table.insert_indexed(key, record);
        }
        while table.peers.len() > table.config.max_peers {
            let Some(&(_, victim)) = table.eviction_order.first() else {
                break;
            };
            table.remove_indexed(&victim);
            changes.peers.insert(victim);
            changes.evicted.push((victim, EvictionReason::Capacity));
        }
        for (key, ban) in ip_bans {
            changes.merge(table.ban_ip(key, ban));
        }
        // Loading a ban is not a change to write back unless it evicted another.
        changes
            .ip_bans
            .retain(|key| !table.ip_bans.contains_key(key));
        (table, changes)
    }

    /// The settings.
    pub fn config(&self) -> &PeerStoreConfig {
        &self.config
    }

    /// The record of `key`.
    pub fn get(&self, key: &PeerKey) -> Option<&PeerRecord> {
        self.peers.get(key)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every peer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &PeerRecord)> {
        self.peers.iter()
    }

    /// The ban on IP `key`, active or not.
    pub fn ip_ban(&self, key: &IpBanKey) -> Option<&Ban> {
        self.ip_bans.get(key)
    }

    /// Applies one event at `now`.
    pub fn apply(&mut self, event: PeerChange, now: UnixMillis) -> Changes {
        let mut changes = Changes::default();
        match event {
            PeerChange::Discovered {
                key,
                addresses,
                trust,
            } => {
                let max_addresses = self.config.max_addresses_per_peer;
                self.upsert(key, trust, now, &mut changes, |record| {
                    record.trust = record.trust.max(trust);
                    record.last_seen = record.last_seen.max(now);
                    for address in addresses {
                        add_address(record, address, max_addresses);
                    }
                });
            }
            PeerChange::DialFailed { key, address } => {
                self.update_existing(&key, &mut changes, |record| {
                    let configured = record.trust == TrustLevel::Configured;
                    if let Some(position) =
                        record.addresses.iter().position(|e| e.address == address)
                    {
                        let entry = &mut record.addresses[position];
                        entry.score = (entry.score + SCORE_FAILURE).max(SCORE_MIN);
                        entry.last_failure = Some(now);
                        if entry.score == SCORE_MIN && !configured {
                            record.addresses.remove(position);
                        }
                    }
                });
            }
            PeerChange::Connected {
                key,
                address,
                direction,
            } => {
                let max_addresses = self.config.max_addresses_per_peer;
                self.upsert(key, TrustLevel::Direct, now, &mut changes, |record| {
                    record.trust = record.trust.max(TrustLevel::Direct);
                    record.last_seen = record.last_seen.max(now);
                    if let PeerStatus::Connected { since, direction } = record.status {
                        // A second connection replaced the first (simultaneous dial).
                        close_connection(record, since, direction, now);
                    }
                    record.status = PeerStatus::Connected {
                        since: now,
                        direction,
                    };
                    if let Some(address) = address
                        && let Some(entry) = add_address(record, address, max_addresses)
                    {
                        entry.score = (entry.score + SCORE_SUCCESS).min(SCORE_MAX);
                        entry.last_success = Some(now);
                    }
                });
            }
            PeerChange::Disconnected { key } => {
                self.update_existing(&key, &mut changes, |record| {
                    if let PeerStatus::Connected { since, direction } = record.status {
                        close_connection(record, since, direction, now);
                    }
                    record.last_seen = record.last_seen.max(now);
                });
            }
            PeerChange::Banned { key, reason, until } => {
                let ban = Ban {
                    reason,
                    since: now,
                    until,
                };
                self.upsert(key, TrustLevel::Indirect, now, &mut changes, |record| {
                    record.ban = Some(ban);
                });
            }
            PeerChange::Unconfigured { key } => {
                if self
                    .peers
                    .get(&key)
                    .is_some_and(|r| r.trust == TrustLevel::Configured)
                {
                    self.update_existing(&key, &mut changes, |record| {
                        let connected_once =
                            record.last_connection.is_some() || record.is_connected();
                        record.trust = if connected_once {
                            TrustLevel::Direct
                        } else {
                            TrustLevel::Indirect
                        };
                    });
                }
            }
            PeerChange::Unbanned { key } => {
                if self.peers.get(&key).is_some_and(|r| r.ban.is_some()) {
                    self.update_existing(&key, &mut changes, |record| record.ban = None);
                }
            }
        }
        changes
    }

    /// Applies `events` in order at `now`; the changes of all of them.
    pub fn apply_all(
        &mut self,
        events: impl IntoIterator<Item = PeerChange>,
        now: UnixMillis,
    ) -> Changes {
        let mut changes = Changes::default();
        for event in events {
            changes.merge(self.apply(event, now));
        }
        changes
    }

    /// Sets `last_seen` of every connected peer to `now`, so that a crash loses at most the
    /// time since the last call from the length of their connections.
    pub fn touch_connected(&mut self, now: UnixMillis) -> Changes {
        let mut changes = Changes::default();
        let connected: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, record)| record.is_connected())
            .map(|(key, _)| *key)
            .collect();
        for key in connected {
            self.update_existing(&key, &mut changes, |record| {
                record.last_seen = record.last_seen.max(now);
            });
        }
        changes
    }

    /// Lifts expired bans (peers and IPs) and drops peers not seen for `expire_after`
    /// (unless configured, connected or banned).
    pub fn prune(&mut self, now: UnixMillis) -> Changes {
        let mut changes = Changes::default();
        let expired_bans: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, record)| record.ban.is_some_and(|ban| !ban.is_active(now)))
            .map(|(key, _)| *key)
            .collect();
        for key in expired_bans {
            self.update_existing(&key, &mut changes, |record| record.ban = None);
        }
        let expire_after = self.config.expire_after;
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, record)| {
                record.trust != TrustLevel::Configured
                    && !record.is_connected()
                    && record.ban.is_none()
                    && now.saturating_since(record.last_seen) >= expire_after
            })
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.remove_indexed(&key);
            changes.peers.insert(key);
            changes.evicted.push((key, EvictionReason::Expired));
        }
        let expired_ip_bans: Vec<IpBanKey> = self
            .ip_bans
            .iter()
            .filter(|(_, ban)| !ban.is_active(now))
            .map(|(key, _)| *key)
            .collect();
        for key in expired_ip_bans {
            self.ip_bans.remove(&key);
            changes.ip_bans.insert(key);
        }
        changes
    }

    /// The peers banned at `now`, in key order.
    pub fn active_bans(&self, now: UnixMillis) -> Vec<(PeerKey, Ban)> {
        let mut bans: Vec<(PeerKey, Ban)> = self
            .peers
            .iter()
            .filter_map(|(key, record)| record.ban.map(|ban| (*key, ban)))
            .filter(|(_, ban)| ban.is_active(now))
            .collect();
        bans.sort_by_key(|(key, _)| *key);
        bans
    }

    /// Bans IP `key` (replacing an earlier ban of it). At `max_ip_bans` the ban that ends
    /// first makes room (one until lifted counts as ending last).
    pub fn ban_ip(&mut self, key: IpBanKey, ban: Ban) -> Changes {
        let mut changes = Changes::default();
        if !self.ip_bans.contains_key(&key) && self.ip_bans.len() >= self.config.max_ip_bans {
            let first_to_end = self
                .ip_bans
                .iter()
                .min_by_key(|(_, ban)| ban.until.unwrap_or(UnixMillis(u64::MAX)))
                .map(|(key, _)| *key);
            match first_to_end {
                Some(victim) => {
                    self.ip_bans.remove(&victim);
                    changes.ip_bans.insert(victim);
                    changes.ip_bans_evicted += 1;
                }
                // `max_ip_bans` is 0: nothing is kept.
                None => return changes,
            }
        }
        self.ip_bans.insert(key, ban);
        changes.ip_bans.insert(key);
        changes
    }

    /// Lifts the ban on IP `key`.
    pub fn unban_ip(&mut self, key: &IpBanKey) -> Changes {
        let mut changes = Changes::default();
        if self.ip_bans.remove(key).is_some() {
            changes.ip_bans.insert(*key);
        }
        changes
    }

    /// The IPs banned at `now`, in key order.
    pub fn active_ip_bans(&self, now: UnixMillis) -> Vec<(IpBanKey, Ban)> {
        self.ip_bans
            .iter()
            .filter(|(_, ban)| ban.is_active(now))
            .map(|(key, ban)| (*key, *ban))
            .collect()
    }

    /// The peers of `network` to dial after a restart, in the order to dial them (see the
    /// module doc).
    pub fn redial_candidates(&self, network: Network, now: UnixMillis) -> Vec<RedialCandidate> {
        let long_lived_min = self.config.long_lived_min;
        let is_long_lived = |record: &PeerRecord| {
            record.last_connection.is_some_and(|connection| {
                connection.direction == Direction::Outbound
                    && u128::from(connection.duration_ms) >= long_lived_min.as_millis()
            })
        };
        let eligible = self.peers.iter().filter(|(key, record)| {
            key.network == network
                && !record.is_connected()
                && !record.is_banned(now)
                && !record.addresses.is_empty()
        });
        let (mut long_lived, mut rest): (Vec<_>, Vec<_>) =
            eligible.partition(|(_, record)| is_long_lived(record));
        // Most recently ended first.
        long_lived.sort_by_key(|(key, record)| {
            let ended = record
                .last_connection
                .map_or(0, |c| c.started.0.saturating_add(c.duration_ms));
            (std::cmp::Reverse(ended), **key)
        });
        if long_lived.len() > self.config.max_long_lived {
            rest.extend(long_lived.drain(self.config.max_long_lived..));
        }
        rest.sort_by_key(|(key, record)| {
            (
                std::cmp::Reverse(record.score()),
                std::cmp::Reverse(record.trust),
                std::cmp::Reverse(record.last_seen),
                **key,
            )
        });
        let head = long_lived.len();
        long_lived
            .into_iter()
            .chain(rest)
            .enumerate()
            .map(|(position, (key, record))| {
                let mut addresses: Vec<&AddressEntry> = record.addresses.iter().collect();
                addresses.sort_by_key(|entry| std::cmp::Reverse(entry.score));
                RedialCandidate {
                    peer_id: key.peer_id,
                    addresses: addresses.into_iter().map(|e| e.address.clone()).collect(),
                    long_lived: position < head,
                    score: record.score(),
                    trust: record.trust,
                }
            })
            .collect()
    }

    /// Changes the record of `key`, creating it with `trust` if needed (which may evict
    /// another peer, or refuse this one, at the bound).
    fn upsert(
        &mut self,
        key: PeerKey,
        trust: TrustLevel,
        now: UnixMillis,
        changes: &mut Changes,
        change: impl FnOnce(&mut PeerRecord),
    ) {
        if self.peers.contains_key(&key) {
            self.update_existing(&key, changes, change);
            return;
        }
        let mut record = PeerRecord::new(trust, now);
        change(&mut record);
        if !self.make_room(&record, changes) {
            changes.refused.push(key);
            return;
        }
        self.insert_indexed(key, record);
        changes.peers.insert(key);
    }

    /// Changes the record of `key` if there is one, keeping the eviction order right.
    fn update_existing(
        &mut self,
        key: &PeerKey,
        changes: &mut Changes,
        change: impl FnOnce(&mut PeerRecord),
    ) {
        let Some(mut record) = self.remove_indexed(key) else {
            return;
        };
        change(&mut record);
        self.insert_indexed(*key, record);
        changes.peers.insert(*key);
    }

    /// Whether `newcomer` may be added: there is room, or the lowest-ranked peer ranks below
    /// it and is evicted. A configured newcomer is always admitted.
    fn make_room(&mut self, newcomer: &PeerRecord, changes: &mut Changes) -> bool {
        if self.peers.len() < self.config.max_peers {
            return true;
        }
        let configured = newcomer.trust == TrustLevel::Configured;
        match self.eviction_order.first() {
            Some(&(rank, victim)) if configured || rank < EvictionRank::of(newcomer) => {
                self.remove_indexed(&victim);
                changes.peers.insert(victim);
                changes.evicted.push((victim, EvictionReason::Capacity));
                true
            }
            _ => configured,
        }
    }

    fn insert_indexed(&mut self, key: PeerKey, record: PeerRecord) {
        if record.trust != TrustLevel::Configured {
            self.eviction_order.insert((EvictionRank::of(&record), key));
        }
        self.peers.insert(key, record);
    }

    fn remove_indexed(&mut self, key: &PeerKey) -> Option<PeerRecord> {
        let record = self.peers.remove(key)?;
        self.eviction_order
            .remove(&(EvictionRank::of(&record), *key));
        Some(record)
    }
}

/// Ends the connection that started at `since`, as of `now`.
fn close_connection(
    record: &mut PeerRecord,
    since: UnixMillis,
    direction: Direction,
    now: UnixMillis,
) {
    record.last_connection = Some(LastConnection {
        started: since,
        duration_ms: now.0.saturating_sub(since.0),
        direction,
    });
    record.status = PeerStatus::NotConnected;
}

/// Adds `address` to `record` if it is new and there is room (or the worst address has a
/// score of at most 0, which it replaces). Returns the entry of `address`, if kept.
fn add_address(
    record: &mut PeerRecord,
    address: NetworkAddress,
    max_addresses: usize,
) -> Option<&mut AddressEntry> {
    if let Some(position) = record.addresses.iter().position(|e| e.address == address) {
        return record.addresses.get_mut(position);
    }
    let entry = AddressEntry {
        address,
        score: 0,
        last_success: None,
        last_failure: None,
    };
    if record.addresses.len() < max_addresses {
        record.addresses.push(entry);
        return record.addresses.last_mut();
    }
    // The worst: lowest score, then the one that worked longest ago.
    let worst = record
        .addresses
        .iter()
        .enumerate()
        .filter(|(_, e)| e.score <= 0)
        .min_by_key(|(_, e)| (e.score, e.last_success))
        .map(|(position, _)| position)?;
    record.addresses[worst] = entry;
    record.addresses.get_mut(worst)
}
