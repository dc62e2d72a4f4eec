//! store: peerlane's embedded on-disk store, and the persistent peer store on top of it.
//!
//! # How data flows
//!
//! ```text
//! peer manager / connectivity manager events ──► PeerStore::apply(events, now)
//!                                                   │ PeerTable (pure rules) → Changes
//!                                                   ▼
//! routing: pruned components ──► ComponentTable ──► Store: one redb write transaction per call
//!                                                   │ (BCS-encoded versioned records)
//!                                                   ▼
//!                                         <data_dir>/peerlane.redb
//! ```
//!
//! [`Store`] opens the one file (or memory, for tests), checks its schema version and runs
//! every write as one redb transaction committed with immediate durability: a write that
//! returned is on disk, a crash loses nothing committed, and a failed write applies nothing.
//! On top of it:
//!
//! - [`PeerStore`]: peers per network (addresses with scores, trust, first and last seen, the
//!   last connection, status, bans) and IP bans. The rules are in [`PeerTable`], pure and
//!   in memory: it takes [`PeerChange`]s and the time ([`UnixMillis`]) and returns
//!   [`Changes`], which [`PeerStore`] writes in one transaction. After a restart,
//!   [`PeerStore::redial_candidates`] says whom to dial first.
//! - [`ComponentTable`]: opaque byte records grouped by component id, indexed by the PeerIds
//!   they mention, for the routing layer's pruned edges.
//! - [`BlockTable`]: opaque blocks by height, consecutive, the oldest pruned first past
//!   [`BlockLimits`]: state sync's archive of the blocks older than its in-memory tier.
//!
//! redb's page cache is bounded at [`CACHE_SIZE`] per file, so that memory does not grow
//! with the file.
//!
//! Records that do not decode are counted, logged (rate-limited), skipped and dropped, never
//! a panic. Every table is bounded ([`PeerStoreConfig`], [`ComponentLimits`], [`BlockLimits`]).
//!
//! Types to read first: [`PeerStore`], [`PeerTable`], [`Store`].
//!
//! # Example
//!
//! What a node does with it: feed it connection events (in batches: one call is one commit),
//! and at the next start dial the redial list in order.
//!
//! ```
//! use netcore::{NetworkAddress, PeerId};
//! use store::{
//!     Direction, Network, PeerChange, PeerKey, PeerStore, PeerStoreConfig, Store, TrustLevel,
//!     UnixMillis,
//! };
//!
//! # fn main() -> Result<(), store::Error> {
//! let store = Store::in_memory()?; // `Store::open(data_dir)` on a node
//! let mut peers = PeerStore::open(store.clone(), PeerStoreConfig::default())?;
//! let seed = PeerKey::new(Network::Public, PeerId::new([1; 32]));
//! let address: NetworkAddress = "/ip4/192.0.2.1/tcp/6180".parse().unwrap();
//! let t0 = UnixMillis(1_700_000_000_000);
//! peers.apply(
//!     [
//!         PeerChange::Discovered {
//!             key: seed,
//!             addresses: vec![address.clone()],
//!             trust: TrustLevel::Configured,
//!         },
//!         PeerChange::Connected {
//!             key: seed,
//!             address: Some(address.clone()),
//!             direction: Direction::Outbound,
//!         },
//!     ],
//!     t0,
//! )?;
//! let an_hour_later = UnixMillis(t0.0 + 3_600_000);
//! peers.apply([PeerChange::Disconnected { key: seed }], an_hour_later)?;
//! drop(peers);
//!
//! // The next start: a long-lived outbound peer comes first.
//! let peers = PeerStore::open(store, PeerStoreConfig::default())?;
//! let redial = peers.redial_candidates(Network::Public, an_hour_later);
//! assert_eq!(redial[0].peer_id, seed.peer_id);
//! assert!(redial[0].long_lived);
//! assert_eq!(redial[0].addresses, [address]);
//! # Ok(())
//! # }
//! ```

mod blocks;
mod codec;
mod components;
mod db;
mod error;
mod metrics;
mod peer_config;
mod peer_record;
mod peer_store;
mod peer_table;
mod tables;
mod time;

pub use blocks::{BlockLimits, BlockSpan, BlockTable, MAX_BLOCK_BYTES, MAX_BLOCKS};
pub use components::{
    Component, ComponentLimits, ComponentTable, MAX_COMPONENT_BYTES, MAX_COMPONENTS,
};
pub use db::{CACHE_SIZE, FILE_NAME, SCHEMA_VERSION, Store};
pub use error::{Error, Result};
pub use metrics::{EvictionReason, Metrics, Table};
pub use peer_config::{
    DEFAULT_BAN, EXPIRE_AFTER, LONG_LIVED_MIN, MAX_ADDRESSES_PER_PEER, MAX_IP_BANS, MAX_LONG_LIVED,
    MAX_PEERS, PeerStoreConfig, SCORE_FAILURE, SCORE_MAX, SCORE_MIN, SCORE_SUCCESS,
};
pub use peer_record::{
    AddressEntry, Ban, BanReason, Direction, IpBanKey, LastConnection, Network, PeerKey,
    PeerRecord, PeerStatus, TrustLevel,
};
pub use peer_store::PeerStore;
pub use peer_table::{Changes, PeerChange, PeerTable, RedialCandidate};
pub use time::UnixMillis;
