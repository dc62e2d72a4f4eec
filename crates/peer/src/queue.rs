//! [`Priority`] and the outbound queue: two bounded lanes, high before low. Pure: no I/O, no
//! clock, no waking; the writer and the handles drive it under a lock (see `shared`). Public
//! so that it can be tested and measured on its own (`benches/outbound_queue.rs`); a
//! [`PeerHandle`](crate::PeerHandle) is the way to send.
//!
//! Overflow policy: a push onto a full lane is refused (the caller gets the message back and an
//! error), never waits, and is counted. Pops take the high lane first; within a lane, order is
//! FIFO, except that [`OutboundQueue::pop_where`] lets the writer skip over messages it cannot
//! take yet (large messages while a stream is in flight).

use std::collections::VecDeque;
use std::fmt;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use wire::ProtocolId;

/// Which outbound lane a message takes. The writer always empties the high lane before it
/// takes from the low one.
///
/// The wire has a priority byte too, but AptosNet always writes 0 and ignores what it reads,
/// so we do the same: priority is a local scheduling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Consensus, health checks and RPC responses: latency-sensitive, small.
    High,
    /// Everything else: bulk transfers, mempool, state sync.
    Low,
}

impl Priority {
    /// Both lanes, high first: the order the writer serves them in.
    pub const ALL: [Self; 2] = [Self::High, Self::Low];

    /// The lane a protocol's messages take: consensus (ids 0, 1, 6, 7, 11, 12), the health
    /// checker (5) and the consensus observer (27, 28) are high; everything else is low.
    /// (RPC responses are always high, whatever their protocol.)
    pub const fn for_protocol(protocol: ProtocolId) -> Self {
        match protocol {
            ProtocolId::CONSENSUS_RPC_BCS
            | ProtocolId::CONSENSUS_DIRECT_SEND_BCS
            | ProtocolId::HEALTH_CHECKER_RPC
            | ProtocolId::CONSENSUS_DIRECT_SEND_JSON
            | ProtocolId::CONSENSUS_RPC_JSON
            | ProtocolId::CONSENSUS_RPC_COMPRESSED
            | ProtocolId::CONSENSUS_DIRECT_SEND_COMPRESSED
            | ProtocolId::CONSENSUS_OBSERVER
            | ProtocolId::CONSENSUS_OBSERVER_RPC => Self::High,
            _ => Self::Low,
        }
    }

    /// `"high"` or `"low"`: the `lane` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Low => "low",
        }
    }

    /// The priority byte we write on the wire: always 0, as AptosNet does.
    pub(crate) const fn wire_byte(self) -> u8 {
        0
    }

    const fn index(self) -> usize {
        match self {
            Self::High => 0,
            Self::Low => 1,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Priority {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Why a push was refused; the message comes back with the reason.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The lane holds `capacity` messages already (counted in [`OutboundQueue::dropped`]).
    Full(T),
    /// The queue was closed: the peer is disconnecting.
    Closed(T),
}

/// Two bounded FIFO lanes of `capacity` messages each.
///
/// Calling protocol: handles [`push`](Self::push); the writer [`pop`](Self::pop)s (or
/// [`pop_where`](Self::pop_where)s) until `None`, then waits to be woken. On disconnect,
/// [`close`](Self::close) refuses further pushes while the writer drains what is left.
#[derive(Debug)]
pub struct OutboundQueue<T> {
    lanes: [VecDeque<T>; 2],
    capacity: usize,
    dropped: [u64; 2],
    closed: bool,
}

impl<T> OutboundQueue<T> {
    /// An empty, open queue whose lanes hold `capacity` messages each.
    pub fn new(capacity: usize) -> Self {
        Self {
            // Allocated as they fill: most connections never queue more than a few messages.
            lanes: [VecDeque::new(), VecDeque::new()],
            capacity,
            dropped: [0; 2],
            closed: false,
        }
    }

    /// Appends `item` to `lane`. Never waits: a full lane refuses it (and counts the drop), a
    /// closed queue refuses it without counting.
    pub fn push(&mut self, lane: Priority, item: T) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        let queue = &mut self.lanes[lane.index()];
        if queue.len() >= self.capacity {
            self.dropped[lane.index()] += 1;
            return Err(PushError::Full(item));
        }
        queue.push_back(item);
        Ok(())
    }

    /// The oldest message of the high lane, or else of the low lane.
    pub fn pop(&mut self) -> Option<(Priority, T)> {
        self.pop_where(|_| true)
    }

    /// The oldest message that `accept` takes, looking through the high lane first, then the
    /// low lane. Messages skipped keep their place. O(messages skipped).
    pub fn pop_where(&mut self, mut accept: impl FnMut(&T) -> bool) -> Option<(Priority, T)> {
        for lane in Priority::ALL {
            let queue = &mut self.lanes[lane.index()];
            if let Some(position) = queue.iter().position(&mut accept) {
                return queue.remove(position).map(|item| (lane, item));
            }
        }
        None
    }

    /// Moves messages into `out` until it holds `max`, in the order [`pop`](Self::pop) would
    /// give them (high lane first, FIFO within a lane).
    pub fn pop_into(&mut self, out: &mut VecDeque<T>, max: usize) {
        for queue in &mut self.lanes {
            let n = max.saturating_sub(out.len()).min(queue.len());
            out.extend(queue.drain(..n));
        }
    }

    /// Refuses every later push. Messages already queued stay for the writer to drain.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Empties both lanes and returns how many messages each held, high first (for counting what
    /// a disconnect dropped).
    pub fn clear(&mut self) -> [usize; 2] {
        let counts = [self.lanes[0].len(), self.lanes[1].len()];
        for queue in &mut self.lanes {
            queue.clear();
        }
        counts
    }

    /// Messages queued in `lane`.
    pub fn len(&self, lane: Priority) -> usize {
        self.lanes[lane.index()].len()
    }

    /// Messages queued in both lanes.
    pub fn total_len(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
    }

    /// Whether both lanes are empty.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }

    /// Pushes refused because `lane` was full, since the queue was made.
    pub fn dropped(&self, lane: Priority) -> u64 {
        self.dropped[lane.index()]
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The lanes of the spec: consensus, health checker and consensus observer are high.
    #[test]
    fn protocol_priorities_follow_the_spec() {
        let high: Vec<u8> = (0..=255)
            .map(ProtocolId::from_wire)
            .filter(|&id| Priority::for_protocol(id) == Priority::High)
            .map(ProtocolId::as_u8)
            .collect();
        assert_eq!(high, [0, 1, 5, 6, 7, 11, 12, 27, 28]);
        assert_eq!(Priority::High.wire_byte(), 0);
        assert_eq!(Priority::Low.to_string(), "low");
    }

    /// A full lane refuses and counts; the other lane is unaffected; a closed queue refuses
    /// without counting but still drains.
    #[test]
    fn full_lane_refuses_and_closed_queue_drains() {
        let mut queue = OutboundQueue::new(2);
        queue.push(Priority::Low, 1).unwrap();
        queue.push(Priority::Low, 2).unwrap();
        assert_eq!(queue.push(Priority::Low, 3), Err(PushError::Full(3)));
        assert_eq!(queue.dropped(Priority::Low), 1);
        queue.push(Priority::High, 4).unwrap();
        queue.close();
        assert_eq!(queue.push(Priority::High, 5), Err(PushError::Closed(5)));
        assert_eq!(queue.dropped(Priority::High), 0);
        assert!(queue.is_closed());
        assert_eq!(queue.pop(), Some((Priority::High, 4)));
        assert_eq!(queue.pop(), Some((Priority::Low, 1)));
        assert_eq!(queue.clear(), [0, 1]);
        assert!(queue.is_empty());
    }

    /// `pop_where` skips what it is told to, high lane first, and leaves the rest in order.
    #[test]
    fn pop_where_skips_without_reordering_the_rest() {
        let mut queue = OutboundQueue::new(8);
        for item in [10, 11, 12] {
            queue.push(Priority::High, item).unwrap();
        }
        queue.push(Priority::Low, 21).unwrap();
        assert_eq!(queue.pop_where(|&i| i % 2 == 1), Some((Priority::High, 11)));
        assert_eq!(queue.pop_where(|&i| i > 20), Some((Priority::Low, 21)));
        assert_eq!(queue.pop_where(|&i| i > 20), None);
        assert_eq!(queue.pop(), Some((Priority::High, 10)));
        assert_eq!(queue.pop(), Some((Priority::High, 12)));
        assert_eq!(queue.pop(), None);
    }

    /// `pop_into` takes the high lane first, then the low one, up to `max`, in order.
    #[test]
    fn pop_into_takes_high_then_low_up_to_max() {
        let mut queue = OutboundQueue::new(8);
        for item in [1, 2] {
            queue.push(Priority::Low, item).unwrap();
        }
        for item in [10, 11] {
            queue.push(Priority::High, item).unwrap();
        }
        let mut out = VecDeque::new();
        queue.pop_into(&mut out, 3);
        assert_eq!(out, [10, 11, 1]);
        assert_eq!(queue.pop(), Some((Priority::Low, 2)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(Priority),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Push(Priority::High)),
            Just(Op::Push(Priority::Low)),
            Just(Op::Pop),
        ]
    }

    proptest! {
        /// Against a random mix of pushes and pops: a lane never holds more than its capacity,
        /// every refused push is counted and nothing else is, no high message is ever waiting
        /// when a low one is popped, and each lane pops in push order.
        #[test]
        fn lanes_stay_bounded_ordered_and_high_first(
            capacity in 1usize..8,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut queue = OutboundQueue::new(capacity);
            let mut refused = [0u64; 2];
            let mut next = 0u64;
            let mut last_popped: [Option<u64>; 2] = [None, None];
            for op in ops {
                match op {
                    Op::Push(lane) => {
                        let before = queue.len(lane);
                        match queue.push(lane, (lane, next)) {
                            Ok(()) => prop_assert_eq!(queue.len(lane), before + 1),
                            Err(PushError::Full(_)) => {
                                prop_assert_eq!(before, capacity);
                                refused[lane.index()] += 1;
                            }
                            Err(PushError::Closed(_)) => prop_assert!(false, "never closed"),
                        }
                        next += 1;
                    }
                    Op::Pop => {
                        let high_waiting = queue.len(Priority::High) > 0;
                        if let Some((lane, (pushed_to, seq))) = queue.pop() {
                            prop_assert_eq!(lane, pushed_to);
                            if lane == Priority::Low {
                                prop_assert!(!high_waiting, "low popped while high waited");
                            }
                            if let Some(last) = last_popped[lane.index()] {
                                prop_assert!(seq > last, "lane {} out of order", lane);
                            }
                            last_popped[lane.index()] = Some(seq);
                        } else {
                            prop_assert!(queue.is_empty());
                        }
                    }
                }
                for lane in Priority::ALL {
                    prop_assert!(queue.len(lane) <= capacity);
                    prop_assert_eq!(queue.dropped(lane), refused[lane.index()]);
                }
            }
        }
    }
}
