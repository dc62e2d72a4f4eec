//! [`check_answer`]: what we keep of a peer exchange answer. Pure.
//!
//! An answer with more peers than asked for is refused whole (`too_many`). Each peer is then
//! kept only if it is not us, lists 1 to [`MAX_ADDRESSES_PER_PEER`] addresses, each a TCP (or
//! DNS) address with `/noise-ik/<key>/handshake/0` whose key is the one its PeerId derives
//! from, and none of them loopback, private, link-local or otherwise not routable, unless
//! our own network is private. A PeerId listed twice is kept once.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netcore::{NetworkAddress, PeerId, Protocol};

use wire::ProtocolId;

use crate::peer_exchange::message::{
    ExchangedPeer, MAX_ADDRESSES_PER_PEER, MAX_ANSWER_BYTES, PeerExchangeMsg,
};

/// Why a peer of an answer was refused: the `result` label of
/// `peerlane_peer_exchange_peers_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PeerRefusal {
    /// It is us.
    OurOwn,
    /// No address, or more than [`MAX_ADDRESSES_PER_PEER`].
    AddressCount,
    /// An address we cannot dial (no Noise key, another handshake version, not TCP).
    BadAddress,
    /// An address whose key is not the one the PeerId derives from.
    KeyMismatch,
    /// A loopback, private, link-local or otherwise not routable address.
    PrivateAddress,
    /// Listed twice.
    Duplicate,
}

impl PeerRefusal {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::OurOwn => "self",
            Self::AddressCount => "address_count",
            Self::BadAddress => "bad_address",
            Self::KeyMismatch => "key_mismatch",
            Self::PrivateAddress => "private_address",
            Self::Duplicate => "duplicate",
        }
    }
}

/// What we keep of an answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The peers kept, with their addresses.
    pub(crate) accepted: Vec<(PeerId, Vec<NetworkAddress>)>,
    /// Each refused peer's reason.
    pub(crate) refused: Vec<PeerRefusal>,
}

/// Reads the raw answer to a request for at most `asked` peers: its length before decoding
/// (`too_large`), its decoding (`malformed`, or `busy` for a `Busy` answer), its count
/// (`too_many`), then each peer ([`check_answer`]). The error is the `result` label of
/// `peerlane_peer_exchange_requests_total{side="asked"}`.
pub(crate) fn decode_answer(
    bytes: &[u8],
    asked: usize,
    own: PeerId,
    private_network: bool,
) -> Result<Checked, &'static str> {
    // Checked before decoding: a hostile answer costs no allocation beyond its bytes.
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err("too_large");
    }
    let peers = match ProtocolId::PEER_EXCHANGE_RPC.from_bytes::<PeerExchangeMsg>(bytes) {
        Ok(PeerExchangeMsg::Peers(peers)) => peers,
        Ok(PeerExchangeMsg::Busy) => return Err("busy"),
        Ok(PeerExchangeMsg::GetPeers { .. }) | Err(_) => return Err("malformed"),
    };
    check_answer(peers, asked, own, private_network).ok_or("too_many")
}

/// Checks an answer to a request for at most `asked` peers; `None` when it has more (it is
/// refused whole). `own` is our PeerId; `private_network` lets private addresses through.
pub(crate) fn check_answer(
    peers: Vec<ExchangedPeer>,
    asked: usize,
    own: PeerId,
    private_network: bool,
) -> Option<Checked> {
    if peers.len() > asked {
        return None;
    }
    let mut checked = Checked::default();
    let mut seen = HashSet::new();
    for peer in peers {
        match check_peer(&peer, own, private_network) {
            Err(refusal) => checked.refused.push(refusal),
            Ok(()) if !seen.insert(peer.peer_id) => {
                checked.refused.push(PeerRefusal::Duplicate);
            }
            Ok(()) => checked.accepted.push((peer.peer_id, peer.addresses)),
        }
    }
    Some(checked)
}

fn check_peer(peer: &ExchangedPeer, own: PeerId, private_network: bool) -> Result<(), PeerRefusal> {
    if peer.peer_id == own {
        return Err(PeerRefusal::OurOwn);
    }
    if peer.addresses.is_empty() || peer.addresses.len() > MAX_ADDRESSES_PER_PEER {
        return Err(PeerRefusal::AddressCount);
    }
    for address in &peer.addresses {
        let Some(key) = address.noise_public_key() else {
            return Err(PeerRefusal::BadAddress);
        };
        if address.handshake_version() != Some(0) {
            return Err(PeerRefusal::BadAddress);
        }
        if noise::keys::peer_id_from_public_key(&key) != peer.peer_id {
            return Err(PeerRefusal::KeyMismatch);
        }
        if !private_network && !is_public(address) {
            return Err(PeerRefusal::PrivateAddress);
        }
        if !(address.is_tcp() || address.is_memory() && private_network) {
            return Err(PeerRefusal::BadAddress);
        }
    }
    Ok(())
}

/// Whether `address` names a host on the public internet: a global IP, or a DNS name other
/// than `localhost`. A memory address is not.
fn is_public(address: &NetworkAddress) -> bool {
    match address.protocols().first() {
        Some(Protocol::Ip4(ip)) => is_public_ip(IpAddr::V4(*ip)),
        Some(Protocol::Ip6(ip)) => is_public_ip(IpAddr::V6(*ip)),
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name)) => {
            let name = name.as_str().trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
        _ => false,
    }
}

fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_broadcast()
                || ip.is_documentation()
                || is_shared_v4(ip))
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || is_unique_local_v6(ip)
                || is_link_local_v6(ip))
        }
    }
}

/// 100.64.0.0/10, carrier-grade NAT.
fn is_shared_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 100 && (b & 0xc0) == 64
}

/// fc00::/7.
fn is_unique_local_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xfe00) == 0xfc00
}

/// fe80::/10.
fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(ip: &str, seed: u8) -> (PeerId, NetworkAddress) {
        let key = noise::PublicKey::from([seed; 32]);
        let peer_id = noise::keys::peer_id_from_public_key(&key);
        let addr: NetworkAddress = format!("/ip4/{ip}/tcp/6180/noise-ik/{key}/handshake/0")
            .parse()
            .unwrap();
        (peer_id, addr)
    }

    fn exchanged(peer_id: PeerId, addresses: Vec<NetworkAddress>) -> ExchangedPeer {
        ExchangedPeer { peer_id, addresses }
    }

    /// Good peers pass; ourselves, private addresses, wrong keys, bad address counts and
    /// duplicates are refused by name; an answer longer than asked is refused whole.
    #[test]
    fn answers_are_checked_peer_by_peer() {
        let own = PeerId::new([0xee; 32]);
        let (good, good_addr) = keyed("8.8.8.8", 1);
        let (private, private_addr) = keyed("10.0.0.1", 2);
        let (loopback, loopback_addr) = keyed("127.0.0.1", 3);
        let (_, other_key_addr) = keyed("8.8.4.4", 4);
        let peers = vec![
            exchanged(good, vec![good_addr.clone()]),
            exchanged(good, vec![good_addr.clone()]),
            exchanged(own, vec![good_addr.clone()]),
            exchanged(private, vec![private_addr.clone()]),
            exchanged(loopback, vec![loopback_addr]),
            exchanged(PeerId::new([9; 32]), vec![other_key_addr]),
            exchanged(PeerId::new([8; 32]), vec![]),
            exchanged(good, vec![good_addr.clone(); 5]),
            exchanged(
                PeerId::new([7; 32]),
                vec!["/ip4/8.8.8.8/tcp/1".parse().unwrap()],
            ),
        ];
        let checked = check_answer(peers.clone(), 16, own, false).unwrap();
        assert_eq!(checked.accepted, vec![(good, vec![good_addr.clone()])]);
        assert_eq!(
            checked.refused,
            vec![
                PeerRefusal::Duplicate,
                PeerRefusal::OurOwn,
                PeerRefusal::PrivateAddress,
                PeerRefusal::PrivateAddress,
                PeerRefusal::KeyMismatch,
                PeerRefusal::AddressCount,
                PeerRefusal::AddressCount,
                PeerRefusal::BadAddress,
            ]
        );
        // On a private network the private addresses pass.
        let private_ok = check_answer(peers.clone(), 16, own, true).unwrap();
        assert_eq!(private_ok.accepted.len(), 3);
        assert_eq!(check_answer(peers, 8, own, false), None);
    }

    /// Hostile answers: too long (refused before decoding), too many peers, garbage, a
    /// request in place of an answer.
    #[test]
    fn hostile_answers_are_refused_whole() {
        let own = PeerId::new([0xee; 32]);
        assert_eq!(
            decode_answer(&vec![0x01; MAX_ANSWER_BYTES + 1], 16, own, false),
            Err("too_large")
        );
        let (peer_id, addr) = keyed("8.8.8.8", 1);
        let many = PeerExchangeMsg::Peers(vec![exchanged(peer_id, vec![addr]); 17]);
        let bytes = ProtocolId::PEER_EXCHANGE_RPC.to_bytes(&many).unwrap();
        assert!(bytes.len() <= MAX_ANSWER_BYTES);
        assert_eq!(decode_answer(&bytes, 16, own, false), Err("too_many"));
        // A count of 2^32 peers in 5 bytes: refused without allocating for them.
        assert_eq!(
            decode_answer(&[0x01, 0xff, 0xff, 0xff, 0xff, 0x0f], 16, own, false),
            Err("malformed")
        );
        let request = ProtocolId::PEER_EXCHANGE_RPC
            .to_bytes(&PeerExchangeMsg::GetPeers { max: 1 })
            .unwrap();
        assert_eq!(decode_answer(&request, 16, own, false), Err("malformed"));
        let busy = ProtocolId::PEER_EXCHANGE_RPC
            .to_bytes(&PeerExchangeMsg::Busy)
            .unwrap();
        assert_eq!(decode_answer(&busy, 16, own, false), Err("busy"));
    }

    #[test]
    fn special_ranges_are_not_public() {
        for ip in [
            "100.64.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "192.0.2.1",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public_ip("2001:4860::1".parse().unwrap()));
    }
}
