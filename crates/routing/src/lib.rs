//! routing: the pure core of NEAR-style routing over signed edges. It lets a node reach a
//! peer it is not connected to: every connection is an edge signed by both ends, edges
//! spread through the network, each node computes shortest-path next hops, and messages
//! are forwarded hop by hop. No tasks, no sockets: the facade drives it on protocols
//! ROUTING_SYNC (67) and ROUTED (68), and records the outcomes it returns as metrics.
//!
//! # How data flows
//!
//! ```text
//! connection starts ─► EdgeProposal ──(67)──► accept ─► Edge ─► EdgeTable::insert_trusted
//!                      reconcile::on_connect ─(67)─► SummaryRoot / SummaryBuckets / Edges
//! ROUTING_SYNC Edges ─► EdgeTable::precheck ─► verify_batch (blocking pool) ─► EdgeTable::apply
//!                        (limits, no crypto)      (bad signature: ban sender)     │ changed
//!                                                                                 ▼
//!                   RecomputeSchedule ─► NextHops::compute ◄─ table      EdgeBatcher ─► (67) Edges
//! ROUTED ─► forward(): verify, deliver or take_hop + NextHops::pick / RouteBackTable ─► (68) next hop
//! every so often: EdgeTable::note_reachability, take_unreachable ─► Component (stored by
//! the caller) ─► PrunedIndex; a pruned peer reachable again ─► EdgeTable::restore
//! ```
//!
//! 1. [`xeddsa`]: signatures made with the node's X25519 key (the Noise key file's) and
//!    checked against a [`netcore::PeerId`]. [`SigningKey`], [`Signature`], [`verify`].
//! 2. [`edge`] and [`nonce`]: [`Edge`], [`EdgeProposal`], odd/even time-based nonces.
//! 3. [`graph`]: [`EdgeTable`] with its limits, [`EdgeTable::precheck`], [`verify_batch`];
//!    [`budget`]: [`VerifyBudget`], edges each sender may make us verify.
//! 4. [`next_hops`]: [`NextHops`], all first hops on shortest paths, round-robin picking.
//! 5. [`summary`] and [`reconcile`]: digests and the connect-time exchange.
//! 6. [`schedule`]: [`RecomputeSchedule`] and [`EdgeBatcher`], timing with `now` passed in.
//! 7. [`routed`], [`route_back`] and [`mod@forward`]: [`RoutedMessage`], [`RouteBackTable`] and
//!    the pure per-message decision [`forward()`] (deliver, send to a next hop, or drop).
//! 8. [`prune`]: [`Component`], [`PrunedIndex`].
//! 9. [`messages`]: [`RoutingSyncMessage`] and the bounded decoders; [`config`]: every limit.
//! 10. [`node`]: [`RoutingNode`], all of the above as one per-node state machine: inputs
//!     (connection up/down, a message on 67/68, a verified batch, a routed send, a tick with
//!     [`Now`]) in, [`Action`]s out. What a driver (the facade's routing actor, or a
//!     simulation) uses; the steps below are what it does inside.
//!
//! # Driving it
//!
//! A driver holds one [`RoutingNode`] and carries out its [`Action`]s: send bytes to a
//! neighbour on 67 or 68, deliver a routed message to the application, run
//! [`verify_batch`] off its loop and hand the result back, ban a neighbour, store or load a
//! pruned [`Component`], count an [`Outcome`]; and calls [`RoutingNode::tick`] at
//! [`RoutingNode::next_wakeup`]. Inside, the node does this:
//!
//! - Start: `SigningKey::from_x25519_private_key(identity key bytes)`, an [`EdgeTable`] with
//!   [`GraphLimits::from`] the validated [`RoutingConfig`], a [`RecomputeSchedule`], an
//!   [`EdgeBatcher`], a [`RouteBackTable`], a [`PrunedIndex`].
//! - Connection up (peer advertised 67 and 68): the dialer sends
//!   [`RoutingSyncMessage::EdgeProposal`]; the other end answers `EdgeAccepted`
//!   ([`EdgeProposal::accept`]) or `EdgeProposalStale`; both call
//!   [`EdgeTable::insert_trusted`] with the edge, push it to the batcher, and send
//!   [`reconcile::on_connect`].
//! - ROUTING_SYNC in: [`RoutingSyncMessage::decode`]; roots and buckets answered by
//!   [`reconcile::on_summary_root`] and [`reconcile::on_summary_buckets`]; `Edges` through
//!   [`EdgeTable::precheck`], [`VerifyBudget::admit`] (truncate to it),
//!   [`verify_batch`] on a blocking pool, [`EdgeTable::apply`];
//!   changed edges to the batcher, `topology_changed` to the schedule; misbehaviour or a bad
//!   signature bans the sender.
//! - Connection down: [`Edge::remove`] signed by the local end, `insert_trusted`, batcher.
//! - Timers: [`EdgeBatcher::take_due`] → `Edges` to every routing neighbour;
//!   [`RecomputeSchedule::take_due`] → [`NextHops::compute`], then
//!   [`EdgeTable::note_reachability`], [`EdgeTable::stale_local_edges`] (remove them),
//!   [`PrunedIndex::take_for`] the newly reachable peers (load and [`EdgeTable::restore`]);
//!   now and then [`EdgeTable::prune_tombstones`] and [`EdgeTable::take_unreachable`] (store
//!   the components, [`PrunedIndex::insert`]).
//! - ROUTED in, or an application sending to a peer it is not connected to:
//!   [`decode_routed`], then [`forward()`] with the sender (or the local id) → deliver on the
//!   message's protocol, send to the next hop on 68, or count the [`DropReason`].
//!
//! Types to read first: [`EdgeTable`], [`NextHops`], [`RoutedMessage`], [`RoutingConfig`].
//! Design and numbers: `docs/routing.md`; byte layouts: `docs/wire-format.md` section 7.

pub mod budget;
pub mod config;
pub mod edge;
mod error;
pub mod forward;
pub mod graph;
pub mod messages;
pub mod next_hops;
pub mod node;
pub mod nonce;
pub mod prune;
pub mod reconcile;
pub mod route_back;
pub mod routed;
pub mod schedule;
pub mod summary;
pub mod xeddsa;

pub use budget::VerifyBudget;
pub use config::RoutingConfig;
pub use edge::{EDGE_DOMAIN, Edge, EdgeEnd, EdgeKey, EdgeProof, EdgeProposal, edge_signing_bytes};
pub use error::Error;
pub use forward::{DropReason, Forward, ForwardOutcome, forward};
pub use graph::{
    ApplyOutcome, EdgeTable, GraphLimits, Precheck, PrecheckOutcome, VerifiedBatch, verify_batch,
};
pub use messages::{RoutingSyncMessage, decode_routed, encode_routed};
pub use next_hops::NextHops;
pub use node::{Action, BanReason, BatchId, Channel, Now, Outcome, RouteView, RoutingNode};
pub use prune::{Component, ComponentId, IndexEviction, PrunedIndex, components_of};
pub use route_back::{RouteBackInsert, RouteBackTable};
pub use routed::{ROUTED_DOMAIN, RoutedHash, RoutedKind, RoutedMessage, RoutedTarget};
pub use schedule::{EdgeBatcher, PushOutcome, RecomputeSchedule};
pub use summary::{BucketDigest, SUMMARY_BUCKETS};
pub use xeddsa::{Signature, SigningKey, VerifyingKey, verify};
