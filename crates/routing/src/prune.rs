//! Pruning: edges unreachable from the local node for long enough leave memory, grouped by
//! connected component so that the caller can store each component and bring it back whole
//! when one of its peers becomes reachable again.
//!
//! The table picks the edges ([`crate::EdgeTable::take_unreachable`]); [`components_of`]
//! groups them; [`PrunedIndex`] remembers which stored component each peer belongs to, so
//! that the caller knows what to load when a peer shows up again
//! ([`crate::EdgeTable::restore`] puts it back). Storage itself is the caller's.

use std::collections::{HashMap, VecDeque};

use netcore::PeerId;

use crate::edge::Edge;

/// A stored component's number, unique for the life of a table.
pub type ComponentId = u64;

/// A connected component of pruned edges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Its number.
    pub id: ComponentId,
    /// Its edges (active and removed).
    pub edges: Vec<Edge>,
}

impl Component {
    /// The peers of the component, sorted, without repeats.
    pub fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .edges
            .iter()
            .flat_map(|edge| [edge.key.peer0(), edge.key.peer1()])
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

/// Groups `edges` into connected components (removed edges connect too: they are part of
/// what is stored), numbered from `first_id` in order of each component's first edge.
pub fn components_of(edges: Vec<Edge>, first_id: ComponentId) -> Vec<Component> {
    let mut index: HashMap<PeerId, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut slot = |peer: PeerId, parent: &mut Vec<usize>| {
        *index.entry(peer).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    fn root(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    let mut ends = Vec::with_capacity(edges.len());
    for edge in &edges {
        let a = slot(edge.key.peer0(), &mut parent);
        let b = slot(edge.key.peer1(), &mut parent);
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
        ends.push(a);
    }
    let mut by_root: HashMap<usize, usize> = HashMap::new();
    let mut components: Vec<Component> = Vec::new();
    for (edge, end) in edges.into_iter().zip(ends) {
        let group = root(&mut parent, end);
        let position = *by_root.entry(group).or_insert_with(|| {
            components.push(Component {
                id: first_id + components.len() as u64,
                edges: Vec::new(),
            });
            components.len() - 1
        });
        components[position].edges.push(edge);
    }
    components
}

/// What [`PrunedIndex::insert`] had to forget to stay within its bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexEviction {
    /// Components forgotten (oldest first): the caller may delete them from storage.
    pub forgotten: Vec<ComponentId>,
}

/// Which stored component each pruned peer is in, bounded by `max_peers` (the oldest
/// components are forgotten first, and reported).
#[derive(Clone, Debug)]
pub struct PrunedIndex {
    max_peers: usize,
    by_peer: HashMap<PeerId, ComponentId>,
    order: VecDeque<(ComponentId, Vec<PeerId>)>,
}

impl PrunedIndex {
    /// An empty index holding at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            by_peer: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Peers indexed.
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Records a stored component. A component larger than the whole bound is not indexed
    /// (reported as forgotten at once).
    pub fn insert(&mut self, component: &Component) -> IndexEviction {
        let mut eviction = IndexEviction::default();
        let peers = component.peers();
        if peers.len() > self.max_peers {
            eviction.forgotten.push(component.id);
            return eviction;
        }
        while self.by_peer.len() + peers.len() > self.max_peers {
            let Some((id, old_peers)) = self.order.pop_front() else {
                break;
            };
            self.forget(id, &old_peers);
            eviction.forgotten.push(id);
        }
        for peer in &peers {
            // A peer is in one component at most: a newer one takes it over.
            self.by_peer.insert(*peer, component.id);
        }
        self.order.push_back((component.id, peers));
        eviction
    }

    fn forget(&mut self, id: ComponentId, peers: &[PeerId]) {
        for peer in peers {
            if self.by_peer.get(peer) == Some(&id) {
                self.by_peer.remove(peer);
            }
        }
    }

    /// The stored components holding any of `peers` (newly reachable), taken out of the
    /// index: load them and pass them to [`crate::EdgeTable::restore`].
    pub fn take_for<'a>(
        &mut self,
        peers: impl IntoIterator<Item = &'a PeerId>,
    ) -> Vec<ComponentId> {
        let mut ids: Vec<ComponentId> = peers
            .into_iter()
            .filter_map(|peer| self.by_peer.get(peer).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            let position = self.order.iter().position(|(other, _)| other == id);
            if let Some((_, peers)) = position.and_then(|position| self.order.remove(position)) {
                self.forget(*id, &peers);
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::edge::test_keys::{active_edge, key};
    use crate::graph::{EdgeTable, GraphLimits};
    use crate::next_hops::NextHops;

    const NOW: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    /// Local node L–A; elsewhere two islands X–Y–Z and P–Q. After an hour unreachable the
    /// islands leave the table as two numbered components; when Y connects to A again, the
    /// index names X–Y–Z's component and restoring it makes Z reachable.
    #[test]
    fn unreachable_islands_are_pruned_and_restored() {
        let [l, a, x, y, z, p, q] = [1, 2, 3, 4, 5, 6, 7].map(key);
        let mut table = EdgeTable::new(l.peer_id(), GraphLimits::default());
        table.apply(vec![
            active_edge(&l, &a, NOW + 1),
            active_edge(&x, &y, NOW + 1),
            active_edge(&y, &z, NOW + 1),
            active_edge(&p, &q, NOW + 1),
        ]);
        let reachable: HashSet<PeerId> = NextHops::compute(&table).reachable().collect();
        table.note_reachability(&reachable, NOW);
        assert!(table.take_unreachable(NOW + HOUR - 1, HOUR).is_empty());
        let components = table.take_unreachable(NOW + HOUR, HOUR);
        assert_eq!(components.len(), 2);
        assert_eq!(components[0].id, 0);
        assert_eq!(components[1].id, 1);
        // Numbered, and their edges listed, in edge-key order, not the table's map order.
        assert!(components[0].edges[0].key < components[1].edges[0].key);
        for component in &components {
            assert!(component.edges.windows(2).all(|w| w[0].key < w[1].key));
        }
        assert_eq!(table.len(), 1);
        let xyz = components
            .iter()
            .find(|component| component.edges.len() == 2)
            .unwrap()
            .clone();
        let mut expected = vec![x.peer_id(), y.peer_id(), z.peer_id()];
        expected.sort();
        assert_eq!(xyz.peers(), expected);

        let mut index = PrunedIndex::new(100);
        for component in &components {
            assert!(index.insert(component).forgotten.is_empty());
        }
        assert_eq!(index.len(), 5);

        // A meets Y: Y is reachable, so its component comes back.
        table.apply(vec![active_edge(&a, &y, NOW + HOUR + 1)]);
        let reachable: HashSet<PeerId> = NextHops::compute(&table).reachable().collect();
        assert_eq!(index.take_for(&reachable), vec![xyz.id]);
        assert_eq!(index.len(), 2);
        let outcome = table.restore(xyz);
        assert_eq!(outcome.changed.len(), 2);
        assert!(
            NextHops::compute(&table)
                .reachable()
                .any(|peer| peer == z.peer_id())
        );
    }

    /// The index forgets the oldest components to stay within its bound, and says which.
    #[test]
    fn pruned_index_is_bounded() {
        let keys: Vec<_> = (10..20).map(key).collect();
        let component = |id: u64, i: usize| Component {
            id,
            edges: vec![active_edge(&keys[i], &keys[i + 1], NOW + 1)],
        };
        let mut index = PrunedIndex::new(4);
        assert!(index.insert(&component(0, 0)).forgotten.is_empty());
        assert!(index.insert(&component(1, 2)).forgotten.is_empty());
        assert_eq!(index.insert(&component(2, 4)).forgotten, vec![0]);
        assert_eq!(index.len(), 4);
        let big = Component {
            id: 3,
            edges: (0..5)
                .map(|i| active_edge(&keys[i], &keys[i + 5], NOW + 1))
                .collect(),
        };
        assert_eq!(index.insert(&big).forgotten, vec![3]);
    }
}
