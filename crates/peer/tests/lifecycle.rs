//! How peers end: on request, on shutdown, when the remote closes, when the remote breaks the
//! byte stream (oversized frame, undecryptable Noise frame), and when the last handle goes.
//! In every case pending RPCs fail, `closed()` resolves with the reason, and the tracker
//! empties.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use netcore::MemorySocket;
use peer::metrics::{DropReason, RpcFailure};
use peer::{Config, DisconnectReason, Error, PeerHandle, Priority};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::NetworkMessage;

use common::*;

/// Starts `count` RPCs from `handle` on spawned tasks.
fn spawn_rpcs(handle: &PeerHandle, count: usize) -> Vec<JoinHandle<Result<Bytes, Error>>> {
    (0..count)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .rpc(STORAGE_RPC, Bytes::from_static(b"q"), PATIENCE)
                    .await
            })
        })
        .collect()
}

/// Every RPC task ended with `Disconnected`.
async fn assert_all_disconnected(tasks: Vec<JoinHandle<Result<Bytes, Error>>>) {
    for task in tasks {
        let result = task.await.expect("rpc task panicked");
        assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    }
}

/// Waits for every task on `tracker`, failing the test after [`PATIENCE`].
async fn wait_for_tasks(tracker: &TaskTracker) {
    tracker.close();
    tokio::time::timeout(PATIENCE, tracker.wait())
        .await
        .expect("the peer's tasks ended");
}

/// `disconnect()` with RPCs in flight: they all fail with `Disconnected`, `closed()` says
/// `Requested` here and `RemoteClosed` on the other side, every task ends, and the handle
/// refuses further work at once.
#[tokio::test]
async fn disconnect_fails_pending_rpcs_and_ends_every_task() {
    let mut pair = Pair::new(Config::default(), Config::default());
    let tasks = spawn_rpcs(&pair.a.handle, 3);
    // B's application holds the three requests without answering.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(expect_request(pair.b.next_event().await).1);
    }

    pair.a.handle.disconnect();
    assert!(!pair.a.handle.is_connected());
    assert_all_disconnected(tasks).await;
    assert_eq!(pair.a.handle.closed().await, DisconnectReason::Requested);
    assert_eq!(pair.b.handle.closed().await, DisconnectReason::RemoteClosed);
    wait_for_tasks(&pair.tracker).await;

    // A handle outliving its peer fails at once.
    let handle = &pair.a.handle;
    assert!(matches!(
        handle.send_direct(MEMPOOL, Bytes::from_static(b"x")),
        Err(Error::Disconnected)
    ));
    let rpc = handle
        .rpc(STORAGE_RPC, Bytes::new(), PATIENCE)
        .now_or_never()
        .expect("refused at once");
    assert!(matches!(rpc, Err(Error::Disconnected)));
    // So does a responder whose connection is gone.
    let late = held.pop().unwrap().respond(Bytes::new());
    assert!(matches!(late, Err(Error::Disconnected)), "{late:?}");
    assert_eq!(pair.a.metrics.rpc_failures(RpcFailure::Disconnected), 4);
    assert_eq!(pair.a.metrics.disconnects(DisconnectReason::Requested), 1);
}

/// Messages queued before `disconnect()` are still written before the socket is shut down.
#[tokio::test]
async fn disconnect_flushes_what_was_queued() {
    let mut raw = Raw::new(Config::default());
    for i in 0..10u8 {
        raw.node
            .handle
            .send_direct(MEMPOOL, Bytes::from(vec![i]))
            .unwrap();
    }
    raw.node.handle.disconnect();
    for i in 0..10u8 {
        match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => assert_eq!(message.raw_msg[0], i),
            other => panic!("expected a direct send, got {other:?}"),
        }
    }
    assert!(raw.remote.stream.next().await.is_none(), "then EOF");
    assert_eq!(raw.node.handle.closed().await, DisconnectReason::Requested);
}

/// Cancelling the shutdown token ends both peers with `Shutdown`, fails RPCs in flight, and
/// empties the tracker.
#[tokio::test]
async fn shutdown_token_ends_both_peers() {
    let mut pair = Pair::new(Config::default(), Config::default());
    let tasks = spawn_rpcs(&pair.a.handle, 2);
    let _held = (pair.b.next_event().await, pair.b.next_event().await);

    pair.shutdown.cancel();
    assert_all_disconnected(tasks).await;
    wait_for_tasks(&pair.tracker).await;
    assert_eq!(pair.a.handle.closed().await, DisconnectReason::Shutdown);
    assert_eq!(pair.b.handle.closed().await, DisconnectReason::Shutdown);
}

/// When the remote closes the connection, RPCs waiting on it fail with `Disconnected` and the
/// peer ends with `RemoteClosed`.
#[tokio::test]
async fn remote_eof_fails_pending_rpcs() {
    let mut raw = Raw::new(Config::default());
    let tasks = spawn_rpcs(&raw.node.handle, 1);
    raw.remote.recv_message().await;
    drop(raw.remote);

    assert_all_disconnected(tasks).await;
    assert_eq!(
        raw.node.handle.closed().await,
        DisconnectReason::RemoteClosed
    );
    wait_for_tasks(&raw.tracker).await;
    assert_eq!(
        raw.node.metrics.disconnects(DisconnectReason::RemoteClosed),
        1
    );
}

/// A length prefix above `max_frame_size` ends the connection with `FrameTooLarge`, before
/// anything is allocated for it.
#[tokio::test]
async fn oversized_frame_disconnects_with_frame_too_large() {
    let mut raw = Raw::new(Config::default());
    let too_large = (Config::default().max_frame_size as u32 + 1).to_be_bytes();
    raw.remote.write_raw(&too_large).await;
    assert_eq!(
        raw.node.handle.closed().await,
        DisconnectReason::FrameTooLarge
    );
    assert_eq!(
        raw.node
            .metrics
            .disconnects(DisconnectReason::FrameTooLarge),
        1
    );
    wait_for_tasks(&raw.tracker).await;
}

/// EOF in the middle of a frame ends the connection with `TruncatedFrame`.
#[tokio::test]
async fn eof_inside_a_frame_disconnects_with_truncated_frame() {
    let mut raw = Raw::new(Config::default());
    // A 10-byte frame of which only 2 bytes arrive.
    raw.remote.write_raw(&[0, 0, 0, 10, 0, 3]).await;
    drop(raw.remote);
    assert_eq!(
        raw.node.handle.closed().await,
        DisconnectReason::TruncatedFrame
    );
}

/// Dropping every handle disconnects the peer (`Requested`), and the remote sees it close.
#[tokio::test]
async fn dropping_the_last_handle_disconnects() {
    let pair = Pair::new(Config::default(), Config::default());
    let Pair { a, b, tracker, .. } = pair;
    let clone = a.handle.clone();
    drop(a.handle);
    assert!(clone.is_connected(), "a clone keeps the connection up");
    drop(clone);
    assert_eq!(b.handle.closed().await, DisconnectReason::RemoteClosed);
    wait_for_tasks(&tracker).await;
    assert_eq!(a.metrics.disconnects(DisconnectReason::Requested), 1);
}

/// A writer that cannot flush (the remote never reads) gives up after `writer_close_timeout`
/// on the paused clock, counting what it could not send as dropped.
#[tokio::test(start_paused = true)]
async fn writer_gives_up_after_the_close_timeout() {
    let config = Config {
        writer_close_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    // A 1 KiB pipe that the remote never reads: the writer stalls after the first frame.
    let (ours, _theirs) = MemorySocket::new_pair_with_capacity(1024);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let node = Node::spawn(config, B, ours, None, &tracker, &shutdown);
    // 160 KiB: more than the sink buffers (64 KiB) before it must write, so most of it is
    // still queued when the writer stalls.
    for _ in 0..40 {
        node.handle
            .send_direct(MEMPOOL, Bytes::from(vec![0; 4096]))
            .unwrap();
    }
    // Let the writer fill the pipe and stall.
    tokio::task::yield_now().await;
    node.handle.disconnect();
    assert_eq!(node.handle.closed().await, DisconnectReason::Requested);
    wait_for_tasks(&tracker).await;
    assert!(
        node.metrics
            .outbound_dropped(Priority::Low, DropReason::Closed)
            > 0
    );
}

/// A Noise frame that fails to decrypt ends the connection with `DecryptFailed`.
#[tokio::test]
async fn undecryptable_noise_frame_disconnects_with_decrypt_failed() {
    let (dialer_socket, listener_socket) = MemorySocket::new_pair();
    let (ours, mut theirs) = noise_pair(dialer_socket, listener_socket).await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let node = Node::spawn(Config::default(), B, ours, None, &tracker, &shutdown);
    // A 20-byte Noise frame of garbage, written under the remote's Noise session.
    let socket = theirs.get_mut();
    socket.write_all(&[0, 20]).await.unwrap();
    socket.write_all(&[0x5a; 20]).await.unwrap();
    socket.flush().await.unwrap();
    assert_eq!(node.handle.closed().await, DisconnectReason::DecryptFailed);
    wait_for_tasks(&tracker).await;
}
