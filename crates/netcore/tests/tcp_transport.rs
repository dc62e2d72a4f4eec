//! TcpTransport over loopback: listening on port 0, dialing IPs and DNS names, socket options,
//! the connect timeout and unsupported addresses.

use std::io;
use std::time::Duration;

use futures::StreamExt;
use netcore::{Error, NetworkAddress, PeerId, PublicKey, TcpConfig, TcpTransport, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Listens on `listen`, dials `dial(bound)`, and returns (dialed, accepted, remote address
/// the listener saw).
async fn connect_pair(
    transport: &TcpTransport,
    listen: &str,
    dial: impl FnOnce(&NetworkAddress) -> NetworkAddress,
) -> Result<(TcpStream, TcpStream, NetworkAddress), Error> {
    let (mut listener, bound) = transport.listen_on(listen.parse().unwrap())?;
    let dialing = transport.dial(PeerId::ZERO, dial(&bound))?;
    let (dialed, accepted) = tokio::join!(dialing, listener.next());
    let (upgrade, remote) = accepted.expect("listener never ends")?;
    Ok((dialed?, upgrade.await?, remote))
}

/// Checks that bytes flow both ways.
async fn assert_round_trip(a: &mut TcpStream, b: &mut TcpStream) {
    a.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    b.write_all(b"pong").await.unwrap();
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

/// Listening on `/ip4/127.0.0.1/tcp/0` returns the bound port; dialing it (with a Noise and
/// handshake suffix, which the transport ignores) connects, and the listener reports the
/// dialer's address.
#[tokio::test]
async fn dial_and_listen_over_ip4_loopback_with_port_zero() {
    let transport = TcpTransport::default();
    let (mut listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let port = match bound.to_string().strip_prefix("/ip4/127.0.0.1/tcp/") {
        Some(port) => port.parse::<u16>().unwrap(),
        None => panic!("unexpected bound address {bound}"),
    };
    assert_ne!(port, 0);

    let advertised = bound
        .clone()
        .with_noise_and_handshake(PublicKey::from([7; 32]), 0)
        .unwrap();
    let dialing = transport.dial(PeerId::ZERO, advertised).unwrap();
    let (dialed, accepted) = tokio::join!(dialing, listener.next());
    let mut dialed = dialed.unwrap();
    let (upgrade, remote) = accepted.unwrap().unwrap();
    let mut accepted = upgrade.await.unwrap();

    assert_eq!(remote, NetworkAddress::from(dialed.local_addr().unwrap()));
    assert_eq!(dialed.peer_addr().unwrap().port(), port);
    assert_round_trip(&mut dialed, &mut accepted).await;
}

/// The same over `/ip6/::1`, where the machine has IPv6 loopback. Without it the test says
/// so and returns.
#[tokio::test]
async fn dial_and_listen_over_ip6_loopback_with_port_zero() {
    let transport = TcpTransport::default();
    let result = connect_pair(&transport, "/ip6/::1/tcp/0", Clone::clone).await;
    let (mut dialed, mut accepted, remote) = match result {
        Err(Error::Listen { source, .. })
            if matches!(
                source.kind(),
                io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
            ) =>
        {
            eprintln!("skipping: no IPv6 loopback on this machine ({source})");
            return;
        }
        other => other.unwrap(),
    };
    assert!(remote.to_string().starts_with("/ip6/::1/tcp/"), "{remote}");
    assert_round_trip(&mut dialed, &mut accepted).await;
}

/// `/dns/localhost` and `/dns4/localhost` resolve inside the dial and connect to an IPv4
/// listener (if localhost also resolves to ::1 first, that attempt is refused and the next
/// address is tried).
#[tokio::test]
async fn dial_by_dns_name_resolves_and_connects() {
    let transport = TcpTransport::default();
    for dns in ["dns", "dns4"] {
        let (mut dialed, mut accepted, _) =
            connect_pair(&transport, "/ip4/127.0.0.1/tcp/0", |bound| {
                let port = bound.to_string().rsplit('/').next().unwrap().to_owned();
                format!("/{dns}/localhost/tcp/{port}").parse().unwrap()
            })
            .await
            .unwrap();
        assert_round_trip(&mut dialed, &mut accepted).await;
    }
}

/// `/dns6` only admits IPv6 results: dialing an IPv4-only listener through it fails, either
/// because localhost has no IPv6 address or because nothing listens on ::1.
#[tokio::test]
async fn dns6_ignores_ipv4_results() {
    let transport = TcpTransport::default();
    let (_listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let port = bound.to_string().rsplit('/').next().unwrap().to_owned();
    let addr: NetworkAddress = format!("/dns6/localhost/tcp/{port}").parse().unwrap();
    match transport.dial(PeerId::ZERO, addr.clone()).unwrap().await {
        Err(Error::NoResolvedAddress { addr: a }) => assert_eq!(a, addr),
        Err(Error::Connect { socket_addr, .. }) => assert!(socket_addr.is_ipv6()),
        other => panic!("dns6 reached an IPv4 listener: {other:?}"),
    }
}

/// `TCP_NODELAY` is on for dialed and accepted sockets by default, and off for both when the
/// config says so.
#[tokio::test]
async fn nodelay_is_set_on_both_sides() {
    let (dialed, accepted, _) = connect_pair(
        &TcpTransport::default(),
        "/ip4/127.0.0.1/tcp/0",
        Clone::clone,
    )
    .await
    .unwrap();
    assert!(dialed.nodelay().unwrap());
    assert!(accepted.nodelay().unwrap());

    let mut config = TcpConfig::default();
    config.nodelay(false);
    let (dialed, accepted, _) = connect_pair(
        &TcpTransport::new(config),
        "/ip4/127.0.0.1/tcp/0",
        Clone::clone,
    )
    .await
    .unwrap();
    assert!(!dialed.nodelay().unwrap());
    assert!(!accepted.nodelay().unwrap());
}

/// Configured SO_SNDBUF/SO_RCVBUF sizes reach dialed and accepted sockets (the kernel may
/// round them up, never down).
#[tokio::test]
async fn configured_buffer_sizes_are_applied_to_both_sides() {
    const SIZE_BYTES: u32 = 256 * 1024;
    let mut config = TcpConfig::default();
    config
        .send_buffer_size(Some(SIZE_BYTES))
        .recv_buffer_size(Some(SIZE_BYTES));
    let (dialed, accepted, _) = connect_pair(
        &TcpTransport::new(config),
        "/ip4/127.0.0.1/tcp/0",
        Clone::clone,
    )
    .await
    .unwrap();
    for stream in [dialed, accepted] {
        let socket = TcpSocket::from_std_stream(stream.into_std().unwrap());
        assert!(socket.send_buffer_size().unwrap() >= SIZE_BYTES);
        assert!(socket.recv_buffer_size().unwrap() >= SIZE_BYTES);
    }
}

/// A dial that cannot connect within the connect timeout fails with `ConnectTimeout`,
/// carrying the address and the timeout.
///
/// Deterministic without a black-hole address: the clock is paused, so a zero timeout is
/// already due when the dial first polls it, while the connect itself cannot complete on
/// that first poll (tokio learns of completion only from a later IO driver turn). The
/// listener exists, so any other outcome would be a successful connect.
#[tokio::test(start_paused = true)]
async fn connect_timeout_is_a_typed_error() {
    let mut config = TcpConfig::default();
    config.connect_timeout(Duration::ZERO);
    let transport = TcpTransport::new(config);
    let (_listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();

    let err = transport
        .dial(PeerId::ZERO, bound.clone())
        .unwrap()
        .await
        .unwrap_err();
    match &err {
        Error::ConnectTimeout { addr, timeout } => {
            assert_eq!(addr, &bound);
            assert_eq!(*timeout, Duration::ZERO);
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::TimedOut);
}

/// A refused connection (nothing listening) is a typed error naming the socket address, with
/// the OS error as its source.
#[tokio::test]
async fn refused_connection_is_a_typed_error() {
    let transport = TcpTransport::default();
    // A socket bound to port 0 but not listening: connects to it are refused, and the port
    // stays ours for the whole test, so no other test can start listening on it meanwhile.
    let reserved = TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let bound = NetworkAddress::from(reserved.local_addr().unwrap());

    match transport.dial(PeerId::ZERO, bound.clone()).unwrap().await {
        Err(Error::Connect {
            addr,
            socket_addr,
            source,
        }) => {
            assert_eq!(addr, bound);
            assert_eq!(NetworkAddress::from(socket_addr), bound);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connect, got {other:?}"),
    }
}

/// `/memory` addresses, and bases without `/tcp`, are refused by TCP with a typed error,
/// before any IO.
#[tokio::test]
async fn unsupported_addresses_fail_typed() {
    let transport = TcpTransport::default();
    for text in ["/memory/1", "/ip4/127.0.0.1"] {
        let addr: NetworkAddress = text.parse().unwrap();
        assert!(matches!(
            transport.dial(PeerId::ZERO, addr.clone()),
            Err(Error::UnsupportedAddress { transport: "tcp", addr: a }) if a == addr
        ));
        assert!(matches!(
            transport.listen_on(addr.clone()),
            Err(Error::UnsupportedAddress { transport: "tcp", addr: a }) if a == addr
        ));
    }
}

/// Binding a port that is taken fails with a typed error carrying the OS error.
#[tokio::test]
async fn listening_on_a_taken_port_fails_typed() {
    let transport = TcpTransport::default();
    let (_listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    match transport.listen_on(bound.clone()) {
        Err(Error::Listen { addr, source }) => {
            assert_eq!(addr, bound);
            assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
}

/// A dial to a listener that never answers (its accept queue is full, so the kernel drops
/// our SYN) fails with `ConnectTimeout` once the connect timeout passes.
///
/// Linux only: it relies on Linux dropping SYNs to a listener whose accept queue is full
/// (`listen(0)` queues one connection). The clock is paused, so tokio jumps to the deadline
/// as soon as nothing else can happen: no real waiting.
#[cfg(target_os = "linux")]
#[tokio::test(start_paused = true)]
async fn a_dial_to_a_listener_that_never_answers_times_out() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let bound = NetworkAddress::from(listener.local_addr().unwrap());
    // Fills the accept queue; never accepted.
    let _queued = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();

    let mut config = TcpConfig::default();
    config.connect_timeout(TIMEOUT);
    let started = tokio::time::Instant::now();
    let result = TcpTransport::new(config)
        .dial(PeerId::ZERO, bound.clone())
        .unwrap()
        .await;
    assert!(
        matches!(&result, Err(Error::ConnectTimeout { addr, timeout: TIMEOUT }) if addr == &bound),
        "{result:?}"
    );
    assert!(started.elapsed() >= TIMEOUT);
}

/// Keepalive is on by default, with its idle time, interval and probe count, on the dialed
/// and the accepted socket alike; `keepalive(None)` leaves it off on both.
#[tokio::test]
async fn keepalive_is_set_on_dialed_and_accepted_sockets() {
    let mut config = TcpConfig::default();
    let keepalive = netcore::Keepalive {
        idle: Duration::from_secs(31),
        interval: Duration::from_secs(11),
        retries: 4,
    };
    config.keepalive(Some(keepalive));
    let transport = TcpTransport::new(config);
    let (dialed, accepted, _) = connect_pair(&transport, "/ip4/127.0.0.1/tcp/0", Clone::clone)
        .await
        .unwrap();
    for stream in [&dialed, &accepted] {
        let socket = socket2::SockRef::from(stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), keepalive.idle);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), keepalive.interval);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), keepalive.retries);
    }

    let (dialed, accepted, _) = connect_pair(
        &TcpTransport::default(),
        "/ip4/127.0.0.1/tcp/0",
        Clone::clone,
    )
    .await
    .unwrap();
    for stream in [&dialed, &accepted] {
        let socket = socket2::SockRef::from(stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(30)
        );
    }

    let mut config = TcpConfig::default();
    config.keepalive(None);
    let (dialed, accepted, _) = connect_pair(
        &TcpTransport::new(config),
        "/ip4/127.0.0.1/tcp/0",
        Clone::clone,
    )
    .await
    .unwrap();
    for stream in [&dialed, &accepted] {
        assert!(!socket2::SockRef::from(stream).keepalive().unwrap());
    }
}
