//! [`NoiseUpgrader`]: runs the pure handshake ([`HandshakeConfig`]) over a socket, and turns the
//! socket into a [`NoiseStream`].
//!
//! A rejected handshake ends with the socket dropped, as in AptosNet: the responder sends
//! nothing back. The responder logs and counts the precise reason; the initiator, which only
//! sees the connection close, gets [`Error::Rejected`] with the likely reasons.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netcore::{PeerId, SharedLogLimiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{BannedPeers, HandshakeAuthMode};
use crate::error::Error;
use crate::handshake::{FIRST_MESSAGE_LEN, HandshakeConfig, RemotePeer, SECOND_MESSAGE_LEN};
use crate::keys::{PrivateKey, PublicKey};
use crate::metrics::{HandshakeOutcome, Metrics, StreamErrorReason};
use crate::replay::handshake_timestamp;
use crate::side::Side;
use crate::stream::NoiseStream;

/// AptosNet's deadline for setting up a connection (connect, Noise, handshake message). Use it
/// with [`NoiseUpgrader::upgrade_inbound_with_timeout`] and
/// [`NoiseUpgrader::upgrade_outbound_with_timeout`] unless the caller runs one deadline over
/// the whole set-up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Log lines per minute for inbound handshakes refused for a reason a remote can produce at
/// will, per level (`warn`: replays, bad keys, stale timestamps; `debug`: the rest). The
/// metrics count every refusal; the next line let through says how many were suppressed.
pub const REFUSAL_LOG_LINES_PER_MINUTE: u32 = 10;

/// Upgrades sockets to [`NoiseStream`]s for one node, in both directions.
///
/// Cheap to clone (the trusted set, anti-replay state and metrics are shared), and usable from
/// many connections at once through `&self`.
///
/// # Cancel safety
///
/// The `upgrade_*` futures own the socket: dropping one drops the socket mid-handshake, which
/// the remote sees as a rejection. Nothing is counted for a dropped future, except by the
/// `*_with_timeout` variants, which count their own timeout.
#[derive(Clone, Debug)]
pub struct NoiseUpgrader {
    config: HandshakeConfig,
    metrics: Metrics,
    log_limits: Arc<RefusalLogLimits>,
}

/// One log limiter per level of inbound refusal, shared by the upgrader's clones.
#[derive(Debug)]
struct RefusalLogLimits {
    warn: SharedLogLimiter,
    debug: SharedLogLimiter,
}

impl Default for RefusalLogLimits {
    fn default() -> Self {
        let limiter =
            || SharedLogLimiter::new(REFUSAL_LOG_LINES_PER_MINUTE, Duration::from_secs(60));
        Self {
            warn: limiter(),
            debug: limiter(),
        }
    }
}

impl NoiseUpgrader {
    /// An upgrader for the node `peer_id` with static key `private_key`.
    pub fn new(
        peer_id: PeerId,
        private_key: PrivateKey,
        auth_mode: HandshakeAuthMode,
        metrics: Metrics,
    ) -> Self {
        Self::from_config(
            HandshakeConfig::new(peer_id, private_key, auth_mode),
            metrics,
        )
    }

    /// An upgrader over an existing handshake config (for example one with another crypto
    /// backend). The config's Diffie-Hellman operations count into `metrics` from now on.
    pub fn from_config(config: HandshakeConfig, metrics: Metrics) -> Self {
        Self {
            config: config.with_dh_counter(metrics.dh_operations_counter()),
            metrics,
            log_limits: Arc::default(),
        }
    }

    /// Refuses inbound handshakes whose claimed PeerId `banned_peers` bans, before any
    /// cryptography ([`Error::Banned`], counted as `result="banned"`).
    pub fn with_banned_peers(mut self, banned_peers: BannedPeers) -> Self {
        self.config = self.config.with_banned_peers(banned_peers);
        self
    }

    /// The handshake config: our identity and auth mode.
    pub fn config(&self) -> &HandshakeConfig {
        &self.config
    }

    /// The counters this upgrader updates.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Dials: runs the initiator's side of the handshake with `remote_peer_id`, whose static
    /// key we expect to be `remote_public_key` (from its address). `now_millis` is the current
    /// time in milliseconds since the Unix epoch ([`now_millis`]); message 1 carries
    /// [`handshake_timestamp`]`(now_millis)`, which grows strictly over the whole process.
    ///
    /// Not cancel-safe (see the type's docs). Has no deadline of its own.
    pub async fn upgrade_outbound<S>(
        &self,
        socket: S,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
        now_millis: u64,
    ) -> Result<NoiseStream<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let result = self
            .outbound(socket, remote_peer_id, remote_public_key, now_millis)
            .await;
        self.record(Side::Initiator, remote_peer_id, result.as_ref().err());
        result
    }

    /// [`upgrade_outbound`](Self::upgrade_outbound) that fails with [`Error::Timeout`] after
    /// `timeout` (usually [`HANDSHAKE_TIMEOUT`]).
    pub async fn upgrade_outbound_with_timeout<S>(
        &self,
        socket: S,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
        now_millis: u64,
        timeout: Duration,
    ) -> Result<NoiseStream<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let upgrade = self.upgrade_outbound(socket, remote_peer_id, remote_public_key, now_millis);
        match tokio::time::timeout(timeout, upgrade).await {
            Ok(result) => result,
            Err(_elapsed) => {
                let err = Error::Timeout {
                    side: Side::Initiator,
                    timeout,
                };
                self.record(Side::Initiator, remote_peer_id, Some(&err));
                Err(err)
            }
        }
    }

    /// Accepts: runs the responder's side of the handshake and returns the stream and who is on
    /// the other end. On an error nothing has been sent; drop the socket.
    ///
    /// Not cancel-safe (see the type's docs). Has no deadline of its own: a peer that never
    /// sends holds the socket until the caller gives up, so prefer
    /// [`upgrade_inbound_with_timeout`](Self::upgrade_inbound_with_timeout).
    pub async fn upgrade_inbound<S>(&self, socket: S) -> Result<(NoiseStream<S>, RemotePeer), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let result = self.inbound(socket).await;
        let peer_id = match &result {
            Ok((_, remote)) => Some(remote.peer_id),
            Err(err) => claimed_peer_id(err),
        };
        self.record_inbound(peer_id, result.as_ref().err());
        result
    }

    /// [`upgrade_inbound`](Self::upgrade_inbound) that fails with [`Error::Timeout`] after
    /// `timeout` (usually [`HANDSHAKE_TIMEOUT`]).
    pub async fn upgrade_inbound_with_timeout<S>(
        &self,
        socket: S,
        timeout: Duration,
    ) -> Result<(NoiseStream<S>, RemotePeer), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(timeout, self.upgrade_inbound(socket)).await {
            Ok(result) => result,
            Err(_elapsed) => {
                let err = Error::Timeout {
                    side: Side::Responder,
                    timeout,
                };
                self.record_inbound(None, Some(&err));
                Err(err)
            }
        }
    }

    async fn outbound<S>(
        &self,
        mut socket: S,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
        now_millis: u64,
    ) -> Result<NoiseStream<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let side = Side::Initiator;
        let io = |source| Error::Io { side, source };
        let (initiator, first_message) = self.config.initiate(
            remote_peer_id,
            remote_public_key,
            handshake_timestamp(now_millis),
        )?;
        socket.write_all(&first_message).await.map_err(io)?;
        socket.flush().await.map_err(io)?;

        let mut second_message = [0u8; SECOND_MESSAGE_LEN];
        match read_full(&mut socket, &mut second_message).await {
            Ok(SECOND_MESSAGE_LEN) => {}
            // The responder closed without a byte: the AptosNet way of saying no.
            Ok(0) => {
                return Err(Error::Rejected {
                    peer_id: remote_peer_id,
                    source: None,
                });
            }
            Ok(received) => {
                return Err(Error::TruncatedMessage {
                    side,
                    received,
                    expected: SECOND_MESSAGE_LEN,
                });
            }
            // A responder that closes before reading all of message 1 (AptosNet rejects after
            // the prologue) makes its kernel reset the connection instead of closing it.
            Err((0, err)) if is_reset(&err) => {
                return Err(Error::Rejected {
                    peer_id: remote_peer_id,
                    source: Some(err),
                });
            }
            Err((_, err)) => return Err(io(err)),
        }
        let session = initiator.finish(&second_message)?;
        Ok(self.stream(NoiseStream::new(
            socket,
            session,
            remote_peer_id,
            remote_public_key,
        )))
    }

    async fn inbound<S>(&self, mut socket: S) -> Result<(NoiseStream<S>, RemotePeer), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let side = Side::Responder;
        let io = |source| Error::Io { side, source };
        let mut first_message = [0u8; FIRST_MESSAGE_LEN];
        match read_full(&mut socket, &mut first_message).await {
            Ok(FIRST_MESSAGE_LEN) => {}
            Ok(received) => {
                return Err(Error::TruncatedMessage {
                    side,
                    received,
                    expected: FIRST_MESSAGE_LEN,
                });
            }
            Err((_, err)) => return Err(io(err)),
        }
        let accepted = self.config.respond(&first_message, now_millis())?;
        socket
            .write_all(&accepted.second_message)
            .await
            .map_err(io)?;
        socket.flush().await.map_err(io)?;
        let remote = accepted.remote;
        let stream = self.stream(NoiseStream::new(
            socket,
            accepted.session,
            remote.peer_id,
            remote.public_key,
        ));
        Ok((stream, remote))
    }

    /// Hooks a new stream up to our counters.
    fn stream<S>(&self, stream: NoiseStream<S>) -> NoiseStream<S> {
        stream.with_counters(
            self.metrics.decrypt_failure_counter(),
            self.metrics
                .stream_error_counter(StreamErrorReason::TruncatedFrame),
        )
    }

    fn record(&self, side: Side, peer_id: PeerId, err: Option<&Error>) {
        match err {
            None => {
                self.metrics.record_handshake(side, HandshakeOutcome::Ok);
                tracing::debug!(%side, peer = %peer_id, "noise handshake complete");
            }
            Some(err) => {
                let outcome = err.handshake_outcome().unwrap_or(HandshakeOutcome::Io);
                self.metrics.record_handshake(side, outcome);
                if outcome == HandshakeOutcome::Setup {
                    // Our own parameters were refused: a bug, not the network.
                    tracing::error!(%side, peer = %peer_id, error = %err, "noise handshake failed");
                } else {
                    tracing::debug!(
                        %side,
                        peer = %peer_id,
                        result = outcome.as_str(),
                        error = %err,
                        "noise handshake failed"
                    );
                }
            }
        }
    }

    /// Counts and logs an inbound outcome. Failures that only an attacker or a badly broken
    /// peer produce (a trusted PeerId with the wrong key, a replay, a low-order key, a clock
    /// far off) are `warn!`; the common ones (scanners, stale keys, unknown or banned peers,
    /// dropped connections) are `debug!`. A remote can produce either at will, so both are
    /// rate-limited ([`REFUSAL_LOG_LINES_PER_MINUTE`] per level), with the count of lines
    /// suppressed before each line let through; the metric counts every one.
    fn record_inbound(&self, peer_id: Option<PeerId>, err: Option<&Error>) {
        let side = Side::Responder;
        let Some(err) = err else {
            self.metrics.record_handshake(side, HandshakeOutcome::Ok);
            tracing::debug!(%side, peer = peer_id.as_ref().map(tracing::field::display), "noise handshake complete");
            return;
        };
        let outcome = err.handshake_outcome().unwrap_or(HandshakeOutcome::Io);
        self.metrics.record_handshake(side, outcome);
        let result = outcome.as_str();
        match outcome {
            HandshakeOutcome::KeyMismatch
            | HandshakeOutcome::ReplayedTimestamp
            | HandshakeOutcome::ReplayedMessage
            | HandshakeOutcome::StaleTimestamp
            | HandshakeOutcome::LowOrderKey => {
                if let Some(suppressed) = self.log_limits.warn.allow(Instant::now()) {
                    tracing::warn!(%side, peer = peer_id.as_ref().map(tracing::field::display), result, error = %err, suppressed, "noise handshake rejected");
                }
            }
            HandshakeOutcome::Setup => {
                tracing::error!(%side, peer = peer_id.as_ref().map(tracing::field::display), error = %err, "noise handshake failed");
            }
            _ => {
                if tracing::enabled!(tracing::Level::DEBUG)
                    && let Some(suppressed) = self.log_limits.debug.allow(Instant::now())
                {
                    tracing::debug!(%side, peer = peer_id.as_ref().map(tracing::field::display), result, error = %err, suppressed, "noise handshake rejected");
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch by the system clock, for
/// [`NoiseUpgrader::upgrade_outbound`]'s `now_millis` (0 if the clock is before 1970).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The PeerId an inbound error names, for logs (not authenticated unless the error says so).
fn claimed_peer_id(err: &Error) -> Option<PeerId> {
    match err {
        Error::SelfDial { peer_id, .. }
        | Error::WrongExpectedKey { peer_id, .. }
        | Error::MalformedMessage { peer_id, .. }
        | Error::UnknownPeer { peer_id }
        | Error::KeyMismatch { peer_id, .. }
        | Error::PeerIdMismatch { peer_id, .. }
        | Error::ReplayedTimestamp { peer_id, .. }
        | Error::Banned { peer_id }
        | Error::ReplayedMessage { peer_id }
        | Error::StaleTimestamp { peer_id, .. }
        | Error::LowOrderKey { peer_id, .. } => Some(*peer_id),
        _ => None,
    }
}

/// Fills `buf` unless the stream ends first. Returns how many bytes arrived: `buf.len()`, or
/// fewer at EOF. On an error, also says how many bytes had arrived.
async fn read_full<S>(socket: &mut S, buf: &mut [u8]) -> Result<usize, (usize, io::Error)>
where
    S: AsyncRead + Unpin,
{
    let mut filled = 0;
    while filled < buf.len() {
        match socket.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err((filled, err)),
        }
    }
    Ok(filled)
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
