//! [`Error`]: what can go wrong loading a scenario or running it.

/// A scenario that does not load, or a run that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario file is not valid TOML of the scenario's shape.
    #[error("scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// The scenario parses but breaks a rule.
    #[error("scenario: {field}: {reason}")]
    Invalid {
        /// The key at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// A node's software failed to start or failed while running.
    #[error("node {node}: {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// What its software reported.
        reason: String,
    },
    /// The simulator stopped the run (a host's software panicked or returned an error).
    #[error("simulation: {0}")]
    Simulation(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
