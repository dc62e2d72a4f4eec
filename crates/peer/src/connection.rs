//! What a peer is started with (`peer::spawn`): an upgraded socket and what set-up learned
//! about the remote ([`Connection`], [`ConnectionMetadata`]).

use std::fmt;

use netcore::{ConnectionOrigin, NetworkAddress, PeerId};
use noise::PeerRole;
use wire::{MessagingProtocolVersion, ProtocolIdSet};

/// Names one connection among all of a node's connections, for logs and for telling an old
/// connection to a peer from a new one. Allocated by whoever sets connections up (the facade),
/// unique per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What connection set-up (transport, Noise, handshake message) learned about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionMetadata {
    /// The remote's PeerId, authenticated by Noise.
    pub remote_peer_id: PeerId,
    /// This connection's id.
    pub connection_id: ConnectionId,
    /// The address we dialed, or the one the remote dialed us from.
    pub remote_addr: NetworkAddress,
    /// Who opened the connection.
    pub origin: ConnectionOrigin,
    /// The negotiated messaging protocol version.
    pub messaging_protocol: MessagingProtocolVersion,
    /// The application protocols both sides listed in the handshake.
    pub application_protocols: ProtocolIdSet,
    /// The remote's role, from our trusted set ([`PeerRole::Unknown`] outside it).
    pub role: PeerRole,
}

/// A connection ready for `peer::spawn`: its metadata and the upgraded socket, e.g.
/// a `noise::NoiseStream<TcpStream>` after the handshake message exchange.
#[derive(Debug)]
pub struct Connection<S> {
    /// What set-up learned.
    pub metadata: ConnectionMetadata,
    /// The encrypted byte stream that carries the message frames.
    pub socket: S,
}
