//! NetworkAddress: text and BCS encodings, pinned bytes, and typed parse errors.

use std::net::{Ipv4Addr, Ipv6Addr};

use netcore::{DnsName, Error, NetworkAddress, Protocol, PublicKey};
use proptest::prelude::*;

/// A key whose hex form is easy to recognise in failures.
fn key() -> PublicKey {
    PublicKey::from([0xab; 32])
}

/// `/ip4/127.0.0.1/tcp/6180` encodes as AptosNet does on chain: the BCS protocol list
/// wrapped in a BCS byte string.
#[test]
fn ip4_tcp_address_has_pinned_bcs_bytes() {
    let addr: NetworkAddress = "/ip4/127.0.0.1/tcp/6180".parse().unwrap();
    #[rustfmt::skip]
    let protocols = [
        0x02,                   // ULEB128: 2 protocols
        0x00, 127, 0, 0, 1,     // Ip4 (tag 0), 4 octets
        0x05, 0x24, 0x18,       // Tcp (tag 5), u16 LE 6180 = 0x1824
    ];
    assert_eq!(bcs::to_bytes(addr.protocols()).unwrap(), protocols);

    let mut wrapped = vec![0x09]; // ULEB128: 9 bytes of encoded protocol list follow
    wrapped.extend_from_slice(&protocols);
    assert_eq!(bcs::to_bytes(&addr).unwrap(), wrapped);
    assert_eq!(bcs::from_bytes::<NetworkAddress>(&wrapped).unwrap(), addr);
}

/// AptosNet's own documented example, `/ip4/10.0.0.16/tcp/80`, gives its documented bytes.
#[test]
fn aptosnet_documented_example_encodes_identically() {
    let addr: NetworkAddress = "/ip4/10.0.0.16/tcp/80".parse().unwrap();
    assert_eq!(
        bcs::to_bytes(&addr).unwrap(),
        [0x09, 0x02, 0x00, 10, 0, 0, 16, 0x05, 80, 0]
    );
}

/// The variable-length protocols: a DNS name is a BCS string, the Noise key a BCS byte
/// string of 32 bytes (AptosNet's `x25519::PublicKey` serializes through `serde_bytes`),
/// the handshake version one byte.
#[test]
fn dns_noise_and_handshake_protocols_have_pinned_bcs_bytes() {
    let addr = NetworkAddress::from_protocols(vec![
        Protocol::Dns4("a.io".parse().unwrap()),
        Protocol::Tcp(1),
        Protocol::NoiseIk(key()),
        Protocol::Handshake(0),
    ])
    .unwrap();
    let mut protocols = vec![
        0x04, // ULEB128: 4 protocols
        0x03, 0x04, b'a', b'.', b'i', b'o', // Dns4 (tag 3), string of 4 bytes
        0x05, 0x01, 0x00, // Tcp (tag 5), u16 LE 1
        0x07, 0x20, // NoiseIK (tag 7), byte string of 32 bytes
    ];
    protocols.extend_from_slice(&[0xab; 32]);
    protocols.extend_from_slice(&[0x08, 0x00]); // Handshake (tag 8), version 0
    assert_eq!(bcs::to_bytes(addr.protocols()).unwrap(), protocols);

    let mut wrapped = vec![u8::try_from(protocols.len()).unwrap()]; // 47 < 128: one ULEB byte
    wrapped.extend_from_slice(&protocols);
    assert_eq!(bcs::to_bytes(&addr).unwrap(), wrapped);
    assert_eq!(bcs::from_bytes::<NetworkAddress>(&wrapped).unwrap(), addr);
}

/// Every protocol prints in the documented text form.
#[test]
fn text_form_matches_the_documented_syntax() {
    let hex_key = "ab".repeat(32);
    for text in [
        format!("/ip4/127.0.0.1/tcp/6180/noise-ik/{hex_key}/handshake/0"),
        "/ip6/::1/tcp/6180".to_owned(),
        "/dns/example.com/tcp/6180".to_owned(),
        "/dns4/example.com/tcp/1".to_owned(),
        "/dns6/example.com/tcp/65535".to_owned(),
        "/memory/7".to_owned(),
        format!("/memory/7/noise-ik/{hex_key}"),
        "/ip4/10.0.0.1".to_owned(),
    ] {
        let addr: NetworkAddress = text.parse().unwrap();
        assert_eq!(addr.to_string(), text);
    }
}

/// AptosNet prints keys with a `0x` prefix and tolerates stray slashes; we read both.
#[test]
fn aptosnet_spellings_are_accepted() {
    let hex_key = "ab".repeat(32);
    let addr: NetworkAddress = format!("/memory/7/noise-ik/0x{hex_key}/handshake/0/")
        .parse()
        .unwrap();
    assert_eq!(addr.noise_public_key(), Some(key()));
    assert_eq!(
        addr.to_string(),
        format!("/memory/7/noise-ik/{hex_key}/handshake/0")
    );
}

/// Parses text that must fail, and checks that the message names the input.
fn parse_error(text: &str) -> Error {
    let err = text.parse::<NetworkAddress>().unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("{text:?}")), "{message}");
    err
}

/// Each kind of malformed text fails with its own variant, carrying the input.
#[test]
fn malformed_text_is_a_typed_error_carrying_the_input() {
    use Error::*;

    assert!(matches!(parse_error(""), EmptyAddress { .. }));
    assert!(matches!(parse_error("/"), EmptyAddress { input } if input == "/"));
    assert!(matches!(
        parse_error("ip4/1.2.3.4"),
        AddressMissingLeadingSlash { input } if input == "ip4/1.2.3.4"
    ));
    assert!(matches!(
        parse_error("/udp/53"),
        UnknownProtocol { input, protocol } if input == "/udp/53" && protocol == "udp"
    ));
    assert!(matches!(
        parse_error("/ip4/1.2.3.4/tcp"),
        MissingProtocolArgument { input, protocol: "tcp" } if input == "/ip4/1.2.3.4/tcp"
    ));

    // Bad arguments: the variant names the protocol and carries the argument.
    let hex_key = "ab".repeat(32);
    for (text, protocol, argument) in [
        ("/ip4/1.2.3.999/tcp/1", "ip4", "1.2.3.999"),
        ("/ip6/1.2.3.4/tcp/1", "ip6", "1.2.3.4"),
        ("/ip4/1.2.3.4/tcp/65536", "tcp", "65536"),
        ("/ip4/1.2.3.4/tcp/+80", "tcp", "+80"),
        ("/memory/-1", "memory", "-1"),
        ("/memory/1/noise-ik/abcd", "noise-ik", "abcd"),
        ("/memory/1/noise-ik/zz", "noise-ik", "zz"),
        (
            &format!("/memory/1/noise-ik/{hex_key}/handshake/256"),
            "handshake",
            "256",
        ),
    ] {
        match parse_error(text) {
            InvalidProtocolArgument {
                input,
                protocol: p,
                argument: a,
                ..
            } => {
                assert_eq!((input.as_str(), p, a.as_str()), (text, protocol, argument));
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    assert!(matches!(
        parse_error("/tcp/80"),
        MisplacedProtocol { input, protocol: "tcp", .. } if input == "/tcp/80"
    ));
}

/// A DNS name must be non-empty, at most 255 bytes and free of '/'.
#[test]
fn invalid_dns_names_are_rejected() {
    assert!(matches!(
        "/dns//tcp/1".parse::<NetworkAddress>(),
        Err(Error::MissingProtocolArgument {
            protocol: "dns",
            ..
        })
    ));
    let long = "a".repeat(256);
    assert!(matches!(
        format!("/dns4/{long}/tcp/1").parse::<NetworkAddress>(),
        Err(Error::InvalidDnsName { name, .. }) if name == long
    ));
    assert!("a".repeat(255).parse::<DnsName>().is_ok());
    assert!(matches!(
        "".parse::<DnsName>(),
        Err(Error::InvalidDnsName {
            reason: "empty",
            ..
        })
    ));
    assert!(matches!(
        DnsName::try_from("a/b".to_owned()),
        Err(Error::InvalidDnsName {
            reason: "contains '/'",
            ..
        })
    ));

    // The same rules hold when decoding BCS: a bad name on chain is a decode error.
    #[rustfmt::skip]
    let bad_name = [
        0x07,                   // ULEB128: 7 bytes of protocol list follow
        0x02,                   // 2 protocols
        0x02, 0x01, b'/',       // Dns (tag 2), string "/"
        0x05, 0x01, 0x00,       // Tcp (tag 5), port 1
    ];
    assert!(bcs::from_bytes::<NetworkAddress>(&bad_name).is_err());
}

/// BCS decoding enforces the address grammar too: an empty list or a misplaced protocol
/// does not decode.
#[test]
fn bcs_decoding_rejects_lists_outside_the_grammar() {
    // Empty list: byte string of 1 byte holding "0 protocols".
    assert!(bcs::from_bytes::<NetworkAddress>(&[0x01, 0x00]).is_err());
    // [Tcp(80)]: byte string of 4 bytes.
    assert!(bcs::from_bytes::<NetworkAddress>(&[0x04, 0x01, 0x05, 80, 0]).is_err());
    // A Noise key of 31 bytes.
    let mut protocols = vec![
        0x02, // 2 protocols
        0x06, 0x00, 0x00, // Memory (tag 6), port 0
        0x07, 0x1f, // NoiseIK (tag 7), byte string of 31 bytes
    ];
    protocols.extend_from_slice(&[0; 31]);
    let mut wrapped = vec![u8::try_from(protocols.len()).unwrap()];
    wrapped.extend_from_slice(&protocols);
    assert!(bcs::from_bytes::<NetworkAddress>(&wrapped).is_err());
}

fn arb_dns_name() -> impl Strategy<Value = DnsName> {
    // Printable unicode without '/', 1 to 255 bytes, as AptosNet's own generator.
    "[^/\\pC]{1,255}".prop_filter_map("longer than 255 bytes", |name| name.parse().ok())
}

fn arb_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from)
}

/// Any address the grammar allows: a base, then optionally a key, then optionally a version.
fn arb_address() -> impl Strategy<Value = NetworkAddress> {
    let base = prop_oneof![
        any::<u16>().prop_map(|port| vec![Protocol::Memory(port)]),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| vec![Protocol::Ip4(Ipv4Addr::from(ip)), Protocol::Tcp(port)]),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| vec![Protocol::Ip6(Ipv6Addr::from(ip)), Protocol::Tcp(port)]),
        (arb_dns_name(), any::<u16>())
            .prop_map(|(name, port)| vec![Protocol::Dns(name), Protocol::Tcp(port)]),
        (arb_dns_name(), any::<u16>())
            .prop_map(|(name, port)| vec![Protocol::Dns4(name), Protocol::Tcp(port)]),
        (arb_dns_name(), any::<u16>())
            .prop_map(|(name, port)| vec![Protocol::Dns6(name), Protocol::Tcp(port)]),
    ];
    let suffix = prop_oneof![
        Just(vec![]),
        arb_key().prop_map(|key| vec![Protocol::NoiseIk(key)]),
        (arb_key(), any::<u8>())
            .prop_map(|(key, version)| vec![Protocol::NoiseIk(key), Protocol::Handshake(version)]),
    ];
    let with_transport = (base, suffix).prop_map(|(mut protocols, suffix)| {
        protocols.extend(suffix);
        protocols
    });
    // A bare network layer is valid too, but cannot carry a suffix.
    let bare = prop_oneof![
        any::<[u8; 4]>().prop_map(|ip| vec![Protocol::Ip4(Ipv4Addr::from(ip))]),
        arb_dns_name().prop_map(|name| vec![Protocol::Dns6(name)]),
    ];
    prop_oneof![9 => with_transport, 1 => bare]
        .prop_map(|protocols| NetworkAddress::from_protocols(protocols).unwrap())
}

proptest! {
    // Integration tests have no lib.rs for proptest to anchor its regressions file to.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// Display and FromStr are inverse for every valid address.
    #[test]
    fn text_round_trips(addr in arb_address()) {
        let text = addr.to_string();
        prop_assert_eq!(text.parse::<NetworkAddress>().unwrap(), addr);
    }

    /// BCS encoding and decoding are inverse for every valid address.
    #[test]
    fn bcs_round_trips(addr in arb_address()) {
        let bytes = bcs::to_bytes(&addr).unwrap();
        prop_assert_eq!(bcs::from_bytes::<NetworkAddress>(&bytes).unwrap(), addr);
    }

    /// The base and the advertised address are consistent for every valid address.
    #[test]
    fn base_ignores_the_suffix(addr in arb_address(), key in arb_key(), version in any::<u8>()) {
        let base = addr.base();
        prop_assert_eq!(base.noise_public_key(), None);
        prop_assert_eq!(base.handshake_version(), None);
        prop_assert_eq!(base.is_tcp(), addr.is_tcp());
        prop_assert_eq!(base.is_memory(), addr.is_memory());
        // Only a bare ip or dns name, without /tcp, cannot carry a key.
        let Ok(advertised) = addr.clone().with_noise_and_handshake(key, version) else {
            prop_assert!(!addr.is_tcp() && !addr.is_memory());
            return Ok(());
        };
        prop_assert_eq!(advertised.base(), base);
        prop_assert_eq!(advertised.noise_public_key(), Some(key));
        prop_assert_eq!(advertised.handshake_version(), Some(version));
    }
}
