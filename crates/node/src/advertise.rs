//! The address other nodes dial: the bound listen address, unless it is unspecified
//! (`0.0.0.0`, `::`), which nobody can dial. Then the configured `node.advertised_address`,
//! or else this host's address on its default route (found by connecting a UDP socket, which
//! sends nothing), with the bound port and the Noise key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use netcore::{NetworkAddress, Protocol};

/// The address to print and to tell other operators, for a node bound at `bound` (with its
/// `/noise-ik/<key>/handshake/0` suffix): `bound` itself when dialable, else `advertised`
/// (given its key and handshake suffix), else `bound` with the default route's address.
pub(crate) fn dialable(
    bound: &NetworkAddress,
    advertised: Option<&NetworkAddress>,
) -> NetworkAddress {
    let Some(unspecified) = unspecified_ip(bound) else {
        return bound.clone();
    };
    let with_suffix = |base: NetworkAddress| match bound.noise_public_key() {
        Some(key) => base
            .clone()
            .with_noise_and_handshake(key, bound.handshake_version().unwrap_or(0))
            .unwrap_or(base),
        None => base,
    };
    if let Some(advertised) = advertised {
        return with_suffix(advertised.base());
    }
    let ip = route_ip(unspecified).unwrap_or(if unspecified.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    });
    let protocols: Vec<Protocol> = bound
        .protocols()
        .iter()
        .map(|protocol| match protocol {
            Protocol::Ip4(_) | Protocol::Ip6(_) => Protocol::from(ip),
            other => other.clone(),
        })
        .collect();
    NetworkAddress::from_protocols(protocols).unwrap_or_else(|_| bound.clone())
}

/// The unspecified IP `address` binds, if it does.
fn unspecified_ip(address: &NetworkAddress) -> Option<IpAddr> {
    address
        .protocols()
        .iter()
        .find_map(|protocol| match protocol {
            Protocol::Ip4(ip) if ip.is_unspecified() => Some(IpAddr::V4(*ip)),
            Protocol::Ip6(ip) if ip.is_unspecified() => Some(IpAddr::V6(*ip)),
            _ => None,
        })
}

/// This host's address on the route to a public address of `family`'s kind, if it has one.
fn route_ip(family: IpAddr) -> Option<IpAddr> {
    let (bind, target): (SocketAddr, SocketAddr) = if family.is_ipv4() {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            // TEST-NET-free public address; a UDP connect sends nothing.
            (Ipv4Addr::new(8, 8, 8, 8), 53).into(),
        )
    } else {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (
                Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888),
                53,
            )
                .into(),
        )
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "/noise-ik/0x1111111111111111111111111111111111111111111111111111111111111111/handshake/0";

    /// A specific bound address is kept; an unspecified one becomes the advertised address
    /// (with the key) or an address of this host, never 0.0.0.0.
    #[test]
    fn unspecified_binds_are_replaced() {
        let bound: NetworkAddress = format!("/ip4/10.1.2.3/tcp/6180{KEY}").parse().unwrap();
        assert_eq!(dialable(&bound, None), bound);
        let any: NetworkAddress = format!("/ip4/0.0.0.0/tcp/6180{KEY}").parse().unwrap();
        let advertised: NetworkAddress = "/dns/node1.example.com/tcp/6180".parse().unwrap();
        let expected: NetworkAddress = format!("/dns/node1.example.com/tcp/6180{KEY}")
            .parse()
            .unwrap();
        assert_eq!(dialable(&any, Some(&advertised)), expected);
        let found = dialable(&any, None);
        assert!(!found.to_string().contains("0.0.0.0"), "{found}");
        assert_eq!(found.noise_public_key(), any.noise_public_key());
        assert_eq!(found.handshake_version(), Some(0));
        assert!(found.protocols().contains(&Protocol::Tcp(6180)), "{found}");
    }
}
