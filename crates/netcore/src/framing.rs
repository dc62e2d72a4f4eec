//! Length-prefixed framing: a big-endian u16 or u32 length, then that many bytes.
//!
//! Two faces over the same rules:
//! - [`FrameCodec`], a sans-IO [`Decoder`]/[`Encoder`] for `tokio_util::codec::Framed*`;
//! - `read_*_frame` / `write_*_frame`, small async helpers for one-off frames such as the
//!   handshake message.
//!
//! Both check a declared length against the maximum *before* reserving memory for it, and both
//! refuse to send a frame the other side would refuse to receive.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::Error;

/// Most memory an idle connection's buffer keeps: [`FrameCodec::release_idle_buffer`] gives
/// back larger ones. 8 KiB holds a batch of small messages, so a connection that trickles them
/// does not reallocate at every pause.
pub const IDLE_BUFFER_KEEP: usize = 8 * 1024;

/// Width of a frame's length prefix. Both are big-endian on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LengthPrefix {
    /// 2 bytes: Noise transport frames and the handshake message.
    U16,
    /// 4 bytes: AptosNet message frames.
    U32,
}

impl LengthPrefix {
    /// Number of bytes the prefix takes on the wire.
    pub const fn width(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }

    /// The largest length the prefix can express.
    pub const fn max_len(self) -> usize {
        match self {
            Self::U16 => u16::MAX as usize,
            Self::U32 => u32::MAX as usize,
        }
    }

    fn get(self, src: &mut impl Buf) -> usize {
        match self {
            Self::U16 => src.get_u16() as usize,
            Self::U32 => src.get_u32() as usize,
        }
    }

    fn put(self, dst: &mut impl BufMut, len: usize) {
        // Callers check `len <= max_len()` first, so the casts cannot truncate.
        match self {
            Self::U16 => dst.put_u16(len as u16),
            Self::U32 => dst.put_u32(len as u32),
        }
    }
}

/// A length-prefixed frame codec with a maximum frame length enforced in both directions.
///
/// Decoding returns `Ok(None)` while a frame is incomplete and fails with
/// [`Error::FrameTooLarge`] as soon as a prefix announces more than the maximum, before any
/// memory is reserved for the body. Encoding fails with the same error for an oversized frame.
/// After a decode error the stream is out of sync and should be dropped.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    prefix: LengthPrefix,
    max_frame_len: usize,
    /// Body length of the frame being read, once its prefix has been consumed.
    pending_len: Option<usize>,
}

impl FrameCodec {
    /// A codec with the given prefix width and maximum body length (clamped to what the prefix
    /// can express).
    pub fn new(prefix: LengthPrefix, max_frame_len: usize) -> Self {
        Self {
            prefix,
            max_frame_len: max_frame_len.min(prefix.max_len()),
            pending_len: None,
        }
    }

    /// A u16-prefixed codec.
    pub fn u16(max_frame_len: usize) -> Self {
        Self::new(LengthPrefix::U16, max_frame_len)
    }

    /// A u32-prefixed codec.
    pub fn u32(max_frame_len: usize) -> Self {
        Self::new(LengthPrefix::U32, max_frame_len)
    }

    /// The prefix width.
    pub fn prefix(&self) -> LengthPrefix {
        self.prefix
    }

    /// The largest body this codec reads or writes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Gives back the memory of a buffer that holds no byte, if it is more than
    /// [`IDLE_BUFFER_KEEP`], and returns how many bytes of capacity that was (0 if `src` holds
    /// data or little memory).
    ///
    /// Decoding keeps the buffer's capacity from frame to frame, so a busy connection does not
    /// reallocate per frame; but after one 4 MiB frame the buffer would hold 4 MiB for the
    /// rest of the connection. Call this when the reader is about to wait for more bytes (its
    /// read returned `Pending`), or when a writer has flushed its buffer: an idle connection
    /// then holds at most [`IDLE_BUFFER_KEEP`] per buffer. Small buffers stay, because
    /// reallocating them at every pause costs a connection that trickles small messages more
    /// than they weigh. A frame whose prefix was consumed but none of whose body arrived yet
    /// loses nothing: the next [`decode`](Decoder::decode) reserves the body again.
    pub fn release_idle_buffer(&self, src: &mut BytesMut) -> usize {
        // `try_reclaim` (no allocation) makes `capacity` the whole allocation again when the
        // buffer is its only owner; a shared one is not ours to free.
        if !src.is_empty() || !src.try_reclaim(IDLE_BUFFER_KEEP + 1) {
            return 0;
        }
        let released = src.capacity();
        *src = BytesMut::new();
        released
    }

    fn check_len(&self, len: usize) -> Result<(), Error> {
        if len > self.max_frame_len {
            Err(Error::FrameTooLarge {
                len,
                max: self.max_frame_len,
            })
        } else {
            Ok(())
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        let len = match self.pending_len {
            Some(len) => len,
            None => {
                if src.len() < self.prefix.width() {
                    return Ok(None);
                }
                let len = self.prefix.get(src);
                self.check_len(len)?;
                self.pending_len = Some(len);
                len
            }
        };
        if src.len() < len {
            // Reserve for the rest of this body only: `len` was checked above.
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.pending_len = None;
        let frame = src.split_to(len);
        // Make room for the next prefix so the next read does not start with a reallocation.
        src.reserve(self.prefix.width());
        Ok(Some(frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending_len.is_none() => Ok(None),
            None => Err(Error::TruncatedFrame {
                expected: self.pending_len.unwrap_or(self.prefix.width()),
                received: src.len(),
            }),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.check_len(frame.len())?;
        dst.reserve(self.prefix.width() + frame.len());
        self.prefix.put(dst, frame.len());
        dst.extend_from_slice(frame);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&frame[..], dst)
    }
}

/// Reads one u16-prefixed frame into `buf` (cleared first). At most 65,535 bytes by
/// construction.
///
/// Not cancel-safe: a cancelled read may leave part of a frame consumed.
pub async fn read_u16_frame<R>(reader: &mut R, buf: &mut BytesMut) -> Result<(), Error>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let len = reader.read_u16().await.map_err(Error::Io)? as usize;
    read_body(reader, buf, len).await
}

/// Writes one u16-prefixed frame, without flushing. Fails with [`Error::FrameTooLarge`] if the
/// frame is longer than 65,535 bytes.
///
/// Not cancel-safe: a cancelled write may leave part of a frame written.
pub async fn write_u16_frame<W>(writer: &mut W, frame: &[u8]) -> Result<(), Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    write_frame(
        writer,
        LengthPrefix::U16,
        LengthPrefix::U16.max_len(),
        frame,
    )
    .await
}

/// Reads one u32-prefixed frame of at most `max_frame_len` bytes into `buf` (cleared first).
/// An announced length above the maximum fails before anything is allocated for it.
///
/// Not cancel-safe: a cancelled read may leave part of a frame consumed.
pub async fn read_u32_frame<R>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_frame_len: usize,
) -> Result<(), Error>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let len = reader.read_u32().await.map_err(Error::Io)? as usize;
    if len > max_frame_len {
        return Err(Error::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    read_body(reader, buf, len).await
}

/// Writes one u32-prefixed frame of at most `max_frame_len` bytes, without flushing.
///
/// Not cancel-safe: a cancelled write may leave part of a frame written.
pub async fn write_u32_frame<W>(
    writer: &mut W,
    frame: &[u8],
    max_frame_len: usize,
) -> Result<(), Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    write_frame(writer, LengthPrefix::U32, max_frame_len, frame).await
}

async fn read_body<R>(reader: &mut R, buf: &mut BytesMut, len: usize) -> Result<(), Error>
where
    R: AsyncRead + Unpin + ?Sized,
{
    buf.clear();
    buf.resize(len, 0);
    reader.read_exact(&mut buf[..]).await.map_err(Error::Io)?;
    Ok(())
}

async fn write_frame<W>(
    writer: &mut W,
    prefix: LengthPrefix,
    max_frame_len: usize,
    frame: &[u8],
) -> Result<(), Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let max = max_frame_len.min(prefix.max_len());
    if frame.len() > max {
        return Err(Error::FrameTooLarge {
            len: frame.len(),
            max,
        });
    }
    let mut header = [0u8; 4];
    let mut header_buf = &mut header[..];
    prefix.put(&mut header_buf, frame.len());
    writer
        .write_all(&header[..prefix.width()])
        .await
        .map_err(Error::Io)?;
    writer.write_all(frame).await.map_err(Error::Io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A u32 prefix announcing 4 GiB fails on the prefix alone, with nothing reserved.
    #[test]
    fn oversized_prefix_is_rejected_before_allocation() {
        let mut codec = FrameCodec::u32(4 * 1024 * 1024);
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let capacity_before = src.capacity();
        let err = codec.decode(&mut src).unwrap_err();
        assert!(matches!(
            err,
            Error::FrameTooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
        // Nothing was reserved: the buffer did not grow towards the announced 4 GiB.
        assert!(src.capacity() <= capacity_before);
    }

    /// Partial prefixes and bodies yield `Ok(None)`; the frame comes out once complete.
    #[test]
    fn incomplete_frames_wait_for_more_bytes() {
        let mut codec = FrameCodec::u16(100);
        let mut src = BytesMut::from(&[0x00][..]);
        assert!(codec.decode(&mut src).unwrap().is_none());
        src.extend_from_slice(&[0x03, b'a', b'b']);
        assert!(codec.decode(&mut src).unwrap().is_none());
        src.extend_from_slice(b"c");
        assert_eq!(&codec.decode(&mut src).unwrap().unwrap()[..], b"abc");
        assert!(src.is_empty());
    }

    /// An empty buffer holding a large allocation is given back, even when its view sits at
    /// the end of that allocation (a written-out buffer); a small one is kept, a partial frame
    /// is kept, and a frame whose prefix alone was consumed still decodes after the release.
    #[test]
    fn idle_buffers_are_released() {
        let mut codec = FrameCodec::u32(4 << 20);
        let mut src = BytesMut::with_capacity(1 << 20);
        src.extend_from_slice(&vec![1u8; 1 << 20]);
        src.advance(1 << 20);
        assert_eq!(src.capacity(), 0, "the view has no room left");
        assert_eq!(codec.release_idle_buffer(&mut src), 1 << 20);
        assert_eq!(src.capacity(), 0);
        assert_eq!(codec.release_idle_buffer(&mut src), 0);

        // Small: kept.
        let mut small = BytesMut::with_capacity(IDLE_BUFFER_KEEP);
        assert_eq!(codec.release_idle_buffer(&mut small), 0);
        assert_eq!(small.capacity(), IDLE_BUFFER_KEEP);

        // Prefix consumed (10,000 bytes announced), no body yet: released, then decoded.
        src.extend_from_slice(&10_000u32.to_be_bytes());
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(codec.release_idle_buffer(&mut src) >= 10_000);
        src.extend_from_slice(&[2u8; 9_999]);
        assert_eq!(
            codec.release_idle_buffer(&mut src),
            0,
            "part of a body is kept"
        );
        assert!(codec.decode(&mut src).unwrap().is_none());
        src.extend_from_slice(&[2u8]);
        assert_eq!(
            &codec.decode(&mut src).unwrap().unwrap()[..],
            &[2u8; 10_000][..]
        );
    }

    /// The encoder refuses what the decoder would refuse.
    #[test]
    fn encoder_refuses_oversized_frames() {
        let mut codec = FrameCodec::u32(8);
        let mut dst = BytesMut::new();
        assert!(matches!(
            codec.encode(&[0u8; 9][..], &mut dst),
            Err(Error::FrameTooLarge { len: 9, max: 8 })
        ));
        assert!(dst.is_empty());
        codec.encode(&[7u8; 8][..], &mut dst).unwrap();
        assert_eq!(&dst[..4], &[0, 0, 0, 8]);
    }

    /// EOF in the middle of a frame is a typed error, EOF between frames is not.
    #[test]
    fn eof_mid_frame_is_an_error() {
        let mut codec = FrameCodec::u32(100);
        let mut src = BytesMut::new();
        assert!(codec.decode_eof(&mut src).unwrap().is_none());
        let mut src = BytesMut::from(&[0, 0, 0, 5, 1, 2][..]);
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(Error::TruncatedFrame {
                expected: 5,
                received: 2
            })
        ));
    }

    /// The async helpers agree with each other and enforce the maximum on read and write.
    #[tokio::test]
    async fn async_helpers_round_trip_and_enforce_limits() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_u16_frame(&mut a, b"hello").await.unwrap();
        write_u32_frame(&mut a, b"world", 5).await.unwrap();
        let err = write_u32_frame(&mut a, b"world!", 5).await.unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { len: 6, max: 5 }));
        let mut buf = BytesMut::new();
        read_u16_frame(&mut b, &mut buf).await.unwrap();
        assert_eq!(&buf[..], b"hello");
        read_u32_frame(&mut b, &mut buf, 4).await.unwrap_err();

        let too_long = vec![0u8; 70_000];
        assert!(matches!(
            write_u16_frame(&mut a, &too_long).await,
            Err(Error::FrameTooLarge {
                len: 70_000,
                max: 65_535
            })
        ));
    }
}
