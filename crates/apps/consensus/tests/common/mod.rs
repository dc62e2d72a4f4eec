//! Set-up shared by the consensus tests that drive one honest validator against hand-made
//! messages: identities from a seed, a network with the consensus application, and the
//! honest validator itself.

use consensus::{Consensus, ConsensusConfig, ConsensusHandle, ConsensusMsg};
use mempool::{Mempool, MempoolConfig, MempoolMsg};
use peerlane::{
    Identity, Network, NetworkBuilder, NetworkClient, NetworkConfig, NetworkEvents, TransportKind,
};
use prometheus_client::registry::Registry;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wire::{NetworkId, PeerId, ProtocolId};

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

/// The honest validator (identity 0) with mempool and consensus built on its network but not
/// yet running, so a test can connect its hand-made peers first.
pub(crate) struct HonestValidator {
    pub(crate) network: Network,
    pub(crate) consensus: ConsensusHandle,
    mempool_actor: Mempool,
    actor: Consensus,
}

impl HonestValidator {
    pub(crate) fn new(validators: Vec<PeerId>) -> Self {
        let mut registry = Registry::default();
        let (mut builder, client, events) = consensus_network(identity(0), &mut registry);
        let (mempool_client, mempool_events) = builder
            .add_application::<MempoolMsg>(
                [ProtocolId::MEMPOOL_DIRECT_SEND],
                [],
                Default::default(),
            )
            .unwrap();
        let network = builder.build().unwrap();
        let (mempool_actor, mempool) = Mempool::new(
            MempoolConfig::default(),
            mempool_client,
            mempool_events,
            &mut registry,
        );
        let config = ConsensusConfig::new(NETWORK, validators);
        let (actor, consensus) = Consensus::new(
            config,
            network.peer_id(),
            client,
            events,
            mempool,
            &mut registry,
        )
        .unwrap();
        Self {
            network,
            consensus,
            mempool_actor,
            actor,
        }
    }

    /// Starts mempool and consensus; the network and the consensus handle stay the caller's.
    pub(crate) fn run(self) -> (Network, ConsensusHandle) {
        tokio::spawn(self.mempool_actor.run(std::future::pending()));
        tokio::spawn(self.actor.run(std::future::pending()));
        (self.network, self.consensus)
    }
}
