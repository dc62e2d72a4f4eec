//! [`SimTransport`]: netcore's [`Transport`] over turmoil's simulated TCP, for the host it is
//! made on. Addresses are `/ip4/<ip>/tcp/<port>`, as on real TCP, so configs, seeds and
//! admission (per-IP and per-prefix limits) work unchanged.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{BoxStream, StreamExt};
use netcore::{BoxedTransport, NetworkAddress, PeerId, Protocol, Transport, TransportExt};
use peerlane::{CustomSocket, TransportKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Dials and listens on turmoil's simulated TCP from the host whose IP it holds. Only usable
/// inside that host's software (turmoil finds the current host from the task).
#[derive(Clone, Copy, Debug)]
pub struct SimTransport {
    host_ip: IpAddr,
}

/// A simulated TCP connection.
pub struct SimSocket {
    stream: turmoil::net::TcpStream,
    remote: SocketAddr,
}

impl SimTransport {
    /// A transport for the host at `host_ip`: the IP it reports in bound addresses.
    pub const fn new(host_ip: IpAddr) -> Self {
        Self { host_ip }
    }

    /// This transport as the facade's [`TransportKind::Custom`].
    pub fn into_kind(self) -> TransportKind {
        let boxed: BoxedTransport<Box<dyn CustomSocket>, netcore::Error> = Boxed(self).boxed();
        TransportKind::Custom(Arc::new(boxed))
    }
}

impl Transport for SimTransport {
    type Output = SimSocket;
    type Error = netcore::Error;
    type Inbound = futures::future::Ready<Result<SimSocket, netcore::Error>>;
    type Outbound = BoxFuture<'static, Result<SimSocket, netcore::Error>>;
    type Listener = BoxStream<'static, Result<(Self::Inbound, NetworkAddress), netcore::Error>>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), netcore::Error> {
        let Some((_, port)) = ip_and_port(&addr) else {
            return Err(unsupported(addr));
        };
        // Turmoil binds the unspecified address only; the host's own IP is what peers dial.
        let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        // `bind` completes without waiting: it only registers the port with the simulator.
        let listener = turmoil::net::TcpListener::bind(bind)
            .now_or_never()
            .unwrap_or_else(|| Err(io::Error::other("simulated bind did not complete")))
            .map_err(|source| netcore::Error::Listen {
                addr: addr.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| netcore::Error::Listen { addr, source })?
            .port();
        let bound = address(SocketAddr::new(self.host_ip, port));
        let accepting = bound.clone();
        let listener = futures::stream::unfold(Arc::new(listener), move |listener| {
            let accepting = accepting.clone();
            async move {
                let item = match listener.accept().await {
                    Ok((stream, remote)) => Ok((
                        futures::future::ready(Ok(SimSocket { stream, remote })),
                        address(remote),
                    )),
                    Err(source) => Err(netcore::Error::Accept {
                        addr: accepting,
                        source,
                    }),
                };
                Some((item, listener))
            }
        })
        .boxed();
        Ok((listener, bound))
    }

    fn dial(
        &self,
        _peer_id: PeerId,
        addr: NetworkAddress,
    ) -> Result<Self::Outbound, netcore::Error> {
        let Some((ip, port)) = ip_and_port(&addr) else {
            return Err(unsupported(addr));
        };
        let socket_addr = SocketAddr::new(ip, port);
        Ok(async move {
            let stream = turmoil::net::TcpStream::connect(socket_addr)
                .await
                .map_err(|source| netcore::Error::Connect {
                    addr,
                    socket_addr,
                    source,
                })?;
            Ok(SimSocket {
                stream,
                remote: socket_addr,
            })
        }
        .boxed())
    }
}

/// [`SimTransport`] with its sockets boxed as the facade's [`CustomSocket`].
struct Boxed(SimTransport);

impl Transport for Boxed {
    type Output = Box<dyn CustomSocket>;
    type Error = netcore::Error;
    type Inbound = BoxFuture<'static, Result<Box<dyn CustomSocket>, netcore::Error>>;
    type Outbound = BoxFuture<'static, Result<Box<dyn CustomSocket>, netcore::Error>>;
    type Listener = BoxStream<'static, Result<(Self::Inbound, NetworkAddress), netcore::Error>>;

    fn listen_on(
        &self,
        addr: NetworkAddress,
    ) -> Result<(Self::Listener, NetworkAddress), netcore::Error> {
        let (listener, bound) = self.0.listen_on(addr)?;
        let listener = listener
            .map(|item| {
                item.map(|(inbound, remote)| {
                    let inbound = inbound.map(|socket| socket.map(boxed_socket)).boxed();
                    (inbound, remote)
                })
            })
            .boxed();
        Ok((listener, bound))
    }

    fn dial(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
    ) -> Result<Self::Outbound, netcore::Error> {
        let dial = self.0.dial(peer_id, addr)?;
        Ok(dial.map(|socket| socket.map(boxed_socket)).boxed())
    }
}

fn boxed_socket(socket: SimSocket) -> Box<dyn CustomSocket> {
    Box::new(socket)
}

/// `/ip4/<ip>/tcp/<port>` (or `/ip6/..`) of `addr`.
pub fn address(addr: SocketAddr) -> NetworkAddress {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    NetworkAddress::from_protocols(vec![ip, Protocol::Tcp(addr.port())])
        .expect("an ip and a port make a valid address")
}

/// The IP and port of an `/ip4/../tcp/..` or `/ip6/../tcp/..` base.
fn ip_and_port(addr: &NetworkAddress) -> Option<(IpAddr, u16)> {
    match addr.protocols() {
        [Protocol::Ip4(ip), Protocol::Tcp(port), ..] => Some((IpAddr::V4(*ip), *port)),
        [Protocol::Ip6(ip), Protocol::Tcp(port), ..] => Some((IpAddr::V6(*ip), *port)),
        _ => None,
    }
}

fn unsupported(addr: NetworkAddress) -> netcore::Error {
    netcore::Error::UnsupportedAddress {
        transport: "sim",
        addr,
    }
}

impl fmt::Debug for SimSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSocket")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for SimSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
