//! [`Error`]: everything that can go wrong in wire.

use std::io;

use crate::network::{ChainId, NetworkId};
use crate::protocol::ProtocolId;

/// A boxed cause, for payload codecs whose concrete error type depends on the protocol's
/// encoding (BCS, JSON or LZ4).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from message framing and decoding, payload encodings, the handshake and streams.
///
/// Only [`Error::Deserialize`] leaves an inbound connection usable (see
/// [`Error::is_recoverable`]); every other error from a
/// [`MultiplexMessageStream`](crate::MultiplexMessageStream) ends it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Framing and I/O.
    /// Reading or writing a length-prefixed frame failed: a length above the maximum (detected
    /// from the prefix alone on read, before anything is allocated; on write nothing is
    /// written), a stream that ended inside a frame, or an I/O error underneath. Fatal: the
    /// byte stream is out of sync afterwards.
    #[error("message framing failed")]
    Framing(#[from] netcore::Error),

    /// The socket failed outside a frame read or write, e.g. on flush or close. Fatal.
    #[error("i/o error")]
    Io(#[from] io::Error),

    // Messages.
    /// A complete frame is not a valid BCS `MultiplexMessage`. Recoverable: the frame has been
    /// consumed and the next one can be read. AptosNet answers with
    /// `NetworkMessage::Error(ErrorCode::ParsingError)` built from `frame_prefix` (see
    /// [`ErrorCode::parsing_error_from_frame`](crate::ErrorCode::parsing_error_from_frame)).
    #[error(
        "malformed {len}-byte message frame starting {:02x} {:02x}",
        frame_prefix[0],
        frame_prefix[1]
    )]
    Deserialize {
        /// The frame's first two bytes (message tag and, usually, protocol id), 0 where the
        /// frame is shorter.
        frame_prefix: [u8; 2],
        /// Length of the frame body.
        len: usize,
        /// What BCS objected to.
        #[source]
        source: bcs::Error,
    },

    /// A message could not be BCS-serialized (in practice: a byte string longer than BCS
    /// allows). Nothing was written.
    #[error("cannot serialize message")]
    Serialize(#[source] bcs::Error),

    // Application payloads.
    /// A value could not be encoded with its protocol's [`Encoding`](crate::Encoding).
    #[error("cannot encode payload for protocol {protocol}")]
    EncodePayload {
        /// The protocol whose encoding was used.
        protocol: ProtocolId,
        /// The encoder's error (BCS or JSON).
        #[source]
        source: BoxError,
    },

    /// A payload could not be decoded with its protocol's [`Encoding`](crate::Encoding).
    #[error("cannot decode {len}-byte payload for protocol {protocol}")]
    DecodePayload {
        /// The protocol whose encoding was used.
        protocol: ProtocolId,
        /// Length of the (possibly compressed) payload.
        len: usize,
        /// The decoder's error (BCS, JSON or LZ4).
        #[source]
        source: BoxError,
    },

    /// An LZ4-compressed payload is, or declares that it is, larger than allowed once
    /// uncompressed. On decode this is checked against the declared size before anything is
    /// allocated; `max` is then the smaller of 64 MiB and the most the compressed bytes could
    /// expand to (LZ4 expands at most 255-fold). On encode nothing is compressed.
    #[error("uncompressed payload of {len} bytes exceeds the maximum of {max} bytes")]
    UncompressedTooLarge {
        /// Declared (decode) or actual (encode) uncompressed length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },

    /// [`ProtocolId::custom`] was given an id below 64, a range AptosNet owns.
    #[error("protocol id {id} is reserved for AptosNet: custom protocol ids start at 64")]
    ReservedProtocolId {
        /// The rejected id.
        id: u8,
    },

    // Handshake.
    /// The remote's handshake message is not valid BCS (this includes a protocol set longer
    /// than 32 bytes).
    #[error("handshake: malformed {len}-byte message from the remote")]
    MalformedHandshake {
        /// Length of the received message.
        len: usize,
        /// What BCS objected to.
        #[source]
        source: bcs::Error,
    },

    /// The remote is on a different chain.
    #[error("handshake: chain id mismatch (ours {ours}, theirs {theirs})")]
    InvalidChainId {
        /// Our chain id.
        ours: ChainId,
        /// The remote's chain id.
        theirs: ChainId,
    },

    /// The remote is on a different network.
    #[error("handshake: network id mismatch (ours {ours}, theirs {theirs})")]
    InvalidNetworkId {
        /// Our network id.
        ours: NetworkId,
        /// The remote's network id.
        theirs: NetworkId,
    },

    /// No messaging protocol version is listed by both sides with at least one protocol in
    /// common. Both handshake messages are with the caller of
    /// [`HandshakeMsg::negotiate`](crate::HandshakeMsg::negotiate).
    #[error("handshake: no messaging protocol version with protocols in common")]
    NoCommonProtocols,

    // Streams.
    /// A message's payload is above the maximum message size: refused before fragmenting on
    /// the way out, or once the fragments received add up to more on the way in (the partial
    /// stream is dropped).
    #[error("stream: message payload of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Payload length (on the way in: what has arrived so far).
        len: usize,
        /// The maximum in force.
        max: usize,
    },

    /// A stream would need, or a stream header declares, a number of fragments outside
    /// `1..=max`.
    #[error("stream: {num_fragments} fragments, expected 1 to {max}")]
    InvalidFragmentCount {
        /// Fragments needed (outbound) or declared (inbound).
        num_fragments: usize,
        /// The maximum in force.
        max: usize,
    },

    /// `NetworkMessage::Error` cannot travel in a stream, in either direction.
    #[error("stream: an error message cannot be streamed")]
    StreamedErrorMessage,

    /// A stream header arrived while another stream was unfinished. The new stream replaced
    /// the old one, which is lost; this error only reports that.
    #[error(
        "stream {old_request_id} dropped after {received} of {num_fragments} fragments: \
         stream {new_request_id} started"
    )]
    StreamReplaced {
        /// The dropped stream.
        old_request_id: u32,
        /// Fragments of the dropped stream received.
        received: u8,
        /// Fragments the dropped stream declared.
        num_fragments: u8,
        /// The stream now in progress.
        new_request_id: u32,
    },

    /// A fragment arrived with no stream in progress.
    #[error("stream: fragment {fragment_id} of stream {request_id} arrived with no stream open")]
    FragmentWithoutHeader {
        /// The fragment's stream id.
        request_id: u32,
        /// The fragment's id.
        fragment_id: u8,
    },

    /// A fragment belongs to a different stream than the one in progress, which is dropped.
    #[error("stream: fragment of stream {actual} while receiving stream {expected}")]
    StreamIdMismatch {
        /// The stream in progress.
        expected: u32,
        /// The fragment's stream id.
        actual: u32,
    },

    /// A fragment id is not the next one (ids run 1, 2, … up to `num_fragments`). The stream
    /// is dropped.
    #[error("stream {request_id}: fragment {actual} arrived, expected {expected}")]
    FragmentOutOfOrder {
        /// The stream in progress.
        request_id: u32,
        /// The next fragment id.
        expected: u8,
        /// The fragment's id.
        actual: u8,
    },

    /// [`StreamLimits::new`](crate::StreamLimits::new) was given inconsistent sizes.
    #[error(
        "invalid stream limits (max frame {max_frame_size}, max message {max_message_size}): \
         {reason}"
    )]
    InvalidStreamLimits {
        /// The requested maximum frame size.
        max_frame_size: usize,
        /// The requested maximum message size.
        max_message_size: usize,
        /// Which rule they break.
        reason: &'static str,
    },
}

impl Error {
    /// Whether an inbound message stream can go on after this error: true only for
    /// [`Error::Deserialize`], a complete frame that did not decode. Framing, I/O and
    /// truncation errors leave the byte stream out of sync, so the connection must close.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::Deserialize { .. })
    }

    /// Whether this error means the remote closed the stream, cleanly between frames or in the
    /// middle of one, as opposed to sending something malformed.
    pub fn is_eof(&self) -> bool {
        match self {
            Self::Framing(err) => err.is_eof(),
            Self::Io(err) => err.kind() == io::ErrorKind::UnexpectedEof,
            _ => false,
        }
    }
}
