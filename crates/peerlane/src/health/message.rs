//! The health checker's messages on `HealthCheckerRpc` (5): [`HealthCheckerMsg`], [`Ping`]
//! and [`Pong`], AptosNet's byte for byte.

use serde::{Deserialize, Serialize};

/// The health checker's message on `HealthCheckerRpc` (5), AptosNet's `HealthCheckerMsg`.
///
/// In BCS: the variant's tag (0 for a ping, 1 for a pong), then the nonce as a little-endian
/// u32. `Ping(7)` is `00 07 00 00 00`, `Pong(7)` is `01 07 00 00 00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthCheckerMsg {
    /// A request; the answer is a [`Pong`] with the same nonce.
    Ping(Ping),
    /// The answer to a ping.
    Pong(Pong),
}

/// A health-check request: a nonce the sender chose at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ping(pub u32);

/// A health-check response: the nonce of the ping it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pong(pub u32);

#[cfg(test)]
mod tests {
    use wire::ProtocolId;

    use super::*;

    /// The messages are AptosNet's, byte for byte: the BCS variant tag (0 ping, 1 pong), then
    /// the nonce as a little-endian u32. Both encode and decode through protocol 5's encoding.
    #[test]
    fn ping_and_pong_bytes_are_aptosnets() {
        let protocol = ProtocolId::HEALTH_CHECKER_RPC;
        let vectors = [
            // tag 0 (Ping), nonce 7 as u32 LE
            (
                HealthCheckerMsg::Ping(Ping(7)),
                vec![0x00, 0x07, 0x00, 0x00, 0x00],
            ),
            // tag 1 (Pong), nonce 7 as u32 LE
            (
                HealthCheckerMsg::Pong(Pong(7)),
                vec![0x01, 0x07, 0x00, 0x00, 0x00],
            ),
            // tag 1 (Pong), nonce 0x12345678 as u32 LE
            (
                HealthCheckerMsg::Pong(Pong(0x1234_5678)),
                vec![0x01, 0x78, 0x56, 0x34, 0x12],
            ),
        ];
        for (message, bytes) in vectors {
            assert_eq!(protocol.to_bytes(&message).unwrap().as_ref(), bytes);
            assert_eq!(
                protocol.from_bytes::<HealthCheckerMsg>(&bytes).unwrap(),
                message
            );
        }
        // Tag 2 is no variant.
        assert!(
            protocol
                .from_bytes::<HealthCheckerMsg>(&[0x02, 0, 0, 0, 0])
                .is_err()
        );
    }
}
