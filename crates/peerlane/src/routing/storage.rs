//! [`ComponentStorage`]: where the routing actor keeps the components of edges it pruned
//! (unreachable for `prune_unreachable_after_ms`): the node's on-disk store when it has one
//! (`store::ComponentTable`, one record per edge in BCS), else memory, bounded.
//!
//! The routing node numbers components from 0 each run; the store numbers them across
//! restarts. The actor maps one to the other for the components of this run (the pruned
//! index forgets components it cannot hold, and says so: they are deleted here too).

use std::collections::{HashMap, VecDeque};

use routing::{Component, ComponentId, Edge};

/// Edges of pruned components kept in memory when there is no store; the oldest components
/// go beyond it (a later reconciliation brings back what is still alive).
pub const MAX_PRUNED_EDGES_IN_MEMORY: usize = 100_000;

/// Where pruned components go.
pub(crate) enum ComponentStorage {
    /// On disk.
    Store {
        table: store::ComponentTable,
        /// The node's component id → the store's.
        ids: HashMap<ComponentId, u64>,
    },
    /// In memory, at most [`MAX_PRUNED_EDGES_IN_MEMORY`] edges.
    Memory {
        components: HashMap<ComponentId, Vec<Edge>>,
        order: VecDeque<ComponentId>,
        edges: usize,
    },
}

impl ComponentStorage {
    pub(crate) fn new(table: Option<store::ComponentTable>) -> Self {
        match table {
            Some(table) => Self::Store {
                table,
                ids: HashMap::new(),
            },
            None => Self::Memory {
                components: HashMap::new(),
                order: VecDeque::new(),
                edges: 0,
            },
        }
    }

    /// Keeps `component`. A store error loses it (logged): the edges come back through
    /// reconciliation if they are still alive.
    pub(crate) fn put(&mut self, component: Component) {
        match self {
            Self::Store { table, ids } => {
                let peers = component.peers();
                let records: Vec<Vec<u8>> = component
                    .edges
                    .iter()
                    .filter_map(|edge| bcs::to_bytes(edge).ok())
                    .collect();
                let stored = table
                    .next_component_id()
                    .and_then(|id| table.put_component(id, &peers, &records).map(|()| id));
                match stored {
                    Ok(id) => {
                        ids.insert(component.id, id);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pruned routing component not stored");
                    }
                }
            }
            Self::Memory {
                components,
                order,
                edges,
            } => {
                *edges += component.edges.len();
                order.push_back(component.id);
                components.insert(component.id, component.edges);
                while *edges > MAX_PRUNED_EDGES_IN_MEMORY {
                    let Some(oldest) = order.pop_front() else {
                        break;
                    };
                    if let Some(gone) = components.remove(&oldest) {
                        *edges -= gone.len();
                    }
                }
            }
        }
    }

    /// Takes the component `id` out, if it is still held.
    pub(crate) fn take(&mut self, id: ComponentId) -> Option<Component> {
        match self {
            Self::Store { table, ids } => {
                let stored = ids.remove(&id)?;
                match table.take_component(stored) {
                    Ok(Some(component)) => Some(Component {
                        id,
                        edges: component
                            .records
                            .iter()
                            .filter_map(|record| bcs::from_bytes(record).ok())
                            .collect(),
                    }),
                    Ok(None) => None,
                    Err(error) => {
                        tracing::warn!(%error, "pruned routing component not read back");
                        None
                    }
                }
            }
            Self::Memory {
                components,
                order,
                edges,
            } => {
                let taken = components.remove(&id)?;
                *edges -= taken.len();
                order.retain(|other| *other != id);
                Some(Component { id, edges: taken })
            }
        }
    }

    /// Deletes the component `id` (the pruned index forgot it).
    pub(crate) fn forget(&mut self, id: ComponentId) {
        let _ = self.take(id);
    }
}
