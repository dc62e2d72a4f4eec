//! [`NetworkAddress`] and its parts: parsing, printing and AptosNet's BCS encoding.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

use crate::byte_string::{ByteBufVisitor, BytesRef};
use crate::error::Error;
use crate::public_key::PublicKey;

/// A node's address: a non-empty stack of [`Protocol`]s in AptosNet's layer order, such as
/// `/ip4/10.0.0.1/tcp/6180/noise-ik/<key>/handshake/0`.
///
/// The grammar (libp2p multiaddr style, AptosNet's layers):
///
/// ```text
/// /ip4/<ip> | /ip6/<ip> | /dns/<name> | /dns4/<name> | /dns6/<name>   network layer
///     [ /tcp/<port>                                                  transport layer
///         [ /noise-ik/<x25519 public key, 64 hex digits>             session layer
///             [ /handshake/<version> ] ] ]                           presentation layer
/// /memory/<port> [ /noise-ik/<key> [ /handshake/<version> ] ]        in-memory, for tests
/// ```
///
/// A value that exists is well formed: every constructor checks this grammar.
///
/// The part up to `/tcp/<port>` (or `/memory/<port>`) is the [`base`](Self::base): all a
/// [`Transport`](crate::Transport) looks at. The `/noise-ik/..` and `/handshake/..` suffix is
/// for the upgrades: the dialer takes the responder's static key and the handshake version
/// from it ([`noise_public_key`](Self::noise_public_key),
/// [`handshake_version`](Self::handshake_version)), and a listener advertises its bound base
/// with its own suffix ([`with_noise_and_handshake`](Self::with_noise_and_handshake)).
///
/// # Encodings
///
/// - Text: [`Display`](fmt::Display) and [`FromStr`] are inverse. The key is printed as
///   lowercase hex; parsing also accepts a `0x` prefix (AptosNet prints one) and empty
///   segments between protocols (`//`, a trailing `/`), as AptosNet does.
/// - BCS (on chain, in discovery): exactly AptosNet's `NetworkAddress`. The protocol list is
///   BCS-encoded (ULEB128 count, then each protocol as its variant tag and payload), and that
///   encoding is itself written as a BCS byte string (ULEB128 length + bytes), so that a
///   reader can skip an address it cannot decode. `Ip4`/`Ip6` are 4/16 raw bytes, ports u16
///   little-endian, DNS names BCS strings, the Noise key a BCS byte string of 32 bytes.
///   `/ip4/127.0.0.1/tcp/6180` is `09 02 00 7f 00 00 01 05 24 18`; `bcs::to_bytes` of
///   [`protocols()`](Self::protocols) gives the same without the leading length `09`.
/// - Human-readable serde formats (JSON, YAML configs): the text form, as a string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NetworkAddress(Vec<Protocol>);

/// One layer of a [`NetworkAddress`]; see there for the grammar.
///
/// The variant order is AptosNet's and fixes the BCS tags (0 = `Ip4` ... 8 = `Handshake`):
/// never reorder or insert variants.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// `/ip4/<address>`.
    Ip4(Ipv4Addr),
    /// `/ip6/<address>`.
    Ip6(Ipv6Addr),
    /// `/dns/<name>`: resolve to IPv4 or IPv6 addresses.
    Dns(DnsName),
    /// `/dns4/<name>`: resolve to IPv4 addresses only.
    Dns4(DnsName),
    /// `/dns6/<name>`: resolve to IPv6 addresses only.
    Dns6(DnsName),
    /// `/tcp/<port>`.
    Tcp(u16),
    /// `/memory/<port>`: a port on the in-process [`memsocket`](crate::memsocket) switchboard.
    Memory(u16),
    /// `/noise-ik/<key>`: the responder's static x25519 key for the Noise IK handshake.
    // AptosNet's serde name, so that human-readable encodings of a bare `Protocol` match too.
    #[serde(rename = "NoiseIK")]
    NoiseIk(PublicKey),
    /// `/handshake/<version>`: the AptosNet handshake version (0 is the only one).
    Handshake(u8),
}

/// A DNS name as AptosNet accepts it: non-empty, at most 255 bytes, and without `/` (our
/// protocol separator). No other checks: RFC 2181 lets a label hold any bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DnsName(String);

impl NetworkAddress {
    /// Builds an address from its protocols, checking AptosNet's layer grammar.
    pub fn from_protocols(protocols: Vec<Protocol>) -> Result<Self, Error> {
        check_grammar(&protocols)?;
        Ok(Self(protocols))
    }

    /// `/memory/<port>`.
    pub fn memory(port: u16) -> Self {
        Self(vec![Protocol::Memory(port)])
    }

    /// The protocols, outermost (network layer) first.
    pub fn protocols(&self) -> &[Protocol] {
        &self.0
    }

    /// The responder's static Noise key from `/noise-ik/<key>`, if the address has one.
    pub fn noise_public_key(&self) -> Option<PublicKey> {
        self.0.iter().find_map(|protocol| match protocol {
            Protocol::NoiseIk(key) => Some(*key),
            _ => None,
        })
    }

    /// The handshake version from `/handshake/<version>`, if the address has one.
    pub fn handshake_version(&self) -> Option<u8> {
        self.0.iter().find_map(|protocol| match protocol {
            Protocol::Handshake(version) => Some(*version),
            _ => None,
        })
    }

    /// The address without its `/noise-ik/..` and `/handshake/..` parts: what a transport
    /// dials or binds.
    pub fn base(&self) -> Self {
        // Never empty: the grammar puts a network-layer protocol first.
        Self(self.0[..self.base_len()].to_vec())
    }

    /// This address's base followed by `/noise-ik/<key>/handshake/<version>`, replacing any
    /// suffix it had: what a listener advertises for its bound address.
    ///
    /// Fails with [`Error::MisplacedProtocol`] only for a base without a transport, such as
    /// a bare `/ip4/<ip>`, which the grammar does not allow to carry a key. Addresses
    /// returned by [`Transport::listen_on`](crate::Transport::listen_on) always have one.
    pub fn with_noise_and_handshake(mut self, key: PublicKey, version: u8) -> Result<Self, Error> {
        self.0.truncate(self.base_len());
        self.0.push(Protocol::NoiseIk(key));
        self.0.push(Protocol::Handshake(version));
        check_grammar(&self.0)?;
        Ok(self)
    }

    /// Whether the base is `/memory/<port>`.
    pub fn is_memory(&self) -> bool {
        matches!(self.0.first(), Some(Protocol::Memory(_)))
    }

    /// Whether the base is an IP address or DNS name followed by `/tcp/<port>`.
    pub fn is_tcp(&self) -> bool {
        matches!(self.0.get(1), Some(Protocol::Tcp(_)))
    }

    /// Number of leading protocols that form the base.
    fn base_len(&self) -> usize {
        self.0
            .iter()
            .position(|p| matches!(p, Protocol::NoiseIk(_) | Protocol::Handshake(_)))
            .unwrap_or(self.0.len())
    }
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|protocol| fmt::Display::fmt(protocol, f))
    }
}

impl fmt::Debug for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for NetworkAddress {
    type Err = Error;

    /// Parses the text form. Like AptosNet we tolerate empty segments (`//`, a trailing `/`)
    /// between protocols.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(Error::EmptyAddress {
                input: input.into(),
            });
        }
        let mut parts = input.split('/');
        // The text before the first '/' must be empty.
        if parts.next() != Some("") {
            return Err(Error::AddressMissingLeadingSlash {
                input: input.into(),
            });
        }
        let mut protocols = Vec::new();
        while let Some(name) = parts.next() {
            if name.is_empty() {
                continue;
            }
            protocols.push(Protocol::parse(input, name, &mut parts)?);
        }
        check_grammar_of(input, &protocols)?;
        Ok(Self(protocols))
    }
}

impl From<SocketAddr> for NetworkAddress {
    /// `/ip4/<ip>/tcp/<port>` or `/ip6/<ip>/tcp/<port>`.
    fn from(addr: SocketAddr) -> Self {
        Self(vec![Protocol::from(addr.ip()), Protocol::Tcp(addr.port())])
    }
}

impl TryFrom<Vec<Protocol>> for NetworkAddress {
    type Error = Error;

    fn try_from(protocols: Vec<Protocol>) -> Result<Self, Self::Error> {
        Self::from_protocols(protocols)
    }
}

impl IntoIterator for NetworkAddress {
    type Item = Protocol;
    type IntoIter = std::vec::IntoIter<Protocol>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for NetworkAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            // AptosNet writes the BCS of the protocol list as a byte string, whatever the
            // outer format, so that readers can skip an address they cannot decode.
            let inner = bcs::to_bytes(&self.0).map_err(ser::Error::custom)?;
            serializer.serialize_newtype_struct("NetworkAddress", &BytesRef(&inner))
        }
    }
}

impl<'de> Deserialize<'de> for NetworkAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(de::Error::custom)
        } else {
            let bytes =
                deserializer.deserialize_newtype_struct("NetworkAddress", ByteBufVisitor)?;
            let protocols: Vec<Protocol> = bcs::from_bytes(&bytes).map_err(de::Error::custom)?;
            Self::from_protocols(protocols).map_err(de::Error::custom)
        }
    }
}

impl Protocol {
    /// The protocol's name in the text form, e.g. `"noise-ik"`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Ip4(_) => "ip4",
            Self::Ip6(_) => "ip6",
            Self::Dns(_) => "dns",
            Self::Dns4(_) => "dns4",
            Self::Dns6(_) => "dns6",
            Self::Tcp(_) => "tcp",
            Self::Memory(_) => "memory",
            Self::NoiseIk(_) => "noise-ik",
            Self::Handshake(_) => "handshake",
        }
    }

    /// Parses one protocol whose name has been read; takes its argument from `args`.
    fn parse<'a>(
        input: &str,
        name: &str,
        args: &mut impl Iterator<Item = &'a str>,
    ) -> Result<Self, Error> {
        // Maps the name to its static spelling first, so that errors can carry it.
        let name: &'static str = match name {
            "ip4" => "ip4",
            "ip6" => "ip6",
            "dns" => "dns",
            "dns4" => "dns4",
            "dns6" => "dns6",
            "tcp" => "tcp",
            "memory" => "memory",
            "noise-ik" => "noise-ik",
            "handshake" => "handshake",
            unknown => {
                return Err(Error::UnknownProtocol {
                    input: input.into(),
                    protocol: unknown.into(),
                });
            }
        };
        let Some(arg) = args.next().filter(|arg| !arg.is_empty()) else {
            return Err(Error::MissingProtocolArgument {
                input: input.into(),
                protocol: name,
            });
        };
        let invalid = |expected| Error::InvalidProtocolArgument {
            input: input.into(),
            protocol: name,
            argument: arg.into(),
            expected,
        };
        let protocol = match name {
            "ip4" => Self::Ip4(arg.parse().map_err(|_| invalid("an ipv4 address"))?),
            "ip6" => Self::Ip6(arg.parse().map_err(|_| invalid("an ipv6 address"))?),
            "dns" => Self::Dns(arg.parse()?),
            "dns4" => Self::Dns4(arg.parse()?),
            "dns6" => Self::Dns6(arg.parse()?),
            "tcp" => Self::Tcp(parse_decimal(arg).ok_or_else(|| invalid(PORT))?),
            "memory" => Self::Memory(parse_decimal(arg).ok_or_else(|| invalid(PORT))?),
            "noise-ik" => Self::NoiseIk(arg.parse().map_err(|_| invalid(KEY))?),
            "handshake" => Self::Handshake(parse_decimal(arg).ok_or_else(|| invalid(VERSION))?),
            _ => unreachable!("every name was mapped above"),
        };
        Ok(protocol)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Self::Ip4(ip) => write!(f, "/{name}/{ip}"),
            Self::Ip6(ip) => write!(f, "/{name}/{ip}"),
            Self::Dns(dns) | Self::Dns4(dns) | Self::Dns6(dns) => write!(f, "/{name}/{dns}"),
            Self::Tcp(port) | Self::Memory(port) => write!(f, "/{name}/{port}"),
            Self::NoiseIk(key) => write!(f, "/{name}/{key}"),
            Self::Handshake(version) => write!(f, "/{name}/{version}"),
        }
    }
}

impl fmt::Debug for Protocol {
    /// The text form, with the whole key, so that a logged protocol can be pasted back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<IpAddr> for Protocol {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => Self::Ip4(ip),
            IpAddr::V6(ip) => Self::Ip6(ip),
        }
    }
}

impl DnsName {
    /// The longest name AptosNet accepts, in bytes (RFC 2181's limit on a full name).
    pub const MAX_LEN_BYTES: usize = 255;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            Err("empty")
        } else if name.len() > Self::MAX_LEN_BYTES {
            Err("longer than 255 bytes")
        } else if name.contains('/') {
            Err("contains '/'")
        } else {
            Ok(())
        }
    }
}

impl TryFrom<String> for DnsName {
    type Error = Error;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        match Self::check(&name) {
            Ok(()) => Ok(Self(name)),
            Err(reason) => Err(Error::InvalidDnsName { name, reason }),
        }
    }
}

impl FromStr for DnsName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        name.to_owned().try_into()
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<DnsName> for String {
    fn from(name: DnsName) -> Self {
        name.0
    }
}

impl<'de> Deserialize<'de> for DnsName {
    /// A string, checked like [`DnsName::from_str`]: an on-chain address with a bad name fails
    /// to decode rather than producing an invalid value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A newtype around a string, as the derived `Serialize` writes it.
        #[derive(Deserialize)]
        #[serde(rename = "DnsName")]
        struct Raw(String);
        let Raw(name) = Raw::deserialize(deserializer)?;
        Self::try_from(name).map_err(de::Error::custom)
    }
}

/// Checks AptosNet's layer grammar (see the module docs) for a protocol list built in code.
fn check_grammar(protocols: &[Protocol]) -> Result<(), Error> {
    // The text form of a list is only built when there is an error to report.
    match grammar_violation(protocols) {
        None => Ok(()),
        Some(violation) => {
            let input = protocols.iter().map(ToString::to_string).collect();
            Err(violation.into_error(input))
        }
    }
}

/// Checks the grammar of protocols parsed from `input`.
fn check_grammar_of(input: &str, protocols: &[Protocol]) -> Result<(), Error> {
    match grammar_violation(protocols) {
        None => Ok(()),
        Some(violation) => Err(violation.into_error(input.into())),
    }
}

/// What is wrong with a protocol list, before we know how to print it.
enum Violation {
    Empty,
    Misplaced {
        protocol: &'static str,
        expected: &'static str,
    },
}

impl Violation {
    fn into_error(self, input: String) -> Error {
        match self {
            Self::Empty => Error::EmptyAddress { input },
            Self::Misplaced { protocol, expected } => Error::MisplacedProtocol {
                input,
                protocol,
                expected,
            },
        }
    }
}

/// AptosNet's grammar: network layer, then `/tcp` (unless the network layer is `/memory`),
/// then `/noise-ik`, then `/handshake`, each optional from the second on, nothing after.
fn grammar_violation(protocols: &[Protocol]) -> Option<Violation> {
    use Protocol::*;

    let misplaced = |protocol: &Protocol, expected| {
        Some(Violation::Misplaced {
            protocol: protocol.name(),
            expected,
        })
    };
    let mut rest = protocols.iter().peekable();
    match rest.next() {
        None => return Some(Violation::Empty),
        Some(Ip4(_) | Ip6(_) | Dns(_) | Dns4(_) | Dns6(_)) => match rest.peek() {
            None | Some(Tcp(_)) => {
                rest.next();
            }
            Some(other) => return misplaced(other, "/tcp after the ip or dns protocol"),
        },
        Some(Memory(_)) => {}
        Some(other) => {
            return misplaced(other, "/ip4, /ip6, /dns, /dns4, /dns6 or /memory first");
        }
    }
    match rest.next() {
        None | Some(NoiseIk(_)) => {}
        Some(other) => return misplaced(other, "/noise-ik after the transport"),
    }
    match rest.next() {
        None | Some(Handshake(_)) => {}
        Some(other) => return misplaced(other, "/handshake after /noise-ik"),
    }
    rest.next()
        .and_then(|other| misplaced(other, "nothing after /handshake"))
}

/// Parses a decimal integer: ASCII digits only, so no sign, no spaces.
fn parse_decimal<T: FromStr>(arg: &str) -> Option<T> {
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        arg.parse().ok()
    } else {
        None
    }
}

const PORT: &str = "a port number (0-65535)";
const KEY: &str = "an x25519 public key (64 hex digits)";
const VERSION: &str = "a handshake version (0-255)";

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey::from([0x11; 32])
    }

    /// The base drops the Noise and handshake suffix; a listener's advertised address puts
    /// its own suffix back, replacing any old one.
    #[test]
    fn base_and_advertised_address_swap_the_suffix() {
        let full: NetworkAddress = format!(
            "/ip4/127.0.0.1/tcp/6180/noise-ik/{}/handshake/0",
            "22".repeat(32)
        )
        .parse()
        .unwrap();
        assert_eq!(full.base().to_string(), "/ip4/127.0.0.1/tcp/6180");
        assert_eq!(full.noise_public_key(), Some(PublicKey::from([0x22; 32])));
        assert_eq!(full.handshake_version(), Some(0));

        let advertised = full.clone().with_noise_and_handshake(key(), 3).unwrap();
        assert_eq!(advertised.base(), full.base());
        assert_eq!(advertised.noise_public_key(), Some(key()));
        assert_eq!(advertised.handshake_version(), Some(3));
        assert!(advertised.is_tcp() && !advertised.is_memory());

        let memory = NetworkAddress::memory(7)
            .with_noise_and_handshake(key(), 0)
            .unwrap();
        assert_eq!(memory.base(), NetworkAddress::memory(7));
        assert!(memory.is_memory() && !memory.is_tcp());
        assert_eq!(NetworkAddress::memory(7).noise_public_key(), None);
        assert_eq!(NetworkAddress::memory(7).handshake_version(), None);

        let bare_ip: NetworkAddress = "/ip4/10.0.0.1".parse().unwrap();
        assert!(matches!(
            bare_ip.with_noise_and_handshake(key(), 0),
            Err(Error::MisplacedProtocol {
                protocol: "noise-ik",
                ..
            })
        ));
    }

    /// The grammar rejects lists AptosNet rejects, whichever constructor is used.
    #[test]
    fn protocols_out_of_layer_order_are_rejected() {
        assert!(matches!(
            NetworkAddress::from_protocols(vec![]),
            Err(Error::EmptyAddress { .. })
        ));
        for bad in [
            vec![Protocol::Tcp(1)],
            vec![Protocol::Ip4(Ipv4Addr::LOCALHOST), Protocol::Memory(1)],
            vec![Protocol::Memory(1), Protocol::Tcp(1)],
            vec![Protocol::Memory(1), Protocol::Handshake(0)],
            vec![
                Protocol::Memory(1),
                Protocol::NoiseIk(key()),
                Protocol::Handshake(0),
                Protocol::Handshake(0),
            ],
        ] {
            let err = NetworkAddress::from_protocols(bad.clone()).unwrap_err();
            assert!(
                matches!(err, Error::MisplacedProtocol { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
