//! peerlane-mempool: a gossiping transaction pool over the peerlane facade, for driving
//! realistic traffic (and for consensus to build blocks from).
//!
//! # How data flows
//!
//! ```text
//! client ── MempoolHandle::submit ──► Pool (bounded, dedup by SHA-256) ──► outbox
//!                                       ▲                                   │ every 50 ms or
//! peer ── MempoolMsg::Transactions ─────┘ (from = peer)                     │ a full batch
//!                                                                           ▼
//!        Mempool::run ── NetworkClient::send_to_peer (MempoolDirectSend) ── every peer but `from`
//! consensus ── MempoolHandle::take_batch / commit ──► Pool
//! ```
//!
//! 1. A client submits a [`Transaction`] through the [`MempoolHandle`]; its id ([`TxnId`]) is
//!    the SHA-256 of its payload. A pending or recently committed id is
//!    [`Error::Duplicate`]; a pool at [`MempoolConfig::capacity`] answers [`Error::Full`].
//! 2. The [`Mempool`] actor gossips new transactions in [`MempoolMsg::Transactions`] batches
//!    on `ProtocolId::MEMPOOL_DIRECT_SEND` (LZ4-compressed BCS, the low-priority lane; the
//!    facade encodes) every [`MempoolConfig::batch_interval`], or sooner when
//!    [`MempoolConfig::max_batch`] transactions wait.
//! 3. Transactions received from a peer are deduplicated the same way; new ones are gossiped
//!    on to every connected peer except the sender.
//! 4. Consensus reads blocks' worth with [`MempoolHandle::take_batch`] (they stay pending) and
//!    removes them with [`MempoolHandle::commit`].
//!
//! Counters (`mempool_transactions_accepted_total`, `mempool_duplicates_total`,
//! `mempool_rejected_full_total`, `mempool_transactions_gossiped_total`,
//! `mempool_transactions_received_total`, gauge `mempool_pending`) go to the registry passed to
//! [`Mempool::new`], and are readable through [`MempoolHandle::counts`].
//!
//! Types to read first: [`Mempool`], [`MempoolHandle`], [`Transaction`].
//!
//! Setting up a node:
//!
//! ```no_run
//! # async fn example(builder: &mut peerlane::NetworkBuilder) -> Result<(), peerlane::Error> {
//! use mempool::{Mempool, MempoolConfig, MempoolMsg, Transaction};
//! use prometheus_client::registry::Registry;
//! use wire::ProtocolId;
//!
//! let (client, events) = builder.add_application::<MempoolMsg>(
//!     [ProtocolId::MEMPOOL_DIRECT_SEND],
//!     [],
//!     Default::default(),
//! )?;
//! let (mempool, handle) =
//!     Mempool::new(MempoolConfig::default(), client, events, &mut Registry::default());
//! tokio::spawn(mempool.run(std::future::pending()));
//! handle.submit(Transaction::new(vec![7u8; 300])).unwrap();
//! # Ok(()) }
//! ```

mod error;
mod mempool;
mod pool;
mod types;

pub use crate::error::Error;
pub use crate::mempool::{Mempool, MempoolConfig, MempoolCounts, MempoolHandle};
pub use crate::types::{MempoolMsg, Transaction, TxnId};
