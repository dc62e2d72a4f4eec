//! peer: one actor per connection. Once a connection is set up (transport, Noise, handshake
//! message), [`spawn`] runs it: a writer task that sends queued messages with real priority
//! lanes, write batching and interleaved large messages, and a reader task that decodes,
//! reassembles and dispatches what arrives, with RPC bookkeeping on both sides.
//!
//! # How data flows
//!
//! ```text
//! outbound:
//!   PeerHandle::send_direct / rpc ──► OutboundQueue (high | low, bounded by messages and
//!     bytes, fewer bytes for a peer outside the trusted set; never waits; send_direct_wait
//!     waits for the writer to signal room)
//!     ──► writer task: high lane first; large messages cut into stream fragments with small
//!         messages between them; each batch encoded in one pass into the write buffer,
//!         flush when empty ──► socket
//!   (rpc also records the request in OutboundRpcs: id, deadline, cap; the reader's one timer
//!   times out what is due, no timer per RPC)
//!
//! inbound:
//!   socket ──► reader task: MultiplexMessageStream ──► InboundStreams (stream pieces:
//!     Reassembler held to the remote's maximum size, a deadline, the node's StreamBudget)
//!     ── RateGate (DirectSend, RpcRequest: per-protocol token buckets; over them: dropped)
//!     ├─ DirectSendMsg ─────────────► InboundRouter::try_route_direct_sends, a run of them
//!     │                                 read in a row together (waits only for a queue that
//!     │                                 asks for back-pressure, see TryRouteError)
//!     ├─ RpcRequest ─► InboundRpcs (cap, deadline) ─► route, with an RpcResponder
//!     │                    RpcResponder::respond ──► RpcResponse on the high lane, held
//!     │                    to a byte budget of its own (respond_wait waits for room)
//!     ├─ RpcResponse ─► OutboundRpcs ─► the waiting PeerHandle::rpc
//!     └─ Error ───────► counted; NotSupported fails our RPC on that protocol
//! ```
//!
//! Every queue is bounded and every drop is counted ([`Metrics`]). What a remote sends on its
//! own initiative is rate limited per protocol ([`RateLimitConfig`]): over the limits it is
//! dropped and counted, and a sustained flood ends the connection with
//! [`DisconnectReason::RateLimited`]. An [`InboundBudget`], shared by a network's routers,
//! bounds the bytes decoded and not yet taken by the applications. Remote misbehaviour that
//! leaves the byte stream in sync (a malformed frame, an unknown protocol, a bad stream piece)
//! is answered or counted and the connection stays up; anything that breaks the stream (I/O
//! error, oversized or truncated frame, failed decryption) ends it with a
//! [`DisconnectReason`]. So do streams that would park memory: a header declaring more than
//! the remote's maximum message size (smaller for peers outside the trusted set), a stream
//! unfinished at its deadline, and a stream piece that would take the bytes held in
//! unfinished streams, all connections together, over the shared [`StreamBudget`]. On a disconnect every pending RPC fails with
//! [`Error::Disconnected`], the writer flushes within [`Config::writer_close_timeout`], and no
//! task outlives its peer: both run on the caller's `TaskTracker`.
//!
//! Types to read first: [`spawn`] and [`PeerHandle`], then [`InboundRouter`] and
//! [`InboundEvent`], then [`Config`].
//!
//! # Modules, bottom up
//!
//! Each module uses only those above it in this list.
//!
//! - Leaves: `priority` ([`Priority`], the two lanes), `disconnect` ([`DisconnectReason`] and
//!   the errors that map to it), `error`, [`metrics`], which knows only the label enums,
//!   `rate_limit` (pure and clock-free, `now` is an input: [`TokenBucket`], the per-protocol
//!   table [`RateLimitConfig`], [`InboundRateLimiter`], [`AbuseTracker`]),
//!   `budget` ([`InboundBudget`], one atomic counter, its waiters and its two metrics;
//!   [`BudgetRelease`] gives many charges back in one update),
//!   `config`, `connection` and `lock`.
//! - Pure protocol logic, clock-free and without tasks or metrics, returning outcomes for the
//!   caller to act on and count: `queue` ([`OutboundQueue`], the two lanes), `deadline_table`
//!   (the id → deadline skeleton of both RPC tables: a ring indexed by ids from our own
//!   counters, no hashing) and `rpc` (outbound requests and their ids, inbound slots; `now` is
//!   an input).
//! - One connection's shared state, each part on its own: `lanes` (the queue behind a lock,
//!   the writer's doorbell, waiting for room), `rpc_tables` (the RPC tables behind locks,
//!   waiters told their outcome, the time the reader's timer is set for), `lifecycle` (close
//!   reason, stop signal, closed signal, the
//!   guard that sees both tasks end); and `shared`, which holds the three and closes them
//!   together. Shared by all connections instead: `stream_budget` ([`StreamBudget`], the
//!   bytes of unfinished inbound streams, with its gauge, and one connection's share of it).
//! - Who uses it: `handle` ([`PeerHandle`]), `inbound` ([`InboundRouter`] and
//!   [`RpcResponder`]), `inbound_streams` (the reader's reassembler with its size limit,
//!   deadline and budget share, counting what it aborts), `rate_gate` (the reader's use of the
//!   rate limiter: count, log, close), the `reader` and `writer` tasks (neither knows the
//!   other), and `spawn`, which wires them up.

mod budget;
mod config;
mod connection;
mod deadline_table;
mod disconnect;
mod error;
mod handle;
mod inbound;
mod inbound_streams;
mod lanes;
mod lifecycle;
mod lock;
pub mod metrics;
mod priority;
mod queue;
mod rate_gate;
mod rate_limit;
mod reader;
mod rpc;
mod rpc_tables;
mod shared;
mod spawn;
mod stream_budget;
mod writer;

pub use budget::{BudgetCharge, BudgetRelease, InboundBudget};
pub use config::{
    Config, DEFAULT_INBOUND_RPC_TIMEOUT_SECS, DEFAULT_MAX_CONCURRENT_INBOUND_RPCS,
    DEFAULT_MAX_CONCURRENT_OUTBOUND_RPCS, DEFAULT_MAX_FRAME_SIZE_BYTES,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT,
    DEFAULT_MAX_UNTRUSTED_MESSAGE_SIZE_BYTES, DEFAULT_MAX_UNTRUSTED_QUEUED_BYTES,
    DEFAULT_OUTBOUND_LANE_CAPACITY, DEFAULT_STREAM_REASSEMBLY_TIMEOUT_SECS,
    DEFAULT_WRITER_CLOSE_TIMEOUT_SECS,
};
pub use connection::{Connection, ConnectionId, ConnectionMetadata};
pub use disconnect::DisconnectReason;
pub use error::Error;
pub use handle::PeerHandle;
pub use inbound::{
    HeldBack, InboundEvent, InboundRouter, RoomFuture, RouteError, RpcResponder, TryRouteError,
};
pub use metrics::Metrics;
pub use priority::Priority;
pub use queue::{OutboundQueue, PushError};
pub use rate_limit::{
    AbuseTracker, DEFAULT_ABUSE_MAX_DROPS, DEFAULT_ABUSE_WINDOW_MS, DEFAULT_INBOUND_BYTE_BUDGET,
    DEFAULT_RATE_LIMIT_BAN_MS, DEFAULT_RATE_LIMIT_BURST_MS, InboundRateLimiter, LimitKind,
    ProtocolRate, RateLimitConfig, TokenBucket, TrafficClass, Verdict,
};
pub use reader::ROUTE_FLUSH_EVERY;
pub use spawn::spawn;
pub use stream_budget::StreamBudget;

/// The table behind both RPC tables, public only for the criterion benches
/// (`benches/rpc_table.rs`); nothing outside this crate uses it, and it may change at any time.
#[doc(hidden)]
pub use deadline_table::{DeadlineTable, Refused, RingKey, Taken};
