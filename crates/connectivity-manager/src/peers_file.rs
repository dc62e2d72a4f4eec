//! [`FileSource`]: the discovery file, read from disk on every reload, with the last good set
//! kept when a read fails. The IO side of discovery; merging the sources is
//! [`DiscoveredSet`](crate::DiscoveredSet)'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use netcore::PeerId;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::discovery::DiscoveredPeer;
use crate::error::Error;
use crate::metrics::{FileError, Metrics};

/// The [`DiscoverySource::File`](crate::DiscoverySource::File) source: a TOML file read again on every
/// [`reload`](Self::reload).
///
/// A read or parse error is logged (`warn`), counted
/// (`peerlane_connectivity_discovery_file_errors_total{reason}`) and otherwise ignored: the
/// last good set stays in force, so a half-written file never empties the trusted set.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    last_good: Option<HashMap<PeerId, DiscoveredPeer>>,
    metrics: Metrics,
}

impl FileSource {
    /// A source for the file at `path`. Nothing is read yet.
    pub fn new(path: impl Into<PathBuf>, metrics: Metrics) -> Self {
        Self {
            path: path.into(),
            last_good: None,
            metrics,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file once, without touching the last good set or the metrics.
    ///
    /// Cancel safe: dropping the future abandons the read.
    pub async fn read(&self) -> Result<HashMap<PeerId, DiscoveredPeer>, Error> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| Error::ReadPeersFile {
                path: self.path.clone(),
                source,
            })?;
        parse_peers_file(&text).map_err(|source| Error::ParsePeersFile {
            path: self.path.clone(),
            source,
        })
    }

    /// Reads the file and returns its peers if they parsed and differ from the last good set,
    /// which they then become. Returns `None` when the file is unchanged or bad (logged and
    /// counted; the last good set stays).
    ///
    /// Cancel safe: dropping the future abandons the read and changes nothing.
    pub async fn reload(&mut self) -> Option<HashMap<PeerId, DiscoveredPeer>> {
        match self.read().await {
            Ok(peers) if self.last_good.as_ref() == Some(&peers) => None,
            Ok(peers) => {
                debug!(path = %self.path.display(), peers = peers.len(), "discovery file read");
                self.last_good = Some(peers.clone());
                Some(peers)
            }
            Err(error) => {
                let reason = match error {
                    Error::ParsePeersFile { .. } => FileError::Parse,
                    _ => FileError::Read,
                };
                self.metrics.record_file_error(reason);
                warn!(
                    error = %error,
                    cause = %source_text(&error),
                    kept_peers = self.last_good.as_ref().map_or(0, HashMap::len),
                    "discovery file ignored; keeping the last good set"
                );
                None
            }
        }
    }

    /// The peers of the last good read, if any read succeeded.
    pub fn last_good(&self) -> Option<&HashMap<PeerId, DiscoveredPeer>> {
        self.last_good.as_ref()
    }
}

/// The discovery file's top level: `[peers.<PeerId>]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peers: HashMap<PeerId, DiscoveredPeer>,
}

fn parse_peers_file(text: &str) -> Result<HashMap<PeerId, DiscoveredPeer>, toml::de::Error> {
    toml::from_str::<PeersFile>(text).map(|file| file.peers)
}

/// The error's cause, for the log line (the error's own text names only the file).
fn source_text(error: &Error) -> String {
    std::error::Error::source(error).map_or_else(String::new, ToString::to_string)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use noise::{PeerRole, PublicKey};

    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from([byte; 32])
    }

    /// The file format parses, with keys and roles, and an unknown role or field is an
    /// error.
    #[test]
    fn peers_file_parses_and_rejects_unknown_roles_and_fields() {
        let id = "ab".repeat(32);
        let text = format!(
            "[peers.{id}]\nrole = \"preferred_upstream\"\naddresses = [\"/ip4/10.0.0.1/tcp/6180\"]\n\
             keys = [\"{}\"]\n",
            "01".repeat(32)
        );
        let peers = parse_peers_file(&text).unwrap();
        let parsed = &peers[&PeerId::new([0xab; 32])];
        assert_eq!(parsed.role, PeerRole::PreferredUpstream);
        assert_eq!(
            parsed.addresses,
            vec!["/ip4/10.0.0.1/tcp/6180".parse().unwrap()]
        );
        assert_eq!(parsed.keys, HashSet::from([key(1)]));

        assert!(parse_peers_file("").unwrap().is_empty());
        assert!(parse_peers_file(&format!("[peers.{id}]\nrole = \"boss\"\n")).is_err());
        assert!(parse_peers_file(&format!("[peers.{id}]\nrole = \"known\"\nport = 1\n")).is_err());
        assert!(parse_peers_file("[peers.abcd]\nrole = \"known\"\n").is_err());
    }
}
