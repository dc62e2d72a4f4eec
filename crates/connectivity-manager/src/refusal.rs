//! [`RemoteRefusal`]: why a peer said it closed or refused our connection (peerlane's
//! `Disconnect` message, protocol 64), and [`refusal_delay`], how long the policy waits
//! before dialing it again. Pure: no clock, no IO.

use std::time::Duration;

use crate::config::Config;

/// Why a peer closed or refused the connection, as it told us. The facade decodes it from
/// the peer's `Disconnect` message; the policy only uses it to decide when to dial again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoteRefusal {
    /// The peer follows another chain (another genesis).
    ChainMismatch,
    /// The peer could not agree on a protocol with us.
    ProtocolMismatch,
    /// The peer could not verify what we signed.
    BadSignature,
    /// The peer has a connection to us already.
    RepeatedConnection,
    /// The peer is full (its inbound limits).
    Full,
    /// The peer banned us, until `remaining` from when it told us (`None`: no expiry given).
    Banned {
        /// How long the ban still runs, as the peer said.
        remaining: Option<Duration>,
    },
    /// The peer found the connection invalid (not in its trusted set any more, say).
    InvalidConnection,
    /// The peer gave up waiting on us (health checks, set-up).
    Timeout,
}

impl RemoteRefusal {
    /// The lowercase name: the `reason` label of
    /// `peerlane_connectivity_remote_refusals_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ChainMismatch => "chain_mismatch",
            Self::ProtocolMismatch => "protocol_mismatch",
            Self::BadSignature => "bad_signature",
            Self::RepeatedConnection => "repeated_connection",
            Self::Full => "full",
            Self::Banned { .. } => "banned",
            Self::InvalidConnection => "invalid_connection",
            Self::Timeout => "timeout",
        }
    }
}

/// How long after `refusal` the peer must not be dialed, on top of its usual backoff; `None`
/// when the usual backoff is enough.
///
/// - `full`: [`Config::full_retry_delay`] (60 s): room comes back as its peers churn;
/// - `banned`: the ban's remaining time as the peer gave it, else
///   [`Config::banned_retry_delay`] (1 h);
/// - `chain_mismatch`, `protocol_mismatch`: [`Config::mismatch_retry_delay`] (1 h): it will
///   not change by itself soon;
/// - every other reason: the usual backoff.
///
/// Every delay is capped at [`Config::max_refusal_delay`] (24 h), so a peer cannot make us
/// forget it for ever by naming a ban that ends in the year 3000.
pub fn refusal_delay(refusal: RemoteRefusal, config: &Config) -> Option<Duration> {
    let delay = match refusal {
        RemoteRefusal::Full => config.full_retry_delay,
        RemoteRefusal::Banned {
            remaining: Some(remaining),
        } => remaining,
        RemoteRefusal::Banned { remaining: None } => config.banned_retry_delay,
        RemoteRefusal::ChainMismatch | RemoteRefusal::ProtocolMismatch => {
            config.mismatch_retry_delay
        }
        RemoteRefusal::BadSignature
        | RemoteRefusal::RepeatedConnection
        | RemoteRefusal::InvalidConnection
        | RemoteRefusal::Timeout => return None,
    };
    Some(delay.min(config.max_refusal_delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full waits a minute, a ban its expiry (capped at a day) or an hour without one,
    /// mismatches an hour, the rest nothing extra.
    #[test]
    fn each_reason_has_its_delay() {
        let config = Config::default();
        assert_eq!(
            refusal_delay(RemoteRefusal::Full, &config),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            refusal_delay(
                RemoteRefusal::Banned {
                    remaining: Some(Duration::from_secs(300))
                },
                &config
            ),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            refusal_delay(RemoteRefusal::Banned { remaining: None }, &config),
            Some(Duration::from_secs(3600))
        );
        // A hostile expiry far in the future is capped.
        assert_eq!(
            refusal_delay(
                RemoteRefusal::Banned {
                    remaining: Some(Duration::from_secs(u64::MAX / 2))
                },
                &config
            ),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            refusal_delay(RemoteRefusal::ChainMismatch, &config),
            Some(Duration::from_secs(3600))
        );
        for reason in [
            RemoteRefusal::BadSignature,
            RemoteRefusal::RepeatedConnection,
            RemoteRefusal::InvalidConnection,
            RemoteRefusal::Timeout,
        ] {
            assert_eq!(refusal_delay(reason, &config), None, "{reason:?}");
        }
    }
}
