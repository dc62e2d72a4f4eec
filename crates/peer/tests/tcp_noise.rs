//! Two peers over real TCP on loopback, after a real Noise IK handshake and handshake message
//! exchange: the whole stack a node runs.

mod common;

use bytes::Bytes;
use futures::StreamExt;
use netcore::{ConnectionOrigin, NetworkAddress, TcpTransport, Transport};
use noise::NoiseStream;
use peer::{Config, Connection, ConnectionId, ConnectionMetadata, DisconnectReason, Metrics};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{ChainId, HandshakeMsg, NetworkId, ProtocolIdSet};

use common::*;

/// Connects over loopback TCP, runs Noise and the handshake message exchange, and returns
/// each side's connection (dialer first).
async fn tcp_noise_connections() -> (
    Connection<NoiseStream<TcpStream>>,
    Connection<NoiseStream<TcpStream>>,
) {
    let transport = TcpTransport::default();
    let (mut listener, bound) = transport
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let dial = transport.dial(B, bound.clone()).unwrap();
    let accept = async {
        let (upgrade, remote_addr) = listener.next().await.unwrap().unwrap();
        (upgrade.await.unwrap(), remote_addr)
    };
    let (dialed, (accepted, remote_addr)) = tokio::join!(dial, accept);
    let (mut dialer, mut listener) = noise_pair(dialed.unwrap(), accepted).await;

    let ours = HandshakeMsg::new(
        ChainId::new(4),
        NetworkId::Public,
        [MEMPOOL, CONSENSUS, CONSENSUS_RPC]
            .into_iter()
            .collect::<ProtocolIdSet>(),
    );
    let (theirs_at_dialer, theirs_at_listener) = tokio::join!(
        wire::exchange_handshake(&mut dialer, &ours),
        wire::exchange_handshake(&mut listener, &ours),
    );
    let (version, protocols) = ours.negotiate(&theirs_at_dialer.unwrap()).unwrap();
    ours.negotiate(&theirs_at_listener.unwrap()).unwrap();

    let metadata = |remote, id, addr: NetworkAddress, origin| ConnectionMetadata {
        remote_peer_id: remote,
        connection_id: ConnectionId(id),
        remote_addr: addr,
        origin,
        messaging_protocol: version,
        application_protocols: protocols,
        role: noise::PeerRole::Unknown,
    };
    let dialer_meta = metadata(
        dialer.remote_peer_id(),
        1,
        bound,
        ConnectionOrigin::Outbound,
    );
    let listener_meta = metadata(
        listener.remote_peer_id(),
        2,
        remote_addr,
        ConnectionOrigin::Inbound,
    );
    (
        Connection {
            metadata: dialer_meta,
            socket: dialer,
        },
        Connection {
            metadata: listener_meta,
            socket: listener,
        },
    )
}

/// Over TCP + Noise: DirectSend both ways, an RPC, and a 9 MiB message overtaken by a 1 KiB
/// one between its fragments; then a clean disconnect seen as `RemoteClosed` on the other
/// side.
#[tokio::test]
async fn peers_talk_over_tcp_and_noise() {
    let (dialer_conn, listener_conn) = tcp_noise_connections().await;
    let listener_id = dialer_conn.metadata.remote_peer_id;
    let dialer_id = listener_conn.metadata.remote_peer_id;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let (router_a, mut events_a) = router(1024);
    let (router_b, mut events_b) = router(1024);
    let a = peer::spawn(
        Config::default(),
        dialer_conn,
        router_a,
        Metrics::default(),
        &tracker,
        shutdown.clone(),
    );
    let b = peer::spawn(
        Config::default(),
        listener_conn,
        router_b,
        Metrics::default(),
        &tracker,
        shutdown.clone(),
    );

    a.send_direct(MEMPOOL, Bytes::from_static(b"hello b"))
        .unwrap();
    b.send_direct(MEMPOOL, Bytes::from_static(b"hello a"))
        .unwrap();
    let (sender, _, payload) = expect_direct(next_event(&mut events_b).await);
    assert_eq!((sender, &payload[..]), (dialer_id, &b"hello b"[..]));
    let (sender, _, payload) = expect_direct(next_event(&mut events_a).await);
    assert_eq!((sender, &payload[..]), (listener_id, &b"hello a"[..]));

    let rpc = a.rpc(CONSENSUS_RPC, Bytes::from_static(b"ping"), PATIENCE);
    let serve = async {
        let (payload, responder) = expect_request(next_event(&mut events_b).await);
        responder.respond(payload).unwrap();
    };
    let (response, ()) = tokio::join!(rpc, serve);
    assert_eq!(&response.unwrap()[..], b"ping");

    let large = pattern(9 * 1024 * 1024);
    a.send_direct(MEMPOOL, large.clone()).unwrap();
    a.send_direct(MEMPOOL, pattern(1024)).unwrap();
    let (_, _, first) = expect_direct(next_event(&mut events_b).await);
    let (_, _, second) = expect_direct(next_event(&mut events_b).await);
    assert_eq!(first.len(), 1024);
    assert_eq!(second, large);

    a.disconnect();
    assert_eq!(a.closed().await, DisconnectReason::Requested);
    assert_eq!(b.closed().await, DisconnectReason::RemoteClosed);
    tracker.close();
    tokio::time::timeout(PATIENCE, tracker.wait())
        .await
        .expect("the peers' tasks ended");
}
