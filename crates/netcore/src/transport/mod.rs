//! [`Transport`]: turns a [`NetworkAddress`] into a socket, by dialing or by listening.
//!
//! A transport only looks at the base of an address (`/ip4/../tcp/..`, `/memory/..`); it
//! ignores the `/noise-ik/../handshake/..` suffix, which is for the upgrades layered on top
//! with [`TransportExt::and_then`]. [`TransportExt::boxed`] erases the stack's type, so that a
//! node can hold "some transport producing Noise streams" whether it runs over TCP or memory.
//!
//! ```text
//! TcpTransport ── and_then(noise upgrade) ──► AndThen
//!              ── and_then(handshake) ──────► AndThen
//!              ── boxed() ──────────────────► BoxedTransport
//! ```
//!
//! Inbound connections are upgraded inside each connection's [`Transport::Inbound`] future,
//! never inside the listener stream, so one slow or stalled upgrade does not hold up
//! accepting the next connection. The caller drives those futures concurrently (and puts a
//! deadline on them).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use pin_project_lite::pin_project;

use crate::address::NetworkAddress;
use crate::peer_id::PeerId;

pub mod memory;
pub mod tcp;

pub use memory::MemoryTransport;
pub use tcp::{Keepalive, TcpConfig, TcpTransport};

/// A way to open connections to, and accept connections from, [`NetworkAddress`]es.
///
/// Shaped like AptosNet's `Transport`, so that a stack of upgrades boxes into one
/// [`BoxedTransport`].
pub trait Transport {
    /// The socket this transport produces, possibly upgraded (e.g. a Noise stream).
    type Output;

    /// What can go wrong while listening, dialing or upgrading.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The pending upgrade of one accepted socket. Dropping it abandons the upgrade and
    /// closes the socket.
    type Inbound: Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// A pending dial, including its upgrades. Dropping it abandons the dial and closes any
    /// socket it opened.
    type Outbound: Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Accepted connections: each item is the connection's pending upgrade and the remote
    /// address. An `Err` item is one failed accept; the stream goes on after it.
    type Listener: Stream<Item = Result<(Self::Inbound, NetworkAddress), Self::Error>>
        + Send
        + Unpin;

    /// Starts listening on the base of `addr`. Returns the listener and the address actually
    /// bound, with port 0 replaced by the port picked (and without any Noise or handshake
    /// suffix: the caller appends its own, see
    /// [`NetworkAddress::with_noise_and_handshake`]).
    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), Self::Error>;

    /// Starts dialing `peer_id` at `addr`. An address this transport cannot use fails here;
    /// everything else (name resolution, connecting, upgrades) happens in the returned
    /// future. The upgrades see the whole `addr`, suffix included.
    fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<Self::Outbound, Self::Error>;
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionOrigin {
    /// The remote dialed us.
    Inbound,
    /// We dialed the remote.
    Outbound,
}

/// Which end of a connection we are, as an upgrade sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// We dialed `peer_id` at `addr`. The address keeps its suffix, so a Noise upgrade can take
    /// the expected key and handshake version from it.
    Dialer {
        /// Who we meant to reach.
        peer_id: PeerId,
        /// The dialed address, suffix included.
        addr: NetworkAddress,
    },
    /// The remote dialed us from `remote_addr`.
    Listener {
        /// The remote's address as the transport reports it.
        remote_addr: NetworkAddress,
    },
}

impl Endpoint {
    /// Which side opened the connection.
    pub const fn origin(&self) -> ConnectionOrigin {
        match self {
            Self::Dialer { .. } => ConnectionOrigin::Outbound,
            Self::Listener { .. } => ConnectionOrigin::Inbound,
        }
    }

    /// The dialed address, or the remote's address on an accepted connection.
    pub const fn addr(&self) -> &NetworkAddress {
        match self {
            Self::Dialer { addr, .. } => addr,
            Self::Listener { remote_addr } => remote_addr,
        }
    }

    /// The peer we dialed; `None` on an accepted connection, where only the upgrade learns who
    /// is on the other end.
    pub const fn dialed_peer_id(&self) -> Option<PeerId> {
        match self {
            Self::Dialer { peer_id, .. } => Some(*peer_id),
            Self::Listener { .. } => None,
        }
    }
}

/// Combinators for every [`Transport`].
pub trait TransportExt: Transport {
    /// Upgrades every connection with `f`, given the socket and the [`Endpoint`].
    ///
    /// On dial, `f` gets the dialed peer and address (suffix included, so a Noise upgrade can
    /// take the expected key from it); on accept, the remote address. The upgrade runs inside the
    /// connection's [`Inbound`](Transport::Inbound) or [`Outbound`](Transport::Outbound)
    /// future. The new transport's error type is `E`, which the inner errors convert into.
    fn and_then<F, Fut, O, E>(self, f: F) -> AndThen<Self, F>
    where
        Self: Sized,
        F: Fn(Self::Output, Endpoint) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send,
        E: From<Self::Error> + std::error::Error + Send + Sync + 'static,
    {
        AndThen { inner: self, f }
    }

    /// Erases this transport's type. Costs one allocation per connection future.
    fn boxed(self) -> BoxedTransport<Self::Output, Self::Error>
    where
        Self: Sized + Send + Sync + 'static,
        Self::Output: 'static,
        Self::Inbound: 'static,
        Self::Outbound: 'static,
        Self::Listener: 'static,
    {
        BoxedTransport::new(self)
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

/// A transport whose connections are upgraded by a function; see [`TransportExt::and_then`].
#[derive(Clone)]
pub struct AndThen<T, F> {
    inner: T,
    f: F,
}

pin_project! {
    /// A connection of an [`AndThen`] transport: the inner transport's connection future,
    /// then the upgrade.
    #[must_use = "futures do nothing unless polled"]
    pub struct AndThenFuture<Fut1, Fut2, F> {
        #[pin]
        state: AndThenState<Fut1, Fut2>,
        f: F,
        // Taken when the upgrade starts.
        endpoint: Option<Endpoint>,
    }
}

pin_project! {
    #[project = AndThenStateProj]
    enum AndThenState<Fut1, Fut2> {
        Connecting { #[pin] fut: Fut1 },
        Upgrading { #[pin] fut: Fut2 },
    }
}

pin_project! {
    /// The listener of an [`AndThen`] transport: the inner listener's connections, each with
    /// the upgrade attached.
    pub struct AndThenListener<S, F> {
        #[pin]
        inner: S,
        f: F,
    }
}

/// A type-erased [`Transport`] producing `O` or failing with `E`; see
/// [`TransportExt::boxed`].
pub struct BoxedTransport<O, E> {
    inner: Box<DynTransport<O, E>>,
}

impl ConnectionOrigin {
    /// `"inbound"` or `"outbound"`, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

impl fmt::Display for ConnectionOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T, F, Fut, O, E> Transport for AndThen<T, F>
where
    T: Transport,
    F: Fn(T::Output, Endpoint) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send,
    E: From<T::Error> + std::error::Error + Send + Sync + 'static,
{
    type Output = O;
    type Error = E;
    type Inbound = AndThenFuture<T::Inbound, Fut, F>;
    type Outbound = AndThenFuture<T::Outbound, Fut, F>;
    type Listener = AndThenListener<T::Listener, F>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), Self::Error> {
        let (inner, bound) = self.inner.listen_on(addr)?;
        let listener = AndThenListener {
            inner,
            f: self.f.clone(),
        };
        Ok((listener, bound))
    }

    fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<Self::Outbound, Self::Error> {
        let connecting = self.inner.dial(peer_id, addr.clone())?;
        Ok(AndThenFuture::new(
            connecting,
            self.f.clone(),
            Endpoint::Dialer { peer_id, addr },
        ))
    }
}

impl<T: fmt::Debug, F> fmt::Debug for AndThen<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AndThen")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<Fut1, Fut2, F> AndThenFuture<Fut1, Fut2, F> {
    fn new(connecting: Fut1, f: F, endpoint: Endpoint) -> Self {
        Self {
            state: AndThenState::Connecting { fut: connecting },
            f,
            endpoint: Some(endpoint),
        }
    }
}

impl<Fut1, Fut2, F, S, E1, O, E> Future for AndThenFuture<Fut1, Fut2, F>
where
    Fut1: Future<Output = Result<S, E1>>,
    Fut2: Future<Output = Result<O, E>>,
    F: Fn(S, Endpoint) -> Fut2,
    E: From<E1>,
{
    type Output = Result<O, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                AndThenStateProj::Connecting { fut } => {
                    let socket = ready!(fut.poll(cx))?;
                    // `endpoint` is Some in this state: it is taken only here, just before we
                    // leave the state for good.
                    let endpoint = this
                        .endpoint
                        .take()
                        .expect("endpoint is set until the upgrade starts");
                    let upgrading = (this.f)(socket, endpoint);
                    this.state.set(AndThenState::Upgrading { fut: upgrading });
                }
                AndThenStateProj::Upgrading { fut } => return fut.poll(cx),
            }
        }
    }
}

impl<S, F, Inb, S2, E1, Fut2, O, E> Stream for AndThenListener<S, F>
where
    S: Stream<Item = Result<(Inb, NetworkAddress), E1>>,
    Inb: Future<Output = Result<S2, E1>>,
    F: Fn(S2, Endpoint) -> Fut2 + Clone,
    Fut2: Future<Output = Result<O, E>>,
    E: From<E1>,
{
    type Item = Result<(AndThenFuture<Inb, Fut2, F>, NetworkAddress), E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let item = match ready!(this.inner.poll_next(cx)) {
            None => None,
            Some(Err(err)) => Some(Err(E::from(err))),
            Some(Ok((inbound, remote))) => {
                let upgrade = AndThenFuture::new(
                    inbound,
                    this.f.clone(),
                    Endpoint::Listener {
                        remote_addr: remote.clone(),
                    },
                );
                Some(Ok((upgrade, remote)))
            }
        };
        Poll::Ready(item)
    }
}

impl<O, E> BoxedTransport<O, E>
where
    O: 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Boxes `transport`; the same as [`TransportExt::boxed`].
    pub fn new<T>(transport: T) -> Self
    where
        T: Transport<Output = O, Error = E> + Send + Sync + 'static,
        T::Inbound: 'static,
        T::Outbound: 'static,
        T::Listener: 'static,
    {
        Self {
            inner: Box::new(Boxing(transport)),
        }
    }
}

impl<O, E> Transport for BoxedTransport<O, E>
where
    O: 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    type Output = O;
    type Error = E;
    type Inbound = BoxFuture<'static, Result<O, E>>;
    type Outbound = BoxFuture<'static, Result<O, E>>;
    type Listener =
        BoxStream<'static, Result<(BoxFuture<'static, Result<O, E>>, NetworkAddress), E>>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), Self::Error> {
        self.inner.listen_on(addr)
    }

    fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<Self::Outbound, Self::Error> {
        self.inner.dial(peer_id, addr)
    }
}

impl<O, E> fmt::Debug for BoxedTransport<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedTransport").finish_non_exhaustive()
    }
}

/// The connection future of a [`BoxedTransport`].
type BoxConnection<O, E> = BoxFuture<'static, Result<O, E>>;

/// The listener of a [`BoxedTransport`].
type BoxListener<O, E> = BoxStream<'static, Result<(BoxConnection<O, E>, NetworkAddress), E>>;

/// What a [`BoxedTransport`] holds.
type DynTransport<O, E> = dyn Transport<
        Output = O,
        Error = E,
        Inbound = BoxConnection<O, E>,
        Outbound = BoxConnection<O, E>,
        Listener = BoxListener<O, E>,
    > + Send
    + Sync;

/// Adapts any transport to the boxed associated types [`BoxedTransport`] stores.
struct Boxing<T>(T);

impl<T> Transport for Boxing<T>
where
    T: Transport,
    T::Output: 'static,
    T::Inbound: 'static,
    T::Outbound: 'static,
    T::Listener: 'static,
{
    type Output = T::Output;
    type Error = T::Error;
    type Inbound = BoxConnection<T::Output, T::Error>;
    type Outbound = BoxConnection<T::Output, T::Error>;
    type Listener = BoxListener<T::Output, T::Error>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), Self::Error> {
        let (listener, bound) = self.0.listen_on(addr)?;
        let listener = listener
            .map(|item| item.map(|(inbound, remote)| (inbound.boxed(), remote)))
            .boxed();
        Ok((listener, bound))
    }

    fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<Self::Outbound, Self::Error> {
        self.0.dial(peer_id, addr).map(FutureExt::boxed)
    }
}
