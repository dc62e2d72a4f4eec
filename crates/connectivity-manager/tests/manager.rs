//! The [`ConnectivityManager`] actor end to end: channels in and out, tokio's paused clock
//! (so a 2 s backoff takes no real time), a seeded rng.

use std::collections::HashMap;
use std::time::Duration;

use connectivity_manager::{
    Action, ActionKind, Config, ConnectivityHandle, ConnectivityManager, DialFailure,
    DiscoveredPeer, ExitReason, Metrics, NetworkKind, PeerEvent,
};
use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::{PeerRole, PublicKey, TrustedPeers};
use test_support::within_for;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const LOCAL: PeerId = PeerId::new([0xee; 32]);
const JITTER: Duration = Duration::from_millis(100);

fn id(n: u8) -> PeerId {
    PeerId::new([n; 32])
}

fn validator(n: u8) -> (PeerId, DiscoveredPeer) {
    let peer = DiscoveredPeer::new(
        PeerRole::Validator,
        [NetworkAddress::memory(u16::from(n))],
        [PublicKey::from([n; 32])],
    );
    (id(n), peer)
}

fn dial(n: u8) -> Action {
    Action::Dial {
        peer_id: id(n),
        addr: NetworkAddress::memory(u16::from(n)),
    }
}

/// A running manager on a validator network fed by an on-chain watch channel.
struct Running {
    on_chain_tx: watch::Sender<HashMap<PeerId, DiscoveredPeer>>,
    handle: ConnectivityHandle,
    actions_rx: mpsc::Receiver<Action>,
    trusted: TrustedPeers,
    metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<ExitReason>,
}

fn start(configure: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::default();
    config.network(NetworkKind::Validator);
    configure(&mut config);
    let trusted = TrustedPeers::new();
    let metrics = Metrics::default();
    let (mut manager, handle, actions_rx) =
        ConnectivityManager::new(LOCAL, config, trusted.clone(), metrics.clone()).unwrap();
    let (on_chain_tx, on_chain_rx) = watch::channel(HashMap::new());
    manager.on_chain_updates(on_chain_rx).rng_seed(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manager.run(shutdown.clone()));
    Running {
        on_chain_tx,
        handle,
        actions_rx,
        trusted,
        metrics,
        shutdown,
        task,
    }
}

/// The next action, or a panic if none comes within 10 virtual minutes.
async fn next_action(actions_rx: &mut mpsc::Receiver<Action>) -> Action {
    within_for("an action", Duration::from_secs(600), actions_rx.recv())
        .await
        .expect("the manager is running")
}

/// Asserts that no action comes within `within`.
async fn no_action(actions_rx: &mut mpsc::Receiver<Action>, within: Duration) {
    if let Ok(action) = tokio::time::timeout(within, actions_rx.recv()).await {
        panic!("unexpected action {action:?}");
    }
}

/// An on-chain update with a new validator leads to a dial of it, and the validator becomes
/// trusted for the Noise layer.
#[tokio::test(start_paused = true)]
async fn discovery_update_leads_to_a_dial() {
    let mut running = start(|_| {});
    no_action(&mut running.actions_rx, Duration::from_secs(30)).await;

    running
        .on_chain_tx
        .send(HashMap::from([validator(1)]))
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    assert!(running.trusted.snapshot().contains_key(&id(1)));

    running.shutdown.cancel();
    assert_eq!(running.task.await.unwrap(), ExitReason::Shutdown);
}

/// A failed dial is retried after the 2 s backoff (plus at most 100 ms), not before.
#[tokio::test(start_paused = true)]
async fn failed_dial_is_redialed_after_the_backoff() {
    let mut running = start(|_| {});
    running
        .on_chain_tx
        .send(HashMap::from([validator(1)]))
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));

    let failed_at = Instant::now();
    running
        .handle
        .send(PeerEvent::DialResult {
            peer_id: id(1),
            result: Err(DialFailure::Unreachable),
            detail: None,
        })
        .await
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_secs(2) + JITTER,
        "redialed after {waited:?}"
    );
    assert_eq!(running.metrics.backoffs(), 1);
}

/// A peer whose connection closes is redialed after the base backoff.
#[tokio::test(start_paused = true)]
async fn disconnected_peer_is_redialed() {
    let mut running = start(|_| {});
    running
        .on_chain_tx
        .send(HashMap::from([validator(1)]))
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    for event in [
        PeerEvent::DialResult {
            peer_id: id(1),
            result: Ok(()),
            detail: None,
        },
        PeerEvent::Connected {
            peer_id: id(1),
            origin: ConnectionOrigin::Outbound,
        },
    ] {
        running.handle.send(event).await.unwrap();
    }
    no_action(&mut running.actions_rx, Duration::from_secs(60)).await;

    let closed_at = Instant::now();
    running
        .handle
        .send(PeerEvent::Disconnected { peer_id: id(1) })
        .await
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    assert!(closed_at.elapsed() <= Duration::from_secs(2) + JITTER);
}

/// A validator removed from the on-chain set loses its connection (stale) and its trust.
#[tokio::test(start_paused = true)]
async fn removed_validator_is_disconnected_and_untrusted() {
    let mut running = start(|_| {});
    running
        .on_chain_tx
        .send(HashMap::from([validator(1)]))
        .unwrap();
    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    running
        .handle
        .send(PeerEvent::Connected {
            peer_id: id(1),
            origin: ConnectionOrigin::Inbound,
        })
        .await
        .unwrap();

    running.on_chain_tx.send(HashMap::new()).unwrap();
    assert_eq!(
        next_action(&mut running.actions_rx).await,
        Action::CancelDial { peer_id: id(1) }
    );
    assert!(matches!(
        next_action(&mut running.actions_rx).await,
        Action::Disconnect { peer_id, .. } if peer_id == id(1)
    ));
    assert!(running.trusted.snapshot().is_empty());
}

/// With a full action queue the manager drops what does not fit, counts it, and sends it at
/// the next connectivity check (5 s), without spinning in between.
#[tokio::test(start_paused = true)]
async fn full_action_queue_drops_and_retries_at_the_next_check() {
    let mut running = start(|config| {
        config.actions_capacity(1);
    });
    let started = Instant::now();
    running
        .on_chain_tx
        .send(HashMap::from([validator(1), validator(2)]))
        .unwrap();
    // Let the manager poll while nobody reads: one dial fits, the other is dropped.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(running.metrics.actions_dropped(ActionKind::Dial), 1);

    assert_eq!(next_action(&mut running.actions_rx).await, dial(1));
    assert_eq!(next_action(&mut running.actions_rx).await, dial(2));
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(running.metrics.actions_dropped(ActionKind::Dial), 1);
}

/// The manager stops when every handle is dropped, and when the action receiver is dropped.
#[tokio::test(start_paused = true)]
async fn manager_stops_when_the_facade_goes_away() {
    let running = start(|_| {});
    drop(running.handle);
    assert_eq!(running.task.await.unwrap(), ExitReason::HandlesDropped);

    let running = start(|_| {});
    drop(running.actions_rx);
    // The manager notices at its next send.
    running
        .on_chain_tx
        .send(HashMap::from([validator(1)]))
        .unwrap();
    assert_eq!(
        running.task.await.unwrap(),
        ExitReason::ActionsReceiverDropped
    );
    assert!(running.handle.is_closed());
}
