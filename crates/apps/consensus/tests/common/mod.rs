//! Set-up shared by the consensus tests that drive one honest validator against hand-made
//! messages: identities from a seed and a network with the consensus application.

use consensus::ConsensusMsg;
use peerlane::{
    Identity, NetworkBuilder, NetworkClient, NetworkConfig, NetworkEvents, TransportKind,
};
use prometheus_client::registry::Registry;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wire::{NetworkId, ProtocolId};

pub(crate) const NETWORK: NetworkId = NetworkId::Public;

pub(crate) fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

/// A network with the consensus application registered.
pub(crate) fn consensus_network(
    identity: Identity,
    registry: &mut Registry,
) -> (
    NetworkBuilder,
    NetworkClient<ConsensusMsg>,
    NetworkEvents<ConsensusMsg>,
) {
    let mut config = NetworkConfig::new(NETWORK, "/memory/0".parse().unwrap());
    config.identity = Some(identity);
    let mut builder = NetworkBuilder::new(config, TransportKind::Memory, registry).unwrap();
    let (client, events) = builder
        .add_application::<ConsensusMsg>(
            [ProtocolId::CONSENSUS_DIRECT_SEND_BCS],
            [ProtocolId::CONSENSUS_RPC_BCS],
            Default::default(),
        )
        .unwrap();
    (builder, client, events)
}
