//! [`MemoryTransport`]: [`Transport`] over the in-process [`memsocket`] switchboard, for
//! tests. Addresses are `/memory/<port>`.

use std::fmt;
use std::future::{self, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::future::BoxFuture;

use super::Transport;
use crate::address::{NetworkAddress, Protocol};
use crate::error::Error;
use crate::memsocket::{self, MemoryListener, MemorySocket};
use crate::peer_id::PeerId;

/// In-memory [`Transport`]: [`listen_on`](Transport::listen_on) binds a [`MemoryListener`],
/// [`dial`](Transport::dial) connects a [`MemorySocket`].
///
/// Addresses: `/memory/<port>`, with port 0 on listen picking a free port. A
/// `/noise-ik/../handshake/..` suffix is ignored; anything else fails with
/// [`Error::UnsupportedAddress`]. Memory sockets have no port on the dialing side, so the
/// remote address of every accepted connection is `/memory/0`.
#[derive(Clone, Copy, Debug)]
pub struct MemoryTransport {
    capacity_bytes: usize,
}

/// A pending [`MemoryTransport`] dial; see [`MemorySocket::connect`]. Dropping it abandons
/// the dial before anything is queued.
#[must_use = "futures do nothing unless polled"]
pub struct Dial {
    fut: BoxFuture<'static, Result<MemorySocket, Error>>,
}

/// A [`MemoryTransport`] listener: a never-ending stream of accepted sockets.
#[derive(Debug)]
pub struct Listener {
    incoming: memsocket::Incoming,
}

impl MemoryTransport {
    /// A memory transport whose connections buffer
    /// [`MemorySocket::DEFAULT_CAPACITY_BYTES`] per direction.
    pub fn new() -> Self {
        Self::with_capacity(MemorySocket::DEFAULT_CAPACITY_BYTES)
    }

    /// A memory transport whose dialed connections buffer `capacity_bytes` per direction
    /// (the dialer picks the capacity of both directions, as it creates the pair).
    ///
    /// # Panics
    ///
    /// If `capacity_bytes` is 0.
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        assert!(
            capacity_bytes > 0,
            "a memory socket needs a non-zero buffer"
        );
        Self { capacity_bytes }
    }
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for MemoryTransport {
    type Output = MemorySocket;
    type Error = Error;
    type Inbound = Ready<Result<MemorySocket, Error>>;
    type Outbound = Dial;
    type Listener = Listener;

    fn listen_on(&self, addr: NetworkAddress) -> Result<(Listener, NetworkAddress), Error> {
        let Some(port) = memory_port(&addr) else {
            return Err(unsupported(addr));
        };
        let listener = MemoryListener::bind(port)?;
        let bound = NetworkAddress::memory(listener.port());
        let listener = Listener {
            incoming: listener.incoming(),
        };
        Ok((listener, bound))
    }

    fn dial(&self, _peer_id: PeerId, addr: NetworkAddress) -> Result<Dial, Error> {
        let Some(port) = memory_port(&addr) else {
            return Err(unsupported(addr));
        };
        let fut = MemorySocket::connect_with_capacity(port, self.capacity_bytes);
        Ok(Dial { fut: Box::pin(fut) })
    }
}

impl Future for Dial {
    type Output = Result<MemorySocket, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl fmt::Debug for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dial").finish_non_exhaustive()
    }
}

impl Listener {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.incoming.port()
    }
}

impl Stream for Listener {
    type Item = Result<(Ready<Result<MemorySocket, Error>>, NetworkAddress), Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let socket = ready!(Pin::new(&mut self.incoming).poll_next(cx));
        Poll::Ready(socket.map(|socket| Ok((future::ready(Ok(socket)), NetworkAddress::memory(0)))))
    }
}

/// The port of a `/memory/<port>` base.
fn memory_port(addr: &NetworkAddress) -> Option<u16> {
    match addr.protocols() {
        [Protocol::Memory(port), ..] => Some(*port),
        _ => None,
    }
}

fn unsupported(addr: NetworkAddress) -> Error {
    Error::UnsupportedAddress {
        transport: "memory",
        addr,
    }
}
