//! peerlane-state-sync: block state sync over the peerlane facade. A node serves its
//! committed blocks to peers, catches up from peers that are ahead, and follows new commits
//! from their announcements.
//!
//! # How it works
//!
//! ```text
//! consensus ── StoreHandle::append ──► store ── height watch ──► StateSync: Announce to all peers
//!                                        ▲                        (StateSyncDirectSend, 3)
//! peer's Announce { height } ──► StateSync: peer ahead? ── GetBlocks { start, end } ──► peer
//!                                        │                  (StorageServiceRpc, 8)
//!                                        └── check heights and parent links, append ◄── Blocks
//! peer's GetBlocks ──► StateSync ── at most max_blocks_per_response / max_response_bytes ──► Blocks
//! ```
//!
//! 1. A [`StoreHandle`] holds the node's newest committed [`Block`]s in memory, as many as
//!    its [`Retention`] allows (1,000 blocks and 8 MiB by default). The node's consensus
//!    appends its commits with [`StoreHandle::append`], which checks that each block is the
//!    next height and names the last block as its parent. With a [`BlockArchive`] (the
//!    node implements it on its on-disk store; [`StoreHandle::with_archive`]) an
//!    [`ArchiveWriter`] task copies the new blocks into it every [`ARCHIVE_INTERVAL`], one
//!    transaction per batch, and memory keeps only the newest ones;
//!    without one older blocks are simply pruned. The lowest height held, in the archive or
//!    in memory, is what the node serves.
//! 2. A [`StateSync`] actor, registered on the network with [`DIRECT_SEND_PROTOCOLS`] and
//!    [`RPC_PROTOCOLS`], answers `GetBlocks` RPCs from the store: from memory, or for older
//!    heights from the archive (at most [`Config::max_concurrent_archive_reads`] at once).
//!    A response holds at most [`Config::max_blocks_per_response`] blocks and
//!    [`Config::max_response_bytes`] (6 MiB by default: the stack streams such responses in
//!    frames), and no more is read. Every archive call of a store, reads and writes, runs on
//!    one thread of its own (`archive_thread`), not on tokio's blocking pool: the memory of
//!    the blocks a read allocated and the runtime freed goes back to that thread's allocator
//!    heap at its next call, where spread over the pool's threads it stayed resident until
//!    each thread happened to run again or exited.
//! 3. Whenever the store grows, and to each newly connected peer, it sends
//!    `Announce { height, block_id, lowest_height }`: what it holds.
//! 4. When a peer announced a height above the store's, or its chain status (the facade's
//!    protocol 65, [`peerlane::PeerStats::chain_status`]) says it is ahead, it requests the
//!    missing range from the peers ahead that hold the next height, one request at a time,
//!    preferring low round-trip times: the peers within 1.5 times the fastest one's last ping
//!    take turns, peers not measured yet come last. When no connected peer holds the next
//!    height any more (they pruned it), the store starts from the lowest block a peer holds
//!    ([`StoreHandle::start_from`]) and goes on from there. A request that fails, times out
//!    ([`Config::rpc_timeout`]) or brings blocks that do not link is counted, and the peer is
//!    passed over for [`Config::retry_after`] while the others are asked.
//! 5. [`StoreHandle::committed_height`], [`StoreHandle::caught_up`] and
//!    [`StoreHandle::subscribe_height`] tell the node where it stands; [`Metrics`] counts
//!    blocks served and fetched, bytes fetched and failed requests.
//!
//! Every failure is an [`Error`].
//!
//! # Example
//!
//! ```
//! use peerlane::{NetworkBuilder, NetworkConfig, TransportKind};
//! use prometheus_client::registry::Registry;
//! use state_sync::{Block, Config, DIRECT_SEND_PROTOCOLS, GENESIS_PARENT, RPC_PROTOCOLS};
//! use state_sync::{StateSync, StateSyncMsg, StoreHandle};
//! use wire::NetworkId;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut registry = Registry::default();
//! let config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
//! let mut builder = NetworkBuilder::new(config, TransportKind::Memory, &mut registry).unwrap();
//! let (client, events) = builder
//!     .add_application::<StateSyncMsg>(DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, Default::default())
//!     .unwrap();
//! let network = builder.build().unwrap();
//!
//! let store = StoreHandle::new();
//! let sync = StateSync::new(Config::default(), client, events, store.clone())
//!     .with_metrics(state_sync::Metrics::register(&mut registry));
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(sync.run(async move {
//!     let _ = stopped.await;
//! }));
//!
//! // The node's consensus commits a block; connected peers hear of it.
//! let block = Block { height: 1, id: [1; 32], parent_id: GENESIS_PARENT, payload: "tx".into() };
//! store.append(block).unwrap();
//! assert_eq!(store.committed_height(), 1);
//! assert!(store.caught_up());
//!
//! stop.send(()).unwrap();
//! task.await.unwrap();
//! network.shutdown().await;
//! # });
//! ```

mod actor;
mod archive;
mod archive_thread;
mod archive_writer;
mod config;
mod error;
mod message;
mod metrics;
mod peer_choice;
mod store;

pub use actor::{DIRECT_SEND_PROTOCOLS, RPC_PROTOCOLS, StateSync};
pub use archive::{ArchiveError, ArchiveSpan, BlockArchive};
pub use archive_writer::{
    ARCHIVE_INTERVAL, ArchiveWriter, MAX_ARCHIVE_BATCH_BLOCKS, MAX_ARCHIVE_BATCH_BYTES,
};
pub use config::Config;
pub use error::Error;
pub use message::{Block, GENESIS_PARENT, StateSyncMsg};
pub use metrics::Metrics;
pub use store::{Retained, Retention, StoreHandle};
