//! The workloads through peerlane: two `Network`s over loopback TCP + Noise, driven through
//! the public `NetworkClient` and `NetworkEvents`.
//!
//! Choices that keep the figures about the data path:
//! - the health checker is off on every network (its pings are traffic the baselines lack),
//!   and so is routing (its signed edges per connection are work the baselines lack);
//! - no seeds, so the connectivity manager never redials (`connect` closes on purpose);
//! - the applications' queues use back-pressure (`Overflow::Wait`, default capacity, a wait
//!   bound well over any stall) rather than the default drop-newest: DirectSend through a
//!   dropping queue loses messages once the receiver falls behind, and the count check would
//!   fail. A full queue holds the peer's reader, TCP pushes back, the sender's lane fills and
//!   `send_to_peer_wait` waits until the writer has drained it to half;
//! - the message limit is raised so that `sweep`'s 16 MiB messages fit (they are streamed as
//!   fragments above the frame size).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netcore::{NetworkAddress, PeerId};
use peerlane::{
    ConnectionNotification, ConnectionNotifications, Event, Network, NetworkBuilder, NetworkClient,
    NetworkConfig, NetworkEvents, Overflow, PeerNetworkId, QueueConfig, TransportKind,
};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use wire::{NetworkId, ProtocolId};

use crate::args::{Spec, Workload};
use crate::check::{Progress, Tally};
use crate::report::Measurement;

/// The bench's direct-send protocol (BCS).
const DIRECT: ProtocolId = ProtocolId::NETBENCH_DIRECT_SEND;
/// The bench's RPC protocol (BCS).
const RPC: ProtocolId = ProtocolId::NETBENCH_RPC;
/// How long one RPC may take before the run fails.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a full application queue holds the peer's reader before dropping: longer than
/// the stall watchdog, so a run fails as stalled rather than losing a message.
const QUEUE_MAX_WAIT_MS: u64 = 60_000;
/// How long `flood` waits for the listener to let go of a connection it dropped during set-up
/// before redialing (it may never have registered it).
const REDIAL_WAIT: Duration = Duration::from_secs(1);
/// The message limit: room for 32 MiB payloads plus encoding.
const MAX_MESSAGE_SIZE: usize = 33 << 20;

/// The bench's application message: BCS writes it as a length-prefixed byte string. Mutable,
/// so a sender can reuse one buffer (`send_to_peer_wait` borrows it) instead of allocating per
/// message, which would charge the bench's own allocations to the stack.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payload(BytesMut);

/// One network with the bench application.
struct Node {
    network: Network,
    client: NetworkClient<Payload>,
    events: NetworkEvents<Payload>,
}

impl Node {
    /// Builds a network listening on a fresh loopback port, accepting up to
    /// `max_inbound_connections` (default: the config's).
    fn start(max_inbound_connections: Option<usize>) -> anyhow::Result<Self> {
        let mut config = NetworkConfig::new(NetworkId::Public, "/ip4/127.0.0.1/tcp/0".parse()?);
        config.health_check.enabled = false;
        // Routing signs an edge for every new connection and its removal at close, work the
        // baselines do not have (a quarter of a `connect` cycle's instructions); and in
        // `idle-mem` each of the N client networks, standing for N separate nodes, would
        // learn the listener's whole graph inside this one process, charging N² edges to N
        // connections. docs/performance.md gives both costs.
        config.routing.enabled = false;
        config.peer.max_message_size = MAX_MESSAGE_SIZE;
        // The two ends are strangers (no seeds): let them send the sweep's largest messages
        // too, not only a trusted peer.
        config.peer.max_untrusted_message_size = MAX_MESSAGE_SIZE;
        // The bench pushes millions of netbench messages a second, far above the limits a node
        // applies to a remote it does not trust: measure the stack, not the limiter.
        config.peer.rate_limit.enabled = false;
        // Without seeds the two ends are strangers to each other: give their outbound lanes a
        // trusted peer's byte budget, so that the figures measure the data path as before.
        config.peer.max_untrusted_queued_bytes = config.peer.max_queued_bytes;
        // Every bench connection comes from 127.0.0.1, fast: lift the per-IP admission limits.
        config.admission.max_pending_per_ip = usize::MAX;
        config.admission.max_pending_per_prefix = usize::MAX;
        config.admission.accept_rate_per_ip = 0;
        config.admission.max_inbound_per_ip = usize::MAX;
        config.admission.max_inbound_per_prefix = usize::MAX;
        // The bench holds up to thousands of connections to one listener on purpose: no
        // trimming to the public network's target range of peers (35 by default).
        config.connectivity.target_peers(usize::MAX, usize::MAX);
        if let Some(limit) = max_inbound_connections {
            config.max_inbound_connections = limit;
            config.max_pending_inbound_upgrades =
                NonZeroUsize::new(limit.max(1)).context("inbound limit")?;
        }
        let queue_config = QueueConfig {
            overflow: Overflow::Wait,
            max_wait: Duration::from_millis(QUEUE_MAX_WAIT_MS),
            ..config.inbound_queue
        };
        let mut registry = Registry::default();
        let mut builder = NetworkBuilder::new(
            config,
            TransportKind::Tcp(Default::default()),
            &mut registry,
        )?;
        let (client, events) = builder.add_application::<Payload>([DIRECT], [RPC], queue_config)?;
        Ok(Self {
            network: builder.build()?,
            client,
            events,
        })
    }

    /// This node as seen by others.
    fn id(&self) -> PeerNetworkId {
        PeerNetworkId::new(NetworkId::Public, self.network.peer_id())
    }

    /// Dials `other` and waits until the connection is set up.
    async fn dial(&self, other: &Self) -> anyhow::Result<()> {
        self.network
            .dial(
                other.network.peer_id(),
                other.network.listen_address().clone(),
            )
            .await
            .context("dialing")
    }
}

/// Runs `spec` through peerlane.
pub(super) async fn run(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    match spec.workload {
        Workload::Bulk | Workload::Small | Workload::Sweep => one_way(spec, progress).await,
        Workload::RpcLat => rpc_lat(spec, progress).await,
        Workload::RpcTput => rpc_tput(spec, progress).await,
        Workload::Connect => connect(spec, progress).await,
        Workload::IdleMem => idle_mem(spec, progress).await,
        Workload::Flood => {
            anyhow::bail!("flood runs through its own driver, not the peerlane stack's")
        }
    }
}

async fn one_way(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let sender = Node::start(None)?;
    let mut receiver = Node::start(None)?;
    sender.dial(&receiver).await?;
    let to = receiver.id();
    let client = sender.client.clone();
    let (count, size) = (spec.count, spec.size);

    let start = Instant::now();
    let sending = tokio::spawn(async move {
        let mut payload = Payload(BytesMut::from(&crate::check::payload(0, size)[..]));
        for seq in 0..count {
            crate::check::write_seq(&mut payload.0, seq);
            // Waits for the writer to signal room when the lane is full, rather than polling.
            if let Err(err) = client.send_to_peer_wait(to, &payload).await {
                bail!("send {seq} failed: {err}");
            }
        }
        anyhow::Ok(())
    });
    let mut tally = Tally::new(count, size);
    while !tally.is_complete() {
        match receiver.events.next().await {
            Some(Event::Message { message, .. }) => tally.record(&message.0)?,
            Some(_) => bail!("unexpected event"),
            None => bail!(
                "events ended after {} of {count} messages",
                tally.received()
            ),
        }
        progress.tick();
    }
    let elapsed = start.elapsed();
    sending.await??;
    let (items, bytes) = tally.finish()?;
    sender.network.shutdown().await;
    receiver.network.shutdown().await;
    Ok(Measurement {
        elapsed,
        items,
        bytes,
        ..Measurement::default()
    })
}

/// A client node dialed to a server node that echoes every RPC: the set-up of the RPC
/// workloads.
struct EchoPair {
    client: Node,
    to: PeerNetworkId,
    server_network: Network,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl EchoPair {
    async fn start() -> anyhow::Result<Self> {
        let client = Node::start(None)?;
        let server = Node::start(None)?;
        client.dial(&server).await?;
        let to = server.id();
        let Node {
            network: server_network,
            events: server_events,
            ..
        } = server;
        Ok(Self {
            client,
            to,
            server_network,
            serving: serve_echo(server_events),
        })
    }

    /// Shuts both networks down and surfaces an error of the echo server.
    async fn shutdown(self) -> anyhow::Result<()> {
        self.client.network.shutdown().await;
        self.server_network.shutdown().await;
        self.serving.await?
    }
}

/// Answers every RPC with its request (same id, same size).
fn serve_echo(mut events: NetworkEvents<Payload>) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::RpcRequest {
                request, responder, ..
            } = event
            {
                responder.reply(request)?;
            }
        }
        Ok(())
    })
}

async fn rpc_lat(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let pair = EchoPair::start().await?;
    let (client_node, to) = (&pair.client, pair.to);

    let mut latencies = Vec::with_capacity(spec.count as usize);
    let mut request = crate::check::payload(0, spec.size);
    let mut measured_from = Instant::now();
    for id in 0..spec.warmup + spec.count {
        if id == spec.warmup {
            measured_from = Instant::now();
        }
        crate::check::write_seq(&mut request, id);
        let message = Payload(BytesMut::from(&request[..]));
        let start = Instant::now();
        let response = client_node
            .client
            .send_rpc(to, message, RPC_TIMEOUT)
            .await
            .with_context(|| format!("RPC {id}"))?;
        let took = start.elapsed();
        crate::check::check_response(&response.0, id, spec.size)?;
        if id >= spec.warmup {
            latencies.push(took);
        }
        progress.tick();
    }
    let elapsed = measured_from.elapsed();
    pair.shutdown().await?;
    Ok(Measurement {
        elapsed,
        items: latencies.len() as u64,
        latencies,
        ..Measurement::default()
    })
}

async fn rpc_tput(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let pair = EchoPair::start().await?;
    let (client_node, to) = (&pair.client, pair.to);

    // Each of `concurrency` tasks keeps one RPC outstanding, taking the next id from a
    // shared counter, so exactly `count` RPCs go out.
    let next = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..spec.concurrency {
        let (client, next, answered, progress) = (
            client_node.client.clone(),
            next.clone(),
            answered.clone(),
            progress.clone(),
        );
        let (count, size) = (spec.count, spec.size);
        tasks.spawn(async move {
            let mut request = crate::check::payload(0, size);
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= count {
                    return anyhow::Ok(());
                }
                crate::check::write_seq(&mut request, id);
                let message = Payload(BytesMut::from(&request[..]));
                let response = client
                    .send_rpc(to, message, RPC_TIMEOUT)
                    .await
                    .with_context(|| format!("RPC {id}"))?;
                crate::check::check_response(&response.0, id, size)?;
                answered.fetch_add(1, Ordering::Relaxed);
                progress.tick();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let elapsed = start.elapsed();
    let answered = answered.load(Ordering::Relaxed);
    ensure!(
        answered == spec.count,
        "{answered} of {} RPCs answered",
        spec.count
    );
    pair.shutdown().await?;
    Ok(Measurement {
        elapsed,
        items: answered,
        ..Measurement::default()
    })
}

/// Dial, one RPC, disconnect, and wait until the listener has seen the connection go; the
/// whole cycle is timed.
async fn connect(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let mut rig = ConnectRig::start().await?;
    let (elapsed, _) = rig.cycles(spec, progress, false).await?;
    rig.shutdown().await?;
    Ok(Measurement {
        elapsed,
        items: spec.count,
        ..Measurement::default()
    })
}

/// A dialer and an echoing listener, for timed connection cycles (`connect`, `flood`).
pub(super) struct ConnectRig {
    dialer: Node,
    dialer_id: PeerId,
    listener_network: Network,
    notifications: ConnectionNotifications,
    to: PeerNetworkId,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ConnectRig {
    pub(super) async fn start() -> anyhow::Result<Self> {
        let dialer = Node::start(None)?;
        let listener = Node::start(None)?;
        let notifications = listener.network.peers_and_metadata().subscribe();
        let dialer_id = dialer.network.peer_id();
        let to = listener.id();
        let Node {
            network: listener_network,
            events: listener_events,
            ..
        } = listener;
        Ok(Self {
            dialer,
            dialer_id,
            listener_network,
            notifications,
            to,
            serving: serve_echo(listener_events),
        })
    }

    /// The listener's address, with its Noise key.
    pub(super) fn listen_address(&self) -> &NetworkAddress {
        self.listener_network.listen_address()
    }

    /// X25519 operations the listener's Noise handshakes ran so far
    /// (`peerlane_noise_dh_operations_total`).
    pub(super) fn listener_dh_operations(&self) -> u64 {
        self.listener_network.noise_metrics().dh_operations()
    }

    /// The listener's PeerId.
    pub(super) fn listener_peer(&self) -> PeerId {
        self.listener_network.peer_id()
    }

    /// `spec.count` cycles of dial, one RPC, disconnect, and the listener seeing the
    /// connection go; returns how long they took and how many dials failed. A failed dial (or
    /// a connection dropped before its RPC was answered) fails the run, or with `retry_dials`
    /// is counted and tried again, as a peer redials, at most `spec.count` times in all.
    pub(super) async fn cycles(
        &mut self,
        spec: Spec,
        progress: &Progress,
        retry_dials: bool,
    ) -> anyhow::Result<(Duration, u64)> {
        let (listener_peer, listener_addr) = (
            self.listener_network.peer_id(),
            self.listener_network.listen_address().clone(),
        );
        let mut request = crate::check::payload(0, spec.size);
        let mut failed_dials = 0;
        let start = Instant::now();
        for id in 0..spec.count {
            loop {
                match self
                    .dialer
                    .network
                    .dial(listener_peer, listener_addr.clone())
                    .await
                {
                    Ok(()) => {}
                    Err(_) if retry_dials && failed_dials < spec.count => {
                        failed_dials += 1;
                        continue;
                    }
                    Err(err) => return Err(err).with_context(|| format!("dial {id}")),
                }
                crate::check::write_seq(&mut request, id);
                let response = self
                    .dialer
                    .client
                    .send_rpc(self.to, Payload(BytesMut::from(&request[..])), RPC_TIMEOUT)
                    .await;
                match response {
                    Ok(response) => {
                        crate::check::check_response(&response.0, id, spec.size)?;
                        break;
                    }
                    // The listener dropped the connection during its set-up (evicted under
                    // the flood): redial, once the listener has let go of it, if it had it.
                    Err(_) if retry_dials && failed_dials < spec.count => {
                        failed_dials += 1;
                        let _ = self.dialer.network.disconnect(listener_peer).await;
                        let _ = tokio::time::timeout(REDIAL_WAIT, self.lost_dialer()).await;
                    }
                    Err(err) => {
                        return Err(err).with_context(|| format!("RPC on connection {id}"));
                    }
                }
            }
            self.dialer
                .network
                .disconnect(listener_peer)
                .await
                .with_context(|| format!("disconnect {id}"))?;
            self.lost_dialer().await?;
            progress.tick();
        }
        let elapsed = start.elapsed();
        ensure!(
            self.notifications.lost() == 0,
            "the listener lost {} connection notifications",
            self.notifications.lost()
        );
        Ok((elapsed, failed_dials))
    }

    /// Waits until the listener has seen the dialer's connection go.
    async fn lost_dialer(&mut self) -> anyhow::Result<()> {
        loop {
            match self.notifications.recv().await {
                Some(ConnectionNotification::LostPeer(metadata, ..))
                    if metadata.remote_peer_id == self.dialer_id =>
                {
                    return Ok(());
                }
                Some(_) => {}
                None => bail!("the listener's notifications ended"),
            }
        }
    }

    /// Shuts both networks down and surfaces an error of the echo server.
    pub(super) async fn shutdown(self) -> anyhow::Result<()> {
        self.dialer.network.shutdown().await;
        self.listener_network.shutdown().await;
        self.serving.await?
    }
}

/// N client networks (one per remote peer id) are built before the first memory reading, so
/// only the connections count; then each dials the listening node.
async fn idle_mem(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let n = usize::try_from(spec.count)?;
    let listener = Node::start(Some(n + 16))?;
    let mut notifications = listener.network.peers_and_metadata().subscribe();
    // Building them is progress too, for the stall watchdog.
    let clients: Vec<Node> = (0..n)
        .map(|_| Node::start(None).inspect(|_| progress.tick()))
        .collect::<anyhow::Result<_>>()?;
    super::raw::settle().await;
    let before = crate::sys::rss_bytes()?;

    // A few dials at a time, within the listener's pending-upgrade limit.
    let mut dials = FuturesUnordered::new();
    let mut pending = clients.iter();
    for client in pending.by_ref().take(32) {
        dials.push(client.dial(&listener));
    }
    let mut dialed = 0;
    while let Some(result) = dials.next().await {
        result?;
        dialed += 1;
        progress.tick();
        if let Some(client) = pending.next() {
            dials.push(client.dial(&listener));
        }
    }
    drop(dials);
    // Every connection registered on the listening side as well.
    let mut seen = listener
        .network
        .peers_and_metadata()
        .connected_peers()
        .len();
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(10), notifications.recv()).await {
            Ok(Some(_)) => {
                seen = listener
                    .network
                    .peers_and_metadata()
                    .connected_peers()
                    .len()
            }
            Ok(None) => bail!("the listener's notifications ended"),
            Err(_) => bail!("the listener has {seen} of {n} connections"),
        }
    }
    super::raw::settle().await;
    let after = crate::sys::rss_bytes()?;
    ensure!(dialed == n, "{dialed} of {n} dials finished");

    let shutdowns: FuturesUnordered<_> = clients
        .into_iter()
        .map(|node| node.network.shutdown())
        .collect();
    shutdowns.collect::<Vec<()>>().await;
    listener.network.shutdown().await;
    Ok(Measurement {
        elapsed: Duration::ZERO,
        items: spec.count,
        rss_delta: Some(after - before),
        ..Measurement::default()
    })
}
