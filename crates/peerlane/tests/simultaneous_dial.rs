//! Two nodes dialing each other at the same moment end up with exactly one connection, the
//! one the simultaneous-dial rule predicts, on both sides, whatever order things happen in.

use netcore::ConnectionOrigin;
use peerlane::Error;
use test_support::{Msg, Net, Node, eventually, node, within};

/// Both dial at once; both dials succeed (with `racing`, a dial that starts after the other's
/// connection is registered may instead be refused as already connected). Once the replaced
/// connection has closed, each side has exactly one connection, and it is the one the larger
/// PeerId dialed: outbound on the larger side, inbound on the smaller. Messages flow both ways
/// over it.
async fn both_dial_at_once(net: Net, seeds: (u64, u64), first_polled_is_a: bool, racing: bool) {
    let (mut a, mut b) = (node(seeds.0, net), node(seeds.1, net));
    let (a_dials, b_dials) = (a.dial(&b), b.dial(&a));
    let (a_result, b_result) = if first_polled_is_a {
        tokio::join!(a_dials, b_dials)
    } else {
        let (b_result, a_result) = tokio::join!(b_dials, a_dials);
        (a_result, b_result)
    };
    // Whose dial went through: both, unless one was refused because the other's connection
    // was registered first.
    let went_through = |result: Result<(), Error>| match result {
        Ok(()) => true,
        Err(Error::AlreadyConnected { .. }) if racing => false,
        Err(err) => panic!("dial failed: {err:?}"),
    };
    let (a_dialed, b_dialed) = (went_through(a_result), went_through(b_result));
    assert!(a_dialed || b_dialed);
    // With both connections up, the larger PeerId's dial survives; otherwise the only one.
    let a_is_larger = a.network.peer_id() > b.network.peer_id();
    let survivor_dialed_by_a = if a_dialed && b_dialed {
        a_is_larger
    } else {
        a_dialed
    };
    let (a_origin, b_origin) = if survivor_dialed_by_a {
        (ConnectionOrigin::Outbound, ConnectionOrigin::Inbound)
    } else {
        (ConnectionOrigin::Inbound, ConnectionOrigin::Outbound)
    };
    for (me, other, origin) in [(&a, &b, a_origin), (&b, &a, b_origin)] {
        eventually("a single connection of the predicted origin", || {
            let metrics = me.network.metrics();
            let total = metrics.connections(ConnectionOrigin::Inbound)
                + metrics.connections(ConnectionOrigin::Outbound);
            total == 1
                && metrics.connections(origin) == 1
                && me
                    .network
                    .peers_and_metadata()
                    .metadata(other.as_peer())
                    .is_some_and(|metadata| metadata.origin == origin)
        })
        .await;
    }
    exchange(&mut a, &mut b).await;
    a.network.shutdown().await;
    b.network.shutdown().await;
}

async fn exchange(a: &mut Node, b: &mut Node) {
    a.client
        .send_to_peer(b.as_peer(), &Msg::Text("to b".into()))
        .unwrap();
    b.client
        .send_to_peer(a.as_peer(), &Msg::Text("to a".into()))
        .unwrap();
    assert_eq!(b.next_message().await.2, Msg::Text("to b".into()));
    assert_eq!(a.next_message().await.2, Msg::Text("to a".into()));
}

/// Every order on one thread: either node may have the larger PeerId, and either dial may be
/// polled first.
#[tokio::test(start_paused = true)]
async fn simultaneous_dial_keeps_one_connection_in_every_order() {
    let larger_first = if test_support::peer_id_from_seed(1) > test_support::peer_id_from_seed(2) {
        (1, 2)
    } else {
        (2, 1)
    };
    let smaller_first = (larger_first.1, larger_first.0);
    for seeds in [larger_first, smaller_first] {
        for first_polled_is_a in [true, false] {
            within(
                "simultaneous dial",
                both_dial_at_once(Net::Memory, seeds, first_polled_is_a, false),
            )
            .await;
        }
    }
}

/// The same on a multi-threaded runtime, where the two sides' set-ups really race, repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_dial_keeps_one_connection_when_racing_on_threads() {
    for round in 0..20 {
        let seeds = if round % 2 == 0 { (1, 2) } else { (2, 1) };
        within(
            "simultaneous dial",
            both_dial_at_once(Net::Memory, seeds, round % 4 < 2, true),
        )
        .await;
    }
}

/// The same over real TCP with Noise.
#[tokio::test]
async fn simultaneous_dial_keeps_one_connection_over_tcp() {
    both_dial_at_once(Net::Tcp, (1, 2), true, true).await;
    both_dial_at_once(Net::Tcp, (2, 1), false, true).await;
}
