//! The AptosNet Noise IK handshake, sans-IO: bytes in, bytes and a session out.
//!
//! ```text
//! initiator                                                    responder
//!   HandshakeConfig::initiate(remote, now_millis)
//!     ── message 1 (168 bytes) ───────────────────────────────►  HandshakeConfig::respond
//!        prologue: initiator PeerId (32) ‖ expected responder key (32)   1. self-dial?
//!        e (32) ‖ enc(s) (48) ‖ enc(now_millis u64 LE) (24)              2. expected key ours?
//!                                                                        3. banned? trusted?
//!                                                                        4. e low order? seen?
//!                                                                        5. decrypt (2 DH)
//!                                                                        6. authenticate
//!                                                                        7. fresh? anti-replay
//!     ◄── message 2 (48 bytes): e (32) ‖ enc(empty) (16) ───────  8. reply (new e, 2 DH)
//!   Initiator::finish(message 2)
//! ```
//!
//! Everything a remote can send at will is refused as early as possible: the checks of steps
//! 1-4 read only the clear prologue and ephemeral key and cost no Diffie-Hellman, so an
//! untrusted (mutual mode) or banned PeerId and a replayed message 1 cost the responder no
//! cryptography. The DH itself refuses an all-zero result (a low-order key), on both sides.
//!
//! Both ends come out with a [`snow::StatelessTransportState`] for
//! [`NoiseStream`](crate::NoiseStream): the keys of both directions, with the nonces left to the
//! stream, so that its read and write halves can each keep their own.
//! Time is an input (`now_millis`); the ephemeral keys come from snow's OS-backed RNG.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use netcore::PeerId;
use prometheus_client::metrics::counter::Counter;
use snow::{HandshakeState, StatelessTransportState};

use crate::auth::{BannedPeers, HandshakeAuthMode, PeerRole};
use crate::dh::{CheckedResolver, StaticKeyPair};
use crate::error::Error;
use crate::keys::{KEY_LEN, PrivateKey, PublicKey, peer_id_from_public_key};
use crate::replay::{EphemeralCache, REPLAY_CACHE_CAPACITY, TIMESTAMP_WINDOW, is_fresh};
use crate::side::Side;

/// The Noise protocol AptosNet v1 speaks.
pub const PROTOCOL_NAME: &str = "Noise_IK_25519_AESGCM_SHA256";

/// Length of the prologue: the initiator's PeerId then the responder key it expects.
pub const PROLOGUE_LEN: usize = PeerId::LENGTH + KEY_LEN;

/// Length of message 1 on the wire: prologue (64) + `e` (32) + encrypted `s` (32 + 16-byte tag)
/// + encrypted timestamp (8 + 16-byte tag). There is no length prefix.
pub const FIRST_MESSAGE_LEN: usize = PROLOGUE_LEN + KEY_LEN + (KEY_LEN + TAG_LEN) + PAYLOAD_LEN;

/// Length of message 2 on the wire: `e` (32) + encrypted empty payload (16-byte tag).
pub const SECOND_MESSAGE_LEN: usize = KEY_LEN + TAG_LEN;

/// AES-GCM authentication tag.
const TAG_LEN: usize = 16;
/// The encrypted timestamp in message 1: a u64 plus its tag.
const PAYLOAD_LEN: usize = 8 + TAG_LEN;

/// Which implementation of AES-GCM and SHA-256 snow uses. X25519 is curve25519-dalek in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CryptoBackend {
    /// ring: AES-NI/PCLMULQDQ (or ARMv8 crypto) accelerated, the fastest on common hardware.
    #[default]
    Ring,
    /// Pure Rust (RustCrypto `aes-gcm`, `sha2`): the portable fallback and benchmark baseline.
    RustCrypto,
}

impl CryptoBackend {
    /// A snow builder for [`PROTOCOL_NAME`] on this backend, with snow's own X25519 (no
    /// low-order check: the handshakes use [`HandshakeConfig`], which adds one).
    pub fn builder(self) -> snow::Builder<'static> {
        snow::Builder::with_resolver(params(), self.resolver())
    }

    /// The builder the handshakes use: an all-zero DH result is an error, every DH is counted
    /// into `dh_operations`, and `static_key`'s public half is not computed again.
    fn checked_builder(
        self,
        dh_operations: &Counter,
        static_key: &Arc<StaticKeyPair>,
    ) -> snow::Builder<'static> {
        let resolver = CheckedResolver::new(
            self.resolver(),
            dh_operations.clone(),
            Some(Arc::clone(static_key)),
        );
        snow::Builder::with_resolver(params(), Box::new(resolver))
    }

    fn resolver(self) -> snow::resolvers::BoxedCryptoResolver {
        use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
        match self {
            // What `snow::Builder::new` picks with the ring feature.
            Self::Ring => Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
            Self::RustCrypto => Box::new(DefaultResolver),
        }
    }
}

fn params() -> snow::params::NoiseParams {
    // Cannot fail: the name is a constant that names an IK pattern and primitives enabled by
    // this crate's snow features (the tests build it).
    PROTOCOL_NAME
        .parse()
        .expect("PROTOCOL_NAME is a valid noise pattern")
}

/// Everything one node needs to run handshakes in both directions: its identity, how it
/// authenticates initiators, and the crypto backend. Shared by all of the node's connections
/// (clone it, or share it behind an `Arc`).
///
/// # Calling protocol
///
/// - Dialing: [`initiate`](Self::initiate), send the 168 bytes it returns, read 48 bytes,
///   [`Initiator::finish`] them.
/// - Accepting: read 168 bytes, [`respond`](Self::respond), send
///   [`Accepted::second_message`]. On an error send nothing and close the socket.
///
/// # Replay defences
///
/// The responder remembers the ephemeral keys of the last [`REPLAY_CACHE_CAPACITY`] messages 1
/// that decrypted (about 300 KiB when full, shared by the clones) and refuses a message that
/// reuses one before any Diffie-Hellman; it also refuses a timestamp more than
/// [`TIMESTAMP_WINDOW`] from its clock. A replayed message 1 then costs it no DH while its
/// original is among the last 4,096, two DH (decrypting the timestamp) once it is older than
/// the window, and the four of a full handshake only in between, when more than 4,096 genuine
/// messages 1 came after it within the window.
#[derive(Clone)]
pub struct HandshakeConfig {
    peer_id: PeerId,
    private_key: PrivateKey,
    public_key: PublicKey,
    /// Our static key with its public half, for snow without deriving it per handshake.
    static_key: Arc<StaticKeyPair>,
    auth_mode: HandshakeAuthMode,
    backend: CryptoBackend,
    banned_peers: Option<BannedPeers>,
    ephemeral_keys: Arc<EphemeralCache>,
    timestamp_window: Option<Duration>,
    dh_operations: Counter,
}

impl HandshakeConfig {
    /// A config for the node `peer_id` with static key `private_key`, on the ring backend.
    pub fn new(peer_id: PeerId, private_key: PrivateKey, auth_mode: HandshakeAuthMode) -> Self {
        let static_key = Arc::new(StaticKeyPair::new(private_key.to_bytes()));
        Self {
            peer_id,
            public_key: PublicKey::from(static_key.public()),
            static_key,
            private_key,
            auth_mode,
            backend: CryptoBackend::default(),
            banned_peers: None,
            ephemeral_keys: Arc::new(EphemeralCache::new(REPLAY_CACHE_CAPACITY)),
            timestamp_window: Some(TIMESTAMP_WINDOW),
            dh_operations: Counter::default(),
        }
    }

    /// Refuses initiators whose prologue PeerId `banned_peers` bans, before any cryptography
    /// ([`Error::Banned`]).
    pub fn with_banned_peers(mut self, banned_peers: BannedPeers) -> Self {
        self.banned_peers = Some(banned_peers);
        self
    }

    /// Remembers the ephemeral keys of the last `capacity` messages 1 (default
    /// [`REPLAY_CACHE_CAPACITY`]; 0 turns the cache off). Starts an empty cache, no longer
    /// shared with clones made before.
    pub fn with_replay_cache_capacity(mut self, capacity: usize) -> Self {
        self.ephemeral_keys = Arc::new(EphemeralCache::new(capacity));
        self
    }

    /// Refuses a message 1 whose timestamp is further than `window` from the responder's clock
    /// (default [`TIMESTAMP_WINDOW`]; `None` turns the check off, as AptosNet has none).
    pub fn with_timestamp_window(mut self, window: Option<Duration>) -> Self {
        self.timestamp_window = window;
        self
    }

    /// Counts Diffie-Hellman operations into `counter` (the upgrader's metric).
    pub(crate) fn with_dh_counter(mut self, counter: Counter) -> Self {
        self.dh_operations = counter;
        self
    }

    /// X25519 Diffie-Hellman operations this config's handshakes ran so far (both sides).
    pub fn dh_operations(&self) -> u64 {
        self.dh_operations.get()
    }

    /// The ban check, if any.
    pub fn banned_peers(&self) -> Option<&BannedPeers> {
        self.banned_peers.as_ref()
    }

    /// How many ephemeral keys the replay cache holds at most, and holds now.
    pub fn replay_cache_usage(&self) -> (usize, usize) {
        (self.ephemeral_keys.capacity(), self.ephemeral_keys.len())
    }

    /// The freshness window on message 1's timestamp.
    pub fn timestamp_window(&self) -> Option<Duration> {
        self.timestamp_window
    }

    /// Uses `backend` for AES-GCM and SHA-256.
    pub fn with_backend(mut self, backend: CryptoBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Our static public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// How we authenticate initiators.
    pub fn auth_mode(&self) -> &HandshakeAuthMode {
        &self.auth_mode
    }

    /// The crypto backend.
    pub fn backend(&self) -> CryptoBackend {
        self.backend
    }

    /// Starts a handshake with `remote_peer_id`, whose static key we expect to be
    /// `remote_public_key`, and returns message 1 to send. `now_millis` (milliseconds since the
    /// Unix epoch, see [`now_millis`](crate::now_millis)) must grow between two dials of the same
    /// responder, or a mutual-mode responder rejects the second as a replay, and stay within
    /// the responder's freshness window of its clock: pass
    /// [`handshake_timestamp`](crate::handshake_timestamp)`(now)`, as the upgrader does.
    ///
    /// Fails with [`Error::SelfDial`] if the remote key or PeerId is ours, and with
    /// [`Error::LowOrderKey`] if the remote key is a low-order point (no node has one).
    pub fn initiate(
        &self,
        remote_peer_id: PeerId,
        remote_public_key: PublicKey,
        now_millis: u64,
    ) -> Result<(Initiator, [u8; FIRST_MESSAGE_LEN]), Error> {
        if remote_public_key == self.public_key || remote_peer_id == self.peer_id {
            return Err(Error::SelfDial {
                side: Side::Initiator,
                peer_id: remote_peer_id,
            });
        }
        if remote_public_key.is_low_order() {
            return Err(Error::LowOrderKey {
                side: Side::Initiator,
                peer_id: remote_peer_id,
            });
        }
        let setup = |source| Error::Setup {
            side: Side::Initiator,
            source,
        };

        let mut message = [0u8; FIRST_MESSAGE_LEN];
        message[..PeerId::LENGTH].copy_from_slice(self.peer_id.as_bytes());
        message[PeerId::LENGTH..PROLOGUE_LEN].copy_from_slice(remote_public_key.as_bytes());
        let mut state = self
            .backend
            .checked_builder(&self.dh_operations, &self.static_key)
            .local_private_key(self.private_key.as_bytes())
            .and_then(|b| b.remote_public_key(remote_public_key.as_bytes()))
            .and_then(|b| b.prologue(&message[..PROLOGUE_LEN]))
            .and_then(snow::Builder::build_initiator)
            .map_err(setup)?;
        let written = state
            .write_message(&now_millis.to_le_bytes(), &mut message[PROLOGUE_LEN..])
            .map_err(setup)?;
        debug_assert_eq!(PROLOGUE_LEN + written, FIRST_MESSAGE_LEN);

        let initiator = Initiator {
            state,
            remote_peer_id,
            remote_public_key,
        };
        Ok((initiator, message))
    }

    /// Checks message 1, received at `now_millis` (milliseconds since the Unix epoch, see
    /// [`now_millis`](crate::now_millis)), and, if it passes, builds message 2 and the session.
    ///
    /// The checks run cheapest first, in AptosNet's order plus the replay and key checks
    /// AptosNet lacks, and the first failure is returned:
    /// 1. at least 168 bytes ([`Error::TruncatedMessage`]);
    /// 2. self-dial: the prologue's PeerId is ours ([`Error::SelfDial`]);
    /// 3. the expected key in the prologue is ours ([`Error::WrongExpectedKey`]);
    /// 4. the prologue's PeerId is not banned ([`Error::Banned`]) and, in mutual mode, is in
    ///    the trusted set ([`Error::UnknownPeer`]);
    /// 5. the Noise message has the right length ([`Error::MalformedMessage`]), its ephemeral
    ///    key is not a low-order point ([`Error::LowOrderKey`]) and was not seen in a recent
    ///    message 1 ([`Error::ReplayedMessage`]);
    /// 6. the Noise message decrypts, two DH ([`Error::MalformedMessage`]; a low-order static
    ///    key makes the second DH all zeros: [`Error::LowOrderKey`]); its ephemeral key is
    ///    recorded (a copy that raced it: [`Error::ReplayedMessage`]);
    /// 7. authentication ([`Error::UnknownPeer`], [`Error::KeyMismatch`],
    ///    [`Error::PeerIdMismatch`]);
    /// 8. the timestamp is within the freshness window of `now_millis`
    ///    ([`Error::StaleTimestamp`]);
    /// 9. in mutual mode, anti-replay ([`Error::ReplayedTimestamp`]); an accepted timestamp
    ///    is recorded here, so a caller that fails to send message 2 has still used it up.
    ///
    /// Steps 1-5 cost no cryptography. Only after step 9 do we pay for message 2 (a new
    /// ephemeral key and two more DH).
    pub fn respond(&self, first_message: &[u8], now_millis: u64) -> Result<Accepted, Error> {
        let side = Side::Responder;
        if first_message.len() < FIRST_MESSAGE_LEN {
            return Err(Error::TruncatedMessage {
                side,
                received: first_message.len(),
                expected: FIRST_MESSAGE_LEN,
            });
        }
        let (prologue, noise_message) = first_message.split_at(PROLOGUE_LEN);
        // Cannot fail: `prologue` is 64 bytes, so both halves have exactly 32.
        let peer_id = PeerId::new(prologue[..PeerId::LENGTH].try_into().expect("32 bytes"));
        let expected: [u8; KEY_LEN] = prologue[PeerId::LENGTH..].try_into().expect("32 bytes");
        let malformed = |source| Error::MalformedMessage {
            side,
            peer_id,
            source,
        };

        if peer_id == self.peer_id {
            return Err(Error::SelfDial { side, peer_id });
        }
        if expected != self.public_key.to_bytes() {
            return Err(Error::WrongExpectedKey {
                peer_id,
                expected: PublicKey::from(expected),
            });
        }
        if self
            .banned_peers
            .as_ref()
            .is_some_and(|banned| banned.is_banned(&peer_id))
        {
            return Err(Error::Banned { peer_id });
        }
        // Mutual mode names who may connect in the clear prologue: anyone else is refused
        // before any DH. Authentication below still checks the key.
        if let HandshakeAuthMode::Mutual { trusted_peers, .. } = &self.auth_mode
            && !trusted_peers.snapshot().contains_key(&peer_id)
        {
            return Err(Error::UnknownPeer { peer_id });
        }

        if noise_message.len() != FIRST_MESSAGE_LEN - PROLOGUE_LEN {
            return Err(malformed(snow::Error::Input));
        }
        // Cannot fail: the Noise message is longer than a key.
        let ephemeral = PublicKey::from(
            <[u8; KEY_LEN]>::try_from(&noise_message[..KEY_LEN]).expect("32 bytes"),
        );
        if ephemeral.is_low_order() {
            return Err(Error::LowOrderKey { side, peer_id });
        }
        if self.ephemeral_keys.contains(&ephemeral) {
            return Err(Error::ReplayedMessage { peer_id });
        }

        let setup = |source| Error::Setup { side, source };
        let mut state = self
            .backend
            .checked_builder(&self.dh_operations, &self.static_key)
            .local_private_key(self.private_key.as_bytes())
            .and_then(|b| b.prologue(prologue))
            .and_then(snow::Builder::build_responder)
            .map_err(setup)?;
        let mut payload = [0u8; 8];
        let payload_len = state
            .read_message(noise_message, &mut payload)
            .map_err(|source| match source {
                // The ephemeral key passed the low-order check, so the all-zero DH was `ss`.
                snow::Error::Dh => Error::LowOrderKey { side, peer_id },
                source => malformed(source),
            })?;
        if payload_len != payload.len() {
            return Err(malformed(snow::Error::Input));
        }
        // Only now, once the sender proved it holds the ephemeral key (or replays a message
        // that did), so garbage cannot push genuine keys out of the cache.
        if !self.ephemeral_keys.insert(ephemeral) {
            return Err(Error::ReplayedMessage { peer_id });
        }
        let timestamp = u64::from_le_bytes(payload);
        let public_key = remote_static_key(&state).ok_or_else(|| malformed(snow::Error::Input))?;

        let role = self.authenticate(peer_id, &public_key)?;
        if let Some(window) = self.timestamp_window
            && !is_fresh(timestamp, now_millis, window)
        {
            return Err(Error::StaleTimestamp {
                peer_id,
                timestamp,
                now: now_millis,
                window,
            });
        }
        if let HandshakeAuthMode::Mutual {
            trusted_peers,
            anti_replay,
        } = &self.auth_mode
        {
            // A poisoned lock still holds a consistent map: every update is a single insert.
            let mut anti_replay = anti_replay
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            anti_replay
                .check_and_record(&public_key, timestamp)
                .map_err(|last| Error::ReplayedTimestamp {
                    peer_id,
                    timestamp,
                    last,
                })?;
            // Keep the map bounded by the trusted set: drop keys that are no longer trusted once
            // there are more entries than trusted keys (only after the set shrank).
            let trusted = trusted_peers.snapshot();
            if anti_replay.len() > trusted.values().map(|peer| peer.keys.len()).sum() {
                anti_replay.retain(|key| trusted.values().any(|peer| peer.keys.contains(key)));
            }
        }

        let mut second_message = [0u8; SECOND_MESSAGE_LEN];
        let written = state
            .write_message(&[], &mut second_message)
            .map_err(setup)?;
        debug_assert_eq!(written, SECOND_MESSAGE_LEN);
        let session = state.into_stateless_transport_mode().map_err(setup)?;
        Ok(Accepted {
            remote: RemotePeer {
                peer_id,
                public_key,
                role,
            },
            second_message,
            session,
        })
    }

    /// Decides whether the initiator `peer_id`, proven to hold `public_key`, may connect, and
    /// with which role.
    fn authenticate(&self, peer_id: PeerId, public_key: &PublicKey) -> Result<PeerRole, Error> {
        let (trusted_peers, unknown_peer_role) = match &self.auth_mode {
            HandshakeAuthMode::Mutual { trusted_peers, .. } => (trusted_peers, None),
            HandshakeAuthMode::MaybeMutual {
                trusted_peers,
                unknown_peer_role,
            } => (trusted_peers, Some(*unknown_peer_role)),
        };
        match (trusted_peers.snapshot().get(&peer_id), unknown_peer_role) {
            (Some(peer), _) if peer.keys.contains(public_key) => Ok(peer.role),
            (Some(_), _) => Err(Error::KeyMismatch {
                peer_id,
                public_key: *public_key,
            }),
            (None, None) => Err(Error::UnknownPeer { peer_id }),
            (None, Some(role)) => {
                let derived = peer_id_from_public_key(public_key);
                if derived == peer_id {
                    Ok(role)
                } else {
                    Err(Error::PeerIdMismatch { peer_id, derived })
                }
            }
        }
    }
}

impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("HandshakeConfig")
            .field("peer_id", &self.peer_id)
            .field("public_key", &hex::encode(self.public_key.as_bytes()))
            .field("auth_mode", &self.auth_mode)
            .field("backend", &self.backend)
            .field("banned_peers", &self.banned_peers)
            .field("replay_cache_usage", &self.replay_cache_usage())
            .field("timestamp_window", &self.timestamp_window)
            .finish_non_exhaustive()
    }
}

/// A dial in progress: message 1 is out, message 2 is awaited.
pub struct Initiator {
    state: HandshakeState,
    remote_peer_id: PeerId,
    remote_public_key: PublicKey,
}

impl Initiator {
    /// The peer we are dialing.
    pub fn remote_peer_id(&self) -> PeerId {
        self.remote_peer_id
    }

    /// The static key we expect the peer to have.
    pub fn remote_public_key(&self) -> PublicKey {
        self.remote_public_key
    }

    /// Processes message 2 and returns the session.
    ///
    /// Fails with [`Error::TruncatedMessage`] if it is shorter than 48 bytes,
    /// [`Error::LowOrderKey`] if its ephemeral key is a low-order point, and
    /// [`Error::MalformedMessage`] if it is longer or does not decrypt (the responder does not
    /// hold the key we expected, or the message was tampered with).
    pub fn finish(mut self, second_message: &[u8]) -> Result<StatelessTransportState, Error> {
        let side = Side::Initiator;
        let malformed = |source| Error::MalformedMessage {
            side,
            peer_id: self.remote_peer_id,
            source,
        };
        if second_message.len() < SECOND_MESSAGE_LEN {
            return Err(Error::TruncatedMessage {
                side,
                received: second_message.len(),
                expected: SECOND_MESSAGE_LEN,
            });
        }
        if second_message.len() > SECOND_MESSAGE_LEN {
            return Err(malformed(snow::Error::Input));
        }
        let low_order = Error::LowOrderKey {
            side,
            peer_id: self.remote_peer_id,
        };
        // Cannot fail: message 2 is 48 bytes.
        let ephemeral = PublicKey::from(
            <[u8; KEY_LEN]>::try_from(&second_message[..KEY_LEN]).expect("32 bytes"),
        );
        if ephemeral.is_low_order() {
            return Err(low_order);
        }
        // Message 2 carries an empty payload. An all-zero DH here is a low-order key the list
        // missed (the checked DH refuses it all the same).
        self.state
            .read_message(second_message, &mut [])
            .map_err(|source| match source {
                snow::Error::Dh => low_order,
                source => malformed(source),
            })?;
        self.state
            .into_stateless_transport_mode()
            .map_err(|source| Error::Setup { side, source })
    }
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("remote_peer_id", &self.remote_peer_id)
            .finish_non_exhaustive()
    }
}

/// The responder's result of an accepted message 1.
pub struct Accepted {
    /// Who connected.
    pub remote: RemotePeer,
    /// Message 2, to send to the initiator as is.
    pub second_message: [u8; SECOND_MESSAGE_LEN],
    /// The session, for [`NoiseStream`](crate::NoiseStream).
    pub session: StatelessTransportState,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// An authenticated initiator, as the responder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemotePeer {
    /// Its PeerId (trusted, or derived from its key in MaybeMutual mode).
    pub peer_id: PeerId,
    /// The static key it proved it holds.
    pub public_key: PublicKey,
    /// Its role from the trusted set, or the unknown-peer role.
    pub role: PeerRole,
}

fn remote_static_key(state: &HandshakeState) -> Option<PublicKey> {
    let bytes: [u8; KEY_LEN] = state.get_remote_static()?.try_into().ok()?;
    Some(PublicKey::from(bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::auth::{TrustedPeer, TrustedPeers};
    use crate::keys::generate_private_key;

    struct Node {
        config: HandshakeConfig,
    }

    impl Node {
        fn new(seed: u64, auth_mode: HandshakeAuthMode) -> Self {
            let private_key = generate_private_key(&mut StdRng::seed_from_u64(seed));
            let public_key = PublicKey::from(&private_key);
            let peer_id = peer_id_from_public_key(&public_key);
            Self {
                config: HandshakeConfig::new(peer_id, private_key, auth_mode),
            }
        }
    }

    fn trusting(nodes: &[&Node]) -> TrustedPeers {
        let map: HashMap<_, _> = nodes
            .iter()
            .map(|node| {
                let config = &node.config;
                (
                    config.peer_id(),
                    TrustedPeer::new(PeerRole::Validator, [config.public_key()]),
                )
            })
            .collect();
        map.into_iter().collect()
    }

    /// The pure handshake produces messages of exactly 168 and 48 bytes and two sessions that
    /// talk to each other, on both backends and across them.
    #[test]
    fn handshake_completes_with_exact_message_sizes_on_both_backends() {
        for (client_backend, server_backend) in [
            (CryptoBackend::Ring, CryptoBackend::Ring),
            (CryptoBackend::RustCrypto, CryptoBackend::RustCrypto),
            (CryptoBackend::Ring, CryptoBackend::RustCrypto),
        ] {
            let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
            let server = Node::new(2, HandshakeAuthMode::mutual(trusting(&[&client])));
            let client_config = client.config.clone().with_backend(client_backend);
            let server_config = server.config.clone().with_backend(server_backend);

            let (initiator, first) = client_config
                .initiate(server_config.peer_id(), server_config.public_key(), 42)
                .unwrap();
            assert_eq!(first.len(), 168);
            assert_eq!(&first[..32], client_config.peer_id().as_bytes());
            assert_eq!(&first[32..64], server_config.public_key().as_bytes());

            let accepted = server_config.respond(&first, 1).unwrap();
            assert_eq!(accepted.second_message.len(), 48);
            assert_eq!(accepted.remote.peer_id, client_config.peer_id());
            assert_eq!(accepted.remote.public_key, client_config.public_key());
            assert_eq!(accepted.remote.role, PeerRole::Validator);

            // The first transport message of each direction has nonce 0.
            let client_session = initiator.finish(&accepted.second_message).unwrap();
            let server_session = accepted.session;
            let mut sealed = [0u8; 64];
            let mut opened = [0u8; 64];
            let n = client_session
                .write_message(0, b"ping", &mut sealed)
                .unwrap();
            let m = server_session
                .read_message(0, &sealed[..n], &mut opened)
                .unwrap();
            assert_eq!(&opened[..m], b"ping");
        }
    }

    /// A message that is both a self-dial and aimed at the wrong key reports self-dial: the
    /// PeerId check comes first.
    #[test]
    fn self_dial_is_checked_before_the_expected_key() {
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let mut first = [0u8; FIRST_MESSAGE_LEN];
        first[..32].copy_from_slice(server.config.peer_id().as_bytes());
        first[32..64].copy_from_slice(&[9; 32]);
        assert!(matches!(
            server.config.respond(&first, 1),
            Err(Error::SelfDial {
                side: Side::Responder,
                ..
            })
        ));
    }

    /// Garbage aimed at the right key gets past the prologue checks and fails as malformed;
    /// short and long messages fail on their length.
    #[test]
    fn garbage_after_a_valid_prologue_is_malformed() {
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let mut first = [0x5a; FIRST_MESSAGE_LEN];
        first[32..64].copy_from_slice(server.config.public_key().as_bytes());
        assert!(matches!(
            server.config.respond(&first, 1),
            Err(Error::MalformedMessage { .. })
        ));
        assert!(matches!(
            server.config.respond(&first[..100], 1),
            Err(Error::TruncatedMessage {
                received: 100,
                expected: 168,
                ..
            })
        ));
        let mut long = first.to_vec();
        long.push(0);
        assert!(matches!(
            server.config.respond(&long, 1),
            Err(Error::MalformedMessage { .. })
        ));
    }

    /// MaybeMutual: an unknown PeerId must be the one derived from the key; a trusted PeerId
    /// must use one of its keys.
    #[test]
    fn maybe_mutual_checks_peer_ids_against_keys() {
        let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let impostor = HandshakeConfig::new(
            PeerId::new([7; 32]),
            generate_private_key(&mut StdRng::seed_from_u64(3)),
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
        );
        let trusted = TrustedPeers::new();
        trusted.insert(
            PeerId::new([8; 32]),
            TrustedPeer::new(PeerRole::Upstream, [PublicKey::from([1; 32])]),
        );
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(trusted));
        let (server_id, server_key) = (server.config.peer_id(), server.config.public_key());

        let (_, first) = client.config.initiate(server_id, server_key, 1).unwrap();
        let accepted = server.config.respond(&first, 1).unwrap();
        assert_eq!(accepted.remote.role, PeerRole::Unknown);

        let (_, first) = impostor.initiate(server_id, server_key, 1).unwrap();
        assert!(matches!(
            server.config.respond(&first, 1),
            Err(Error::PeerIdMismatch { .. })
        ));

        let claims_trusted = HandshakeConfig::new(
            PeerId::new([8; 32]),
            generate_private_key(&mut StdRng::seed_from_u64(4)),
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
        );
        let (_, first) = claims_trusted.initiate(server_id, server_key, 1).unwrap();
        assert!(matches!(
            server.config.respond(&first, 1),
            Err(Error::KeyMismatch { .. })
        ));
    }

    /// Anti-replay entries stay bounded by the trusted set: once a peer leaves it, its entry is
    /// dropped at the next accepted handshake.
    #[test]
    fn anti_replay_state_shrinks_with_the_trusted_set() {
        let a = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let b = Node::new(3, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let trusted = trusting(&[&a, &b]);
        let server = Node::new(2, HandshakeAuthMode::mutual(trusted.clone()));
        let (server_id, server_key) = (server.config.peer_id(), server.config.public_key());
        for (node, now) in [(&a, 1), (&b, 1)] {
            let (_, first) = node.config.initiate(server_id, server_key, now).unwrap();
            server.config.respond(&first, 1).unwrap();
        }
        trusted.remove(&a.config.peer_id());
        let (_, first) = b.config.initiate(server_id, server_key, 2).unwrap();
        server.config.respond(&first, 1).unwrap();
        let HandshakeAuthMode::Mutual { anti_replay, .. } = server.config.auth_mode() else {
            unreachable!("server is in mutual mode");
        };
        let anti_replay = anti_replay.lock().unwrap();
        assert_eq!(anti_replay.len(), 1);
        assert_eq!(anti_replay.last(&b.config.public_key()), Some(2));
    }

    /// Attack: flood a mutual-mode responder with messages 1 from a PeerId it does not trust,
    /// or from a banned one. The prologue says who it is, so the responder refuses without any
    /// Diffie-Hellman (it used to decrypt first: two DH per attempt).
    #[test]
    fn untrusted_or_banned_peer_ids_are_refused_before_any_dh() {
        let stranger = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let friend = Node::new(3, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let server = Node::new(2, HandshakeAuthMode::mutual(trusting(&[&friend])));
        let (server_id, server_key) = (server.config.peer_id(), server.config.public_key());
        let (_, first) = stranger.config.initiate(server_id, server_key, 1).unwrap();
        assert!(matches!(
            server.config.respond(&first, 1),
            Err(Error::UnknownPeer { peer_id }) if peer_id == stranger.config.peer_id()
        ));
        assert_eq!(server.config.dh_operations(), 0);

        // The ban check runs in both modes, before any DH, and only on the ids it names.
        let banned_id = friend.config.peer_id();
        for mode in [
            HandshakeAuthMode::mutual(trusting(&[&friend])),
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
        ] {
            let server = Node::new(2, mode);
            let config = server
                .config
                .clone()
                .with_banned_peers(BannedPeers::new(move |id| *id == banned_id));
            let (_, first) = friend.config.initiate(server_id, server_key, 1).unwrap();
            assert!(matches!(
                config.respond(&first, 1),
                Err(Error::Banned { peer_id }) if peer_id == banned_id
            ));
            assert_eq!(config.dh_operations(), 0);
        }
    }

    /// Attack: replay a captured message 1 to a MaybeMutual responder. The original costs
    /// four DH; each replay used to cost four more while the attacker does no crypto. Now the
    /// replay is refused on its ephemeral key before any DH.
    #[test]
    fn a_replayed_first_message_costs_no_dh() {
        let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let (server_id, server_key) = (server.config.peer_id(), server.config.public_key());
        let now = 1_000_000;
        let (_, first) = client.config.initiate(server_id, server_key, now).unwrap();
        server.config.respond(&first, now).unwrap();
        assert_eq!(server.config.dh_operations(), 4);
        for _ in 0..10 {
            assert!(matches!(
                server.config.respond(&first, now + 1),
                Err(Error::ReplayedMessage { peer_id }) if peer_id == client.config.peer_id()
            ));
        }
        assert_eq!(server.config.dh_operations(), 4);
        assert_eq!(
            server.config.replay_cache_usage(),
            (REPLAY_CACHE_CAPACITY, 1)
        );
        // Mutual mode used to pay two DH per replay (its timestamps caught it after decrypting).
        let server = Node::new(2, HandshakeAuthMode::mutual(trusting(&[&client])));
        let (_, first) = client.config.initiate(server_id, server_key, now).unwrap();
        server.config.respond(&first, now).unwrap();
        assert!(matches!(
            server.config.respond(&first, now),
            Err(Error::ReplayedMessage { .. })
        ));
        assert_eq!(server.config.dh_operations(), 4);
    }

    /// A replay whose original was pushed out of the cache is refused by the freshness window
    /// once the original is older than the window: two DH (decrypting the timestamp), no
    /// message 2. Timestamps too far ahead are refused the same way, in both modes.
    #[test]
    fn stale_or_future_timestamps_are_refused() {
        let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let config = server.config.clone().with_replay_cache_capacity(1);
        let (server_id, server_key) = (config.peer_id(), config.public_key());
        let window = u64::try_from(TIMESTAMP_WINDOW.as_millis()).unwrap();
        let now = 10 * window;
        let (_, captured) = client.config.initiate(server_id, server_key, now).unwrap();
        config.respond(&captured, now).unwrap();
        let (_, newer) = client.config.initiate(server_id, server_key, now).unwrap();
        config.respond(&newer, now).unwrap();
        let before = config.dh_operations();
        assert!(matches!(
            config.respond(&captured, now + window + 1),
            Err(Error::StaleTimestamp { timestamp, .. }) if timestamp == now
        ));
        assert_eq!(config.dh_operations() - before, 2);

        let mutual = Node::new(2, HandshakeAuthMode::mutual(trusting(&[&client])));
        for (config, skew) in [(&server.config, window + 1), (&mutual.config, window + 1)] {
            for timestamp in [now - skew, now + skew] {
                let (_, first) = client
                    .config
                    .initiate(server_id, server_key, timestamp)
                    .unwrap();
                assert!(matches!(
                    config.respond(&first, now),
                    Err(Error::StaleTimestamp { .. })
                ));
            }
            // At the edge of the window it is accepted; with the check off, anything is.
            let (_, first) = client
                .config
                .initiate(server_id, server_key, now - window)
                .unwrap();
            config.respond(&first, now).unwrap();
        }
        let (_, first) = client.config.initiate(server_id, server_key, 1).unwrap();
        server
            .config
            .clone()
            .with_timestamp_window(None)
            .respond(&first, now)
            .unwrap();
    }

    /// snow's X25519 with a static key we choose, for an attacker: when `point` is set, the
    /// static key claims to be that (low-order) point, and its DH returns what the peer gets
    /// with it: all zeros. Ephemeral keys stay genuine.
    struct LowOrderStaticResolver {
        point: [u8; 32],
    }

    struct LowOrderStatic {
        inner: Box<dyn snow::types::Dh>,
        point: [u8; 32],
        fake: bool,
    }

    impl snow::resolvers::CryptoResolver for LowOrderStaticResolver {
        fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
            snow::resolvers::DefaultResolver.resolve_rng()
        }
        fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
            Some(Box::new(LowOrderStatic {
                inner: snow::resolvers::DefaultResolver.resolve_dh(choice)?,
                point: self.point,
                fake: false,
            }))
        }
        fn resolve_hash(
            &self,
            choice: &snow::params::HashChoice,
        ) -> Option<Box<dyn snow::types::Hash>> {
            snow::resolvers::DefaultResolver.resolve_hash(choice)
        }
        fn resolve_cipher(
            &self,
            choice: &snow::params::CipherChoice,
        ) -> Option<Box<dyn snow::types::Cipher>> {
            snow::resolvers::DefaultResolver.resolve_cipher(choice)
        }
    }

    impl snow::types::Dh for LowOrderStatic {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn pub_len(&self) -> usize {
            32
        }
        fn priv_len(&self) -> usize {
            32
        }
        fn set(&mut self, privkey: &[u8]) {
            self.fake = true;
            self.inner.set(privkey);
        }
        fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
            self.fake = false;
            self.inner.generate(rng)
        }
        fn pubkey(&self) -> &[u8] {
            if self.fake {
                &self.point
            } else {
                self.inner.pubkey()
            }
        }
        fn privkey(&self) -> &[u8] {
            self.inner.privkey()
        }
        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            if self.fake {
                out[..32].fill(0);
                Ok(())
            } else {
                self.inner.dh(pubkey, out)
            }
        }
    }

    fn attacker_builder(point: PublicKey) -> snow::Builder<'static> {
        snow::Builder::with_resolver(
            params(),
            Box::new(LowOrderStaticResolver {
                point: point.to_bytes(),
            }),
        )
    }

    /// Attack, responder side: on a MaybeMutual network, claim a low-order point as static key
    /// and PeerId. Without holding any private key the attacker used to get a session as that
    /// PeerId; now the all-zero `ss` DH is refused. A low-order ephemeral key is refused
    /// before any DH.
    #[test]
    fn low_order_keys_in_message_1_are_refused() {
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let server_key = server.config.public_key();
        let now: u64 = 1_000_000;
        for point in netcore::low_order_points() {
            let mut first = [0u8; FIRST_MESSAGE_LEN];
            first[..32].copy_from_slice(point.as_bytes());
            first[32..64].copy_from_slice(server_key.as_bytes());
            let mut attacker = attacker_builder(point)
                .local_private_key(&[0x42; 32])
                .and_then(|b| b.remote_public_key(server_key.as_bytes()))
                .and_then(|b| b.prologue(&first[..PROLOGUE_LEN]))
                .and_then(snow::Builder::build_initiator)
                .unwrap();
            attacker
                .write_message(&now.to_le_bytes(), &mut first[PROLOGUE_LEN..])
                .unwrap();
            let result = server.config.respond(&first, now);
            assert!(
                matches!(result, Err(Error::LowOrderKey { side: Side::Responder, peer_id })
                    if peer_id.as_bytes() == point.as_bytes()),
                "{point}: {result:?}"
            );
        }

        let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let (server_id, _) = (server.config.peer_id(), server_key);
        let before = server.config.dh_operations();
        for point in netcore::low_order_points() {
            let (_, mut first) = client.config.initiate(server_id, server_key, now).unwrap();
            first[PROLOGUE_LEN..PROLOGUE_LEN + 32].copy_from_slice(point.as_bytes());
            assert!(matches!(
                server.config.respond(&first, now),
                Err(Error::LowOrderKey { .. })
            ));
        }
        assert_eq!(server.config.dh_operations(), before);
    }

    /// Attack, initiator side: an address with a low-order key lets anyone answer as that
    /// node (every DH with it is zero), so the initiator refuses to dial it; a message 2 with
    /// a low-order ephemeral key is refused too.
    #[test]
    fn low_order_keys_are_refused_by_the_initiator() {
        let client = Node::new(1, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        let server = Node::new(2, HandshakeAuthMode::maybe_mutual(TrustedPeers::new()));
        for point in netcore::low_order_points() {
            let result = client.config.initiate(keys_peer_id(point), point, 1);
            assert!(
                matches!(
                    result,
                    Err(Error::LowOrderKey {
                        side: Side::Initiator,
                        ..
                    })
                ),
                "{point}"
            );
        }
        // The impersonation the check prevents: an attacker with no private key answers a
        // dial to the low-order key (snow without the check completes it).
        let point = netcore::low_order_points().next().unwrap();
        let mut first = [0u8; FIRST_MESSAGE_LEN];
        first[..32].copy_from_slice(client.config.peer_id().as_bytes());
        first[32..64].copy_from_slice(point.as_bytes());
        let mut victim = CryptoBackend::RustCrypto
            .builder()
            .local_private_key(&[0x11; 32])
            .and_then(|b| b.remote_public_key(point.as_bytes()))
            .and_then(|b| b.prologue(&first[..PROLOGUE_LEN]))
            .and_then(snow::Builder::build_initiator)
            .unwrap();
        victim
            .write_message(&1u64.to_le_bytes(), &mut first[PROLOGUE_LEN..])
            .unwrap();
        let mut impostor = attacker_builder(point)
            .local_private_key(&[0x42; 32])
            .and_then(|b| b.prologue(&first[..PROLOGUE_LEN]))
            .and_then(snow::Builder::build_responder)
            .unwrap();
        let mut payload = [0u8; 8];
        impostor
            .read_message(&first[PROLOGUE_LEN..], &mut payload)
            .unwrap();
        let mut second = [0u8; SECOND_MESSAGE_LEN];
        impostor.write_message(&[], &mut second).unwrap();
        victim.read_message(&second, &mut []).unwrap();

        for point in netcore::low_order_points() {
            let (initiator, _) = client
                .config
                .initiate(server.config.peer_id(), server.config.public_key(), 1)
                .unwrap();
            let mut second = [0u8; SECOND_MESSAGE_LEN];
            second[..32].copy_from_slice(point.as_bytes());
            assert!(matches!(
                initiator.finish(&second),
                Err(Error::LowOrderKey {
                    side: Side::Initiator,
                    ..
                })
            ));
        }
    }

    fn keys_peer_id(key: PublicKey) -> PeerId {
        peer_id_from_public_key(&key)
    }
}
