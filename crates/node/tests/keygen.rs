//! `peerlane keygen` end to end: the key file, its mode, and what is printed.

use std::path::PathBuf;
use std::process::{Command, Output};

fn keygen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerlane"))
        .arg("keygen")
        .args(args)
        .output()
        .unwrap()
}

/// A fresh directory under the target's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("keygen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The file holds 64 hex digits that parse as an identity whose peer id and public key are
/// the ones printed; it is readable by its owner only; it is not overwritten without --force.
#[test]
fn keygen_writes_a_private_key_and_prints_its_ids() {
    let path = scratch("ok").join("node.key");
    let out = keygen(&["--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let identity = peerlane::Identity::from_hex(text.trim()).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!("peer id: {}", identity.peer_id())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&noise::keys::format_public_key(&identity.public_key())),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let again = keygen(&["--out", path.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("node.key"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    let forced = keygen(&["--out", path.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), text);
}

/// A file in a directory that does not exist is a one-line error, exit status 2.
#[test]
fn keygen_into_a_missing_directory_fails_with_status_2() {
    let path = scratch("missing").join("no/such/dir/node.key");
    let out = keygen(&["--out", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create key file"), "{stderr}");
}
