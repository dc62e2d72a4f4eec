//! [`MeasuredScores`]: the facade's in-memory [`PeerScores`] for the connectivity manager,
//! from what [`PeersAndMetadata`] measures. A persistent peer store can implement the same
//! trait later and replace it.
//!
//! - RTT: the last health-check round trip, on the current connection or remembered from the
//!   last one.
//! - Score (higher is better), for choosing which inbound peer to close above the target
//!   range: minus the RTT in milliseconds (minus 10,000 when never measured: a peer that
//!   never answered a ping is the first to go), plus 1,000 when the peer has announced its
//!   chain status (it tells us where the chain is).

use std::time::Duration;

use connectivity_manager::PeerScores;
use netcore::PeerId;
use wire::NetworkId;

use crate::peers::{PeerNetworkId, PeersAndMetadata};

/// Score of a peer whose RTT was never measured.
pub(crate) const UNMEASURED_SCORE: i64 = -10_000;

/// Bonus of a peer that announced its chain status.
pub(crate) const CHAIN_STATUS_BONUS: i64 = 1_000;

/// See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct MeasuredScores {
    network_id: NetworkId,
    peers: PeersAndMetadata,
}

impl MeasuredScores {
    pub(crate) fn new(network_id: NetworkId, peers: PeersAndMetadata) -> Self {
        Self { network_id, peers }
    }
}

impl PeerScores for MeasuredScores {
    fn rtt(&self, peer_id: &PeerId) -> Option<Duration> {
        self.peers
            .last_known_rtt(PeerNetworkId::new(self.network_id, *peer_id))
    }

    fn score(&self, peer_id: &PeerId) -> i64 {
        let peer = PeerNetworkId::new(self.network_id, *peer_id);
        let rtt = self
            .peers
            .last_known_rtt(peer)
            .map_or(UNMEASURED_SCORE, |rtt| {
                -i64::try_from(rtt.as_millis()).unwrap_or(i64::MAX)
            });
        let chain = if self.peers.chain_status(peer).is_some() {
            CHAIN_STATUS_BONUS
        } else {
            0
        };
        rtt.saturating_add(chain)
    }
}
