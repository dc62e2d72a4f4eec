//! The handshake through `NoiseUpgrader`, over real sockets: successes in both auth modes,
//! every rejection, the responder's check order, deadlines and metrics.

mod common;

use std::time::Duration;

use common::{Recording, TestNode, pattern, trusting};
use netcore::{MemoryListener, MemorySocket, PeerId};
use noise::{
    Error, HANDSHAKE_TIMEOUT, HandshakeAuthMode, HandshakeOutcome, NoiseStream, NoiseUpgrader,
    PeerRole, PublicKey, RemotePeer, Side, TrustedPeers,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};

/// Plaintext larger than one frame (65,519 bytes), so it must span several.
const LARGE: usize = 200_000;

struct Pair {
    client: TestNode,
    server: TestNode,
    client_upgrader: NoiseUpgrader,
    server_upgrader: NoiseUpgrader,
}

/// A client and a server that trust each other, the server in `server_mode`.
fn pair(server_mode: impl FnOnce(&TestNode, &TestNode) -> HandshakeAuthMode) -> Pair {
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let client_upgrader = client.upgrader(HandshakeAuthMode::mutual(trusting(&[&server])));
    let server_upgrader = server.upgrader(server_mode(&client, &server));
    Pair {
        client,
        server,
        client_upgrader,
        server_upgrader,
    }
}

fn mutual(client: &TestNode, _: &TestNode) -> HandshakeAuthMode {
    HandshakeAuthMode::mutual(trusting(&[client]))
}

impl Pair {
    /// Runs both sides of a handshake at `now_millis` over the given sockets.
    async fn handshake<C, S>(
        &self,
        client_socket: C,
        server_socket: S,
        now_millis: u64,
    ) -> (
        Result<NoiseStream<C>, Error>,
        Result<(NoiseStream<S>, RemotePeer), Error>,
    )
    where
        C: AsyncRead + AsyncWrite + Unpin,
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::join!(
            self.client_upgrader.upgrade_outbound(
                client_socket,
                self.server.peer_id,
                self.server.public_key,
                now_millis,
            ),
            self.server_upgrader
                .upgrade_inbound_with_timeout(server_socket, HANDSHAKE_TIMEOUT),
        )
    }

    /// Feeds raw bytes to the server as message 1 and returns its verdict and what it wrote
    /// back.
    async fn respond_to_raw(&self, first_message: &[u8]) -> (Error, Vec<u8>) {
        let (mut client_socket, server_socket) = tokio::io::duplex(4096);
        let server_socket = Recording::new(server_socket);
        let (written, _) = server_socket.logs();
        client_socket.write_all(first_message).await.unwrap();
        client_socket.shutdown().await.unwrap();
        let err = self
            .server_upgrader
            .upgrade_inbound(server_socket)
            .await
            .unwrap_err();
        let written = written.lock().unwrap().clone();
        (err, written)
    }

    /// Feeds one message 1 to the server over a fresh connection, as an attacker replaying it
    /// would, and returns the server's verdict and what it wrote back.
    async fn respond_to_raw_message(
        &self,
        first_message: &[u8],
    ) -> (Result<RemotePeer, Error>, Vec<u8>) {
        let (mut client_socket, server_socket) = tokio::io::duplex(4096);
        let server_socket = Recording::new(server_socket);
        let (written, _) = server_socket.logs();
        client_socket.write_all(first_message).await.unwrap();
        let result = self
            .server_upgrader
            .upgrade_inbound(server_socket)
            .await
            .map(|(_, remote)| remote);
        let written = written.lock().unwrap().clone();
        (result, written)
    }

    /// A genuine message 1 from the client at `now_millis`.
    fn first_message(&self, now_millis: u64) -> [u8; 168] {
        self.client_upgrader
            .config()
            .initiate(self.server.peer_id, self.server.public_key, now_millis)
            .unwrap()
            .1
    }

    fn server_count(&self, outcome: HandshakeOutcome) -> u64 {
        self.server_upgrader
            .metrics()
            .handshakes(Side::Responder, outcome)
    }

    fn client_count(&self, outcome: HandshakeOutcome) -> u64 {
        self.client_upgrader
            .metrics()
            .handshakes(Side::Initiator, outcome)
    }
}

/// Sends `LARGE` bytes each way at the same time and checks they arrive intact. Each side
/// reads while it writes: with bounded pipes, writing everything first would deadlock.
async fn exchange<C, S>(client: NoiseStream<C>, server: NoiseStream<S>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let to_server = pattern(LARGE, 1);
    let to_client = pattern(LARGE, 2);
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut server_rx, mut server_tx) = tokio::io::split(server);
    let (_, _, at_client, at_server) = tokio::join!(
        send(&mut client_tx, &to_server),
        send(&mut server_tx, &to_client),
        receive(&mut client_rx, LARGE),
        receive(&mut server_rx, LARGE),
    );
    assert!(at_client == to_client, "client received corrupted data");
    assert!(at_server == to_server, "server received corrupted data");
}

async fn send(tx: &mut (impl AsyncWrite + Unpin), data: &[u8]) {
    tx.write_all(data).await.unwrap();
    tx.flush().await.unwrap();
}

async fn receive(rx: &mut (impl AsyncRead + Unpin), len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    rx.read_exact(&mut buf).await.unwrap();
    buf
}

/// Mutual mode over an in-memory pipe: the server learns the client's identity and role, both
/// sides count `ok`, and data larger than a frame crosses both ways.
#[tokio::test]
async fn mutual_handshake_over_duplex_carries_large_messages_both_ways() {
    let pair = pair(mutual);
    let (a, b) = tokio::io::duplex(16 * 1024);
    let (client, server) = pair.handshake(a, b, noise::now_millis()).await;
    let (client, (server, remote)) = (client.unwrap(), server.unwrap());
    assert_eq!(remote.peer_id, pair.client.peer_id);
    assert_eq!(remote.public_key, pair.client.public_key);
    assert_eq!(remote.role, PeerRole::Validator);
    assert_eq!(client.remote_peer_id(), pair.server.peer_id);
    assert_eq!(client.remote_public_key(), pair.server.public_key);
    assert_eq!(server.remote_peer_id(), pair.client.peer_id);
    assert_eq!(pair.server_count(HandshakeOutcome::Ok), 1);
    assert_eq!(pair.client_count(HandshakeOutcome::Ok), 1);
    exchange(client, server).await;
}

/// MaybeMutual mode accepts a peer outside the trusted set whose PeerId is derived from its
/// key, with role Unknown.
#[tokio::test]
async fn maybe_mutual_handshake_accepts_an_unknown_peer_as_unknown() {
    let pair = pair(|_, _| HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
    let (a, b) = tokio::io::duplex(16 * 1024);
    let (client, server) = pair.handshake(a, b, noise::now_millis()).await;
    let (client, (server, remote)) = (client.unwrap(), server.unwrap());
    assert_eq!(remote.peer_id, pair.client.peer_id);
    assert_eq!(remote.role, PeerRole::Unknown);
    exchange(client, server).await;
}

/// The handshake and the stream work over real TCP sockets on the loopback interface.
#[tokio::test]
async fn handshake_over_tcp_carries_large_messages_both_ways() {
    let pair = pair(mutual);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (client_socket, (server_socket, _)) = (connected.unwrap(), accepted.unwrap());
    let (client, server) = pair
        .handshake(client_socket, server_socket, noise::now_millis())
        .await;
    let (client, (server, remote)) = (client.unwrap(), server.unwrap());
    assert_eq!(remote.peer_id, pair.client.peer_id);
    exchange(client, server).await;
}

/// The handshake and the stream work over netcore's in-memory sockets (the test transport),
/// connected through a listener on the in-memory switchboard.
#[tokio::test]
async fn handshake_over_memsocket_carries_large_messages_both_ways() {
    let pair = pair(mutual);
    let mut listener = MemoryListener::bind(0).unwrap();
    let client_socket = MemorySocket::connect(listener.port()).await.unwrap();
    let server_socket = listener.accept().await;
    let (client, server) = pair
        .handshake(client_socket, server_socket, noise::now_millis())
        .await;
    let (client, (server, remote)) = (client.unwrap(), server.unwrap());
    assert_eq!(remote.peer_id, pair.client.peer_id);
    exchange(client, server).await;
}

/// On the wire, the initiator sends exactly 168 bytes (prologue in clear first) and the
/// responder exactly 48, with no length prefixes.
#[tokio::test]
async fn handshake_messages_are_exactly_168_and_48_bytes_on_the_wire() {
    let pair = pair(mutual);
    let (a, b) = tokio::io::duplex(4096);
    let (a, b) = (Recording::new(a), Recording::new(b));
    let ((client_wrote, client_read), (server_wrote, server_read)) = (a.logs(), b.logs());
    let (client, server) = pair.handshake(a, b, noise::now_millis()).await;
    client.unwrap();
    server.unwrap();
    let client_wrote = client_wrote.lock().unwrap().clone();
    assert_eq!(client_wrote.len(), 168);
    assert_eq!(&client_wrote[..32], pair.client.peer_id.as_bytes());
    assert_eq!(&client_wrote[32..64], pair.server.public_key.as_bytes());
    assert_eq!(server_wrote.lock().unwrap().len(), 48);
    assert_eq!(server_read.lock().unwrap().len(), 168);
    assert_eq!(client_read.lock().unwrap().len(), 48);
}

/// A client that expects another key for the server is rejected before any cryptography, the
/// server sends nothing, and the client is told which checks most likely failed.
#[tokio::test]
async fn wrong_expected_key_is_rejected_and_the_initiator_sees_a_rejection() {
    let pair = pair(mutual);
    let wrong_key = TestNode::new(9).public_key;
    let (a, b) = tokio::io::duplex(4096);
    let (client, server) = tokio::join!(
        pair.client_upgrader
            .upgrade_outbound(a, pair.server.peer_id, wrong_key, 1),
        pair.server_upgrader.upgrade_inbound(b),
    );
    let server_err = server.unwrap_err();
    assert!(
        matches!(&server_err, Error::WrongExpectedKey { peer_id, expected }
            if *peer_id == pair.client.peer_id && *expected == wrong_key),
        "{server_err:?}"
    );
    // The server dropped the socket: the client saw EOF without a byte of message 2.
    let client_err = client.unwrap_err();
    assert!(
        matches!(client_err, Error::Rejected { .. }),
        "{client_err:?}"
    );
    assert!(
        client_err
            .to_string()
            .contains("our key is not trusted by it or banned, the key we expected is wrong")
    );
    assert_eq!(pair.server_count(HandshakeOutcome::WrongExpectedKey), 1);
    assert_eq!(pair.client_count(HandshakeOutcome::Rejected), 1);
}

/// Mutual mode rejects a PeerId outside the trusted set.
#[tokio::test]
async fn unknown_peer_is_rejected_in_mutual_mode() {
    let pair = pair(|_, _| HandshakeAuthMode::mutual(TrustedPeers::new()));
    let (a, b) = tokio::io::duplex(4096);
    let (client, server) = pair.handshake(a, b, noise::now_millis()).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownPeer { peer_id } if *peer_id == pair.client.peer_id),
        "{err:?}"
    );
    assert!(matches!(client.unwrap_err(), Error::Rejected { .. }));
    assert_eq!(pair.server_count(HandshakeOutcome::UnknownPeer), 1);
}

/// A trusted PeerId that authenticates with a key that is not one of its keys is rejected.
#[tokio::test]
async fn key_mismatch_is_rejected() {
    // The server trusts the client's PeerId, but with another node's key.
    let pair = pair(|client, _| {
        let mut other = TestNode::new(9);
        other.peer_id = client.peer_id;
        HandshakeAuthMode::mutual(trusting(&[&other]))
    });
    let (a, b) = tokio::io::duplex(4096);
    let (client, server) = pair.handshake(a, b, noise::now_millis()).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, Error::KeyMismatch { peer_id, public_key }
            if *peer_id == pair.client.peer_id && *public_key == pair.client.public_key),
        "{err:?}"
    );
    assert!(client.is_err());
    assert_eq!(pair.server_count(HandshakeOutcome::KeyMismatch), 1);
}

/// Anti-replay in mutual mode: genuine messages 1 at timestamps t (ok), t - 1 (replay), t
/// (replay), t + 1 (ok), as an initiator without the process-wide clamp would send them. A
/// replay is rejected before message 2 is built: the server writes nothing back.
#[tokio::test]
async fn replayed_timestamps_are_rejected_before_message_2_is_written() {
    let pair = pair(mutual);
    let t = noise::now_millis();
    for (timestamp, accepted) in [(t, true), (t - 1, false), (t, false), (t + 1, true)] {
        let first = pair.first_message(timestamp);
        let (result, server_wrote) = pair.respond_to_raw_message(&first).await;
        if accepted {
            assert_eq!(result.unwrap().peer_id, pair.client.peer_id);
            assert_eq!(server_wrote.len(), 48);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::ReplayedTimestamp { timestamp: got, last, .. }
                    if got == timestamp && last == t),
                "{err:?}"
            );
            assert!(server_wrote.is_empty(), "a replay must not get message 2");
        }
    }
    assert_eq!(pair.server_count(HandshakeOutcome::Ok), 2);
    assert_eq!(pair.server_count(HandshakeOutcome::ReplayedTimestamp), 2);
}

/// Two dials in the same millisecond, and a dial after the clock stepped back, are all
/// accepted by a mutual-mode responder: the initiator sends strictly increasing timestamps
/// (they used to repeat or go back, and the responder refused them as replays).
#[tokio::test]
async fn dials_in_one_millisecond_or_after_a_clock_step_back_are_accepted() {
    let pair = pair(mutual);
    let now = noise::now_millis();
    for now_millis in [now, now, now - 60_000] {
        let (a, b) = tokio::io::duplex(4096);
        let (client, server) = pair.handshake(a, b, now_millis).await;
        client.unwrap();
        server.unwrap();
    }
    assert_eq!(pair.server_count(HandshakeOutcome::Ok), 3);
}

/// A captured message 1 replayed over fresh connections (MaybeMutual) is refused before any
/// Diffie-Hellman: the responder's DH count does not move, and nothing is written back.
#[tokio::test]
async fn a_replayed_first_message_is_refused_without_dh() {
    let pair = pair(|_, _| HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
    let first = pair.first_message(noise::now_millis());
    let (result, wrote) = pair.respond_to_raw_message(&first).await;
    result.unwrap();
    assert_eq!(wrote.len(), 48);
    let dh = pair.server_upgrader.metrics().dh_operations();
    assert_eq!(dh, 4);
    for _ in 0..20 {
        let (result, wrote) = pair.respond_to_raw_message(&first).await;
        assert!(matches!(result, Err(Error::ReplayedMessage { .. })));
        assert!(wrote.is_empty());
    }
    assert_eq!(pair.server_upgrader.metrics().dh_operations(), dh);
    assert_eq!(pair.server_count(HandshakeOutcome::ReplayedMessage), 20);
}

/// The initiator refuses to dial its own key or PeerId, before writing anything.
#[tokio::test]
async fn initiator_refuses_to_dial_itself() {
    let pair = pair(mutual);
    let (a, _b) = tokio::io::duplex(4096);
    let a = Recording::new(a);
    let (written, _) = a.logs();
    let err = pair
        .client_upgrader
        .upgrade_outbound(a, pair.server.peer_id, pair.client.public_key, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SelfDial {
                side: Side::Initiator,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(written.lock().unwrap().is_empty());
    assert_eq!(pair.client_count(HandshakeOutcome::SelfDial), 1);
}

/// The responder rejects a message 1 whose prologue carries its own PeerId, and that check
/// comes first: a message that is also aimed at the wrong key reports self-dial.
#[tokio::test]
async fn responder_checks_self_dial_before_the_expected_key() {
    let pair = pair(mutual);
    let mut first = pair.first_message(1);
    first[..32].copy_from_slice(pair.server.peer_id.as_bytes());
    let (err, written) = pair.respond_to_raw(&first).await;
    assert!(
        matches!(err, Error::SelfDial { side: Side::Responder, peer_id } if peer_id == pair.server.peer_id),
        "{err:?}"
    );
    assert!(written.is_empty());

    first[32..64].copy_from_slice(&[7; 32]);
    let (err, _) = pair.respond_to_raw(&first).await;
    assert!(matches!(err, Error::SelfDial { .. }), "{err:?}");
    assert_eq!(pair.server_count(HandshakeOutcome::SelfDial), 2);
}

/// A connection that ends before 168 bytes reports how many arrived.
#[tokio::test]
async fn truncated_first_message_reports_the_bytes_received() {
    let pair = pair(mutual);
    let first = pair.first_message(1);
    for len in [0, 63, 64, 167] {
        let (err, written) = pair.respond_to_raw(&first[..len]).await;
        assert!(
            matches!(err, Error::TruncatedMessage { side: Side::Responder, received, expected: 168 }
                if received == len),
            "{err:?}"
        );
        assert!(written.is_empty());
    }
    assert_eq!(pair.server_count(HandshakeOutcome::TruncatedMessage), 4);
}

/// Flipping one bit anywhere in the encrypted part of message 1 makes it malformed; in the
/// prologue it fails the prologue checks or, for the unchecked bits, the decryption (the
/// prologue is authenticated).
#[tokio::test]
async fn tampered_first_message_is_malformed() {
    let pair = pair(mutual);
    for index in [0, 40, 64, 100, 150, 167] {
        let mut first = pair.first_message(1);
        first[index] ^= 0x01;
        let (err, written) = pair.respond_to_raw(&first).await;
        let expected = match index {
            // Mutual mode refuses a PeerId it does not trust before decrypting anything.
            0..32 => matches!(err, Error::UnknownPeer { .. }),
            32..64 => matches!(err, Error::WrongExpectedKey { .. }),
            _ => matches!(
                err,
                Error::MalformedMessage {
                    side: Side::Responder,
                    ..
                }
            ),
        };
        assert!(expected, "byte {index}: {err:?}");
        assert!(written.is_empty());
    }
    assert_eq!(pair.server_count(HandshakeOutcome::MalformedMessage), 4);
    assert_eq!(pair.server_count(HandshakeOutcome::UnknownPeer), 1);
}

/// Random bytes fail the cheapest check that applies: the expected key; with the right key
/// in place, the trusted set (mutual mode); with a trusted PeerId as well, the decryption.
#[tokio::test]
async fn garbage_is_rejected_by_the_first_check_it_fails() {
    let pair = pair(mutual);
    let garbage = pattern(168, 0x42);
    let (err, _) = pair.respond_to_raw(&garbage).await;
    assert!(matches!(err, Error::WrongExpectedKey { .. }), "{err:?}");

    let mut aimed = garbage.clone();
    aimed[32..64].copy_from_slice(pair.server.public_key.as_bytes());
    let (err, written) = pair.respond_to_raw(&aimed).await;
    assert!(matches!(err, Error::UnknownPeer { .. }), "{err:?}");
    assert!(written.is_empty());
    aimed[..32].copy_from_slice(pair.client.peer_id.as_bytes());
    let (err, written) = pair.respond_to_raw(&aimed).await;
    assert!(matches!(err, Error::MalformedMessage { .. }), "{err:?}");
    assert!(written.is_empty());
}

/// A tampered message 2 fails on the initiator as malformed.
#[tokio::test]
async fn tampered_second_message_is_malformed_at_the_initiator() {
    let pair = pair(mutual);
    let (initiator_socket, mut fake_server) = tokio::io::duplex(4096);
    let client = pair.client_upgrader.upgrade_outbound(
        initiator_socket,
        pair.server.peer_id,
        pair.server.public_key,
        noise::now_millis(),
    );
    let server = async {
        let mut first = [0u8; 168];
        fake_server.read_exact(&mut first).await.unwrap();
        let mut second = pair
            .server_upgrader
            .config()
            .respond(&first, noise::now_millis())
            .unwrap()
            .second_message;
        second[47] ^= 0x80;
        fake_server.write_all(&second).await.unwrap();
        fake_server
    };
    let (client, _server) = tokio::join!(client, server);
    let err = client.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MalformedMessage {
                side: Side::Initiator,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(pair.client_count(HandshakeOutcome::MalformedMessage), 1);
}

/// A client that connects and never sends is cut off at the deadline, counted as a timeout.
/// The clock is paused, so the 30 s pass instantly once everything is idle.
#[tokio::test(start_paused = true)]
async fn a_silent_client_hits_the_responder_deadline() {
    let pair = pair(mutual);
    let (_silent_client, server_socket) = tokio::io::duplex(4096);
    let started = tokio::time::Instant::now();
    let err = pair
        .server_upgrader
        .upgrade_inbound_with_timeout(server_socket, HANDSHAKE_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { side: Side::Responder, timeout } if timeout == HANDSHAKE_TIMEOUT),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
    assert_eq!(pair.server_count(HandshakeOutcome::Timeout), 1);
}

/// A responder that reads message 1 and never answers is cut off at the initiator's deadline.
#[tokio::test(start_paused = true)]
async fn a_silent_responder_hits_the_initiator_deadline() {
    let pair = pair(mutual);
    let (client_socket, _silent_server) = tokio::io::duplex(4096);
    let timeout = Duration::from_secs(5);
    let err = pair
        .client_upgrader
        .upgrade_outbound_with_timeout(
            client_socket,
            pair.server.peer_id,
            pair.server.public_key,
            noise::now_millis(),
            timeout,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                side: Side::Initiator,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(pair.client_count(HandshakeOutcome::Timeout), 1);
}

/// A message 2 cut short is reported as truncated (not as a rejection).
#[tokio::test]
async fn truncated_second_message_is_reported_with_the_bytes_received() {
    let pair = pair(mutual);
    let (client_socket, mut fake_server) = tokio::io::duplex(4096);
    let client = pair.client_upgrader.upgrade_outbound(
        client_socket,
        pair.server.peer_id,
        pair.server.public_key,
        noise::now_millis(),
    );
    let server = async {
        let mut first = [0u8; 168];
        fake_server.read_exact(&mut first).await.unwrap();
        fake_server.write_all(&[0; 20]).await.unwrap();
        drop(fake_server);
    };
    let (client, ()) = tokio::join!(client, server);
    assert!(matches!(
        client.unwrap_err(),
        Error::TruncatedMessage {
            side: Side::Initiator,
            received: 20,
            expected: 48
        }
    ));
}

/// Metrics registered into a registry show each outcome under its side and reason label.
#[tokio::test]
async fn metrics_count_outcomes_by_side_and_reason() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = noise::Metrics::register(&mut registry);
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let server_upgrader = NoiseUpgrader::new(
        server.peer_id,
        server.private_key.clone(),
        HandshakeAuthMode::mutual(trusting(&[&client])),
        metrics,
    );
    let client_upgrader = client.upgrader(HandshakeAuthMode::mutual(trusting(&[&server])));
    let now = noise::now_millis();
    let (a, b) = tokio::io::duplex(4096);
    let (dialed, accepted) = tokio::join!(
        client_upgrader.upgrade_outbound(a, server.peer_id, server.public_key, now),
        server_upgrader.upgrade_inbound(b),
    );
    let sent = dialed.unwrap();
    accepted.unwrap();
    drop(sent);
    // A genuine message 1 older than the one accepted: a replayed timestamp, after two DH.
    let (_, first) = client_upgrader
        .config()
        .initiate(server.peer_id, server.public_key, now - 1)
        .unwrap();
    let (mut a, b) = tokio::io::duplex(4096);
    a.write_all(&first).await.unwrap();
    server_upgrader.upgrade_inbound(b).await.unwrap_err();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains(r#"peerlane_noise_handshakes_total{side="responder",result="ok"} 1"#));
    assert!(text.contains(
        r#"peerlane_noise_handshakes_total{side="responder",result="replayed_timestamp"} 1"#
    ));
    assert!(
        text.contains("peerlane_noise_dh_operations_total 6"),
        "{text}"
    );
}

/// The trusted set is read at each handshake: a peer added after the upgrader was built is
/// accepted, and one removed is rejected.
#[tokio::test]
async fn trusted_set_changes_apply_to_the_next_handshake() {
    let client = TestNode::new(1);
    let server = TestNode::new(2);
    let trusted = TrustedPeers::new();
    let server_upgrader = server.upgrader(HandshakeAuthMode::mutual(trusted.clone()));
    let client_upgrader = client.upgrader(HandshakeAuthMode::mutual(trusting(&[&server])));
    let attempt = |now_millis| {
        let (a, b) = tokio::io::duplex(4096);
        let (client_upgrader, server_upgrader) = (&client_upgrader, &server_upgrader);
        let (server_id, server_key) = (server.peer_id, server.public_key);
        async move {
            let (_, server) = tokio::join!(
                client_upgrader.upgrade_outbound(a, server_id, server_key, now_millis),
                server_upgrader.upgrade_inbound(b),
            );
            server.map(|(_, remote)| remote)
        }
    };
    assert!(matches!(
        attempt(noise::now_millis()).await,
        Err(Error::UnknownPeer { .. })
    ));
    trusted.replace(trusting(&[&client]).snapshot().as_ref().clone());
    assert_eq!(
        attempt(noise::now_millis()).await.unwrap().peer_id,
        client.peer_id
    );
    trusted.remove(&client.peer_id);
    assert!(matches!(
        attempt(noise::now_millis()).await,
        Err(Error::UnknownPeer { .. })
    ));
}

/// `Error::from_io` recovers the typed error from the `io::Error` it converts into, and
/// keys parse from the 64-hex-digit form used in addresses.
#[test]
fn typed_errors_survive_the_io_error_conversion() {
    let err: std::io::Error = Error::UnknownPeer {
        peer_id: PeerId::ZERO,
    }
    .into();
    assert!(matches!(
        Error::from_io(&err),
        Some(Error::UnknownPeer { .. })
    ));
    let key = TestNode::new(3).public_key;
    let text = noise::keys::format_public_key(&key);
    assert_eq!(noise::keys::parse_public_key(&text).unwrap(), key);
    let _: PublicKey = key;
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: T) {}

/// The upgrade futures and the stream are `Send`, so they can run in spawned tasks.
#[allow(dead_code)]
fn upgrade_futures_are_send(upgrader: NoiseUpgrader, socket: DuplexStream) {
    assert_send(upgrader.upgrade_inbound(socket));
}
