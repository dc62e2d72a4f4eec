//! [`Error`]: everything that can go wrong in a Noise handshake or on a [`NoiseStream`].
//!
//! Handshake errors say which side saw them ("noise initiator: …" / "noise responder: …") and
//! carry the remote identity where it is known. AptosNet rejects a handshake by closing the
//! socket, so the responder's precise reason never reaches the initiator: the responder logs
//! and counts it, and the initiator gets [`Error::Rejected`], which lists the likely causes.
//!
//! [`NoiseStream`]: crate::NoiseStream

use std::io;
use std::time::Duration;

use netcore::PeerId;

use crate::keys::PublicKey;
use crate::metrics::HandshakeOutcome;
use crate::side::Side;

/// Errors from handshakes and encrypted streams.
///
/// Every handshake error costs the connection: the caller drops the socket, which is how
/// AptosNet signals a rejection. [`NoiseStream`](crate::NoiseStream) reports its errors as
/// [`io::Error`]s that wrap this type; [`Error::from_io`] gets it back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node tried to connect to itself. The initiator reports it before sending anything
    /// when the remote key or PeerId is its own; the responder reports it when the prologue
    /// carries its own PeerId (checked before anything else).
    #[error("noise {side}: self-dial: peer {peer_id} is ourselves")]
    SelfDial {
        /// Which side detected it.
        side: Side,
        /// The PeerId that is ours.
        peer_id: PeerId,
    },

    /// The responder's key named in the prologue is not the responder's key: the initiator
    /// dialed the wrong address or has a stale key for us. Checked right after self-dial, before
    /// any cryptography.
    #[error(
        "noise responder: initiator {peer_id} expected our key to be {expected}, which is not our \
         key"
    )]
    WrongExpectedKey {
        /// The PeerId in the prologue (not yet authenticated).
        peer_id: PeerId,
        /// The key the initiator expected us to have.
        expected: PublicKey,
    },

    /// A handshake message did not decrypt or had the wrong shape. On the responder this is
    /// message 1 (after the prologue checks passed); on the initiator, message 2.
    #[error("noise {side}: malformed handshake message from {peer_id}")]
    MalformedMessage {
        /// Which side received it.
        side: Side,
        /// The PeerId the message claims to come from (not authenticated).
        peer_id: PeerId,
        /// What snow or our own payload check found wrong.
        #[source]
        source: snow::Error,
    },

    /// The connection ended part-way through a handshake message. The initiator reports
    /// [`Error::Rejected`] instead when it received no byte at all of message 2.
    #[error(
        "noise {side}: connection closed after {received} of the {expected} bytes of the \
         handshake message"
    )]
    TruncatedMessage {
        /// Which side was reading.
        side: Side,
        /// Bytes received before the end of the stream.
        received: usize,
        /// Length of the message (168 for message 1, 48 for message 2).
        expected: usize,
    },

    /// Mutual mode: the PeerId in the prologue is not in the trusted set.
    #[error("noise responder: peer {peer_id} is not in the trusted set")]
    UnknownPeer {
        /// The PeerId the initiator claimed (its static key proved nothing about it).
        peer_id: PeerId,
    },

    /// A trusted PeerId connected with a static key that is not one of its keys.
    #[error(
        "noise responder: static key {public_key} is not one of the keys of trusted peer {peer_id}"
    )]
    KeyMismatch {
        /// The trusted PeerId the initiator claimed.
        peer_id: PeerId,
        /// The static key it authenticated with.
        public_key: PublicKey,
    },

    /// MaybeMutual mode: an untrusted PeerId is not the one derived from the static key, so the
    /// initiator claims an identity it cannot prove.
    #[error(
        "noise responder: untrusted peer {peer_id} is not the peer id {derived} derived from its \
         static key"
    )]
    PeerIdMismatch {
        /// The PeerId the initiator claimed.
        peer_id: PeerId,
        /// The PeerId its static key gives.
        derived: PeerId,
    },

    /// Mutual mode: the timestamp in message 1 is not newer than the last one accepted from the
    /// same static key, so message 1 may be a replay. Checked before message 2 is built.
    #[error(
        "noise responder: timestamp {timestamp} from {peer_id} is not newer than the last \
         accepted timestamp {last} (replay)"
    )]
    ReplayedTimestamp {
        /// The authenticated PeerId.
        peer_id: PeerId,
        /// The timestamp in this message, in milliseconds since the Unix epoch.
        timestamp: u64,
        /// The last timestamp accepted from this static key.
        last: u64,
    },

    /// The prologue's PeerId is banned by the caller's [`BannedPeers`](crate::BannedPeers)
    /// check. Refused right after the expected key, before any cryptography.
    #[error("noise responder: peer {peer_id} is banned")]
    Banned {
        /// The PeerId the initiator claimed (not authenticated).
        peer_id: PeerId,
    },

    /// Message 1 carries an ephemeral key seen in a recent message 1: a replay of a captured
    /// message. Refused before any Diffie-Hellman when the key is in the cache of recent
    /// ephemeral keys, or right after decryption when two copies race.
    #[error("noise responder: message 1 from {peer_id} reuses a recent ephemeral key (replay)")]
    ReplayedMessage {
        /// The PeerId the initiator claimed (not authenticated).
        peer_id: PeerId,
    },

    /// The timestamp in message 1 is further from our clock than the freshness window: a
    /// replay of an old message, or an initiator whose clock is off. Both auth modes.
    #[error(
        "noise responder: timestamp {timestamp} from {peer_id} is more than {window:?} away from          our clock ({now})"
    )]
    StaleTimestamp {
        /// The authenticated PeerId.
        peer_id: PeerId,
        /// The timestamp in the message, in milliseconds since the Unix epoch.
        timestamp: u64,
        /// Our clock, in the same unit.
        now: u64,
        /// The window it had to lie within.
        window: Duration,
    },

    /// A key of the handshake is a low-order point of Curve25519, so a Diffie-Hellman with it
    /// is all zeros whatever the private key (RFC 7748 §6.1) and proves nothing: the remote
    /// static or ephemeral key in a handshake message, or the key an initiator was asked to
    /// dial.
    #[error("noise {side}: a low-order x25519 key in the handshake with {peer_id}")]
    LowOrderKey {
        /// Which side refused it.
        side: Side,
        /// The remote PeerId (claimed, on the responder).
        peer_id: PeerId,
    },

    /// The responder closed the connection (or reset it) without sending message 2: it
    /// rejected our message 1. AptosNet does not say why.
    #[error(
        "noise initiator: {peer_id} closed the connection after our first message: our key is \
         not trusted by it or banned, the key we expected is wrong, our timestamp was not newer \
         than the last one it accepted, or our clock is minutes off its clock"
    )]
    Rejected {
        /// The peer we dialed.
        peer_id: PeerId,
        /// The reset, when the connection was reset rather than closed.
        #[source]
        source: Option<io::Error>,
    },

    /// The handshake did not complete within its deadline.
    #[error("noise {side}: handshake did not complete within {timeout:?}")]
    Timeout {
        /// Which side gave up.
        side: Side,
        /// The deadline that passed.
        timeout: Duration,
    },

    /// Reading or writing a handshake message failed.
    #[error("noise {side}: i/o error during the handshake")]
    Io {
        /// Which side failed.
        side: Side,
        /// The socket's error.
        #[source]
        source: io::Error,
    },

    /// snow refused to build a handshake state from our parameters: a local bug, not remote
    /// input.
    #[error("noise {side}: could not set up the handshake state")]
    Setup {
        /// Which side failed.
        side: Side,
        /// snow's error.
        #[source]
        source: snow::Error,
    },

    /// A transport frame failed to decrypt (tampered, truncated or out of order). The stream is
    /// poisoned: every later read fails with [`Error::Poisoned`].
    #[error("noise stream: a frame failed to decrypt, the session is poisoned")]
    Decrypt {
        /// snow's error.
        #[source]
        source: snow::Error,
    },

    /// The connection ended inside a transport frame: the peer closed, or the connection was
    /// cut, part-way through a frame. Wrapped in an [`io::Error`] of kind
    /// [`io::ErrorKind::UnexpectedEof`]; every later read fails the same way.
    #[error(
        "noise stream: connection closed inside a frame, after {received} of its {expected} bytes"
    )]
    TruncatedFrame {
        /// Bytes of the frame, length prefix included, that were expected (2 while the prefix
        /// itself was cut).
        expected: usize,
        /// Bytes of it that arrived.
        received: usize,
    },

    /// A read on a stream poisoned by an earlier [`Error::Decrypt`].
    #[error("noise stream: the session was poisoned by an earlier decryption failure")]
    Poisoned,

    /// Sealing a transport frame failed (only possible once the 2^64 nonces run out).
    #[error("noise stream: a frame failed to encrypt")]
    Encrypt {
        /// snow's error.
        #[source]
        source: snow::Error,
    },
}

impl Error {
    /// The typed error inside an [`io::Error`] returned by a [`NoiseStream`](crate::NoiseStream),
    /// if it carries one.
    pub fn from_io(err: &io::Error) -> Option<&Self> {
        err.get_ref()?.downcast_ref::<Self>()
    }

    /// The handshake outcome this error is counted under, or `None` for errors outside a
    /// handshake (streams).
    pub fn handshake_outcome(&self) -> Option<HandshakeOutcome> {
        Some(match self {
            Self::SelfDial { .. } => HandshakeOutcome::SelfDial,
            Self::WrongExpectedKey { .. } => HandshakeOutcome::WrongExpectedKey,
            Self::MalformedMessage { .. } => HandshakeOutcome::MalformedMessage,
            Self::TruncatedMessage { .. } => HandshakeOutcome::TruncatedMessage,
            Self::UnknownPeer { .. } => HandshakeOutcome::UnknownPeer,
            Self::KeyMismatch { .. } | Self::PeerIdMismatch { .. } => HandshakeOutcome::KeyMismatch,
            Self::ReplayedTimestamp { .. } => HandshakeOutcome::ReplayedTimestamp,
            Self::Banned { .. } => HandshakeOutcome::Banned,
            Self::ReplayedMessage { .. } => HandshakeOutcome::ReplayedMessage,
            Self::StaleTimestamp { .. } => HandshakeOutcome::StaleTimestamp,
            Self::LowOrderKey { .. } => HandshakeOutcome::LowOrderKey,
            Self::Rejected { .. } => HandshakeOutcome::Rejected,
            Self::Timeout { .. } => HandshakeOutcome::Timeout,
            Self::Io { .. } => HandshakeOutcome::Io,
            Self::Setup { .. } => HandshakeOutcome::Setup,
            Self::Decrypt { .. }
            | Self::TruncatedFrame { .. }
            | Self::Poisoned
            | Self::Encrypt { .. } => return None,
        })
    }
}

impl From<Error> for io::Error {
    /// Wraps the error so that [`Error::from_io`] can get it back. Handshake I/O errors give
    /// back the socket's own error.
    fn from(err: Error) -> Self {
        match err {
            Error::Io { source, .. } => source,
            Error::Timeout { .. } => Self::new(io::ErrorKind::TimedOut, err),
            Error::TruncatedMessage { .. } | Error::TruncatedFrame { .. } => {
                Self::new(io::ErrorKind::UnexpectedEof, err)
            }
            Error::Rejected { .. } => Self::new(io::ErrorKind::ConnectionAborted, err),
            other => Self::new(io::ErrorKind::InvalidData, other),
        }
    }
}
