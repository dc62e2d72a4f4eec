//! noise: the AptosNet v1 Noise layer. It authenticates a freshly connected socket with the
//! Noise IK handshake (`Noise_IK_25519_AESGCM_SHA256`) and turns it into an encrypted stream,
//! byte for byte as AptosNet does.
//!
//! # How data flows
//!
//! ```text
//!  socket ──► NoiseUpgrader::upgrade_{outbound,inbound}      (async, owns the socket)
//!                 │ 168-byte message 1 / 48-byte message 2
//!                 ▼
//!             HandshakeConfig::{initiate, respond}          (pure: bytes + now in, bytes out)
//!                 │ checks: self-dial → expected key → banned / untrusted → replayed or
//!                 │ low-order e → decrypt → auth → fresh timestamp → anti-replay
//!                 ▼
//!             NoiseStream<socket>                           (AsyncRead + AsyncWrite,
//!                 │                                           u16-framed AES-GCM frames)
//!                 ▼ into_split (SplitSocket)
//!             NoiseReadHalf + NoiseWriteHalf                (one per task, no shared lock)
//! ```
//!
//! 1. The handshake is the protocol without IO: [`HandshakeConfig::initiate`] builds message 1
//!    from our identity, the key we expect and the time; [`HandshakeConfig::respond`] checks
//!    message 1 in AptosNet's order against a [`HandshakeAuthMode`] and builds message 2;
//!    [`Initiator::finish`] reads message 2. Both ends get a session.
//! 2. [`NoiseUpgrader`] drives that over any `AsyncRead + AsyncWrite` socket, with an optional
//!    deadline ([`HANDSHAKE_TIMEOUT`]), and counts ([`Metrics`]) every outcome and every
//!    Diffie-Hellman; it logs them too, refusals rate-limited with netcore's `LogLimiter`. It
//!    stamps message 1 with [`handshake_timestamp`], strictly increasing over the process.
//! 3. [`NoiseStream`] seals written bytes into frames of at most 65,519 plaintext bytes and
//!    opens the peer's frames on read. [`NoiseStream::into_split`] gives a
//!    [`NoiseReadHalf`] and a [`NoiseWriteHalf`] over the socket's own halves
//!    ([`SplitSocket`]: tokio's owned halves for TCP), each with its own nonce, state and
//!    buffers, so a reader task and a writer task never wait for each other.
//!
//! Who may connect is decided by [`TrustedPeers`] (shared, updatable at run time) through the
//! auth mode: `Mutual` for validator networks, `MaybeMutual` elsewhere; a peer's [`PeerRole`]
//! comes from that set and is spelled in config files as serde writes it. The caller can
//! refuse PeerIds of its own ([`BannedPeers`]).
//!
//! Whatever a remote can send at will is refused as cheaply as possible: a banned PeerId, an
//! untrusted one in mutual mode, and a replayed message 1 (its ephemeral key is in a bounded
//! cache of recent ones, [`REPLAY_CACHE_CAPACITY`]) cost the responder no Diffie-Hellman; a
//! timestamp outside [`TIMESTAMP_WINDOW`] is refused before message 2. Keys that are low-order
//! points of Curve25519 are refused on both sides, and the X25519 that snow runs (the `dh`
//! module's resolver) fails on an all-zero result. Keys are x25519
//! ([`keys`]); [`PublicKey`] is netcore's, the same type a network address holds. Every
//! failure is a [`noise::Error`](Error), and says which [`Side`] saw it.
//!
//! Types to read first: [`NoiseUpgrader`], [`HandshakeAuthMode`], [`NoiseStream`].
//!
//! # Example
//!
//! Two nodes in mutual mode over an in-memory pipe:
//!
//! ```
//! use noise::{HandshakeAuthMode, Metrics, NoiseUpgrader, PeerRole, PublicKey, TrustedPeer,
//!             TrustedPeers, keys};
//! use rand::{SeedableRng, rngs::StdRng};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut rng = StdRng::seed_from_u64(0);
//! let (client_key, server_key) =
//!     (keys::generate_private_key(&mut rng), keys::generate_private_key(&mut rng));
//! let client_public = PublicKey::from(&client_key);
//! let server_public = PublicKey::from(&server_key);
//! let client_id = keys::peer_id_from_public_key(&client_public);
//! let server_id = keys::peer_id_from_public_key(&server_public);
//!
//! // Each validator trusts the other.
//! let trusted = TrustedPeers::new();
//! trusted.insert(client_id, TrustedPeer::new(PeerRole::Validator, [client_public]));
//! trusted.insert(server_id, TrustedPeer::new(PeerRole::Validator, [server_public]));
//! let mode = HandshakeAuthMode::mutual(trusted.clone());
//! let client = NoiseUpgrader::new(client_id, client_key, mode, Metrics::default());
//! let mode = HandshakeAuthMode::mutual(trusted);
//! let server = NoiseUpgrader::new(server_id, server_key, mode, Metrics::default());
//!
//! let (client_socket, server_socket) = tokio::io::duplex(64 * 1024);
//! let (client_stream, server_side) = tokio::join!(
//!     client.upgrade_outbound(client_socket, server_id, server_public, noise::now_millis()),
//!     server.upgrade_inbound_with_timeout(server_socket, noise::HANDSHAKE_TIMEOUT),
//! );
//! let (mut client_stream, (mut server_stream, remote)) =
//!     (client_stream.unwrap(), server_side.unwrap());
//! assert_eq!((remote.peer_id, remote.role), (client_id, PeerRole::Validator));
//!
//! client_stream.write_all(b"hello").await.unwrap();
//! client_stream.flush().await.unwrap(); // nothing is sent before a flush
//! let mut buf = [0u8; 5];
//! server_stream.read_exact(&mut buf).await.unwrap();
//! assert_eq!(&buf, b"hello");
//! # });
//! ```

mod auth;
mod dh;
mod error;
mod handshake;
pub mod keys;
mod metrics;
mod replay;
mod side;
mod stream;
mod upgrade;

pub use auth::{
    AntiReplayTimestamps, BannedPeers, HandshakeAuthMode, PeerRole, TrustedPeer, TrustedPeers,
};
pub use error::Error;
pub use handshake::{
    Accepted, CryptoBackend, FIRST_MESSAGE_LEN, HandshakeConfig, Initiator, PROLOGUE_LEN,
    PROTOCOL_NAME, RemotePeer, SECOND_MESSAGE_LEN,
};
pub use keys::{PrivateKey, PublicKey};
pub use metrics::{HandshakeOutcome, Metrics, StreamErrorReason};
pub use replay::{REPLAY_CACHE_CAPACITY, TIMESTAMP_WINDOW, handshake_timestamp};
pub use side::Side;
pub use stream::{
    MAX_FRAME_LEN, MAX_PLAINTEXT_LEN, NoiseReadHalf, NoiseStream, NoiseWriteHalf, SplitSocket,
};
pub use upgrade::{HANDSHAKE_TIMEOUT, NoiseUpgrader, REFUSAL_LOG_LINES_PER_MINUTE, now_millis};
