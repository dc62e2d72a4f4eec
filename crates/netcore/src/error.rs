//! [`Error`]: everything that can go wrong in netcore.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::address::NetworkAddress;

/// Errors from transports, addresses and framing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame's length is above the maximum. On read this is detected from the prefix alone,
    /// before anything is allocated; on write nothing is sent.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Declared or actual body length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },

    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: expected {expected} bytes, received {received}")]
    TruncatedFrame {
        /// Bytes the frame (or its prefix) needed.
        expected: usize,
        /// Bytes that were there.
        received: usize,
    },

    /// Reading from or writing to the underlying stream failed (including EOF before a whole
    /// frame, as [`io::ErrorKind::UnexpectedEof`]).
    #[error("i/o error")]
    Io(#[from] io::Error),

    /// A PeerId string or byte slice is malformed.
    #[error("invalid peer id {input:?}: {reason}")]
    InvalidPeerId {
        /// What was given (hex-encoded when it was bytes).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An x25519 public key string is not 64 hex digits (with or without `0x`).
    #[error("invalid x25519 public key {input:?}: {reason}")]
    InvalidPublicKey {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    // Addresses. Every variant carries the text that was being parsed, so that a bad config
    // value can be found and fixed from the message alone.
    /// A network address has no protocols (`""`, `"/"`, or an empty protocol list).
    #[error("network address {input:?} has no protocols")]
    EmptyAddress {
        /// What was given.
        input: String,
    },

    /// A network address does not start with `/`.
    #[error("network address {input:?} does not start with '/'")]
    AddressMissingLeadingSlash {
        /// What was given.
        input: String,
    },

    /// A network address names a protocol we do not know.
    #[error("network address {input:?}: unknown protocol {protocol:?}")]
    UnknownProtocol {
        /// The whole address.
        input: String,
        /// The unknown protocol name.
        protocol: String,
    },

    /// A protocol in a network address ends the string without its argument (`/ip4`, `/tcp`).
    #[error("network address {input:?}: /{protocol} is missing its argument")]
    MissingProtocolArgument {
        /// The whole address.
        input: String,
        /// The protocol whose argument is missing, e.g. `"tcp"`.
        protocol: &'static str,
    },

    /// A protocol's argument does not parse: a bad IP address, port, key or version.
    #[error("network address {input:?}: /{protocol} argument {argument:?} is not {expected}")]
    InvalidProtocolArgument {
        /// The whole address.
        input: String,
        /// The protocol, e.g. `"noise-ik"`.
        protocol: &'static str,
        /// The argument as given.
        argument: String,
        /// What the argument should be, e.g. `"a port number (0-65535)"`.
        expected: &'static str,
    },

    /// A DNS name is empty, longer than 255 bytes or contains a `/`.
    #[error("invalid dns name {name:?}: {reason}")]
    InvalidDnsName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A protocol appears where AptosNet's address grammar does not allow it, e.g. `/tcp` first
    /// or `/handshake` without `/noise-ik` before it.
    #[error("network address {input:?}: /{protocol} cannot appear here, expected {expected}")]
    MisplacedProtocol {
        /// The whole address.
        input: String,
        /// The misplaced protocol, e.g. `"tcp"`.
        protocol: &'static str,
        /// What the grammar allows at that position.
        expected: &'static str,
    },

    // Transports.
    /// A transport was given an address it cannot use, e.g. `/memory/..` on TCP.
    #[error("{transport} transport: unsupported address {addr}")]
    UnsupportedAddress {
        /// The transport, `"tcp"` or `"memory"`.
        transport: &'static str,
        /// The address as given.
        addr: NetworkAddress,
    },

    /// Binding a TCP listener failed.
    #[error("tcp listen on {addr} failed")]
    Listen {
        /// The address we tried to listen on.
        addr: NetworkAddress,
        /// The bind or listen error.
        #[source]
        source: io::Error,
    },

    /// Accepting a connection on a TCP listener failed. The listener keeps running.
    #[error("tcp accept on {addr} failed")]
    Accept {
        /// The listener's bound address.
        addr: NetworkAddress,
        /// The accept error.
        #[source]
        source: io::Error,
    },

    /// Resolving the DNS name of an address to dial or listen on failed.
    #[error("tcp: resolving {addr} failed")]
    Resolve {
        /// The address.
        addr: NetworkAddress,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },

    /// A DNS name resolved, but to no address of the family `/dns4` or `/dns6` asks for.
    #[error("tcp: {addr} resolved to no usable ip address")]
    NoResolvedAddress {
        /// The address.
        addr: NetworkAddress,
    },

    /// Every resolved address of a dial refused or failed; this is the last attempt's error.
    #[error("tcp dial {addr}: connect to {socket_addr} failed")]
    Connect {
        /// The dialed address.
        addr: NetworkAddress,
        /// The last socket address tried.
        socket_addr: SocketAddr,
        /// Why that attempt failed.
        #[source]
        source: io::Error,
    },

    /// A dial did not connect within the configured connect timeout (name resolution
    /// included).
    #[error("tcp dial {addr}: no connection after {timeout:?}")]
    ConnectTimeout {
        /// The dialed address.
        addr: NetworkAddress,
        /// The timeout in force.
        timeout: Duration,
    },

    /// Setting a socket option (`TCP_NODELAY`, `SO_SNDBUF`, ...) failed.
    #[error("tcp: setting {option} failed")]
    SocketOption {
        /// The option, e.g. `"TCP_NODELAY"`.
        option: &'static str,
        /// The setsockopt error.
        #[source]
        source: io::Error,
    },

    // In-memory sockets.
    /// A memory listener tried to bind a port that another listener holds.
    #[error("memory listener: port {port} is already bound")]
    MemoryPortInUse {
        /// The port.
        port: u16,
    },

    /// A memory listener asked for port 0 while all 65,535 ports were bound.
    #[error("memory listener: no free port")]
    MemoryNoFreePort,

    /// A memory socket dialed a port with no listener (or one that closed while we waited for
    /// room in its backlog).
    #[error("memory dial: nothing listening on port {port}")]
    MemoryConnectionRefused {
        /// The port.
        port: u16,
    },
}

impl Error {
    /// Whether this error means the stream ended cleanly or mid-frame (as opposed to a
    /// malformed frame or a local failure).
    pub fn is_eof(&self) -> bool {
        match self {
            Self::TruncatedFrame { .. } => true,
            Self::Io(err) => err.kind() == io::ErrorKind::UnexpectedEof,
            _ => false,
        }
    }
}

impl From<Error> for io::Error {
    /// For `tokio_util::codec` users that need an `io::Error`: keeps the kind where one exists.
    fn from(err: Error) -> Self {
        match err {
            Error::Io(e) => e,
            Error::TruncatedFrame { .. } => Self::new(io::ErrorKind::UnexpectedEof, err),
            Error::ConnectTimeout { .. } => Self::new(io::ErrorKind::TimedOut, err),
            Error::MemoryConnectionRefused { .. } => {
                Self::new(io::ErrorKind::ConnectionRefused, err)
            }
            Error::MemoryPortInUse { .. } => Self::new(io::ErrorKind::AddrInUse, err),
            Error::UnsupportedAddress { .. } => Self::new(io::ErrorKind::InvalidInput, err),
            Error::Listen { ref source, .. }
            | Error::Accept { ref source, .. }
            | Error::Resolve { ref source, .. }
            | Error::Connect { ref source, .. }
            | Error::SocketOption { ref source, .. } => Self::new(source.kind(), err),
            other => Self::new(io::ErrorKind::InvalidData, other),
        }
    }
}
