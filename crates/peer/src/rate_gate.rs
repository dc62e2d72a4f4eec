//! [`RateGate`]: the reader's side of the rate limits. Asks the pure
//! [`InboundRateLimiter`] about each message the remote sent on its own initiative, and acts on
//! the verdict: counts a drop, logs (at most one line per second), and closes the connection
//! with [`DisconnectReason::RateLimited`] on sustained abuse.

use std::time::Duration;

use netcore::LogLimiter;
use tokio::time::Instant;
use tracing::{debug, info};
use wire::NetworkMessage;

use crate::disconnect::DisconnectReason;
use crate::rate_limit::{InboundRateLimiter, Verdict};
use crate::shared::Shared;

/// The interval between two log lines about drops on one connection.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// One connection's inbound rate limits, as the reader applies them.
#[derive(Debug)]
pub(crate) struct RateGate {
    limiter: InboundRateLimiter,
    log: LogLimiter,
}

impl RateGate {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            limiter: InboundRateLimiter::new(shared.config.rate_limit.clone(), Instant::now()),
            log: LogLimiter::new(1, LOG_EVERY),
        }
    }

    /// Whether `message` may go on to its application. A DirectSend or RPC request over its
    /// protocol's limits is counted and dropped (a request unanswered, as AptosNet does with
    /// too many RPCs); sustained abuse also starts closing the peer. RPC responses and errors
    /// always pass. `now` is when the message was read.
    pub(crate) fn admit(
        &mut self,
        shared: &Shared,
        message: &NetworkMessage,
        now: Instant,
    ) -> bool {
        if !self.limiter.is_enabled() {
            return true;
        }
        let (protocol, len) = match message {
            NetworkMessage::DirectSendMsg(message) => (message.protocol_id, message.raw_msg.len()),
            NetworkMessage::RpcRequest(request) => (request.protocol_id, request.raw_request.len()),
            NetworkMessage::RpcResponse(_) | NetworkMessage::Error(_) => return true,
        };
        let (kind, close) = match self.limiter.check(protocol, len, now) {
            Verdict::Admit => return true,
            Verdict::Drop { kind, close } => (kind, close),
        };
        shared.metrics.record_rate_limited(protocol, kind);
        if close {
            info!(
                %protocol,
                limit = %kind,
                max_drops = shared.config.rate_limit.abuse_max_drops,
                window = ?shared.config.rate_limit.abuse_window,
                "sustained flood over the rate limits, disconnecting"
            );
            shared.begin_close(DisconnectReason::RateLimited);
        } else if let Some(suppressed) = self.log.allow(now.into_std()) {
            debug!(%protocol, limit = %kind, len, suppressed, "inbound message over the rate limit dropped");
        }
        false
    }
}
