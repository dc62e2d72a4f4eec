//! [`RecordEvent`]: what the network decides about its peers on its own that a node may want to
//! keep across restarts (a peer store), and that connection notifications do not carry: the
//! bans it sets itself (rate-limit abuse, bad routing signatures) and the failed dials of its connectivity manager. Published on a
//! bounded broadcast channel ([`RECORD_EVENTS_CAPACITY`]); a subscriber that falls behind
//! loses the oldest events and is told how many (`RecvError::Lagged`), never slows the
//! network down.

use std::time::SystemTime;

use netcore::{NetworkAddress, PeerId};
use tokio::sync::broadcast;

/// Events buffered per subscriber before the oldest are lost: bans and dial failures come at
/// most a few per peer per backoff, so a subscriber that keeps up never lags.
pub const RECORD_EVENTS_CAPACITY: usize = 256;

/// Why the network banned a peer on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BanCause {
    /// The peer was closed for sustained rate-limit abuse
    /// (`peer.rate_limit.ban_duration_ms`).
    RateLimited,
    /// The peer sent a routing edge with a bad signature (`routing.ban_duration_ms`).
    InvalidEdge,
    /// The peer sent or forwarded a routed message with a bad signature, or broke the routing
    /// protocol otherwise (`routing.ban_duration_ms`).
    RoutingMisbehaviour,
}

impl BanCause {
    /// The lowercase name, as in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::InvalidEdge => "invalid_edge",
            Self::RoutingMisbehaviour => "routing_misbehaviour",
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordEvent {
    /// The network banned `peer_id` itself (bans through [`Network::ban`](crate::Network::ban)
    /// are the caller's and are not published).
    Banned {
        /// The peer.
        peer_id: PeerId,
        /// Why.
        cause: BanCause,
        /// When the ban lifts itself; `None`: until unbanned.
        until: Option<SystemTime>,
    },
    /// A dial the connectivity manager asked for failed at `addr` (not counting dials that
    /// lost a simultaneous-dial tie or were refused before connecting because of a ban).
    DialFailed {
        /// The peer.
        peer_id: PeerId,
        /// The address dialed.
        addr: NetworkAddress,
    },
}

/// The publishing side, cloned into the tasks that publish.
#[derive(Clone, Debug)]
pub(crate) struct RecordEvents(broadcast::Sender<RecordEvent>);

impl RecordEvents {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(RECORD_EVENTS_CAPACITY).0)
    }

    /// Publishes `event`; nothing happens without subscribers.
    pub(crate) fn publish(&self, event: RecordEvent) {
        let _ = self.0.send(event);
    }

    /// A new subscriber: it sees the events published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<RecordEvent> {
        self.0.subscribe()
    }
}

impl Default for RecordEvents {
    fn default() -> Self {
        Self::new()
    }
}
