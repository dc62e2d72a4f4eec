//! [`Error`]: everything a caller of the peer crate can be told went wrong; and `ErrorChain`,
//! how errors are logged.
//!
//! Errors from the remote's side of a connection (malformed frames, unknown protocols, late or
//! unknown responses) are not here: the peer answers, counts and logs them itself, and those
//! that cost the connection end it with a [`DisconnectReason`](crate::DisconnectReason).

use std::fmt;
use std::time::Duration;

use wire::{ProtocolId, RequestId};

use crate::priority::Priority;

/// Errors from sending, RPCs, responding to inbound RPCs and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer is disconnecting or gone: its queue no longer takes messages, and pending RPCs
    /// resolve with this error. [`PeerHandle::closed`](crate::PeerHandle::closed) says why.
    #[error("peer is disconnected")]
    Disconnected,

    /// The outbound lane the message belongs to holds `outbound_lane_capacity` messages
    /// already, or the message would take its queued payload bytes over `max_queued_bytes`.
    /// Nothing was queued, and the drop is counted
    /// (`peerlane_peer_outbound_dropped_total{lane, reason="full"}`).
    /// [`PeerHandle::send_direct_wait`](crate::PeerHandle::send_direct_wait) waits for room
    /// instead.
    #[error("outbound {lane} lane is full")]
    QueueFull {
        /// The full lane.
        lane: Priority,
    },

    /// `max_concurrent_outbound_rpcs` RPCs are waiting for a response on this connection; the
    /// new one was refused before anything was sent.
    #[error("too many pending rpcs: at most {max} per connection")]
    TooManyPendingRpcs {
        /// The limit in force.
        max: usize,
    },

    /// An RPC got no response within the caller's timeout. A response arriving later is
    /// counted and dropped.
    #[error("rpc on {protocol} got no response within {timeout:?}")]
    Timeout {
        /// The request's protocol.
        protocol: ProtocolId,
        /// The caller's timeout.
        timeout: Duration,
    },

    /// The remote answered an RPC with `Error(NotSupported(RpcRequest(protocol)))`: it does not
    /// serve this protocol.
    #[error("remote does not support protocol {0}")]
    RemoteNotSupported(ProtocolId),

    /// A payload is larger than `max_message_size`; nothing was queued.
    #[error("message payload of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Payload length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },

    /// A response to an inbound RPC came after its deadline (`inbound_rpc_timeout` after the
    /// request arrived). The request's slot was freed at the deadline; nothing was sent.
    #[error(
        "response to inbound rpc {request_id} on {protocol} came after its {timeout:?} deadline"
    )]
    InboundRpcExpired {
        /// The request's protocol.
        protocol: ProtocolId,
        /// The id the remote gave the request.
        request_id: RequestId,
        /// The inbound RPC timeout in force.
        timeout: Duration,
    },

    /// A [`Config`](crate::Config) breaks a rule; see [`Config::validate`](crate::Config::validate).
    #[error("invalid peer config: {reason}")]
    InvalidConfig {
        /// Which rule it breaks.
        reason: &'static str,
        /// The stream limits' own complaint, when the frame and message sizes are the problem.
        #[source]
        source: Option<wire::Error>,
    },
}

/// Displays an error and its sources, `outer: inner: innermost`, for logs.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
