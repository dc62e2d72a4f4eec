//! The AptosNet connection upgrade: a bare transport (TCP or memory) `and_then` Noise IK, the
//! handshake message exchange and negotiation, giving a [`peer::Connection`] with its
//! [`ConnectionMetadata`].
//!
//! ```text
//! TcpTransport | MemoryTransport | Custom (Socket::Tcp | Socket::Memory | Socket::Custom)
//!   └─ and_then(upgrade)                 CountingSocket: counts the bytes on the wire
//!        ├─ dialer:   noise IK initiator (key and handshake version from the dialed address)
//!        │  listener: noise IK responder (auth mode decides who may connect)
//!        ├─ wire::exchange_handshake + HandshakeMsg::negotiate
//!        └─ Connection { metadata, socket: NoiseStream<CountingSocket> }
//! ```
//!
//! The peer splits the connection with [`NoiseStream::into_split`]: [`CountingSocket`] comes
//! apart into counting halves (the same [`Counting`] wrapper), over TCP's owned halves (no lock between the reader and the
//! writer task); memory and custom sockets split with `tokio::io::split`.
//!
//! The whole set-up, connecting included, runs under one deadline
//! ([`NetworkConfig::setup_timeout`](crate::NetworkConfig::setup_timeout), 30 s): see
//! [`AptosNetTransport::dial`] and [`AptosNetTransport::listen_on`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use netcore::{
    BoxedTransport, Endpoint, MemorySocket, MemoryTransport, NetworkAddress, PeerId, TcpConfig,
    TcpTransport, Transport, TransportExt,
};
use noise::{NoiseStream, NoiseUpgrader, PeerRole, SplitSocket, TrustedPeers};
use peer::{Connection, ConnectionId, ConnectionMetadata};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use wire::HandshakeMsg;

use crate::error::Error;

/// The one handshake version AptosNet defines; a dialed address must name it.
pub const HANDSHAKE_VERSION: u8 = 0;

/// Which transport a network runs over.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TransportKind {
    /// TCP, with these socket options.
    Tcp(TcpConfig),
    /// The in-process memory socket switchboard (`/memory/<port>` addresses), for tests.
    Memory,
    /// Any other bare transport, e.g. a simulated network (the `peerlane-sim` crate). The
    /// AptosNet upgrade and the set-up deadline go on top of it as on TCP.
    Custom(CustomTransport),
}

/// A connected socket of a [`TransportKind::Custom`] transport.
pub trait CustomSocket: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug + 'static {}

impl<T> CustomSocket for T where T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug + 'static
{}

/// The bare transport of [`TransportKind::Custom`]: boxed sockets, netcore errors. Shared, as a
/// `TransportKind` is cloned for every network built with it.
pub type CustomTransport = Arc<BoxedTransport<Box<dyn CustomSocket>, netcore::Error>>;

/// Lends a shared [`CustomTransport`] to [`TransportExt::and_then`], which takes its transport
/// by value.
struct SharedTransport(CustomTransport);

/// A connected socket of either transport: what a [`NoiseStream`] runs over.
#[derive(Debug)]
pub(crate) enum Socket {
    /// A TCP socket.
    Tcp(TcpStream),
    /// An in-memory socket.
    Memory(MemorySocket),
    /// A socket of a custom transport.
    Custom(Box<dyn CustomSocket>),
}

/// A connection after set-up: Noise over a TCP or memory socket that counts its bytes.
pub(crate) type NetworkConnection = Connection<NoiseStream<CountingSocket>>;

/// The bytes one connection moved through its socket, below Noise: what the wire carried,
/// Noise handshake, framing and encryption overhead included. The socket counts;
/// [`PeersAndMetadata`](crate::PeersAndMetadata) reads.
///
/// Relaxed atomics: each counter is read on its own, for display, so no ordering between them
/// (or with the data) is needed, and an add costs the hot path no more than an uncontended
/// increment.
///
/// It also keeps when bytes last arrived, as milliseconds since the socket was counted from
/// (one relaxed store per read), which is how the peer manager finds an idle peer to evict.
#[derive(Debug)]
pub(crate) struct ByteCounters {
    received: AtomicU64,
    sent: AtomicU64,
    created: Instant,
    last_received_ms: AtomicU64,
}

impl Default for ByteCounters {
    fn default() -> Self {
        Self {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            created: Instant::now(),
            last_received_ms: AtomicU64::new(0),
        }
    }
}

/// A socket, or one half of it, that counts the bytes read from and written to it in its
/// [`ByteCounters`]; the two halves of a split socket count into the same ones.
#[derive(Debug)]
pub(crate) struct Counting<S> {
    inner: S,
    counters: Arc<ByteCounters>,
}

/// The socket a connection is upgraded on.
pub(crate) type CountingSocket = Counting<Socket>;

/// A bare transport with the AptosNet upgrade and the set-up deadline on every connection.
///
/// Cheap to share behind an `Arc`; dials and accepted connections run independently.
pub(crate) struct AptosNetTransport {
    inner: BoxedTransport<NetworkConnection, Error>,
    setup_timeout: Duration,
}

/// Accepted connections: each item is the pending set-up (under the deadline) and the remote
/// address. An `Err` item is one failed accept; the stream goes on after it.
pub(crate) type Incoming = BoxStream<
    'static,
    Result<
        (
            BoxFuture<'static, Result<NetworkConnection, Error>>,
            NetworkAddress,
        ),
        Error,
    >,
>;

/// What the upgrade needs to know about us.
pub(crate) struct UpgradeContext {
    /// Noise identity, auth mode, anti-replay state and counters.
    pub(crate) noise: NoiseUpgrader,
    /// What we offer in the handshake message.
    pub(crate) handshake: HandshakeMsg,
    /// The trusted set, for the role of peers we dial.
    pub(crate) trusted: TrustedPeers,
}

/// The next connection id. One counter for the whole process, so that ids are unique across
/// all the networks of a node (and across the nodes of a test).
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(0);

impl AptosNetTransport {
    /// The transport `kind` with the upgrade `context`, under `setup_timeout`.
    pub(crate) fn new(
        kind: &TransportKind,
        context: Arc<UpgradeContext>,
        setup_timeout: Duration,
    ) -> Self {
        let inner = match kind {
            TransportKind::Tcp(config) => TcpTransport::new(config.clone())
                .and_then(move |socket, endpoint| {
                    upgrade(
                        context.clone(),
                        CountingSocket::new(Socket::Tcp(socket)),
                        endpoint,
                    )
                })
                .boxed(),
            TransportKind::Memory => MemoryTransport::new()
                .and_then(move |socket, endpoint| {
                    upgrade(
                        context.clone(),
                        CountingSocket::new(Socket::Memory(socket)),
                        endpoint,
                    )
                })
                .boxed(),
            TransportKind::Custom(transport) => SharedTransport(Arc::clone(transport))
                .and_then(move |socket, endpoint| {
                    upgrade(
                        context.clone(),
                        CountingSocket::new(Socket::Custom(socket)),
                        endpoint,
                    )
                })
                .boxed(),
        };
        Self {
            inner,
            setup_timeout,
        }
    }

    /// Listens on the base of `addr`; returns the accepted connections (each one's set-up
    /// still to be driven, under the deadline) and the bound address.
    pub(crate) fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Incoming, NetworkAddress), Error> {
        let (listener, bound) = self
            .inner
            .listen_on(addr.clone())
            .map_err(|err| match err {
                Error::Transport(source) => Error::Listen { addr, source },
                other => other,
            })?;
        let timeout = self.setup_timeout;
        let incoming = listener
            .map(move |item| {
                item.map(|(upgrade, remote)| (with_deadline(upgrade, timeout).boxed(), remote))
            })
            .boxed();
        Ok((incoming, bound))
    }

    /// Dials `peer_id` at `addr` and sets the connection up, all under the deadline.
    ///
    /// Fails at once, before connecting, when `addr` names a handshake version other than
    /// [`HANDSHAKE_VERSION`] or has no Noise key.
    ///
    /// Not cancel-safe: dropping the future closes the socket mid-set-up.
    pub(crate) fn dial(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
    ) -> Result<impl Future<Output = Result<NetworkConnection, Error>> + Send + 'static, Error>
    {
        check_dial_address(&addr)?;
        let dial = self.inner.dial(peer_id, addr)?;
        Ok(with_deadline(dial, self.setup_timeout))
    }
}

impl Transport for SharedTransport {
    type Output = Box<dyn CustomSocket>;
    type Error = netcore::Error;
    type Inbound = BoxFuture<'static, Result<Self::Output, Self::Error>>;
    type Outbound = BoxFuture<'static, Result<Self::Output, Self::Error>>;
    type Listener = BoxStream<'static, Result<(Self::Inbound, NetworkAddress), Self::Error>>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), Self::Error> {
        self.0.listen_on(addr)
    }

    fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<Self::Outbound, Self::Error> {
        self.0.dial(peer_id, addr)
    }
}

/// Checks that we can dial `addr`: it names handshake version 0 and carries a Noise key.
pub(crate) fn check_dial_address(addr: &NetworkAddress) -> Result<(), Error> {
    let version = addr.handshake_version();
    if version != Some(HANDSHAKE_VERSION) {
        return Err(Error::UnsupportedHandshakeVersion {
            addr: addr.clone(),
            version,
        });
    }
    if addr.noise_public_key().is_none() {
        return Err(Error::MissingNoiseKey { addr: addr.clone() });
    }
    Ok(())
}

/// `fut` under the set-up deadline.
async fn with_deadline<F>(fut: F, timeout: Duration) -> Result<NetworkConnection, Error>
where
    F: Future<Output = Result<NetworkConnection, Error>>,
{
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_elapsed| Error::SetupTimeout { timeout })?
}

/// The AptosNet upgrade of one socket: Noise IK, then the handshake message and negotiation.
///
/// Not cancel-safe (it owns the socket); the caller puts the deadline on it.
async fn upgrade(
    context: Arc<UpgradeContext>,
    socket: CountingSocket,
    endpoint: Endpoint,
) -> Result<NetworkConnection, Error> {
    let origin = endpoint.origin();
    let (mut stream, remote_addr, role) = match endpoint {
        Endpoint::Dialer { peer_id, addr } => {
            // Checked before dialing too; checked again so that the upgrade stands on its own.
            check_dial_address(&addr)?;
            let key = addr
                .noise_public_key()
                .ok_or_else(|| Error::MissingNoiseKey { addr: addr.clone() })?;
            let stream = context
                .noise
                .upgrade_outbound(socket, peer_id, key, noise::now_millis())
                .await
                .map_err(Error::Noise)?;
            // The role of a peer we dial comes from the trusted set, as for one that dials us.
            let role = context
                .trusted
                .snapshot()
                .get(&peer_id)
                .map_or(PeerRole::Unknown, |trusted| trusted.role);
            (stream, addr, role)
        }
        Endpoint::Listener { remote_addr } => {
            let (stream, remote) = context
                .noise
                .upgrade_inbound(socket)
                .await
                .map_err(Error::Noise)?;
            (stream, remote_addr, remote.role)
        }
    };
    let theirs = wire::exchange_handshake(&mut stream, &context.handshake)
        .await
        .map_err(Error::Handshake)?;
    let (messaging_protocol, application_protocols) = context
        .handshake
        .negotiate(&theirs)
        .map_err(Error::Handshake)?;
    // Relaxed: only uniqueness matters, which the atomic increment gives.
    let connection_id = ConnectionId(NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed));
    let metadata = ConnectionMetadata {
        remote_peer_id: stream.remote_peer_id(),
        connection_id,
        remote_addr,
        origin,
        messaging_protocol,
        application_protocols,
        role,
    };
    tracing::debug!(
        peer = %metadata.remote_peer_id,
        conn_id = connection_id.0,
        %origin,
        role = role.as_str(),
        "connection set up"
    );
    Ok(Connection {
        metadata,
        socket: stream,
    })
}

impl UpgradeContext {
    /// A context for `noise` offering `handshake`.
    pub(crate) fn new(
        noise: NoiseUpgrader,
        handshake: HandshakeMsg,
        trusted: TrustedPeers,
    ) -> Self {
        Self {
            noise,
            handshake,
            trusted,
        }
    }
}

impl ByteCounters {
    /// Bytes read from the socket so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes written to the socket so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// When bytes last arrived (when counting began, if none has).
    pub(crate) fn last_received(&self) -> Instant {
        self.created + Duration::from_millis(self.last_received_ms.load(Ordering::Relaxed))
    }

    fn add_received(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
        let elapsed = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_received_ms.store(elapsed, Ordering::Relaxed);
    }

    fn add_sent(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl CountingSocket {
    /// `socket`, counting from zero.
    pub(crate) fn new(socket: Socket) -> Self {
        Self {
            inner: socket,
            counters: Arc::default(),
        }
    }

    /// Its counters, to read while the connection runs.
    pub(crate) fn counters(&self) -> Arc<ByteCounters> {
        Arc::clone(&self.counters)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.counters
                .add_received(buf.filled().len().saturating_sub(before));
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            this.counters.add_sent(written);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = poll {
            this.counters.add_sent(written);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(socket) => Pin::new(socket).poll_read(cx, buf),
            Self::Memory(socket) => Pin::new(socket).poll_read(cx, buf),
            Self::Custom(socket) => Pin::new(socket).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(socket) => Pin::new(socket).poll_write(cx, buf),
            Self::Memory(socket) => Pin::new(socket).poll_write(cx, buf),
            Self::Custom(socket) => Pin::new(socket).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(socket) => Pin::new(socket).poll_flush(cx),
            Self::Memory(socket) => Pin::new(socket).poll_flush(cx),
            Self::Custom(socket) => Pin::new(socket).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(socket) => Pin::new(socket).poll_shutdown(cx),
            Self::Memory(socket) => Pin::new(socket).poll_shutdown(cx),
            Self::Custom(socket) => Pin::new(socket).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Self::Memory(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Self::Custom(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(socket) => socket.is_write_vectored(),
            Self::Memory(socket) => socket.is_write_vectored(),
            Self::Custom(socket) => socket.is_write_vectored(),
        }
    }
}

/// The read half of a [`Socket`]: TCP's owned half (no lock); the others share a lock with
/// their write half (`tokio::io::split`), which only tests and simulations pay.
#[derive(Debug)]
pub(crate) enum SocketReadHalf {
    Tcp(OwnedReadHalf),
    Memory(ReadHalf<MemorySocket>),
    Custom(ReadHalf<Box<dyn CustomSocket>>),
}

/// The write half of a [`Socket`] (see [`SocketReadHalf`]).
#[derive(Debug)]
pub(crate) enum SocketWriteHalf {
    Tcp(OwnedWriteHalf),
    Memory(WriteHalf<MemorySocket>),
    Custom(WriteHalf<Box<dyn CustomSocket>>),
}

/// What lets the peer's reader and writer tasks drive a connection without a lock between
/// them on TCP ([`NoiseStream::into_split`]).
impl SplitSocket for CountingSocket {
    type ReadHalf = Counting<SocketReadHalf>;
    type WriteHalf = Counting<SocketWriteHalf>;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        let (read, write) = match self.inner {
            Socket::Tcp(socket) => {
                let (read, write) = socket.into_split();
                (SocketReadHalf::Tcp(read), SocketWriteHalf::Tcp(write))
            }
            Socket::Memory(socket) => {
                let (read, write) = tokio::io::split(socket);
                (SocketReadHalf::Memory(read), SocketWriteHalf::Memory(write))
            }
            Socket::Custom(socket) => {
                let (read, write) = tokio::io::split(socket);
                (SocketReadHalf::Custom(read), SocketWriteHalf::Custom(write))
            }
        };
        (
            Counting {
                inner: read,
                counters: Arc::clone(&self.counters),
            },
            Counting {
                inner: write,
                counters: self.counters,
            },
        )
    }
}

impl AsyncRead for SocketReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_read(cx, buf),
            Self::Memory(half) => Pin::new(half).poll_read(cx, buf),
            Self::Custom(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SocketWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_write(cx, buf),
            Self::Memory(half) => Pin::new(half).poll_write(cx, buf),
            Self::Custom(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_flush(cx),
            Self::Memory(half) => Pin::new(half).poll_flush(cx),
            Self::Custom(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_shutdown(cx),
            Self::Memory(half) => Pin::new(half).poll_shutdown(cx),
            Self::Custom(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}
