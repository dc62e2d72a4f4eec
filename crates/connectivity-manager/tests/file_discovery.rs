//! The discovery file: a good file, a bad one (the last good set stays, the error is
//! counted), and changes picked up by the manager's periodic re-read under a paused clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use connectivity_manager::{
    Action, Config, ConnectivityManager, FileError, FileSource, Metrics, NetworkKind,
};
use netcore::{NetworkAddress, PeerId};
use noise::{PeerRole, TrustedPeers};
use tokio_util::sync::CancellationToken;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "peerlane-connectivity-{test}-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("peers.toml")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn id(n: u8) -> PeerId {
    PeerId::new([n; 32])
}

/// A peers file listing peers `ns`, each a validator at `/memory/<n>` with key `[n; 32]`.
fn peers_file(ns: &[u8]) -> String {
    ns.iter()
        .map(|&n| {
            format!(
                "[peers.{}]\nrole = \"validator\"\naddresses = [\"/memory/{n}/noise-ik/{}/handshake/0\"]\n\n",
                id(n),
                hex_key(n)
            )
        })
        .collect()
}

fn hex_key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A good file is read; reading it again unchanged reports nothing new.
#[tokio::test]
async fn good_file_is_read_and_unchanged_file_reports_nothing() {
    let dir = TempDir::new("good");
    std::fs::write(dir.file(), peers_file(&[1, 2])).unwrap();
    let metrics = Metrics::default();
    let mut source = FileSource::new(dir.file(), metrics.clone());

    let peers = source.reload().await.expect("a new set");
    assert_eq!(peers.len(), 2);
    let peer = &peers[&id(1)];
    assert_eq!(peer.role, PeerRole::Validator);
    assert_eq!(
        peer.addresses,
        vec![
            format!("/memory/1/noise-ik/{}/handshake/0", hex_key(1))
                .parse::<NetworkAddress>()
                .unwrap()
        ]
    );
    assert!(source.reload().await.is_none(), "unchanged");
    assert_eq!(metrics.discovery_file_errors(FileError::Parse), 0);
}

/// A bad file (bad TOML, then a missing file) keeps the last good set and counts each error
/// by reason; a good file afterwards is picked up.
#[tokio::test]
async fn bad_file_keeps_the_last_good_set_and_counts_the_error() {
    let dir = TempDir::new("bad");
    std::fs::write(dir.file(), peers_file(&[1])).unwrap();
    let metrics = Metrics::default();
    let mut source = FileSource::new(dir.file(), metrics.clone());
    let good = source.reload().await.unwrap();

    std::fs::write(dir.file(), "[peers.not-a-peer-id]\nrole = 7\n").unwrap();
    assert!(source.reload().await.is_none());
    assert_eq!(metrics.discovery_file_errors(FileError::Parse), 1);
    assert_eq!(source.last_good(), Some(&good));
    assert!(matches!(
        source.read().await,
        Err(connectivity_manager::Error::ParsePeersFile { .. })
    ));

    std::fs::remove_file(dir.file()).unwrap();
    assert!(source.reload().await.is_none());
    assert_eq!(metrics.discovery_file_errors(FileError::Read), 1);
    assert_eq!(source.last_good(), Some(&good));

    std::fs::write(dir.file(), peers_file(&[1, 2])).unwrap();
    assert_eq!(source.reload().await.unwrap().len(), 2);
}

/// The manager reads the file at start and re-reads it every interval: a new peer is dialed
/// and trusted, a removed one has its dial cancelled, and a broken file changes nothing.
#[tokio::test(start_paused = true)]
async fn manager_rereads_the_file_and_picks_up_changes() {
    let dir = TempDir::new("reread");
    std::fs::write(dir.file(), peers_file(&[1])).unwrap();
    let mut config = Config::default();
    config
        .network(NetworkKind::Validator)
        .discovery_file(Some(dir.file()))
        .discovery_file_interval(Duration::from_secs(10));
    let trusted = TrustedPeers::new();
    let metrics = Metrics::default();
    let (manager, _handle, mut actions_rx) =
        ConnectivityManager::new(id(0xee), config, trusted.clone(), metrics.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manager.run(shutdown.clone()));
    let next = async |actions_rx: &mut tokio::sync::mpsc::Receiver<Action>| {
        tokio::time::timeout(Duration::from_secs(60), actions_rx.recv())
            .await
            .expect("an action within 60 s")
            .unwrap()
    };

    assert_eq!(next(&mut actions_rx).await.peer_id(), id(1));
    assert!(trusted.snapshot().contains_key(&id(1)));

    // Broken: the re-read at 10 s fails, is counted, and changes nothing. (We look at 15 s,
    // half-way between re-reads, so the test never races the manager's timer.)
    std::fs::write(dir.file(), "peers = 3").unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(metrics.discovery_file_errors(FileError::Parse), 1);
    assert!(
        actions_rx.try_recv().is_err(),
        "no action for a broken file"
    );
    assert!(trusted.snapshot().contains_key(&id(1)));

    // Fixed, with peer 2 instead of peer 1: picked up by the re-read at 20 s.
    std::fs::write(dir.file(), peers_file(&[2])).unwrap();
    let fixed_at = tokio::time::Instant::now();
    assert_eq!(
        next(&mut actions_rx).await,
        Action::CancelDial { peer_id: id(1) }
    );
    assert_eq!(next(&mut actions_rx).await.peer_id(), id(2));
    assert_eq!(fixed_at.elapsed(), Duration::from_secs(5));
    let trusted_now = trusted.snapshot();
    assert!(trusted_now.contains_key(&id(2)) && !trusted_now.contains_key(&id(1)));

    shutdown.cancel();
    task.await.unwrap();
}
