//! [`Error`]: why a consensus actor cannot be set up.

use wire::PeerId;

/// Why [`Consensus::new`](crate::Consensus::new) refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of [`ConsensusConfig`](crate::ConsensusConfig) breaks a rule.
    #[error("invalid consensus config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// This node is not in the validator set.
    #[error("{peer_id} is not one of the validators")]
    NotAValidator {
        /// This node.
        peer_id: PeerId,
    },
}
