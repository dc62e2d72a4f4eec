//! [`resolve_simultaneous_dial`]: which of two connections to the same peer survives. Pure.

use netcore::{ConnectionOrigin, PeerId};

/// Which of two connections to the same peer survives; see [`resolve_simultaneous_dial`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Keep the connection we already had and close the new one.
    Existing,
    /// Close the connection we already had and keep the new one.
    New,
}

/// Decides which connection survives when a second connection to a peer completes while the
/// first is still up (both sides dialed each other, or a peer reconnected before we noticed it
/// left). Pure, so that both ends of a connection, which see the two connections in different
/// orders, can be shown to agree.
///
/// - Same origin (two inbound or two outbound): keep the new one. The remote (or we) opened it
///   last, so the old one is most likely dead or about to be.
/// - Mixed origins: keep the connection dialed by the larger PeerId. If ours is larger, keep
///   our outbound connection; otherwise keep their inbound one. Both ends apply the same rule
///   to the same pair of connections, so they keep the same one whatever the arrival order.
///
/// `own == remote` cannot happen (Noise refuses a self-dial); it resolves like `own < remote`.
pub(crate) fn resolve_simultaneous_dial(
    own: PeerId,
    remote: PeerId,
    existing: ConnectionOrigin,
    new: ConnectionOrigin,
) -> Keep {
    if existing == new {
        return Keep::New;
    }
    let keep_origin = if own > remote {
        ConnectionOrigin::Outbound
    } else {
        ConnectionOrigin::Inbound
    };
    if new == keep_origin {
        Keep::New
    } else {
        Keep::Existing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case, spelled out: same origin keeps the new connection; mixed origins keep the
    /// connection the larger PeerId dialed.
    #[test]
    fn simultaneous_dial_resolution_table() {
        use ConnectionOrigin::{Inbound, Outbound};
        let (small, large) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let table = [
            // (own, remote, existing, new, keep)
            (large, small, Inbound, Inbound, Keep::New),
            (large, small, Outbound, Outbound, Keep::New),
            (large, small, Inbound, Outbound, Keep::New),
            (large, small, Outbound, Inbound, Keep::Existing),
            (small, large, Inbound, Inbound, Keep::New),
            (small, large, Outbound, Outbound, Keep::New),
            (small, large, Inbound, Outbound, Keep::Existing),
            (small, large, Outbound, Inbound, Keep::New),
        ];
        for (own, remote, existing, new, keep) in table {
            assert_eq!(
                resolve_simultaneous_dial(own, remote, existing, new),
                keep,
                "own {own} remote {remote} existing {existing} new {new}"
            );
        }
    }

    /// Both ends agree. Take the two connections c1 (dialed by `dialer1`) and c2 (dialed by
    /// `dialer2`) between a and b; each end sees them in either order, each with its own origin.
    /// Whatever the orders, a and b keep the same connection, and with mixed dialers it is the
    /// one the larger PeerId dialed.
    #[test]
    fn both_ends_keep_the_same_connection_in_every_order() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        for (x, y) in [(a, b), (b, a)] {
            for dialer1 in [x, y] {
                for dialer2 in [x, y] {
                    let origin = |me: PeerId, dialer: PeerId| {
                        if me == dialer {
                            ConnectionOrigin::Outbound
                        } else {
                            ConnectionOrigin::Inbound
                        }
                    };
                    // Which connection (1 or 2) `me` keeps, given the order it sees them in.
                    let kept = |me: PeerId, other: PeerId, first_is_1: bool| {
                        let (first, second) = if first_is_1 {
                            (dialer1, dialer2)
                        } else {
                            (dialer2, dialer1)
                        };
                        let keep = resolve_simultaneous_dial(
                            me,
                            other,
                            origin(me, first),
                            origin(me, second),
                        );
                        match (keep, first_is_1) {
                            (Keep::Existing, true) | (Keep::New, false) => 1,
                            (Keep::Existing, false) | (Keep::New, true) => 2,
                        }
                    };
                    for x_order in [true, false] {
                        for y_order in [true, false] {
                            let (kept_x, kept_y) = (kept(x, y, x_order), kept(y, x, y_order));
                            if dialer1 != dialer2 {
                                assert_eq!(kept_x, kept_y, "the two ends disagree");
                                let winner = if kept_x == 1 { dialer1 } else { dialer2 };
                                assert_eq!(winner, x.max(y), "the larger PeerId's dial wins");
                            } else if x_order == y_order {
                                // Same dialer twice: both keep whichever they saw last; when
                                // they saw them in the same order, that is the same one.
                                assert_eq!(kept_x, kept_y);
                            }
                        }
                    }
                }
            }
        }
    }
}
