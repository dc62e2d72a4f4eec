//! [`Config`]: the limits and timeouts of one connection, with AptosNet's defaults.

use std::time::Duration;

use noise::PeerRole;
use serde::{Deserialize, Serialize};
use wire::StreamLimits;

use crate::error::Error;
use crate::rate_limit::{DEFAULT_INBOUND_BYTE_BUDGET, RateLimitConfig};

/// Largest frame body read or written: AptosNet's 4 MiB ([`wire::MAX_FRAME_SIZE`]).
pub const DEFAULT_MAX_FRAME_SIZE_BYTES: usize = wire::MAX_FRAME_SIZE;

/// Largest message payload, streamed or not: AptosNet's 64 MiB ([`wire::MAX_MESSAGE_SIZE`]).
pub const DEFAULT_MAX_MESSAGE_SIZE_BYTES: usize = wire::MAX_MESSAGE_SIZE;

/// Largest message payload accepted from a peer outside the trusted set
/// ([`PeerRole::Unknown`]): 8 MiB, two fragments after the header at the default frame size.
pub const DEFAULT_MAX_UNTRUSTED_MESSAGE_SIZE_BYTES: usize = 8 * 1024 * 1024;

/// Time an inbound stream has, from its header, to deliver its last fragment: 30 s, the time a
/// 64 MiB message takes at about 2 MiB/s.
pub const DEFAULT_STREAM_REASSEMBLY_TIMEOUT_SECS: u64 = 30;

/// Payload bytes all the connections of a network may hold in unfinished inbound streams
/// together (the facade's `max_stream_bytes_in_flight`, given to [`StreamBudget::new`]):
/// 256 MiB, four messages of the largest size at once.
///
/// [`StreamBudget::new`]: crate::StreamBudget::new
pub const DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

/// Messages per outbound lane: AptosNet's channel capacity of 1024.
pub const DEFAULT_OUTBOUND_LANE_CAPACITY: usize = 1024;

/// Payload bytes each outbound lane holds: 32 MiB, a few seconds of a fast link, so that a lane
/// of 1 MiB messages does not hold a GiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// Payload bytes each outbound lane holds for a peer outside the trusted set
/// ([`PeerRole::Unknown`]): 8 MiB, the largest message such a peer may send us, so that a
/// stranger that asks and never reads pins a quarter of what a trusted peer's lanes may hold.
pub const DEFAULT_MAX_UNTRUSTED_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// RPCs we may have waiting for a response per connection: AptosNet's 100.
pub const DEFAULT_MAX_CONCURRENT_OUTBOUND_RPCS: usize = 100;

/// Inbound RPCs the applications may be working on at once per connection: AptosNet's 100.
pub const DEFAULT_MAX_CONCURRENT_INBOUND_RPCS: usize = 100;

/// Time an application has to answer an inbound RPC: AptosNet's 10 s.
pub const DEFAULT_INBOUND_RPC_TIMEOUT_SECS: u64 = 10;

/// Time the writer gets to send what is queued and close the socket on a disconnect:
/// AptosNet's `TRANSPORT_TIMEOUT` of 30 s, which its writer applies to the same flush and close.
pub const DEFAULT_WRITER_CLOSE_TIMEOUT_SECS: u64 = 30;

/// Limits and timeouts of one connection. Both ends must agree on the frame and message sizes
/// (AptosNet's are the defaults), the rest is local policy.
///
/// Build it with struct update syntax from [`Config::default`] and check it once with
/// [`Config::validate`] (for instance when the node's configuration is loaded).
///
/// In config files (serde) every field is optional and unknown fields are errors; the
/// timeouts are whole milliseconds, named `inbound_rpc_timeout_ms`, `writer_close_timeout_ms`
/// and `stream_reassembly_timeout_ms`, and the rate limits are the `rate_limit` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest frame body, in bytes, read or written. A longer length prefix from the remote
    /// ends the connection ([`DisconnectReason::FrameTooLarge`](crate::DisconnectReason)), and
    /// messages whose payload does not fit in one frame (less 64 bytes of overhead) are sent as
    /// a stream of fragments. Default 4 MiB. Memory: the reader's buffer grows up to one frame.
    pub max_frame_size: usize,

    /// Largest message payload, in bytes, streamed or not. Larger outbound payloads are refused
    /// with [`Error::MessageTooLarge`]; an inbound stream header from a trusted peer declaring
    /// more, or fragments adding up to more, close the connection
    /// ([`DisconnectReason::MessageTooLarge`](crate::DisconnectReason)). Default 64 MiB, and
    /// at most 255 frames' worth. Memory: the reader holds at most one stream in progress, so
    /// up to this much per trusted connection (within the node-wide stream budget).
    pub max_message_size: usize,

    /// Largest inbound message payload, in bytes, from a peer outside the trusted set
    /// ([`PeerRole::Unknown`]); capped at `max_message_size`. A stream header declaring more
    /// fragments than such a message needs, or fragments adding up to more, close the
    /// connection ([`DisconnectReason::MessageTooLarge`](crate::DisconnectReason)) before
    /// anything is held. At least `max_frame_size`. Default 8 MiB. Memory: up to this much
    /// per untrusted connection (within the node-wide stream budget).
    pub max_untrusted_message_size: usize,

    /// Time an inbound stream has, from its header, to deliver its last fragment. When it
    /// passes, the connection is closed
    /// ([`DisconnectReason::StreamTimeout`](crate::DisconnectReason)), whatever else the
    /// remote keeps sending. Default 30 s. Memory: bounds how long a stream's bytes are held.
    #[serde(
        rename = "stream_reassembly_timeout_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub stream_reassembly_timeout: Duration,

    /// Messages each of the two outbound lanes (high, low) holds; a push onto a full lane fails
    /// with [`Error::QueueFull`] and is counted. Default 1024. Memory: the payloads queued, so
    /// up to `2 × capacity` messages per connection.
    pub outbound_lane_capacity: usize,

    /// Payload bytes each of the two outbound lanes holds; a push that would take a lane over
    /// it fails with [`Error::QueueFull`], like a full lane, except that an empty lane takes
    /// one message of any size (up to `max_message_size`). The bytes are released as the
    /// writer takes the messages. RPC responses, sent on the high lane, are held to a budget
    /// of their own of the same size (and `outbound_lane_capacity` responses), so that our
    /// own messages and our answers do not refuse each other. Default 32 MiB. Memory: with
    /// the lane capacity, bounds the payloads queued to about
    /// `3 × (max_queued_bytes + max_message_size)` per connection.
    pub max_queued_bytes: usize,

    /// `max_queued_bytes` for a peer outside the trusted set ([`PeerRole::Unknown`]); capped
    /// at `max_queued_bytes`. A stranger that sends RPC requests and stops reading makes us
    /// queue its answers until their budget is full; this bounds what it pins. Default 8 MiB.
    /// Memory: about `3 × (max_untrusted_queued_bytes + max_message_size)` per untrusted
    /// connection.
    pub max_untrusted_queued_bytes: usize,

    /// RPCs waiting for a response at once per connection; one more fails at once with
    /// [`Error::TooManyPendingRpcs`]. Default 100. Memory: one small table entry each.
    pub max_concurrent_outbound_rpcs: usize,

    /// Inbound RPCs handed to the applications and not yet answered, per connection; requests
    /// beyond it are dropped unanswered and counted, as AptosNet does. Default 100. Memory:
    /// one small table entry each (the requests themselves sit in the applications' queues).
    pub max_concurrent_inbound_rpcs: usize,

    /// Time an application has to answer an inbound RPC. At the deadline the slot is freed and
    /// a later answer is refused with [`Error::InboundRpcExpired`]. Default 10 s.
    #[serde(rename = "inbound_rpc_timeout_ms", with = "netcore::serde_duration_ms")]
    pub inbound_rpc_timeout: Duration,

    /// Time the writer gets, on a disconnect or shutdown, to send the messages already queued,
    /// flush and shut the socket down; what is left after it is dropped and counted.
    /// Default 30 s.
    #[serde(
        rename = "writer_close_timeout_ms",
        with = "netcore::serde_duration_ms"
    )]
    pub writer_close_timeout: Duration,

    /// Inbound rate limits per connection and protocol (messages and bytes per second), what
    /// a flood over them costs (drops, then a disconnect, then a temporary ban); see
    /// [`RateLimitConfig`]. On by default.
    pub rate_limit: RateLimitConfig,

    /// Node-wide budget of inbound payload bytes decoded and not yet taken by the
    /// applications, in bytes. The facade makes one [`InboundBudget`](crate::InboundBudget)
    /// of this size per network; while it is spent, readers stop reading their sockets
    /// (back-pressure) until applications take messages off their queues. 0 means no budget.
    /// Default 256 MiB.
    pub inbound_byte_budget: usize,
}

impl Config {
    /// Checks the rules `peer::spawn` relies on: the frame and message
    /// sizes make valid [`StreamLimits`] (a frame above 64 bytes that fits a u32 prefix, a
    /// message at least a frame and at most 255 frames), the untrusted maximum is at least a
    /// frame, the reassembly timeout is not zero, and each lane holds at least one message.
    pub fn validate(&self) -> Result<(), Error> {
        self.stream_limits()?;
        if self.max_untrusted_message_size < self.max_frame_size {
            return Err(Error::InvalidConfig {
                reason: "max_untrusted_message_size must be at least max_frame_size",
                source: None,
            });
        }
        if self.stream_reassembly_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                reason: "stream_reassembly_timeout must be at least 1 ms",
                source: None,
            });
        }
        if self.outbound_lane_capacity == 0 {
            return Err(Error::InvalidConfig {
                reason: "outbound_lane_capacity must be at least 1",
                source: None,
            });
        }
        if self.max_queued_bytes == 0 {
            return Err(Error::InvalidConfig {
                reason: "max_queued_bytes must be at least 1",
                source: None,
            });
        }
        if self.max_untrusted_queued_bytes == 0 {
            return Err(Error::InvalidConfig {
                reason: "max_untrusted_queued_bytes must be at least 1",
                source: None,
            });
        }
        self.rate_limit.validate()
    }

    /// The stream limits the frame and message sizes make.
    pub fn stream_limits(&self) -> Result<StreamLimits, Error> {
        StreamLimits::new(self.max_frame_size, self.max_message_size).map_err(|source| {
            Error::InvalidConfig {
                reason: "max_frame_size and max_message_size are inconsistent",
                source: Some(source),
            }
        })
    }
}

impl Config {
    /// The largest inbound message payload accepted from a peer of `role`:
    /// `max_untrusted_message_size` (capped at `max_message_size`) for [`PeerRole::Unknown`],
    /// `max_message_size` for every role of the trusted set.
    pub fn max_inbound_message_size(&self, role: PeerRole) -> usize {
        match role {
            PeerRole::Unknown => self.max_untrusted_message_size.min(self.max_message_size),
            _ => self.max_message_size,
        }
    }

    /// The payload bytes each outbound lane to a peer of `role` holds:
    /// `max_untrusted_queued_bytes` (capped at `max_queued_bytes`) for [`PeerRole::Unknown`],
    /// `max_queued_bytes` for every role of the trusted set.
    pub fn max_queued_bytes_for(&self, role: PeerRole) -> usize {
        match role {
            PeerRole::Unknown => self.max_untrusted_queued_bytes.min(self.max_queued_bytes),
            _ => self.max_queued_bytes,
        }
    }

    /// The stream limits inbound streams from a peer of `role` are held to: the frame size,
    /// and [`max_inbound_message_size`](Self::max_inbound_message_size).
    pub fn inbound_stream_limits(&self, role: PeerRole) -> Result<StreamLimits, Error> {
        StreamLimits::new(self.max_frame_size, self.max_inbound_message_size(role)).map_err(
            |source| Error::InvalidConfig {
                reason: "max_frame_size and the inbound message size are inconsistent",
                source: Some(source),
            },
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE_BYTES,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE_BYTES,
            max_untrusted_message_size: DEFAULT_MAX_UNTRUSTED_MESSAGE_SIZE_BYTES,
            stream_reassembly_timeout: Duration::from_secs(DEFAULT_STREAM_REASSEMBLY_TIMEOUT_SECS),
            outbound_lane_capacity: DEFAULT_OUTBOUND_LANE_CAPACITY,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_untrusted_queued_bytes: DEFAULT_MAX_UNTRUSTED_QUEUED_BYTES,
            max_concurrent_outbound_rpcs: DEFAULT_MAX_CONCURRENT_OUTBOUND_RPCS,
            max_concurrent_inbound_rpcs: DEFAULT_MAX_CONCURRENT_INBOUND_RPCS,
            inbound_rpc_timeout: Duration::from_secs(DEFAULT_INBOUND_RPC_TIMEOUT_SECS),
            writer_close_timeout: Duration::from_secs(DEFAULT_WRITER_CLOSE_TIMEOUT_SECS),
            rate_limit: RateLimitConfig::default(),
            inbound_byte_budget: DEFAULT_INBOUND_BYTE_BUDGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are AptosNet's and pass validation.
    #[test]
    fn defaults_are_aptosnet_values_and_valid() {
        let config = Config::default();
        assert_eq!(config.max_frame_size, 4 * 1024 * 1024);
        assert_eq!(config.max_message_size, 64 * 1024 * 1024);
        assert_eq!(config.outbound_lane_capacity, 1024);
        assert_eq!(config.max_queued_bytes, 32 * 1024 * 1024);
        assert_eq!(config.max_untrusted_queued_bytes, 8 * 1024 * 1024);
        assert_eq!(config.max_concurrent_outbound_rpcs, 100);
        assert_eq!(config.max_concurrent_inbound_rpcs, 100);
        assert_eq!(config.inbound_rpc_timeout, Duration::from_secs(10));
        assert_eq!(config.max_untrusted_message_size, 8 * 1024 * 1024);
        assert_eq!(config.stream_reassembly_timeout, Duration::from_secs(30));
        config.validate().unwrap();
        assert_eq!(config.stream_limits().unwrap(), StreamLimits::default());
    }

    /// Inconsistent sizes and empty lanes are refused, with the stream limits' cause chained.
    #[test]
    fn invalid_sizes_and_empty_lanes_are_refused() {
        let tiny_frame = Config {
            max_frame_size: 64,
            ..Config::default()
        };
        let err = tiny_frame.validate().unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                source: Some(wire::Error::InvalidStreamLimits { .. }),
                ..
            }
        ));
        assert!(std::error::Error::source(&err).is_some());

        let no_lane = Config {
            outbound_lane_capacity: 0,
            ..Config::default()
        };
        assert!(matches!(
            no_lane.validate(),
            Err(Error::InvalidConfig { source: None, .. })
        ));
        let no_bytes = Config {
            max_queued_bytes: 0,
            ..Config::default()
        };
        assert!(no_bytes.validate().is_err());
        let no_untrusted_bytes = Config {
            max_untrusted_queued_bytes: 0,
            ..Config::default()
        };
        assert!(no_untrusted_bytes.validate().is_err());
        let tiny_untrusted = Config {
            max_untrusted_message_size: DEFAULT_MAX_FRAME_SIZE_BYTES - 1,
            ..Config::default()
        };
        assert!(tiny_untrusted.validate().is_err());
        let no_timeout = Config {
            stream_reassembly_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(no_timeout.validate().is_err());
    }

    /// Peers outside the trusted set get the smaller maximum, capped at the general one;
    /// every trusted role gets the general one.
    #[test]
    fn untrusted_peers_get_the_smaller_maximum() {
        let config = Config::default();
        assert_eq!(
            config.max_inbound_message_size(PeerRole::Unknown),
            8 * 1024 * 1024
        );
        let limits = config.inbound_stream_limits(PeerRole::Unknown).unwrap();
        assert_eq!(limits.max_fragments(), 2);
        for role in [PeerRole::Validator, PeerRole::Downstream, PeerRole::Known] {
            assert_eq!(config.max_inbound_message_size(role), 64 * 1024 * 1024);
        }
        let small = Config {
            max_frame_size: 1024,
            max_message_size: 4096,
            ..Config::default()
        };
        small.validate().unwrap();
        assert_eq!(small.max_inbound_message_size(PeerRole::Unknown), 4096);
        // The same for the outbound lanes' byte budget.
        assert_eq!(
            config.max_queued_bytes_for(PeerRole::Unknown),
            8 * 1024 * 1024
        );
        for role in [PeerRole::Validator, PeerRole::Downstream, PeerRole::Known] {
            assert_eq!(config.max_queued_bytes_for(role), 32 * 1024 * 1024);
        }
        let tight = Config {
            max_queued_bytes: 100,
            ..Config::default()
        };
        assert_eq!(tight.max_queued_bytes_for(PeerRole::Unknown), 100);
    }

    /// The serde form names the timeouts in milliseconds, fills missing fields with the
    /// defaults and refuses unknown ones.
    #[test]
    fn serde_form_uses_milliseconds_and_defaults() {
        let config: Config = serde_json::from_str(
            r#"{ "outbound_lane_capacity": 8, "inbound_rpc_timeout_ms": 2500 }"#,
        )
        .unwrap();
        assert_eq!(config.outbound_lane_capacity, 8);
        assert_eq!(config.inbound_rpc_timeout, Duration::from_millis(2500));
        assert_eq!(config.max_frame_size, DEFAULT_MAX_FRAME_SIZE_BYTES);
        let text = serde_json::to_string(&Config::default()).unwrap();
        assert!(
            text.contains(r#""writer_close_timeout_ms":30000"#),
            "{text}"
        );
        assert!(
            text.contains(r#""stream_reassembly_timeout_ms":30000"#),
            "{text}"
        );
        assert!(serde_json::from_str::<Config>(r#"{ "lanes": 3 }"#).is_err());
    }

    /// The rate limits are on by default, read from their own section with milliseconds, and
    /// checked by `validate`.
    #[test]
    fn rate_limit_section_defaults_and_serde() {
        let config = Config::default();
        assert!(config.rate_limit.enabled);
        assert_eq!(config.inbound_byte_budget, 256 * 1024 * 1024);
        let config: Config = serde_json::from_str(
            r#"{ "rate_limit": { "ban_duration_ms": 1000,
                 "mempool": { "messages_per_sec": 7, "bytes_per_sec": 9 } } }"#,
        )
        .unwrap();
        assert_eq!(config.rate_limit.ban_duration, Duration::from_secs(1));
        assert_eq!(config.rate_limit.mempool.messages_per_sec, 7);
        assert_eq!(
            config.rate_limit.consensus,
            RateLimitConfig::default().consensus
        );
        config.validate().unwrap();
        let bad: Config = serde_json::from_str(r#"{ "rate_limit": { "burst_ms": 0 } }"#).unwrap();
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<Config>(r#"{ "rate_limit": { "x": 1 } }"#).is_err());
    }
}
