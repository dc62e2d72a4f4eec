//! `--topology`: which validator pairs the demo connects directly. Pure: a [`Topology`]
//! parsed from the flag turns into the set of links between validator indices; the demo
//! gives each validator only its neighbours' addresses, so any other validator is reached
//! through routing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::seq::SliceRandom;

/// How the validators are linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topology {
    /// Every validator with every other.
    Full,
    /// Each validator with the next, the last with the first.
    Ring,
    /// Each validator with the next; the two ends are `n - 1` hops apart.
    Line,
    /// A random line through all validators (so the graph is connected), then random links
    /// until every validator has at least `K` (or all the others, if fewer).
    Random(usize),
}

impl FromStr for Topology {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "full" => Ok(Self::Full),
            "ring" => Ok(Self::Ring),
            "line" => Ok(Self::Line),
            _ => {
                let degree = text
                    .strip_prefix("random:")
                    .ok_or_else(|| format!("{text:?} is not full, ring, line or random:K"))?;
                match degree.parse::<usize>() {
                    Ok(degree) if degree >= 1 => Ok(Self::Random(degree)),
                    _ => Err(format!("random:K needs K of at least 1, not {degree:?}")),
                }
            }
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("full"),
            Self::Ring => f.write_str("ring"),
            Self::Line => f.write_str("line"),
            Self::Random(degree) => write!(f, "random:{degree}"),
        }
    }
}

impl Topology {
    /// The links among `count` validators, each as `(lower index, higher index)`.
    pub(crate) fn links(self, count: usize, rng: &mut impl Rng) -> BTreeSet<(usize, usize)> {
        let mut links = BTreeSet::new();
        let mut link = |a: usize, b: usize| {
            if a != b {
                links.insert((a.min(b), a.max(b)));
            }
        };
        match self {
            Self::Full => {
                for a in 0..count {
                    for b in a + 1..count {
                        link(a, b);
                    }
                }
            }
            Self::Ring | Self::Line => {
                for a in 1..count {
                    link(a - 1, a);
                }
                if self == Self::Ring && count > 2 {
                    link(count - 1, 0);
                }
            }
            Self::Random(degree) => {
                let mut order: Vec<usize> = (0..count).collect();
                order.shuffle(rng);
                for pair in order.windows(2) {
                    link(pair[0], pair[1]);
                }
                let wanted = degree.min(count.saturating_sub(1));
                for a in 0..count {
                    let mut others: Vec<usize> = (0..count).filter(|&b| b != a).collect();
                    others.shuffle(rng);
                    for b in others {
                        if degree_of(&links, a) >= wanted {
                            break;
                        }
                        links.insert((a.min(b), a.max(b)));
                    }
                }
            }
        }
        links
    }
}

fn degree_of(links: &BTreeSet<(usize, usize)>, node: usize) -> usize {
    links
        .iter()
        .filter(|(a, b)| *a == node || *b == node)
        .count()
}

/// The neighbours of `node` among `links`.
pub(crate) fn neighbours(links: &BTreeSet<(usize, usize)>, node: usize) -> BTreeSet<usize> {
    links
        .iter()
        .filter_map(|&(a, b)| match node {
            _ if a == node => Some(b),
            _ if b == node => Some(a),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn connected(count: usize, links: &BTreeSet<(usize, usize)>) -> bool {
        let mut seen = BTreeSet::from([0]);
        let mut todo = vec![0];
        while let Some(node) = todo.pop() {
            for next in neighbours(links, node) {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen.len() == count
    }

    #[test]
    fn the_flag_parses_and_prints_back() {
        for text in ["full", "ring", "line", "random:3"] {
            assert_eq!(text.parse::<Topology>().unwrap().to_string(), text);
        }
        for bad in ["star", "random", "random:", "random:0", "random:x", ""] {
            assert!(bad.parse::<Topology>().is_err(), "{bad}");
        }
    }

    #[test]
    fn full_ring_and_line_have_their_links() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Topology::Full.links(4, &mut rng).len(), 6);
        assert_eq!(
            Topology::Line.links(4, &mut rng),
            BTreeSet::from([(0, 1), (1, 2), (2, 3)])
        );
        assert_eq!(
            Topology::Ring.links(4, &mut rng),
            BTreeSet::from([(0, 1), (1, 2), (2, 3), (0, 3)])
        );
        // Two validators: the ring is the one link; one validator: no links.
        assert_eq!(Topology::Ring.links(2, &mut rng).len(), 1);
        assert!(Topology::Full.links(1, &mut rng).is_empty());
    }

    #[test]
    fn random_links_are_connected_and_reach_the_degree() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let links = Topology::Random(3).links(10, &mut rng);
            assert!(connected(10, &links), "{links:?}");
            for node in 0..10 {
                assert!(neighbours(&links, node).len() >= 3, "{links:?}");
            }
            // More than there are others: every pair.
            let links = Topology::Random(9).links(4, &mut rng);
            assert_eq!(links.len(), 6);
        }
    }
}
