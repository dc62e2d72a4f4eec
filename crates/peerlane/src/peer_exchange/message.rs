//! The messages of peer exchange on `PeerExchangeRpc` (66): [`PeerExchangeMsg`] and
//! [`ExchangedPeer`], plain BCS.

use netcore::{NetworkAddress, PeerId};
use serde::{Deserialize, Serialize};

/// The request and the answers on `PeerExchangeRpc` (66), an RPC. In BCS: the variant tag,
/// then its fields (`wire-format.md` §8):
///
/// - `GetPeers { max }`: `00`, `max` as a u16 LE; `GetPeers { max: 16 }` is `00 10 00`;
/// - `Peers(peers)`: `01`, the count as ULEB128, then each [`ExchangedPeer`];
/// - `Busy`: `02`: the asker asked again too soon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerExchangeMsg {
    /// Asks for up to `max` peers.
    GetPeers {
        /// The most peers the asker takes; answers with more are refused whole.
        max: u16,
    },
    /// The answer: peers this node was connected to recently, at most the `max` asked for.
    Peers(Vec<ExchangedPeer>),
    /// The asker asked again within the answerer's minimum interval.
    Busy,
}

/// One peer in an answer: its PeerId (32 bytes) and the addresses to dial it at (a ULEB128
/// count, then each AptosNet `NetworkAddress`: its BCS as a byte string, ULEB128 length
/// first). Each address carries the `/noise-ik/<key>/handshake/0` suffix, the key being the
/// one `peer_id` derives from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangedPeer {
    /// Who.
    pub peer_id: PeerId,
    /// Where.
    pub addresses: Vec<NetworkAddress>,
}

/// The largest answer read: 16 peers with 4 addresses of about 80 bytes each fit in 6 KiB.
/// A longer answer is refused before decoding (`too_large`).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Addresses per peer kept from an answer; a peer with more is refused.
pub const MAX_ADDRESSES_PER_PEER: usize = 4;

#[cfg(test)]
mod tests {
    use wire::ProtocolId;

    use super::*;

    /// The bytes of `wire-format.md` §8.
    #[test]
    fn bytes_match_the_wire_format() {
        let protocol = ProtocolId::PEER_EXCHANGE_RPC;
        assert_eq!(
            protocol
                .to_bytes(&PeerExchangeMsg::GetPeers { max: 16 })
                .unwrap()
                .as_ref(),
            [0x00, 0x10, 0x00]
        );
        assert_eq!(
            protocol.to_bytes(&PeerExchangeMsg::Busy).unwrap().as_ref(),
            [0x02]
        );
        let addr: NetworkAddress = "/memory/5".parse().unwrap();
        let answer = PeerExchangeMsg::Peers(vec![ExchangedPeer {
            peer_id: PeerId::new([0xab; 32]),
            addresses: vec![addr],
        }]);
        let bytes = protocol.to_bytes(&answer).unwrap();
        let mut expected = vec![0x01, 0x01];
        expected.extend([0xab; 32]);
        // One address: its BCS as a byte string (length 4): one protocol, Memory (tag 6),
        // port 5 as u16 LE.
        expected.extend([0x01, 0x04, 0x01, 0x06, 0x05, 0x00]);
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(
            protocol.from_bytes::<PeerExchangeMsg>(&bytes).unwrap(),
            answer
        );
    }
}
