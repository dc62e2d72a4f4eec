//! [`PeerManager`]: one actor per network that owns the set of live connections.
//!
//! ```text
//! listener ── set-up connections ──┐
//! dial tasks ── set-up connections ┤
//!                                  ▼
//! PeerManagerHandle ── requests ─► PeerManager ── peer::spawn ──► peer tasks
//!   (dial, disconnect)             │  │                             │
//!                                  │  └─ PeersAndMetadata ─► NewPeer / LostPeer
//!                                  └──────── closed(reason) ◄───────┘
//! ```
//!
//! The peer manager is the only writer of its network's entries in [`PeersAndMetadata`]. For
//! every connection that finished set-up it decides whether to keep it (the ban list, the
//! inbound limit, simultaneous dials: `resolve_simultaneous_dial`), spawns a peer (`peer::spawn`) for it with the
//! network's router, registers it and announces `NewPeer`. When a peer's tasks end it
//! announces `LostPeer`, unless that connection had been replaced already.
//!
//! - `handle`: [`PeerManagerHandle`], its requests, the new connections and the channels;
//! - `actor`: [`PeerManager`], the actor;
//! - `simultaneous_dial`: which of two connections to a peer survives (pure);
//! - `pending_events`: connection events waiting for the connectivity manager (pure);
//! - `connectivity`: [`drive_connectivity`], which carries out the connectivity manager's
//!   actions;
//! - `ban_list`: [`BanList`];
//! - `notice`: [`RefusalNotices`], the `Disconnect` notice written on a refused connection.

mod actor;
mod ban_list;
mod connectivity;
mod handle;
mod notice;
mod pending_events;
mod simultaneous_dial;

pub(crate) use actor::{Parts, PeerManager};
pub(crate) use ban_list::BanList;
pub(crate) use connectivity::drive_connectivity;
pub(crate) use handle::{Channels, NewConnection, PeerManagerHandle};
pub(crate) use notice::RefusalNotices;
