//! Streams: messages too large for one frame, cut into a header and fragments on the way out
//! ([`OutboundStream`]) and put back together on the way in ([`Reassembler`])
//! (wire-format.md, "Streams"). Pure: no I/O, no clock.
//!
//! A message whose payload is above [`StreamLimits::fragment_threshold`] (the maximum frame
//! size less [`STREAM_OVERHEAD`](crate::STREAM_OVERHEAD)) travels as
//!
//! ```text
//! Header { request_id, num_fragments: n, message with payload[..t] }
//! Fragment { request_id, fragment_id: 1, raw_data: payload[t..2t] }
//! ...
//! Fragment { request_id, fragment_id: n, raw_data: the rest (at most t bytes) }
//! ```
//!
//! where `t` is the threshold and `n` at most [`StreamLimits::max_fragments`].

use std::iter::FusedIterator;

use bytes::{Bytes, BytesMut};

use crate::error::Error;
use crate::limits::StreamLimits;
use crate::message::{
    MultiplexMessage, NetworkMessage, StreamFragment, StreamHeader, StreamMessage,
};

/// Whether `message` is too large for one frame and must go through an [`OutboundStream`].
#[inline]
pub fn needs_stream(message: &NetworkMessage, limits: &StreamLimits) -> bool {
    message.payload_len() > limits.fragment_threshold()
}

/// Cuts one message into a stream header and fragments, lazily.
///
/// Call [`OutboundStream::next_frame`] (or iterate) until it returns `None`; each item is one
/// frame's worth. Payload pieces share the original buffer (`Bytes` slices), so nothing is
/// copied until the frames are serialized. Fragments of one stream may be interleaved with
/// other, unstreamed messages, but not with another stream's.
#[derive(Debug)]
pub struct OutboundStream {
    stream_id: u32,
    num_fragments: u8,
    /// The message with its payload cut to the first piece, until the header is sent.
    header: Option<NetworkMessage>,
    /// Payload not yet sent in a fragment.
    rest: Bytes,
    next_fragment_id: u8,
    threshold: usize,
}

impl OutboundStream {
    /// Prepares `message` to be sent as stream `stream_id` (a per-connection counter, separate
    /// from RPC request ids).
    ///
    /// Fails with [`Error::StreamedErrorMessage`] for `NetworkMessage::Error`,
    /// [`Error::MessageTooLarge`] above [`StreamLimits::max_message_size`], and
    /// [`Error::InvalidFragmentCount`] when the message needs no fragment (check
    /// [`needs_stream`] first) or more than [`StreamLimits::max_fragments`].
    pub fn new(
        mut message: NetworkMessage,
        stream_id: u32,
        limits: StreamLimits,
    ) -> Result<Self, Error> {
        let threshold = limits.fragment_threshold();
        let payload = message.payload_mut().ok_or(Error::StreamedErrorMessage)?;
        let len = payload.len();
        if len > limits.max_message_size() {
            return Err(Error::MessageTooLarge {
                len,
                max: limits.max_message_size(),
            });
        }
        let num_fragments = len.saturating_sub(threshold).div_ceil(threshold);
        let max = limits.max_fragments();
        // `max` is at most 255 (`StreamLimits::new`), so the conversion fails only when the
        // range check would anyway.
        let num_fragments = match u8::try_from(num_fragments) {
            Ok(n) if n > 0 && usize::from(n) <= max => n,
            _ => return Err(Error::InvalidFragmentCount { num_fragments, max }),
        };
        // Zero-copy: both halves share the payload's buffer.
        let rest = payload.split_off(threshold);
        Ok(Self {
            stream_id,
            num_fragments,
            header: Some(message),
            rest,
            next_fragment_id: 1,
            threshold,
        })
    }

    /// The stream's id.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Fragments after the header.
    pub fn num_fragments(&self) -> u8 {
        self.num_fragments
    }

    /// Frames still to come from [`OutboundStream::next_frame`], header included.
    pub fn remaining(&self) -> usize {
        usize::from(self.header.is_some()) + self.rest.len().div_ceil(self.threshold)
    }

    /// The next frame: the header first, then fragments 1 to `num_fragments`; `None` once all
    /// have been returned.
    pub fn next_frame(&mut self) -> Option<MultiplexMessage> {
        let piece = if let Some(message) = self.header.take() {
            StreamMessage::Header(StreamHeader {
                request_id: self.stream_id,
                num_fragments: self.num_fragments,
                message,
            })
        } else if self.rest.is_empty() {
            return None;
        } else {
            let raw_data = self.rest.split_to(self.threshold.min(self.rest.len()));
            let fragment_id = self.next_fragment_id;
            // At most `num_fragments` (a u8) fragments are cut, so this stops at 255.
            self.next_fragment_id = self.next_fragment_id.saturating_add(1);
            StreamMessage::Fragment(StreamFragment {
                request_id: self.stream_id,
                fragment_id,
                raw_data,
            })
        };
        Some(MultiplexMessage::Stream(piece))
    }
}

impl Iterator for OutboundStream {
    type Item = MultiplexMessage;

    fn next(&mut self) -> Option<MultiplexMessage> {
        self.next_frame()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for OutboundStream {}

impl FusedIterator for OutboundStream {}

/// Puts streamed messages back together: one stream at a time per connection, as AptosNet
/// does.
///
/// Feed every [`StreamMessage`] read from the connection, in order, to
/// [`Reassembler::handle_header`] / [`Reassembler::handle_fragment`] (or
/// [`Reassembler::handle_stream_message`]). The fragment that completes a stream returns the
/// whole message. Errors are the remote's misbehaviour, to log and count; the reassembler stays
/// usable after every one of them:
/// - an invalid header (wrapping `Error`, or a fragment count outside `1..=max_fragments`) is
///   refused and any stream in progress continues;
/// - a valid header while a stream is unfinished starts the new stream and reports the old one
///   as dropped ([`Error::StreamReplaced`]);
/// - an invalid fragment (wrong stream, out of order, payload over the maximum) drops the
///   stream in progress, which could not complete anyway.
///
/// Memory: we keep the fragments received (sharing their frames' buffers) and copy them into
/// one payload only when the last arrives, so we never allocate for what a header merely
/// announces; at most `max_message_size` of payload is held. Give each connection limits
/// matching what its peer may send (a smaller `max_message_size` for strangers). Time is the
/// caller's: this type has no clock, so the caller bounds how long a stream may stay
/// unfinished, and how many bytes all its reassemblers hold together, by watching
/// [`Reassembler::buffered_len`] and calling [`Reassembler::abort`].
#[derive(Debug)]
pub struct Reassembler {
    limits: StreamLimits,
    stream: Option<PartialStream>,
}

impl Reassembler {
    /// A reassembler enforcing `limits`.
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            stream: None,
        }
    }

    /// Opens a stream. See the type's documentation for the errors.
    pub fn handle_header(&mut self, header: StreamHeader) -> Result<(), Error> {
        let Some(payload) = header.message.payload() else {
            return Err(Error::StreamedErrorMessage);
        };
        let max = self.limits.max_fragments();
        if header.num_fragments == 0 || usize::from(header.num_fragments) > max {
            return Err(Error::InvalidFragmentCount {
                num_fragments: usize::from(header.num_fragments),
                max,
            });
        }
        let len = payload.len();
        if len > self.limits.max_message_size() {
            return Err(Error::MessageTooLarge {
                len,
                max: self.limits.max_message_size(),
            });
        }
        let new = PartialStream {
            request_id: header.request_id,
            num_fragments: header.num_fragments,
            received: 0,
            message: header.message,
            fragments: Vec::new(),
            len,
        };
        match self.stream.replace(new) {
            None => Ok(()),
            Some(old) => Err(Error::StreamReplaced {
                old_request_id: old.request_id,
                received: old.received,
                num_fragments: old.num_fragments,
                new_request_id: header.request_id,
            }),
        }
    }

    /// Adds a fragment to the stream in progress; returns the message when this was its last
    /// fragment. See the type's documentation for the errors.
    pub fn handle_fragment(
        &mut self,
        fragment: StreamFragment,
    ) -> Result<Option<NetworkMessage>, Error> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::FragmentWithoutHeader {
                request_id: fragment.request_id,
                fragment_id: fragment.fragment_id,
            });
        };
        if let Err(err) = stream.push(fragment, self.limits.max_message_size()) {
            self.stream = None;
            return Err(err);
        }
        if stream.received < stream.num_fragments {
            return Ok(None);
        }
        // The stream is complete; `as_mut` above proved it is there.
        Ok(self.stream.take().map(PartialStream::assemble))
    }

    /// [`Reassembler::handle_header`] or [`Reassembler::handle_fragment`], by variant.
    pub fn handle_stream_message(
        &mut self,
        message: StreamMessage,
    ) -> Result<Option<NetworkMessage>, Error> {
        match message {
            StreamMessage::Header(header) => self.handle_header(header).map(|()| None),
            StreamMessage::Fragment(fragment) => self.handle_fragment(fragment),
        }
    }

    /// Drops the stream in progress, if any, and returns its id: for a caller whose deadline
    /// for it passed, or that will not hold its bytes.
    pub fn abort(&mut self) -> Option<u32> {
        self.stream.take().map(|s| s.request_id)
    }

    /// The id of the stream in progress, if any.
    pub fn stream_in_progress(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.request_id)
    }

    /// Payload bytes held for the stream in progress.
    pub fn buffered_len(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.len)
    }

    /// The limits in force.
    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(StreamLimits::default())
    }
}

/// A stream being received.
#[derive(Debug)]
struct PartialStream {
    request_id: u32,
    num_fragments: u8,
    /// Fragments received; the next must have id `received + 1`.
    received: u8,
    /// The header's message, holding the first payload piece.
    message: NetworkMessage,
    fragments: Vec<Bytes>,
    /// Payload bytes held, header piece included.
    len: usize,
}

impl PartialStream {
    fn push(&mut self, fragment: StreamFragment, max_len: usize) -> Result<(), Error> {
        if fragment.request_id != self.request_id {
            return Err(Error::StreamIdMismatch {
                expected: self.request_id,
                actual: fragment.request_id,
            });
        }
        // `received < num_fragments <= 255` while the stream is open, so no overflow.
        let expected = self.received + 1;
        if fragment.fragment_id != expected {
            return Err(Error::FragmentOutOfOrder {
                request_id: self.request_id,
                expected,
                actual: fragment.fragment_id,
            });
        }
        let len = self.len + fragment.raw_data.len();
        if len > max_len {
            return Err(Error::MessageTooLarge { len, max: max_len });
        }
        self.fragments.push(fragment.raw_data);
        self.len = len;
        self.received = expected;
        Ok(())
    }

    /// Joins the payload pieces into one buffer of exactly the received length.
    fn assemble(mut self) -> NetworkMessage {
        if let Some(payload) = self.message.payload_mut() {
            let mut joined = BytesMut::with_capacity(self.len);
            joined.extend_from_slice(payload);
            for piece in &self.fragments {
                joined.extend_from_slice(piece);
            }
            *payload = joined.freeze();
        }
        self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DirectSendMsg;
    use crate::protocol::ProtocolId;

    fn direct_send(len: usize) -> NetworkMessage {
        NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
            priority: 0,
            raw_msg: (0..len).map(|i| i as u8).collect(),
        })
    }

    /// Fragments are `Bytes` slices of the original payload, not copies.
    #[test]
    fn fragments_share_the_payload_buffer() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        let message = direct_send(3000);
        let start = message.payload().unwrap().as_ptr() as usize;
        let frames: Vec<_> = OutboundStream::new(message, 7, limits).unwrap().collect();
        assert_eq!(frames.len(), 4);
        let MultiplexMessage::Stream(StreamMessage::Fragment(first)) = &frames[1] else {
            panic!("the second frame is a fragment: {:?}", frames[1]);
        };
        assert_eq!(first.raw_data.as_ptr() as usize, start + 960);
    }

    /// A message that fits in a frame is refused: it needs no stream, and a receiver would
    /// reject a header with zero fragments.
    #[test]
    fn small_message_is_not_streamed() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        assert!(!needs_stream(&direct_send(960), &limits));
        assert!(needs_stream(&direct_send(961), &limits));
        assert!(matches!(
            OutboundStream::new(direct_send(960), 0, limits),
            Err(Error::InvalidFragmentCount {
                num_fragments: 0,
                ..
            })
        ));
    }

    /// The stream in progress survives an invalid header.
    #[test]
    fn invalid_header_leaves_stream_in_progress() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        let mut reassembler = Reassembler::new(limits);
        let mut out = OutboundStream::new(direct_send(2000), 1, limits).unwrap();
        let Some(MultiplexMessage::Stream(header)) = out.next_frame() else {
            panic!("the first frame is a stream header");
        };
        assert_eq!(reassembler.handle_stream_message(header).unwrap(), None);
        let bad = StreamHeader {
            request_id: 2,
            num_fragments: 0,
            message: direct_send(10),
        };
        assert!(reassembler.handle_header(bad).is_err());
        assert_eq!(reassembler.stream_in_progress(), Some(1));
        let mut done = None;
        for frame in out {
            let MultiplexMessage::Stream(piece) = frame else {
                panic!("streams yield stream messages");
            };
            done = reassembler.handle_stream_message(piece).unwrap();
        }
        assert_eq!(done, Some(direct_send(2000)));
        assert_eq!(reassembler.stream_in_progress(), None);
    }

    /// Aborting drops the stream and what it held; its next fragment finds no stream, and a
    /// new header starts afresh.
    #[test]
    fn abort_drops_the_stream_in_progress() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        let mut reassembler = Reassembler::new(limits);
        let mut out = OutboundStream::new(direct_send(3000), 5, limits).unwrap();
        for _ in 0..2 {
            let Some(MultiplexMessage::Stream(piece)) = out.next_frame() else {
                panic!("streams yield stream messages");
            };
            assert_eq!(reassembler.handle_stream_message(piece).unwrap(), None);
        }
        assert!(reassembler.buffered_len() > 0);
        assert_eq!(reassembler.abort(), Some(5));
        assert_eq!((reassembler.abort(), reassembler.buffered_len()), (None, 0));
        let Some(MultiplexMessage::Stream(piece)) = out.next_frame() else {
            panic!("streams yield stream messages");
        };
        assert!(matches!(
            reassembler.handle_stream_message(piece),
            Err(Error::FragmentWithoutHeader { .. })
        ));
    }
}
