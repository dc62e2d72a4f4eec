//! Crash safety: a child process commits updates in a loop and prints each sequence number
//! after its commit returns; the parent kills it with SIGKILL mid-loop, reopens the store and
//! checks that every printed update is there. The child is this test binary run again with
//! `--ignored --exact crash_child` and the data directory in an environment variable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netcore::{NetworkAddress, PeerId};
use store::{
    ComponentTable, Network, PeerChange, PeerKey, PeerStore, PeerStoreConfig, Store, TrustLevel,
    UnixMillis,
};

const DIR_ENV: &str = "PEERLANE_STORE_CRASH_DIR";
const FIRST_SEQ_ENV: &str = "PEERLANE_STORE_CRASH_FIRST_SEQ";
/// Committed lines the parent waits for before each kill.
const LINES_BEFORE_KILL: u64 = 60;
const ROUNDS: u64 = 3;

fn peer(seq: u64) -> PeerKey {
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    PeerKey::new(Network::Public, PeerId::new(bytes))
}

fn addr() -> NetworkAddress {
    "/ip4/10.0.0.1/tcp/6180".parse().unwrap()
}

/// The child: commits two transactions per sequence number (a peer, then a component that
/// names it) and prints `committed N` after both returned. Ends by itself after 30 s in case
/// the parent is gone.
#[test]
#[ignore = "the child of killed_writer_loses_no_committed_update"]
fn crash_child() {
    // Run by hand (`--include-ignored`) it has nothing to do: only its parent sets the
    // directory.
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let first: u64 = std::env::var(FIRST_SEQ_ENV).unwrap().parse().unwrap();
    let store = Store::open(dir).unwrap();
    let mut peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
    let components = ComponentTable::new(store);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = first;
    while Instant::now() < deadline {
        let event = PeerChange::Discovered {
            key: peer(seq),
            addresses: vec![addr()],
            trust: TrustLevel::Indirect,
        };
        peers
            .apply([event], UnixMillis(1_700_000_000_000 + seq))
            .unwrap();
        components
            .put_component(seq, &[peer(seq).peer_id], &[seq.to_be_bytes().to_vec()])
            .unwrap();
        println!("committed {seq}");
        seq += 1;
    }
}

#[test]
fn killed_writer_loses_no_committed_update() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut committed = Vec::new();
    for round in 0..ROUNDS {
        let first = round * 1_000_000;
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(FIRST_SEQ_ENV, first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut this_round = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(seq) = line.strip_prefix("committed ") {
                committed.push(seq.parse::<u64>().unwrap());
                this_round += 1;
                if this_round == LINES_BEFORE_KILL {
                    break;
                }
            }
        }
        // SIGKILL on unix: no destructor, no flush, mid-commit most likely.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            this_round, LINES_BEFORE_KILL,
            "the child stopped early in round {round}"
        );

        // The file opens, and holds every update the child printed.
        let store = Store::open(dir.path()).unwrap();
        let peers = PeerStore::open(store.clone(), PeerStoreConfig::default()).unwrap();
        let components = ComponentTable::new(store);
        for &seq in &committed {
            assert!(
                peers.get(Network::Public, peer(seq).peer_id).is_some(),
                "peer {seq} was committed and is lost"
            );
            assert!(
                components
                    .components_of(&peer(seq).peer_id)
                    .unwrap()
                    .contains(&seq),
                "component {seq} was committed and is lost"
            );
        }
        assert!(peers.len() >= committed.len());
    }
}
