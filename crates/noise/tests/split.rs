//! `NoiseStream::into_split`: the read and write halves driven by separate tasks, over TCP and
//! over in-memory pipes. Both directions at once, close and shutdown, errors on the half that
//! owns them, the idle buffer release per half, and state carried over from the whole stream.

mod common;

use common::{RawSession, client_node, pattern, server_node, session_pair, stream_pair};
use noise::{Error, MAX_FRAME_LEN, NoiseStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A connected pair of `NoiseStream`s over loopback TCP (port 0, address read back).
async fn tcp_pair() -> (NoiseStream<TcpStream>, NoiseStream<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (dialed, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let (client, server) = session_pair();
    let (client_node, server_node) = (client_node(), server_node());
    (
        NoiseStream::new(
            dialed.unwrap(),
            client,
            server_node.peer_id,
            server_node.public_key,
        ),
        NoiseStream::new(
            accepted.unwrap().0,
            server,
            client_node.peer_id,
            client_node.public_key,
        ),
    )
}

/// Writes `data` in chunks of `chunk` bytes, flushing every few chunks, then shuts down.
async fn send_all(mut writer: impl AsyncWrite + Unpin, data: Vec<u8>, chunk: usize) {
    for (i, piece) in data.chunks(chunk).enumerate() {
        writer.write_all(piece).await.unwrap();
        if i % 3 == 0 {
            writer.flush().await.unwrap();
        }
    }
    writer.shutdown().await.unwrap();
}

/// Reads to end of stream.
async fn receive_all(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut received = Vec::new();
    reader.read_to_end(&mut received).await.unwrap();
    received
}

/// Each end sends while it receives, from a writer task and a reader task of its own, on a
/// runtime with two workers; every byte arrives in order both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_halves_of_both_ends_run_at_once_over_tcp() {
    let (client, server) = tcp_pair().await;
    let (client_reader, client_writer) = client.into_split();
    let (server_reader, server_writer) = server.into_split();
    // Uneven sizes: full frames, partial frames and small writes in both directions.
    let to_server = pattern(3_000_000, 1);
    let to_client = pattern(2_500_000, 2);
    let tasks = (
        tokio::spawn(send_all(client_writer, to_server.clone(), 70_001)),
        tokio::spawn(send_all(server_writer, to_client.clone(), 777)),
        tokio::spawn(receive_all(server_reader)),
        tokio::spawn(receive_all(client_reader)),
    );
    tasks.0.await.unwrap();
    tasks.1.await.unwrap();
    assert!(tasks.2.await.unwrap() == to_server);
    assert!(tasks.3.await.unwrap() == to_client);
}

/// The same over the in-memory pipe (split with a lock below the stream), with a pipe small
/// enough that both writers block on a reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_halves_of_both_ends_run_at_once_over_a_pipe() {
    let (client, server) = stream_pair(1000);
    let (client_reader, client_writer) = client.into_split();
    let (server_reader, server_writer) = server.into_split();
    let to_server = pattern(400_000, 3);
    let to_client = pattern(300_000, 4);
    let tasks = (
        tokio::spawn(send_all(client_writer, to_server.clone(), 10_000)),
        tokio::spawn(send_all(server_writer, to_client.clone(), 100)),
        tokio::spawn(receive_all(server_reader)),
        tokio::spawn(receive_all(client_reader)),
    );
    tasks.0.await.unwrap();
    tasks.1.await.unwrap();
    assert!(tasks.2.await.unwrap() == to_server);
    assert!(tasks.3.await.unwrap() == to_client);
}

/// Shutting the write half down ends that direction only: the remote reads end of stream, and
/// can still answer, which our read half receives; then its shutdown ends ours. Dropping a TCP
/// write half ends the direction the same way.
#[tokio::test]
async fn shutting_the_write_half_down_ends_one_direction_only() {
    let (client, mut server) = tcp_pair().await;
    let (mut client_reader, mut client_writer) = client.into_split();
    client_writer.write_all(b"last words").await.unwrap();
    client_writer.shutdown().await.unwrap();
    let mut buf = Vec::new();
    server.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"last words");

    server
        .write_all(b"reply after your shutdown")
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    let mut buf = Vec::new();
    client_reader.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"reply after your shutdown");
    assert_eq!(client_reader.read(&mut [0u8; 8]).await.unwrap(), 0);

    let (client, mut server) = tcp_pair().await;
    let (mut client_reader, mut client_writer) = client.into_split();
    client_writer
        .write_all(b"flushed, then dropped")
        .await
        .unwrap();
    client_writer.flush().await.unwrap();
    drop(client_writer);
    let mut buf = Vec::new();
    server.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"flushed, then dropped");
    server.write_all(b"still heard").await.unwrap();
    server.flush().await.unwrap();
    let mut buf = [0u8; 11];
    client_reader.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still heard");
}

/// A frame that fails to decrypt fails the read half (and poisons it), not the write half,
/// which goes on sending. A remote that goes away entirely shows up as end of stream on the
/// read half and as an error on the write half once the socket refuses bytes.
#[tokio::test]
async fn errors_surface_on_the_half_they_belong_to() {
    // The client's halves, with the server end as a raw socket and session.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (dialed, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let (client_session, server_session) = session_pair();
    let server_node = server_node();
    let client = NoiseStream::new(
        dialed.unwrap(),
        client_session,
        server_node.peer_id,
        server_node.public_key,
    );
    let mut raw = accepted.unwrap().0;
    let mut raw_session = RawSession::new(server_session);
    let (mut reader, mut writer) = client.into_split();

    // A 20-byte frame of garbage towards the client.
    let mut garbage = vec![0, 20];
    garbage.extend_from_slice(&pattern(20, 9));
    raw.write_all(&garbage).await.unwrap();
    let err = reader.read(&mut [0u8; 64]).await.unwrap_err();
    assert!(matches!(Error::from_io(&err), Some(Error::Decrypt { .. })));
    let err = reader.read(&mut [0u8; 64]).await.unwrap_err();
    assert!(matches!(Error::from_io(&err), Some(Error::Poisoned)));
    assert_eq!(reader.buffer_capacity(), 0);

    // The write half is untouched: its frame opens with the server's first nonce.
    writer.write_all(b"still sending").await.unwrap();
    writer.flush().await.unwrap();
    let mut frame = [0u8; 2 + 13 + 16];
    raw.read_exact(&mut frame).await.unwrap();
    let mut plaintext = [0u8; 13];
    raw_session
        .read_message(&frame[2..], &mut plaintext)
        .unwrap();
    assert_eq!(&plaintext, b"still sending");

    // The remote closes: reads end cleanly, writes fail (the kernel resets after the close).
    drop(raw);
    let (mut reader, mut writer) = {
        let (client, server) = tcp_pair().await;
        drop(server);
        client.into_split()
    };
    assert_eq!(reader.read(&mut [0u8; 8]).await.unwrap(), 0);
    let chunk = pattern(MAX_FRAME_LEN, 5);
    let mut failed = None;
    for _ in 0..1000 {
        let result = async {
            writer.write_all(&chunk).await?;
            writer.flush().await
        }
        .await;
        if let Err(err) = result {
            failed = Some(err);
            break;
        }
    }
    let err = failed.expect("writing to a closed connection fails");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
}

/// Each half gives its large buffers back when idle, as the whole stream does: the write half
/// at the end of a flush, the read half when a read finds nothing with nothing partly read.
#[tokio::test]
async fn halves_release_their_buffers_when_idle() {
    // Two buffers of at most 4 KiB per half.
    const HALF_IDLE_MAX: usize = 2 * 4096;
    let (client, server) = stream_pair(1 << 20);
    let (_client_reader, mut client_writer) = client.into_split();
    let (mut server_reader, _server_writer) = server.into_split();
    assert_eq!(client_writer.buffer_capacity(), 0);
    assert_eq!(server_reader.buffer_capacity(), 0);

    client_writer.write_all(&pattern(300_000, 6)).await.unwrap();
    assert!(client_writer.buffer_capacity() > MAX_FRAME_LEN);
    client_writer.flush().await.unwrap();
    assert!(client_writer.buffer_capacity() <= HALF_IDLE_MAX);

    let mut received = vec![0u8; 300_000];
    let mut small = [0u8; 10];
    server_reader.read_exact(&mut small).await.unwrap();
    assert!(
        server_reader.buffer_capacity() > MAX_FRAME_LEN,
        "a frame's plaintext waits for the reader"
    );
    received[..10].copy_from_slice(&small);
    server_reader.read_exact(&mut received[10..]).await.unwrap();
    assert!(received == pattern(300_000, 6));
    let mut probe = [0u8; 1];
    assert!(futures::FutureExt::now_or_never(server_reader.read(&mut probe)).is_none());
    assert!(
        server_reader.buffer_capacity() <= HALF_IDLE_MAX,
        "{}",
        server_reader.buffer_capacity()
    );
}

/// Whatever the whole stream held when it was split carries over: unflushed bytes go out on
/// the write half's flush, and a frame partly delivered goes on on the read half.
#[tokio::test]
async fn splitting_keeps_what_the_stream_held() {
    let (mut client, mut server) = stream_pair(1 << 20);
    client.write_all(&pattern(5000, 7)).await.unwrap();
    client.flush().await.unwrap();
    client.write_all(b"unflushed").await.unwrap();
    let mut first = [0u8; 1000];
    server.read_exact(&mut first).await.unwrap();

    let (_client_reader, mut client_writer) = client.into_split();
    let (mut server_reader, _server_writer) = server.into_split();
    client_writer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    server_reader.read_to_end(&mut rest).await.unwrap();
    let mut expected = pattern(5000, 7);
    expected.extend_from_slice(b"unflushed");
    assert_eq!(&first[..], &expected[..1000]);
    assert!(rest == expected[1000..]);
}
