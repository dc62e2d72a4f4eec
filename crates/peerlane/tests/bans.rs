//! The ban list: banning disconnects a peer, refuses its redials (counted) and fails our dials
//! to it before connecting; unbanning lets it back.

use peerlane::{Error, RefusalReason};
use test_support::{Net, eventually, node};

/// Over memsocket: B is banned at A, its redial is refused and counted, A's dial to B fails
/// with `Banned`; after the unban B connects again.
#[tokio::test(start_paused = true)]
async fn a_banned_peer_is_refused_until_unbanned() {
    let (a, b) = (node(1, Net::Memory), node(2, Net::Memory));
    let (a_id, b_id) = (a.network.peer_id(), b.network.peer_id());
    b.dial(&a).await.unwrap();
    assert!(a.network.is_connected(b_id));

    assert!(a.network.ban(b_id).await.unwrap());
    assert!(!a.network.is_connected(b_id));
    assert_eq!(a.network.banned(), vec![b_id]);
    // A second ban changes nothing.
    assert!(!a.network.ban(b_id).await.unwrap());
    eventually("B sees A gone", || !b.network.is_connected(a_id)).await;

    // B redials: set up, then refused by A's peer manager.
    let _ = b.dial(&a).await;
    eventually("the redial is refused", || {
        a.network.metrics().refused(RefusalReason::Banned) == 1
    })
    .await;
    assert!(!a.network.is_connected(b_id));
    assert!(
        a.metrics_text()
            .contains(r#"peerlane_connections_refused_total{network="public",reason="banned"} 1"#),
        "{}",
        a.metrics_text()
    );

    // A's own dial fails before connecting.
    let err = a.dial(&b).await.unwrap_err();
    assert!(matches!(err, Error::Banned { .. }), "{err:?}");
    assert_eq!(a.network.metrics().refused(RefusalReason::Banned), 1);

    assert!(a.network.unban(b_id));
    assert!(!a.network.unban(b_id));
    assert!(a.network.banned().is_empty());
    eventually("B sees A gone", || !b.network.is_connected(a_id)).await;
    b.dial(&a).await.unwrap();
    eventually("B is back", || a.network.is_connected(b_id)).await;

    a.network.shutdown().await;
    b.network.shutdown().await;
}
