//! [`PeerStoreConfig`] and the score constants of the peer store, with where each default
//! comes from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Lowest address score. litep2p's bounds: an address at the floor failed again and again.
/// Such an address is dropped (except a configured peer's), as litep2p stops dialing an
/// address that failed at the address level.
pub const SCORE_MIN: i32 = -100;
/// Highest address score: litep2p's bound.
pub const SCORE_MAX: i32 = 100;
/// Added to an address's score when a connection through it is set up. Ours: litep2p jumps
/// straight to +100; five successes to the top keeps a steady address above a lucky one.
pub const SCORE_SUCCESS: i32 = 20;
/// Taken from an address's score when a dial of it fails. Ours: a failure weighs twice a
/// success, so that a dead address sinks from 0 to the floor in three failures while one
/// that worked for a long time survives a short outage.
pub const SCORE_FAILURE: i32 = -40;

/// Peers kept per network and in all: the brief's bound, ten times rust-libp2p's 1,000.
pub const MAX_PEERS: usize = 10_000;
/// Addresses kept per peer. Ours: litep2p keeps 64; a peer listens on one or two, and gossip
/// that sends more only fills memory.
pub const MAX_ADDRESSES_PER_PEER: usize = 16;
/// A peer not heard of for this long is dropped: NEAR's 7 days.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The length of a ban when the caller has no better idea: NEAR's 3 hours.
pub const DEFAULT_BAN: Duration = Duration::from_secs(3 * 3600);
/// A connection that lasted this long is "long-lived": NEAR's 10 minutes.
pub const LONG_LIVED_MIN: Duration = Duration::from_secs(10 * 60);
/// Long-lived outbound peers redialed first at start: NEAR's 40.
pub const MAX_LONG_LIVED: usize = 40;
/// IP bans kept. Ours: operators ban a handful; the bound only guards the file.
pub const MAX_IP_BANS: usize = 1_000;

/// Settings of the peer store. Every field has a default; unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerStoreConfig {
    /// Peers kept. At the bound a new peer evicts the lowest-ranked stored one (indirect before
    /// direct, then lowest score, then least recently seen; configured and connected peers go
    /// last, configured never), or is refused if every stored peer ranks higher.
    pub max_peers: usize,
    /// Addresses kept per peer. A new address replaces the worst one only if that one's score
    /// is at most 0; otherwise it is not kept.
    pub max_addresses_per_peer: usize,
    /// A peer not heard of for this long is dropped by `prune`, unless it is configured,
    /// connected or banned.
    #[serde(rename = "expire_after_ms", with = "netcore::serde_duration_ms")]
    pub expire_after: Duration,
    /// The length of a ban made with `PeerStore::ban_for_default`.
    #[serde(rename = "default_ban_ms", with = "netcore::serde_duration_ms")]
    pub default_ban: Duration,
    /// An outbound connection that lasted at least this long puts its peer at the head of the
    /// redial list.
    #[serde(rename = "long_lived_min_ms", with = "netcore::serde_duration_ms")]
    pub long_lived_min: Duration,
    /// How many long-lived outbound peers head the redial list.
    pub max_long_lived: usize,
    /// IP bans kept; at the bound a new ban replaces the one that ends first.
    pub max_ip_bans: usize,
}

impl Default for PeerStoreConfig {
    fn default() -> Self {
        Self {
            max_peers: MAX_PEERS,
            max_addresses_per_peer: MAX_ADDRESSES_PER_PEER,
            expire_after: EXPIRE_AFTER,
            default_ban: DEFAULT_BAN,
            long_lived_min: LONG_LIVED_MIN,
            max_long_lived: MAX_LONG_LIVED,
            max_ip_bans: MAX_IP_BANS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_read_from_an_empty_section_and_unknown_fields_are_refused() {
        let config: PeerStoreConfig = toml::from_str("").unwrap();
        assert_eq!(config, PeerStoreConfig::default());
        let config: PeerStoreConfig =
            toml::from_str("max_peers = 5\nexpire_after_ms = 60000").unwrap();
        assert_eq!(config.max_peers, 5);
        assert_eq!(config.expire_after, Duration::from_secs(60));
        assert!(toml::from_str::<PeerStoreConfig>("max_peer = 5").is_err());
        let json = serde_json::to_string(&PeerStoreConfig::default()).unwrap();
        assert!(json.contains("\"default_ban_ms\":10800000"), "{json}");
    }

    /// The example in docs/configuration.md parses and is the defaults.
    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        let doc = include_str!("../../../docs/configuration.md");
        let marker = doc
            .find("<!-- peer_store example")
            .expect("the example's marker");
        let start =
            marker + doc[marker..].find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("end of the block");
        let config: PeerStoreConfig = toml::from_str(&doc[start..end]).unwrap();
        assert_eq!(config, PeerStoreConfig::default());
    }
}
