//! Messages through peers over in-memory sockets: DirectSend, RPC (success, timeout, cancel,
//! limits, deadlines, NotSupported), large messages, priority lanes and write batching.
//!
//! Several tests rely on the default current-thread test runtime: messages pushed with no
//! `.await` in between are all queued before the writer task first runs, which makes the
//! writer's scheduling decisions deterministic without any timing.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use netcore::MemorySocket;
use noise::PeerRole;
use peer::metrics::{
    Direction, DropReason, InboundDropReason, InboundRpcOutcome, MessageKind, RemoteErrorCode,
    RpcFailure, UnmatchedResponse,
};
use peer::{Config, Error, InboundEvent, Priority};
use wire::{
    ErrorCode, MultiplexMessage, NetworkMessage, NotSupportedType, RequestId, RpcResponse,
    StreamFragment, StreamMessage,
};

use common::*;
use test_support::CountingSocket;

/// A config with small frames, so that streamed messages stay small in tests: 16 KiB frames,
/// 256 KiB messages (16 fragments, as with the defaults).
fn small_frames() -> Config {
    Config {
        max_frame_size: 16 * 1024,
        max_message_size: 256 * 1024,
        ..Config::default()
    }
}

/// DirectSend messages travel both ways, carry the sender's PeerId and protocol, and are
/// counted as sent on one side and received on the other.
#[tokio::test]
async fn direct_send_arrives_both_ways() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.a
        .handle
        .send_direct(MEMPOOL, Bytes::from_static(b"from a"))
        .unwrap();
    pair.b
        .handle
        .send_direct(CONSENSUS, Bytes::from_static(b"from b"))
        .unwrap();

    let (sender, protocol, payload) = expect_direct(pair.b.next_event().await);
    assert_eq!(
        (sender, protocol, &payload[..]),
        (A, MEMPOOL, &b"from a"[..])
    );
    let (sender, protocol, payload) = expect_direct(pair.a.next_event().await);
    assert_eq!(
        (sender, protocol, &payload[..]),
        (B, CONSENSUS, &b"from b"[..])
    );

    let a = &pair.a.metrics;
    assert_eq!(a.messages(Direction::Sent, MessageKind::DirectSend), 1);
    assert_eq!(a.messages(Direction::Received, MessageKind::DirectSend), 1);
    assert_eq!(a.payload_bytes(Direction::Sent, MessageKind::DirectSend), 6);
    assert!(pair.a.handle.is_connected());
    assert_eq!(pair.a.handle.metadata().remote_peer_id, B);
}

/// An RPC gets the response the remote application sends through its responder, and both
/// sides count it.
#[tokio::test]
async fn rpc_returns_the_remote_response() {
    let mut pair = Pair::new(Config::default(), Config::default());
    let rpc = pair
        .a
        .handle
        .rpc(CONSENSUS_RPC, Bytes::from_static(b"ping"), PATIENCE);
    let serve = async {
        let (payload, responder) = expect_request(pair.b.next_event().await);
        assert_eq!(&payload[..], b"ping");
        assert_eq!(responder.protocol_id(), CONSENSUS_RPC);
        responder.respond(Bytes::from_static(b"pong")).unwrap();
    };
    let (response, ()) = tokio::join!(rpc, serve);
    assert_eq!(&response.unwrap()[..], b"pong");

    assert_eq!(
        pair.a
            .metrics
            .messages(Direction::Received, MessageKind::RpcResponse),
        1
    );
    assert_eq!(pair.b.metrics.inbound_rpcs(InboundRpcOutcome::Answered), 1);
}

/// An RPC with no answer fails with `Timeout` at its deadline (on the paused clock), is
/// counted, and the answer that comes later is counted as a response to an unknown request.
#[tokio::test(start_paused = true)]
async fn rpc_without_answer_times_out() {
    let mut pair = Pair::new(Config::default(), Config::default());
    let timeout = Duration::from_secs(2);
    let rpc = pair
        .a
        .handle
        .rpc(STORAGE_RPC, Bytes::from_static(b"slow"), timeout);
    // B's application takes the request and sits on it.
    let hold = async { expect_request(pair.b.next_event().await).1 };
    let (result, responder) = tokio::join!(rpc, hold);
    assert!(
        matches!(result, Err(Error::Timeout { protocol, timeout: t }) if protocol == STORAGE_RPC && t == timeout),
        "{result:?}"
    );
    assert_eq!(pair.a.metrics.rpc_failures(RpcFailure::Timeout), 1);

    // The late answer (B's own deadline is 10 s, so B still sends it) matches nothing on A.
    // A marker sent after it on B's (empty) low lane tells us A has read the response.
    responder.respond(Bytes::from_static(b"late")).unwrap();
    pair.b
        .handle
        .send_direct(MEMPOOL, Bytes::from_static(b"marker"))
        .unwrap();
    expect_direct(pair.a.next_event().await);
    assert_eq!(
        pair.a
            .metrics
            .unmatched_responses(UnmatchedResponse::Unknown),
        1
    );
}

/// Dropping an RPC future cancels the RPC: its entry goes at once (counted as cancelled), and
/// the response that arrives afterwards is counted as unknown and dropped.
#[tokio::test]
async fn dropped_rpc_future_makes_the_late_response_unknown() {
    let mut raw = Raw::new(Config::default());
    let mut rpc = Box::pin(
        raw.node
            .handle
            .rpc(CONSENSUS_RPC, Bytes::from_static(b"q"), PATIENCE),
    );
    // Drive the RPC until its request is on the wire.
    let request_id = tokio::select! {
        result = &mut rpc => panic!("rpc completed without a response: {result:?}"),
        message = raw.remote.recv_message() => match message {
            NetworkMessage::RpcRequest(request) => request.request_id,
            other => panic!("expected a request, got {other:?}"),
        },
    };
    drop(rpc);
    assert_eq!(raw.node.metrics.rpc_failures(RpcFailure::Cancelled), 1);

    raw.remote
        .send(NetworkMessage::RpcResponse(RpcResponse {
            request_id,
            priority: 0,
            raw_response: Bytes::from_static(b"a"),
        }))
        .await;
    raw.remote.send(direct(MEMPOOL, "marker")).await;
    expect_direct(raw.node.next_event().await);
    assert_eq!(
        raw.node
            .metrics
            .unmatched_responses(UnmatchedResponse::Unknown),
        1
    );
}

/// With 100 RPCs waiting, the 101st fails at once with `TooManyPendingRpcs`, before anything
/// is sent; a disconnect then fails the 100 with `Disconnected`.
#[tokio::test]
async fn rpc_beyond_the_limit_fails_at_once() {
    let mut raw = Raw::new(Config::default());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let handle = raw.node.handle.clone();
            tokio::spawn(async move {
                handle
                    .rpc(STORAGE_RPC, Bytes::from_static(b"q"), PATIENCE)
                    .await
            })
        })
        .collect();
    for _ in 0..100 {
        raw.remote.recv_message().await;
    }

    let extra = raw
        .node
        .handle
        .rpc(STORAGE_RPC, Bytes::from_static(b"q"), PATIENCE)
        .now_or_never()
        .expect("the 101st rpc fails without waiting");
    assert!(
        matches!(extra, Err(Error::TooManyPendingRpcs { max: 100 })),
        "{extra:?}"
    );
    assert_eq!(raw.node.metrics.rpc_failures(RpcFailure::TooManyPending), 1);

    raw.node.handle.disconnect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Err(Error::Disconnected)));
    }
    assert_eq!(raw.node.metrics.rpc_failures(RpcFailure::Disconnected), 100);
}

/// Past `max_concurrent_inbound_rpcs`, inbound requests are dropped unanswered and counted;
/// the connection carries on.
#[tokio::test]
async fn inbound_rpcs_beyond_the_limit_are_declined_and_counted() {
    let config = Config {
        max_concurrent_inbound_rpcs: 2,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    for id in 0..3 {
        raw.remote.send(request(STORAGE_RPC, id, "q")).await;
    }
    raw.remote.send(direct(MEMPOOL, "marker")).await;

    // Two requests reach the application (held, so their slots stay taken), then the marker.
    let (_, first) = expect_request(raw.node.next_event().await);
    let (_, second) = expect_request(raw.node.next_event().await);
    assert_eq!(
        (first.request_id(), second.request_id()),
        (RequestId(0), RequestId(1))
    );
    expect_direct(raw.node.next_event().await);
    assert_eq!(
        raw.node
            .metrics
            .inbound_dropped(MessageKind::RpcRequest, InboundDropReason::TooManyRpcs),
        1
    );

    // Answering frees a slot: the next request is accepted.
    first.respond(Bytes::from_static(b"a")).unwrap();
    raw.remote.send(request(STORAGE_RPC, 3, "q")).await;
    let (_, fourth) = expect_request(raw.node.next_event().await);
    assert_eq!(fourth.request_id(), RequestId(3));
    assert!(raw.node.handle.is_connected());
}

/// An inbound RPC must be answered within 10 s: at the deadline the slot is freed (the next
/// request takes it), and the late answer is refused, counted, and never sent.
#[tokio::test(start_paused = true)]
async fn inbound_rpc_answered_after_ten_seconds_is_refused() {
    let config = Config {
        max_concurrent_inbound_rpcs: 1,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    raw.remote.send(request(STORAGE_RPC, 7, "q")).await;
    let (_, late) = expect_request(raw.node.next_event().await);
    let arrived = tokio::time::Instant::now();
    assert_eq!(late.deadline(), arrived + Duration::from_secs(10));

    tokio::time::sleep(Duration::from_secs(10)).await;

    // The slot is free again although `late` is still held.
    raw.remote.send(request(STORAGE_RPC, 8, "q")).await;
    let (_, on_time) = expect_request(raw.node.next_event().await);
    let refused = late.respond(Bytes::from_static(b"too late"));
    assert!(
        matches!(
            refused,
            Err(Error::InboundRpcExpired {
                request_id: RequestId(7),
                ..
            })
        ),
        "{refused:?}"
    );
    on_time.respond(Bytes::from_static(b"on time")).unwrap();

    // Only the answer in time goes out.
    match raw.remote.recv_message().await {
        NetworkMessage::RpcResponse(response) => {
            assert_eq!(response.request_id, RequestId(8));
            assert_eq!(&response.raw_response[..], b"on time");
        }
        other => panic!("expected the response to request 8, got {other:?}"),
    }
    let metrics = &raw.node.metrics;
    assert_eq!(metrics.inbound_rpcs(InboundRpcOutcome::Expired), 1);
    assert_eq!(metrics.inbound_rpcs(InboundRpcOutcome::Late), 1);
    assert_eq!(metrics.inbound_rpcs(InboundRpcOutcome::Answered), 1);
}

/// A dropped responder sends nothing, frees its slot and is counted as unanswered.
#[tokio::test]
async fn dropped_responder_frees_the_slot() {
    let config = Config {
        max_concurrent_inbound_rpcs: 1,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    raw.remote.send(request(STORAGE_RPC, 1, "q")).await;
    drop(expect_request(raw.node.next_event().await));
    raw.remote.send(request(STORAGE_RPC, 2, "q")).await;
    let (_, responder) = expect_request(raw.node.next_event().await);
    responder.respond(Bytes::from_static(b"r")).unwrap();
    match raw.remote.recv_message().await {
        NetworkMessage::RpcResponse(response) => assert_eq!(response.request_id, RequestId(2)),
        other => panic!("expected the response to request 2, got {other:?}"),
    }
    assert_eq!(
        raw.node.metrics.inbound_rpcs(InboundRpcOutcome::Unanswered),
        1
    );
}

/// A message of the largest size the config allows (a header and 16 fragments, like 64 MiB
/// with the default 4 MiB frames) queued before a small one is streamed, the small one
/// overtakes it between fragments, and a second large message waits for the first: arrival
/// order is small, large, large, with payloads intact.
#[tokio::test]
async fn small_message_overtakes_a_large_one_between_fragments() {
    let mut pair = Pair::new(small_frames(), small_frames());
    let large_1 = pattern(small_frames().max_message_size);
    let large_2 = pattern(100 * 1024).slice(1..);
    pair.a.handle.send_direct(MEMPOOL, large_1.clone()).unwrap();
    pair.a.handle.send_direct(MEMPOOL, large_2.clone()).unwrap();
    pair.a.handle.send_direct(MEMPOOL, pattern(1024)).unwrap();

    let (_, _, first) = expect_direct(pair.b.next_event().await);
    let (_, _, second) = expect_direct(pair.b.next_event().await);
    let (_, _, third) = expect_direct(pair.b.next_event().await);
    assert_eq!(first, pattern(1024));
    assert_eq!(second, large_1);
    assert_eq!(third, large_2);
    assert_eq!(pair.b.metrics.stream_errors(), 0);
    // Both large messages went out as streams and came back whole; the small one did not.
    assert_eq!(pair.a.metrics.streams(Direction::Sent), 2);
    assert_eq!(pair.b.metrics.streams(Direction::Received), 2);
}

/// At AptosNet's real sizes (4 MiB frames), a 9 MiB message is streamed in a header and two
/// fragments and a 1 KiB message queued after it arrives first.
#[tokio::test]
async fn nine_mib_message_is_streamed_at_real_frame_size() {
    // The test peers are strangers to each other, whose default maximum is 8 MiB, and whose
    // lanes hold 8 MiB (both messages are queued before the writer runs).
    let config = Config {
        max_untrusted_message_size: peer::DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_untrusted_queued_bytes: peer::DEFAULT_MAX_QUEUED_BYTES,
        ..Config::default()
    };
    let mut pair = Pair::new(config.clone(), config);
    let large = pattern(9 * 1024 * 1024);
    pair.a.handle.send_direct(MEMPOOL, large.clone()).unwrap();
    pair.a.handle.send_direct(MEMPOOL, pattern(1024)).unwrap();
    let (_, _, first) = expect_direct(pair.b.next_event().await);
    let (_, _, second) = expect_direct(pair.b.next_event().await);
    assert_eq!(first.len(), 1024);
    assert_eq!(second, large);
}

/// Messages above what a stream can carry are refused before anything is queued.
#[tokio::test]
async fn oversized_payload_is_refused_at_once() {
    let pair = Pair::new(small_frames(), small_frames());
    let result = pair
        .a
        .handle
        .send_direct(MEMPOOL, Bytes::from(vec![0; 256 * 1024 + 1]));
    assert!(
        matches!(result, Err(Error::MessageTooLarge { len, max }) if len == 256 * 1024 + 1 && max == 256 * 1024),
        "{result:?}"
    );
}

/// With the low lane full, one more low message is refused with `QueueFull { lane: Low }` and
/// counted, a high message is still accepted and is written before every queued low one, and
/// the low ones keep their order.
#[tokio::test]
async fn high_message_is_written_before_a_full_low_lane() {
    let config = Config {
        outbound_lane_capacity: 8,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    let handle = &raw.node.handle;
    for i in 0..8u8 {
        handle.send_direct(MEMPOOL, Bytes::from(vec![i])).unwrap();
    }
    let full = handle.send_direct(MEMPOOL, Bytes::from_static(b"one too many"));
    assert!(
        matches!(
            full,
            Err(Error::QueueFull {
                lane: Priority::Low
            })
        ),
        "{full:?}"
    );
    // An RPC on a full lane fails the same way, and leaves no entry behind.
    let rpc = handle
        .rpc(STORAGE_RPC, Bytes::from_static(b"q"), PATIENCE)
        .now_or_never()
        .expect("refused at once");
    assert!(matches!(
        rpc,
        Err(Error::QueueFull {
            lane: Priority::Low
        })
    ));
    handle
        .send_direct(CONSENSUS, Bytes::from_static(b"urgent"))
        .unwrap();

    let mut order = Vec::new();
    for _ in 0..9 {
        match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => {
                assert_eq!(message.priority, 0, "the wire priority is always 0");
                order.push(message.raw_msg);
            }
            other => panic!("expected a direct send, got {other:?}"),
        }
    }
    assert_eq!(&order[0][..], b"urgent");
    let lows: Vec<u8> = order[1..].iter().map(|payload| payload[0]).collect();
    assert_eq!(lows, (0..8).collect::<Vec<u8>>());

    let metrics = &raw.node.metrics;
    assert_eq!(metrics.outbound_dropped(Priority::Low, DropReason::Full), 2);
    assert_eq!(
        metrics.outbound_dropped(Priority::High, DropReason::Full),
        0
    );
    assert_eq!(metrics.rpc_failures(RpcFailure::QueueFull), 1);
}

/// A hundred small messages queued at once reach the socket in one write and one flush, in
/// order.
#[tokio::test]
async fn messages_queued_together_share_one_flush() {
    let (ours, theirs) = MemorySocket::new_pair();
    let counting = CountingSocket::new(ours);
    let (writes, flushes) = (counting.writes.clone(), counting.flushes.clone());
    let mut raw = Raw::over(Config::default(), counting, theirs, None);
    for i in 0..100u8 {
        raw.node
            .handle
            .send_direct(MEMPOOL, Bytes::from(vec![i; 20]))
            .unwrap();
    }
    for i in 0..100u8 {
        match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => assert_eq!(message.raw_msg[0], i),
            other => panic!("expected a direct send, got {other:?}"),
        }
    }
    assert_eq!(flushes.load(Ordering::Relaxed), 1);
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(raw.node.metrics.writer_flushes(), 1);
    assert_eq!(
        raw.node
            .metrics
            .messages(Direction::Sent, MessageKind::DirectSend),
        100
    );
}

/// RPC callers answered by one read send their next messages in one flush: the reader tells
/// the writer that several callers were woken together, and the writer waits for them before
/// it flushes. On a worker with a LIFO slot (the multi-thread runtime) the writer, woken by
/// the first caller's push, would otherwise run before the other callers and flush once per
/// caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn callers_answered_by_one_read_share_the_next_flush() {
    // On the worker, not on the test's own thread: the writer then records its flush before
    // this task can see the bytes it wrote.
    tokio::spawn(callers_answered_by_one_read_share_the_next_flush_on_the_worker())
        .await
        .unwrap();
}

async fn callers_answered_by_one_read_share_the_next_flush_on_the_worker() {
    const CALLERS: u8 = 8;
    let mut raw = Raw::new(Config::default());
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let handle = raw.node.handle.clone();
        callers.push(tokio::spawn(async move {
            handle
                .rpc(CONSENSUS_RPC, Bytes::from(vec![i]), PATIENCE)
                .await
                .unwrap();
            handle.send_direct(MEMPOOL, Bytes::from(vec![i])).unwrap();
        }));
    }
    let mut ids = Vec::new();
    for _ in 0..CALLERS {
        match raw.remote.recv_message().await {
            NetworkMessage::RpcRequest(request) => ids.push(request.request_id),
            other => panic!("expected a request, got {other:?}"),
        }
    }
    let flushes_before = raw.node.metrics.writer_flushes();
    // All the answers in one write, so that the peer reads them together.
    for request_id in ids {
        let response = NetworkMessage::RpcResponse(RpcResponse {
            request_id,
            priority: 0,
            raw_response: Bytes::from_static(b"ok"),
        });
        futures::SinkExt::feed(&mut raw.remote.sink, &MultiplexMessage::Message(response))
            .await
            .unwrap();
    }
    futures::SinkExt::flush(&mut raw.remote.sink).await.unwrap();
    let mut followed = Vec::new();
    for _ in 0..CALLERS {
        let (_, protocol, payload) = match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => ((), message.protocol_id, message.raw_msg),
            other => panic!("expected a direct send, got {other:?}"),
        };
        assert_eq!(protocol, MEMPOOL);
        followed.push(payload[0]);
    }
    for caller in callers {
        caller.await.unwrap();
    }
    followed.sort_unstable();
    assert_eq!(followed, (0..CALLERS).collect::<Vec<u8>>());
    assert_eq!(raw.node.metrics.writer_flushes() - flushes_before, 1);
}

/// Messages on a protocol the router does not serve are answered with `NotSupported`, for
/// direct sends and for RPC requests, counted, and the connection stays up.
#[tokio::test]
async fn unknown_protocol_is_answered_not_supported() {
    let mut raw = Raw::serving(Config::default(), Some(vec![MEMPOOL]));
    raw.remote.send(direct(CONSENSUS, "who?")).await;
    raw.remote.send(request(STORAGE_RPC, 3, "who?")).await;
    assert_eq!(
        raw.remote.recv_message().await,
        NetworkMessage::Error(ErrorCode::NotSupported(NotSupportedType::DirectSendMsg(
            CONSENSUS
        )))
    );
    assert_eq!(
        raw.remote.recv_message().await,
        NetworkMessage::Error(ErrorCode::NotSupported(NotSupportedType::RpcRequest(
            STORAGE_RPC
        )))
    );
    raw.remote.send(direct(MEMPOOL, "known")).await;
    expect_direct(raw.node.next_event().await);
    let metrics = &raw.node.metrics;
    for kind in [MessageKind::DirectSend, MessageKind::RpcRequest] {
        assert_eq!(
            metrics.inbound_dropped(kind, InboundDropReason::UnknownProtocol),
            1
        );
    }
}

/// An RPC on a protocol the remote does not serve fails with `RemoteNotSupported` as soon as
/// the remote says so, well before its timeout.
#[tokio::test]
async fn rpc_on_a_protocol_the_remote_lacks_fails_not_supported() {
    let tracker = tokio_util::task::TaskTracker::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (socket_a, socket_b) = MemorySocket::new_pair();
    let a = Node::spawn(Config::default(), B, socket_a, None, &tracker, &shutdown);
    let _b = Node::spawn(
        Config::default(),
        A,
        socket_b,
        Some(vec![MEMPOOL]),
        &tracker,
        &shutdown,
    );
    let result = a
        .handle
        .rpc(STORAGE_RPC, Bytes::from_static(b"q"), PATIENCE)
        .await;
    assert!(
        matches!(result, Err(Error::RemoteNotSupported(p)) if p == STORAGE_RPC),
        "{result:?}"
    );
    assert_eq!(a.metrics.rpc_failures(RpcFailure::RemoteNotSupported), 1);
    assert_eq!(a.metrics.remote_errors(RemoteErrorCode::NotSupported), 1);
}

/// A frame that is not a valid message is answered with `ParsingError` carrying its first two
/// bytes, counted, and the connection carries on.
#[tokio::test]
async fn malformed_frame_is_answered_and_the_connection_kept() {
    let mut raw = Raw::new(Config::default());
    // A u32 length of 3, then tag 7 (no such MultiplexMessage variant), 9, 1.
    raw.remote.write_raw(&[0, 0, 0, 3, 7, 9, 1]).await;
    assert_eq!(
        raw.remote.recv_message().await,
        NetworkMessage::Error(ErrorCode::parsing_error_from_frame(&[7, 9]))
    );
    raw.remote.send(direct(MEMPOOL, "still here")).await;
    let (_, _, payload) = expect_direct(raw.node.next_event().await);
    assert_eq!(&payload[..], b"still here");
    assert_eq!(raw.node.metrics.parse_errors(), 1);
    assert!(raw.node.handle.is_connected());
}

/// A stream fragment with no stream open is refused and counted, and the connection carries
/// on.
#[tokio::test]
async fn bad_stream_piece_is_counted_and_the_connection_kept() {
    let mut raw = Raw::new(Config::default());
    raw.remote
        .send_frame(MultiplexMessage::Stream(StreamMessage::Fragment(
            StreamFragment {
                request_id: 4,
                fragment_id: 1,
                raw_data: Bytes::from_static(b"orphan"),
            },
        )))
        .await;
    raw.remote.send(direct(MEMPOOL, "marker")).await;
    expect_direct(raw.node.next_event().await);
    assert_eq!(raw.node.metrics.stream_errors(), 1);
    assert!(raw.node.handle.is_connected());
}

/// A sender far faster than the writer, with lanes of 8 messages: `send_direct_wait` waits
/// for room instead of failing, nothing is refused or dropped, and all 200 messages arrive in
/// order.
#[tokio::test(start_paused = true)]
async fn waiting_sends_are_all_delivered_in_order() {
    let config = Config {
        outbound_lane_capacity: 8,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    let handle = raw.node.handle.clone();
    let sender = tokio::spawn(async move {
        for i in 0..200u8 {
            handle
                .send_direct_wait(MEMPOOL, Bytes::from(vec![i]))
                .await?;
        }
        Ok::<_, Error>(())
    });
    for i in 0..200u8 {
        match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => assert_eq!(&message.raw_msg[..], [i]),
            other => panic!("expected a direct send, got {other:?}"),
        }
    }
    sender.await.unwrap().unwrap();
    let metrics = &raw.node.metrics;
    assert_eq!(metrics.outbound_dropped(Priority::Low, DropReason::Full), 0);
}

/// The byte budget refuses like a full lane, and a waiting send goes through once the writer
/// has taken the queued bytes.
#[tokio::test]
async fn byte_budget_refuses_and_waiting_send_gets_room() {
    let config = Config {
        max_queued_bytes: 100,
        ..Config::default()
    };
    let mut raw = Raw::new(config);
    let handle = &raw.node.handle;
    // An empty lane takes a message above the budget.
    handle
        .send_direct(MEMPOOL, Bytes::from(vec![1; 150]))
        .unwrap();
    let full = handle.send_direct(MEMPOOL, Bytes::from(vec![2; 10]));
    assert!(
        matches!(
            full,
            Err(Error::QueueFull {
                lane: Priority::Low
            })
        ),
        "{full:?}"
    );
    assert_eq!(
        raw.node
            .metrics
            .outbound_dropped(Priority::Low, DropReason::Full),
        1
    );
    handle
        .send_direct_wait(MEMPOOL, Bytes::from(vec![3; 10]))
        .await
        .unwrap();
    for expected in [1, 3] {
        match raw.remote.recv_message().await {
            NetworkMessage::DirectSendMsg(message) => assert_eq!(message.raw_msg[0], expected),
            other => panic!("expected a direct send, got {other:?}"),
        }
    }
    assert_eq!(
        raw.node
            .metrics
            .outbound_dropped(Priority::Low, DropReason::Full),
        1
    );
}

/// A remote that sends `requests` RPC requests and never reads what comes back: the peer
/// answers each with 1 MiB (as a state-sync server answers with blocks) until its high lane
/// refuses. Returns the peer and how many answers it queued.
async fn answers_pinned_by_a_remote_that_never_reads(role: PeerRole, requests: u32) -> (Raw, u32) {
    const MIB: usize = 1024 * 1024;
    let mut raw = Raw::with(
        Config::default(),
        Setup {
            role,
            ..Setup::default()
        },
    );
    for id in 0..requests {
        raw.remote.send(request(STORAGE_RPC, id, vec![7])).await;
    }
    let mut answered = 0;
    for _ in 0..requests {
        let InboundEvent::RpcRequest { responder, .. } = raw.node.next_event().await else {
            panic!("expected a request");
        };
        match responder.respond(pattern(MIB)) {
            Ok(()) => answered += 1,
            Err(Error::QueueFull {
                lane: Priority::High,
            }) => {}
            Err(err) => panic!("unexpected answer error {err:?}"),
        }
    }
    (raw, answered)
}

/// A stranger that asks and never reads pins at most `max_untrusted_queued_bytes` (8 MiB) of
/// our answers in its high lane, plus the one the blocked writer holds; the answers over it
/// are refused and counted. A trusted peer's lane holds `max_queued_bytes` (32 MiB).
#[tokio::test]
async fn a_stranger_that_never_reads_pins_at_most_its_lane_budget() {
    const REQUESTS: u32 = 40;
    let (stranger, answered) =
        answers_pinned_by_a_remote_that_never_reads(PeerRole::Unknown, REQUESTS).await;
    println!("answers of 1 MiB pinned by a stranger that never reads: {answered}");
    let metrics = &stranger.node.metrics;
    // 8 answers of 1 MiB fill the lane; the writer holds at most one more.
    assert!((8..=9).contains(&answered), "{answered} answers queued");
    assert_eq!(
        metrics.outbound_dropped(Priority::High, DropReason::Full),
        u64::from(REQUESTS - answered)
    );
    assert_eq!(
        metrics.inbound_rpcs(InboundRpcOutcome::Unanswered),
        u64::from(REQUESTS - answered)
    );

    let (_trusted, answered) =
        answers_pinned_by_a_remote_that_never_reads(PeerRole::Upstream, REQUESTS).await;
    println!("answers of 1 MiB pinned by a trusted peer that never reads: {answered}");
    assert!((32..=33).contains(&answered), "{answered} answers queued");
}

/// RPC responses have bounds of their own: with the high lane full of our own messages to a
/// remote that does not read, requests are still answered; once the answers fill their own
/// bounds (2 MiB here), `respond` refuses with `QueueFull { High }` and `respond_wait` waits
/// until the remote reads, after which every answer given arrives.
#[tokio::test]
async fn responses_have_their_own_budget_and_respond_wait_gets_room() {
    const MIB: usize = 1024 * 1024;
    let config = Config {
        max_queued_bytes: 2 * MIB,
        ..Config::default()
    };
    let setup = Setup {
        role: PeerRole::Upstream,
        ..Setup::default()
    };
    let mut raw = Raw::with(config, setup);
    for id in 0..4 {
        raw.remote.send(request(STORAGE_RPC, id, vec![7])).await;
    }
    let mut responders = Vec::new();
    for _ in 0..4 {
        responders.push(expect_request(raw.node.next_event().await).1);
    }
    // Our own high-priority messages until the lane refuses one: the writer blocks on the
    // remote, which does not read, and the lane fills behind it.
    let handle = raw.node.handle.clone();
    let mut sent = 0;
    loop {
        match handle.send_direct_with_priority(MEMPOOL, pattern(MIB), Priority::High) {
            Ok(()) => sent += 1,
            Err(Error::QueueFull {
                lane: Priority::High,
            }) => break,
            Err(err) => panic!("unexpected send error {err:?}"),
        }
        assert!(sent < 64, "the high lane never filled");
        tokio::task::yield_now().await;
    }
    let metrics = raw.node.metrics.clone();
    let mut responders = responders.into_iter();
    let mut next = || responders.next().expect("four requests");
    next().respond(pattern(MIB)).expect("room of their own");
    next().respond(pattern(MIB)).expect("2 MiB of answers fit");
    let refused = next().respond(pattern(MIB));
    assert!(
        matches!(
            refused,
            Err(Error::QueueFull {
                lane: Priority::High
            })
        ),
        "{refused:?}"
    );
    let waiting = next().respond_wait(pattern(MIB));
    tokio::pin!(waiting);
    assert!(
        waiting.as_mut().now_or_never().is_none(),
        "waits while the answers fill their bounds"
    );
    let reading = async {
        let mut answered = Vec::new();
        while answered.len() < 3 {
            match raw.remote.recv_message().await {
                NetworkMessage::RpcResponse(response) => {
                    assert_eq!(response.raw_response.len(), MIB);
                    answered.push(response.request_id.0);
                }
                NetworkMessage::DirectSendMsg(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
        answered
    };
    let (waited, mut answered) = tokio::join!(waiting, reading);
    waited.expect("room once the remote reads");
    answered.sort_unstable();
    assert_eq!(answered, [0, 1, 3]);
    assert_eq!(metrics.inbound_rpcs(InboundRpcOutcome::Answered), 3);
    assert_eq!(metrics.inbound_rpcs(InboundRpcOutcome::Unanswered), 1);
    // The direct send and the answer refused.
    assert_eq!(
        metrics.outbound_dropped(Priority::High, DropReason::Full),
        2
    );
}

/// A send waiting for room fails with `Disconnected` when the peer closes, and one whose
/// caller gives up while waiting is counted as dropped.
#[tokio::test]
async fn waiting_send_ends_on_disconnect_and_counts_when_abandoned() {
    let config = Config {
        outbound_lane_capacity: 1,
        ..Config::default()
    };
    let raw = Raw::new(config);
    let handle = &raw.node.handle;
    // The writer has not run yet (current-thread runtime), so the lane stays full.
    handle
        .send_direct(MEMPOOL, Bytes::from_static(b"a"))
        .unwrap();
    let mut abandoned = Box::pin(handle.send_direct_wait(MEMPOOL, Bytes::from_static(b"b")));
    assert!(futures::poll!(abandoned.as_mut()).is_pending());
    drop(abandoned);
    assert_eq!(
        raw.node
            .metrics
            .outbound_dropped(Priority::Low, DropReason::Full),
        1
    );
    let mut waiting = Box::pin(handle.send_direct_wait(MEMPOOL, Bytes::from_static(b"c")));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    handle.disconnect();
    let result = waiting.await;
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    assert_eq!(
        raw.node
            .metrics
            .outbound_dropped(Priority::Low, DropReason::Full),
        1
    );
}

/// An RPC due before the ones already pending times out at its own deadline, not theirs: the
/// connection's one timer moves earlier for it (on the paused clock).
#[tokio::test(start_paused = true)]
async fn an_rpc_due_before_the_pending_ones_times_out_at_its_own_deadline() {
    let raw = Raw::new(Config::default());
    let handle = raw.node.handle.clone();
    let start = tokio::time::Instant::now();
    let long = handle.rpc(
        STORAGE_RPC,
        Bytes::from_static(b"long"),
        Duration::from_secs(60),
    );
    tokio::pin!(long);
    // Registered first, so that the timer is set for it when the short one comes.
    assert!((&mut long).now_or_never().is_none());
    tokio::task::yield_now().await;
    let short = handle.rpc(
        STORAGE_RPC,
        Bytes::from_static(b"short"),
        Duration::from_secs(1),
    );
    let result = tokio::select! {
        biased;
        result = short => result,
        result = &mut long => panic!("the long rpc ended first: {result:?}"),
    };
    assert!(
        matches!(result, Err(Error::Timeout { timeout, .. }) if timeout == Duration::from_secs(1)),
        "{result:?}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // The long one is still pending, and times out in its turn.
    let result = long.await;
    assert!(
        matches!(result, Err(Error::Timeout { timeout, .. }) if timeout == Duration::from_secs(60)),
        "{result:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert_eq!(raw.node.metrics.rpc_failures(RpcFailure::Timeout), 2);
}
