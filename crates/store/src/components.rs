//! [`ComponentTable`]: opaque records grouped by a component id, with an index from PeerId to
//! the components that mention it. The routing layer keeps the signed edges of the parts of
//! the network it pruned here (NEAR's "components" stored by nonce), and reads them back when
//! one of their peers shows up again. The records are opaque bytes: this crate does not know
//! the routing types.

use netcore::PeerId;
use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::Store;
use crate::error::{Error, Result};
use crate::metrics::{EvictionReason, Table};
use crate::tables;

/// Components kept by default. Ours: NEAR prunes edges unreachable for 30 minutes and keeps
/// at most 1,000,000 edges; 10,000 components bound the file whatever the pruning rate. At
/// the bound the oldest component (lowest id) goes
/// (`peerlane_store_evictions_total{reason="component_limit"}`).
pub const MAX_COMPONENTS: u64 = 10_000;

/// One stored component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The peers it mentions (its index entries).
    pub peers: Vec<PeerId>,
    /// The caller's records, as given.
    pub records: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
enum VersionedComponent {
    V1(Component),
}

/// The routing layer's component table in a [`Store`]. Each call is one transaction.
#[derive(Clone, Debug)]
pub struct ComponentTable {
    store: Store,
    max_components: u64,
}

impl ComponentTable {
    /// The table in `store`, keeping at most [`MAX_COMPONENTS`].
    pub fn new(store: Store) -> Self {
        Self::with_max_components(store, MAX_COMPONENTS)
    }

    /// The table in `store`, keeping at most `max_components` (at least 1).
    pub fn with_max_components(store: Store, max_components: u64) -> Self {
        Self {
            store,
            max_components: max_components.max(1),
        }
    }

    /// A fresh component id: one more than the last one handed out, across restarts.
    pub fn next_component_id(&self) -> Result<u64> {
        self.store.write(|txn| {
            let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
            let id = meta
                .get(tables::NEXT_COMPONENT_ID_KEY)
                .map_err(Error::db)?
                .map_or(0, |guard| guard.value());
            meta.insert(tables::NEXT_COMPONENT_ID_KEY, id + 1)
                .map_err(Error::db)?;
            Ok(id)
        })
    }

    /// Stores `records` as component `id`, indexed under each of `peers`, replacing a
    /// component of the same id. At the bound the component with the lowest id is dropped.
    pub fn put_component(&self, id: u64, peers: &[PeerId], records: &[Vec<u8>]) -> Result<()> {
        let component = Component {
            peers: peers.to_vec(),
            records: records.to_vec(),
        };
        let value = codec::encode(Table::Components, &VersionedComponent::V1(component))?;
        let evicted = self.store.write(|txn| {
            remove_component(txn, id, |table, err| self.store.report_corrupt(table, err))?;
            let mut components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
            components.insert(id, value.as_slice()).map_err(Error::db)?;
            let mut index = txn
                .open_multimap_table(tables::COMPONENT_INDEX)
                .map_err(Error::db)?;
            for peer in peers {
                index
                    .insert(peer.as_bytes().as_slice(), id)
                    .map_err(Error::db)?;
            }
            drop((components, index));
            let mut evicted = 0;
            while component_count(txn)? > self.max_components {
                let oldest = {
                    let components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
                    let first = components.first().map_err(Error::db)?;
                    first.map(|(key, _)| key.value())
                };
                let Some(oldest) = oldest else { break };
                remove_component(txn, oldest, |table, err| {
                    self.store.report_corrupt(table, err)
                })?;
                evicted += 1;
            }
            Ok(evicted)
        })?;
        for _ in 0..evicted {
            self.store
                .metrics()
                .record_eviction(EvictionReason::ComponentLimit);
        }
        Ok(())
    }

    /// The ids of the components that mention `peer`, ascending.
    pub fn components_of(&self, peer: &PeerId) -> Result<Vec<u64>> {
        self.store.read(|txn| {
            let index = txn
                .open_multimap_table(tables::COMPONENT_INDEX)
                .map_err(Error::db)?;
            let mut ids = Vec::new();
            for id in index.get(peer.as_bytes().as_slice()).map_err(Error::db)? {
                ids.push(id.map_err(Error::db)?.value());
            }
            Ok(ids)
        })
    }

    /// Reads component `id` and deletes it with its index entries, in one transaction.
    /// `Ok(None)` if there is none. A record that does not decode is deleted all the same,
    /// counted, and returned as [`Error::CorruptRecord`].
    pub fn take_component(&self, id: u64) -> Result<Option<Component>> {
        let mut corrupt = None;
        let taken = self.store.write(|txn| {
            remove_component(txn, id, |_, err| {
                corrupt = Some(Error::CorruptRecord {
                    table: Table::Components.as_str(),
                    reason: err.to_string(),
                });
            })
        })?;
        match corrupt {
            Some(err) => {
                self.store.report_corrupt(Table::Components, &err);
                Err(err)
            }
            None => Ok(taken),
        }
    }

    /// Number of components stored.
    pub fn len(&self) -> Result<u64> {
        self.store.read(|txn| {
            let components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
            components.len().map_err(Error::db)
        })
    }

    /// Whether no component is stored.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

fn component_count(txn: &WriteTransaction) -> Result<u64> {
    let components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
    components.len().map_err(Error::db)
}

/// Deletes component `id` and its index entries; returns it if it decoded. A record that
/// does not decode is deleted too (its index entries found by a scan of the index), and
/// `on_corrupt` is told.
fn remove_component(
    txn: &WriteTransaction,
    id: u64,
    on_corrupt: impl FnOnce(Table, &Error),
) -> Result<Option<Component>> {
    let mut components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
    let Some(value) = components.remove(id).map_err(Error::db)? else {
        return Ok(None);
    };
    let decoded: Result<VersionedComponent> = codec::decode(Table::Components, value.value());
    drop(value);
    let mut index = txn
        .open_multimap_table(tables::COMPONENT_INDEX)
        .map_err(Error::db)?;
    match decoded {
        Ok(VersionedComponent::V1(component)) => {
            for peer in &component.peers {
                index
                    .remove(peer.as_bytes().as_slice(), id)
                    .map_err(Error::db)?;
            }
            Ok(Some(component))
        }
        Err(err) => {
            on_corrupt(Table::Components, &err);
            let mut stale = Vec::new();
            for entry in index.iter().map_err(Error::db)? {
                let (peer, ids) = entry.map_err(Error::db)?;
                for entry_id in ids {
                    if entry_id.map_err(Error::db)?.value() == id {
                        stale.push(peer.value().to_vec());
                    }
                }
            }
            for peer in stale {
                index.remove(peer.as_slice(), id).map_err(Error::db)?;
            }
            Ok(None)
        }
    }
}
