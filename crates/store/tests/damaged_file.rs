//! A damaged file: truncated, or with bytes overwritten. Opening it is an error or a store
//! that reads what survived, never a panic.

use std::time::Duration;

use netcore::PeerId;
use store::{
    Network, PeerChange, PeerKey, PeerStore, PeerStoreConfig, Store, TrustLevel, UnixMillis,
};

fn write_some_peers(dir: &std::path::Path) {
    let mut peers = PeerStore::open(Store::open(dir).unwrap(), PeerStoreConfig::default()).unwrap();
    for batch in 0..4u64 {
        let events = (batch * 500..(batch + 1) * 500).map(|n| {
            let mut bytes = [0; 32];
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            PeerChange::Discovered {
                key: PeerKey::new(Network::Public, PeerId::new(bytes)),
                addresses: vec!["/ip4/10.0.0.1/tcp/6180".parse().unwrap()],
                trust: TrustLevel::Indirect,
            }
        });
        let now = UnixMillis(1_700_000_000_000).saturating_add(Duration::from_secs(batch));
        peers.apply(events, now).unwrap();
    }
}

/// Opens the damaged file and reads all of it: the number of peers read, or the error. The
/// integrity check at open must catch the damage: redb never reaches a damaged page (which
/// would make it panic, caught by the store as `Error::Damaged`).
fn open_and_read(dir: &std::path::Path) -> Result<usize, store::Error> {
    let result = Store::open(dir)
        .and_then(|store| PeerStore::open(store, PeerStoreConfig::default()))
        .map(|peers| peers.len());
    assert!(
        !matches!(result, Err(store::Error::Damaged { .. })),
        "{result:?}"
    );
    result
}

#[test]
fn truncated_files_do_not_panic() {
    for keep in [0.0, 0.1, 0.5, 0.9] {
        let dir = tempfile::tempdir().unwrap();
        write_some_peers(dir.path());
        let path = dir.path().join(store::FILE_NAME);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len((len as f64 * keep) as u64).unwrap();
        drop(file);
        // An empty file is a new store; a cut one is refused.
        match open_and_read(dir.path()) {
            Ok(peers) => assert_eq!((keep, peers), (0.0, 0)),
            Err(err) => assert!(matches!(err, store::Error::Database(_)), "{err:?}"),
        }
    }
}

#[test]
fn overwritten_bytes_do_not_panic() {
    // Deterministic damage: runs of 0xFF at spread-out offsets, one run per file.
    let mut refused = 0;
    for step in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        write_some_peers(dir.path());
        let path = dir.path().join(store::FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (bytes.len() as u64 * step / 13) as usize;
        let end = (at + 64).min(bytes.len());
        bytes[at..end].fill(0xFF);
        std::fs::write(&path, bytes).unwrap();
        // Damage in unused space is harmless; in use, it is a typed error.
        match open_and_read(dir.path()) {
            Ok(peers) => assert_eq!(peers, 2_000),
            Err(err) => {
                assert!(matches!(err, store::Error::Database(_)), "{err:?}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "no damage hit a page in use: the test checks nothing"
    );
}
