//! [`StreamLimits`] and the sizes behind them: how large a frame and a message may be, and
//! the room a stream keeps in each frame (wire-format.md, "Streams"). A leaf module (it needs only the
//! error type): the codec, the payload encodings and the streams read these.

use crate::error::Error;

/// Largest frame body AptosNet sends or accepts: 4 MiB.
pub const MAX_FRAME_SIZE: usize = 4 * 1024 * 1024;

/// Largest message payload, streamed or not: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Room kept in each frame for the message around the payload piece. A header around an
/// `RpcRequest` takes 19 bytes at most (tags, ids, priority and a 5-byte ULEB128 length), so
/// 64 leaves margin; AptosNet uses the same figure.
pub const STREAM_OVERHEAD: usize = 64;

/// The sizes that decide when and how messages are streamed. Both ends of a connection must
/// agree on them; the defaults are AptosNet's. Give the connection's
/// [`MultiplexMessageStream`](crate::MultiplexMessageStream) and
/// [`MultiplexMessageSink`](crate::MultiplexMessageSink) the same `max_frame_size`: every frame
/// an [`OutboundStream`](crate::OutboundStream) yields then fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamLimits {
    max_frame_size: usize,
    max_message_size: usize,
}

impl StreamLimits {
    /// Limits with the given maximum frame body and message payload sizes, in bytes.
    ///
    /// Fails with [`Error::InvalidStreamLimits`] unless the frame size is above
    /// [`STREAM_OVERHEAD`] and fits a u32 length prefix, the message size is at least the frame
    /// size, and `max_message_size / max_frame_size` fragments can be numbered by a u8.
    pub fn new(max_frame_size: usize, max_message_size: usize) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidStreamLimits {
            max_frame_size,
            max_message_size,
            reason,
        };
        if max_frame_size <= STREAM_OVERHEAD {
            return Err(invalid(
                "the frame size must exceed the 64-byte stream overhead",
            ));
        }
        if max_frame_size > u32::MAX as usize {
            return Err(invalid("the frame size must fit a u32 length prefix"));
        }
        if max_message_size < max_frame_size {
            return Err(invalid("the message size must be at least the frame size"));
        }
        if max_message_size / max_frame_size > usize::from(u8::MAX) {
            return Err(invalid("more than 255 fragments per message"));
        }
        Ok(Self {
            max_frame_size,
            max_message_size,
        })
    }

    /// Largest frame body, in bytes (default [`MAX_FRAME_SIZE`]).
    pub const fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Largest message payload, in bytes (default [`MAX_MESSAGE_SIZE`]).
    pub const fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Largest payload piece per frame, and largest payload sent without a stream:
    /// `max_frame_size − STREAM_OVERHEAD` (4,194,240 bytes by default).
    pub const fn fragment_threshold(&self) -> usize {
        self.max_frame_size - STREAM_OVERHEAD
    }

    /// Most fragments a stream may have, header not counted: `max_message_size /
    /// max_frame_size` (16 by default).
    pub const fn max_fragments(&self) -> usize {
        self.max_message_size / self.max_frame_size
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_frame_size: MAX_FRAME_SIZE,
            max_message_size: MAX_MESSAGE_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default limits are AptosNet's: threshold 4,194,240 bytes, 16 fragments.
    #[test]
    fn default_limits_match_aptosnet() {
        let limits = StreamLimits::default();
        assert_eq!(limits.fragment_threshold(), 4_194_240);
        assert_eq!(limits.max_fragments(), 16);
        assert_eq!(
            StreamLimits::new(MAX_FRAME_SIZE, MAX_MESSAGE_SIZE).unwrap(),
            limits
        );
    }

    /// Inconsistent limits are refused at construction.
    #[test]
    fn invalid_limits_are_rejected() {
        assert!(StreamLimits::new(64, 1024).is_err());
        assert!(StreamLimits::new(1024, 512).is_err());
        assert!(StreamLimits::new(100, 100 * 256).is_err());
        assert!(StreamLimits::new(100, 100 * 255).is_ok());
    }
}
