//! Routed messages: a message for a peer we may not be connected to, forwarded hop by hop
//! along [`crate::NextHops`]. The author signs everything but the TTL, so forwarders can
//! check it was not changed on the way, and each forwarder takes one off the TTL.
//!
//! # What the signature covers
//!
//! ```text
//! ROUTED_DOMAIN, ASCII "peerlane/routing/routed/v1" (26 bytes)
//! then the BCS of (author, target, nonce, kind, protocol, body), that is the message's
//! BCS with `ttl` and `signature` left out
//! ```
//!
//! The same bytes, hashed with SHA-256, are the message's [`RoutedHash`]: what the
//! route-back table keys requests by, and what a response names as its target.

use bytes::Bytes;
use netcore::PeerId;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::xeddsa::{self, Signature, SigningKey};

/// The domain string a routed message's signature starts with.
pub const ROUTED_DOMAIN: &[u8; 26] = b"peerlane/routing/routed/v1";

/// SHA-256 of what the author signed. In BCS 32 raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutedHash(pub [u8; 32]);

/// Where a routed message goes. In BCS a variant byte then the 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutedTarget {
    /// Variant 0: a peer, routed by next hops.
    Peer(PeerId),
    /// Variant 1: back along the path a request came by (route-back table), for a
    /// response to a request with this hash.
    RouteBack(RoutedHash),
}

/// What a routed message is. In BCS a variant byte, then the request id (u64 LE) if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutedKind {
    /// Variant 0: a one-way message.
    DirectSend,
    /// Variant 1: an RPC request; the target answers with a `Response` of the same id,
    /// targeted `RouteBack(hash of this request)`.
    Request {
        /// Chosen by the author.
        request_id: u64,
    },
    /// Variant 2: the answer to a request.
    Response {
        /// The request's id.
        request_id: u64,
    },
}

/// A routed message (the ROUTED protocol's payload).
///
/// In BCS, in this order: author (32), target, ttl (u8), nonce (u64 LE), kind, protocol
/// (u8, a protocol id), body (ULEB128 length then bytes), signature (64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedMessage {
    /// Who wrote and signed it.
    pub author: PeerId,
    /// Where it goes.
    pub target: RoutedTarget,
    /// Hops left; not signed.
    pub ttl: u8,
    /// Chosen by the author so that equal bodies give different hashes.
    pub nonce: u64,
    /// Direct send, request or response.
    pub kind: RoutedKind,
    /// The protocol id the body is for.
    pub protocol: u8,
    /// The payload.
    pub body: Bytes,
    /// The author's signature.
    pub signature: Signature,
}

impl RoutedMessage {
    /// A new message from `author`, signed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        author: &SigningKey,
        target: RoutedTarget,
        ttl: u8,
        nonce: u64,
        kind: RoutedKind,
        protocol: u8,
        body: Bytes,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let mut message = Self {
            author: author.peer_id(),
            target,
            ttl,
            nonce,
            kind,
            protocol,
            body,
            signature: Signature::from_bytes([0; 64]),
        };
        let header = message.signed_header();
        message.signature = author.sign(&[ROUTED_DOMAIN, &header, &message.body], rng);
        message
    }

    /// Everything signed before the body's bytes: the BCS of (author, target, nonce, kind,
    /// protocol) and the body's ULEB128 length.
    fn signed_header(&self) -> Vec<u8> {
        let mut header = bcs::to_bytes(&(
            &self.author,
            &self.target,
            self.nonce,
            &self.kind,
            self.protocol,
        ))
        .unwrap_or_default();
        let mut length = self.body.len() as u64;
        loop {
            let byte = (length & 0x7f) as u8;
            length >>= 7;
            if length == 0 {
                header.push(byte);
                break;
            }
            header.push(byte | 0x80);
        }
        header
    }

    /// Checks the author's signature (every forwarder does, before forwarding).
    pub fn verify(&self) -> Result<(), Error> {
        let header = self.signed_header();
        if xeddsa::verify(
            &self.author,
            &[ROUTED_DOMAIN, &header, &self.body],
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(Error::BadSignature {
                signer: self.author,
            })
        }
    }

    /// The hash of what the author signed.
    pub fn hash(&self) -> RoutedHash {
        let mut hash = Sha256::new();
        hash.update(ROUTED_DOMAIN);
        hash.update(self.signed_header());
        hash.update(&self.body);
        RoutedHash(hash.finalize().into())
    }

    /// Takes one hop off the TTL before forwarding; a message at 0 is dropped instead.
    pub fn take_hop(&mut self) -> Result<(), Error> {
        self.ttl = self.ttl.checked_sub(1).ok_or(Error::TtlExhausted)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::edge::test_keys::key;

    fn message() -> RoutedMessage {
        RoutedMessage::new(
            &key(1),
            RoutedTarget::Peer(key(2).peer_id()),
            3,
            42,
            RoutedKind::Request { request_id: 7 },
            0x05,
            Bytes::from_static(b"hello"),
            &mut StdRng::seed_from_u64(0),
        )
    }

    /// The signature covers everything but the TTL: a hop changes the TTL and still
    /// verifies; any other change does not.
    #[test]
    fn signature_covers_all_but_ttl() {
        let original = message();
        original.verify().unwrap();
        let mut hopped = original.clone();
        hopped.take_hop().unwrap();
        assert_eq!(hopped.ttl, 2);
        hopped.verify().unwrap();
        assert_eq!(hopped.hash(), original.hash());

        type Tamper = Box<dyn Fn(&mut RoutedMessage)>;
        let tampers: Vec<Tamper> = vec![
            Box::new(|m| m.body = Bytes::from_static(b"hellp")),
            Box::new(|m| m.nonce += 1),
            Box::new(|m| m.protocol += 1),
            Box::new(|m| m.kind = RoutedKind::Response { request_id: 7 }),
            Box::new(|m| m.target = RoutedTarget::Peer(key(3).peer_id())),
            Box::new(|m| m.author = key(3).peer_id()),
        ];
        for tamper in tampers {
            let mut changed = original.clone();
            tamper(&mut changed);
            assert!(changed.verify().is_err());
            assert_ne!(changed.hash(), original.hash());
        }
    }

    /// TTL counts down per hop and a message at 0 is not forwarded.
    #[test]
    fn ttl_runs_out() {
        let mut message = message();
        for _ in 0..3 {
            message.take_hop().unwrap();
        }
        assert_eq!(message.ttl, 0);
        assert_eq!(message.take_hop(), Err(Error::TtlExhausted));
    }

    /// BCS round trip; the signed header matches the BCS layout of the signed fields.
    #[test]
    fn bcs_round_trip_and_signed_layout() {
        let message = message();
        let bytes = bcs::to_bytes(&message).unwrap();
        assert_eq!(bcs::from_bytes::<RoutedMessage>(&bytes).unwrap(), message);
        let signed = bcs::to_bytes(&(
            &message.author,
            &message.target,
            message.nonce,
            &message.kind,
            message.protocol,
            &message.body,
        ))
        .unwrap();
        let mut header = message.signed_header();
        header.extend_from_slice(&message.body);
        assert_eq!(header, signed);
    }
}
