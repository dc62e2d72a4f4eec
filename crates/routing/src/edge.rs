//! Edges: a connection between two peers, signed by both ends while active and by the end
//! that removed it once removed, and the half-signed [`EdgeProposal`] two peers exchange
//! when a connection starts.
//!
//! # What a signature covers
//!
//! Both ends sign the same 96 bytes ([`edge_signing_bytes`]):
//!
//! ```text
//! offset  len  field
//!      0   24  EDGE_DOMAIN, ASCII "peerlane/routing/edge/v1"
//!     24   32  peer0 (the lower PeerId, raw bytes)
//!     56   32  peer1 (the higher PeerId)
//!     88    8  nonce, u64 little-endian (odd: active, even: removed)
//! ```
//!
//! A removal signs the same layout with the even nonce, so it proves that one end ended the
//! connection at that time, whatever the other end says.

use netcore::PeerId;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::nonce;
use crate::xeddsa::{self, Signature, SigningKey};

/// The domain string an edge signature starts with.
pub const EDGE_DOMAIN: &[u8; 24] = b"peerlane/routing/edge/v1";

/// Length of [`edge_signing_bytes`].
pub const EDGE_SIGNING_LENGTH: usize = 96;

/// The two ends of an edge, lower PeerId first. In BCS: `peer0` then `peer1`, 32 raw bytes
/// each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeKey {
    peer0: PeerId,
    peer1: PeerId,
}

impl EdgeKey {
    /// The key of the edge between `a` and `b`, in either order; `None` if they are equal.
    pub fn new(a: PeerId, b: PeerId) -> Option<Self> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Some(Self { peer0: a, peer1: b }),
            std::cmp::Ordering::Greater => Some(Self { peer0: b, peer1: a }),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// The lower end.
    pub fn peer0(&self) -> PeerId {
        self.peer0
    }

    /// The higher end.
    pub fn peer1(&self) -> PeerId {
        self.peer1
    }

    /// The end `end`.
    pub fn peer(&self, end: EdgeEnd) -> PeerId {
        match end {
            EdgeEnd::Peer0 => self.peer0,
            EdgeEnd::Peer1 => self.peer1,
        }
    }

    /// Which end `peer` is, if it is one.
    pub fn end_of(&self, peer: &PeerId) -> Option<EdgeEnd> {
        if *peer == self.peer0 {
            Some(EdgeEnd::Peer0)
        } else if *peer == self.peer1 {
            Some(EdgeEnd::Peer1)
        } else {
            None
        }
    }

    /// The end that is not `peer`, if `peer` is an end.
    pub fn other(&self, peer: &PeerId) -> Option<PeerId> {
        self.end_of(peer).map(|end| self.peer(end.other()))
    }

    /// Whether the ends are distinct and ascending (a decoded key may be neither).
    pub fn is_well_formed(&self) -> bool {
        self.peer0 < self.peer1
    }
}

/// One end of an edge. In BCS a one-byte variant index: 0 for `Peer0`, 1 for `Peer1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EdgeEnd {
    /// The lower PeerId.
    Peer0,
    /// The higher PeerId.
    Peer1,
}

impl EdgeEnd {
    /// The other end.
    pub fn other(self) -> Self {
        match self {
            Self::Peer0 => Self::Peer1,
            Self::Peer1 => Self::Peer0,
        }
    }
}

/// The signatures of an edge: both ends' while it is active, the remover's once removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EdgeProof {
    /// Variant 0: odd nonce, signed by both ends.
    Active {
        /// `peer0`'s signature.
        signature0: Signature,
        /// `peer1`'s signature.
        signature1: Signature,
    },
    /// Variant 1: even nonce, signed by the end that removed the edge.
    Removed {
        /// Who removed it.
        by: EdgeEnd,
        /// Its signature.
        signature: Signature,
    },
}

/// A signed edge. In BCS: key (64 bytes), nonce (u64 LE), proof (variant byte, then 128
/// bytes for `Active` or 1 + 64 bytes for `Removed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// The two ends.
    pub key: EdgeKey,
    /// Milliseconds since the epoch; odd active, even removed.
    pub nonce: u64,
    /// The signatures.
    pub proof: EdgeProof,
}

/// The bytes both ends sign for `key` at `nonce` (layout in the module docs).
pub fn edge_signing_bytes(key: &EdgeKey, nonce: u64) -> [u8; EDGE_SIGNING_LENGTH] {
    let mut bytes = [0u8; EDGE_SIGNING_LENGTH];
    bytes[..24].copy_from_slice(EDGE_DOMAIN);
    bytes[24..56].copy_from_slice(key.peer0.as_bytes());
    bytes[56..88].copy_from_slice(key.peer1.as_bytes());
    bytes[88..].copy_from_slice(&nonce.to_le_bytes());
    bytes
}

impl Edge {
    /// Whether the edge is active (odd nonce).
    pub fn is_active(&self) -> bool {
        nonce::is_active(self.nonce)
    }

    /// The checks that cost no signature work: ordered distinct ends, a proof that matches
    /// the nonce's parity, a nonce not too far ahead of `now_ms`.
    pub fn check_shape(&self, now_ms: u64, max_future_ms: u64) -> Result<(), Error> {
        if !self.key.is_well_formed() {
            return Err(Error::EdgeEndsNotOrdered);
        }
        let parity_matches = matches!(
            (self.is_active(), &self.proof),
            (true, EdgeProof::Active { .. }) | (false, EdgeProof::Removed { .. })
        );
        if !parity_matches {
            return Err(Error::NonceDoesNotMatchProof { nonce: self.nonce });
        }
        nonce::check_not_future(self.nonce, now_ms, max_future_ms)
    }

    /// Verifies the signatures (one or two XEdDSA verifications; cost in
    /// `docs/routing.md`). Run [`Edge::check_shape`] first.
    pub fn verify_signatures(&self) -> Result<(), Error> {
        self.verify_signatures_with(&mut |peer| xeddsa::VerifyingKey::from_peer_id(peer))
    }

    /// [`Edge::verify_signatures`] with the signers' keys from `keys` (a cache, in batches).
    pub fn verify_signatures_with(
        &self,
        keys: &mut impl FnMut(&PeerId) -> Option<xeddsa::VerifyingKey>,
    ) -> Result<(), Error> {
        let bytes = edge_signing_bytes(&self.key, self.nonce);
        let mut check = |signer: PeerId, signature: &Signature| {
            if keys(&signer).is_some_and(|key| key.verify(&[&bytes], signature)) {
                Ok(())
            } else {
                Err(Error::BadSignature { signer })
            }
        };
        match &self.proof {
            EdgeProof::Active {
                signature0,
                signature1,
            } => {
                check(self.key.peer0, signature0)?;
                check(self.key.peer1, signature1)
            }
            EdgeProof::Removed { by, signature } => check(self.key.peer(*by), signature),
        }
    }

    /// The removal of this active edge by the local end `local`: the next (even) nonce,
    /// signed by `local` alone.
    pub fn remove(
        &self,
        local: &SigningKey,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, Error> {
        let by = self.key.end_of(&local.peer_id()).ok_or(Error::NotAnEnd)?;
        let nonce = nonce::removal_of(self.nonce)?;
        let signature = local.sign(&[&edge_signing_bytes(&self.key, nonce)], rng);
        Ok(Self {
            key: self.key,
            nonce,
            proof: EdgeProof::Removed { by, signature },
        })
    }
}

/// The first half of a new edge: the end that opens the exchange picks an odd nonce and
/// signs; the other end checks it and completes the [`Edge`]. In BCS: key, nonce, `by`,
/// signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeProposal {
    /// The two ends.
    pub key: EdgeKey,
    /// An odd nonce.
    pub nonce: u64,
    /// The end that signed.
    pub by: EdgeEnd,
    /// Its signature over [`edge_signing_bytes`].
    pub signature: Signature,
}

impl EdgeProposal {
    /// The proposal of an edge from `local` to `remote`, with a fresh nonce above `known`
    /// (the highest nonce we hold for the edge).
    pub fn new(
        local: &SigningKey,
        remote: PeerId,
        now_ms: u64,
        known: Option<u64>,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, Error> {
        let key = EdgeKey::new(local.peer_id(), remote).ok_or(Error::EdgeEndsNotOrdered)?;
        let by = key.end_of(&local.peer_id()).ok_or(Error::NotAnEnd)?;
        let nonce = nonce::fresh_active(now_ms, known);
        let signature = local.sign(&[&edge_signing_bytes(&key, nonce)], rng);
        Ok(Self {
            key,
            nonce,
            by,
            signature,
        })
    }

    /// The other end's side: checks the proposal (shape, that `local` is the other end, an
    /// odd nonce above `known` and not in the future, the proposer's signature) and signs,
    /// giving the complete edge. On `NonceNotNewer` the proposer should propose again above
    /// the nonce returned.
    pub fn accept(
        &self,
        local: &SigningKey,
        known: Option<u64>,
        now_ms: u64,
        max_future_ms: u64,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Edge, Error> {
        if !self.key.is_well_formed() {
            return Err(Error::EdgeEndsNotOrdered);
        }
        let local_end = self.key.end_of(&local.peer_id()).ok_or(Error::NotAnEnd)?;
        if local_end == self.by {
            return Err(Error::NotAnEnd);
        }
        if !nonce::is_active(self.nonce) {
            return Err(Error::NonceParity { nonce: self.nonce });
        }
        if let Some(known) = known.filter(|known| *known >= self.nonce) {
            return Err(Error::NonceNotNewer {
                nonce: self.nonce,
                known,
            });
        }
        nonce::check_not_future(self.nonce, now_ms, max_future_ms)?;
        let bytes = edge_signing_bytes(&self.key, self.nonce);
        let proposer = self.key.peer(self.by);
        if !xeddsa::verify(&proposer, &[&bytes], &self.signature) {
            return Err(Error::BadSignature { signer: proposer });
        }
        let own = local.sign(&[&bytes], rng);
        let (signature0, signature1) = match self.by {
            EdgeEnd::Peer0 => (self.signature, own),
            EdgeEnd::Peer1 => (own, self.signature),
        };
        Ok(Edge {
            key: self.key,
            nonce: self.nonce,
            proof: EdgeProof::Active {
                signature0,
                signature1,
            },
        })
    }

    /// The proposer's side: checks that `edge` completes this proposal (same key and nonce,
    /// our signature unchanged, the other end's signature valid).
    pub fn check_completion(&self, edge: &Edge) -> Result<(), Error> {
        let EdgeProof::Active {
            signature0,
            signature1,
        } = &edge.proof
        else {
            return Err(Error::NonceDoesNotMatchProof { nonce: edge.nonce });
        };
        if edge.key != self.key || edge.nonce != self.nonce {
            return Err(Error::NonceNotNewer {
                nonce: edge.nonce,
                known: self.nonce,
            });
        }
        let (ours, theirs) = match self.by {
            EdgeEnd::Peer0 => (signature0, signature1),
            EdgeEnd::Peer1 => (signature1, signature0),
        };
        let other = self.key.peer(self.by.other());
        if *ours != self.signature {
            return Err(Error::BadSignature {
                signer: self.key.peer(self.by),
            });
        }
        let bytes = edge_signing_bytes(&self.key, self.nonce);
        if xeddsa::verify(&other, &[&bytes], theirs) {
            Ok(())
        } else {
            Err(Error::BadSignature { signer: other })
        }
    }
}

/// Test helpers: keys from seeds and edges signed by both ends.
#[cfg(test)]
pub(crate) mod test_keys {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// The signing key of seed `seed`.
    pub(crate) fn key(seed: u64) -> SigningKey {
        let mut private_key = [0u8; 32];
        StdRng::seed_from_u64(seed).fill_bytes(&mut private_key);
        SigningKey::from_x25519_private_key(private_key)
    }

    /// An active edge between `a` and `b` at `nonce`, signed by both.
    pub(crate) fn active_edge(a: &SigningKey, b: &SigningKey, nonce: u64) -> Edge {
        let mut rng = StdRng::seed_from_u64(nonce);
        let key = EdgeKey::new(a.peer_id(), b.peer_id()).unwrap();
        let bytes = edge_signing_bytes(&key, nonce);
        let (k0, k1) = if key.peer0() == a.peer_id() {
            (a, b)
        } else {
            (b, a)
        };
        Edge {
            key,
            nonce,
            proof: EdgeProof::Active {
                signature0: k0.sign(&[&bytes], &mut rng),
                signature1: k1.sign(&[&bytes], &mut rng),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::test_keys::{active_edge, key};
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const FIVE_MIN: u64 = 300_000;

    /// Proposal, acceptance and completion give an edge both ends' signatures verify on.
    #[test]
    fn proposal_accept_complete() {
        let (a, b) = (key(1), key(2));
        let mut rng = StdRng::seed_from_u64(0);
        let proposal = EdgeProposal::new(&a, b.peer_id(), NOW, None, &mut rng).unwrap();
        assert_eq!(proposal.nonce, NOW | 1);
        let edge = proposal.accept(&b, None, NOW, FIVE_MIN, &mut rng).unwrap();
        edge.check_shape(NOW, FIVE_MIN).unwrap();
        edge.verify_signatures().unwrap();
        proposal.check_completion(&edge).unwrap();
        // A third party cannot accept, nor the proposer itself.
        assert_eq!(
            proposal.accept(&key(3), None, NOW, FIVE_MIN, &mut rng),
            Err(Error::NotAnEnd)
        );
        assert_eq!(
            proposal.accept(&a, None, NOW, FIVE_MIN, &mut rng),
            Err(Error::NotAnEnd)
        );
    }

    /// Stale, future, even and forged proposals are refused.
    #[test]
    fn bad_proposals_are_refused() {
        let (a, b) = (key(1), key(2));
        let mut rng = StdRng::seed_from_u64(0);
        let proposal = EdgeProposal::new(&a, b.peer_id(), NOW, None, &mut rng).unwrap();
        assert!(matches!(
            proposal.accept(&b, Some(NOW + 1), NOW, FIVE_MIN, &mut rng),
            Err(Error::NonceNotNewer { .. })
        ));
        assert!(matches!(
            proposal.accept(&b, None, NOW - FIVE_MIN - 10, FIVE_MIN, &mut rng),
            Err(Error::NonceInFuture { .. })
        ));
        let mut forged = proposal;
        forged.nonce += 2;
        assert!(matches!(
            forged.accept(&b, None, NOW, FIVE_MIN, &mut rng),
            Err(Error::BadSignature { .. })
        ));
        let mut even = proposal;
        even.nonce += 1;
        assert!(matches!(
            even.accept(&b, None, NOW, FIVE_MIN, &mut rng),
            Err(Error::NonceParity { .. })
        ));
    }

    /// A removal is signed by the remover alone and verifies; a changed nonce or a swapped
    /// remover does not.
    #[test]
    fn removal_verifies_and_tampering_fails() {
        let (a, b) = (key(1), key(2));
        let mut rng = StdRng::seed_from_u64(0);
        let edge = active_edge(&a, &b, NOW | 1);
        let removed = edge.remove(&b, &mut rng).unwrap();
        assert_eq!(removed.nonce, (NOW | 1) + 1);
        removed.check_shape(NOW, FIVE_MIN).unwrap();
        removed.verify_signatures().unwrap();
        let mut swapped = removed;
        if let EdgeProof::Removed { by, .. } = &mut swapped.proof {
            *by = by.other();
        }
        assert!(swapped.verify_signatures().is_err());
        let mut renonced = removed;
        renonced.nonce += 2;
        assert!(renonced.verify_signatures().is_err());
        assert_eq!(edge.remove(&key(3), &mut rng), Err(Error::NotAnEnd));
        assert!(removed.remove(&b, &mut rng).is_err());
    }

    /// Shape checks: unordered ends, a proof of the wrong kind, a nonce in the future.
    #[test]
    fn shape_checks() {
        let (a, b) = (key(1), key(2));
        let edge = active_edge(&a, &b, NOW | 1);
        let mut unordered = edge;
        unordered.key = EdgeKey {
            peer0: edge.key.peer1(),
            peer1: edge.key.peer0(),
        };
        assert_eq!(
            unordered.check_shape(NOW, FIVE_MIN),
            Err(Error::EdgeEndsNotOrdered)
        );
        let mut wrong_parity = edge;
        wrong_parity.nonce += 1;
        assert!(matches!(
            wrong_parity.check_shape(NOW, FIVE_MIN),
            Err(Error::NonceDoesNotMatchProof { .. })
        ));
        assert!(matches!(
            edge.check_shape(NOW - FIVE_MIN - 2, FIVE_MIN),
            Err(Error::NonceInFuture { .. })
        ));
        assert!(EdgeKey::new(a.peer_id(), a.peer_id()).is_none());
    }

    /// The signed bytes are the documented 96: domain, peer0, peer1, nonce LE.
    #[test]
    fn signing_bytes_layout() {
        let key = EdgeKey::new(PeerId::new([2; 32]), PeerId::new([1; 32])).unwrap();
        let bytes = edge_signing_bytes(&key, 0x0102_0304_0506_0709);
        assert_eq!(&bytes[..24], b"peerlane/routing/edge/v1");
        assert_eq!(&bytes[24..56], &[1; 32]);
        assert_eq!(&bytes[56..88], &[2; 32]);
        assert_eq!(
            &bytes[88..],
            &[0x09, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]
        );
    }
}
