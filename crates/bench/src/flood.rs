//! `flood`: a legitimate peer's connection rate while attackers replay a captured message 1.
//!
//! The `connect` cycle (dial, Noise and AptosNet handshakes, one RPC, disconnect, the listener
//! seeing it go) runs `count` times against a peerlane listener as it is, once undisturbed and
//! once while `flood_sockets` tasks each loop over: open a TCP connection to the listener, send
//! the same captured message 1, read what comes back until the listener closes (or 48 bytes),
//! close. The attackers do no cryptography. The message is genuine (a MaybeMutual listener
//! accepted it once, as it did the connection it was captured from), so every replay reaches
//! the Noise responder; what it costs there is what this measures. The listener's
//! `peerlane_noise_dh_operations_total` over the flooded cycles, less the 4 of each
//! legitimate connection, gives the Diffie-Hellman operations each replay cost it. A legitimate dial the
//! listener drops under the flood (its set-up evicted, say) is counted and retried, as a peer
//! would redial.
//!
//! The attackers run in the same process, on a thread of their own with a single-threaded
//! runtime (as another process would, they share the machine's cores with both nodes but not
//! the nodes' runtime and its task queues).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use netcore::{NetworkAddress, Protocol};
use noise::{HandshakeAuthMode, HandshakeConfig, PublicKey, TrustedPeers, keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::args::Spec;
use crate::check::Progress;
use crate::report::Measurement;
use crate::stack::ConnectRig;

/// How long an attacker waits for the listener to answer or close before giving up on a
/// connection (it never needs that long: the listener closes at once or answers).
const REPLAY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `spec` undisturbed, then under a flood of `spec.flood_sockets` replaying sockets.
pub(crate) async fn run(spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    ensure!(spec.flood_sockets > 0, "--flood-sockets must be at least 1");
    let mut rig = ConnectRig::start().await?;
    let (quiet, _) = rig.cycles(spec, progress, false).await?;

    let address = rig.listen_address().clone();
    let socket_address = tcp_socket_address(&address)?;
    let captured = genuine_first_message(rig.listener_peer(), &address)?;
    // The connection the message was captured from: the listener accepts it once.
    let answer = replay_once(socket_address, &captured).await?;
    ensure!(
        answer == noise::SECOND_MESSAGE_LEN,
        "the listener answered the original message 1 with {answer} bytes"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let replays = Arc::new(AtomicU64::new(0));
    let attackers = {
        let (stop, replays) = (stop.clone(), replays.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the attackers' runtime")?;
        let sockets = spec.flood_sockets;
        std::thread::Builder::new()
            .name("flood".to_owned())
            .spawn(move || {
                runtime.block_on(flood(socket_address, captured, sockets, stop, replays))
            })
            .context("starting the attackers' thread")?
    };
    let dh_before = rig.listener_dh_operations();
    let flooded = rig.cycles(spec, progress, true).await;
    let dh_after = rig.listener_dh_operations();
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || attackers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the attackers' thread panicked"))?;
    let (elapsed, failed_dials) = flooded?;
    rig.shutdown().await?;
    // The listener's share of each legitimate connection is 4 (two DH per message).
    let legitimate_dh = 4 * (spec.count + failed_dials);
    let replays = replays.load(Ordering::Relaxed);
    let replay_dh = (dh_after - dh_before).saturating_sub(legitimate_dh);
    Ok(Measurement {
        elapsed,
        items: spec.count,
        quiet_elapsed: Some(quiet),
        replays: Some(replays),
        dh_per_replay: Some(replay_dh as f64 / replays.max(1) as f64),
        failed_dials: Some(failed_dials),
        ..Measurement::default()
    })
}

/// `sockets` connections at a time replaying `message` at `address` until `stop`.
async fn flood(
    address: SocketAddr,
    message: [u8; noise::FIRST_MESSAGE_LEN],
    sockets: usize,
    stop: Arc<AtomicBool>,
    replays: Arc<AtomicU64>,
) {
    let mut attackers = JoinSet::new();
    for _ in 0..sockets {
        let (stop, replays) = (stop.clone(), replays.clone());
        attackers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A refused or reset connection is part of a flood: try again.
                if replay_once(address, &message).await.is_ok() {
                    replays.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while attackers.join_next().await.is_some() {}
}

/// The TCP address of a `/ip4|ip6/…/tcp/…` address.
fn tcp_socket_address(address: &NetworkAddress) -> anyhow::Result<SocketAddr> {
    let ip = address.protocols().iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(*ip)),
        Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(*ip)),
        _ => None,
    });
    let port = address.protocols().iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(*port),
        _ => None,
    });
    ip.zip(port)
        .map(|(ip, port)| SocketAddr::new(ip, port))
        .with_context(|| format!("{address} is not an IP and TCP address"))
}

/// A message 1 to the listener from a fresh, unknown identity, stamped now: what an attacker
/// captures off the wire.
fn genuine_first_message(
    listener: netcore::PeerId,
    address: &NetworkAddress,
) -> anyhow::Result<[u8; noise::FIRST_MESSAGE_LEN]> {
    let listener_key: PublicKey = address
        .noise_public_key()
        .context("the listen address has no noise key")?;
    let private_key = keys::generate_private_key(&mut rand::rngs::OsRng);
    let peer_id = keys::peer_id_from_public_key(&PublicKey::from(&private_key));
    let config = HandshakeConfig::new(
        peer_id,
        private_key,
        HandshakeAuthMode::maybe_mutual(TrustedPeers::new()),
    );
    let (_, message) = config
        .initiate(listener, listener_key, noise::now_millis())
        .context("building message 1")?;
    Ok(message)
}

/// One connection that sends `message` and reads until the listener closes; returns the bytes
/// it answered (0 once it refuses the replay, 48 for an accepted message 1).
async fn replay_once(address: SocketAddr, message: &[u8]) -> anyhow::Result<usize> {
    let mut socket = TcpStream::connect(address).await?;
    socket.set_nodelay(true)?;
    socket.write_all(message).await?;
    let mut answer = [0u8; noise::SECOND_MESSAGE_LEN];
    let mut received = 0;
    let read = async {
        while received < answer.len() {
            match socket.read(&mut answer[received..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    };
    let _ = tokio::time::timeout(REPLAY_READ_TIMEOUT, read).await;
    Ok(received)
}
