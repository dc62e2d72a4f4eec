//! [`Error`]: the one error type applications see from peerlane.
//!
//! Errors from the layers below (`netcore`, `noise`, `wire`, `peer`) are wrapped as sources,
//! never flattened to strings: walk [`std::error::Error::source`] for the detail. Messages say
//! which phase failed ("dial", "set-up", "send to …") and never repeat their source's text.

use std::time::Duration;

use netcore::{NetworkAddress, PeerId};
use wire::{NetworkId, ProtocolId};

use connectivity_manager::DialFailure;

use crate::metrics::SetupFailure;
use crate::peers::PeerNetworkId;

/// Everything that can go wrong in the facade: building a network, setting up connections,
/// sending and receiving application messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Configuration and building.
    /// The configured identity key is not 64 hex digits. The key itself is not repeated here,
    /// as it is a secret.
    #[error("config: identity private key is invalid: {reason}")]
    InvalidPrivateKey {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Text that is not an IP address or a CIDR prefix ([`IpPrefix`](crate::IpPrefix)).
    #[error("`{text}` is not an IP address or a CIDR prefix (such as 10.1.2.0/24)")]
    InvalidIpPrefix {
        /// The text.
        text: String,
    },

    /// A configuration value breaks a rule.
    #[error("config: {field} is invalid: {reason}")]
    InvalidConfig {
        /// The offending field, as named in the config file.
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
        /// The lower layer's complaint, when it has one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// Two applications registered the same protocol on one network; a protocol belongs to
    /// one application.
    #[error("protocol {protocol} is already registered by another application")]
    ProtocolAlreadyRegistered {
        /// The protocol registered twice.
        protocol: ProtocolId,
    },

    /// The network could not start listening.
    #[error("listen on {addr} failed")]
    Listen {
        /// The configured listen address.
        addr: NetworkAddress,
        /// The transport's error.
        #[source]
        source: netcore::Error,
    },

    // Connection set-up (dials, and accepted connections before they are registered).
    /// The transport could not connect or accept.
    #[error("set-up: transport failed")]
    Transport(#[source] netcore::Error),

    /// The Noise handshake failed (on the dialing side, a rejection by the remote shows up here
    /// as [`noise::Error::Rejected`]).
    #[error("set-up: noise handshake failed")]
    Noise(#[source] noise::Error),

    /// The AptosNet handshake message could not be exchanged, or negotiation failed (chain id,
    /// network id, no common protocol).
    #[error("set-up: handshake message exchange or negotiation failed")]
    Handshake(#[source] wire::Error),

    /// The address to dial has no `/noise-ik/<key>`, so we cannot authenticate the remote.
    #[error("dial: address {addr} has no noise-ik key")]
    MissingNoiseKey {
        /// The address.
        addr: NetworkAddress,
    },

    /// The address to dial carries a Noise key that `peer_id` may not use: a trusted peer must
    /// be dialed at one of its trusted keys, any other peer at the key its PeerId derives from
    /// (as an inbound connection must prove). Nothing was sent.
    #[error("dial: {peer_id} may not use the noise-ik key of address {addr}")]
    DialKeyMismatch {
        /// The PeerId asked for.
        peer_id: PeerId,
        /// The address, with its key.
        addr: NetworkAddress,
    },

    /// The address to dial asks for a handshake version other than 0, the only one AptosNet
    /// defines. Nothing was sent.
    #[error("dial: address {addr} asks for handshake version {version:?}, we speak 0")]
    UnsupportedHandshakeVersion {
        /// The address.
        addr: NetworkAddress,
        /// The version it names, if any.
        version: Option<u8>,
    },

    /// Connecting, the Noise handshake and the handshake message together took longer than
    /// the set-up timeout.
    #[error("set-up: connection was not set up within {timeout:?}")]
    SetupTimeout {
        /// The set-up timeout in force.
        timeout: Duration,
    },

    /// The connection turned out to be to ourselves; it was closed.
    #[error("set-up: the connection is to ourselves")]
    SelfConnection,

    /// We are connected to the peer already; nothing was dialed.
    #[error("dial: already connected to {peer}")]
    AlreadyConnected {
        /// The peer.
        peer: PeerNetworkId,
    },

    /// The peer is banned on this network ([`Network::ban`](crate::Network::ban)): a dial
    /// fails with this before connecting, and a connection set up before the ban is closed.
    #[error("dial: {peer} is banned")]
    Banned {
        /// The peer.
        peer: PeerNetworkId,
    },

    // Sending and receiving.
    /// The client has no network with this id.
    #[error("network {network_id} is not served by this client")]
    UnknownNetwork {
        /// The network asked for.
        network_id: NetworkId,
    },

    /// We have no connection to the peer.
    #[error("not connected to {peer}")]
    NotConnected {
        /// The peer.
        peer: PeerNetworkId,
    },

    /// None of the application's protocols for this kind of message was negotiated with the
    /// peer.
    #[error("{peer} speaks none of the application's {kind} protocols {preferences:?}")]
    NoCommonProtocol {
        /// The peer.
        peer: PeerNetworkId,
        /// Direct send or RPC.
        kind: ProtocolKind,
        /// The application's preference list for that kind.
        preferences: Vec<ProtocolId>,
    },

    /// An application value could not be encoded for a protocol.
    #[error("encoding a message for protocol {protocol} failed")]
    Encode {
        /// The protocol chosen for the peer.
        protocol: ProtocolId,
        /// The encoder's error.
        #[source]
        source: wire::Error,
    },

    /// An RPC response could not be decoded into the application's type.
    #[error("decoding the rpc response on protocol {protocol} failed")]
    Decode {
        /// The protocol of the RPC.
        protocol: ProtocolId,
        /// The decoder's error.
        #[source]
        source: wire::Error,
    },

    /// The peer's connection refused or failed the operation: its queue is full, it is
    /// disconnecting, an RPC timed out or the remote does not serve the protocol.
    #[error("{peer}: sending failed")]
    Peer {
        /// The peer.
        peer: PeerNetworkId,
        /// The connection's error (boxed: it is the largest of the lower errors).
        #[source]
        source: Box<peer::Error>,
    },

    /// Responding to an inbound RPC failed (the connection is gone, or the response came after
    /// the request's deadline).
    #[error("responding to an rpc on protocol {protocol} failed")]
    Respond {
        /// The protocol of the RPC.
        protocol: ProtocolId,
        /// The connection's error (boxed: it is the largest of the lower errors).
        #[source]
        source: Box<peer::Error>,
    },

    /// Sending to several peers failed for some of them; the others were sent to.
    #[error("sending to {failed} of {attempted} peers failed")]
    SendToPeers {
        /// Peers the message could not be sent to.
        failed: usize,
        /// Peers we tried.
        attempted: usize,
        /// The first failure.
        #[source]
        first: Box<Self>,
    },

    /// The network is shutting down or shut down.
    #[error("network is shut down")]
    ShutDown,

    /// No route to the peer: it is not connected and not reachable over the routing graph
    /// (or the network does not run routing).
    #[error("no route to {peer}")]
    NoRoute {
        /// The peer.
        peer: PeerNetworkId,
    },

    /// The network's routing is busy: its command queue is full, or too many routed RPCs
    /// wait for responses. Back off.
    #[error("routing is busy")]
    RoutingBusy,
}

/// Which of an application's two protocol preference lists a message uses: its direct-send
/// protocols or its RPC protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolKind {
    /// A one-way message.
    DirectSend,
    /// A request that expects a response.
    Rpc,
}

impl Error {
    /// Whether the peer is not connected (or its connection is going away).
    pub fn is_not_connected(&self) -> bool {
        match self {
            Self::NotConnected { .. } => true,
            Self::Peer { source, .. } | Self::Respond { source, .. } => {
                matches!(**source, peer::Error::Disconnected)
            }
            _ => false,
        }
    }

    /// Whether something took longer than its deadline: an RPC or a connection set-up.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::SetupTimeout { .. } => true,
            Self::Peer { source, .. } => matches!(**source, peer::Error::Timeout { .. }),
            Self::Noise(source) => matches!(source, noise::Error::Timeout { .. }),
            _ => false,
        }
    }

    /// Whether the peer's outbound queue was full, so the message was dropped: back off.
    pub fn is_queue_full(&self) -> bool {
        match self {
            Self::RoutingBusy => true,
            Self::Peer { source, .. } | Self::Respond { source, .. } => {
                matches!(**source, peer::Error::QueueFull { .. })
            }
            _ => false,
        }
    }

    /// The error of the peer's connection, when that is what failed.
    pub fn peer_error(&self) -> Option<&peer::Error> {
        match self {
            Self::Peer { source, .. } | Self::Respond { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the network is shut down.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Self::ShutDown)
    }

    /// This error and its sources, `: `-separated, for a log line or an operator's answer:
    /// `set-up: transport failed: tcp dial …: connect to 10.0.0.1:6180 failed: i/o error:
    /// Connection refused (os error 111)`.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            text.push_str(": ");
            text.push_str(&err.to_string());
            source = err.source();
        }
        text
    }

    /// The `reason` label of a connection set-up failure: the one place that maps Noise and
    /// handshake errors onto admission reasons.
    pub(crate) fn setup_failure(&self) -> SetupFailure {
        match self {
            Self::Noise(noise::Error::Timeout { .. }) | Self::SetupTimeout { .. } => {
                SetupFailure::Timeout
            }
            Self::Noise(
                noise::Error::UnknownPeer { .. }
                | noise::Error::KeyMismatch { .. }
                | noise::Error::PeerIdMismatch { .. }
                | noise::Error::LowOrderKey { .. },
            ) => SetupFailure::Untrusted,
            Self::Noise(
                noise::Error::ReplayedTimestamp { .. }
                | noise::Error::ReplayedMessage { .. }
                | noise::Error::StaleTimestamp { .. },
            ) => SetupFailure::Replay,
            Self::Noise(noise::Error::Banned { .. }) => SetupFailure::Banned,
            Self::Noise(noise::Error::SelfDial { .. }) | Self::SelfConnection => {
                SetupFailure::SelfDial
            }
            Self::Noise(_) => SetupFailure::Noise,
            Self::Handshake(wire::Error::InvalidChainId { .. }) => SetupFailure::ChainMismatch,
            Self::Handshake(wire::Error::InvalidNetworkId { .. }) => SetupFailure::NetworkMismatch,
            Self::Handshake(wire::Error::NoCommonProtocols) => SetupFailure::NoCommonProtocol,
            Self::Handshake(_) => SetupFailure::Handshake,
            Self::MissingNoiseKey { .. } | Self::UnsupportedHandshakeVersion { .. } => {
                SetupFailure::Address
            }
            Self::DialKeyMismatch { .. } => SetupFailure::DialKeyMismatch,
            _ => SetupFailure::Transport,
        }
    }
}

impl Error {
    /// How a failed dial is reported to the connectivity manager: connecting failed
    /// (unreachable), the set-up deadline passed (timeout), Noise or the handshake message
    /// failed (handshake), we were connected already (already connected, no backoff).
    pub(crate) fn dial_failure(&self) -> DialFailure {
        if matches!(self, Self::AlreadyConnected { .. }) {
            return DialFailure::AlreadyConnected;
        }
        if matches!(self, Self::Banned { .. }) {
            return DialFailure::Other;
        }
        match self.setup_failure() {
            SetupFailure::Transport => DialFailure::Unreachable,
            SetupFailure::Timeout => DialFailure::Timeout,
            SetupFailure::Noise
            | SetupFailure::Untrusted
            | SetupFailure::Replay
            | SetupFailure::SelfDial
            | SetupFailure::Handshake
            | SetupFailure::ChainMismatch
            | SetupFailure::NetworkMismatch
            | SetupFailure::NoCommonProtocol => DialFailure::Handshake,
            // Refused before connecting, or inbound-only admission reasons.
            SetupFailure::Address
            | SetupFailure::DialKeyMismatch
            | SetupFailure::Evicted
            | SetupFailure::Banned
            | SetupFailure::RateLimited
            | SetupFailure::IpPendingCap
            | SetupFailure::PrefixPendingCap
            | SetupFailure::PendingCap => DialFailure::Other,
        }
    }
}

impl ProtocolKind {
    /// `"direct_send"` or `"rpc"`, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DirectSend => "direct_send",
            Self::Rpc => "rpc",
        }
    }
}

impl std::fmt::Display for ProtocolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DirectSend => "direct send",
            Self::Rpc => "rpc",
        })
    }
}

impl From<netcore::Error> for Error {
    /// A transport error during set-up; [`TransportExt::and_then`](netcore::TransportExt)
    /// needs this conversion.
    fn from(source: netcore::Error) -> Self {
        Self::Transport(source)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use netcore::PeerId;
    use noise::{PublicKey, Side};
    use wire::ChainId;

    use super::*;

    /// Every Noise and handshake-message error an inbound set-up can end with maps to the
    /// admission reason operators see in `peerlane_connection_setup_failures_total`, and each
    /// set-up error maps to the dial failure the connectivity manager backs off on.
    #[test]
    fn setup_errors_map_to_admission_reasons_and_dial_failures() {
        let peer_id = PeerId::new([7; 32]);
        let public_key = PublicKey::from([7; 32]);
        let timeout = Duration::from_secs(30);
        let cases = [
            (
                Error::Noise(noise::Error::UnknownPeer { peer_id }),
                SetupFailure::Untrusted,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::KeyMismatch {
                    peer_id,
                    public_key,
                }),
                SetupFailure::Untrusted,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::PeerIdMismatch {
                    peer_id,
                    derived: PeerId::new([8; 32]),
                }),
                SetupFailure::Untrusted,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::ReplayedTimestamp {
                    peer_id,
                    timestamp: 1,
                    last: 2,
                }),
                SetupFailure::Replay,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::ReplayedMessage { peer_id }),
                SetupFailure::Replay,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::StaleTimestamp {
                    peer_id,
                    timestamp: 1,
                    now: 1_000_000,
                    window: timeout,
                }),
                SetupFailure::Replay,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::LowOrderKey {
                    side: Side::Responder,
                    peer_id,
                }),
                SetupFailure::Untrusted,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::Banned { peer_id }),
                SetupFailure::Banned,
                DialFailure::Other,
            ),
            (
                Error::Noise(noise::Error::SelfDial {
                    side: Side::Responder,
                    peer_id,
                }),
                SetupFailure::SelfDial,
                DialFailure::Handshake,
            ),
            (
                Error::SelfConnection,
                SetupFailure::SelfDial,
                DialFailure::Handshake,
            ),
            (
                Error::Noise(noise::Error::Timeout {
                    side: Side::Responder,
                    timeout,
                }),
                SetupFailure::Timeout,
                DialFailure::Timeout,
            ),
            (
                Error::SetupTimeout { timeout },
                SetupFailure::Timeout,
                DialFailure::Timeout,
            ),
            (
                Error::Noise(noise::Error::Rejected {
                    peer_id,
                    source: None,
                }),
                SetupFailure::Noise,
                DialFailure::Handshake,
            ),
            (
                Error::Handshake(wire::Error::InvalidChainId {
                    ours: ChainId::new(1),
                    theirs: ChainId::new(2),
                }),
                SetupFailure::ChainMismatch,
                DialFailure::Handshake,
            ),
            (
                Error::Handshake(wire::Error::InvalidNetworkId {
                    ours: NetworkId::Public,
                    theirs: NetworkId::Vfn,
                }),
                SetupFailure::NetworkMismatch,
                DialFailure::Handshake,
            ),
            (
                Error::Handshake(wire::Error::NoCommonProtocols),
                SetupFailure::NoCommonProtocol,
                DialFailure::Handshake,
            ),
            (
                Error::Handshake(wire::Error::Io(io::ErrorKind::UnexpectedEof.into())),
                SetupFailure::Handshake,
                DialFailure::Handshake,
            ),
            (
                Error::Transport(netcore::Error::Io(io::ErrorKind::ConnectionRefused.into())),
                SetupFailure::Transport,
                DialFailure::Unreachable,
            ),
        ];
        for (error, reason, failure) in cases {
            assert_eq!(error.setup_failure(), reason, "{error:?}");
            assert_eq!(error.dial_failure(), failure, "{error:?}");
        }
        let peer = PeerNetworkId::new(NetworkId::Public, peer_id);
        assert_eq!(
            Error::AlreadyConnected { peer }.dial_failure(),
            DialFailure::AlreadyConnected
        );
    }
}
