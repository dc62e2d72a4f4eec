//! Every entry of the fuzz corpora (`fuzz/corpus/<target>/`) through the same checks the
//! `cargo fuzz` targets run (`fuzz/harness.rs`), on the stable toolchain: an input that once
//! found a bug, or that reaches a corner of a decoder, stays covered by `cargo test`.

use std::fs;
use std::path::Path;

#[path = "../fuzz/harness.rs"]
mod harness;

#[test]
fn every_corpus_entry_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, target) in harness::TARGETS {
        let dir = root.join(name);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "{}: empty corpus", dir.display());
        for path in entries {
            let data = fs::read(&path).unwrap();
            // A panic names the entry, so that it can be replayed with `cargo fuzz run`.
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
        }
    }
}
