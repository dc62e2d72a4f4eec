//! Frames ↔ [`MultiplexMessage`]s: each message is one BCS-encoded `MultiplexMessage` after a
//! u32 big-endian length (wire-format.md, "Message frames").
//!
//! [`MultiplexMessageCodec`] is the sans-IO core (a `tokio_util` [`Decoder`]/[`Encoder`] with
//! netcore's [`FrameCodec`] limits: the u32 prefix is read and written here, next to the
//! hand-made envelope, so that a small frame is decoded where it lies in the read buffer);
//! [`MultiplexMessageStream`] and [`MultiplexMessageSink`] put it on
//! any `AsyncRead` / `AsyncWrite`. They manage their own buffers rather than wrapping
//! `tokio_util`'s `FramedRead` / `FramedWrite`, whose buffers can keep the capacity of a large
//! frame (up to 4 MiB) for the life of the connection; ours give back anything above 8 KiB
//! whenever the connection goes idle.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use futures::{Sink, Stream};
use netcore::framing::{FrameCodec, LengthPrefix};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

use crate::envelope;
use crate::error::Error;
use crate::limits::MAX_FRAME_SIZE;
use crate::message::{MultiplexMessage, NetworkMessage};

/// Encodes and decodes length-prefixed [`MultiplexMessage`] frames, with a maximum frame size
/// enforced in both directions.
///
/// The decoder's item is itself a `Result`: the outer error is fatal (framing, I/O,
/// truncation: the byte stream is out of sync), the inner one is [`Error::Deserialize`], a
/// complete frame that did not decode, after which decoding continues with the next frame.
/// (`tokio_util`'s `FramedRead` ends the stream after any decoder error, hence the nesting.)
///
/// The encoder takes `&MultiplexMessage` (or `&NetworkMessage`, framed as
/// `MultiplexMessage::Message`) and writes prefix, envelope and payload straight into the
/// output buffer, by hand (`envelope`): no intermediate copy of the payload, no serde.
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

    /// Takes the next whole frame off `src` and decodes it; `None` until one is there (room
    /// for the rest of it is then reserved: its length was checked).
    ///
    /// A frame shorter than [`MultiplexMessage::SHARED_PAYLOAD_MIN`] cannot hold a payload
    /// worth sharing, so it is decoded where it lies and skipped: the read buffer stays one
    /// unshared allocation, and a small message costs no reference count. A larger frame is
    /// split off and frozen so that its payload can be a slice of it
    /// ([`MultiplexMessage::from_frame`]).
    fn decode_next(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Result<MultiplexMessage, Error>>, Error> {
        let Some(prefix) = src.first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        let max = self.max_frame_size();
        if len > max {
            return Err(netcore::Error::FrameTooLarge { len, max }.into());
        }
        let end = LENGTH_PREFIX_BYTES + len;
        if src.len() < end {
            src.reserve(end - src.len());
            return Ok(None);
        }
        let decoded = if len < MultiplexMessage::SHARED_PAYLOAD_MIN {
            let frame = &src[LENGTH_PREFIX_BYTES..end];
            let decoded = MultiplexMessage::from_frame_slice(frame)
                .map_err(|source| deserialize_error(frame, source));
            src.advance(end);
            decoded
        } else {
            src.advance(LENGTH_PREFIX_BYTES);
            let frame = src.split_to(len).freeze();
            MultiplexMessage::from_frame(frame.clone())
                .map_err(|source| deserialize_error(&frame, source))
        };
        // Room for the next prefix, so that the next read does not start with a reallocation.
        src.reserve(LENGTH_PREFIX_BYTES);
        Ok(Some(decoded))
    }
}

/// Where the next frame of a read buffer starts: the bytes before it are frames already
/// decoded in place and not yet advanced past. A run of small frames from one read moves the
/// buffer's start once, when the run ends, instead of once per frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Consumed(usize);

impl MultiplexMessageCodec {
    /// [`Self::decode_next`] on `src[consumed..]`: a whole frame below
    /// [`MultiplexMessage::SHARED_PAYLOAD_MIN`] is decoded where it lies and `consumed` moves
    /// past it, `src` untouched. Anything else (no whole frame, a large frame, a length above
    /// the maximum) first advances `src` past what was consumed and takes the general path,
    /// so that reading, reserving and errors see the buffer as they always did.
    fn decode_next_at(
        &mut self,
        src: &mut BytesMut,
        consumed: &mut Consumed,
    ) -> Result<Option<Result<MultiplexMessage, Error>>, Error> {
        let rest = &src[consumed.0..];
        if let Some(prefix) = rest.first_chunk::<LENGTH_PREFIX_BYTES>() {
            let len = u32::from_be_bytes(*prefix) as usize;
            let end = LENGTH_PREFIX_BYTES + len;
            if len < MultiplexMessage::SHARED_PAYLOAD_MIN
                && len <= self.max_frame_size()
                && rest.len() >= end
            {
                let frame = &rest[LENGTH_PREFIX_BYTES..end];
                let decoded = MultiplexMessage::from_frame_slice(frame)
                    .map_err(|source| deserialize_error(frame, source));
                consumed.0 += end;
                return Ok(Some(decoded));
            }
        }
        let decoded = std::mem::take(&mut consumed.0);
        if decoded > 0 {
            src.advance(decoded);
            // What `decode_next` does after each frame it takes.
            src.reserve(LENGTH_PREFIX_BYTES);
        }
        self.decode_next(src)
    }
}

/// The recoverable error of a whole frame that did not decode.
fn deserialize_error(frame: &[u8], source: bcs::Error) -> Error {
    Error::Deserialize {
        frame_prefix: [
            frame.first().copied().unwrap_or(0),
            frame.get(1).copied().unwrap_or(0),
        ],
        len: frame.len(),
        source,
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
        self.decode_next(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        if let Some(item) = self.decode_next(src)? {
            return Ok(Some(item));
        }
        if src.is_empty() {
            return Ok(None);
        }
        // Part of a frame: its prefix, or its body as far as it came.
        let (expected, received) = match src.first_chunk::<LENGTH_PREFIX_BYTES>() {
            Some(prefix) => (
                u32::from_be_bytes(*prefix) as usize,
                src.len() - LENGTH_PREFIX_BYTES,
            ),
            None => (LENGTH_PREFIX_BYTES, src.len()),
        };
        Err(netcore::Error::TruncatedFrame { expected, received }.into())
    }
}

impl MultiplexMessageCodec {
    /// Appends the prefix and the envelope and payload written by `put` (`len` bytes, checked
    /// against the maximum first: an oversized message leaves `dst` as it was).
    fn encode_with(
        &self,
        len: Result<usize, bcs::Error>,
        dst: &mut BytesMut,
        put: impl FnOnce(&mut BytesMut),
    ) -> Result<(), Error> {
        let len = len.map_err(Error::Serialize)?;
        let max = self.max_frame_size();
        if len > max {
            return Err(netcore::Error::FrameTooLarge { len, max }.into());
        }
        dst.reserve(LENGTH_PREFIX_BYTES + len);
        // `len <= max <= u32::MAX` (FrameCodec clamps the maximum to the prefix's range).
        dst.put_u32(len as u32);
        let start = dst.len();
        put(dst);
        debug_assert_eq!(dst.len() - start, len);
        Ok(())
    }

    /// Appends one frame carrying `MultiplexMessage::Message(message)` to `dst`, as the
    /// [`Encoder`] does, without the caller wrapping (moving) the message. (An inherent
    /// method rather than a second `Encoder` impl, which would leave `FramedWrite`'s
    /// `flush` and `close` needing type annotations.)
    pub fn encode_message(
        &mut self,
        message: &NetworkMessage,
        dst: &mut BytesMut,
    ) -> Result<(), Error> {
        // Nearly every small message: one pass, no length computed apart from the writing.
        if let NetworkMessage::DirectSendMsg(direct) = message
            && direct.raw_msg.len() < envelope::SMALL_PAYLOAD_MAX
            && envelope::put_small_direct_send(dst, direct, self.max_frame_size()).is_some()
        {
            return Ok(());
        }
        self.encode_with(envelope::framed_network_message_len(message), dst, |dst| {
            envelope::put_framed_network_message(dst, message);
        })
    }
}

impl Encoder<&MultiplexMessage> for MultiplexMessageCodec {
    type Error = Error;

    /// Appends one frame to `dst`, the bytes `bcs::to_bytes` gives behind the length prefix.
    /// An oversized message fails with [`Error::Framing`] (`FrameTooLarge`), a payload BCS
    /// cannot encode (over 2^31 − 1 bytes) with [`Error::Serialize`]; either leaves `dst` as
    /// it was.
    fn encode(&mut self, message: &MultiplexMessage, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode_with(envelope::multiplex_message_len(message), dst, |dst| {
            envelope::put_multiplex_message(dst, message);
        })
    }
}

pin_project! {
    /// The [`MultiplexMessage`]s read from an `AsyncRead`, one per u32-prefixed frame.
    ///
    /// Yields `Err(`[`Error::Deserialize`]`)` for a frame that is not a valid message and keeps
    /// going with the next one ([`Error::is_recoverable`]). Any other error (an oversized
    /// length prefix, I/O, EOF inside a frame) is yielded once and then the stream ends.
    /// EOF between frames ends it without an error.
    ///
    /// Memory: the read buffer grows to the frame being read (at most the maximum frame size)
    /// and is given back whenever the reader returns `Pending` with no byte buffered, unless it
    /// is at most [`netcore::IDLE_BUFFER_KEEP`] (8 KiB), so an idle connection holds at most
    /// that however large its past frames were. A busy one keeps its buffer from read to read.
    #[derive(Debug)]
    pub struct MultiplexMessageStream<R> {
        #[pin]
        reader: R,
        codec: MultiplexMessageCodec,
        buffer: BytesMut,
        // Decoded frames at the front of `buffer`; zero whenever the stream reads.
        consumed: Consumed,
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
            reader,
            codec: MultiplexMessageCodec::new(max_frame_size),
            buffer: BytesMut::new(),
            consumed: Consumed::default(),
            done: false,
        }
    }
}

impl<R> MultiplexMessageStream<R> {
    /// The reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The reader, mutably. Reading from it directly desynchronizes the stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// The reader back; bytes already buffered are lost.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Bytes read but not yet decoded, e.g. the start of a frame still arriving, possibly after
    /// small frames already decoded (the buffer moves past a run of them once). Its
    /// `capacity()` is the read buffer's memory (at most 8 KiB while idle; diagnostics).
    pub fn read_buffer(&self) -> &BytesMut {
        &self.buffer
    }
}

impl<R: AsyncRead> Stream for MultiplexMessageStream<R> {
    type Item = Result<MultiplexMessage, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            // `consumed` is zero again whenever this returns `None` or fails, so everything
            // below sees the frames still to decode at the front of the buffer.
            match this.codec.decode_next_at(this.buffer, this.consumed) {
                // A message, or a frame that did not decode: either way the next frame follows.
                Ok(Some(item)) => return Poll::Ready(Some(item)),
                Ok(None) => {}
                // Fatal: the byte stream is out of sync.
                Err(err) => return Poll::Ready(Some(Err(finish(this.done, this.buffer, err)))),
            }
            let read = if this.buffer.capacity() == 0 && !this.buffer.try_reclaim(READ_CHUNK) {
                // No buffer (a new connection, or one that was idle): find out whether there
                // is anything to read before allocating for it, so a connection that stays
                // idle never holds a read buffer.
                let mut probe = [0u8; PROBE_LEN];
                let mut probe = ReadBuf::new(&mut probe);
                match this.reader.as_mut().poll_read(cx, &mut probe) {
                    Poll::Ready(Ok(())) => {
                        let bytes = probe.filled();
                        if !bytes.is_empty() {
                            // `with_capacity`, not `reserve`: it also sets the size `BytesMut`
                            // allocates when the codec reserves after handing out a frame that
                            // still shares the buffer (without it, that is a 4-byte buffer,
                            // then a reallocation per read).
                            *this.buffer = BytesMut::with_capacity(READ_CHUNK);
                            this.buffer.extend_from_slice(bytes);
                        }
                        Poll::Ready(Ok(bytes.len()))
                    }
                    Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    Poll::Pending => Poll::Pending,
                }
            } else {
                if this.buffer.len() == this.buffer.capacity() {
                    // Room to read into. The codec has already reserved the rest of a frame
                    // whose length it knows, so this is only for the start of a frame.
                    this.buffer.reserve(READ_CHUNK);
                }
                pin!(this.reader.as_mut().read_buf(this.buffer)).poll(cx)
            };
            match read {
                Poll::Pending => {
                    // Nothing half-read and the task is about to park: an idle connection
                    // gives a large read buffer back (the next read allocates a small one).
                    this.codec.frames.release_idle_buffer(this.buffer);
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => {
                    return Poll::Ready(Some(Err(finish(this.done, this.buffer, err.into()))));
                }
                Poll::Ready(Ok(0)) => {
                    // EOF: clean between frames, an error inside one.
                    let last = this.codec.decode_eof(this.buffer);
                    *this.done = true;
                    *this.buffer = BytesMut::new();
                    // `decode` just found no whole frame in these bytes, so this is `None`
                    // or the truncation error; a frame is passed on all the same.
                    return Poll::Ready(match last {
                        Ok(item) => item,
                        Err(err) => Some(Err(err)),
                    });
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

/// Ends a stream on a fatal error: no later read, and no buffer kept for one.
fn finish(done: &mut bool, buffer: &mut BytesMut, err: Error) -> Error {
    *done = true;
    *buffer = BytesMut::new();
    err
}

pin_project! {
    /// Writes [`MultiplexMessage`]s to an `AsyncWrite`, one per u32-prefixed frame.
    ///
    /// Takes messages by reference (`sink.send(&message)`): one `Sink` impl keeps `flush` and
    /// `close` free of type annotations. A message whose frame would exceed the maximum is
    /// refused with [`Error::Framing`] (`FrameTooLarge`) and nothing of it is written; the sink
    /// stays usable.
    ///
    /// Write batching: `start_send` only appends to a buffer. The sink writes the buffer to the
    /// writer by itself only from `poll_ready`, once it holds [`DEFAULT_BACKPRESSURE_BOUNDARY`]
    /// bytes or more, and without flushing the writer (a Noise stream then seals full frames
    /// as they fill and keeps the rest for the next write); otherwise the caller flushes,
    /// typically when its queue of messages to send is empty. `SinkExt::send` flushes after
    /// every message.
    ///
    /// Memory: about the boundary plus one message's frame while busy; a buffer above
    /// [`netcore::IDLE_BUFFER_KEEP`] (8 KiB) is given back when a flush completes.
    #[derive(Debug)]
    pub struct MultiplexMessageSink<W> {
        #[pin]
        writer: W,
        codec: MultiplexMessageCodec,
        buffer: BytesMut,
        backpressure_boundary: usize,
    }
}

impl<W: AsyncWrite> MultiplexMessageSink<W> {
    /// Writes frames of at most [`MAX_FRAME_SIZE`] (4 MiB) to `writer`.
    pub fn new(writer: W) -> Self {
        Self::with_max_frame_size(writer, MAX_FRAME_SIZE)
    }

    /// Writes frames of at most `max_frame_size` bytes to `writer`.
    pub fn with_max_frame_size(writer: W, max_frame_size: usize) -> Self {
        Self {
            writer,
            codec: MultiplexMessageCodec::new(max_frame_size),
            buffer: BytesMut::new(),
            backpressure_boundary: DEFAULT_BACKPRESSURE_BOUNDARY,
        }
    }
}

impl<W> MultiplexMessageSink<W> {
    /// Buffered bytes past which `poll_ready` writes the buffer out before accepting more
    /// (default [`DEFAULT_BACKPRESSURE_BOUNDARY`]). Memory use is about this much plus one
    /// message's frame.
    pub fn set_backpressure_boundary(&mut self, boundary: usize) -> &mut Self {
        self.backpressure_boundary = boundary;
        self
    }

    /// The buffered-bytes boundary in force.
    pub fn backpressure_boundary(&self) -> usize {
        self.backpressure_boundary
    }

    /// Encoded frames not yet written. Its `capacity()` is the write buffer's memory (at most
    /// 8 KiB after a completed flush; diagnostics).
    pub fn write_buffer(&self) -> &BytesMut {
        &self.buffer
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    /// The writer, mutably. Writing to it directly interleaves with buffered frames.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// The writer back; frames not yet written are lost (flush first).
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W> MultiplexMessageSink<W> {
    /// Appends the frame of `message` to the write buffer, as `start_send` does, without
    /// asking `poll_ready` first: for a caller that encodes a batch in one pass and checks
    /// [`is_above_boundary`](Self::is_above_boundary) itself between messages (then writes out
    /// with `poll_ready`, or flushes). Fails, writing nothing, as the codec's encoder does.
    pub fn buffer_frame(&mut self, message: &MultiplexMessage) -> Result<(), Error> {
        prepare_write_buffer(&mut self.buffer);
        self.codec.encode(message, &mut self.buffer)
    }

    /// [`buffer_frame`](Self::buffer_frame) for `MultiplexMessage::Message(message)`, without
    /// the caller wrapping (moving) the message.
    pub fn buffer_message(&mut self, message: &NetworkMessage) -> Result<(), Error> {
        prepare_write_buffer(&mut self.buffer);
        self.codec.encode_message(message, &mut self.buffer)
    }

    /// Whether the buffered frames reach the backpressure boundary: `poll_ready` would write
    /// them out before accepting more.
    pub fn is_above_boundary(&self) -> bool {
        self.buffer.len() >= self.backpressure_boundary
    }
}

/// Gives a sink's write buffer room for a first frame after it was given back.
fn prepare_write_buffer(buffer: &mut BytesMut) {
    if buffer.capacity() == 0 && !buffer.try_reclaim(WRITE_CHUNK) {
        // First message since the buffer was given back (a written-out buffer is reclaimed
        // instead): start with room for a batch of small ones rather than growing through
        // every power of two.
        *buffer = BytesMut::with_capacity(WRITE_CHUNK);
    }
}

impl<W: AsyncWrite> MultiplexMessageSink<W> {
    /// Writes the whole buffer to the writer, without flushing it.
    fn poll_write_buffer(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut this = self.project();
        while !this.buffer.is_empty() {
            let written = ready!(this.writer.as_mut().poll_write(cx, this.buffer))?;
            if written == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            this.buffer.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite> Sink<&MultiplexMessage> for MultiplexMessageSink<W> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.buffer.len() >= self.backpressure_boundary {
            self.poll_write_buffer(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, message: &MultiplexMessage) -> Result<(), Error> {
        let this = self.project();
        prepare_write_buffer(this.buffer);
        this.codec.encode(message, this.buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.as_mut().poll_write_buffer(cx))?;
        let this = self.project();
        ready!(this.writer.poll_flush(cx))?;
        // Everything is out and the caller has nothing more for now: give a large buffer back.
        this.codec.frames.release_idle_buffer(this.buffer);
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.as_mut().poll_flush(cx))?;
        ready!(self.project().writer.poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

/// Default buffered bytes at which a [`MultiplexMessageSink`] writes out by itself: 64 KiB,
/// about one full Noise frame (65,519 plaintext bytes), so small messages still share Noise
/// frames and syscalls while a burst of large ones cannot pile up in memory.
pub const DEFAULT_BACKPRESSURE_BOUNDARY: usize = 64 * 1024;

/// The u32 length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes reserved to read the start of a frame into: a batch of small messages per read, and
/// small enough to be kept while idle (netcore's `IDLE_BUFFER_KEEP`), so a connection that
/// trickles small messages does not reallocate at every pause.
const READ_CHUNK: usize = netcore::IDLE_BUFFER_KEEP;

/// Bytes read on the stack before a read buffer is allocated: enough for a small message.
const PROBE_LEN: usize = 1024;

/// Bytes reserved for the first frame after a flush: a batch of small messages fits before the
/// buffer needs to grow, and it is kept over a pause (see `READ_CHUNK`).
const WRITE_CHUNK: usize = netcore::IDLE_BUFFER_KEEP;

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::{FutureExt, SinkExt, StreamExt};
    use tokio::io::{AsyncWrite, AsyncWriteExt};

    use super::*;
    use crate::message::{DirectSendMsg, NetworkMessage};
    use crate::protocol::ProtocolId;

    fn message(len: usize) -> MultiplexMessage {
        MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
            priority: 0,
            raw_msg: Bytes::from(vec![7; len]),
        }))
    }

    /// After a 3 MiB frame the read buffer is large; once a read finds nothing more it is
    /// given back. Half a frame is kept while the rest is awaited.
    #[tokio::test]
    async fn read_buffer_is_released_when_idle() {
        let (a, b) = tokio::io::duplex(8 << 20);
        let mut sink = MultiplexMessageSink::new(a);
        let mut stream = MultiplexMessageStream::new(b);
        assert!(stream.next().now_or_never().is_none());
        assert_eq!(
            stream.read_buffer().capacity(),
            0,
            "nothing allocated to wait"
        );

        let big = message(3 << 20);
        sink.send(&big).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), big);
        assert!(stream.next().now_or_never().is_none());
        assert!(stream.read_buffer().capacity() <= netcore::IDLE_BUFFER_KEEP);

        // Half a frame: pending, and the partial frame (with room for the rest) is kept.
        let mut frame = BytesMut::new();
        MultiplexMessageCodec::default()
            .encode(&message(100_000), &mut frame)
            .unwrap();
        sink.get_mut().write_all(&frame[..50_000]).await.unwrap();
        assert!(stream.next().now_or_never().is_none());
        assert!(stream.read_buffer().capacity() >= 50_000);
        sink.get_mut().write_all(&frame[50_000..]).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), message(100_000));
        assert!(stream.next().now_or_never().is_none());
        assert!(stream.read_buffer().capacity() <= netcore::IDLE_BUFFER_KEEP);
    }

    /// A writer that counts flushes.
    #[derive(Default)]
    struct CountingWriter {
        written: Vec<u8>,
        flushes: usize,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The write buffer grows with what is fed and is given back by a completed flush; the
    /// write-through at the boundary writes without flushing the writer.
    #[tokio::test]
    async fn write_buffer_is_released_by_a_flush() {
        let mut sink = MultiplexMessageSink::new(CountingWriter::default());
        assert_eq!(sink.write_buffer().capacity(), 0);

        let big = message(1 << 20);
        sink.feed(&big).await.unwrap();
        assert!(sink.write_buffer().capacity() >= 1 << 20);
        // Over the boundary: the next feed writes the buffer through, without a flush.
        sink.feed(&message(10)).await.unwrap();
        assert_eq!(sink.get_ref().flushes, 0);
        assert!(sink.get_ref().written.len() > 1 << 20);

        sink.flush().await.unwrap();
        assert_eq!(sink.get_ref().flushes, 1);
        assert_eq!(sink.write_buffer().capacity(), 0);

        // A small buffer is kept over a flush: no reallocation at every pause.
        sink.send(&message(10)).await.unwrap();
        let kept = sink.write_buffer().capacity();
        assert!(kept > 0 && kept <= netcore::IDLE_BUFFER_KEEP, "{kept}");

        let mut stream = MultiplexMessageStream::new(&sink.get_ref().written[..]);
        assert_eq!(stream.next().await.unwrap().unwrap(), big);
        assert_eq!(stream.next().await.unwrap().unwrap(), message(10));
        assert_eq!(stream.next().await.unwrap().unwrap(), message(10));
        assert!(stream.next().await.is_none());
        assert_eq!(stream.read_buffer().capacity(), 0, "released at EOF");
    }
}
