//! What a node does with a ROUTED message, as one pure step: check the author's signature,
//! deliver it if it is for us, otherwise take a hop off its TTL and pick the next hop (by
//! next hops for a peer target, by the route-back table for a response). Requests record
//! where they came from so that their response can go back the same way.

use std::time::Instant;

use netcore::PeerId;

use crate::next_hops::NextHops;
use crate::route_back::{RouteBackInsert, RouteBackTable};
use crate::routed::{RoutedKind, RoutedMessage, RoutedTarget};

/// Why a routed message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The author's signature does not verify: the previous hop forwarded a forgery or a
    /// changed message (misbehaviour).
    BadSignature,
    /// No hops left.
    TtlExhausted,
    /// The target is not reachable from here.
    NoRoute,
    /// A response whose request this node has no (live) route-back entry for.
    UnknownRouteBack,
    /// A request whose previous hop already holds its share of the route-back table.
    RouteBackFull,
    /// The previous hop sent more routed messages than its verify budget
    /// (`routed_verify_rate_per_peer`); dropped before the signature check.
    OverBudget,
}

impl DropReason {
    /// A short label for metrics: `bad_signature`, `ttl`, `no_route`,
    /// `unknown_route_back`, `route_back_full`, `budget`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::TtlExhausted => "ttl",
            Self::NoRoute => "no_route",
            Self::UnknownRouteBack => "unknown_route_back",
            Self::RouteBackFull => "route_back_full",
            Self::OverBudget => "budget",
        }
    }

    /// Every reason, for zero-initialised metrics.
    pub const ALL: [Self; 6] = [
        Self::BadSignature,
        Self::TtlExhausted,
        Self::NoRoute,
        Self::UnknownRouteBack,
        Self::RouteBackFull,
        Self::OverBudget,
    ];
}

/// The decision for one routed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// It is for the local node.
    Deliver(RoutedMessage),
    /// Send it (TTL already decremented) to `next_hop`.
    Send {
        /// The neighbour to send it to.
        next_hop: PeerId,
        /// The message.
        message: RoutedMessage,
    },
    /// Drop it, and count the reason.
    Drop(DropReason),
}

/// The outcome of [`forward`]: the decision and what the route-back table had to drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardOutcome {
    /// What to do with the message.
    pub forward: Forward,
    /// Set when a request was recorded for its response.
    pub route_back: Option<RouteBackInsert>,
}

/// Decides what the node `local` does with `message`, received from the neighbour `from`
/// (`local` itself for a message the node sends). Verifies the signature first; the caller
/// runs this on a blocking pool if it wants the verification off its actor.
pub fn forward(
    local: PeerId,
    mut message: RoutedMessage,
    from: PeerId,
    next_hops: &mut NextHops,
    route_back: &mut RouteBackTable,
    now: Instant,
) -> ForwardOutcome {
    let drop = |reason| ForwardOutcome {
        forward: Forward::Drop(reason),
        route_back: None,
    };
    if message.verify().is_err() {
        return drop(DropReason::BadSignature);
    }
    let mut recorded = None;
    if matches!(message.kind, RoutedKind::Request { .. }) {
        let insert = route_back.insert(message.hash(), from, now);
        if insert.refused {
            return ForwardOutcome {
                forward: Forward::Drop(DropReason::RouteBackFull),
                route_back: Some(insert),
            };
        }
        recorded = Some(insert);
    }
    let next_hop = match message.target {
        RoutedTarget::Peer(target) if target == local => {
            return ForwardOutcome {
                forward: Forward::Deliver(message),
                route_back: recorded,
            };
        }
        RoutedTarget::Peer(target) => next_hops.pick_avoiding(&target, &from),
        RoutedTarget::RouteBack(hash) => match route_back.take(&hash, now) {
            Some(previous) if previous == local => {
                return ForwardOutcome {
                    forward: Forward::Deliver(message),
                    route_back: recorded,
                };
            }
            Some(previous) => Some(previous),
            None => return drop(DropReason::UnknownRouteBack),
        },
    };
    let Some(next_hop) = next_hop else {
        return drop(DropReason::NoRoute);
    };
    // The first send from the author costs no hop.
    if from != local && message.take_hop().is_err() {
        return drop(DropReason::TtlExhausted);
    }
    ForwardOutcome {
        forward: Forward::Send { next_hop, message },
        route_back: recorded,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::edge::test_keys::{active_edge, key};
    use crate::graph::{EdgeTable, GraphLimits};
    use crate::xeddsa::SigningKey;

    const NOW: u64 = 1_700_000_000_001;

    struct Node {
        key: SigningKey,
        hops: NextHops,
        route_back: RouteBackTable,
    }

    /// A line A–B–C–D where every node knows every edge.
    fn line() -> Vec<Node> {
        let keys: Vec<SigningKey> = (1..=4).map(key).collect();
        let edges: Vec<_> = (0..3)
            .map(|i| active_edge(&keys[i], &keys[i + 1], NOW))
            .collect();
        keys.into_iter()
            .map(|key| {
                let mut table = EdgeTable::new(key.peer_id(), GraphLimits::default());
                table.apply(edges.clone());
                Node {
                    hops: NextHops::compute(&table),
                    route_back: RouteBackTable::new(10, 10, Duration::from_secs(120)),
                    key,
                }
            })
            .collect()
    }

    fn index_of(nodes: &[Node], peer: PeerId) -> usize {
        nodes
            .iter()
            .position(|node| node.key.peer_id() == peer)
            .unwrap()
    }

    /// Carries `message` from node `start` until it is delivered or dropped; returns where
    /// it was delivered and the message as delivered.
    fn run(
        nodes: &mut [Node],
        start: usize,
        message: RoutedMessage,
        now: Instant,
    ) -> Result<(usize, RoutedMessage), DropReason> {
        let mut at = start;
        let mut from = nodes[start].key.peer_id();
        let mut message = message;
        loop {
            let local = nodes[at].key.peer_id();
            let node = &mut nodes[at];
            let outcome = forward(
                local,
                message,
                from,
                &mut node.hops,
                &mut node.route_back,
                now,
            );
            match outcome.forward {
                Forward::Deliver(delivered) => return Ok((at, delivered)),
                Forward::Drop(reason) => return Err(reason),
                Forward::Send {
                    next_hop,
                    message: next,
                } => {
                    from = local;
                    at = index_of(nodes, next_hop);
                    message = next;
                }
            }
        }
    }

    /// A request from A reaches D over B and C (TTL down by 2 hops after the first send);
    /// D's response goes back by the route-back entries and is delivered to A.
    #[test]
    fn request_and_response_cross_the_line() {
        let mut nodes = line();
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(0);
        let target = nodes[3].key.peer_id();
        let request = RoutedMessage::new(
            &nodes[0].key,
            RoutedTarget::Peer(target),
            100,
            1,
            RoutedKind::Request { request_id: 9 },
            5,
            Bytes::from_static(b"ping"),
            &mut rng,
        );
        let request_hash = request.hash();
        let (at, delivered) = run(&mut nodes, 0, request, now).unwrap();
        assert_eq!(at, 3);
        assert_eq!(delivered.ttl, 98);
        let response = RoutedMessage::new(
            &nodes[3].key,
            RoutedTarget::RouteBack(request_hash),
            100,
            2,
            RoutedKind::Response { request_id: 9 },
            5,
            Bytes::from_static(b"pong"),
            &mut rng,
        );
        let (at, delivered) = run(&mut nodes, 3, response, now).unwrap();
        assert_eq!(at, 0);
        assert_eq!(delivered.body, Bytes::from_static(b"pong"));
        // Each entry is used once: a second response is dropped.
        let again = RoutedMessage::new(
            &nodes[3].key,
            RoutedTarget::RouteBack(request_hash),
            100,
            3,
            RoutedKind::Response { request_id: 9 },
            5,
            Bytes::new(),
            &mut rng,
        );
        assert_eq!(
            run(&mut nodes, 3, again, now),
            Err(DropReason::UnknownRouteBack)
        );
    }

    /// Too small a TTL, an unknown target and a changed body are dropped with their reason.
    #[test]
    fn drops_have_reasons() {
        let mut nodes = line();
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(0);
        let target = nodes[3].key.peer_id();
        let make = |ttl: u8, target: PeerId, rng: &mut StdRng, author: &SigningKey| {
            RoutedMessage::new(
                author,
                RoutedTarget::Peer(target),
                ttl,
                1,
                RoutedKind::DirectSend,
                5,
                Bytes::from_static(b"x"),
                rng,
            )
        };
        let short = make(1, target, &mut rng, &nodes[0].key);
        assert_eq!(
            run(&mut nodes, 0, short, now),
            Err(DropReason::TtlExhausted)
        );
        let unknown = make(100, key(99).peer_id(), &mut rng, &nodes[0].key);
        assert_eq!(run(&mut nodes, 0, unknown, now), Err(DropReason::NoRoute));
        let mut forged = make(100, target, &mut rng, &nodes[0].key);
        forged.body = Bytes::from_static(b"y");
        assert_eq!(
            run(&mut nodes, 0, forged, now),
            Err(DropReason::BadSignature)
        );
    }
}
