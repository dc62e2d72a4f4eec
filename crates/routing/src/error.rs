//! [`Error`]: everything the routing layer refuses, as one enum.

use netcore::PeerId;

/// Why an edge, a proposal, a routed message or a ROUTING_SYNC message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The two ends of an edge are the same peer, or not in ascending order.
    #[error("edge ends are not two distinct peers in ascending order")]
    EdgeEndsNotOrdered,
    /// An odd (active) nonce without both signatures, or an even (removed) one without
    /// exactly the remover's.
    #[error("nonce {nonce} does not match the edge's signatures")]
    NonceDoesNotMatchProof {
        /// The nonce.
        nonce: u64,
    },
    /// A nonce too far ahead of the local clock.
    #[error("nonce {nonce} is more than {max_future_ms} ms ahead of {now_ms}")]
    NonceInFuture {
        /// The nonce.
        nonce: u64,
        /// The local clock, ms since the epoch.
        now_ms: u64,
        /// The allowed lead.
        max_future_ms: u64,
    },
    /// A nonce of the wrong parity for what it is used for (a proposal needs an odd one).
    #[error("nonce {nonce} has the wrong parity")]
    NonceParity {
        /// The nonce.
        nonce: u64,
    },
    /// A nonce not above the one already known for the edge.
    #[error("nonce {nonce} is not above the known {known}")]
    NonceNotNewer {
        /// The nonce.
        nonce: u64,
        /// The nonce we hold.
        known: u64,
    },
    /// A signature that does not verify against its signer.
    #[error("bad signature of {signer:?}")]
    BadSignature {
        /// Who was meant to have signed.
        signer: PeerId,
    },
    /// The local node is not an end of the edge it was asked to sign.
    #[error("the local node is not an end of this edge")]
    NotAnEnd,
    /// A routed message whose TTL ran out.
    #[error("routed message TTL exhausted")]
    TtlExhausted,
    /// A `RoutingConfig` whose settings contradict each other.
    #[error("invalid routing config: {0}")]
    InvalidConfig(&'static str),
    /// A message whose encoding is not valid BCS for its type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message that declares more items than the limit, refused before decoding them.
    #[error("message declares {declared} items, limit {limit}")]
    TooManyItems {
        /// What the length prefix says.
        declared: u64,
        /// The limit.
        limit: usize,
    },
}
