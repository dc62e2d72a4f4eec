//! The Noise responder on an arbitrary first message: every input is refused with a typed
//! error (the fuzzer cannot forge a valid IK message for our key), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcore::PeerId;
use noise::{HandshakeAuthMode, HandshakeConfig, PrivateKey, PublicKey, TrustedPeers};

/// The responder's clock: fixed, so that a crash reproduces from its input alone.
const NOW_MILLIS: u64 = 1_764_000_000_000;

fuzz_target!(|data: &[u8]| {
    let private_key = PrivateKey::from([7u8; 32]);
    let public_key = PublicKey::from(&private_key);
    let peer_id = PeerId::from_identity_public_key(public_key.to_bytes());
    for auth in [
        HandshakeAuthMode::mutual(TrustedPeers::new()),
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
    ] {
        let config = HandshakeConfig::new(peer_id, private_key.clone(), auth);
        assert!(config.respond(data, NOW_MILLIS).is_err());
    }
});
