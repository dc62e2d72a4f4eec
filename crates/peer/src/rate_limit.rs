//! Inbound rate limits, pure logic: the [`TokenBucket`], the per-protocol table
//! ([`RateLimitConfig`], [`TrafficClass`]), the [`InboundRateLimiter`] of one connection and
//! the [`AbuseTracker`] that turns sustained drops into a disconnect. No clock, no task, no
//! metrics: `now` is an input and the caller acts on the [`Verdict`] (the reader task drops,
//! counts and closes; its log lines go through `netcore::LogLimiter`).
//!
//! Only what the remote sends on its own initiative is limited: DirectSend messages and RPC
//! requests. RPC responses answer our own requests (at most `max_concurrent_outbound_rpcs` at
//! a time), and `Error` messages are counted and cost nothing more.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use wire::ProtocolId;

use crate::error::Error;

/// A token bucket: `capacity` tokens at most, refilled at `rate` tokens per second.
///
/// A cost is taken when the bucket holds at least `min(cost, capacity)` tokens, and may leave
/// it in debt: so a message larger than the whole bucket (a state sync chunk of several MiB
/// against a smaller byte bucket) still passes when the bucket is full, and its cost is paid
/// back before the next one passes. The long-run rate is `rate` either way.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate × burst` tokens (at least one) refilled at `rate` per second.
    pub fn new(rate: u64, burst: Duration, now: Instant) -> Self {
        let rate = rate as f64;
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes `cost` tokens if the bucket allows it (see the type's docs); whether it did.
    pub fn try_take(&mut self, cost: u64, now: Instant) -> bool {
        if self.allows(cost, now) {
            self.tokens -= cost as f64;
            true
        } else {
            false
        }
    }

    /// Whether [`try_take`](Self::try_take) would take `cost` now, without taking it.
    pub fn allows(&mut self, cost: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= (cost as f64).min(self.capacity)
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went backwards (it does not, with tokio's) refills nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
    }
}

/// The rate one protocol of one connection may send at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolRate {
    /// Messages (DirectSend and RPC requests) per second.
    pub messages_per_sec: u64,
    /// Payload bytes per second.
    pub bytes_per_sec: u64,
}

impl ProtocolRate {
    /// A rate of `messages_per_sec` messages and `bytes_per_sec` bytes per second.
    pub const fn new(messages_per_sec: u64, bytes_per_sec: u64) -> Self {
        Self {
            messages_per_sec,
            bytes_per_sec,
        }
    }
}

/// Which row of the table a protocol's limits come from: protocols with the same traffic
/// share the numbers (each protocol still has its own buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrafficClass {
    /// Consensus, consensus observer, DKG and JWK consensus: votes, proposals, batches.
    Consensus,
    /// Mempool transaction broadcasts and RPCs.
    Mempool,
    /// State sync direct sends and storage service requests.
    StateSync,
    /// Health checker pings.
    HealthChecker,
    /// Everything else: discovery, peer monitoring, netbench, custom protocols.
    Other,
}

impl TrafficClass {
    /// The class of `protocol`.
    pub const fn of(protocol: ProtocolId) -> Self {
        match protocol {
            ProtocolId::CONSENSUS_RPC_BCS
            | ProtocolId::CONSENSUS_DIRECT_SEND_BCS
            | ProtocolId::CONSENSUS_DIRECT_SEND_JSON
            | ProtocolId::CONSENSUS_RPC_JSON
            | ProtocolId::CONSENSUS_RPC_COMPRESSED
            | ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED
            | ProtocolId::DKG_DIRECT_SEND_COMPRESSED
            | ProtocolId::DKG_DIRECT_SEND_BCS
            | ProtocolId::DKG_DIRECT_SEND_JSON
            | ProtocolId::DKG_RPC_COMPRESSED
            | ProtocolId::DKG_RPC_BCS
            | ProtocolId::DKG_RPC_JSON
            | ProtocolId::JWK_CONSENSUS_DIRECT_SEND_COMPRESSED
            | ProtocolId::JWK_CONSENSUS_DIRECT_SEND_BCS
            | ProtocolId::JWK_CONSENSUS_DIRECT_SEND_JSON
            | ProtocolId::JWK_CONSENSUS_RPC_COMPRESSED
            | ProtocolId::JWK_CONSENSUS_RPC_BCS
            | ProtocolId::JWK_CONSENSUS_RPC_JSON
            | ProtocolId::CONSENSUS_OBSERVER
            | ProtocolId::CONSENSUS_OBSERVER_RPC => Self::Consensus,
            ProtocolId::MEMPOOL_DIRECT_SEND | ProtocolId::MEMPOOL_RPC => Self::Mempool,
            ProtocolId::STATE_SYNC_DIRECT_SEND | ProtocolId::STORAGE_SERVICE_RPC => Self::StateSync,
            ProtocolId::HEALTH_CHECKER_RPC => Self::HealthChecker,
            _ => Self::Other,
        }
    }
}

/// What the rate limiter counted against: the `kind` label of
/// `peerlane_peer_rate_limited_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// The protocol's messages per second.
    Messages,
    /// The protocol's payload bytes per second.
    Bytes,
}

impl LimitKind {
    /// The snake_case name, also the metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Bytes => "bytes",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default burst: how many seconds' worth of a protocol's rate may arrive at once.
pub const DEFAULT_RATE_LIMIT_BURST_MS: u64 = 2_000;

/// Default drops within [`DEFAULT_ABUSE_WINDOW_MS`] that close the connection.
pub const DEFAULT_ABUSE_MAX_DROPS: u64 = 10_000;

/// Default window over which drops are counted towards a disconnect.
pub const DEFAULT_ABUSE_WINDOW_MS: u64 = 10_000;

/// Default time a peer closed for rate limiting stays banned.
pub const DEFAULT_RATE_LIMIT_BAN_MS: u64 = 5 * 60 * 1000;

/// Default node-wide budget of inbound payload bytes decoded and not yet taken by the
/// applications.
pub const DEFAULT_INBOUND_BYTE_BUDGET: usize = 256 * 1024 * 1024;

/// The inbound rate limits of every connection; the `rate_limit` section of
/// [`Config`](crate::Config). See docs/configuration.md for the reasons behind the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether inbound messages are rate limited at all. Default on.
    pub enabled: bool,
    /// How much of a protocol's rate may arrive at once: each bucket holds `rate × burst`.
    /// Default 2 s.
    #[serde(rename = "burst_ms", with = "netcore::serde_duration_ms")]
    pub burst: Duration,
    /// Consensus, consensus observer, DKG and JWK consensus protocols.
    pub consensus: ProtocolRate,
    /// Mempool protocols.
    pub mempool: ProtocolRate,
    /// State sync direct send and storage service requests.
    pub state_sync: ProtocolRate,
    /// The health checker.
    pub health_checker: ProtocolRate,
    /// Every other protocol, known or custom.
    pub other: ProtocolRate,
    /// Drops within `abuse_window` that close the connection with
    /// [`DisconnectReason::RateLimited`](crate::DisconnectReason::RateLimited): a burst over
    /// the limit costs messages, only a sustained flood costs the connection. 0 never closes.
    pub abuse_max_drops: u64,
    /// The window `abuse_max_drops` is counted over. Default 10 s.
    #[serde(rename = "abuse_window_ms", with = "netcore::serde_duration_ms")]
    pub abuse_window: Duration,
    /// How long the facade bans a peer it closed for rate limiting. 0 does not ban.
    /// Default 5 min.
    #[serde(rename = "ban_duration_ms", with = "netcore::serde_duration_ms")]
    pub ban_duration: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            enabled: true,
            burst: Duration::from_millis(DEFAULT_RATE_LIMIT_BURST_MS),
            consensus: ProtocolRate::new(2_000, 64 * MIB),
            mempool: ProtocolRate::new(1_000, 32 * MIB),
            state_sync: ProtocolRate::new(500, 128 * MIB),
            health_checker: ProtocolRate::new(10, 64 * 1024),
            other: ProtocolRate::new(500, 16 * MIB),
            abuse_max_drops: DEFAULT_ABUSE_MAX_DROPS,
            abuse_window: Duration::from_millis(DEFAULT_ABUSE_WINDOW_MS),
            ban_duration: Duration::from_millis(DEFAULT_RATE_LIMIT_BAN_MS),
        }
    }
}

impl RateLimitConfig {
    /// No limits at all (for benchmarks and trusted links).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The rate of `class`.
    pub const fn rate(&self, class: TrafficClass) -> ProtocolRate {
        match class {
            TrafficClass::Consensus => self.consensus,
            TrafficClass::Mempool => self.mempool,
            TrafficClass::StateSync => self.state_sync,
            TrafficClass::HealthChecker => self.health_checker,
            TrafficClass::Other => self.other,
        }
    }

    /// Every rate is positive, the burst too, and a closing rule has a window.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason| {
            Err(Error::InvalidConfig {
                reason,
                source: None,
            })
        };
        if !self.enabled {
            return Ok(());
        }
        if self.burst.is_zero() {
            return invalid("rate_limit.burst_ms must be positive");
        }
        let rates = [
            self.consensus,
            self.mempool,
            self.state_sync,
            self.health_checker,
            self.other,
        ];
        if rates
            .iter()
            .any(|rate| rate.messages_per_sec == 0 || rate.bytes_per_sec == 0)
        {
            return invalid(
                "rate_limit: every messages_per_sec and bytes_per_sec must be positive",
            );
        }
        if self.abuse_max_drops > 0 && self.abuse_window.is_zero() {
            return invalid("rate_limit.abuse_window_ms must be positive");
        }
        Ok(())
    }
}

/// What the limiter says about one inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits: deliver it.
    Admit,
    /// Over the limit: drop it (an RPC request unanswered), and count it under `kind`.
    Drop {
        /// Which limit it went over.
        kind: LimitKind,
        /// The drops add up to sustained abuse: close the connection
        /// ([`DisconnectReason::RateLimited`](crate::DisconnectReason::RateLimited)). Once
        /// this has been said, every later message is dropped too.
        close: bool,
    },
}

/// Counts drops in fixed windows; more than `max_drops` in one window is sustained abuse.
#[derive(Clone, Debug)]
pub struct AbuseTracker {
    max_drops: u64,
    window: Duration,
    window_start: Instant,
    drops: u64,
}

impl AbuseTracker {
    /// A tracker that reports abuse at the `max_drops + 1`th drop of a `window` (never if
    /// `max_drops` is 0).
    pub fn new(max_drops: u64, window: Duration, now: Instant) -> Self {
        Self {
            max_drops,
            window,
            window_start: now,
            drops: 0,
        }
    }

    /// Records one drop; whether the drops now amount to sustained abuse.
    pub fn record_drop(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.drops = 0;
        }
        self.drops = self.drops.saturating_add(1);
        self.max_drops > 0 && self.drops > self.max_drops
    }
}

/// One protocol's two buckets.
#[derive(Clone, Debug)]
struct ProtocolBuckets {
    protocol: ProtocolId,
    messages: TokenBucket,
    bytes: TokenBucket,
}

/// The inbound rate limits of one connection: two buckets per protocol seen (made on its
/// first message, so at most 256), and the abuse tracker.
#[derive(Clone, Debug)]
pub struct InboundRateLimiter {
    config: RateLimitConfig,
    /// Few protocols are in use on one connection: a short list beats a 256-entry table in
    /// memory per idle connection, and a linear scan of a handful is as fast as a hash.
    buckets: Vec<ProtocolBuckets>,
    abuse: AbuseTracker,
    /// Set once abuse was reported: everything is dropped from then on.
    closing: bool,
}

impl InboundRateLimiter {
    /// A limiter with full buckets.
    pub fn new(config: RateLimitConfig, now: Instant) -> Self {
        let abuse = AbuseTracker::new(config.abuse_max_drops, config.abuse_window, now);
        Self {
            config,
            buckets: Vec::new(),
            abuse,
            closing: false,
        }
    }

    /// Whether the limits are on (when off, every message passes and `now` is not needed).
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether a message of `len` payload bytes on `protocol` may pass now. An admitted
    /// message takes one message token and `len` byte tokens; a dropped one takes none.
    pub fn check(&mut self, protocol: ProtocolId, len: usize, now: Instant) -> Verdict {
        if !self.config.enabled {
            return Verdict::Admit;
        }
        let kind = if self.closing {
            LimitKind::Messages
        } else {
            let buckets = self.buckets_of(protocol, now);
            // Peek at the byte bucket first so that a refused message takes no message token.
            let bytes = len as u64;
            if !buckets.bytes.allows(bytes, now) {
                LimitKind::Bytes
            } else if !buckets.messages.try_take(1, now) {
                LimitKind::Messages
            } else {
                buckets.bytes.try_take(bytes, now);
                return Verdict::Admit;
            }
        };
        if !self.closing && self.abuse.record_drop(now) {
            self.closing = true;
            return Verdict::Drop { kind, close: true };
        }
        Verdict::Drop { kind, close: false }
    }

    fn buckets_of(&mut self, protocol: ProtocolId, now: Instant) -> &mut ProtocolBuckets {
        let index = match self.buckets.iter().position(|b| b.protocol == protocol) {
            Some(index) => index,
            None => {
                let rate = self.config.rate(TrafficClass::of(protocol));
                self.buckets.push(ProtocolBuckets {
                    protocol,
                    messages: TokenBucket::new(rate.messages_per_sec, self.config.burst, now),
                    bytes: TokenBucket::new(rate.bytes_per_sec, self.config.burst, now),
                });
                self.buckets.len() - 1
            }
        };
        &mut self.buckets[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// A bucket passes its burst at once, then exactly its rate.
    #[test]
    fn bucket_passes_burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(2), t0);
        assert_eq!((0..25).filter(|_| bucket.try_take(1, t0)).count(), 20);
        // Half a second refills five tokens.
        assert_eq!(
            (0..25).filter(|_| bucket.try_take(1, at(t0, 500))).count(),
            5
        );
        // Never more than the capacity, however long it rested.
        assert_eq!(
            (0..50)
                .filter(|_| bucket.try_take(1, at(t0, 60_000)))
                .count(),
            20
        );
    }

    /// A cost above the capacity passes on a full bucket and leaves a debt paid back at the
    /// rate.
    #[test]
    fn oversized_cost_passes_on_a_full_bucket_and_leaves_debt() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, Duration::from_secs(1), t0);
        assert!(bucket.try_take(5_000, t0));
        assert!(!bucket.try_take(1, t0));
        // 4 000 of debt plus 1 000 to refill: five seconds.
        assert!(!bucket.try_take(5_000, at(t0, 4_999)));
        assert!(bucket.try_take(5_000, at(t0, 5_000)));
    }

    /// A clock that goes backwards refills nothing and does not panic.
    #[test]
    fn bucket_tolerates_an_earlier_now() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, Duration::from_secs(1), at(t0, 1_000));
        assert!(bucket.try_take(1, at(t0, 1_000)));
        assert!(!bucket.try_take(1, t0));
    }

    #[test]
    fn protocols_fall_in_their_classes() {
        assert_eq!(
            TrafficClass::of(ProtocolId::CONSENSUS_RPC_BCS),
            TrafficClass::Consensus
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::CONSENSUS_OBSERVER),
            TrafficClass::Consensus
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::MEMPOOL_DIRECT_SEND),
            TrafficClass::Mempool
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::STORAGE_SERVICE_RPC),
            TrafficClass::StateSync
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::HEALTH_CHECKER_RPC),
            TrafficClass::HealthChecker
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::NETBENCH_DIRECT_SEND),
            TrafficClass::Other
        );
        assert_eq!(
            TrafficClass::of(ProtocolId::from_wire(200)),
            TrafficClass::Other
        );
        // Every known id has a class, consensus ids included.
        let consensus = ProtocolId::KNOWN
            .iter()
            .filter(|id| TrafficClass::of(**id) == TrafficClass::Consensus)
            .count();
        assert_eq!(consensus, 20);
    }

    fn small() -> RateLimitConfig {
        RateLimitConfig {
            burst: Duration::from_secs(1),
            health_checker: ProtocolRate::new(2, 100),
            mempool: ProtocolRate::new(100, 1_000),
            abuse_max_drops: 5,
            abuse_window: Duration::from_secs(10),
            ..RateLimitConfig::default()
        }
    }

    /// Each protocol has its own buckets: flooding one leaves the other's intact.
    #[test]
    fn limiter_keeps_protocols_apart_and_counts_by_kind() {
        let t0 = Instant::now();
        let mut limiter = InboundRateLimiter::new(small(), t0);
        let ping = ProtocolId::HEALTH_CHECKER_RPC;
        assert_eq!(limiter.check(ping, 10, t0), Verdict::Admit);
        assert_eq!(limiter.check(ping, 10, t0), Verdict::Admit);
        assert_eq!(
            limiter.check(ping, 10, t0),
            Verdict::Drop {
                kind: LimitKind::Messages,
                close: false
            }
        );
        // Mempool: 1 000 bytes a second; a 1 000-byte message empties it.
        let mempool = ProtocolId::MEMPOOL_DIRECT_SEND;
        assert_eq!(limiter.check(mempool, 1_000, t0), Verdict::Admit);
        assert_eq!(
            limiter.check(mempool, 1, t0),
            Verdict::Drop {
                kind: LimitKind::Bytes,
                close: false
            }
        );
        // A second later both protocols pass again.
        assert_eq!(limiter.check(ping, 10, at(t0, 1_000)), Verdict::Admit);
        assert_eq!(limiter.check(mempool, 10, at(t0, 1_000)), Verdict::Admit);
    }

    /// The sixth drop within the window closes; then everything is dropped, and `close` is
    /// said once.
    #[test]
    fn sustained_drops_close_once() {
        let t0 = Instant::now();
        let mut limiter = InboundRateLimiter::new(small(), t0);
        let ping = ProtocolId::HEALTH_CHECKER_RPC;
        let verdicts: Vec<Verdict> = (0..10).map(|_| limiter.check(ping, 1, t0)).collect();
        let closes = verdicts
            .iter()
            .position(|v| matches!(v, Verdict::Drop { close: true, .. }));
        assert_eq!(closes, Some(7), "{verdicts:?}");
        // Even a protocol with room is dropped once closing.
        assert!(matches!(
            limiter.check(ProtocolId::MEMPOOL_DIRECT_SEND, 1, at(t0, 5_000)),
            Verdict::Drop { close: false, .. }
        ));
    }

    /// Drops spread over windows never add up to abuse.
    #[test]
    fn drops_in_separate_windows_do_not_close() {
        let t0 = Instant::now();
        let mut tracker = AbuseTracker::new(3, Duration::from_secs(10), t0);
        for window in 0..5 {
            for _ in 0..3 {
                assert!(!tracker.record_drop(at(t0, window * 10_000)));
            }
        }
        assert!(tracker.record_drop(at(t0, 40_000)));
        let mut never = AbuseTracker::new(0, Duration::from_secs(1), t0);
        assert!((0..1000).all(|_| !never.record_drop(t0)));
    }

    #[test]
    fn disabled_limiter_admits_everything() {
        let t0 = Instant::now();
        let mut limiter = InboundRateLimiter::new(RateLimitConfig::disabled(), t0);
        assert!(
            (0..100_000).all(
                |_| limiter.check(ProtocolId::HEALTH_CHECKER_RPC, 1 << 20, t0) == Verdict::Admit
            )
        );
    }

    #[test]
    fn defaults_validate_and_zero_rates_do_not() {
        RateLimitConfig::default().validate().unwrap();
        RateLimitConfig::disabled().validate().unwrap();
        let zero = RateLimitConfig {
            mempool: ProtocolRate::new(0, 1),
            ..RateLimitConfig::default()
        };
        assert!(zero.validate().is_err());
        let no_burst = RateLimitConfig {
            burst: Duration::ZERO,
            ..RateLimitConfig::default()
        };
        assert!(no_burst.validate().is_err());
    }
}
