//! Frames ↔ [`MultiplexMessage`]s: each message is one BCS-encoded `MultiplexMessage` after a
//! u32 big-endian length (wire-format.md §5).
//!
//! [`MultiplexMessageCodec`] is the sans-IO core (a `tokio_util` [`Decoder`]/[`Encoder`] over
//! netcore's [`FrameCodec`]); [`MultiplexMessageStream`] and [`MultiplexMessageSink`] put it on
//! any `AsyncRead` / `AsyncWrite`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use futures::{Sink, Stream};
use netcore::framing::{FrameCodec, LengthPrefix};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

use crate::error::Error;
use crate::message::MultiplexMessage;
use crate::stream::MAX_FRAME_SIZE;

/// Encodes and decodes length-prefixed [`MultiplexMessage`] frames, with a maximum frame size
/// enforced in both directions.
///
/// The decoder's item is itself a `Result`: the outer error is fatal (framing, I/O,
/// truncation: the byte stream is out of sync), the inner one is [`Error::Deserialize`], a
/// complete frame that did not decode, after which decoding continues with the next frame.
/// (`tokio_util`'s `FramedRead` ends the stream after any decoder error, hence the nesting.)
///
/// The encoder takes `&MultiplexMessage` and serializes straight into the output buffer: no
/// intermediate copy of the payload.
#[derive(Clone, Debug)]
pub struct MultiplexMessageCodec {
    frames: FrameCodec,
}

impl MultiplexMessageCodec {
    /// A codec for frames of at most `max_frame_size` bytes (prefix not counted; clamped to
    /// what a u32 can express).
    pub fn new(max_frame_size: usize) -> Self {
        Self {
            frames: FrameCodec::new(LengthPrefix::U32, max_frame_size),
        }
    }

    /// The largest frame body read or written.
    pub fn max_frame_size(&self) -> usize {
        self.frames.max_frame_len()
    }

    fn decode_frame(frame: &[u8]) -> Result<MultiplexMessage, Error> {
        bcs::from_bytes(frame).map_err(|source| Error::Deserialize {
            frame_prefix: [
                frame.first().copied().unwrap_or(0),
                frame.get(1).copied().unwrap_or(0),
            ],
            len: frame.len(),
            source,
        })
    }
}

impl Default for MultiplexMessageCodec {
    /// Frames of at most [`MAX_FRAME_SIZE`] (4 MiB).
    fn default() -> Self {
        Self::new(MAX_FRAME_SIZE)
    }
}

impl Decoder for MultiplexMessageCodec {
    type Item = Result<MultiplexMessage, Error>;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self
            .frames
            .decode(src)?
            .map(|frame| Self::decode_frame(&frame)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self
            .frames
            .decode_eof(src)?
            .map(|frame| Self::decode_frame(&frame)))
    }
}

impl Encoder<&MultiplexMessage> for MultiplexMessageCodec {
    type Error = Error;

    /// Appends one frame to `dst`. An oversized message fails with [`Error::Framing`]
    /// (`FrameTooLarge`) and leaves `dst` as it was.
    fn encode(&mut self, message: &MultiplexMessage, dst: &mut BytesMut) -> Result<(), Error> {
        // Sizing first walks the message without copying the payload, so an oversized one is
        // refused before anything is reserved or written.
        let len = bcs::serialized_size(message).map_err(Error::Serialize)?;
        let max = self.max_frame_size();
        if len > max {
            return Err(netcore::Error::FrameTooLarge { len, max }.into());
        }
        let start = dst.len();
        dst.reserve(LENGTH_PREFIX_BYTES + len);
        // `len <= max <= u32::MAX` (FrameCodec clamps the maximum to the prefix's range).
        dst.put_u32(len as u32);
        let mut writer = dst.writer();
        if let Err(err) = bcs::serialize_into(&mut writer, message) {
            // Unreachable after `serialized_size` succeeded, but never leave half a frame.
            dst.truncate(start);
            return Err(Error::Serialize(err));
        }
        debug_assert_eq!(dst.len() - start, LENGTH_PREFIX_BYTES + len);
        Ok(())
    }
}

pin_project! {
    /// The [`MultiplexMessage`]s read from an `AsyncRead`, one per u32-prefixed frame.
    ///
    /// Yields `Err(`[`Error::Deserialize`]`)` for a frame that is not a valid message and keeps
    /// going with the next one ([`Error::is_recoverable`]). Any other error (an oversized
    /// length prefix, I/O, EOF inside a frame) is yielded once and then the stream ends.
    /// EOF between frames ends it without an error.
    #[derive(Debug)]
    pub struct MultiplexMessageStream<R> {
        #[pin]
        inner: FramedRead<R, MultiplexMessageCodec>,
        done: bool,
    }
}

impl<R: AsyncRead> MultiplexMessageStream<R> {
    /// Reads frames of at most [`MAX_FRAME_SIZE`] (4 MiB) from `reader`.
    pub fn new(reader: R) -> Self {
        Self::with_max_frame_size(reader, MAX_FRAME_SIZE)
    }

    /// Reads frames of at most `max_frame_size` bytes from `reader`. A length prefix above it
    /// fails before anything is allocated for the frame.
    pub fn with_max_frame_size(reader: R, max_frame_size: usize) -> Self {
        Self {
            inner: FramedRead::new(reader, MultiplexMessageCodec::new(max_frame_size)),
            done: false,
        }
    }
}

impl<R> MultiplexMessageStream<R> {
    /// The reader.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// The reader, mutably. Reading from it directly desynchronizes the stream.
    pub fn get_mut(&mut self) -> &mut R {
        self.inner.get_mut()
    }

    /// The reader back; bytes already buffered are lost.
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    /// Bytes read but not yet decoded, e.g. the start of a frame still arriving.
    pub fn read_buffer(&self) -> &BytesMut {
        self.inner.read_buffer()
    }
}

impl<R: AsyncRead> Stream for MultiplexMessageStream<R> {
    type Item = Result<MultiplexMessage, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_next(cx)) {
            // A message, or a frame that did not decode: either way the next frame follows.
            Some(Ok(item)) => Poll::Ready(Some(item)),
            // Fatal: FramedRead would try to read on after it, from the middle of a frame.
            Some(Err(err)) => {
                *this.done = true;
                Poll::Ready(Some(Err(err)))
            }
            None => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

pin_project! {
    /// Writes [`MultiplexMessage`]s to an `AsyncWrite`, one per u32-prefixed frame.
    ///
    /// Takes messages by reference (`sink.send(&message)`): one `Sink` impl keeps `flush` and
    /// `close` free of type annotations. A message whose frame would exceed the maximum is
    /// refused with [`Error::Framing`] (`FrameTooLarge`) and nothing of it is written; the sink
    /// stays usable.
    ///
    /// Write batching: `start_send` only appends to a buffer. The sink writes (and flushes the
    /// writer) by itself only from `poll_ready` once the buffer holds
    /// [`DEFAULT_BACKPRESSURE_BOUNDARY`] bytes or more; otherwise the caller flushes, typically
    /// when its queue of messages to send is empty. `SinkExt::send` flushes after every message.
    #[derive(Debug)]
    pub struct MultiplexMessageSink<W> {
        #[pin]
        inner: FramedWrite<W, MultiplexMessageCodec>,
    }
}

impl<W: AsyncWrite> MultiplexMessageSink<W> {
    /// Writes frames of at most [`MAX_FRAME_SIZE`] (4 MiB) to `writer`.
    pub fn new(writer: W) -> Self {
        Self::with_max_frame_size(writer, MAX_FRAME_SIZE)
    }

    /// Writes frames of at most `max_frame_size` bytes to `writer`.
    pub fn with_max_frame_size(writer: W, max_frame_size: usize) -> Self {
        let mut inner = FramedWrite::new(writer, MultiplexMessageCodec::new(max_frame_size));
        inner.set_backpressure_boundary(DEFAULT_BACKPRESSURE_BOUNDARY);
        Self { inner }
    }
}

impl<W> MultiplexMessageSink<W> {
    /// Buffered bytes past which `poll_ready` writes and flushes before accepting more
    /// (default [`DEFAULT_BACKPRESSURE_BOUNDARY`]). Memory use is about this much plus one
    /// message's frame.
    pub fn set_backpressure_boundary(&mut self, boundary: usize) -> &mut Self {
        self.inner.set_backpressure_boundary(boundary);
        self
    }

    /// The buffered-bytes boundary in force.
    pub fn backpressure_boundary(&self) -> usize {
        self.inner.backpressure_boundary()
    }

    /// Encoded frames not yet written.
    pub fn write_buffer(&self) -> &BytesMut {
        self.inner.write_buffer()
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    /// The writer, mutably. Writing to it directly interleaves with buffered frames.
    pub fn get_mut(&mut self) -> &mut W {
        self.inner.get_mut()
    }

    /// The writer back; frames not yet written are lost (flush first).
    pub fn into_inner(self) -> W {
        self.inner.into_inner()
    }
}

impl<W: AsyncWrite> Sink<&MultiplexMessage> for MultiplexMessageSink<W> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Sink::<&MultiplexMessage>::poll_ready(self.project().inner, cx)
    }

    fn start_send(self: Pin<&mut Self>, message: &MultiplexMessage) -> Result<(), Error> {
        self.project().inner.start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Sink::<&MultiplexMessage>::poll_flush(self.project().inner, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Sink::<&MultiplexMessage>::poll_close(self.project().inner, cx)
    }
}

/// Default buffered bytes at which a [`MultiplexMessageSink`] writes out by itself: 64 KiB,
/// about one full Noise frame (65,519 plaintext bytes), so small messages still share Noise
/// frames and syscalls while a burst of large ones cannot pile up in memory.
pub const DEFAULT_BACKPRESSURE_BOUNDARY: usize = 64 * 1024;

/// The u32 length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;
