//! In-memory sockets for tests: [`MemorySocket`] pairs, and a process-wide switchboard where
//! [`MemoryListener::bind`] takes a port and [`MemorySocket::connect`] dials it.
//!
//! A [`MemorySocket`] behaves like a TCP stream as far as peerlane can tell:
//!
//! - **Bounded buffers.** Each direction buffers at most `capacity` bytes
//!   ([`MemorySocket::DEFAULT_CAPACITY_BYTES`] unless chosen). A write into a full buffer is
//!   `Pending` until the peer reads, so backpressure bugs show up in tests as they would over
//!   TCP, instead of as unbounded memory growth.
//! - **EOF.** After the peer shuts down its write side or is dropped, reads return the bytes
//!   still buffered, then `Ok(0)`.
//! - **Broken pipe.** Writing after the peer was dropped, or after our own shutdown, fails with
//!   [`io::ErrorKind::BrokenPipe`]. A shutdown is a half-close: the peer can still write to
//!   us.
//!
//! Each socket wraps one end of a [`tokio::io::DuplexStream`]. Tokio's pipe already gives us
//! exactly these semantics, with correct waker handling and cooperative scheduling, and is
//! tested upstream; hand-written buffers would have to reimplement all of it.
//!
//! The switchboard maps a port to its listener's accept backlog, a bounded channel of
//! [`MemoryListener::BACKLOG`] sockets (unlike AptosNet's memsocket, whose channels are
//! unbounded). When the backlog is full, [`MemorySocket::connect`] waits for the listener to
//! accept, like a TCP client whose SYN is dropped by a full accept queue.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), netcore::Error> {
//! use netcore::{MemoryListener, MemorySocket};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let mut listener = MemoryListener::bind(0)?;
//! let mut client = MemorySocket::connect(listener.port()).await?;
//! let mut server = listener.accept().await;
//! client.write_all(b"ping").await?;
//! let mut buf = [0; 4];
//! server.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use crate::error::Error;

/// One end of an in-memory, bidirectional byte stream. See the [module docs](self).
#[derive(Debug)]
pub struct MemorySocket {
    inner: DuplexStream,
}

/// A port bound on the in-memory switchboard. Dropping it frees the port and drops the
/// connections it has not accepted yet (their dialers see EOF).
#[derive(Debug)]
pub struct MemoryListener {
    port: u16,
    /// The receiving end of the accept backlog; the switchboard holds the sender.
    incoming_rx: mpsc::Receiver<MemorySocket>,
}

/// The stream of connections a [`MemoryListener`] accepts, from [`MemoryListener::incoming`].
/// It never ends; dropping it drops the listener.
#[derive(Debug)]
pub struct Incoming {
    listener: MemoryListener,
}

impl MemorySocket {
    /// Per-direction buffer of [`new_pair`](Self::new_pair) and [`connect`](Self::connect):
    /// 64 KiB, in the range of a default TCP socket buffer and about one maximum-size Noise
    /// frame (65,537 bytes with its length prefix).
    pub const DEFAULT_CAPACITY_BYTES: usize = 64 * 1024;

    /// Two connected sockets, each buffering up to
    /// [`DEFAULT_CAPACITY_BYTES`](Self::DEFAULT_CAPACITY_BYTES) of unread data.
    pub fn new_pair() -> (Self, Self) {
        Self::new_pair_with_capacity(Self::DEFAULT_CAPACITY_BYTES)
    }

    /// Two connected sockets, each buffering up to `capacity_bytes` of unread data.
    ///
    /// # Panics
    ///
    /// If `capacity_bytes` is 0.
    pub fn new_pair_with_capacity(capacity_bytes: usize) -> (Self, Self) {
        let (a, b) = tokio::io::duplex(capacity_bytes);
        (Self { inner: a }, Self { inner: b })
    }

    /// Connects to the [`MemoryListener`] bound on `port`, with the default buffer capacity.
    ///
    /// Completes once the connection is in the listener's backlog, before it is accepted (as
    /// a TCP connect does); waits while the backlog is full. Fails with
    /// [`Error::MemoryConnectionRefused`] if nothing is bound on `port` or the listener is
    /// dropped while we wait.
    ///
    /// Cancel-safe: if cancelled, no connection was queued.
    pub async fn connect(port: u16) -> Result<Self, Error> {
        Self::connect_with_capacity(port, Self::DEFAULT_CAPACITY_BYTES).await
    }

    /// [`connect`](Self::connect) with a per-direction buffer of `capacity_bytes`.
    ///
    /// Cancel-safe, as `connect`.
    ///
    /// # Panics
    ///
    /// If `capacity_bytes` is 0.
    pub async fn connect_with_capacity(port: u16, capacity_bytes: usize) -> Result<Self, Error> {
        let refused = Error::MemoryConnectionRefused { port };
        // Clone the sender and release the lock before waiting for backlog room.
        let Some(incoming_tx) = switchboard().listeners.get(&port).cloned() else {
            return Err(refused);
        };
        let (ours, theirs) = Self::new_pair_with_capacity(capacity_bytes);
        // Fails only if the listener was dropped since we looked it up.
        incoming_tx.send(theirs).await.map_err(|_| refused)?;
        Ok(ours)
    }
}

impl AsyncRead for MemorySocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemorySocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl MemoryListener {
    /// Capacity of each listener's accept backlog, in connections: Linux's classic
    /// `SOMAXCONN`. When it is full, [`MemorySocket::connect`] waits.
    pub const BACKLOG: usize = 128;

    /// Binds `port` on the switchboard. Port 0 picks a free port, see [`port`](Self::port).
    ///
    /// Fails with [`Error::MemoryPortInUse`] if another listener holds `port`, and with
    /// [`Error::MemoryNoFreePort`] if `port` is 0 and every port is taken.
    ///
    /// Ports picked for port 0 come from 49152 (the start of IANA's dynamic range) upward,
    /// wrapping around, and the cursor moves past each port picked, so that tests which bind
    /// fixed low ports do not collide with them and a just-freed port is not reused at once.
    pub fn bind(port: u16) -> Result<Self, Error> {
        let mut board = switchboard();
        let port = match port {
            0 => board.free_port().ok_or(Error::MemoryNoFreePort)?,
            port => port,
        };
        let (incoming_tx, incoming_rx) = mpsc::channel(Self::BACKLOG);
        match board.listeners.entry(port) {
            Entry::Occupied(_) => return Err(Error::MemoryPortInUse { port }),
            Entry::Vacant(slot) => slot.insert(incoming_tx),
        };
        Ok(Self { port, incoming_rx })
    }

    /// The bound port (the one picked, if bound with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next connection.
    ///
    /// Cancel-safe: a cancelled accept loses no connection.
    pub async fn accept(&mut self) -> MemorySocket {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection; the waker is kept if there is none yet.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<MemorySocket> {
        self.incoming_rx.poll_recv(cx).map(|socket| {
            // The switchboard keeps a sender for as long as this listener lives (our Drop
            // removes it), so the channel cannot be closed here.
            socket.expect("the switchboard holds the backlog sender while the listener lives")
        })
    }

    /// Turns the listener into a stream of accepted connections.
    pub fn incoming(self) -> Incoming {
        Incoming { listener: self }
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        switchboard().listeners.remove(&self.port);
    }
}

impl Incoming {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.port
    }
}

impl Stream for Incoming {
    type Item = MemorySocket;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener.poll_accept(cx).map(Some)
    }
}

/// Listeners by port, and where the search for a free port starts.
struct Switchboard {
    listeners: HashMap<u16, mpsc::Sender<MemorySocket>>,
    next_ephemeral: u16,
}

impl Switchboard {
    /// The first unbound port at or after the cursor, skipping 0; moves the cursor past it.
    fn free_port(&mut self) -> Option<u16> {
        // Ports 1..=65535 in a ring, starting at the cursor. The modulo keeps every value in
        // 1..=65535, so the cast cannot truncate.
        let offset = u32::from(self.next_ephemeral.max(1)) - 1;
        let port = (0..u32::from(u16::MAX))
            .map(|i| ((offset + i) % u32::from(u16::MAX) + 1) as u16)
            .find(|port| !self.listeners.contains_key(port))?;
        self.next_ephemeral = port.checked_add(1).unwrap_or(1);
        Some(port)
    }
}

/// Locks the process-wide switchboard.
fn switchboard() -> MutexGuard<'static, Switchboard> {
    static SWITCHBOARD: LazyLock<Mutex<Switchboard>> = LazyLock::new(|| {
        Mutex::new(Switchboard {
            listeners: HashMap::new(),
            next_ephemeral: FIRST_EPHEMERAL_PORT,
        })
    });
    // Every critical section is a single map operation, so a panic elsewhere while the lock
    // was held cannot have left the map inconsistent: recover from poisoning.
    SWITCHBOARD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Start of IANA's dynamic port range (RFC 6335).
const FIRST_EPHEMERAL_PORT: u16 = 49152;
