//! Next hops: a breadth-first search from the local node over active edges gives, for every
//! reachable peer, its distance and ALL first hops (local neighbours) that start a shortest
//! path to it; [`NextHops::pick`] spreads traffic round-robin among them.
//!
//! The search numbers the peers densely and carries, per peer, a bit set over the local
//! neighbours: a peer first reached at distance d takes its parent's set; a peer reached
//! again at the same distance from another parent adds that parent's set. Cost: O(E) plus
//! O(E x neighbours / 64) for the bit sets.

use std::collections::{HashMap, VecDeque};

use netcore::PeerId;

use crate::graph::EdgeTable;

#[derive(Clone, Debug)]
struct Route {
    distance: u32,
    first_hops: Vec<PeerId>,
    cursor: usize,
}

/// The state of one breadth-first search: peers numbered in order of discovery.
struct Search {
    words: usize,
    index: HashMap<PeerId, usize>,
    peers: Vec<PeerId>,
    distance: Vec<u32>,
    /// `words` u64 per peer: the bit set of its first hops.
    hops: Vec<u64>,
}

impl Search {
    fn add(&mut self, peer: PeerId, distance: u32) -> usize {
        let slot = self.peers.len();
        self.index.insert(peer, slot);
        self.peers.push(peer);
        self.distance.push(distance);
        self.hops.extend(std::iter::repeat_n(0, self.words));
        slot
    }
}

/// The next-hop table: computed from an [`EdgeTable`], replaced whole on recompute.
#[derive(Clone, Debug, Default)]
pub struct NextHops {
    routes: HashMap<PeerId, Route>,
}

impl NextHops {
    /// Computes the table from the active edges of `table`, from its local node.
    pub fn compute(table: &EdgeTable) -> Self {
        let local = table.local();
        let neighbours: Vec<PeerId> = {
            let mut neighbours = table.active_neighbours(&local).to_vec();
            neighbours.sort_unstable();
            neighbours.dedup();
            neighbours
        };
        let words = neighbours.len().div_ceil(64).max(1);
        let mut search = Search {
            words,
            index: HashMap::new(),
            peers: Vec::new(),
            distance: Vec::new(),
            hops: Vec::new(),
        };
        let mut queue: VecDeque<usize> = VecDeque::new();
        search.add(local, 0);
        for (bit, neighbour) in neighbours.iter().enumerate() {
            let slot = search.add(*neighbour, 1);
            search.hops[slot * words + bit / 64] |= 1 << (bit % 64);
            queue.push_back(slot);
        }
        while let Some(current) = queue.pop_front() {
            let next_distance = search.distance[current] + 1;
            for next in table.active_neighbours(&search.peers[current]) {
                let slot = match search.index.get(next) {
                    Some(&slot) if search.distance[slot] == next_distance => slot,
                    Some(_) => continue,
                    None => {
                        let slot = search.add(*next, next_distance);
                        queue.push_back(slot);
                        slot
                    }
                };
                for word in 0..words {
                    search.hops[slot * words + word] |= search.hops[current * words + word];
                }
            }
        }
        let Search {
            peers,
            distance,
            hops,
            ..
        } = search;
        let mut routes = HashMap::with_capacity(peers.len().saturating_sub(1));
        for slot in 1..peers.len() {
            let first_hops: Vec<PeerId> = neighbours
                .iter()
                .enumerate()
                .filter(|(bit, _)| hops[slot * words + bit / 64] & (1 << (bit % 64)) != 0)
                .map(|(_, peer)| *peer)
                .collect();
            routes.insert(
                peers[slot],
                Route {
                    distance: distance[slot],
                    first_hops,
                    cursor: 0,
                },
            );
        }
        Self { routes }
    }

    /// Reachable peers (the local node not included).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no peer is reachable.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The reachable peers.
    pub fn reachable(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.routes.keys().copied()
    }

    /// Hops from the local node to `target`.
    pub fn distance(&self, target: &PeerId) -> Option<u32> {
        self.routes.get(target).map(|route| route.distance)
    }

    /// Every first hop on a shortest path to `target`, sorted.
    pub fn first_hops(&self, target: &PeerId) -> &[PeerId] {
        self.routes
            .get(target)
            .map_or(&[], |route| route.first_hops.as_slice())
    }

    /// The next first hop to `target`, round-robin among the shortest paths.
    pub fn pick(&mut self, target: &PeerId) -> Option<PeerId> {
        let route = self.routes.get_mut(target)?;
        let hop = *route
            .first_hops
            .get(route.cursor % route.first_hops.len().max(1))?;
        route.cursor = route.cursor.wrapping_add(1);
        Some(hop)
    }

    /// Like [`NextHops::pick`], skipping `avoid` (the peer the message came from) when
    /// there is another choice.
    pub fn pick_avoiding(&mut self, target: &PeerId, avoid: &PeerId) -> Option<PeerId> {
        let first = self.pick(target)?;
        if first != *avoid {
            return Some(first);
        }
        let second = self.pick(target)?;
        Some(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::test_keys::{active_edge, key};
    use crate::graph::GraphLimits;
    use crate::xeddsa::SigningKey;

    const NOW: u64 = 1_700_000_000_001;

    fn table(local: &SigningKey, pairs: &[(&SigningKey, &SigningKey)]) -> EdgeTable {
        let mut table = EdgeTable::new(local.peer_id(), GraphLimits::default());
        let edges = pairs.iter().map(|(a, b)| active_edge(a, b, NOW)).collect();
        table.apply(edges);
        table
    }

    fn sorted(mut peers: Vec<PeerId>) -> Vec<PeerId> {
        peers.sort();
        peers
    }

    /// Diamond L–A–T, L–B–T: T has both A and B as first hops; picking alternates.
    #[test]
    fn diamond_has_two_first_hops_and_round_robin_alternates() {
        let [l, a, b, t] = [1, 2, 3, 4].map(key);
        let table = table(&l, &[(&l, &a), (&l, &b), (&a, &t), (&b, &t)]);
        let mut hops = NextHops::compute(&table);
        assert_eq!(hops.distance(&t.peer_id()), Some(2));
        let expected = sorted(vec![a.peer_id(), b.peer_id()]);
        assert_eq!(hops.first_hops(&t.peer_id()), expected.as_slice());
        let picks: Vec<PeerId> = (0..4).map(|_| hops.pick(&t.peer_id()).unwrap()).collect();
        assert_eq!(
            picks,
            vec![expected[0], expected[1], expected[0], expected[1]]
        );
        assert_eq!(hops.first_hops(&a.peer_id()), &[a.peer_id()]);
        // Avoiding the one we got it from gives the other.
        assert_eq!(
            hops.pick_avoiding(&t.peer_id(), &expected[0]),
            Some(expected[1])
        );
    }

    /// A line L–A–B–C: one first hop, distances 1, 2, 3.
    #[test]
    fn line() {
        let [l, a, b, c] = [1, 2, 3, 4].map(key);
        let table = table(&l, &[(&l, &a), (&a, &b), (&b, &c)]);
        let hops = NextHops::compute(&table);
        assert_eq!(hops.distance(&c.peer_id()), Some(3));
        assert_eq!(hops.first_hops(&c.peer_id()), &[a.peer_id()]);
        assert_eq!(hops.len(), 3);
    }

    /// A disconnected part is unreachable; a removed edge does not carry routes; a longer
    /// path is not a shortest one.
    #[test]
    fn disconnected_removed_and_longer_paths() {
        let [l, a, b, x, y] = [1, 2, 3, 4, 5].map(key);
        let mut table = table(&l, &[(&l, &a), (&l, &b), (&a, &b), (&x, &y)]);
        let hops = NextHops::compute(&table);
        assert_eq!(hops.distance(&x.peer_id()), None);
        assert!(hops.first_hops(&y.peer_id()).is_empty());
        assert_eq!(hops.first_hops(&b.peer_id()), &[b.peer_id()]);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let removed = active_edge(&l, &b, NOW).remove(&l, &mut rng).unwrap();
        table.apply(vec![removed]);
        let hops = NextHops::compute(&table);
        assert_eq!(hops.first_hops(&b.peer_id()), &[a.peer_id()]);
        assert_eq!(hops.distance(&b.peer_id()), Some(2));
    }

    /// More than 64 neighbours: the bit sets span words.
    #[test]
    fn many_neighbours() {
        let l = key(1);
        let t = key(2);
        let middles: Vec<SigningKey> = (100..170).map(key).collect();
        let mut pairs: Vec<(&SigningKey, &SigningKey)> = Vec::new();
        for middle in &middles {
            pairs.push((&l, middle));
            pairs.push((middle, &t));
        }
        let table = table(&l, &pairs);
        let hops = NextHops::compute(&table);
        assert_eq!(hops.first_hops(&t.peer_id()).len(), 70);
    }
}
