//! [`Priority`]: the two outbound lanes, and which protocols take which.

use std::fmt;

use wire::ProtocolId;

/// Which outbound lane a message takes. The writer always empties the high lane before it
/// takes from the low one.
///
/// The wire has a priority byte too, but AptosNet always writes 0 and ignores what it reads,
/// so we do the same: priority is a local scheduling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Consensus, health checks and RPC responses: latency-sensitive, small.
    High,
    /// Everything else: bulk transfers, mempool, state sync.
    Low,
}

impl Priority {
    /// Both lanes, high first: the order the writer serves them in.
    pub const ALL: [Self; 2] = [Self::High, Self::Low];

    /// The lane a protocol's messages take: consensus (ids 0, 1, 6, 7, 11, 12), the health
    /// checker (5) and the consensus observer (27, 28) are high; everything else is low.
    /// (RPC responses are always high, whatever their protocol.)
    pub const fn for_protocol(protocol: ProtocolId) -> Self {
        match protocol {
            ProtocolId::CONSENSUS_RPC_BCS
            | ProtocolId::CONSENSUS_DIRECT_SEND_BCS
            | ProtocolId::HEALTH_CHECKER_RPC
            | ProtocolId::CONSENSUS_DIRECT_SEND_JSON
            | ProtocolId::CONSENSUS_RPC_JSON
            | ProtocolId::CONSENSUS_RPC_COMPRESSED
            | ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED
            | ProtocolId::CONSENSUS_OBSERVER
            | ProtocolId::CONSENSUS_OBSERVER_RPC => Self::High,
            _ => Self::Low,
        }
    }

    /// `"high"` or `"low"`: the `lane` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Low => "low",
        }
    }

    /// The priority byte we write on the wire: always 0, as AptosNet does.
    pub(crate) const fn wire_byte(self) -> u8 {
        0
    }

    /// The lane's position in per-lane arrays, high first.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::High => 0,
            Self::Low => 1,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes of the spec: consensus, health checker and consensus observer are high.
    #[test]
    fn protocol_priorities_follow_the_spec() {
        let high: Vec<u8> = (0..=255)
            .map(ProtocolId::from_wire)
            .filter(|&id| Priority::for_protocol(id) == Priority::High)
            .map(ProtocolId::as_u8)
            .collect();
        assert_eq!(high, [0, 1, 5, 6, 7, 11, 12, 27, 28]);
        assert_eq!(Priority::High.wire_byte(), 0);
        assert_eq!(Priority::Low.to_string(), "low");
    }
}
