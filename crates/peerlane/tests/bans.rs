//! The ban list: banning disconnects a peer, Noise refuses its redials (counted, before any
//! Diffie-Hellman) and our dials to it fail before connecting; unbanning lets it back.

use peerlane::{Error, RefusalReason};
use test_support::{Net, eventually, node};

/// Over memsocket: B is banned at A, Noise refuses its redial and counts it, A's dial to B fails
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

    // B redials: Noise refuses its handshake at A, so the peer manager never sees it.
    let _ = b.dial(&a).await;
    eventually("the redial is refused", || {
        a.metrics_text().contains(
            r#"peerlane_noise_handshakes_total{network="public",side="responder",result="banned"} 1"#,
        )
    })
    .await;
    assert!(!a.network.is_connected(b_id));
    assert_eq!(a.network.metrics().refused(RefusalReason::Banned), 0);
    assert!(
        a.metrics_text().contains(
            r#"peerlane_connection_setup_failures_total{network="public",origin="inbound",reason="banned"} 1"#
        ),
        "{}",
        a.metrics_text()
    );

    // A's own dial fails before connecting.
    let err = a.dial(&b).await.unwrap_err();
    assert!(matches!(err, Error::Banned { .. }), "{err:?}");
    assert_eq!(a.network.metrics().refused(RefusalReason::Banned), 0);

    assert!(a.network.unban(b_id));
    assert!(!a.network.unban(b_id));
    assert!(a.network.banned().is_empty());
    eventually("B sees A gone", || !b.network.is_connected(a_id)).await;
    b.dial(&a).await.unwrap();
    eventually("B is back", || a.network.is_connected(b_id)).await;

    a.network.shutdown().await;
    b.network.shutdown().await;
}

/// The value of the counter line of `text` that starts with `series`.
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Over TCP with real Noise: Noise itself refuses a banned peer's handshake at the responder,
/// counted as `banned`, before any Diffie-Hellman of the responder's.
#[tokio::test]
async fn noise_refuses_a_banned_peer_before_any_diffie_hellman() {
    const DH: &str = r#"peerlane_noise_dh_operations_total{network="public"}"#;
    const BANNED: &str =
        r#"peerlane_noise_handshakes_total{network="public",side="responder",result="banned"}"#;
    let (a, b) = (node(1, Net::Tcp), node(2, Net::Tcp));
    let b_id = b.network.peer_id();
    assert!(a.network.ban(b_id).await.unwrap());
    let dh_before = counter(&a.metrics_text(), DH);

    let err = b.dial(&a).await.unwrap_err();
    assert!(
        matches!(err, Error::Noise(noise::Error::Rejected { .. })),
        "{err:?}"
    );
    eventually("A counts the banned handshake", || {
        a.metrics_text().contains(&format!("{BANNED} 1"))
    })
    .await;
    assert_eq!(counter(&a.metrics_text(), DH), dh_before);
    assert!(!a.network.is_connected(b_id));

    a.network.shutdown().await;
    b.network.shutdown().await;
}
