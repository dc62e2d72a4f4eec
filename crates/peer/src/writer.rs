//! The writer task: takes messages off the outbound queue, high lane first, and writes them to
//! the socket, cutting large ones into stream fragments.
//!
//! # Wake-up
//!
//! The lanes sit behind a mutex in `Lanes`, with a `writer_idle` flag under the same lock.
//! When the writer finds both lanes empty it flushes, sets the flag (re-checking the lanes
//! under the lock) and waits on a [`tokio::sync::Notify`]; the next push clears the flag and
//! rings (`notify_one`). Pushes to a busy writer only take the lock. No wake-up is lost: a
//! push lands either before the writer's check, which then sees it, or after the flag is set,
//! and `Notify` keeps the permit if the writer has not started waiting yet. We chose this over
//! two mpsc channels because the pure two-lane queue then owns the whole scheduling decision
//! (high first, skipping large messages while a stream is in flight), and a push stays a
//! synchronous, never-waiting call.
//!
//! # Batching
//!
//! The writer takes up to 32 messages off the queue per lock and encodes them in one pass
//! straight into the sink's write buffer (length prefix, envelope, payload; no per-message
//! buffer or future), handing the buffer to the socket whenever it reaches 4 KiB and flushing
//! once the lanes are empty. Below the socket, the Noise stream collects those writes into
//! full Noise frames, so a burst of small messages shares Noise frames and syscalls, and a
//! lone message still goes out at once. The 4 KiB write-out point keeps the write buffer
//! within the 8 KiB it keeps while idle, so small messages never regrow it (and copy it)
//! between two flushes.
//!
//! Before flushing fewer than 64 frames, the writer yields once if the reader has just
//! answered several of our RPCs in one read
//! ([`Lanes::expect_burst`](crate::lanes::Lanes::expect_burst)): their callers were woken
//! together and usually push at once, and their messages then share the write. Otherwise it
//! flushes at once. A yield is not free on tokio's multi-thread runtime: the yielded task runs
//! only once the worker has looked for work elsewhere, and running it then wakes another,
//! sleeping worker to keep one searching; a yield per flush made every lone round trip cross
//! workers (`rpc-lat` on two workers: 1.2 sleeps per RPC and a p99 of 100 µs, against under
//! 0.002 and 22 µs without). An application answering a burst of requests needs no yield: it
//! pushes every answer before the writer it woke gets to run.
//!
//! The writer takes up to 32 messages off the queue per lock (high lane first), so a high
//! message pushed meanwhile waits behind at most that many messages already taken.
//!
//! # Large messages
//!
//! A message above the fragment threshold becomes a [`wire::OutboundStream`] with the next
//! stream id (a per-connection u32 counter). One stream is in flight at a time. After the
//! header and after each fragment, the small messages queued at that moment (high first) are
//! written before the next fragment; large messages wait, in order, for the stream to finish.
//! Taking only the messages queued at that moment keeps a steady trickle of small messages
//! from starving the stream.
//!
//! # Closing
//!
//! When the peer's token is cancelled, the queue has already been closed to new messages; the
//! writer writes what is left (including the rest of a stream in flight), flushes and shuts
//! the socket down, all within `writer_close_timeout`. Whatever is still queued after that is
//! counted as dropped. After a write error it skips straight to the counting.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use tokio::io::AsyncWrite;
use tracing::{debug, error, trace};
use wire::{MultiplexMessage, MultiplexMessageSink, NetworkMessage, OutboundStream, StreamLimits};

use crate::disconnect::{DisconnectReason, write_disconnect_reason};
use crate::error::ErrorChain;
use crate::lanes::Outbound;
use crate::lifecycle::TaskExit;
use crate::metrics::{Direction, MessageTally};
use crate::shared::Shared;

/// The writer actor: owns the write half of the socket.
pub(crate) struct Writer<W> {
    shared: Arc<Shared>,
    sink: MultiplexMessageSink<W>,
    limits: StreamLimits,
    /// The large message being streamed, if any.
    stream: Option<OutboundStream>,
    next_stream_id: u32,
    /// Small messages we may still write before the next fragment of `stream`.
    small_budget: usize,
    /// Messages taken off the queue in one go (at most [`WRITER_BATCH`]), in the order the
    /// queue gave them, not yet written.
    batch: VecDeque<Outbound>,
    /// Frames fed since the last flush.
    unflushed: bool,
    /// How many.
    fed_since_flush: usize,
    /// Messages taken and not yet added to the metrics (once per batch taken off the queue).
    tally: MessageTally,
    _exit: Arc<TaskExit>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        writer: W,
        limits: StreamLimits,
        exit: Arc<TaskExit>,
    ) -> Self {
        let mut sink = MultiplexMessageSink::with_max_frame_size(writer, limits.max_frame_size());
        sink.set_backpressure_boundary(WRITE_OUT_AT);
        Self {
            sink,
            shared,
            limits,
            stream: None,
            next_stream_id: 0,
            small_budget: 0,
            // Grows with the first batches taken: an idle connection holds none.
            batch: VecDeque::new(),
            unflushed: false,
            fed_since_flush: 0,
            tally: MessageTally::default(),
            _exit: exit,
        }
    }

    /// Writes until the peer closes or a write fails, then closes the socket.
    pub(crate) async fn run(mut self) {
        let cancel = self.shared.lifecycle.cancel_token().clone();
        let failed = tokio::select! {
            // Either arm ends the loop; order only matters when both are ready, and then we
            // stop taking new work.
            biased;
            // The peer is closing (disconnect, shutdown, or the reader ended): drain below.
            () = cancel.cancelled() => None,
            // Ends only on a write error. Cancel-safe: a message is either still in `batch` or
            // encoded in the sink's buffer, which the sink keeps.
            result = self.write_loop() => match result {
                Ok(never) => match never {},
                Err(err) => Some(err),
            },
        };
        match failed {
            None => {
                // When the node's shutdown token cancelled ours directly, nobody has closed
                // the queue yet; do it now (a reason recorded earlier is kept), so that the
                // drain below ends.
                self.shared.begin_close(DisconnectReason::Shutdown);
                self.close().await;
            }
            Some(err) => {
                let reason = write_disconnect_reason(&err);
                debug!(error = %ErrorChain(&err), %reason, "write failed");
                self.shared.begin_close(reason);
            }
        }
        self.shared
            .metrics
            .record_tally(Direction::Sent, &mut self.tally);
        let dropped = self.shared.lanes.drop_queued(self.batch.drain(..));
        if dropped > 0 || self.stream.is_some() {
            debug!(
                dropped,
                stream_unfinished = self.stream.is_some(),
                "writer stopped with messages unsent"
            );
        }
    }

    async fn write_loop(&mut self) -> Result<Infallible, wire::Error> {
        loop {
            self.write_ready().await?;
            self.shared.lanes.wait_for_push().await;
        }
    }

    /// Writes every frame that is ready, then flushes if anything was written.
    async fn write_ready(&mut self) -> Result<(), wire::Error> {
        let mut yielded = false;
        loop {
            // Encode what is ready in one pass, handing the buffer to the socket whenever it
            // reaches its write-out point.
            while self.encode_ready() {
                poll_fn(|cx| Sink::<&MultiplexMessage>::poll_ready(Pin::new(&mut self.sink), cx))
                    .await?;
            }
            // Before flushing a short batch after a read answered several of our RPCs, let
            // their callers run once: they often push right away, and their messages then
            // share this write instead of costing one each.
            if !self.unflushed
                || yielded
                || self.fed_since_flush >= YIELD_BELOW
                || !self.shared.lanes.take_burst_hint()
            {
                break;
            }
            yielded = true;
            tokio::task::yield_now().await;
        }
        self.fed_since_flush = 0;
        if self.unflushed {
            self.sink.flush().await?;
            self.unflushed = false;
            self.shared.metrics.record_flush();
            trace!("flushed");
        }
        Ok(())
    }

    /// Graceful close: the queue no longer takes messages, so this ends once what is left is
    /// written, or at the timeout.
    async fn close(&mut self) {
        let timeout = self.shared.config.writer_close_timeout;
        let drain = async {
            self.write_ready().await?;
            self.sink.close().await
        };
        match tokio::time::timeout(timeout, drain).await {
            Ok(Ok(())) => debug!("writer flushed and closed the socket"),
            Ok(Err(err)) => debug!(error = %ErrorChain(&err), "writer failed while closing"),
            Err(_) => debug!(?timeout, "writer did not finish closing in time"),
        }
    }

    /// Encodes ready frames into the sink's buffer, without waiting: returns `true` when the
    /// buffer has reached its write-out point (write it out, then call again), `false` once
    /// nothing more is ready. A message the codec refuses (a local bug) is logged and skipped.
    fn encode_ready(&mut self) -> bool {
        loop {
            if self.sink.is_above_boundary() {
                return true;
            }
            let encoded = match self.next_frame() {
                None => return false,
                Some(Frame::Message(message)) => self.sink.buffer_message(&message),
                Some(Frame::Stream(piece)) => self.sink.buffer_frame(&piece),
            };
            match encoded {
                Ok(()) => {
                    self.unflushed = true;
                    self.fed_since_flush += 1;
                }
                // We stream everything above the threshold and never build invalid messages,
                // so the codec refusing a frame is our bug, not the remote's.
                Err(err) => {
                    error!(error = %ErrorChain(&err), "outbound frame could not be encoded, dropped");
                }
            }
        }
    }

    /// The next frame to write, or `None` when nothing is ready.
    fn next_frame(&mut self) -> Option<Frame> {
        if let Some(stream) = &mut self.stream {
            if self.small_budget > 0
                && let Some(item) = take_small(&mut self.batch, &self.shared)
            {
                self.small_budget -= 1;
                self.tally.add(&item.message);
                return Some(Frame::Message(item.message));
            }
            let frame = stream.next_frame();
            if stream.remaining() == 0 {
                self.stream = None;
            }
            if frame.is_some() {
                self.small_budget = self.batch.len() + self.shared.lanes.queued();
                return frame.map(Frame::Stream);
            }
        }
        loop {
            if self.batch.is_empty() {
                self.shared
                    .metrics
                    .record_tally(Direction::Sent, &mut self.tally);
                self.shared.lanes.pop_batch(&mut self.batch, WRITER_BATCH);
            }
            let item = self.batch.pop_front()?;
            self.tally.add(&item.message);
            if !item.large {
                return Some(Frame::Message(item.message));
            }
            let stream_id = self.next_stream_id;
            self.next_stream_id = stream_id.wrapping_add(1);
            match OutboundStream::new(item.message, stream_id, self.limits) {
                Ok(mut stream) => {
                    self.shared.metrics.record_stream(Direction::Sent);
                    trace!(
                        stream_id,
                        fragments = stream.num_fragments(),
                        "streaming a large message"
                    );
                    let header = stream.next_frame();
                    self.stream = Some(stream);
                    self.small_budget = self.batch.len() + self.shared.lanes.queued();
                    return header.map(Frame::Stream);
                }
                // Payload sizes are checked against what a stream can carry before they are
                // queued, so this is a local bug.
                Err(err) => {
                    error!(error = %ErrorChain(&err), "large message could not be streamed, dropped")
                }
            }
        }
    }
}

/// One frame's worth for the sink.
enum Frame {
    /// A whole message, framed as `MultiplexMessage::Message`.
    Message(NetworkMessage),
    /// A stream header or fragment.
    Stream(MultiplexMessage),
}

/// The first small message of `batch`, or else of the queue (high lane first): what may go
/// between two fragments of a stream.
fn take_small(batch: &mut VecDeque<Outbound>, shared: &Shared) -> Option<Outbound> {
    match batch.iter().position(|item| !item.large) {
        Some(position) => batch.remove(position),
        None => shared.lanes.pop_where(|item| !item.large),
    }
}

/// Messages the writer takes off the queue per lock: fewer lock hand-offs with the pushing
/// threads under load, at the price of a high message queued meanwhile waiting behind at most
/// this many messages already taken (a few microseconds of encoding at 128 bytes each).
const WRITER_BATCH: usize = 32;

/// Buffered bytes at which the writer hands its buffer to the socket: half the size the
/// sink's buffer starts at and keeps while idle ([`netcore::IDLE_BUFFER_KEEP`], 8 KiB), so
/// that messages of up to 4 KiB never make it grow (and be copied, and be given back at the
/// next flush) between flushes. The Noise stream below buffers up to a full Noise frame
/// anyway, so this costs no extra frame or syscall.
const WRITE_OUT_AT: usize = netcore::IDLE_BUFFER_KEEP / 2;

/// A flush of fewer frames than this first yields once to let other tasks add to it; a
/// larger batch is worth its write as it is.
const YIELD_BELOW: usize = 64;
