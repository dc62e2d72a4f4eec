//! memsocket: pairs behave like TCP streams (bounded buffers, EOF, broken pipe), and the
//! switchboard behaves like a port space (bind, port 0, refusal, release on drop).
//!
//! The switchboard is shared by every test in this binary, which run in parallel: tests that
//! need a fixed port use their own one below 49152, where port 0 never lands first.

use std::io;
use std::pin::pin;

use futures::{StreamExt, poll};
use netcore::{Error, MemoryListener, MemorySocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes written on either end come out of the other, in order.
#[tokio::test]
async fn pair_carries_bytes_both_ways() {
    let (mut a, mut b) = MemorySocket::new_pair();
    a.write_all(b"hello").await.unwrap();
    b.write_all(b"world!").await.unwrap();

    let mut buf = [0; 5];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let mut buf = [0; 6];
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"world!");
}

/// Dropping one end lets the other read what was buffered, then EOF; writing to the dropped
/// end fails with BrokenPipe.
#[tokio::test]
async fn dropping_one_end_gives_eof_after_buffered_bytes() {
    let (mut a, mut b) = MemorySocket::new_pair();
    a.write_all(b"last words").await.unwrap();
    drop(a);

    let mut received = Vec::new();
    b.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, b"last words");
    assert_eq!(b.read(&mut [0; 8]).await.unwrap(), 0, "EOF stays EOF");

    let err = b.write_all(b"anyone?").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

/// Shutdown is a half-close: the peer reads the buffered bytes then EOF, can still write
/// back, and our own later writes fail with BrokenPipe.
#[tokio::test]
async fn shutdown_gives_eof_and_keeps_the_other_direction_open() {
    let (mut a, mut b) = MemorySocket::new_pair();
    a.write_all(b"request").await.unwrap();
    a.shutdown().await.unwrap();

    let mut received = Vec::new();
    b.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, b"request");

    b.write_all(b"response").await.unwrap();
    drop(b);
    let mut received = Vec::new();
    a.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, b"response");

    let err = a.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

/// With the peer's buffer full, a write is Pending (not an error, not a growing buffer) and
/// completes once the peer reads.
#[tokio::test]
async fn a_full_buffer_makes_the_writer_wait_until_the_peer_reads() {
    let (mut a, mut b) = MemorySocket::new_pair_with_capacity(8);
    a.write_all(&[1; 8]).await.unwrap();

    let mut write = pin!(a.write_all(&[2; 4]));
    assert!(poll!(write.as_mut()).is_pending(), "buffer is full");
    assert!(poll!(write.as_mut()).is_pending(), "still full");

    let mut buf = [0; 4];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, [1; 4]);
    // The read made room for exactly the 4 pending bytes.
    assert!(poll!(write.as_mut()).is_ready());

    let mut buf = [0; 8];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, [1, 1, 1, 1, 2, 2, 2, 2]);
}

/// A connection made through the switchboard carries bytes like a pair.
#[tokio::test]
async fn connect_reaches_the_listener_on_its_port() {
    let mut listener = MemoryListener::bind(0).unwrap();
    let mut client = MemorySocket::connect(listener.port()).await.unwrap();
    let mut server = listener.accept().await;

    client.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

/// The incoming stream yields connections in the order they connected.
#[tokio::test]
async fn incoming_yields_connections_in_order() {
    let listener = MemoryListener::bind(0).unwrap();
    let port = listener.port();
    let mut incoming = listener.incoming();
    assert_eq!(incoming.port(), port);

    for tag in 0..3u8 {
        let mut client = MemorySocket::connect(port).await.unwrap();
        client.write_all(&[tag]).await.unwrap();
    }
    for tag in 0..3u8 {
        let mut server = incoming.next().await.unwrap();
        assert_eq!(server.read_u8().await.unwrap(), tag);
    }
}

/// Port 0 picks a free port, a different one each time.
#[tokio::test]
async fn port_zero_picks_distinct_free_ports() {
    let listeners: Vec<_> = (0..16).map(|_| MemoryListener::bind(0).unwrap()).collect();
    let mut ports: Vec<u16> = listeners.iter().map(MemoryListener::port).collect();
    assert!(ports.iter().all(|&port| port != 0));
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), listeners.len());
}

/// Binding a port that a listener holds fails with a typed error naming the port.
#[tokio::test]
async fn binding_a_taken_port_fails() {
    let listener = MemoryListener::bind(0).unwrap();
    let port = listener.port();
    assert!(matches!(
        MemoryListener::bind(port),
        Err(Error::MemoryPortInUse { port: p }) if p == port
    ));

    let _fixed = MemoryListener::bind(1001).unwrap();
    assert!(matches!(
        MemoryListener::bind(1001),
        Err(Error::MemoryPortInUse { port: 1001 })
    ));
}

/// Connecting where nothing listens is refused with a typed error naming the port.
#[tokio::test]
async fn connecting_to_an_unbound_port_is_refused() {
    let err = MemorySocket::connect(1002).await.unwrap_err();
    assert!(matches!(err, Error::MemoryConnectionRefused { port: 1002 }));
    assert_eq!(
        io::Error::from(err).kind(),
        io::ErrorKind::ConnectionRefused
    );
    // Port 0 can never be bound, so it always refuses.
    assert!(matches!(
        MemorySocket::connect(0).await,
        Err(Error::MemoryConnectionRefused { port: 0 })
    ));
}

/// Dropping a listener frees its port for a new bind, refuses new connections, and gives
/// EOF to connections it never accepted.
#[tokio::test]
async fn dropping_the_listener_frees_its_port() {
    let listener = MemoryListener::bind(1003).unwrap();
    let mut unaccepted = MemorySocket::connect(1003).await.unwrap();
    drop(listener);

    assert_eq!(unaccepted.read(&mut [0; 1]).await.unwrap(), 0);
    assert!(matches!(
        MemorySocket::connect(1003).await,
        Err(Error::MemoryConnectionRefused { port: 1003 })
    ));
    let _again = MemoryListener::bind(1003).unwrap();
}

/// The accept backlog holds `BACKLOG` connections; the next connect waits until the listener
/// accepts one, then completes.
#[tokio::test]
async fn connect_waits_while_the_backlog_is_full() {
    let mut listener = MemoryListener::bind(1004).unwrap();
    let mut queued = Vec::new();
    for _ in 0..MemoryListener::BACKLOG {
        queued.push(MemorySocket::connect(1004).await.unwrap());
    }

    let mut connect = pin!(MemorySocket::connect(1004));
    assert!(poll!(connect.as_mut()).is_pending(), "backlog is full");

    let _first = listener.accept().await;
    let _last = connect.await.unwrap();
}

/// A connect waiting on a full backlog is refused when the listener goes away.
#[tokio::test]
async fn connect_waiting_on_a_full_backlog_is_refused_when_the_listener_drops() {
    let listener = MemoryListener::bind(1005).unwrap();
    let mut queued = Vec::new();
    for _ in 0..MemoryListener::BACKLOG {
        queued.push(MemorySocket::connect(1005).await.unwrap());
    }
    let mut connect = pin!(MemorySocket::connect(1005));
    assert!(poll!(connect.as_mut()).is_pending());

    drop(listener);
    assert!(matches!(
        connect.await,
        Err(Error::MemoryConnectionRefused { port: 1005 })
    ));
}
