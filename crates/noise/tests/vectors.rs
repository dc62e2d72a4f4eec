//! Interoperability: the Noise test vector for `Noise_IK_25519_AESGCM_SHA256`, and an
//! independent check of the AptosNet message layout.
//!
//! The vector is cacophony's (the Haskell reference implementation of Noise), as shipped in
//! `mcginty/snow`'s `tests/vectors/cacophony.txt`. With the fixed ephemeral keys it pins every
//! byte of both handshake messages and four transport messages, so matching it shows that the
//! pattern, the DH, AES-256-GCM with its nonce layout (4 zero bytes, then the u64 counter big
//! endian), SHA-256 and the prologue handling are the standard ones any other Noise
//! implementation (AptosNet's included) computes.

mod common;

use common::{TestNode, trusting};
use noise::{CryptoBackend, HandshakeAuthMode, PROTOCOL_NAME};

/// The vector for this exact protocol name.
mod vector {
    pub(crate) const PROTOCOL_NAME: &str = "Noise_IK_25519_AESGCM_SHA256";
    /// "John Galt".
    pub(crate) const PROLOGUE: &str = "4a6f686e2047616c74";
    pub(crate) const INIT_STATIC: &str =
        "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
    pub(crate) const INIT_EPHEMERAL: &str =
        "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
    /// The responder's public key, as the initiator knows it in advance (IK).
    pub(crate) const INIT_REMOTE_STATIC: &str =
        "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62";
    pub(crate) const RESP_STATIC: &str =
        "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
    pub(crate) const RESP_EPHEMERAL: &str =
        "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";
    /// The handshake hash after message 2, as listed in the file shipped with snow 0.10.0.
    /// (An older revision of the file, with the same ciphertexts, lists `6f10a944…`.)
    pub(crate) const HANDSHAKE_HASH: &str =
        "669c8640d9e42a3cda2f232f78597ceefb01daa6e3df81181ccce6fc6b5026bf";
    /// (payload, ciphertext); messages alternate initiator → responder, responder →
    /// initiator. The first two are the handshake, the rest transport messages.
    pub(crate) const MESSAGES: [(&str, &str); 6] = [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444e417bc55c7a8166c993\
             356c1be41ef67818a292426f301556c7f26b21d25ddb097153891a9a956cff47b83e63ad8d701c1342c2\
             09cff1ca5ecd43402762ac249e3bd3a4c0a145fe07cb5dae28ea13a3",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843af2ccf9972e22afc67ae\
             afcd25162f7f98c363b7762e3e4cb7d272e39f27a5",
        ),
        (
            "462e20412e20486179656b",
            "66acfc92e3197de166809e6d4d5d003dcc819a84bc3522ca53c9d9",
        ),
        (
            "4361726c204d656e676572",
            "71f89aa6533a6de70b0826864dd75f60806ee40170c16290189eb3",
        ),
        (
            "4a65616e2d426170746973746520536179",
            "4795a3423550c8bf00386bd496a3e2c76c10669d2a75ab8f79b5094c5412a25705",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "aa0bb39097555c918e40be82abc2b909eb79d9eb87adb07e268fc37323a6cf904fd01fb391",
        ),
    ];
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

fn builder(backend: CryptoBackend) -> snow::Builder<'static> {
    let params: snow::params::NoiseParams = vector::PROTOCOL_NAME.parse().unwrap();
    match backend {
        CryptoBackend::Ring => snow::Builder::new(params),
        CryptoBackend::RustCrypto => {
            snow::Builder::with_resolver(params, Box::new(snow::resolvers::DefaultResolver))
        }
    }
}

/// snow, driven with the vector's static and ephemeral keys and prologue, reproduces every
/// ciphertext of the vector (both handshake messages and four transport messages) and its
/// handshake hash, on both crypto backends.
#[test]
fn snow_reproduces_the_noise_ik_25519_aesgcm_sha256_test_vector() {
    assert_eq!(PROTOCOL_NAME, vector::PROTOCOL_NAME);
    for backend in [CryptoBackend::Ring, CryptoBackend::RustCrypto] {
        let (prologue, init_s, init_e) = (
            unhex(vector::PROLOGUE),
            unhex(vector::INIT_STATIC),
            unhex(vector::INIT_EPHEMERAL),
        );
        let (resp_s, resp_e, init_rs) = (
            unhex(vector::RESP_STATIC),
            unhex(vector::RESP_EPHEMERAL),
            unhex(vector::INIT_REMOTE_STATIC),
        );
        let mut initiator = builder(backend)
            .local_private_key(&init_s)
            .unwrap()
            .remote_public_key(&init_rs)
            .unwrap()
            .prologue(&prologue)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&init_e)
            .build_initiator()
            .unwrap();
        let mut responder = builder(backend)
            .local_private_key(&resp_s)
            .unwrap()
            .prologue(&prologue)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&resp_e)
            .build_responder()
            .unwrap();

        let mut sealed = [0u8; 1024];
        let mut opened = [0u8; 1024];
        for (index, (payload, ciphertext)) in vector::MESSAGES[..2].iter().enumerate() {
            let (payload, ciphertext) = (unhex(payload), unhex(ciphertext));
            let (sender, receiver) = if index % 2 == 0 {
                (&mut initiator, &mut responder)
            } else {
                (&mut responder, &mut initiator)
            };
            let n = sender.write_message(&payload, &mut sealed).unwrap();
            assert_eq!(
                hex::encode(&sealed[..n]),
                hex::encode(&ciphertext),
                "{backend:?}: handshake message {index}"
            );
            let m = receiver.read_message(&ciphertext, &mut opened).unwrap();
            assert_eq!(&opened[..m], &payload[..]);
        }
        assert_eq!(
            initiator.get_handshake_hash(),
            responder.get_handshake_hash()
        );
        assert_eq!(
            hex::encode(initiator.get_handshake_hash()),
            vector::HANDSHAKE_HASH
        );
        assert_eq!(
            responder.get_remote_static().unwrap(),
            &x25519_public(&init_s)[..]
        );

        let mut initiator = initiator.into_transport_mode().unwrap();
        let mut responder = responder.into_transport_mode().unwrap();
        for (index, (payload, ciphertext)) in vector::MESSAGES.iter().enumerate().skip(2) {
            let (payload, ciphertext) = (unhex(payload), unhex(ciphertext));
            let (sender, receiver) = if index % 2 == 0 {
                (&mut initiator, &mut responder)
            } else {
                (&mut responder, &mut initiator)
            };
            let n = sender.write_message(&payload, &mut sealed).unwrap();
            assert_eq!(
                hex::encode(&sealed[..n]),
                hex::encode(&ciphertext),
                "{backend:?}: transport message {index}"
            );
            let m = receiver.read_message(&ciphertext, &mut opened).unwrap();
            assert_eq!(&opened[..m], &payload[..]);
        }
    }
}

/// Independent of our responder: message 1 from `HandshakeConfig::initiate` is the 64-byte
/// prologue in clear (initiator PeerId, then the responder key it expects) followed by a
/// standard IK message that a bare snow responder, given that prologue, opens to the
/// initiator's static key and an 8-byte little-endian timestamp; and message 2 from our
/// responder is a 48-byte standard IK reply (`e` and an empty encrypted payload) that a bare
/// snow initiator accepts.
#[test]
fn aptosnet_message_layout_matches_a_bare_snow_ik_exchange() {
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let now_millis = 0x0102_0304_0506_0708_u64;
    let client_config = client.config(HandshakeAuthMode::mutual(trusting(&[&server])));
    let (_, first) = client_config
        .initiate(server.peer_id, server.public_key, now_millis)
        .unwrap();
    assert_eq!(first.len(), 32 + 32 + 32 + 48 + 24);
    let (prologue, noise_message) = first.split_at(64);
    assert_eq!(&prologue[..32], client.peer_id.as_bytes());
    assert_eq!(&prologue[32..], server.public_key.as_bytes());

    let mut bare_responder = builder(CryptoBackend::Ring)
        .local_private_key(server.private_key.as_bytes())
        .unwrap()
        .prologue(prologue)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut payload = [0u8; 64];
    let n = bare_responder
        .read_message(noise_message, &mut payload)
        .unwrap();
    assert_eq!(&payload[..n], &now_millis.to_le_bytes());
    assert_eq!(
        bare_responder.get_remote_static().unwrap(),
        client.public_key.as_bytes()
    );

    // The other way: a bare snow initiator against our responder.
    let server_config = server.config(HandshakeAuthMode::mutual(trusting(&[&client])));
    let mut bare_initiator = builder(CryptoBackend::RustCrypto)
        .local_private_key(client.private_key.as_bytes())
        .unwrap()
        .remote_public_key(server.public_key.as_bytes())
        .unwrap()
        .prologue(prologue)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut first = prologue.to_vec();
    let mut message = [0u8; 104];
    let n = bare_initiator
        .write_message(&now_millis.to_le_bytes(), &mut message)
        .unwrap();
    assert_eq!(n, 104);
    first.extend_from_slice(&message);
    let accepted = server_config.respond(&first, now_millis).unwrap();
    assert_eq!(accepted.second_message.len(), 48);
    let n = bare_initiator
        .read_message(&accepted.second_message, &mut payload)
        .unwrap();
    assert_eq!(n, 0, "message 2 carries an empty payload");
}

fn x25519_public(private_key: &[u8]) -> [u8; 32] {
    let bytes: [u8; 32] = private_key.try_into().unwrap();
    noise::PublicKey::from(&noise::PrivateKey::from(bytes)).to_bytes()
}
