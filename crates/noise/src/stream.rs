//! [`NoiseStream`]: an encrypted byte stream over any socket, after a completed handshake.
//!
//! Wire format, per direction: frames of a u16 big-endian ciphertext length then the ciphertext
//! (at most 65,535 bytes: up to 65,519 plaintext bytes and a 16-byte tag). Nonces count from 0
//! per direction, with empty associated data (snow's standard Noise transport). A zero-length
//! frame means end of stream.
//!
//! Both directions are hand-written poll state machines ([`ReadState`], [`WriteState`]): they
//! keep partial progress across `Pending` so that no byte is lost or sent twice.
//!
//! Memory: the four buffers (ciphertext and plaintext, per direction) are allocated when there
//! is something to read or write, sized to the frames seen (at most one frame each, about
//! 64 KiB), and given back when the direction goes idle if they hold more than
//! `IDLE_BUFFER_KEEP` (4 KiB), so an idle connection holds at most 16 KiB of them, and a few
//! hundred bytes if it only ever carried small messages. Small buffers are kept because freeing and
//! reallocating them at every pause of a connection that trickles small messages costs more
//! (allocator locks across threads) than they weigh. "Idle" is chosen where the task is about
//! to sleep anyway, never per frame:
//! - read: the socket returns `Pending` with no frame partly read and nothing left to deliver
//!   (the task parks and waits for a wake-up, which costs far more than an allocation);
//! - write: a flush completes with everything sent (the caller has no more to write for now).
//!
//! A busy stream therefore reuses its buffers frame after frame and allocates at most once per
//! park or flush. A read returns `Pending` only once the reader has caught up with the network,
//! and a flush means the writer has nothing more for now, so the reallocation falls where the
//! stream has time to spare, never on a saturated stream. The ciphertext buffer is read into
//! without zero-filling; the others are zero-filled only as they grow (snow writes into
//! initialized memory).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::BufMut;
use netcore::PeerId;
use prometheus_client::metrics::counter::Counter;
use snow::TransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

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
/// between two frames, or a zero-length frame. EOF inside a frame fails the read with
/// [`Error::TruncatedFrame`] in an [`io::Error`] of kind [`io::ErrorKind::UnexpectedEof`].
/// A frame that fails to decrypt fails the read with [`Error::Decrypt`] and poisons the
/// stream: every later read fails with [`Error::Poisoned`]. Both come wrapped in an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidData`]. Get any of them back with
/// [`Error::from_io`].
///
/// Buffers are allocated on demand and, above 4 KiB, released when the stream goes idle (see
/// the module docs); [`NoiseStream::buffer_capacity`] reports what is held.
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
    /// Ciphertext of the frame being read, as far as it has arrived (capacity up to
    /// `MAX_FRAME_LEN`). At most `IDLE_BUFFER_KEEP` while idle.
    read_frame: Vec<u8>,
    /// Plaintext of the last frame when the reader's buffer was too small to decrypt into (up
    /// to `MAX_PLAINTEXT_LEN` bytes). At most `IDLE_BUFFER_KEEP` while idle.
    read_plain: Vec<u8>,
    write_state: WriteState,
    /// Plaintext accepted but not yet sealed: all of it (at most `MAX_PLAINTEXT_LEN` bytes).
    write_plain: Vec<u8>,
    /// The sealed frame being sent, length prefix included (up to `PREFIX_LEN +
    /// MAX_FRAME_LEN` bytes). At most `IDLE_BUFFER_KEEP` while idle.
    write_frame: Vec<u8>,
    decrypt_failures: Option<Counter>,
    truncated_frames: Option<Counter>,
}

/// Where the reader is within the incoming frames.
#[derive(Clone, Copy, Debug)]
enum ReadState {
    /// Reading a length prefix; `filled` of its 2 bytes have arrived.
    ReadLen {
        prefix: [u8; PREFIX_LEN],
        filled: usize,
    },
    /// Reading `len` bytes of ciphertext into `read_frame`, whose length is what has arrived.
    ReadFrame { len: usize },
    /// Handing out `read_plain[offset..len]`.
    Deliver { offset: usize, len: usize },
    /// End of stream: EOF between frames, or a zero-length frame. Reads return 0 bytes.
    Eof,
    /// The socket ended inside a frame, after `received` of the frame's `expected` bytes
    /// (prefix included). Reads fail with [`Error::TruncatedFrame`].
    Truncated { expected: usize, received: usize },
    /// A frame failed to decrypt. Reads fail with [`Error::Poisoned`].
    Poisoned,
}

/// Where the writer is.
#[derive(Clone, Copy, Debug)]
enum WriteState {
    /// Accepting plaintext into `write_plain`.
    Buffering,
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
            read_frame: Vec::new(),
            read_plain: Vec::new(),
            write_state: WriteState::Buffering,
            write_plain: Vec::new(),
            write_frame: Vec::new(),
            decrypt_failures: None,
            truncated_frames: None,
        }
    }

    /// Bytes of buffer memory the stream holds right now, both directions together
    /// (diagnostics). At most 4 × 4 KiB for a stream that is idle
    /// (nothing partly read, nothing unflushed), 0 for one that never read or wrote.
    pub fn buffer_capacity(&self) -> usize {
        self.read_frame.capacity()
            + self.read_plain.capacity()
            + self.write_plain.capacity()
            + self.write_frame.capacity()
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

    /// Counts decryption failures in `decrypt_failures` and connections that ended inside a
    /// frame in `truncated_frames`.
    pub(crate) fn with_counters(
        mut self,
        decrypt_failures: Counter,
        truncated_frames: Counter,
    ) -> Self {
        self.decrypt_failures = Some(decrypt_failures);
        self.truncated_frames = Some(truncated_frames);
        self
    }

    /// Gives the read buffers back: no later read needs them (end of stream or an error).
    fn release_read_buffers(&mut self) {
        self.read_frame = Vec::new();
        self.read_plain = Vec::new();
    }

    /// The reader is idle (nothing partly read, nothing to deliver): gives back the read
    /// buffers above [`IDLE_BUFFER_KEEP`].
    fn trim_read_buffers(&mut self) {
        trim(&mut self.read_frame);
        trim(&mut self.read_plain);
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
                WriteState::Buffering => {
                    let buffered = self.write_plain.len();
                    let Some(data) = data else {
                        // Flush: seal what is buffered, or flush the socket once all is sent.
                        if buffered > 0 {
                            self.seal_buffered()?;
                            continue;
                        }
                        ready!(Pin::new(&mut self.socket).poll_flush(cx))?;
                        // Everything is out and the caller has nothing more for now: give the
                        // large write buffers back (the next write allocates them again).
                        trim(&mut self.write_plain);
                        trim(&mut self.write_frame);
                        return Poll::Ready(Ok(0));
                    };
                    if data.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    if buffered == MAX_PLAINTEXT_LEN {
                        self.seal_buffered()?;
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
                    reserve_capped(&mut self.write_plain, accepted, MAX_PLAINTEXT_LEN);
                    self.write_plain.extend_from_slice(&data[..accepted]);
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
                        self.write_state = WriteState::Buffering;
                    }
                }
            }
        }
    }

    /// Seals `write_plain` into `write_frame`, empties `write_plain` (keeping its capacity for
    /// the next frame) and moves to `Sending`.
    fn seal_buffered(&mut self) -> io::Result<()> {
        let len = seal(&mut self.session, &self.write_plain, &mut self.write_frame)?;
        self.write_plain.clear();
        self.write_state = WriteState::Sending { offset: 0, len };
        Ok(())
    }

    /// Records a connection that ended inside a frame (the state is already `Truncated`) and
    /// drops the read buffers, which no later read needs.
    fn end_of_reads(&mut self) {
        self.release_read_buffers();
        if let ReadState::Truncated { expected, received } = self.read_state {
            if let Some(counter) = &self.truncated_frames {
                counter.inc();
            }
            tracing::debug!(
                peer = %self.remote_peer_id,
                expected,
                received,
                "noise stream ended inside a frame"
            );
        }
    }

    /// Records a decryption failure and poisons the stream.
    fn poison(&mut self, source: snow::Error) -> io::Error {
        self.read_state = ReadState::Poisoned;
        self.release_read_buffers();
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
                    let read = match poll_read_some(&mut this.socket, cx, &mut prefix[*filled..]) {
                        Poll::Ready(read) => read?,
                        Poll::Pending => {
                            // Between frames with nothing to deliver: the task is about to park,
                            // so this is where an idle stream gives its read buffers back.
                            if *filled == 0 {
                                this.trim_read_buffers();
                            }
                            return Poll::Pending;
                        }
                    };
                    if read == 0 {
                        this.read_state = if *filled == 0 {
                            ReadState::Eof
                        } else {
                            ReadState::Truncated {
                                expected: PREFIX_LEN,
                                received: *filled,
                            }
                        };
                        this.end_of_reads();
                        continue;
                    }
                    *filled += read;
                    if *filled == PREFIX_LEN {
                        let len = usize::from(u16::from_be_bytes(*prefix));
                        this.read_state = if len == 0 {
                            ReadState::Eof
                        } else {
                            this.read_frame.clear();
                            reserve_capped(&mut this.read_frame, len, MAX_FRAME_LEN);
                            ReadState::ReadFrame { len }
                        };
                    }
                }
                ReadState::ReadFrame { len } => {
                    let len = *len;
                    let filled = this.read_frame.len();
                    // Into the vector's spare capacity, up to the end of the frame: the
                    // ciphertext buffer is never zero-filled, even right after a release.
                    let mut dst = (&mut this.read_frame).limit(len - filled);
                    let read = ready!(pin!(this.socket.read_buf(&mut dst)).poll(cx))?;
                    if read == 0 {
                        this.read_state = ReadState::Truncated {
                            expected: PREFIX_LEN + len,
                            received: PREFIX_LEN + filled,
                        };
                        this.end_of_reads();
                        continue;
                    }
                    if this.read_frame.len() < len {
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
                        _ => {
                            grow_zeroed(
                                &mut this.read_plain,
                                len.saturating_sub(TAG_LEN),
                                MAX_PLAINTEXT_LEN,
                            );
                            match this.session.read_message(frame, &mut this.read_plain) {
                                Ok(decrypted) => {
                                    this.read_state = ReadState::Deliver {
                                        offset: 0,
                                        len: decrypted,
                                    };
                                }
                                Err(source) => return Poll::Ready(Err(this.poison(source))),
                            }
                        }
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
                ReadState::Eof => {
                    this.release_read_buffers();
                    return Poll::Ready(Ok(()));
                }
                ReadState::Truncated { expected, received } => {
                    return Poll::Ready(Err(Error::TruncatedFrame {
                        expected: *expected,
                        received: *received,
                    }
                    .into()));
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
/// prefix, growing `frame` if needed, and returns the frame's total length.
fn seal(session: &mut TransportState, plaintext: &[u8], frame: &mut Vec<u8>) -> io::Result<usize> {
    grow_zeroed(
        frame,
        PREFIX_LEN + plaintext.len() + TAG_LEN,
        PREFIX_LEN + MAX_FRAME_LEN,
    );
    let len = session
        .write_message(plaintext, &mut frame[PREFIX_LEN..])
        .map_err(|source| Error::Encrypt { source })?;
    // Cannot truncate: snow refuses to produce more than 65,535 bytes of ciphertext.
    frame[..PREFIX_LEN].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(PREFIX_LEN + len)
}

/// Most memory one buffer keeps while the stream is idle: 4 KiB holds a batch of small
/// messages.
const IDLE_BUFFER_KEEP: usize = 4 * 1024;

/// Gives back `buf`'s memory if it is more than [`IDLE_BUFFER_KEEP`]. Small buffers stay: a
/// connection that trickles small messages would otherwise reallocate them at every pause,
/// which costs more than they weigh.
fn trim(buf: &mut Vec<u8>) {
    if buf.capacity() > IDLE_BUFFER_KEEP {
        *buf = Vec::new();
    }
}

/// Makes room in `buf` for `additional` more bytes: at least doubling (so a stream whose frames
/// grow reallocates a few times, not per frame) but never past `max`, the most it can hold.
fn reserve_capped(buf: &mut Vec<u8>, additional: usize, max: usize) {
    let needed = buf.len() + additional;
    if needed > buf.capacity() {
        let target = needed.max(2 * buf.capacity()).min(max).max(needed);
        buf.reserve_exact(target - buf.len());
    }
}

/// Makes `buf` at least `len` bytes long, zero-filling what is new (snow writes into
/// initialized slices). The length never shrinks, so a busy stream zeroes each byte once.
fn grow_zeroed(buf: &mut Vec<u8>, len: usize, max: usize) {
    if buf.len() < len {
        reserve_capped(buf, len - buf.len(), max);
        buf.resize(len, 0);
    }
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
