//! [`NoiseStream`]: an encrypted byte stream over any socket, after a completed handshake, and
//! its two halves ([`NoiseStream::into_split`]).
//!
//! Wire format, per direction: frames of a u16 big-endian ciphertext length then the ciphertext
//! (at most 65,535 bytes: up to 65,519 plaintext bytes and a 16-byte tag). Nonces count from 0
//! per direction, with empty associated data (snow's standard Noise transport). A zero-length
//! frame means end of stream.
//!
//! The two directions share nothing but the session's keys, which never change after the
//! handshake (snow's `StatelessTransportState`, behind an `Arc`, read-only): each direction
//! counts its own nonce and owns its state and buffers ([`ReadSide`], [`WriteSide`]). A
//! [`NoiseStream`] holds both over one socket; [`NoiseStream::into_split`] hands each to its own
//! half over the socket's own halves ([`SplitSocket`]), so a reader task and a writer task
//! never wait for each other (`tokio::io::split` would take a lock per read and per write).
//! Both directions are hand-written poll state machines: they keep partial progress across
//! `Pending` so that no byte is lost or sent twice.
//!
//! Reading pulls whatever the socket has, up to the end of the current frame plus up to 4 KiB
//! of what follows, so a run of small frames costs one read call per 4 KiB rather than two per
//! frame (prefix, then body), and a large frame is read to its end without copying the next
//! one around. The buffer grows for that read-ahead (to 4 KiB) only once a read came back
//! full, so a connection that sees one small frame at a time keeps a buffer its frames' size.
//!
//! Memory: the four buffers (ciphertext and plaintext, per direction) are allocated when there
//! is something to read or write, sized to the frames seen (at most one frame each, about
//! 64 KiB), and given back when the direction goes idle if they hold more than
//! `IDLE_BUFFER_KEEP` (4 KiB), so an idle connection holds at most 16 KiB of them, and a few
//! hundred bytes if it only ever carried small messages. Small buffers are kept because freeing
//! and reallocating them at every pause of a connection that trickles small messages costs more
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
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BufMut;
use netcore::{MemorySocket, PeerId};
use prometheus_client::metrics::counter::Counter;
use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
/// Most bytes read past the end of the current frame in one read call: enough to take a run of
/// small frames at once, small enough that moving a partly read frame to the front of the
/// buffer stays cheap.
const READ_AHEAD: usize = 4 * 1024;

/// A socket that comes apart into a read half and a write half that two tasks can drive at
/// once, each without waiting for the other.
///
/// TCP splits into tokio's owned halves, with no lock at all. Sockets with no such split
/// (the in-memory pipes of tests, boxed sockets) can use `tokio::io::split`, whose halves share
/// a lock; only the bytes below the [`NoiseStream`] pay for it.
pub trait SplitSocket: AsyncRead + AsyncWrite + Sized {
    /// The half that reads.
    type ReadHalf: AsyncRead + Unpin + Send + 'static;
    /// The half that writes; shutting it down shuts the socket down for writing.
    type WriteHalf: AsyncWrite + Unpin + Send + 'static;

    /// Splits the socket in two.
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf);
}

impl SplitSocket for TcpStream {
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = OwnedWriteHalf;

    fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        Self::into_split(self)
    }
}

impl SplitSocket for MemorySocket {
    type ReadHalf = tokio::io::ReadHalf<Self>;
    type WriteHalf = tokio::io::WriteHalf<Self>;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}

impl SplitSocket for DuplexStream {
    type ReadHalf = tokio::io::ReadHalf<Self>;
    type WriteHalf = tokio::io::WriteHalf<Self>;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}

impl<S: SplitSocket + Unpin> SplitSocket for NoiseStream<S> {
    type ReadHalf = NoiseReadHalf<S::ReadHalf>;
    type WriteHalf = NoiseWriteHalf<S::WriteHalf>;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        Self::into_split(self)
    }
}

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
/// [`into_split`](Self::into_split) gives a read half and a write half for two tasks, with the
/// same behaviour per direction and nothing shared between them but the keys.
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
    read: ReadSide,
    write: WriteSide,
}

/// The read half of a [`NoiseStream`] ([`NoiseStream::into_split`]): [`AsyncRead`] over the
/// socket's read half `R`. Reads behave as on the whole stream.
pub struct NoiseReadHalf<R> {
    socket: R,
    read: ReadSide,
}

/// The write half of a [`NoiseStream`] ([`NoiseStream::into_split`]): [`AsyncWrite`] over the
/// socket's write half `W`. Writes, flushes and `shutdown` behave as on the whole stream;
/// `shutdown` (or dropping a TCP write half) ends the direction, and the read half goes on
/// reading what the remote sends.
pub struct NoiseWriteHalf<W> {
    socket: W,
    write: WriteSide,
}

/// Who is on the other end.
#[derive(Clone, Copy, Debug)]
struct Remote {
    peer_id: PeerId,
    public_key: PublicKey,
}

/// The receiving direction: its nonce, where it is within the incoming frames, its buffers.
struct ReadSide {
    session: Arc<StatelessTransportState>,
    /// The nonce of the next frame to open.
    nonce: u64,
    remote: Remote,
    state: ReadState,
    /// Ciphertext as it arrived, length prefixes included: `ciphertext[start..]` is not
    /// consumed yet (at most a frame and `READ_AHEAD` bytes). Capacity up to `PREFIX_LEN +
    /// MAX_FRAME_LEN`, at most `IDLE_BUFFER_KEEP` while idle.
    ciphertext: Vec<u8>,
    start: usize,
    /// The last read filled all the room it had past the current frame (short of the
    /// read-ahead): more is waiting, so the next one may grow the buffer for it (up to `IDLE_BUFFER_KEEP`). A stream that only ever sees one small
    /// frame at a time keeps a buffer the size of its frames.
    read_ahead_full: bool,
    /// Plaintext of the last frame when the reader's buffer was too small to decrypt into, and
    /// room for its tag (snow decrypts in place there): up to `MAX_FRAME_LEN` bytes. At most
    /// `IDLE_BUFFER_KEEP` while idle.
    plain: Vec<u8>,
    decrypt_failures: Option<Counter>,
    truncated_frames: Option<Counter>,
}

/// The sending direction: its nonce, its state and buffers.
struct WriteSide {
    session: Arc<StatelessTransportState>,
    /// The nonce of the next frame to seal.
    nonce: u64,
    state: WriteState,
    /// Plaintext accepted but not yet sealed: all of it (at most `MAX_PLAINTEXT_LEN` bytes).
    plain: Vec<u8>,
    /// The sealed frame being sent, length prefix included (up to `PREFIX_LEN +
    /// MAX_FRAME_LEN` bytes). At most `IDLE_BUFFER_KEEP` while idle.
    frame: Vec<u8>,
}

/// Where the reader is.
#[derive(Clone, Copy, Debug)]
enum ReadState {
    /// Taking frames from `ciphertext[start..]`, reading more when no whole frame is there.
    Frames,
    /// Handing out `plain[offset..len]`.
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
    /// Accepting plaintext into `plain`.
    Buffering,
    /// Sending `frame[offset..len]`; `plain` is empty.
    Sending { offset: usize, len: usize },
}

impl<S> NoiseStream<S> {
    /// Wraps `socket` with the session of a completed handshake with `remote_peer_id`, which
    /// proved it holds `remote_public_key`. [`NoiseUpgrader`](crate::NoiseUpgrader) does this
    /// for you. Both directions start at nonce 0.
    pub fn new(
        socket: S,
        session: StatelessTransportState,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
    ) -> Self {
        let session = Arc::new(session);
        let remote = Remote {
            peer_id: remote_peer_id,
            public_key: remote_public_key,
        };
        Self {
            socket,
            read: ReadSide::new(session.clone(), remote),
            write: WriteSide::new(session),
        }
    }

    /// Bytes of buffer memory the stream holds right now, both directions together
    /// (diagnostics). At most 4 × 4 KiB for a stream that is idle
    /// (nothing partly read, nothing unflushed), 0 for one that never read or wrote.
    pub fn buffer_capacity(&self) -> usize {
        self.read.buffer_capacity() + self.write.buffer_capacity()
    }

    /// The remote peer's PeerId.
    pub fn remote_peer_id(&self) -> PeerId {
        self.read.remote.peer_id
    }

    /// The static key the remote peer proved it holds.
    pub fn remote_public_key(&self) -> PublicKey {
        self.read.remote.public_key
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
        self.read.decrypt_failures = Some(decrypt_failures);
        self.read.truncated_frames = Some(truncated_frames);
        self
    }
}

impl<S: SplitSocket> NoiseStream<S> {
    /// Splits the stream into a read half and a write half over the socket's own halves, for a
    /// reader task and a writer task that never wait for each other. Each half takes its
    /// direction as it is, bytes already buffered included; nothing is shared but the keys.
    pub fn into_split(self) -> (NoiseReadHalf<S::ReadHalf>, NoiseWriteHalf<S::WriteHalf>) {
        let (read_socket, write_socket) = self.socket.into_split();
        (
            NoiseReadHalf {
                socket: read_socket,
                read: self.read,
            },
            NoiseWriteHalf {
                socket: write_socket,
                write: self.write,
            },
        )
    }
}

impl<R> NoiseReadHalf<R> {
    /// Bytes of buffer memory this half holds right now (diagnostics): at most 2 × 4 KiB
    /// while idle.
    pub fn buffer_capacity(&self) -> usize {
        self.read.buffer_capacity()
    }

    /// The remote peer's PeerId.
    pub fn remote_peer_id(&self) -> PeerId {
        self.read.remote.peer_id
    }

    /// The static key the remote peer proved it holds.
    pub fn remote_public_key(&self) -> PublicKey {
        self.read.remote.public_key
    }

    /// The socket's read half. Reading it directly breaks the stream.
    pub fn get_ref(&self) -> &R {
        &self.socket
    }
}

impl<W> NoiseWriteHalf<W> {
    /// Bytes of buffer memory this half holds right now (diagnostics): at most 2 × 4 KiB
    /// once flushed.
    pub fn buffer_capacity(&self) -> usize {
        self.write.buffer_capacity()
    }

    /// The socket's write half. Writing it directly breaks the stream.
    pub fn get_ref(&self) -> &W {
        &self.socket
    }
}

impl ReadSide {
    fn new(session: Arc<StatelessTransportState>, remote: Remote) -> Self {
        Self {
            session,
            nonce: 0,
            remote,
            state: ReadState::Frames,
            ciphertext: Vec::new(),
            start: 0,
            read_ahead_full: false,
            plain: Vec::new(),
            decrypt_failures: None,
            truncated_frames: None,
        }
    }

    fn buffer_capacity(&self) -> usize {
        self.ciphertext.capacity() + self.plain.capacity()
    }

    /// Gives the buffers back: no later read needs them (end of stream or an error).
    fn release_buffers(&mut self) {
        self.ciphertext = Vec::new();
        self.start = 0;
        self.plain = Vec::new();
    }

    /// The reader is idle (nothing partly read, nothing to deliver): gives back the buffers
    /// above [`IDLE_BUFFER_KEEP`].
    fn trim_buffers(&mut self) {
        trim(&mut self.ciphertext);
        trim(&mut self.plain);
    }

    fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        socket: &mut R,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut self.state {
                ReadState::Frames => {
                    let available = self.ciphertext.len() - self.start;
                    let frame_len = (available >= PREFIX_LEN).then(|| {
                        let prefix = [self.ciphertext[self.start], self.ciphertext[self.start + 1]];
                        usize::from(u16::from_be_bytes(prefix))
                    });
                    match frame_len {
                        Some(0) => {
                            self.state = ReadState::Eof;
                            continue;
                        }
                        Some(len) if available >= PREFIX_LEN + len => {
                            if self.open_frame(len, buf)? {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        _ => {}
                    }
                    // No whole frame buffered: read up to its end, and a little past it when
                    // the frame is small (the next frames are probably there already).
                    let needed = frame_len.map_or(PREFIX_LEN, |len| PREFIX_LEN + len) - available;
                    let wanted = if needed < READ_AHEAD {
                        needed + READ_AHEAD
                    } else {
                        needed
                    };
                    let spare = self.ciphertext.capacity() - self.ciphertext.len();
                    if spare < wanted && self.start > 0 {
                        // Move the partial frame to the front (at most `READ_AHEAD` bytes
                        // plus a prefix: more is only ever read up to a frame's end).
                        self.ciphertext.drain(..self.start);
                        self.start = 0;
                    }
                    // Room for the frame; and, once a read came back full (more was probably
                    // waiting), for the read-ahead too, within what an idle stream keeps.
                    let room = if self.read_ahead_full {
                        needed
                            .max(wanted.min(IDLE_BUFFER_KEEP.saturating_sub(self.ciphertext.len())))
                    } else {
                        needed
                    };
                    reserve_capped(&mut self.ciphertext, room, PREFIX_LEN + MAX_FRAME_LEN);
                    let spare = self.ciphertext.capacity() - self.ciphertext.len();
                    let limit = wanted.min(spare);
                    // Into the vector's spare capacity: the ciphertext buffer is never
                    // zero-filled, even right after a release.
                    let mut dst = (&mut self.ciphertext).limit(limit);
                    let read = match pin!(socket.read_buf(&mut dst)).poll(cx) {
                        Poll::Ready(read) => read?,
                        Poll::Pending => {
                            // Between frames with nothing to deliver: the task is about to park,
                            // so this is where an idle stream gives its buffers back.
                            if available == 0 {
                                self.trim_buffers();
                            }
                            return Poll::Pending;
                        }
                    };
                    // Full although it had room past what the frame needed: more is waiting.
                    self.read_ahead_full = read == limit && limit > needed && limit < wanted;
                    if read == 0 {
                        if available == 0 {
                            self.state = ReadState::Eof;
                        } else {
                            self.state = ReadState::Truncated {
                                expected: available + needed,
                                received: available,
                            };
                            self.record_truncation();
                        }
                        self.release_buffers();
                    }
                }
                ReadState::Deliver { offset, len } => {
                    let n = buf.remaining().min(*len - *offset);
                    buf.put_slice(&self.plain[*offset..*offset + n]);
                    *offset += n;
                    if *offset == *len {
                        self.state = ReadState::Frames;
                    }
                    if n > 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                ReadState::Eof => {
                    self.release_buffers();
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

    /// Opens the whole frame of `len` ciphertext bytes at `ciphertext[start..]`: straight into
    /// `buf` when it has room for the ciphertext (no copy through `plain`), else into `plain`
    /// to deliver. Returns whether `buf` got bytes.
    fn open_frame(&mut self, len: usize, buf: &mut ReadBuf<'_>) -> io::Result<bool> {
        let begin = self.start + PREFIX_LEN;
        self.start = begin + len;
        let frame = &self.ciphertext[begin..begin + len];
        // snow decrypts in place in its output slice when that has room for the whole
        // ciphertext, tag included; given only the plaintext's length it would copy the frame
        // into a new allocation first and then copy the plaintext out (two copies and an
        // allocation per frame instead of one copy).
        let opened = match len.checked_sub(TAG_LEN) {
            Some(_) if len <= buf.remaining() => {
                let dst = buf.initialize_unfilled_to(len);
                self.session
                    .read_message(self.nonce, frame, dst)
                    .map(|decrypted| {
                        buf.advance(decrypted);
                        // An empty frame carries no data: reporting it would read as EOF, so
                        // go on to the next frame.
                        decrypted > 0
                    })
            }
            _ => {
                grow_zeroed(&mut self.plain, len, MAX_FRAME_LEN);
                self.session
                    .read_message(self.nonce, frame, &mut self.plain)
                    .map(|decrypted| {
                        self.state = ReadState::Deliver {
                            offset: 0,
                            len: decrypted,
                        };
                        false
                    })
            }
        };
        match opened {
            Ok(delivered) => {
                self.nonce += 1;
                if self.start == self.ciphertext.len() {
                    // All consumed: the next read starts at the front for free.
                    self.ciphertext.clear();
                    self.start = 0;
                }
                Ok(delivered)
            }
            Err(source) => Err(self.poison(source)),
        }
    }

    /// Records a connection that ended inside a frame.
    fn record_truncation(&self) {
        if let ReadState::Truncated { expected, received } = self.state {
            if let Some(counter) = &self.truncated_frames {
                counter.inc();
            }
            tracing::debug!(
                peer = %self.remote.peer_id,
                expected,
                received,
                "noise stream ended inside a frame"
            );
        }
    }

    /// Records a decryption failure and poisons the stream.
    fn poison(&mut self, source: snow::Error) -> io::Error {
        self.state = ReadState::Poisoned;
        self.release_buffers();
        if let Some(counter) = &self.decrypt_failures {
            counter.inc();
        }
        tracing::debug!(peer = %self.remote.peer_id, "noise frame failed to decrypt");
        Error::Decrypt { source }.into()
    }
}

impl WriteSide {
    fn new(session: Arc<StatelessTransportState>) -> Self {
        Self {
            session,
            nonce: 0,
            state: WriteState::Buffering,
            plain: Vec::new(),
            frame: Vec::new(),
        }
    }

    fn buffer_capacity(&self) -> usize {
        self.plain.capacity() + self.frame.capacity()
    }

    /// The write state machine, shared by `poll_write` (`data` is `Some`) and `poll_flush`
    /// (`data` is `None`). Returns how many bytes of `data` were accepted (0 for a flush).
    fn poll_write_or_flush<W: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut W,
        cx: &mut Context<'_>,
        data: Option<&[u8]>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match &mut self.state {
                WriteState::Buffering => {
                    let buffered = self.plain.len();
                    let Some(data) = data else {
                        // Flush: seal what is buffered, or flush the socket once all is sent.
                        if buffered > 0 {
                            self.seal_buffered()?;
                            continue;
                        }
                        ready!(Pin::new(socket).poll_flush(cx))?;
                        // Everything is out and the caller has nothing more for now: give the
                        // large write buffers back (the next write allocates them again).
                        trim(&mut self.plain);
                        trim(&mut self.frame);
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
                        // copying it into `plain` first.
                        let len = self.seal(&data[..MAX_PLAINTEXT_LEN])?;
                        self.state = WriteState::Sending { offset: 0, len };
                        return Poll::Ready(Ok(MAX_PLAINTEXT_LEN));
                    }
                    let accepted = data.len().min(MAX_PLAINTEXT_LEN - buffered);
                    reserve_plain(&mut self.plain, accepted);
                    self.plain.extend_from_slice(&data[..accepted]);
                    return Poll::Ready(Ok(accepted));
                }
                WriteState::Sending { offset, len } => {
                    let frame = &self.frame[*offset..*len];
                    let written = ready!(Pin::new(&mut *socket).poll_write(cx, frame))?;
                    if written == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *offset += written;
                    if *offset == *len {
                        self.state = WriteState::Buffering;
                    }
                }
            }
        }
    }

    fn poll_shutdown<W: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_or_flush(socket, cx, None))?;
        Pin::new(socket).poll_shutdown(cx)
    }

    /// Seals `plain` into `frame`, empties `plain` (keeping its capacity for the next frame)
    /// and moves to `Sending`.
    fn seal_buffered(&mut self) -> io::Result<()> {
        let plain = std::mem::take(&mut self.plain);
        let sealed = self.seal(&plain);
        self.plain = plain;
        self.plain.clear();
        self.state = WriteState::Sending {
            offset: 0,
            len: sealed?,
        };
        Ok(())
    }

    /// Encrypts `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) into `frame` behind its length
    /// prefix, growing `frame` if needed, and returns the frame's total length.
    fn seal(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        grow_zeroed(
            &mut self.frame,
            PREFIX_LEN + plaintext.len() + TAG_LEN,
            PREFIX_LEN + MAX_FRAME_LEN,
        );
        let len = self
            .session
            .write_message(self.nonce, plaintext, &mut self.frame[PREFIX_LEN..])
            .map_err(|source| Error::Encrypt { source })?;
        self.nonce += 1;
        // Cannot truncate: snow refuses to produce more than 65,535 bytes of ciphertext.
        self.frame[..PREFIX_LEN].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(PREFIX_LEN + len)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoiseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.read.poll_read(&mut this.socket, cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoiseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write
            .poll_write_or_flush(&mut this.socket, cx, Some(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.write.poll_write_or_flush(&mut this.socket, cx, None))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.write.poll_shutdown(&mut this.socket, cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for NoiseReadHalf<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.read.poll_read(&mut this.socket, cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for NoiseWriteHalf<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write
            .poll_write_or_flush(&mut this.socket, cx, Some(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.write.poll_write_or_flush(&mut this.socket, cx, None))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.write.poll_shutdown(&mut this.socket, cx)
    }
}

impl<S> fmt::Debug for NoiseStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseStream")
            .field("remote_peer_id", &self.read.remote.peer_id)
            .field("read_state", &self.read.state)
            .field("write_state", &self.write.state)
            .finish_non_exhaustive()
    }
}

impl<R> fmt::Debug for NoiseReadHalf<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseReadHalf")
            .field("remote_peer_id", &self.read.remote.peer_id)
            .field("read_state", &self.read.state)
            .finish_non_exhaustive()
    }
}

impl<W> fmt::Debug for NoiseWriteHalf<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseWriteHalf")
            .field("write_state", &self.write.state)
            .finish_non_exhaustive()
    }
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

/// Makes room in the plaintext write buffer for `additional` more bytes. Within what an idle
/// stream keeps ([`IDLE_BUFFER_KEEP`]) it grows as [`reserve_capped`] does, so a stream that
/// trickles small messages stays small; past it, the caller is writing a batch and the buffer
/// goes straight to a whole frame, instead of regrowing (and copying) through 8, 16 and 32 KiB
/// after every flush that gave it back.
fn reserve_plain(buf: &mut Vec<u8>, additional: usize) {
    let needed = buf.len() + additional;
    if needed > buf.capacity() {
        if needed > IDLE_BUFFER_KEEP {
            buf.reserve_exact(MAX_PLAINTEXT_LEN - buf.len());
        } else {
            reserve_capped(buf, additional, IDLE_BUFFER_KEEP);
        }
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
