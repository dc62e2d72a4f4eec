//! [`Disconnect`]: the one message peerlane sends on `PeerlaneDisconnect` (64) before it closes
//! or refuses a connection, so that the other side can read why. Pure: the bytes and the
//! mapping onto the connectivity manager's [`RemoteRefusal`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connectivity_manager::RemoteRefusal;
use serde::{Deserialize, Serialize};
use wire::ProtocolId;

/// The message on `PeerlaneDisconnect` (64), a direct send, plain BCS: the reason's variant
/// tag, then its fields (`wire-format.md` §8). `Disconnect { reason: Full }` is `04`;
/// `Banned` with an expiry is `05 01` and the expiry in Unix milliseconds as a little-endian
/// u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Disconnect {
    /// Why the sender closes the connection.
    pub reason: DisconnectCode,
}

/// Why a peer closes or refuses a connection: AElf's handshake errors, plus AptosNet's
/// refusals. The tag of each variant is its place in this list, from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisconnectCode {
    /// 0: the peers follow different chains (another genesis in their chain status).
    ChainMismatch,
    /// 1: no protocol in common.
    ProtocolMismatch,
    /// 2: a signature did not verify.
    BadSignature,
    /// 3: the peers are connected already; this connection lost the tie.
    RepeatedConnection,
    /// 4: the sender is at its connection limits.
    Full,
    /// 5: the sender banned the receiver, until `until_unix_ms` (Unix time in milliseconds)
    /// or, without it, until the sender lifts the ban.
    Banned {
        /// When the ban ends, if it ends by itself.
        until_unix_ms: Option<u64>,
    },
    /// 6: the connection is not one the sender accepts (the peer left its trusted set, say).
    InvalidConnection,
    /// 7: the receiver did not answer in time (health checks).
    Timeout,
}

/// The largest `Disconnect` payload read: the biggest is 10 bytes (`Banned` with an expiry).
/// Anything longer is malformed, refused before decoding.
pub const MAX_DISCONNECT_BYTES: usize = 16;

impl DisconnectCode {
    /// The lowercase name: logs and the `reason` label of
    /// `peerlane_disconnect_notices_total`.
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

    /// A ban that ends at `expiry` (a wall-clock time), or never (`None`).
    pub fn banned_until(expiry: Option<SystemTime>) -> Self {
        Self::Banned {
            until_unix_ms: expiry.map(|at| {
                let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
                u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }

    /// What the connectivity manager makes of it, read at `now`: a ban's expiry becomes the
    /// time left (zero if it is past).
    pub fn to_refusal(self, now: SystemTime) -> RemoteRefusal {
        match self {
            Self::ChainMismatch => RemoteRefusal::ChainMismatch,
            Self::ProtocolMismatch => RemoteRefusal::ProtocolMismatch,
            Self::BadSignature => RemoteRefusal::BadSignature,
            Self::RepeatedConnection => RemoteRefusal::RepeatedConnection,
            Self::Full => RemoteRefusal::Full,
            Self::Banned { until_unix_ms } => RemoteRefusal::Banned {
                remaining: until_unix_ms.map(|ms| {
                    let until = UNIX_EPOCH + Duration::from_millis(ms);
                    until.duration_since(now).unwrap_or(Duration::ZERO)
                }),
            },
            Self::InvalidConnection => RemoteRefusal::InvalidConnection,
            Self::Timeout => RemoteRefusal::Timeout,
        }
    }
}

/// Why a `Disconnect` payload could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadDisconnect {
    /// Longer than [`MAX_DISCONNECT_BYTES`].
    #[error("disconnect notice of {0} bytes, more than {MAX_DISCONNECT_BYTES}")]
    TooLong(usize),
    /// Not a `Disconnect` in BCS (an unknown tag, say).
    #[error("disconnect notice is not valid BCS")]
    Malformed,
}

/// Decodes a `Disconnect` payload, refusing a long one before decoding.
pub(crate) fn decode(payload: &[u8]) -> Result<Disconnect, BadDisconnect> {
    if payload.len() > MAX_DISCONNECT_BYTES {
        return Err(BadDisconnect::TooLong(payload.len()));
    }
    ProtocolId::PEERLANE_DISCONNECT
        .from_bytes(payload)
        .map_err(|_| BadDisconnect::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `wire-format.md` §8, both ways.
    #[test]
    fn bytes_match_the_wire_format() {
        let vectors: [(DisconnectCode, &[u8]); 9] = [
            (DisconnectCode::ChainMismatch, &[0x00]),
            (DisconnectCode::ProtocolMismatch, &[0x01]),
            (DisconnectCode::BadSignature, &[0x02]),
            (DisconnectCode::RepeatedConnection, &[0x03]),
            (DisconnectCode::Full, &[0x04]),
            (
                DisconnectCode::Banned {
                    until_unix_ms: None,
                },
                &[0x05, 0x00],
            ),
            (
                DisconnectCode::Banned {
                    until_unix_ms: Some(0x0102_0304_0506_0708),
                },
                &[0x05, 0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
            ),
            (DisconnectCode::InvalidConnection, &[0x06]),
            (DisconnectCode::Timeout, &[0x07]),
        ];
        for (reason, bytes) in vectors {
            let message = Disconnect { reason };
            let encoded = ProtocolId::PEERLANE_DISCONNECT.to_bytes(&message).unwrap();
            assert_eq!(encoded.as_ref(), bytes, "{reason:?}");
            assert_eq!(decode(bytes).unwrap(), message);
        }
    }

    /// The example of `wire-format.md` §8.1: a ban until 1,500,000,000,000 ms.
    #[test]
    fn ban_example_matches_the_wire_format() {
        let message = Disconnect {
            reason: DisconnectCode::Banned {
                until_unix_ms: Some(1_500_000_000_000),
            },
        };
        let bytes = ProtocolId::PEERLANE_DISCONNECT.to_bytes(&message).unwrap();
        assert_eq!(
            bytes.as_ref(),
            [0x05, 0x01, 0x00, 0x98, 0xf7, 0x3e, 0x5d, 0x01, 0x00, 0x00]
        );
    }

    /// Unknown tags, truncated expiries, trailing bytes and long payloads are refused.
    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(decode(&[0x08]), Err(BadDisconnect::Malformed));
        assert_eq!(decode(&[0x05, 0x01, 0x00]), Err(BadDisconnect::Malformed));
        assert_eq!(decode(&[0x04, 0x00]), Err(BadDisconnect::Malformed));
        assert_eq!(decode(&[]), Err(BadDisconnect::Malformed));
        assert_eq!(decode(&[0x04; 17]), Err(BadDisconnect::TooLong(17)));
    }

    /// A ban's expiry becomes the time left when it is read, and a past one none.
    #[test]
    fn ban_expiry_becomes_time_left() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let code = DisconnectCode::banned_until(Some(now + Duration::from_secs(90)));
        assert_eq!(
            code.to_refusal(now),
            RemoteRefusal::Banned {
                remaining: Some(Duration::from_secs(90))
            }
        );
        assert_eq!(
            code.to_refusal(now + Duration::from_secs(100)),
            RemoteRefusal::Banned {
                remaining: Some(Duration::ZERO)
            }
        );
        assert_eq!(
            DisconnectCode::banned_until(None).to_refusal(now),
            RemoteRefusal::Banned { remaining: None }
        );
    }
}
