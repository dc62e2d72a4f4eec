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

/// Bytes of encoded components kept by default, all components together. Ours: NEAR's
/// 1,000,000-edge cap at about 200 bytes per signed edge is 200 MiB; 256 MiB keeps that much
/// pruned state and bounds the file whatever the routing layer hands over. Past it the
/// oldest components go, as at [`MAX_COMPONENTS`]; one component larger than the whole
/// budget is refused with [`Error::ComponentTooLarge`].
pub const MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;

/// The bounds of a [`ComponentTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Components kept (at least 1): [`MAX_COMPONENTS`].
    pub max_components: u64,
    /// Encoded bytes kept, all components together: [`MAX_COMPONENT_BYTES`].
    pub max_bytes: u64,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        Self {
            max_components: MAX_COMPONENTS,
            max_bytes: MAX_COMPONENT_BYTES,
        }
    }
}

/// One stored component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The peers it mentions (its index entries).
    pub peers: Vec<PeerId>,
    /// The caller's records, as given.
    pub records: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
enum VersionedComponent {
    V1(Component),
}

/// What [`VersionedComponent`] reads, written from borrowed parts (the same BCS bytes).
#[derive(Serialize)]
enum VersionedComponentRef<'a> {
    V1(ComponentRef<'a>),
}

#[derive(Serialize)]
struct ComponentRef<'a> {
    peers: &'a [PeerId],
    records: &'a [Vec<u8>],
}

/// The routing layer's component table in a [`Store`]. Each call is one transaction.
#[derive(Clone, Debug)]
pub struct ComponentTable {
    store: Store,
    limits: ComponentLimits,
}

impl ComponentTable {
    /// The table in `store`, with the default [`ComponentLimits`].
    pub fn new(store: Store) -> Self {
        Self::with_limits(store, ComponentLimits::default())
    }

    /// The table in `store`, within `limits` (`max_components` at least 1).
    pub fn with_limits(store: Store, limits: ComponentLimits) -> Self {
        Self {
            store,
            limits: ComponentLimits {
                max_components: limits.max_components.max(1),
                ..limits
            },
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
    /// component of the same id. Past either bound the components with the lowest ids are
    /// dropped in the same transaction (never the one just written); a component whose
    /// encoding alone exceeds `max_bytes` is refused with [`Error::ComponentTooLarge`] and
    /// nothing changes.
    pub fn put_component(&self, id: u64, peers: &[PeerId], records: &[Vec<u8>]) -> Result<()> {
        let component = ComponentRef { peers, records };
        let value = codec::encode(Table::Components, &VersionedComponentRef::V1(component))?;
        let size = value.len() as u64;
        if size > self.limits.max_bytes {
            return Err(Error::ComponentTooLarge {
                size,
                max: self.limits.max_bytes,
            });
        }
        let report = |table: Table, err: &Error| self.store.report_corrupt(table, err);
        let evicted = self.store.write(|txn| {
            let mut bytes = stored_bytes(txn)?;
            if let Some(replaced) = remove_component(txn, id, report)? {
                bytes = bytes.saturating_sub(replaced.size);
            }
            let mut components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
            components.insert(id, value.as_slice()).map_err(Error::db)?;
            let mut count = components.len().map_err(Error::db)?;
            drop(components);
            let mut index = txn
                .open_multimap_table(tables::COMPONENT_INDEX)
                .map_err(Error::db)?;
            for peer in peers {
                index
                    .insert(peer.as_bytes().as_slice(), id)
                    .map_err(Error::db)?;
            }
            drop(index);
            bytes += size;
            let mut evicted = 0;
            while count > self.limits.max_components || bytes > self.limits.max_bytes {
                let Some(oldest) = oldest_other_than(txn, id)? else {
                    break;
                };
                if let Some(removed) = remove_component(txn, oldest, report)? {
                    bytes = bytes.saturating_sub(removed.size);
                }
                count -= 1;
                evicted += 1;
            }
            set_stored_bytes(txn, bytes)?;
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
            let removed = remove_component(txn, id, |_, err| {
                corrupt = Some(Error::CorruptRecord {
                    table: Table::Components.as_str(),
                    reason: err.to_string(),
                });
            })?;
            let Some(removed) = removed else {
                return Ok(None);
            };
            let bytes = stored_bytes(txn)?.saturating_sub(removed.size);
            set_stored_bytes(txn, bytes)?;
            Ok(removed.component)
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

    /// Encoded bytes of all stored components: what `max_bytes` bounds.
    pub fn stored_bytes(&self) -> Result<u64> {
        self.store.read(|txn| {
            let meta = txn.open_table(tables::META).map_err(Error::db)?;
            let bytes = meta.get(tables::COMPONENT_BYTES_KEY).map_err(Error::db)?;
            Ok(bytes.map_or(0, |guard| guard.value()))
        })
    }
}

fn stored_bytes(txn: &WriteTransaction) -> Result<u64> {
    let meta = txn.open_table(tables::META).map_err(Error::db)?;
    let bytes = meta.get(tables::COMPONENT_BYTES_KEY).map_err(Error::db)?;
    Ok(bytes.map_or(0, |guard| guard.value()))
}

fn set_stored_bytes(txn: &WriteTransaction, bytes: u64) -> Result<()> {
    let mut meta = txn.open_table(tables::META).map_err(Error::db)?;
    meta.insert(tables::COMPONENT_BYTES_KEY, bytes)
        .map_err(Error::db)?;
    Ok(())
}

/// The lowest component id other than `keep`.
fn oldest_other_than(txn: &WriteTransaction, keep: u64) -> Result<Option<u64>> {
    let components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
    for entry in components.iter().map_err(Error::db)?.take(2) {
        let id = entry.map_err(Error::db)?.0.value();
        if id != keep {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// A component deleted by [`remove_component`]: its encoded size, and itself if it decoded.
struct Removed {
    size: u64,
    component: Option<Component>,
}

/// Deletes component `id` and its index entries. A record that does not decode is deleted
/// too (its index entries found by a scan of the index), and `on_corrupt` is told.
fn remove_component(
    txn: &WriteTransaction,
    id: u64,
    on_corrupt: impl FnOnce(Table, &Error),
) -> Result<Option<Removed>> {
    let mut components = txn.open_table(tables::COMPONENTS).map_err(Error::db)?;
    let Some(value) = components.remove(id).map_err(Error::db)? else {
        return Ok(None);
    };
    let size = value.value().len() as u64;
    let decoded: Result<VersionedComponent> = codec::decode(Table::Components, value.value());
    drop(value);
    drop(components);
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
            Ok(Some(Removed {
                size,
                component: Some(component),
            }))
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
            Ok(Some(Removed {
                size,
                component: None,
            }))
        }
    }
}
