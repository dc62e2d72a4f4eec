//! [`InboundStreams`]: the reader's [`Reassembler`] held to the limits that stop a remote from
//! parking memory in unfinished streams: a maximum message size for its role (checked by the
//! reassembler, on the header's fragment count and on the bytes received), a deadline from
//! each header, and a share of the node-wide [`StreamBudget`].
//!
//! | what the remote does | what happens |
//! |---|---|
//! | header declaring more than its maximum, or pieces adding up to more | close: [`DisconnectReason::MessageTooLarge`], before the stream is held |
//! | last fragment not in within `stream_reassembly_timeout` of the header | close: [`DisconnectReason::StreamTimeout`] (the reader's timer, or the next piece) |
//! | a piece that would take the node's unfinished streams over their budget | close: [`DisconnectReason::StreamBudgetExceeded`] |
//! | a new header before the last fragment | the old stream is dropped, the new one runs |
//! | an invalid header or fragment | that stream is dropped, the connection stays |
//!
//! Each aborted stream is counted by reason, and the budget always holds exactly what the
//! reassembler holds: bytes come back when a stream completes, fails, or the connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use wire::{NetworkMessage, Reassembler, StreamLimits, StreamMessage};

use crate::disconnect::DisconnectReason;
use crate::error::ErrorChain;
use crate::metrics::{Direction, Metrics, StreamAbortReason};
use crate::stream_budget::{BudgetShare, StreamBudget};

/// One connection's inbound streams: the reassembler, the deadline of the stream in progress,
/// and the budget share its bytes take.
#[derive(Debug)]
pub(crate) struct InboundStreams {
    reassembler: Reassembler,
    timeout: Duration,
    /// When the stream in progress must be complete; `None` while there is none.
    deadline: Option<Instant>,
    share: BudgetShare,
    metrics: Arc<Metrics>,
}

impl InboundStreams {
    /// Streams held to `limits` (the remote's maximum message size), each complete within
    /// `timeout` of its header, their bytes taken from `budget`.
    pub(crate) fn new(
        limits: StreamLimits,
        timeout: Duration,
        budget: Arc<StreamBudget>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            reassembler: Reassembler::new(limits),
            timeout,
            deadline: None,
            share: BudgetShare::new(budget),
            metrics,
        }
    }

    /// The largest frame the connection reads.
    pub(crate) fn max_frame_size(&self) -> usize {
        self.reassembler.limits().max_frame_size()
    }

    /// When the stream in progress must be complete, if there is one: the reader closes the
    /// connection with [`DisconnectReason::StreamTimeout`] then.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes one stream piece arriving at `now`. Returns the message it completes, if any, or
    /// the reason to close the connection. Everything else (a stream dropped or refused, with
    /// the connection kept) is counted and logged here.
    pub(crate) fn handle(
        &mut self,
        piece: StreamMessage,
        now: Instant,
    ) -> Result<Option<NetworkMessage>, DisconnectReason> {
        // The timer may not have fired yet when a batch of frames is handled late.
        if self.deadline.is_some_and(|deadline| deadline <= now) {
            return Err(DisconnectReason::StreamTimeout);
        }
        let is_header = matches!(piece, StreamMessage::Header(_));
        let had_stream = self.reassembler.stream_in_progress().is_some();
        let result = self.reassembler.handle_stream_message(piece);
        let started =
            is_header && matches!(result, Ok(_) | Err(wire::Error::StreamReplaced { .. }));
        let message = match result {
            Ok(Some(message)) => {
                self.metrics.record_stream(Direction::Received);
                Some(message)
            }
            Ok(None) => None,
            Err(err) => {
                self.metrics.record_stream_error();
                debug!(error = %ErrorChain(&err), "stream message refused");
                if let Some(reason) = abort_reason(&err, had_stream) {
                    self.metrics.record_stream_aborted(reason);
                    if reason == StreamAbortReason::TooLarge {
                        return Err(DisconnectReason::MessageTooLarge);
                    }
                }
                None
            }
        };
        if self.reassembler.stream_in_progress().is_none() {
            self.deadline = None;
        } else if started {
            self.deadline = Some(now + self.timeout);
        }
        if self.share.resize(self.reassembler.buffered_len()).is_err() {
            debug!(
                held = self.share.budget().held(),
                limit = self.share.budget().limit(),
                "stream budget exceeded"
            );
            return Err(DisconnectReason::StreamBudgetExceeded);
        }
        Ok(message)
    }

    /// The connection ends for `reason`: drops the stream in progress, if any, counting why,
    /// and gives its bytes back to the budget.
    pub(crate) fn finish(&mut self, reason: DisconnectReason) {
        if self.reassembler.abort().is_some() {
            let aborted = match reason {
                DisconnectReason::StreamTimeout => StreamAbortReason::Timeout,
                DisconnectReason::StreamBudgetExceeded => StreamAbortReason::BudgetExceeded,
                _ => StreamAbortReason::ConnectionClosed,
            };
            self.metrics.record_stream_aborted(aborted);
        }
        self.deadline = None;
        // Shrinking never fails.
        let _ = self.share.resize(0);
    }
}

/// Which stream `err` aborted, if any: `had_stream` says whether one was in progress.
fn abort_reason(err: &wire::Error, had_stream: bool) -> Option<StreamAbortReason> {
    match err {
        wire::Error::MessageTooLarge { .. } => Some(StreamAbortReason::TooLarge),
        wire::Error::InvalidFragmentCount { num_fragments, max } if num_fragments > max => {
            Some(StreamAbortReason::TooLarge)
        }
        wire::Error::StreamReplaced { .. } => Some(StreamAbortReason::Replaced),
        // A refused header, or a fragment that drops the stream in progress.
        wire::Error::InvalidFragmentCount { .. } | wire::Error::StreamedErrorMessage => {
            Some(StreamAbortReason::Invalid)
        }
        wire::Error::StreamIdMismatch { .. } | wire::Error::FragmentOutOfOrder { .. }
            if had_stream =>
        {
            Some(StreamAbortReason::Invalid)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wire::{DirectSendMsg, OutboundStream, ProtocolId, StreamHeader};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn direct_send(len: usize) -> NetworkMessage {
        NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
            priority: 0,
            raw_msg: Bytes::from(vec![7; len]),
        })
    }

    fn pieces(len: usize, id: u32, limits: StreamLimits) -> Vec<StreamMessage> {
        OutboundStream::new(direct_send(len), id, limits)
            .unwrap()
            .map(|frame| match frame {
                wire::MultiplexMessage::Stream(piece) => piece,
                other => panic!("not a stream piece: {other:?}"),
            })
            .collect()
    }

    fn streams(limits: StreamLimits, budget: usize) -> (InboundStreams, Arc<StreamBudget>) {
        let metrics = Arc::new(Metrics::default());
        let budget = Arc::new(StreamBudget::new(budget, &metrics));
        (
            InboundStreams::new(limits, TIMEOUT, budget.clone(), metrics),
            budget,
        )
    }

    /// The deadline runs from the header, is cleared by completion, and a piece after it
    /// closes the connection.
    #[test]
    fn deadline_runs_from_the_header() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        let (mut streams, budget) = streams(limits, 1 << 20);
        let start = Instant::now();
        let mut pieces = pieces(3000, 1, limits).into_iter();
        streams.handle(pieces.next().unwrap(), start).unwrap();
        assert_eq!(streams.deadline(), Some(start + TIMEOUT));
        let late = start + TIMEOUT;
        assert_eq!(
            streams.handle(pieces.next().unwrap(), late),
            Err(DisconnectReason::StreamTimeout)
        );
        streams.finish(DisconnectReason::StreamTimeout);
        assert_eq!(
            streams.metrics.streams_aborted(StreamAbortReason::Timeout),
            1
        );
        assert_eq!((budget.held(), streams.deadline()), (0, None));
    }

    /// A header declaring more fragments than the maximum needs closes the connection and
    /// holds nothing.
    #[test]
    fn oversized_header_closes_before_holding() {
        let limits = StreamLimits::new(1024, 2048).unwrap();
        let (mut streams, budget) = streams(limits, 1 << 20);
        let header = StreamMessage::Header(StreamHeader {
            request_id: 1,
            num_fragments: 3,
            message: direct_send(10),
        });
        assert_eq!(
            streams.handle(header, Instant::now()),
            Err(DisconnectReason::MessageTooLarge)
        );
        assert_eq!((budget.held(), budget.peak()), (0, 0));
    }

    /// Completed, replaced and invalid streams all give their bytes back.
    #[test]
    fn bytes_come_back_however_a_stream_ends() {
        let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
        let (mut streams, budget) = streams(limits, 1 << 20);
        let now = Instant::now();
        let mut done = None;
        for piece in pieces(3000, 1, limits) {
            done = streams.handle(piece, now).unwrap();
        }
        assert!(done.is_some());
        assert_eq!(budget.held(), 0);
        let first = pieces(3000, 2, limits);
        streams.handle(first[0].clone(), now).unwrap();
        streams.handle(first[1].clone(), now).unwrap();
        assert!(budget.held() > 0);
        // Replaced by a new header.
        let second = pieces(3000, 3, limits);
        streams.handle(second[0].clone(), now).unwrap();
        assert_eq!(budget.held(), streams.reassembler.buffered_len());
        // Dropped by a fragment out of order.
        streams.handle(second[2].clone(), now).unwrap();
        assert_eq!((budget.held(), streams.deadline()), (0, None));
        let metrics = &streams.metrics;
        assert_eq!(metrics.streams_aborted(StreamAbortReason::Replaced), 1);
        assert_eq!(metrics.streams_aborted(StreamAbortReason::Invalid), 1);
    }
}
