//! [`Error`]: everything that can go wrong in netcore.

use std::io;

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
            other => Self::new(io::ErrorKind::InvalidData, other),
        }
    }
}
