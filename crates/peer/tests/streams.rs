//! A remote that parks memory in unfinished streams, over in-memory sockets on tokio's paused
//! clock: the reassembly deadline, the node-wide stream budget and the smaller maximum for
//! peers outside the trusted set each close its connection with a reason, and every byte held
//! comes back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use noise::PeerRole;
use peer::metrics::{Direction, StreamAbortReason};
use peer::{Config, DisconnectReason, Metrics, StreamBudget};
use test_support::within_for;
use tokio::time::Instant;
use wire::{MultiplexMessage, OutboundStream, StreamHeader, StreamLimits, StreamMessage};

use common::*;

/// 16 KiB frames and 256 KiB messages: 16 fragments per largest message, as with the defaults.
fn small_frames() -> Config {
    Config {
        max_frame_size: 16 * 1024,
        max_message_size: 256 * 1024,
        ..Config::default()
    }
}

/// The frames of a stream carrying a `len`-byte DirectSend as stream `id`.
fn stream_frames(len: usize, id: u32, config: &Config) -> Vec<MultiplexMessage> {
    let limits = StreamLimits::new(config.max_frame_size, config.max_message_size).unwrap();
    OutboundStream::new(direct(MEMPOOL, pattern(len)), id, limits)
        .unwrap()
        .collect()
}

/// Sends every frame; a peer that has closed the connection makes writes fail, which the
/// attacker ignores.
async fn send_all(remote: &mut RawRemote, frames: impl IntoIterator<Item = MultiplexMessage>) {
    for frame in frames {
        let _ = remote.sink.feed(&frame).await;
    }
    let _ = remote.sink.flush().await;
}

/// Keeps the connection busy with a DirectSend every 7 s (each one delivered), until the peer
/// closes it; panics if it is still open after two minutes.
async fn ping_until_closed(raw: &mut Raw) -> DisconnectReason {
    let handle = raw.node.handle.clone();
    let closed = handle.closed();
    tokio::pin!(closed);
    for _ in 0..17 {
        tokio::select! {
            biased;
            reason = &mut closed => return reason,
            () = tokio::time::sleep(Duration::from_secs(7)) => {}
        }
        send_all(
            &mut raw.remote,
            [MultiplexMessage::Message(direct(CONSENSUS, "ping"))],
        )
        .await;
        tokio::select! {
            biased;
            reason = &mut closed => return reason,
            event = raw.node.events.recv() => {
                expect_direct(event.expect("router dropped"));
            }
        }
    }
    panic!("the connection is still open two minutes after the stream started");
}

/// The attack at AptosNet's real sizes: a trusted remote sends a header declaring 16
/// fragments and 15 fragments of 4 MiB, never the last, and keeps sending pings. The peer
/// holds 64 MiB for exactly the 30 s deadline, then closes the connection with
/// `StreamTimeout`, counted, and gives every byte back.
#[tokio::test(start_paused = true)]
async fn unfinished_stream_closes_at_its_deadline_despite_pings() {
    let config = Config::default();
    let mut raw = Raw::with(
        config.clone(),
        Setup {
            role: PeerRole::Validator,
            ..Setup::default()
        },
    );
    let mut frames = stream_frames(config.max_message_size, 1, &config);
    assert_eq!(frames.len(), 17);
    frames.pop();
    let started = Instant::now();
    send_all(&mut raw.remote, frames).await;

    let reason = ping_until_closed(&mut raw).await;
    assert_eq!(reason, DisconnectReason::StreamTimeout);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    let node = &raw.node;
    assert_eq!(node.metrics.disconnects(DisconnectReason::StreamTimeout), 1);
    assert_eq!(node.metrics.streams_aborted(StreamAbortReason::Timeout), 1);
    // The header's piece and 15 fragments, 4 MiB less 64 bytes each.
    assert_eq!(node.budget.peak(), 16 * 4_194_240);
    assert_eq!(node.budget.held(), 0);
    assert_eq!(node.metrics.stream_bytes_held(), 0);
}

/// Connections share one budget: with two streams in progress that together would pass it,
/// the connection whose fragment would take the total over is closed with
/// `StreamBudgetExceeded`, counted; the other one completes its message, and nothing stays
/// held.
#[tokio::test(start_paused = true)]
async fn stream_budget_closes_the_connection_that_would_pass_it() {
    let config = small_frames();
    let metrics = Metrics::default();
    let budget = Arc::new(StreamBudget::new(300 * 1024, &metrics));
    let setup = || Setup {
        role: PeerRole::Validator,
        budget: Some((budget.clone(), metrics.clone())),
    };
    let mut first = Raw::with(config.clone(), setup());
    let mut second = Raw::with(config.clone(), setup());
    let mut first_frames = stream_frames(config.max_message_size, 1, &config);
    let last = first_frames.pop().unwrap();
    send_all(&mut first.remote, first_frames).await;
    // A marker behind the fragments: once it arrives, they are all held.
    send_all(
        &mut first.remote,
        [MultiplexMessage::Message(direct(CONSENSUS, "held"))],
    )
    .await;
    expect_direct(first.node.next_event().await);
    let held_by_first = budget.held();
    assert_eq!(held_by_first, 16 * (16 * 1024 - 64));

    send_all(
        &mut second.remote,
        stream_frames(config.max_message_size, 1, &config),
    )
    .await;
    let reason = within_for("second closes", PATIENCE, second.node.handle.closed()).await;
    assert_eq!(reason, DisconnectReason::StreamBudgetExceeded);
    assert_eq!(
        metrics.streams_aborted(StreamAbortReason::BudgetExceeded),
        1
    );
    assert_eq!(
        metrics.disconnects(DisconnectReason::StreamBudgetExceeded),
        1
    );
    assert!(budget.peak() <= budget.limit());
    assert_eq!(budget.held(), held_by_first);

    // The first connection is untouched: its last fragment completes the message.
    send_all(&mut first.remote, [last]).await;
    let (_, _, payload) = expect_direct(first.node.next_event().await);
    assert_eq!(payload, pattern(config.max_message_size));
    assert!(first.node.handle.is_connected());
    assert_eq!((budget.held(), metrics.stream_bytes_held()), (0, 0));
}

/// A remote outside the trusted set may send 8 MiB: a header declaring three 4 MiB fragments
/// closes the connection with `MessageTooLarge` before anything is held. The same header from
/// a trusted remote starts a stream.
#[tokio::test(start_paused = true)]
async fn header_over_the_untrusted_maximum_closes_before_holding() {
    let header = || {
        MultiplexMessage::Stream(StreamMessage::Header(StreamHeader {
            request_id: 1,
            num_fragments: 3,
            message: direct(MEMPOOL, pattern(4 * 1024 * 1024 - 64)),
        }))
    };
    let mut stranger = Raw::new(Config::default());
    send_all(&mut stranger.remote, [header()]).await;
    let reason = within_for("closed", PATIENCE, stranger.node.handle.closed()).await;
    assert_eq!(reason, DisconnectReason::MessageTooLarge);
    let node = &stranger.node;
    assert_eq!(node.metrics.streams_aborted(StreamAbortReason::TooLarge), 1);
    assert_eq!(
        node.metrics.disconnects(DisconnectReason::MessageTooLarge),
        1
    );
    assert_eq!(node.budget.peak(), 0);

    let mut trusted = Raw::with(
        Config::default(),
        Setup {
            role: PeerRole::Upstream,
            ..Setup::default()
        },
    );
    send_all(&mut trusted.remote, [header()]).await;
    send_all(
        &mut trusted.remote,
        [MultiplexMessage::Message(direct(CONSENSUS, "marker"))],
    )
    .await;
    expect_direct(trusted.node.next_event().await);
    assert!(trusted.node.handle.is_connected());
    assert_eq!(trusted.node.budget.held(), 4 * 1024 * 1024 - 64);
}

/// A stranger's fragments adding up to more than 8 MiB (within the two fragments its maximum
/// allows) close the connection with `MessageTooLarge` too.
#[tokio::test(start_paused = true)]
async fn fragments_over_the_untrusted_maximum_close_the_connection() {
    let config = Config::default();
    let trusted_limits = config.stream_limits().unwrap();
    // 12 MiB less a little cut for a trusted receiver: a header and two fragments.
    let frames: Vec<_> = OutboundStream::new(
        direct(MEMPOOL, pattern(12 * 1024 * 1024 - 1024)),
        1,
        trusted_limits,
    )
    .unwrap()
    .collect();
    assert_eq!(frames.len(), 3);
    let mut stranger = Raw::new(config);
    send_all(&mut stranger.remote, frames).await;
    let reason = within_for("closed", PATIENCE, stranger.node.handle.closed()).await;
    assert_eq!(reason, DisconnectReason::MessageTooLarge);
    // The header's piece and the first fragment; the second one would pass 8 MiB.
    assert_eq!(stranger.node.budget.peak(), 2 * 4_194_240);
    assert_eq!(stranger.node.budget.held(), 0);
}

/// Every way a stream ends gives its bytes back: 50 completed, 20 replaced by a new header,
/// 20 dropped by a fragment out of order, one cut by the deadline and one by a disconnect,
/// over connections sharing one budget. Nothing leaks, and each abort is counted by reason.
#[tokio::test(start_paused = true)]
async fn held_bytes_come_back_however_streams_end() {
    let config = small_frames();
    let metrics = Metrics::default();
    let budget = Arc::new(StreamBudget::new(
        peer::DEFAULT_MAX_STREAM_BYTES_IN_FLIGHT,
        &metrics,
    ));
    let setup = || Setup {
        role: PeerRole::Unknown,
        budget: Some((budget.clone(), metrics.clone())),
    };
    let mut raw = Raw::with(config.clone(), setup());
    let len = 100 * 1024;
    let mut id = 0;
    for _ in 0..50 {
        id += 1;
        send_all(&mut raw.remote, stream_frames(len, id, &config)).await;
        expect_direct(raw.node.next_event().await);
    }
    for round in 0..20 {
        // Replaced: half a stream, then a new header.
        id += 1;
        let mut frames = stream_frames(len, id, &config);
        frames.truncate(3);
        send_all(&mut raw.remote, frames).await;
        // Out of order: half a stream, then a fragment skipping one.
        id += 1;
        let mut frames = stream_frames(len, id, &config);
        let skipping = frames.remove(4);
        frames.truncate(3);
        frames.push(skipping);
        send_all(&mut raw.remote, frames).await;
        send_all(
            &mut raw.remote,
            [MultiplexMessage::Message(direct(CONSENSUS, "sync"))],
        )
        .await;
        expect_direct(raw.node.next_event().await);
        assert_eq!(budget.held(), 0, "after round {round}");
    }
    assert!(raw.node.handle.is_connected());
    assert_eq!(metrics.streams(Direction::Received), 50);
    assert_eq!(metrics.streams_aborted(StreamAbortReason::Replaced), 20);
    assert_eq!(metrics.streams_aborted(StreamAbortReason::Invalid), 20);

    // Cut by the deadline.
    let mut frames = stream_frames(len, 1000, &config);
    frames.truncate(5);
    send_all(&mut raw.remote, frames).await;
    let reason = within_for("deadline", PATIENCE * 2, raw.node.handle.closed()).await;
    assert_eq!(reason, DisconnectReason::StreamTimeout);

    // Cut by a disconnect.
    let mut other = Raw::with(config.clone(), setup());
    let mut frames = stream_frames(len, 1, &config);
    frames.truncate(5);
    send_all(&mut other.remote, frames).await;
    send_all(
        &mut other.remote,
        [MultiplexMessage::Message(direct(CONSENSUS, "held"))],
    )
    .await;
    expect_direct(other.node.next_event().await);
    assert!(budget.held() > 0);
    other.node.handle.disconnect();
    assert_eq!(
        other.node.handle.closed().await,
        DisconnectReason::Requested
    );

    assert_eq!(metrics.streams_aborted(StreamAbortReason::Timeout), 1);
    assert_eq!(
        metrics.streams_aborted(StreamAbortReason::ConnectionClosed),
        1
    );
    assert_eq!((budget.held(), metrics.stream_bytes_held()), (0, 0));
    assert!(budget.peak() <= len);
}
