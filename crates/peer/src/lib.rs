//! peer: one actor per connection. Once a connection is set up (transport, Noise, handshake
//! message), a [`Peer`] runs it: a writer task that sends queued messages with real priority
//! lanes, write batching and interleaved large messages, and a reader task that decodes,
//! reassembles and dispatches what arrives, with RPC bookkeeping on both sides.
//!
//! # How data flows
//!
//! ```text
//! outbound:
//!   PeerHandle::send_direct / rpc ──► OutboundQueue (high | low, bounded by messages and
//!     bytes, never waits; send_direct_wait waits for the writer to signal room)
//!     ──► writer task: high lane first; large messages cut into stream fragments with small
//!         messages between them; feed while ready, flush when empty ──► socket
//!   (rpc also records the request in OutboundRpcs: id, deadline, cap)
//!
//! inbound:
//!   socket ──► reader task: MultiplexMessageStream ──► Reassembler (stream pieces)
//!     ├─ DirectSendMsg ─────────────► InboundRouter::try_route (waits only for a queue
//!     │                                 that asks for back-pressure, see TryRouteError)
//!     ├─ RpcRequest ─► InboundRpcs (cap, deadline) ─► route, with an RpcResponder
//!     │                    RpcResponder::respond ──► RpcResponse on the high lane
//!     ├─ RpcResponse ─► OutboundRpcs ─► the waiting PeerHandle::rpc
//!     └─ Error ───────► counted; NotSupported fails our RPC on that protocol
//! ```
//!
//! Every queue is bounded and every drop is counted ([`Metrics`]). Remote misbehaviour that
//! leaves the byte stream in sync (a malformed frame, an unknown protocol, a bad stream piece)
//! is answered or counted and the connection stays up; anything that breaks the stream (I/O
//! error, oversized or truncated frame, failed decryption) ends it with a
//! [`DisconnectReason`]. On a disconnect every pending RPC fails with
//! [`Error::Disconnected`], the writer flushes within [`Config::writer_close_timeout`], and no
//! task outlives its peer: both run on the caller's `TaskTracker`.
//!
//! Types to read first: [`Peer::spawn`] and [`PeerHandle`], then [`InboundRouter`] and
//! [`InboundEvent`], then [`Config`].
//!
//! The protocol logic lives in pure, clock-free modules: `queue` (the two lanes) and `rpc`
//! (request ids, deadlines, caps, taking `now` as an input); `actor` (reader) and `writer`
//! drive them.

mod actor;
mod config;
mod connection;
mod error;
mod handle;
mod inbound;
pub mod metrics;
mod queue;
mod rpc;
mod shared;
mod writer;

pub use actor::{Peer, ROUTE_FLUSH_EVERY};
pub use config::{
    Config, DEFAULT_INBOUND_RPC_TIMEOUT_SECS, DEFAULT_MAX_CONCURRENT_INBOUND_RPCS,
    DEFAULT_MAX_CONCURRENT_OUTBOUND_RPCS, DEFAULT_MAX_FRAME_SIZE_BYTES,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_OUTBOUND_LANE_CAPACITY,
    DEFAULT_WRITER_CLOSE_TIMEOUT_SECS,
};
pub use connection::{Connection, ConnectionId, ConnectionMetadata};
pub use error::Error;
pub use handle::{DisconnectReason, PeerHandle};
pub use inbound::{
    HeldBack, InboundEvent, InboundRouter, RoomFuture, RouteError, RpcResponder, TryRouteError,
};
pub use metrics::Metrics;
pub use queue::{OutboundQueue, Priority, PushError};
