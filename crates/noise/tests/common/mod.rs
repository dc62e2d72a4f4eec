//! Test helpers shared by the integration tests: fixed identities, upgraders, session pairs
//! and a socket that records what crosses it.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use netcore::PeerId;
use noise::{
    HandshakeAuthMode, HandshakeConfig, Metrics, NoiseStream, NoiseUpgrader, PeerRole, PrivateKey,
    PublicKey, TrustedPeer, TrustedPeers, keys,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// A node identity derived from a seed, so every run uses the same keys.
#[derive(Clone)]
pub struct TestNode {
    pub peer_id: PeerId,
    pub private_key: PrivateKey,
    pub public_key: PublicKey,
}

impl TestNode {
    pub fn new(seed: u64) -> Self {
        let private_key = test_support::key_from_seed(seed);
        let public_key = PublicKey::from(&private_key);
        Self {
            peer_id: keys::peer_id_from_public_key(&public_key),
            private_key,
            public_key,
        }
    }

    /// An upgrader for this node with its own, unregistered metrics.
    pub fn upgrader(&self, auth_mode: HandshakeAuthMode) -> NoiseUpgrader {
        NoiseUpgrader::new(
            self.peer_id,
            self.private_key.clone(),
            auth_mode,
            Metrics::default(),
        )
    }

    pub fn config(&self, auth_mode: HandshakeAuthMode) -> HandshakeConfig {
        HandshakeConfig::new(self.peer_id, self.private_key.clone(), auth_mode)
    }
}

/// A trusted set holding `nodes` as validators.
pub fn trusting(nodes: &[&TestNode]) -> TrustedPeers {
    nodes
        .iter()
        .map(|node| {
            (
                node.peer_id,
                TrustedPeer::new(PeerRole::Validator, [node.public_key]),
            )
        })
        .collect()
}

/// Two NoiseStreams over a duplex pipe, handshaken with the pure API (no upgrader, no metrics).
pub fn stream_pair(pipe_capacity: usize) -> (NoiseStream<DuplexStream>, NoiseStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(pipe_capacity);
    let (client, server) = session_pair();
    (
        NoiseStream::new(a, client, server_node().peer_id, server_node().public_key),
        NoiseStream::new(b, server, client_node().peer_id, client_node().public_key),
    )
}

pub fn client_node() -> TestNode {
    TestNode::new(1)
}

pub fn server_node() -> TestNode {
    TestNode::new(2)
}

/// A completed session driven by hand, as a plain snow `TransportState` would be: the handshake
/// API leaves the nonces to its user (the stream's halves count their own).
pub struct RawSession {
    state: snow::StatelessTransportState,
    sending: u64,
    receiving: u64,
}

impl RawSession {
    pub fn new(state: snow::StatelessTransportState) -> Self {
        Self {
            state,
            sending: 0,
            receiving: 0,
        }
    }

    /// Seals `payload` into `message` with the next sending nonce.
    pub fn write_message(
        &mut self,
        payload: &[u8],
        message: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let len = self.state.write_message(self.sending, payload, message)?;
        self.sending += 1;
        Ok(len)
    }

    /// Opens `message` into `payload` with the next receiving nonce.
    pub fn read_message(
        &mut self,
        message: &[u8],
        payload: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let len = self.state.read_message(self.receiving, message, payload)?;
        self.receiving += 1;
        Ok(len)
    }
}

/// Completed sessions for the client (initiator) and the server (responder).
pub fn session_pair() -> (snow::StatelessTransportState, snow::StatelessTransportState) {
    let client = client_node();
    let server = server_node();
    let server_config = server.config(HandshakeAuthMode::mutual(trusting(&[&client])));
    let client_config = client.config(HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
    let (initiator, first) = client_config
        .initiate(server.peer_id, server.public_key, 1)
        .unwrap();
    let accepted = server_config.respond(&first, 1).unwrap();
    let client_session = initiator.finish(&accepted.second_message).unwrap();
    (client_session, accepted.session)
}

/// Bytes seen by a [`Recording`] socket in one direction, shared with the test.
pub type Log = Arc<Mutex<Vec<u8>>>;

/// A socket wrapper that records every byte written through it and read from it.
pub struct Recording<S> {
    inner: S,
    pub written: Log,
    pub read: Log,
}

impl<S> Recording<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            written: Arc::default(),
            read: Arc::default(),
        }
    }

    /// Handles on the recorded bytes, still valid after the socket moved into an upgrade.
    pub fn logs(&self) -> (Log, Log) {
        (self.written.clone(), self.read.clone())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.read
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `len` bytes of a pattern that makes misplaced bytes visible.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}
