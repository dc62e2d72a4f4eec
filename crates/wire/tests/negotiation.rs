//! Handshake negotiation: which mismatches fail, in which order, and what a successful
//! negotiation settles on. (The choice among several versions is unit-tested in
//! `src/handshake.rs`, since V1 is the only version that exists.)

use std::collections::BTreeMap;

use wire::{
    ChainId, Error, HandshakeMsg, MessagingProtocolVersion, NetworkId, ProtocolId, ProtocolIdSet,
};

fn set(ids: &[ProtocolId]) -> ProtocolIdSet {
    ids.iter().copied().collect()
}

fn msg(chain: u8, network: NetworkId, protocols: &[ProtocolId]) -> HandshakeMsg {
    HandshakeMsg::new(ChainId::new(chain), network, set(protocols))
}

const HEALTH: ProtocolId = ProtocolId::HEALTH_CHECKER_RPC;
const MEMPOOL: ProtocolId = ProtocolId::MEMPOOL_DIRECT_SEND;
const CONSENSUS: ProtocolId = ProtocolId::CONSENSUS_RPC_BCS;

/// Peers on different chains fail with InvalidChainId, naming both ids; the chain is checked
/// before the network.
#[test]
fn chain_mismatch_is_rejected_first() {
    let ours = msg(4, NetworkId::Validator, &[HEALTH]);
    let theirs = msg(5, NetworkId::Public, &[HEALTH]);
    let err = ours.negotiate(&theirs).unwrap_err();
    assert!(
        matches!(err, Error::InvalidChainId { ours, theirs } if ours.id() == 4 && theirs.id() == 5),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "handshake: chain id mismatch (ours 4, theirs 5)"
    );
}

/// Peers on the same chain but different networks fail with InvalidNetworkId.
#[test]
fn network_mismatch_is_rejected() {
    let ours = msg(4, NetworkId::Vfn, &[HEALTH]);
    let theirs = msg(4, NetworkId::Public, &[HEALTH]);
    let err = ours.negotiate(&theirs).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidNetworkId {
                ours: NetworkId::Vfn,
                theirs: NetworkId::Public
            }
        ),
        "{err:?}"
    );
}

/// Disjoint protocol sets, empty sets and empty version maps all end in NoCommonProtocols.
#[test]
fn no_common_protocols_is_rejected() {
    let ours = msg(4, NetworkId::Validator, &[HEALTH, MEMPOOL]);
    let disjoint = msg(4, NetworkId::Validator, &[CONSENSUS]);
    assert!(matches!(
        ours.negotiate(&disjoint),
        Err(Error::NoCommonProtocols)
    ));
    let empty_set = msg(4, NetworkId::Validator, &[]);
    assert!(matches!(
        ours.negotiate(&empty_set),
        Err(Error::NoCommonProtocols)
    ));
    let no_versions = HandshakeMsg {
        supported_protocols: BTreeMap::new(),
        ..ours.clone()
    };
    assert!(matches!(
        ours.negotiate(&no_versions),
        Err(Error::NoCommonProtocols)
    ));
}

/// A successful negotiation picks V1 with exactly the protocols both sides list, whichever
/// side runs it; ids only one side knows (custom or unknown) drop out.
#[test]
fn negotiation_settles_on_the_common_protocols() {
    let custom = ProtocolId::custom(70).unwrap();
    let ours = msg(4, NetworkId::Validator, &[HEALTH, MEMPOOL, custom]);
    let theirs = msg(
        4,
        NetworkId::Validator,
        &[CONSENSUS, MEMPOOL, HEALTH, ProtocolId::from_wire(200)],
    );
    let expected = (MessagingProtocolVersion::V1, set(&[HEALTH, MEMPOOL]));
    assert_eq!(ours.negotiate(&theirs).unwrap(), expected);
    assert_eq!(theirs.negotiate(&ours).unwrap(), expected);
}
