//! [`TcpTransport`]: [`Transport`] over TCP, for `/ip4`, `/ip6`, `/dns`, `/dns4` and `/dns6`
//! addresses followed by `/tcp/<port>`.

use std::fmt;
use std::future::{self, Future, Ready};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::Transport;
use crate::address::{DnsName, NetworkAddress, Protocol};
use crate::error::Error;
use crate::peer_id::PeerId;

/// Socket options and timeouts of a [`TcpTransport`].
///
/// Built in place with `&mut self -> &mut Self` setters:
///
/// ```
/// # use std::time::Duration;
/// # use netcore::{TcpConfig, TcpTransport};
/// let mut config = TcpConfig::default();
/// config.connect_timeout(Duration::from_secs(5)).send_buffer_size(Some(1 << 20));
/// let transport = TcpTransport::new(config);
/// ```
#[derive(Clone, Debug)]
pub struct TcpConfig {
    nodelay: bool,
    connect_timeout: Duration,
    send_buffer_size: Option<u32>,
    recv_buffer_size: Option<u32>,
    keepalive: Option<Keepalive>,
}

/// TCP keepalive settings (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`):
/// the kernel probes a connection idle for `idle`, every `interval`, and resets it after
/// `retries` unanswered probes. A peer that vanished without FIN or RST then frees its
/// connection within `idle + interval × retries` (60 s with the defaults) even when no
/// health checker pings it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe. Default 30 s.
    pub idle: Duration,
    /// Time between probes. Default 10 s.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset. Default 3.
    pub retries: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(DEFAULT_KEEPALIVE_IDLE_SECS),
            interval: Duration::from_secs(DEFAULT_KEEPALIVE_INTERVAL_SECS),
            retries: DEFAULT_KEEPALIVE_RETRIES,
        }
    }
}

impl Keepalive {
    /// Sets the options on a connected socket.
    fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        let params = socket2::TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval)
            .with_retries(self.retries);
        socket2::SockRef::from(stream).set_tcp_keepalive(&params)
    }
}

/// TCP as a [`Transport`]. Produces [`TcpStream`]s with [`TcpConfig`]'s options applied to
/// both dialed and accepted sockets.
///
/// Addresses: `/ip4/<ip>/tcp/<port>`, `/ip6/<ip>/tcp/<port>`, and `/dns/<name>/tcp/<port>`
/// (any address family), `/dns4/..` (IPv4 results only), `/dns6/..` (IPv6 only). A
/// `/noise-ik/../handshake/..` suffix is ignored. Anything else, such as `/memory/..`, fails
/// with [`Error::UnsupportedAddress`].
#[derive(Clone, Debug, Default)]
pub struct TcpTransport {
    config: TcpConfig,
}

/// A pending [`TcpTransport`] dial: resolves the name if there is one, then tries each
/// resolved address in turn, all within the connect timeout. Dropping it abandons the dial
/// and closes the socket being connected.
#[must_use = "futures do nothing unless polled"]
pub struct Dial {
    fut: BoxFuture<'static, Result<TcpStream, Error>>,
}

/// A [`TcpTransport`] listener: a stream of accepted sockets and their remote addresses.
///
/// It never ends. An `Err` item reports one failed accept and the stream goes on; after a
/// resource error such as running out of file descriptors the next accept is likely to fail
/// too, so a consumer should pause briefly before polling again.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    config: TcpConfig,
    local_addr: NetworkAddress,
}

impl TcpConfig {
    /// The defaults; the same as [`TcpConfig::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to set `TCP_NODELAY` (disable Nagle's algorithm) on every socket.
    ///
    /// Default: `true`. peerlane batches its own writes (the peer writer flushes when its
    /// queues run empty), so Nagle's algorithm would only add latency to RPCs.
    pub fn nodelay(&mut self, nodelay: bool) -> &mut Self {
        self.nodelay = nodelay;
        self
    }

    /// How long a dial may take to connect, name resolution and every resolved address
    /// included. Past it the dial fails with [`Error::ConnectTimeout`].
    ///
    /// Default: 10 s. AptosNet allows 30 s for the whole connection set-up (connect, Noise,
    /// handshake); this leaves the upgrades at least 20 s.
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.connect_timeout = timeout;
        self
    }

    /// `SO_SNDBUF` for every socket, in bytes, or `None` to keep the OS default (and its
    /// autotuning). The kernel may round or double the value.
    ///
    /// Default: `None`. Memory: up to this many bytes of unsent data per connection.
    pub fn send_buffer_size(&mut self, bytes: Option<u32>) -> &mut Self {
        self.send_buffer_size = bytes;
        self
    }

    /// `SO_RCVBUF` for every socket, in bytes, or `None` to keep the OS default (and its
    /// autotuning). Set on the listening socket, so that accepted sockets inherit it before
    /// their handshake and the TCP window scale can take it into account.
    ///
    /// Default: `None`. Memory: up to this many bytes of unread data per connection.
    pub fn recv_buffer_size(&mut self, bytes: Option<u32>) -> &mut Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// TCP keepalive on every dialed and accepted socket, or `None` to leave it off.
    ///
    /// Default: on, with [`Keepalive::default`] (idle 30 s, probes every 10 s, 3 of them).
    pub fn keepalive(&mut self, keepalive: Option<Keepalive>) -> &mut Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets the options of a connected socket, dialed or accepted.
    fn apply_stream_options(&self, stream: &TcpStream) -> Result<(), Error> {
        stream
            .set_nodelay(self.nodelay)
            .map_err(|source| socket_option("TCP_NODELAY", source))?;
        if let Some(keepalive) = &self.keepalive {
            keepalive
                .apply(stream)
                .map_err(|source| socket_option("SO_KEEPALIVE", source))?;
        }
        Ok(())
    }

    /// Applies the buffer sizes to a socket before it connects or listens.
    fn apply_buffer_sizes(&self, socket: &TcpSocket) -> io::Result<()> {
        if let Some(bytes) = self.send_buffer_size {
            socket.set_send_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.recv_buffer_size {
            socket.set_recv_buffer_size(bytes)?;
        }
        Ok(())
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            nodelay: DEFAULT_NODELAY,
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            send_buffer_size: None,
            recv_buffer_size: None,
            keepalive: Some(Keepalive::default()),
        }
    }
}

impl TcpTransport {
    /// A TCP transport with the given options.
    pub fn new(config: TcpConfig) -> Self {
        Self { config }
    }

    /// Creates, configures and binds a listening socket.
    fn bind(&self, addr: &NetworkAddress, socket_addr: SocketAddr) -> Result<TcpListener, Error> {
        let listen_error = |source| Error::Listen {
            addr: addr.clone(),
            source,
        };
        let socket = new_socket(socket_addr).map_err(listen_error)?;
        // As std's and tokio's `TcpListener::bind` do on Unix: a restarted node can rebind
        // its port while connections of the old process linger in TIME_WAIT.
        #[cfg(unix)]
        socket
            .set_reuseaddr(true)
            .map_err(|source| socket_option("SO_REUSEADDR", source))?;
        self.config
            .apply_buffer_sizes(&socket)
            .map_err(|source| socket_option("SO_SNDBUF/SO_RCVBUF", source))?;
        socket.bind(socket_addr).map_err(listen_error)?;
        socket.listen(LISTEN_BACKLOG).map_err(listen_error)
    }
}

impl Transport for TcpTransport {
    type Output = TcpStream;
    type Error = Error;
    type Inbound = Ready<Result<TcpStream, Error>>;
    type Outbound = Dial;
    type Listener = Listener;

    /// Binds the base of `addr`. A DNS name is resolved here, synchronously (it is done once,
    /// at start-up), and the first address of the right family is bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with IO enabled.
    fn listen_on(&self, addr: NetworkAddress) -> Result<(Listener, NetworkAddress), Error> {
        let socket_addr = match Target::of(&addr) {
            Some(Target::Ip(socket_addr)) => socket_addr,
            Some(Target::Dns { name, port, family }) => (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|source| Error::Resolve {
                    addr: addr.clone(),
                    source,
                })?
                .find(|socket_addr| family.admits(socket_addr.ip()))
                .ok_or_else(|| Error::NoResolvedAddress { addr: addr.clone() })?,
            None => return Err(unsupported(addr)),
        };
        let listener = self.bind(&addr, socket_addr)?;
        let bound = listener.local_addr().map_err(|source| Error::Listen {
            addr: addr.clone(),
            source,
        })?;
        let bound = NetworkAddress::from(bound);
        tracing::debug!(%addr, %bound, "tcp listening");
        let listener = Listener {
            listener,
            config: self.config.clone(),
            local_addr: bound.clone(),
        };
        Ok((listener, bound))
    }

    fn dial(&self, _peer_id: PeerId, addr: NetworkAddress) -> Result<Dial, Error> {
        let Some(target) = Target::of(&addr).map(Target::into_owned) else {
            return Err(unsupported(addr));
        };
        let config = self.config.clone();
        let fut = async move {
            let timeout = config.connect_timeout;
            match tokio::time::timeout(timeout, connect(&config, &addr, target)).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Error::ConnectTimeout { addr, timeout }),
            }
        };
        Ok(Dial { fut: Box::pin(fut) })
    }
}

impl Future for Dial {
    type Output = Result<TcpStream, Error>;

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
    /// The bound address.
    pub fn local_addr(&self) -> &NetworkAddress {
        &self.local_addr
    }
}

impl Stream for Listener {
    type Item = Result<(Ready<Result<TcpStream, Error>>, NetworkAddress), Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match ready!(self.listener.poll_accept(cx)) {
            Ok((stream, remote)) => {
                // Configured in the Inbound future's value, so that a failure belongs to this
                // connection and not to the listener.
                let stream = self.config.apply_stream_options(&stream).map(|()| stream);
                Ok((future::ready(stream), NetworkAddress::from(remote)))
            }
            Err(source) => Err(Error::Accept {
                addr: self.local_addr.clone(),
                source,
            }),
        };
        Poll::Ready(Some(item))
    }
}

/// What the base of an address asks a TCP transport to reach.
enum Target<Name> {
    Ip(SocketAddr),
    Dns {
        name: Name,
        port: u16,
        family: Family,
    },
}

/// Which resolved addresses a DNS protocol admits.
#[derive(Clone, Copy)]
enum Family {
    Any,
    V4,
    V6,
}

impl<'a> Target<&'a DnsName> {
    /// The target of `addr`'s base, or `None` if it is not a TCP address.
    fn of(addr: &'a NetworkAddress) -> Option<Self> {
        use Protocol::*;

        // The address grammar allows only /noise-ik and /handshake after /tcp, so matching
        // the first two protocols matches the whole base.
        let target = match addr.protocols() {
            [Ip4(ip), Tcp(port), ..] => Self::Ip(SocketAddr::new(IpAddr::V4(*ip), *port)),
            [Ip6(ip), Tcp(port), ..] => Self::Ip(SocketAddr::new(IpAddr::V6(*ip), *port)),
            [Dns(name), Tcp(port), ..] => Self::dns(name, *port, Family::Any),
            [Dns4(name), Tcp(port), ..] => Self::dns(name, *port, Family::V4),
            [Dns6(name), Tcp(port), ..] => Self::dns(name, *port, Family::V6),
            _ => return None,
        };
        Some(target)
    }

    fn dns(name: &'a DnsName, port: u16, family: Family) -> Self {
        Self::Dns { name, port, family }
    }

    fn into_owned(self) -> Target<DnsName> {
        match self {
            Self::Ip(socket_addr) => Target::Ip(socket_addr),
            Self::Dns { name, port, family } => Target::Dns {
                name: name.clone(),
                port,
                family,
            },
        }
    }
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::V4 => ip.is_ipv4(),
            Self::V6 => ip.is_ipv6(),
        }
    }
}

/// Resolves `target` and connects to the first of its addresses that accepts. The caller
/// bounds the whole of it with the connect timeout.
async fn connect(
    config: &TcpConfig,
    addr: &NetworkAddress,
    target: Target<DnsName>,
) -> Result<TcpStream, Error> {
    let candidates: Vec<SocketAddr> = match target {
        Target::Ip(socket_addr) => vec![socket_addr],
        Target::Dns { name, port, family } => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|source| Error::Resolve {
                addr: addr.clone(),
                source,
            })?
            .filter(|socket_addr| family.admits(socket_addr.ip()))
            .collect(),
    };
    // Replaced by each failed attempt, so we report the last one; stays as is if the name
    // resolved to nothing usable.
    let mut error = Error::NoResolvedAddress { addr: addr.clone() };
    for socket_addr in candidates {
        match connect_one(config, socket_addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) => {
                tracing::debug!(%addr, %socket_addr, error = %source, "tcp connect attempt failed");
                error = Error::Connect {
                    addr: addr.clone(),
                    socket_addr,
                    source,
                };
            }
        }
    }
    Err(error)
}

/// Connects one socket with the configured options.
async fn connect_one(config: &TcpConfig, socket_addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = new_socket(socket_addr)?;
    config.apply_buffer_sizes(&socket)?;
    let stream = socket.connect(socket_addr).await?;
    stream.set_nodelay(config.nodelay)?;
    if let Some(keepalive) = &config.keepalive {
        keepalive.apply(&stream)?;
    }
    Ok(stream)
}

fn new_socket(socket_addr: SocketAddr) -> io::Result<TcpSocket> {
    match socket_addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}

fn unsupported(addr: NetworkAddress) -> Error {
    Error::UnsupportedAddress {
        transport: "tcp",
        addr,
    }
}

fn socket_option(option: &'static str, source: io::Error) -> Error {
    Error::SocketOption { option, source }
}

/// See [`TcpConfig::nodelay`].
const DEFAULT_NODELAY: bool = true;

/// See [`Keepalive::idle`].
const DEFAULT_KEEPALIVE_IDLE_SECS: u64 = 30;

/// See [`Keepalive::interval`].
const DEFAULT_KEEPALIVE_INTERVAL_SECS: u64 = 10;

/// See [`Keepalive::retries`].
const DEFAULT_KEEPALIVE_RETRIES: u32 = 3;

/// See [`TcpConfig::connect_timeout`].
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Pending-connection queue of a listening socket, as tokio's `TcpListener::bind` uses (the
/// kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;
