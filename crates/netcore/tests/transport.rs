//! Transport combinators over TCP and memory: `and_then` upgrades on both sides, typed
//! upgrade failures, accepting while an upgrade stalls, and boxing.

use std::fmt;
use std::io;
use std::time::Duration;

use futures::StreamExt;
use netcore::{
    BoxedTransport, ConnectionOrigin, Endpoint, Error, MemorySocket, MemoryTransport,
    NetworkAddress, PeerId, PublicKey, TcpTransport, Transport, TransportExt,
};
use test_support::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Generous bound on anything a test waits for; the clock is paused where it is used, so a
/// hang fails fast instead of blocking the suite.
const WITHIN: Duration = Duration::from_secs(10);

/// The error type of the upgraded transports below.
#[derive(Debug, thiserror::Error)]
enum UpgradeError {
    #[error("transport failed")]
    Transport(#[from] Error),
    #[error("upgrade i/o failed")]
    Io(#[from] io::Error),
    #[error("{origin} upgrade rejected")]
    Rejected { origin: ConnectionOrigin },
}

/// What the test upgrade produces: the socket plus what each side learned.
struct Tagged<S> {
    socket: S,
    /// Our side's origin, as the transport told the upgrade.
    origin: ConnectionOrigin,
    /// The other side's origin, as it sent it.
    peer_origin: ConnectionOrigin,
    /// The address the upgrade was given.
    addr: NetworkAddress,
    dialed_peer_id: Option<PeerId>,
}

impl<S> fmt::Debug for Tagged<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tagged")
            .field("origin", &self.origin)
            .field("peer_origin", &self.peer_origin)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The peer every test here dials.
const DIALED_PEER: PeerId = PeerId::new([7; 32]);

/// A one-byte "handshake": each side sends its origin and reads the other's.
async fn exchange_origins<S>(mut socket: S, endpoint: Endpoint) -> Result<Tagged<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let origin = endpoint.origin();
    socket.write_u8(tag(origin)).await?;
    socket.flush().await?;
    let peer_origin = match socket.read_u8().await? {
        0 => ConnectionOrigin::Inbound,
        _ => ConnectionOrigin::Outbound,
    };
    Ok(Tagged {
        socket,
        origin,
        peer_origin,
        addr: endpoint.addr().clone(),
        dialed_peer_id: endpoint.dialed_peer_id(),
    })
}

fn tag(origin: ConnectionOrigin) -> u8 {
    match origin {
        ConnectionOrigin::Inbound => 0,
        ConnectionOrigin::Outbound => 1,
    }
}

/// `addr` with a Noise and handshake suffix, as a dialer would have it from discovery.
fn advertised(addr: NetworkAddress) -> NetworkAddress {
    addr.with_noise_and_handshake(PublicKey::from([9; 32]), 0)
        .unwrap()
}

/// Listens on `listen`, dials the advertised bound address, and returns the dialed and
/// accepted connections plus the remote address the listener reported.
async fn connect<T: Transport>(
    transport: &T,
    listen: &str,
) -> (
    Result<T::Output, T::Error>,
    Result<T::Output, T::Error>,
    NetworkAddress,
    NetworkAddress,
) {
    let (mut listener, bound) = transport.listen_on(listen.parse().unwrap()).unwrap();
    let dialed_addr = advertised(bound);
    let dialing = transport.dial(DIALED_PEER, dialed_addr.clone()).unwrap();
    let accepting = async {
        let (upgrade, remote) = listener.next().await.unwrap().unwrap();
        (upgrade.await, remote)
    };
    let (dialed, (accepted, remote)) = tokio::join!(dialing, accepting);
    (dialed, accepted, dialed_addr, remote)
}

/// Runs the origin-exchanging upgrade over `transport` and checks what both sides saw.
async fn assert_upgrade_runs_on_both_sides<T>(transport: T, listen: &str)
where
    T: Transport,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    UpgradeError: From<T::Error>,
{
    let transport = transport.and_then(exchange_origins::<T::Output>);
    let (dialed, accepted, dialed_addr, remote) = connect(&transport, listen).await;
    let mut dialed = dialed.unwrap();
    let mut accepted = accepted.unwrap();

    assert_eq!(dialed.origin, ConnectionOrigin::Outbound);
    assert_eq!(dialed.peer_origin, ConnectionOrigin::Inbound);
    // The dial-side upgrade sees the whole dialed address, suffix included.
    assert_eq!(dialed.addr, dialed_addr);
    assert!(dialed.addr.noise_public_key().is_some());
    // ...and the peer it meant to reach; the accepting side does not know it yet.
    assert_eq!(dialed.dialed_peer_id, Some(DIALED_PEER));
    assert_eq!(accepted.dialed_peer_id, None);

    assert_eq!(accepted.origin, ConnectionOrigin::Inbound);
    assert_eq!(accepted.peer_origin, ConnectionOrigin::Outbound);
    assert_eq!(accepted.addr, remote);

    // The upgraded sockets still carry bytes.
    dialed.socket.write_all(b"after").await.unwrap();
    let mut buf = [0; 5];
    accepted.socket.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after");
}

/// Over memory, `and_then` runs the upgrade on the dialing side (Outbound, with the dialed
/// address) and on the accepting side (Inbound, with the remote address).
#[tokio::test]
async fn and_then_upgrade_runs_on_both_sides_over_memory() {
    assert_upgrade_runs_on_both_sides(MemoryTransport::new(), "/memory/0").await;
}

/// The same over TCP.
#[tokio::test]
async fn and_then_upgrade_runs_on_both_sides_over_tcp() {
    assert_upgrade_runs_on_both_sides(TcpTransport::default(), "/ip4/127.0.0.1/tcp/0").await;
}

/// An upgrade's own error comes out typed on the side that failed, the other side sees its
/// upgrade's I/O fail, and the inner transport's errors arrive converted into the upgrade's
/// error type.
#[tokio::test]
async fn a_failing_upgrade_surfaces_its_typed_error() {
    let transport = MemoryTransport::new().and_then(|socket, endpoint: Endpoint| async move {
        let origin = endpoint.origin();
        match origin {
            ConnectionOrigin::Inbound => {
                drop(socket);
                Err(UpgradeError::Rejected { origin })
            }
            ConnectionOrigin::Outbound => exchange_origins::<MemorySocket>(socket, endpoint)
                .await
                .map(|tagged| tagged.socket),
        }
    });
    let (dialed, accepted, _, _) = connect(&transport, "/memory/0").await;
    assert!(matches!(
        accepted,
        Err(UpgradeError::Rejected {
            origin: ConnectionOrigin::Inbound
        })
    ));
    // The listener closed the socket without a word: the dialer's read hits EOF.
    match dialed {
        Err(UpgradeError::Io(err)) => assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("expected an EOF during the upgrade, got {other:?}"),
    }

    // Inner transport errors, at dial time and inside the dial future.
    assert!(matches!(
        transport.dial(PeerId::ZERO, "/ip4/127.0.0.1/tcp/1".parse().unwrap()),
        Err(UpgradeError::Transport(Error::UnsupportedAddress {
            transport: "memory",
            ..
        }))
    ));
    let refused = transport
        .dial(PeerId::ZERO, NetworkAddress::memory(1006))
        .unwrap()
        .await;
    assert!(matches!(
        refused,
        Err(UpgradeError::Transport(Error::MemoryConnectionRefused {
            port: 1006
        }))
    ));
}

/// Upgrades run in each connection's own future, not in the listener stream: while one
/// connection's upgrade waits forever for its peer, the listener still yields the next
/// connection, whose upgrade completes.
#[tokio::test(start_paused = true)]
async fn a_stalled_inbound_upgrade_does_not_block_accepting() {
    let transport = MemoryTransport::new().and_then(exchange_origins::<MemorySocket>);
    let (mut listener, bound) = transport.listen_on(NetworkAddress::memory(0)).unwrap();
    let port = match bound.protocols() {
        [netcore::Protocol::Memory(port)] => *port,
        other => panic!("unexpected bound address {other:?}"),
    };

    // A raw connection that never sends its origin byte: its upgrade cannot finish.
    let _silent = MemorySocket::connect(port).await.unwrap();
    let (stalled_upgrade, _) = within("the stalled connection", listener.next())
        .await
        .unwrap()
        .unwrap();

    let dialing = transport.dial(PeerId::ZERO, bound).unwrap();
    let accepting = async {
        let (next_upgrade, _) = listener.next().await.unwrap().unwrap();
        next_upgrade.await
    };
    let (dialed, accepted) = within("the dial and accept", async {
        tokio::join!(dialing, accepting)
    })
    .await;
    assert_eq!(dialed.unwrap().peer_origin, ConnectionOrigin::Inbound);
    assert_eq!(accepted.unwrap().peer_origin, ConnectionOrigin::Outbound);

    // The first upgrade is still waiting.
    assert!(tokio::time::timeout(WITHIN, stalled_upgrade).await.is_err());
}

/// A socket the boxed transports below produce, whatever carries it.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Socket for S {}

/// Upgrades any socket and erases its type.
async fn exchange_and_erase<S>(
    socket: S,
    endpoint: Endpoint,
) -> Result<Tagged<Box<dyn Socket>>, UpgradeError>
where
    S: Socket + 'static,
{
    let tagged = exchange_origins(socket, endpoint).await?;
    Ok(Tagged {
        socket: Box::new(tagged.socket) as Box<dyn Socket>,
        origin: tagged.origin,
        peer_origin: tagged.peer_origin,
        addr: tagged.addr,
        dialed_peer_id: tagged.dialed_peer_id,
    })
}

/// The one type both stacks box into.
type ErasedTransport = BoxedTransport<Tagged<Box<dyn Socket>>, UpgradeError>;

/// Boxing erases the transport stack: a TCP and a memory stack with the same upgrade have
/// one type, and both dial, listen and upgrade through it.
#[tokio::test]
async fn boxed_transports_over_tcp_and_memory_share_one_type() {
    let transports: Vec<(ErasedTransport, &str)> = vec![
        (
            TcpTransport::default().and_then(exchange_and_erase).boxed(),
            "/ip4/127.0.0.1/tcp/0",
        ),
        (
            MemoryTransport::new().and_then(exchange_and_erase).boxed(),
            "/memory/0",
        ),
    ];
    for (transport, listen) in &transports {
        let (dialed, accepted, _, _) = connect(transport, listen).await;
        let mut dialed = dialed.unwrap();
        let mut accepted = accepted.unwrap();
        assert_eq!(dialed.peer_origin, ConnectionOrigin::Inbound);
        assert_eq!(accepted.peer_origin, ConnectionOrigin::Outbound);
        accepted.socket.write_all(b"boxed").await.unwrap();
        let mut buf = [0; 5];
        dialed.socket.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"boxed", "over {listen}");
    }

    // Errors pass through the box unchanged.
    let (memory, _) = &transports[1];
    assert!(matches!(
        memory.dial(PeerId::ZERO, "/dns/localhost/tcp/1".parse().unwrap()),
        Err(UpgradeError::Transport(Error::UnsupportedAddress { .. }))
    ));
}

/// The memory transport binds port 0 to a free port, reports `/memory/0` as every remote
/// address, ignores the suffix when dialing and refuses non-memory addresses.
#[tokio::test]
async fn memory_transport_listens_on_port_zero_and_refuses_other_addresses() {
    let transport = MemoryTransport::new();
    let (dialed, accepted, dialed_addr, remote) = connect(&transport, "/memory/0").await;
    let (mut dialed, mut accepted) = (dialed.unwrap(), accepted.unwrap());
    assert!(dialed_addr.is_memory());
    assert_ne!(dialed_addr.base(), NetworkAddress::memory(0));
    assert_eq!(remote, NetworkAddress::memory(0));
    dialed.write_all(b"hi").await.unwrap();
    assert_eq!(
        accepted.read_u16().await.unwrap(),
        u16::from_be_bytes(*b"hi")
    );

    let tcp: NetworkAddress = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    assert!(matches!(
        transport.listen_on(tcp.clone()),
        Err(Error::UnsupportedAddress { transport: "memory", addr }) if addr == tcp
    ));
}

/// Origins print as the lowercase labels used in logs and metrics.
#[test]
fn connection_origin_labels() {
    assert_eq!(ConnectionOrigin::Inbound.as_str(), "inbound");
    assert_eq!(ConnectionOrigin::Outbound.to_string(), "outbound");
}
