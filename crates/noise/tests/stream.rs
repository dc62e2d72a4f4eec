//! `NoiseStream` on the wire: framing, batching, EOF, tampering and poisoning, and round trips
//! of arbitrary write and read patterns.

mod common;

use common::{
    RawSession, TestNode, client_node, pattern, server_node, session_pair, stream_pair, trusting,
};
use noise::{
    Error, HandshakeAuthMode, MAX_FRAME_LEN, MAX_PLAINTEXT_LEN, NoiseStream, StreamErrorReason,
};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A NoiseStream (the client's) whose peer is a raw pipe, plus the server's session to open
/// what the stream sends and seal what we send to it.
fn stream_and_raw_peer(
    pipe_capacity: usize,
) -> (NoiseStream<DuplexStream>, DuplexStream, RawSession) {
    let (a, b) = tokio::io::duplex(pipe_capacity);
    let (client, server) = session_pair();
    let server_node = server_node();
    let stream = NoiseStream::new(a, client, server_node.peer_id, server_node.public_key);
    (stream, b, RawSession::new(server))
}

/// Splits raw bytes into frames: (length prefix, ciphertext) pairs.
fn frames(mut raw: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !raw.is_empty() {
        let len = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
        frames.push(raw[2..2 + len].to_vec());
        raw = &raw[2 + len..];
    }
    frames
}

/// Seals `plaintext` as one frame, prefix included, with a raw snow session.
fn seal(session: &mut RawSession, plaintext: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; 2 + plaintext.len() + 16];
    let len = session.write_message(plaintext, &mut frame[2..]).unwrap();
    frame[..2].copy_from_slice(&(len as u16).to_be_bytes());
    frame
}

/// Many small writes followed by one flush leave the stream as a single frame, which a plain
/// snow session opens (standard nonces, empty associated data).
#[tokio::test]
async fn many_small_writes_and_one_flush_produce_one_frame() {
    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    let data = pattern(1000, 3);
    for chunk in data.chunks(10) {
        stream.write_all(chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();

    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire.len(), 2 + 1000 + 16);
    let frames = frames(&wire);
    assert_eq!(frames.len(), 1);
    let mut plaintext = vec![0; frames[0].len()];
    let n = server.read_message(&frames[0], &mut plaintext).unwrap();
    assert_eq!(&plaintext[..n], &data[..]);
}

/// Nothing is sent before a flush, flushing an empty buffer sends nothing, and a second flush
/// does not repeat the frame.
#[tokio::test]
async fn flushing_an_empty_buffer_writes_nothing() {
    let (mut stream, mut raw, _) = stream_and_raw_peer(1 << 20);
    stream.flush().await.unwrap();
    stream.write_all(b"abc").await.unwrap();
    let mut probe = [0u8; 1];
    assert!(
        futures::FutureExt::now_or_never(raw.read(&mut probe)).is_none(),
        "a write must not reach the wire before a flush"
    );
    stream.flush().await.unwrap();
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();
    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire.len(), 2 + 3 + 16, "exactly one frame");
}

/// Shutdown flushes the buffered bytes and adds nothing: no zero-length frame, no trailer.
#[tokio::test]
async fn shutdown_flushes_and_sends_no_extra_bytes() {
    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    stream.write_all(b"bye").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire.len(), 2 + 3 + 16);
    let mut plaintext = [0u8; 3];
    server.read_message(&wire[2..], &mut plaintext).unwrap();
    assert_eq!(&plaintext, b"bye");
}

/// A write larger than a frame goes out as full frames of 65,535 ciphertext bytes (65,519
/// plaintext) and a remainder, in order.
#[tokio::test]
async fn large_writes_are_cut_into_full_frames() {
    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    let data = pattern(150_000, 5);
    let writer = async {
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
    };
    let mut wire = Vec::new();
    let (_, read) = tokio::join!(writer, raw.read_to_end(&mut wire));
    read.unwrap();
    let frames = frames(&wire);
    let lens: Vec<_> = frames.iter().map(Vec::len).collect();
    let rest = 150_000 - 2 * MAX_PLAINTEXT_LEN + 16;
    assert_eq!(lens, [MAX_FRAME_LEN, MAX_FRAME_LEN, rest]);
    let mut received = Vec::new();
    for frame in frames {
        let mut plaintext = vec![0; frame.len()];
        let n = server.read_message(&frame, &mut plaintext).unwrap();
        received.extend_from_slice(&plaintext[..n]);
    }
    assert!(received == data);
}

/// A zero-length frame is end of stream, even with bytes after it, and stays so.
#[tokio::test]
async fn a_zero_length_frame_reads_as_eof() {
    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    raw.write_all(&seal(&mut server, b"last")).await.unwrap();
    raw.write_all(&[0, 0]).await.unwrap();
    raw.write_all(&seal(&mut server, b"ignored")).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"last");
    assert_eq!(stream.read(&mut [0u8; 8]).await.unwrap(), 0);
}

/// The socket's EOF between frames is end of stream; inside a frame it is an error.
#[tokio::test]
async fn eof_inside_a_frame_is_an_unexpected_eof() {
    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    raw.write_all(&seal(&mut server, b"whole")).await.unwrap();
    drop(raw);
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"whole");

    let (mut stream, mut raw, mut server) = stream_and_raw_peer(1 << 20);
    let frame = seal(&mut server, b"cut short");
    raw.write_all(&frame[..frame.len() - 1]).await.unwrap();
    drop(raw);
    let err = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let expected = frame.len();
    assert!(matches!(
        Error::from_io(&err),
        Some(&Error::TruncatedFrame { expected: e, received: r }) if e == expected && r == e - 1
    ));
    // It stays an error, and the buffers of the dead direction are gone.
    let err = stream.read(&mut [0u8; 8]).await.unwrap_err();
    assert!(matches!(
        Error::from_io(&err),
        Some(Error::TruncatedFrame { .. })
    ));
    assert_eq!(stream.buffer_capacity(), 0);

    // Cut inside the length prefix.
    let (mut stream, mut raw, _) = stream_and_raw_peer(1 << 20);
    raw.write_all(&[0]).await.unwrap();
    drop(raw);
    let err = stream.read(&mut [0u8; 8]).await.unwrap_err();
    assert!(matches!(
        Error::from_io(&err),
        Some(Error::TruncatedFrame {
            expected: 2,
            received: 1
        })
    ));
}

/// Streams made by the upgrader count a connection cut inside a frame, once, under
/// `reason="truncated_frame"`.
#[tokio::test]
async fn truncated_frames_are_counted() {
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let client_upgrader = client.upgrader(HandshakeAuthMode::mutual(trusting(&[&server])));
    let server_upgrader = server.upgrader(HandshakeAuthMode::mutual(trusting(&[&client])));
    let (a, b) = tokio::io::duplex(4096);
    let (client_stream, accepted) = tokio::join!(
        client_upgrader.upgrade_outbound(a, server.peer_id, server.public_key, noise::now_millis()),
        server_upgrader.upgrade_inbound(b),
    );
    let (mut client_stream, (mut server_stream, _)) = (client_stream.unwrap(), accepted.unwrap());
    // A prefix announcing 20 bytes, 5 of them, then the connection closes.
    client_stream
        .get_mut()
        .write_all(&[0, 20, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    drop(client_stream);
    for _ in 0..2 {
        let err = server_stream.read(&mut [0u8; 16]).await.unwrap_err();
        assert!(matches!(
            Error::from_io(&err),
            Some(Error::TruncatedFrame {
                expected: 22,
                received: 7
            })
        ));
    }
    let reason = StreamErrorReason::TruncatedFrame;
    assert_eq!(server_upgrader.metrics().stream_errors(reason), 1);
    assert_eq!(server_upgrader.metrics().decrypt_failures(), 0);
}

/// An idle stream holds no large buffers: the write buffers above 4 KiB go at the end of a
/// flush, the read buffers above 4 KiB when a read finds nothing to read with nothing partly
/// read. Small ones stay (no reallocation at every pause). A busy direction keeps everything:
/// nothing is released while a frame is half-read or bytes are unflushed.
#[tokio::test]
async fn buffers_are_released_when_idle() {
    // Four buffers of at most 4 KiB each.
    const IDLE_MAX: usize = 4 * 4096;
    let (mut client, mut server) = stream_pair(1 << 20);
    assert_eq!(client.buffer_capacity(), 0, "nothing before the first byte");

    // Writing buffers plaintext, sized to what is written (not a whole frame); small buffers
    // survive the flush.
    client.write_all(&pattern(100, 1)).await.unwrap();
    let buffered = client.buffer_capacity();
    assert!((100..4096).contains(&buffered), "{buffered}");
    client.flush().await.unwrap();
    assert!(
        client.buffer_capacity() < 1024,
        "{}",
        client.buffer_capacity()
    );

    // A large write grows the buffers to a frame at most, and the flush gives them back.
    client.write_all(&pattern(200_000, 2)).await.unwrap();
    let busy = client.buffer_capacity();
    assert!(
        busy > MAX_FRAME_LEN && busy <= 2 * (MAX_FRAME_LEN + 2),
        "{busy}"
    );
    client.flush().await.unwrap();
    assert!(client.buffer_capacity() <= IDLE_MAX);

    // Reading with a small buffer keeps the frame's plaintext until it is delivered.
    let mut small = [0u8; 10];
    server.read_exact(&mut small).await.unwrap();
    assert!(server.buffer_capacity() > 0);
    let mut rest = vec![0u8; 100 - 10 + 200_000];
    let mut half = vec![0u8; 1000];
    server.read_exact(&mut half).await.unwrap();
    assert!(
        server.buffer_capacity() > MAX_FRAME_LEN,
        "a whole frame's plaintext waits for the reader"
    );
    server.read_exact(&mut rest[1000..]).await.unwrap();
    // All delivered, but no read has found the socket empty yet.
    let mut probe = [0u8; 1];
    assert!(futures::FutureExt::now_or_never(server.read(&mut probe)).is_none());
    assert!(
        server.buffer_capacity() <= IDLE_MAX,
        "released on the idle read"
    );

    // Half a frame on the wire: the read is pending but the partial frame is kept.
    let (mut stream, mut raw, mut session) = stream_and_raw_peer(1 << 20);
    let frame = seal(&mut session, &pattern(10_000, 3));
    raw.write_all(&frame[..5000]).await.unwrap();
    let mut buf = vec![0u8; 20_000];
    assert!(futures::FutureExt::now_or_never(stream.read(&mut buf)).is_none());
    assert!(stream.buffer_capacity() >= 10_000);
    raw.write_all(&frame[5000..]).await.unwrap();
    assert_eq!(stream.read(&mut buf).await.unwrap(), 10_000);
    assert_eq!(&buf[..10_000], &pattern(10_000, 3)[..]);
    assert!(futures::FutureExt::now_or_never(stream.read(&mut buf)).is_none());
    assert_eq!(
        stream.buffer_capacity(),
        0,
        "the 10 KB frame buffer is given back"
    );
}

/// A frame modified in transit fails to decrypt, and the stream is poisoned: every later read
/// fails, even when a genuine frame follows.
#[tokio::test]
async fn a_tampered_frame_fails_to_decrypt_and_poisons_the_stream() {
    let (mut client, mut raw, mut server_session) = stream_and_raw_peer(1 << 20);
    client.write_all(b"transfer 10 coins").await.unwrap();
    client.flush().await.unwrap();
    let mut frame = vec![0u8; 2 + 17 + 16];
    raw.read_exact(&mut frame).await.unwrap();

    // Relay the frame to the server with one bit flipped in the ciphertext.
    let (mut relay, server_socket) = tokio::io::duplex(1 << 20);
    let client_node = client_node();
    let (_, server_side) = session_pair();
    let mut server = NoiseStream::new(
        server_socket,
        server_side,
        client_node.peer_id,
        client_node.public_key,
    );
    frame[10] ^= 0x01;
    relay.write_all(&frame).await.unwrap();
    // A genuine frame after the tampered one must not be delivered either.
    relay
        .write_all(&seal(&mut server_session, b"later"))
        .await
        .unwrap();

    let mut buf = [0u8; 64];
    let err = server.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(Error::from_io(&err), Some(Error::Decrypt { .. })));
    for _ in 0..2 {
        let err = server.read(&mut buf).await.unwrap_err();
        assert!(matches!(Error::from_io(&err), Some(Error::Poisoned)));
    }
}

/// Streams made by the upgrader count decryption failures in the metrics.
#[tokio::test]
async fn decrypt_failures_are_counted() {
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let client_upgrader = client.upgrader(HandshakeAuthMode::mutual(trusting(&[&server])));
    let server_upgrader = server.upgrader(HandshakeAuthMode::mutual(trusting(&[&client])));
    let (a, b) = tokio::io::duplex(4096);
    let (client_stream, accepted) = tokio::join!(
        client_upgrader.upgrade_outbound(a, server.peer_id, server.public_key, noise::now_millis()),
        server_upgrader.upgrade_inbound(b),
    );
    let (mut client_stream, (mut server_stream, _)) = (client_stream.unwrap(), accepted.unwrap());
    // Garbage straight onto the socket, bypassing the encryption: a 20-byte "frame".
    let mut garbage = vec![0, 20];
    garbage.extend_from_slice(&pattern(20, 9));
    client_stream.get_mut().write_all(&garbage).await.unwrap();
    assert!(server_stream.read(&mut [0u8; 16]).await.is_err());
    assert_eq!(server_upgrader.metrics().decrypt_failures(), 1);
}

/// A reader with a tiny buffer gets a frame piece by piece.
#[tokio::test]
async fn small_reads_drain_a_frame_piecewise() {
    let (mut client, mut server) = stream_pair(1 << 20);
    let data = pattern(5000, 7);
    client.write_all(&data).await.unwrap();
    client.shutdown().await.unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 3];
    loop {
        let n = server.read(&mut byte).await.unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&byte[..n]);
    }
    assert!(received == data);
}

/// A frame read with room for exactly its plaintext, for the plaintext and part of the tag, or
/// for the whole ciphertext (where it is decrypted in place in the reader's buffer) gives the
/// same bytes, and the reads after it too.
#[tokio::test]
async fn a_frame_reads_the_same_whatever_room_the_reader_has_for_its_tag() {
    const LEN: usize = 1000;
    for room in [LEN, LEN + 1, LEN + 15, LEN + 16, LEN + 17, 3 * LEN] {
        let (mut client, mut server) = stream_pair(1 << 20);
        let data = pattern(2 * LEN, room as u8);
        // Two frames of `LEN` bytes each.
        for half in data.chunks(LEN) {
            client.write_all(half).await.unwrap();
            client.flush().await.unwrap();
        }
        client.shutdown().await.unwrap();
        let mut received = Vec::new();
        let mut buf = vec![0u8; room];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        assert!(received == data, "room {room}");
    }
}

/// A socket that counts the reads that returned bytes.
struct CountingReads {
    inner: DuplexStream,
    reads: usize,
}

impl tokio::io::AsyncRead for CountingReads {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads += 1;
        }
        poll
    }
}

/// A run of small frames waiting on the socket is taken a few KiB per read call, not a prefix
/// and a body per frame; one frame at a time keeps the buffer its size.
#[tokio::test]
async fn a_run_of_small_frames_takes_few_reads() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (client, server) = session_pair();
    let (client_node, server_node) = (client_node(), server_node());
    let mut writer = NoiseStream::new(a, client, server_node.peer_id, server_node.public_key);
    let socket = CountingReads { inner: b, reads: 0 };
    let mut reader = NoiseStream::new(socket, server, client_node.peer_id, client_node.public_key);

    // One frame alone: two reads (the prefix into an empty buffer, then the rest), and a
    // buffer no larger than a frame.
    writer.write_all(&pattern(20, 1)).await.unwrap();
    writer.flush().await.unwrap();
    let mut buf = [0u8; 20];
    reader.read_exact(&mut buf).await.unwrap();
    assert_eq!(reader.get_ref().reads, 2);
    assert!(
        reader.buffer_capacity() <= 2 * (2 + 20 + 16),
        "{}",
        reader.buffer_capacity()
    );

    // 200 frames of 38 bytes (7.6 KB) waiting: a handful of reads.
    for i in 0..200u8 {
        writer.write_all(&pattern(20, i)).await.unwrap();
        writer.flush().await.unwrap();
    }
    for i in 0..200u8 {
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf.to_vec(), pattern(20, i));
    }
    let reads = reader.get_ref().reads - 2;
    assert!(reads <= 6, "{reads} reads for 200 frames");
    assert!(reader.buffer_capacity() <= 2 * 4096);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any split of the data into writes, with flushes anywhere, any read buffer sizes and a
    /// small pipe (so both sides block and resume), delivers exactly the bytes written.
    #[test]
    fn arbitrary_writes_and_reads_round_trip(
        writes in prop::collection::vec((1usize..70_000, any::<bool>()), 1..6),
        read_sizes in prop::collection::vec(1usize..70_000, 1..8),
        pipe_capacity in 1usize..100_000,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (sent, received) = runtime.block_on(async {
            let (mut client, mut server) = stream_pair(pipe_capacity);
            let total: usize = writes.iter().map(|(len, _)| len).sum();
            let data = pattern(total, 11);
            let writer = async {
                let mut offset = 0;
                for (len, flush) in &writes {
                    client.write_all(&data[offset..offset + len]).await.unwrap();
                    offset += len;
                    if *flush {
                        client.flush().await.unwrap();
                    }
                }
                client.shutdown().await.unwrap();
            };
            let reader = async {
                let mut received = Vec::with_capacity(total);
                let mut buf = vec![0u8; 70_000];
                for size in read_sizes.iter().cycle() {
                    let n = server.read(&mut buf[..*size]).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    received.extend_from_slice(&buf[..n]);
                }
                received
            };
            let ((), received) = tokio::join!(writer, reader);
            (data, received)
        });
        prop_assert_eq!(sent.len(), received.len());
        prop_assert!(sent == received);
    }
}
