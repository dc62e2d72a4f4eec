//! [`NoiseStream`]: an encrypted byte stream over any socket, after a completed handshake.
//!
//! Wire format, per direction: frames of a u16 big-endian ciphertext length then the ciphertext
//! (at most 65,535 bytes: up to 65,519 plaintext bytes and a 16-byte tag). Nonces count from 0
//! per direction, with empty associated data (snow's standard Noise transport). A zero-length
//! frame means end of stream.
//!
//! Both directions are hand-written poll state machines ([`ReadState`], [`WriteState`]): they
//! keep partial progress across `Pending` so that no byte is lost or sent twice, and they run
//! on four fixed buffers allocated once per stream (about 256 KiB), so steady-state traffic
//! does not allocate.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use netcore::PeerId;
use prometheus_client::metrics::counter::Counter;
use snow::TransportState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::Error;
use crate::keys::PublicKey;

/// Largest ciphertext in one frame: the u16 length prefix's maximum (and Noise's).
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// Largest plaintext in one frame: [`MAX_FRAME_LEN`] minus the 16-byte AES-GCM tag.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - TAG_LEN;

/// AES-GCM authentication tag.
const TAG_LEN: usize = 16;
/// Width of the frame length prefix.
const PREFIX_LEN: usize = 2;

/// An encrypted, authenticated byte stream: [`AsyncRead`] + [`AsyncWrite`] over a socket `S`
/// and a Noise session.
///
/// Writing buffers plaintext; a frame is sealed and sent when 65,519 bytes are buffered or on
/// `flush`, so many small writes followed by one flush share one frame. Data is not sent until
/// flushed. Flushing an empty buffer sends nothing. `shutdown` flushes, then shuts the socket
/// down without sending any extra frame.
///
/// Reading returns the plaintext of each frame in order. End of stream is the socket's EOF
/// between two frames, or a zero-length frame. EOF inside a frame is an
/// [`io::ErrorKind::UnexpectedEof`] error. A frame that fails to decrypt fails the read with
/// [`Error::Decrypt`] and poisons the stream: every later read fails with [`Error::Poisoned`].
/// Both come wrapped in an [`io::Error`] of kind [`io::ErrorKind::InvalidData`]; get them back
/// with [`Error::from_io`].
///
/// # Cancel safety
///
/// `read`, `write` and `flush` futures are cancel-safe in tokio's sense: the state lives in the
/// stream, so a dropped future loses nothing that it had not reported. `read_exact` and
/// `write_all` are not, as usual.
pub struct NoiseStream<S> {
    socket: S,
    session: TransportState,
    remote_peer_id: PeerId,
    remote_public_key: PublicKey,
    read_state: ReadState,
    /// Ciphertext of the frame being read: `MAX_FRAME_LEN` bytes.
    read_frame: Box<[u8]>,
    /// Plaintext of the last frame when the reader's buffer was too small to decrypt into:
    /// `MAX_PLAINTEXT_LEN` bytes.
    read_plain: Box<[u8]>,
    write_state: WriteState,
    /// Plaintext accepted but not yet sealed: `MAX_PLAINTEXT_LEN` bytes.
    write_plain: Box<[u8]>,
    /// The sealed frame being sent, length prefix included: `PREFIX_LEN + MAX_FRAME_LEN` bytes.
    write_frame: Box<[u8]>,
    decrypt_failures: Option<Counter>,
}

/// Where the reader is within the incoming frames.
#[derive(Clone, Copy, Debug)]
enum ReadState {
    /// Reading a length prefix; `filled` of its 2 bytes have arrived.
    ReadLen {
        prefix: [u8; PREFIX_LEN],
        filled: usize,
    },
    /// Reading `len` bytes of ciphertext into `read_frame`; `filled` have arrived.
    ReadFrame { len: usize, filled: usize },
    /// Handing out `read_plain[offset..len]`.
    Deliver { offset: usize, len: usize },
    /// End of stream: EOF between frames, or a zero-length frame. Reads return 0 bytes.
    Eof,
    /// The socket ended inside a frame. Reads fail with `UnexpectedEof`.
    Truncated,
    /// A frame failed to decrypt. Reads fail with [`Error::Poisoned`].
    Poisoned,
}

/// Where the writer is.
#[derive(Clone, Copy, Debug)]
enum WriteState {
    /// Accepting plaintext into `write_plain[..buffered]`.
    Buffering { buffered: usize },
    /// Sending `write_frame[offset..len]`; `write_plain` is empty.
    Sending { offset: usize, len: usize },
}

impl<S> NoiseStream<S> {
    /// Wraps `socket` with the session of a completed handshake with `remote_peer_id`, which
    /// proved it holds `remote_public_key`. [`NoiseUpgrader`](crate::NoiseUpgrader) does this
    /// for you.
    pub fn new(
        socket: S,
        session: TransportState,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
    ) -> Self {
        Self {
            socket,
            session,
            remote_peer_id,
            remote_public_key,
            read_state: ReadState::READ_LEN,
            read_frame: vec![0; MAX_FRAME_LEN].into_boxed_slice(),
            read_plain: vec![0; MAX_PLAINTEXT_LEN].into_boxed_slice(),
            write_state: WriteState::Buffering { buffered: 0 },
            write_plain: vec![0; MAX_PLAINTEXT_LEN].into_boxed_slice(),
            write_frame: vec![0; PREFIX_LEN + MAX_FRAME_LEN].into_boxed_slice(),
            decrypt_failures: None,
        }
    }

    /// The remote peer's PeerId.
    pub fn remote_peer_id(&self) -> PeerId {
        self.remote_peer_id
    }

    /// The static key the remote peer proved it holds.
    pub fn remote_public_key(&self) -> PublicKey {
        self.remote_public_key
    }

    /// The underlying socket. Reading or writing it directly breaks the stream.
    pub fn get_ref(&self) -> &S {
        &self.socket
    }

    /// The underlying socket, mutably (for socket options). Reading or writing it directly
    /// breaks the stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Counts decryption failures in `counter`.
    pub(crate) fn with_decrypt_failure_counter(mut self, counter: Counter) -> Self {
        self.decrypt_failures = Some(counter);
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> NoiseStream<S> {
    /// The write state machine, shared by `poll_write` (`data` is `Some`) and `poll_flush`
    /// (`data` is `None`). Returns how many bytes of `data` were accepted (0 for a flush).
    fn poll_write_or_flush(
        &mut self,
        cx: &mut Context<'_>,
        data: Option<&[u8]>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match &mut self.write_state {
                WriteState::Buffering { buffered } => {
                    let buffered = *buffered;
                    let Some(data) = data else {
                        // Flush: seal what is buffered, or flush the socket once all is sent.
                        if buffered > 0 {
                            self.seal_buffered(buffered)?;
                            continue;
                        }
                        ready!(Pin::new(&mut self.socket).poll_flush(cx))?;
                        return Poll::Ready(Ok(0));
                    };
                    if data.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    if buffered == MAX_PLAINTEXT_LEN {
                        self.seal_buffered(buffered)?;
                        continue;
                    }
                    if buffered == 0 && data.len() >= MAX_PLAINTEXT_LEN {
                        // A whole frame from the caller's buffer: seal it directly, which saves
                        // copying it into `write_plain` first.
                        let len = seal(
                            &mut self.session,
                            &data[..MAX_PLAINTEXT_LEN],
                            &mut self.write_frame,
                        )?;
                        self.write_state = WriteState::Sending { offset: 0, len };
                        return Poll::Ready(Ok(MAX_PLAINTEXT_LEN));
                    }
                    let accepted = data.len().min(MAX_PLAINTEXT_LEN - buffered);
                    self.write_plain[buffered..buffered + accepted]
                        .copy_from_slice(&data[..accepted]);
                    self.write_state = WriteState::Buffering {
                        buffered: buffered + accepted,
                    };
                    return Poll::Ready(Ok(accepted));
                }
                WriteState::Sending { offset, len } => {
                    let frame = &self.write_frame[*offset..*len];
                    let written = ready!(Pin::new(&mut self.socket).poll_write(cx, frame))?;
                    if written == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *offset += written;
                    if *offset == *len {
                        self.write_state = WriteState::Buffering { buffered: 0 };
                    }
                }
            }
        }
    }

    /// Seals `write_plain[..buffered]` into `write_frame` and moves to `Sending`.
    fn seal_buffered(&mut self, buffered: usize) -> io::Result<()> {
        let len = seal(
            &mut self.session,
            &self.write_plain[..buffered],
            &mut self.write_frame,
        )?;
        self.write_state = WriteState::Sending { offset: 0, len };
        Ok(())
    }

    /// Records a decryption failure and poisons the stream.
    fn poison(&mut self, source: snow::Error) -> io::Error {
        self.read_state = ReadState::Poisoned;
        if let Some(counter) = &self.decrypt_failures {
            counter.inc();
        }
        tracing::debug!(peer = %self.remote_peer_id, "noise frame failed to decrypt");
        Error::Decrypt { source }.into()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for NoiseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.read_state {
                ReadState::ReadLen { prefix, filled } => {
                    let read =
                        ready!(poll_read_some(&mut this.socket, cx, &mut prefix[*filled..]))?;
                    if read == 0 {
                        this.read_state = if *filled == 0 {
                            ReadState::Eof
                        } else {
                            ReadState::Truncated
                        };
                        continue;
                    }
                    *filled += read;
                    if *filled == PREFIX_LEN {
                        let len = usize::from(u16::from_be_bytes(*prefix));
                        this.read_state = if len == 0 {
                            ReadState::Eof
                        } else {
                            ReadState::ReadFrame { len, filled: 0 }
                        };
                    }
                }
                ReadState::ReadFrame { len, filled } => {
                    let len = *len;
                    let frame = &mut this.read_frame[*filled..len];
                    let read = ready!(poll_read_some(&mut this.socket, cx, frame))?;
                    if read == 0 {
                        this.read_state = ReadState::Truncated;
                        continue;
                    }
                    *filled += read;
                    if *filled < len {
                        continue;
                    }
                    let frame = &this.read_frame[..len];
                    match len.checked_sub(TAG_LEN) {
                        // The reader has room for the whole plaintext: decrypt straight into
                        // its buffer and skip the copy through `read_plain`.
                        Some(plain_len) if plain_len <= buf.remaining() => {
                            let dst = buf.initialize_unfilled_to(plain_len);
                            match this.session.read_message(frame, dst) {
                                Ok(decrypted) => {
                                    buf.advance(decrypted);
                                    this.read_state = ReadState::READ_LEN;
                                    // An empty frame carries no data: returning now would read
                                    // as EOF, so go on to the next frame.
                                    if decrypted > 0 {
                                        return Poll::Ready(Ok(()));
                                    }
                                }
                                Err(source) => return Poll::Ready(Err(this.poison(source))),
                            }
                        }
                        _ => match this.session.read_message(frame, &mut this.read_plain) {
                            Ok(decrypted) => {
                                this.read_state = ReadState::Deliver {
                                    offset: 0,
                                    len: decrypted,
                                };
                            }
                            Err(source) => return Poll::Ready(Err(this.poison(source))),
                        },
                    }
                }
                ReadState::Deliver { offset, len } => {
                    let n = buf.remaining().min(*len - *offset);
                    buf.put_slice(&this.read_plain[*offset..*offset + n]);
                    *offset += n;
                    if *offset == *len {
                        this.read_state = ReadState::READ_LEN;
                    }
                    if n > 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Truncated => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "noise stream: connection closed inside a frame",
                    )));
                }
                ReadState::Poisoned => return Poll::Ready(Err(Error::Poisoned.into())),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for NoiseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_or_flush(cx, Some(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_write_or_flush(cx, None))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_or_flush(cx, None))?;
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}

impl<S> fmt::Debug for NoiseStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseStream")
            .field("remote_peer_id", &self.remote_peer_id)
            .field("read_state", &self.read_state)
            .field("write_state", &self.write_state)
            .finish_non_exhaustive()
    }
}

impl ReadState {
    const READ_LEN: Self = Self::ReadLen {
        prefix: [0; PREFIX_LEN],
        filled: 0,
    };
}

/// Encrypts `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) into `frame` behind its length
/// prefix and returns the frame's total length.
fn seal(session: &mut TransportState, plaintext: &[u8], frame: &mut [u8]) -> io::Result<usize> {
    let len = session
        .write_message(plaintext, &mut frame[PREFIX_LEN..])
        .map_err(|source| Error::Encrypt { source })?;
    // Cannot truncate: snow refuses to produce more than 65,535 bytes of ciphertext.
    frame[..PREFIX_LEN].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(PREFIX_LEN + len)
}

/// Reads whatever is available into `dst`; 0 means EOF.
fn poll_read_some<S: AsyncRead + Unpin>(
    socket: &mut S,
    cx: &mut Context<'_>,
    dst: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(dst);
    ready!(Pin::new(socket).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}
