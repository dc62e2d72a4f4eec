//! [`PeerStore`]: the [`PeerTable`] kept in memory and written through to the
//! [`Store`]. Every call that changes the table writes what changed in one transaction and
//! records the metrics; reads are served from memory.

use netcore::PeerId;
use redb::{ReadableTable, WriteTransaction};

use crate::codec;
use crate::db::Store;
use crate::error::{Error, Result};
use crate::metrics::{EvictionReason, Table};
use crate::peer_config::PeerStoreConfig;
use crate::peer_record::{
    Ban, BanReason, IpBanKey, Network, PeerKey, PeerRecord, VersionedIpBan, VersionedPeerRecord,
    VersionedPeerRecordRef,
};
use crate::peer_table::{Changes, PeerChange, PeerTable, RedialCandidate};
use crate::tables;
use crate::time::UnixMillis;

/// The persistent peer store: peers with their addresses, scores, trust, connections and
/// bans, and IP bans, across restarts. See [`PeerTable`] for the rules.
///
/// Calling protocol: [`open`](Self::open) at start (it loads the file), then feed it the
/// peer manager's events with [`apply`](Self::apply) (batch them: one call is one commit),
/// call [`prune`](Self::prune) now and then (an hour is plenty) and
/// [`touch_connected`](Self::touch_connected) every few minutes. At start, dial
/// [`redial_candidates`](Self::redial_candidates) in order.
///
/// If a write fails, the change stays in memory and the error is returned (and counted in
/// `peerlane_store_write_failures_total`); the next write of the same peer writes its whole
/// record again.
#[derive(Debug)]
pub struct PeerStore {
    store: Store,
    table: PeerTable,
}

impl PeerStore {
    /// Loads the peers and IP bans in `store`. Records that do not decode are counted
    /// (`peerlane_store_records_skipped_corrupt_total`), logged, skipped and deleted;
    /// connections the file says are open are closed as of their last `last_seen`; the
    /// bounds of `config` are enforced.
    pub fn open(store: Store, config: PeerStoreConfig) -> Result<Self> {
        let (peers, ip_bans, corrupt_peers, corrupt_ip_bans) = store.read(|txn| {
            let mut peers = Vec::new();
            let mut corrupt_peers = Vec::new();
            let table = txn.open_table(tables::PEERS).map_err(Error::db)?;
            for entry in table.iter().map_err(Error::db)? {
                let (key, value) = entry.map_err(Error::db)?;
                match decode_peer(key.value(), value.value()) {
                    Ok(peer) => peers.push(peer),
                    Err(err) => {
                        store.report_corrupt(Table::Peers, &err);
                        corrupt_peers.push(key.value().to_vec());
                    }
                }
            }
            let mut ip_bans = Vec::new();
            let mut corrupt_ip_bans = Vec::new();
            let table = txn.open_table(tables::IP_BANS).map_err(Error::db)?;
            for entry in table.iter().map_err(Error::db)? {
                let (key, value) = entry.map_err(Error::db)?;
                match decode_ip_ban(key.value(), value.value()) {
                    Ok(ban) => ip_bans.push(ban),
                    Err(err) => {
                        store.report_corrupt(Table::IpBans, &err);
                        corrupt_ip_bans.push(key.value().to_vec());
                    }
                }
            }
            Ok((peers, ip_bans, corrupt_peers, corrupt_ip_bans))
        })?;
        let (table, changes) = PeerTable::from_records(config, peers, ip_bans);
        let mut peer_store = Self { store, table };
        if !changes.is_empty() || !corrupt_peers.is_empty() || !corrupt_ip_bans.is_empty() {
            peer_store.persist_with(&changes, |txn| {
                let mut peers = txn.open_table(tables::PEERS).map_err(Error::db)?;
                for key in &corrupt_peers {
                    peers.remove(key.as_slice()).map_err(Error::db)?;
                }
                let mut ip_bans = txn.open_table(tables::IP_BANS).map_err(Error::db)?;
                for key in &corrupt_ip_bans {
                    ip_bans.remove(key.as_slice()).map_err(Error::db)?;
                }
                Ok(())
            })?;
        }
        peer_store.store.metrics().set_peers(peer_store.table.len());
        Ok(peer_store)
    }

    /// The rules and the peers in memory (reads only).
    pub fn table(&self) -> &PeerTable {
        &self.table
    }

    /// The store this writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The record of `peer_id` on `network`.
    pub fn get(&self, network: Network, peer_id: PeerId) -> Option<&PeerRecord> {
        self.table.get(&PeerKey::new(network, peer_id))
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Applies `events` at `now` and writes what changed in one transaction.
    pub fn apply(
        &mut self,
        events: impl IntoIterator<Item = PeerChange>,
        now: UnixMillis,
    ) -> Result<Changes> {
        let changes = self.table.apply_all(events, now);
        self.persist(&changes)?;
        Ok(changes)
    }

    /// Refreshes `last_seen` of the connected peers (see [`PeerTable::touch_connected`]).
    pub fn touch_connected(&mut self, now: UnixMillis) -> Result<Changes> {
        let changes = self.table.touch_connected(now);
        self.persist(&changes)?;
        Ok(changes)
    }

    /// Lifts expired bans and drops expired peers (see [`PeerTable::prune`]).
    pub fn prune(&mut self, now: UnixMillis) -> Result<Changes> {
        let changes = self.table.prune(now);
        self.persist(&changes)?;
        Ok(changes)
    }

    /// Bans `peer_id` on `network` from `now` until `until` (`None`: until unbanned).
    pub fn ban(
        &mut self,
        network: Network,
        peer_id: PeerId,
        reason: BanReason,
        until: Option<UnixMillis>,
        now: UnixMillis,
    ) -> Result<Changes> {
        let key = PeerKey::new(network, peer_id);
        self.apply([PeerChange::Banned { key, reason, until }], now)
    }

    /// Bans `peer_id` on `network` for `peer_store.default_ban_ms` (3 hours) from `now`.
    pub fn ban_for_default(
        &mut self,
        network: Network,
        peer_id: PeerId,
        reason: BanReason,
        now: UnixMillis,
    ) -> Result<Changes> {
        let until = now.saturating_add(self.table.config().default_ban);
        self.ban(network, peer_id, reason, Some(until), now)
    }

    /// Lifts the ban on `peer_id` on `network`.
    pub fn unban(&mut self, network: Network, peer_id: PeerId, now: UnixMillis) -> Result<Changes> {
        let key = PeerKey::new(network, peer_id);
        self.apply([PeerChange::Unbanned { key }], now)
    }

    /// The peers banned at `now` on every network, in key order.
    pub fn active_bans(&self, now: UnixMillis) -> Vec<(PeerKey, Ban)> {
        self.table.active_bans(now)
    }

    /// Bans IP or prefix `key` from `now` until `until` (`None`: until unbanned).
    pub fn ban_ip(
        &mut self,
        key: IpBanKey,
        reason: BanReason,
        until: Option<UnixMillis>,
        now: UnixMillis,
    ) -> Result<Changes> {
        let ban = Ban {
            reason,
            since: now,
            until,
        };
        let changes = self.table.ban_ip(key, ban);
        self.persist(&changes)?;
        Ok(changes)
    }

    /// Lifts the ban on IP or prefix `key`.
    pub fn unban_ip(&mut self, key: &IpBanKey) -> Result<Changes> {
        let changes = self.table.unban_ip(key);
        self.persist(&changes)?;
        Ok(changes)
    }

    /// The IPs and prefixes banned at `now`, in key order.
    pub fn active_ip_bans(&self, now: UnixMillis) -> Vec<(IpBanKey, Ban)> {
        self.table.active_ip_bans(now)
    }

    /// The peers of `network` to dial after a restart, in order (see [`PeerTable`]).
    pub fn redial_candidates(&self, network: Network, now: UnixMillis) -> Vec<RedialCandidate> {
        self.table.redial_candidates(network, now)
    }

    fn persist(&mut self, changes: &Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.persist_with(changes, |_| Ok(()))
    }

    /// Writes `changes` and whatever `also` writes in one transaction; records the metrics.
    fn persist_with(
        &mut self,
        changes: &Changes,
        also: impl FnOnce(&WriteTransaction) -> Result<()>,
    ) -> Result<()> {
        let metrics = self.store.metrics();
        for (_, reason) in &changes.evicted {
            metrics.record_eviction(*reason);
        }
        for _ in 0..changes.ip_bans_evicted {
            metrics.record_eviction(EvictionReason::IpBanCapacity);
        }
        metrics.record_refused(changes.refused.len() as u64);
        metrics.set_peers(self.table.len());
        let table = &self.table;
        self.store.write(|txn| {
            {
                let mut peers = txn.open_table(tables::PEERS).map_err(Error::db)?;
                for key in &changes.peers {
                    let bytes = key.to_bytes();
                    match table.get(key) {
                        Some(record) => {
                            let value =
                                codec::encode(Table::Peers, &VersionedPeerRecordRef::V1(record))?;
                            peers
                                .insert(bytes.as_slice(), value.as_slice())
                                .map_err(Error::db)?;
                        }
                        None => {
                            peers.remove(bytes.as_slice()).map_err(Error::db)?;
                        }
                    }
                }
                let mut ip_bans = txn.open_table(tables::IP_BANS).map_err(Error::db)?;
                for key in &changes.ip_bans {
                    let bytes = key.to_bytes();
                    match table.ip_ban(key) {
                        Some(ban) => {
                            let value = codec::encode(Table::IpBans, &VersionedIpBan::V1(*ban))?;
                            ip_bans
                                .insert(bytes.as_slice(), value.as_slice())
                                .map_err(Error::db)?;
                        }
                        None => {
                            ip_bans.remove(bytes.as_slice()).map_err(Error::db)?;
                        }
                    }
                }
            }
            also(txn)
        })
    }
}

fn decode_peer(key: &[u8], value: &[u8]) -> Result<(PeerKey, PeerRecord)> {
    let key = PeerKey::from_bytes(key).ok_or_else(|| Error::CorruptRecord {
        table: Table::Peers.as_str(),
        reason: format!("key of {} bytes is not a peer key", key.len()),
    })?;
    let VersionedPeerRecord::V1(record) = codec::decode(Table::Peers, value)?;
    Ok((key, record))
}

fn decode_ip_ban(key: &[u8], value: &[u8]) -> Result<(IpBanKey, Ban)> {
    let key = IpBanKey::from_bytes(key).ok_or_else(|| Error::CorruptRecord {
        table: Table::IpBans.as_str(),
        reason: format!("key of {} bytes is not an IP ban key", key.len()),
    })?;
    let VersionedIpBan::V1(ban) = codec::decode(Table::IpBans, value)?;
    Ok((key, ban))
}
