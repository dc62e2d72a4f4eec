//! [`Listener`]: accepts sockets, sets each up in its own task, and hands the connections to
//! the peer manager.
//!
//! Admission happens in three places, in order:
//! 1. here, from the remote address alone, before any crypto ([`crate::admission`]): a
//!    per-IP accept rate (token bucket), caps on set-ups in progress per IP and per /24 or
//!    /64, and the network-wide cap on set-ups in progress, i.e. concurrent handshakes
//!    (`max_pending_inbound_upgrades`). A socket over a per-IP or per-prefix cap or the rate
//!    is closed at once; at the network-wide cap, a newly accepted socket evicts the oldest
//!    set-up of the heaviest untrusted prefix;
//! 2. in the Noise responder, the auth mode (in mutual mode, only trusted peers);
//! 3. in the peer manager, the limit on inbound connections from peers outside the trusted
//!    set, which needs the current set of connections.
//!
//! Each set-up runs under the set-up deadline, in a task of its own, so one slow or hostile
//! dialer holds up nobody else. Why evict rather than stop accepting: a flood of sockets that
//! never speak would otherwise hold every slot until its set-ups time out (30 s each), and
//! legitimate dialers would wait behind it in the kernel's backlog. Why the heaviest prefix:
//! evicting the globally oldest set-up lets one source that opens sockets faster than a round
//! trip push out every legitimate set-up; with the per-source caps and the eviction confined
//! to the heaviest prefix, a flood only pushes out its own sockets, and a trusted peer's IP
//! (an address of a peer in the trusted set) is never evicted. Evictions are counted as `evicted`, refusals as
//! `rate_limited`, `ip_pending_cap`, `prefix_pending_cap` and `pending_cap` (the test
//! `a_trusted_peer_connects_while_one_ip_floods_silent_sockets` shows it). Memory stays
//! bounded by the caps.
//!
//! A set-up that finished leaves the pending set at once, before it waits for room in the peer
//! manager's channel (which the peer manager drains without IO), so only set-ups still in
//! progress count towards the cap and can be evicted. Finished set-ups waiting for that room
//! have a bound of their own, the same number (`max_pending_inbound_upgrades`): one more is
//! closed and counted as `pending_cap`, so a stalled peer manager cannot make the listener
//! hold connections without limit.
//!
//! A failed accept (e.g. out of file descriptors) is counted and followed by a pause, 100 ms
//! doubling up to 1 s and reset by the next successful accept, so that the listener does not
//! spin on an error that will repeat.
//!
//! Every failed set-up is counted in `peerlane_connection_setup_failures_total{reason}` and
//! logged with the same reason; the peer manager does the same for refusals. Logs about
//! remote behaviour on this path are throttled to one line a second per kind, with a count of
//! the lines held back.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use netcore::{ConnectionOrigin, LogLimiter};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{self, AcceptRate, AdmissionConfig, Decision, IpBans, Source};
use crate::metrics::{Metrics, RefusalReason, SetupFailure};
use crate::peer_manager::NewConnection;
use crate::transport::Incoming;

/// Each kind of refusal, eviction and accept error logs at most one line per interval, with
/// the count of the lines it held back; the metrics count every event.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The warnings about inbound connections from another chain or network.
static HANDSHAKE_REFUSAL_LOG: netcore::SharedLogLimiter =
    netcore::SharedLogLimiter::new(3, Duration::from_secs(60));

/// The first pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the listener admits; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct ListenerLimits {
    /// `max_pending_inbound_upgrades`.
    pub(crate) max_pending: usize,
    /// Per-IP and per-prefix limits.
    pub(crate) admission: AdmissionConfig,
    /// The IPs of the trusted peers' known addresses, as the connectivity manager updates
    /// them.
    pub(crate) trusted_ips: watch::Receiver<HashSet<IpAddr>>,
    /// Banned IPs and prefixes, checked first.
    pub(crate) bans: IpBans,
}

/// The accept loop of one network; see the module docs.
pub(crate) struct Listener {
    incoming: Incoming,
    new_connections_tx: mpsc::Sender<NewConnection>,
    /// Set-ups in progress, oldest first: each one's source and the token that evicts it. A
    /// set-up cancels its own token when it ends, which is how finished ones are told apart.
    pending: Vec<(Source, CancellationToken)>,
    /// Finished set-ups waiting for room in the peer manager's channel: one permit each.
    handover: Arc<Semaphore>,
    limits: ListenerLimits,
    rate: AcceptRate,
    /// One per kind of remote misbehaviour logged here.
    refusal_log: LogLimiter,
    ban_log: LogLimiter,
    eviction_log: LogLimiter,
    accept_error_log: LogLimiter,
    metrics: Metrics,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Listener {
    pub(crate) fn new(
        incoming: Incoming,
        new_connections_tx: mpsc::Sender<NewConnection>,
        mut limits: ListenerLimits,
        metrics: Metrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        limits.max_pending = limits.max_pending.max(1);
        Self {
            incoming,
            new_connections_tx,
            pending: Vec::with_capacity(limits.max_pending),
            handover: Arc::new(Semaphore::new(limits.max_pending)),
            rate: AcceptRate::new(&limits.admission),
            limits,
            refusal_log: LogLimiter::new(1, LOG_INTERVAL),
            ban_log: LogLimiter::new(1, LOG_INTERVAL),
            eviction_log: LogLimiter::new(1, LOG_INTERVAL),
            accept_error_log: LogLimiter::new(1, LOG_INTERVAL),
            metrics,
            tracker,
            shutdown,
        }
    }

    /// Accepts until shutdown, or until the transport's listener ends (it does not, for TCP
    /// or memory, while it is held).
    pub(crate) async fn run(mut self) {
        let shutdown = self.shutdown.clone();
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                accepted = self.incoming.next() => accepted,
            };
            let (upgrade, remote_addr) = match accepted {
                None => return,
                Some(Ok(accepted)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Some(Err(err)) => {
                    // One failed accept (e.g. too many open files): likely to fail again at
                    // once, so pause before the next one.
                    self.metrics
                        .record_setup_failure(ConnectionOrigin::Inbound, err.setup_failure());
                    if let Some(suppressed) = self.accept_error_log.allow(Instant::now().into_std())
                    {
                        tracing::warn!(error = %err, ?backoff, suppressed, "accept failed");
                    }
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let source = Source::of(&remote_addr, &self.limits.trusted_ips.borrow());
            if source.ip.is_some_and(|ip| self.limits.bans.contains(ip)) {
                self.metrics.record_refused(RefusalReason::BannedIp);
                if let Some(suppressed) = self.ban_log.allow(Instant::now().into_std()) {
                    tracing::info!(%remote_addr, suppressed, "inbound socket from a banned ip closed");
                }
                drop(upgrade);
                continue;
            }
            if let Err(reason) = self.admit(&source) {
                self.metrics
                    .record_setup_failure(ConnectionOrigin::Inbound, reason);
                if let Some(suppressed) = self.refusal_log.allow(Instant::now().into_std()) {
                    tracing::info!(
                        %remote_addr,
                        reason = reason.as_str(),
                        suppressed,
                        "inbound socket closed at accept"
                    );
                }
                // Dropping the set-up closes the socket.
                drop(upgrade);
                continue;
            }
            // A child of the shutdown token: shutdown ends every set-up too.
            let evict = shutdown.child_token();
            self.pending.push((source, evict.clone()));
            let new_connections_tx = self.new_connections_tx.clone();
            let handover = self.handover.clone();
            let metrics = self.metrics.clone();
            self.tracker.spawn(async move {
                // Marks this set-up finished for `admit`, however it ends.
                let finished = evict.clone().drop_guard();
                let result = tokio::select! {
                    biased;
                    () = evict.cancelled() => return,
                    result = upgrade => result,
                };
                // The set-up is over: it leaves the pending set before waiting for room in the
                // peer manager's channel, so that newer sockets cannot evict (and count as
                // evicted) a connection that was set up and will be registered.
                drop(finished);
                match result {
                    Ok(connection) => {
                        let Ok(_waiting) = handover.try_acquire_owned() else {
                            metrics.record_setup_failure(
                                ConnectionOrigin::Inbound,
                                SetupFailure::PendingCap,
                            );
                            tracing::debug!(
                                %remote_addr,
                                "inbound connection closed: too many waiting for the peer manager"
                            );
                            return;
                        };
                        let new = NewConnection {
                            connection,
                            reply_tx: None,
                            managed: false,
                        };
                        // Fails only when the peer manager is gone (shutdown): drop the socket.
                        let _ = new_connections_tx.send(new).await;
                    }
                    Err(err) => {
                        let reason = err.setup_failure();
                        metrics.record_setup_failure(ConnectionOrigin::Inbound, reason);
                        // Remote-driven: debug (Noise logs and counts its own refusals);
                        // but a node on another chain or network is a misconfiguration one
                        // of the two operators must fix, so it is a (rate-limited) warning.
                        if let crate::error::Error::Handshake(
                            wire::Error::InvalidChainId { .. }
                            | wire::Error::InvalidNetworkId { .. },
                        ) = &err
                        {
                            if let Some(suppressed) =
                                HANDSHAKE_REFUSAL_LOG.allow(std::time::Instant::now())
                            {
                                tracing::warn!(
                                    %remote_addr,
                                    suppressed,
                                    "inbound {remote_addr} refused: {}",
                                    err.chain()
                                );
                            }
                        } else {
                            tracing::debug!(
                                %remote_addr,
                                reason = reason.as_str(),
                                error = %err,
                                "inbound set-up failed"
                            );
                        }
                    }
                }
            });
        }
    }

    /// Forgets finished set-ups, then decides on a socket from `source`: `Ok` to start its
    /// set-up (after evicting one if at the cap), `Err` with the reason to close it.
    fn admit(&mut self, source: &Source) -> Result<(), SetupFailure> {
        self.pending.retain(|(_, token)| !token.is_cancelled());
        if !source.trusted
            && let Some(ip) = source.ip
            && !self.rate.try_take(ip, Instant::now())
        {
            return Err(SetupFailure::RateLimited);
        }
        let sources: Vec<Source> = self.pending.iter().map(|(source, _)| *source).collect();
        match admission::decide(
            &self.limits.admission,
            self.limits.max_pending,
            &sources,
            source,
        ) {
            Decision::Admit => Ok(()),
            Decision::Refuse(reason) => Err(reason),
            Decision::Evict(index) => {
                let (evicted, token) = self.pending.remove(index);
                token.cancel();
                self.metrics
                    .record_setup_failure(ConnectionOrigin::Inbound, SetupFailure::Evicted);
                if let Some(suppressed) = self.eviction_log.allow(Instant::now().into_std()) {
                    tracing::info!(
                        max_pending = self.limits.max_pending,
                        evicted_ip = evicted.ip.as_ref().map(tracing::field::display),
                        suppressed,
                        "inbound set-ups at the cap: the oldest one of the busiest prefix is closed"
                    );
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use netcore::{MemorySocket, NetworkAddress, PeerId, Protocol};
    use noise::{HandshakeAuthMode, NoiseUpgrader, PrivateKey, PublicKey, TrustedPeers};
    use prometheus_client::registry::Registry;
    use wire::{ChainId, HandshakeMsg, NetworkId, ProtocolId};

    use super::*;
    use crate::config::DEFAULT_CHAIN_ID;
    use crate::transport::{AptosNetTransport, HANDSHAKE_VERSION, TransportKind, UpgradeContext};
    use crate::{Identity, Network, NetworkBuilder, NetworkConfig};

    /// Runs a listener with room for one set-up at a time, the default admission and no
    /// bans, over `incoming`; its metrics and the handles that stop it.
    fn spawn_listener(
        incoming: Incoming,
        new_connections: mpsc::Sender<NewConnection>,
    ) -> (Metrics, TaskTracker, CancellationToken) {
        let metrics = Metrics::default();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let listener = Listener::new(
            incoming,
            new_connections,
            ListenerLimits {
                max_pending: 1,
                admission: AdmissionConfig::default(),
                trusted_ips: watch::channel(HashSet::new()).1,
                bans: IpBans::default(),
            },
            metrics.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(listener.run());
        (metrics, tracker, shutdown)
    }

    /// A node to dial from, over the memory transport.
    fn dialer(seed: u8) -> Network {
        let mut config = NetworkConfig::new(NetworkId::Public, "/memory/0".parse().unwrap());
        config.identity = Some(Identity::new(PrivateKey::from([seed; 32])));
        let mut builder =
            NetworkBuilder::new(config, TransportKind::Memory, &mut Registry::default()).unwrap();
        builder
            .add_application::<u8>([ProtocolId::MEMPOOL_DIRECT_SEND], [], Default::default())
            .unwrap();
        builder.build().unwrap()
    }

    /// A node's inbound side over memsocket (maybe-mutual Noise, the AptosNet handshake), not
    /// yet listened to: its incoming sockets, its dialable address, its port and its PeerId.
    fn memory_server() -> (Incoming, NetworkAddress, u16, PeerId) {
        let key = PrivateKey::from([9; 32]);
        let public_key = PublicKey::from(&key);
        let noise = NoiseUpgrader::new(
            noise::keys::peer_id_from_public_key(&public_key),
            key,
            HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
            noise::Metrics::default(),
        );
        let handshake = HandshakeMsg::new(
            ChainId::new(DEFAULT_CHAIN_ID),
            NetworkId::Public,
            [ProtocolId::MEMPOOL_DIRECT_SEND].into_iter().collect(),
        );
        let context = Arc::new(UpgradeContext::new(noise, handshake, TrustedPeers::new()));
        let transport =
            AptosNetTransport::new(&TransportKind::Memory, context, Duration::from_secs(30));
        let (incoming, bound) = transport.listen_on(NetworkAddress::memory(0)).unwrap();
        let Protocol::Memory(port) = bound.protocols()[0] else {
            panic!("a memory address: {bound}");
        };
        let address = bound
            .with_noise_and_handshake(public_key, HANDSHAKE_VERSION)
            .unwrap();
        let server = noise::keys::peer_id_from_public_key(&public_key);
        (incoming, address, port, server)
    }

    /// Finished set-ups waiting for room in the peer manager's channel are bounded too (by
    /// the pending cap, one here): with the channel full and one connection waiting, the next
    /// one that finishes its set-up is closed and counted as `pending_cap`.
    #[tokio::test(start_paused = true)]
    async fn finished_set_ups_waiting_for_the_peer_manager_are_bounded() {
        let (incoming, address, _port, server) = memory_server();
        let (new_connections_tx, mut new_connections_rx) = mpsc::channel(1);
        let (metrics, tracker, shutdown) = spawn_listener(incoming, new_connections_tx);

        // a fills the channel, b waits for room, c finds no room to wait in.
        let (a, b, c) = (dialer(1), dialer(2), dialer(3));
        for dialer in [&a, &b] {
            dialer.dial(server, address.clone()).await.unwrap();
            // Paused clock: returns once every task is idle, this set-up handed over or waiting.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = c.dial(server, address).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::PendingCap),
            1
        );

        let first = new_connections_rx.recv().await.unwrap();
        let second = new_connections_rx.recv().await.unwrap();
        assert_eq!(first.connection.metadata.remote_peer_id, a.peer_id());
        assert_eq!(second.connection.metadata.remote_peer_id, b.peer_id());

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        drop((first, second));
        for dialer in [a, b, c] {
            dialer.shutdown().await;
        }
    }

    /// With the peer manager's channel full, a set-up that finished waits for room there. It
    /// no longer counts as pending: a newer socket at the cap (one slot here) evicts nothing,
    /// and the connection is handed over once there is room.
    #[tokio::test(start_paused = true)]
    async fn a_finished_set_up_waiting_for_the_peer_manager_is_not_evicted() {
        let (incoming, address, port, server) = memory_server();
        // The peer manager's channel, with room for one connection; read only at the end.
        let (new_connections_tx, mut new_connections_rx) = mpsc::channel(1);
        let (metrics, tracker, shutdown) = spawn_listener(incoming, new_connections_tx);

        // a's connection fills the channel; b's set-up finishes and waits for room.
        let (a, b) = (dialer(1), dialer(2));
        a.dial(server, address.clone()).await.unwrap();
        b.dial(server, address).await.unwrap();
        // Paused clock: returns once every task is idle, b's set-up waiting on the channel.
        tokio::time::sleep(Duration::from_secs(1)).await;

        // A newer socket at the cap: nothing still in progress to evict.
        let _silent = MemorySocket::connect(port).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Evicted),
            0
        );

        let first = new_connections_rx.recv().await.unwrap();
        let second = new_connections_rx.recv().await.unwrap();
        assert_eq!(first.connection.metadata.remote_peer_id, a.peer_id());
        assert_eq!(second.connection.metadata.remote_peer_id, b.peer_id());

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        drop((first, second));
        a.shutdown().await;
        b.shutdown().await;
    }

    /// Accept errors that repeat at once (out of file descriptors) do not spin: the listener
    /// pauses 100 ms, then 200, 400, 800 ms, then 1 s per failed accept. Over a simulated
    /// second that is 4 attempts (at 0, 100, 300 and 700 ms); without the pause it would be
    /// as many as the fake listener offers (here it ends after 1,000).
    #[tokio::test(start_paused = true)]
    async fn failing_accepts_back_off_from_100_ms_to_1_s() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let incoming: Incoming = futures::stream::poll_fn(move |_| {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            if n >= 1000 {
                return std::task::Poll::Ready(None);
            }
            let err = crate::Error::Transport(netcore::Error::Accept {
                addr: NetworkAddress::memory(0),
                source: std::io::Error::from_raw_os_error(24),
            });
            std::task::Poll::Ready(Some(Err(err)))
        })
        .boxed();
        let (new_connections_tx, _new_connections_rx) = mpsc::channel(1);
        let (metrics, tracker, shutdown) = spawn_listener(incoming, new_connections_tx);
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(attempts.load(Ordering::Relaxed), 4);
        assert_eq!(
            metrics.setup_failures(ConnectionOrigin::Inbound, SetupFailure::Transport),
            4
        );
        // Capped at 1 s: 700 + 800 = 1500 ms, then one a second.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(attempts.load(Ordering::Relaxed), 6);
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
