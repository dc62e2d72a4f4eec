//! The outbound queue: two bounded lanes, high before low. Pure: no I/O, no clock, no waking,
//! no metrics; `lanes` drives it under a lock, with the wake-ups. Public so that it can be
//! tested and measured on its own (`benches/outbound_queue.rs`); a
//! [`PeerHandle`](crate::PeerHandle) is the way to send.
//!
//! Overflow policy: a push onto a full lane (by message count, or by queued bytes: each lane has
//! a byte budget, except that an empty lane takes any one message) is refused (the caller gets
//! the message back and an error) and never waits; the caller counts it. RPC responses
//! ([`OutboundQueue::push_response`]) are scheduled on the high lane but held to bounds of
//! their own, of the same size as a lane's: answers to a remote's requests neither take room
//! from our own high-priority messages nor are refused because of them. Waiting for room is
//! built on top: [`OutboundQueue::take_room`] tells the driver when a lane that refused has
//! drained. Pops take the high lane first; within a lane, order is FIFO, except that
//! [`OutboundQueue::pop_where`] lets the writer skip over messages it cannot take yet (large
//! messages while a stream is in flight).

use std::collections::VecDeque;

use crate::priority::Priority;

/// Why a push was refused; the message comes back with the reason.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The lane holds `capacity` messages already, or the message would take its queued bytes
    /// over the byte budget (counted in [`OutboundQueue::refused`]).
    Full(T),
    /// The queue was closed: the peer is disconnecting.
    Closed(T),
}

/// Two bounded FIFO lanes of at most `capacity` messages and `max_bytes` bytes each, and on
/// the high lane, RPC responses bounded the same way on their own.
///
/// Calling protocol: handles [`push`](Self::push) (or [`push_sized`](Self::push_sized)); the
/// writer [`pop`](Self::pop)s (or [`pop_where`](Self::pop_where)s) until `None`, then waits to
/// be woken. On disconnect, [`close`](Self::close) refuses further pushes while the writer
/// drains what is left.
///
/// Room: a lane that refused a push is marked; once it has drained to half of both of its
/// bounds, [`take_room`](Self::take_room) reports it (once), so that whoever drives the queue
/// can wake the callers that wait for room.
#[derive(Debug)]
pub struct OutboundQueue<T> {
    lanes: [VecDeque<Entry<T>>; 2],
    capacity: usize,
    max_bytes: usize,
    /// Messages and bytes queued per budget (high lane, low lane, responses): the sizes given
    /// to `push_sized` / `push_response`.
    counts: [usize; BUDGETS],
    bytes: [usize; BUDGETS],
    refused: [u64; BUDGETS],
    /// Budgets that refused a push and have not drained to half of their bounds since.
    wanted: [bool; BUDGETS],
    closed: bool,
}

/// The bounds a message is held to: its lane's (index 0 high, 1 low), or the responses'.
const BUDGETS: usize = 3;
const RESPONSES: usize = 2;

/// A queued item, the bytes it was counted as, and the budget it was counted in.
#[derive(Debug)]
struct Entry<T> {
    item: T,
    bytes: usize,
    budget: usize,
}

impl<T> OutboundQueue<T> {
    /// An empty, open queue whose lanes hold `capacity` messages each, whatever their size.
    pub fn new(capacity: usize) -> Self {
        Self::with_byte_budget(capacity, usize::MAX)
    }

    /// An empty, open queue whose lanes hold `capacity` messages and `max_bytes` bytes each
    /// (see [`push_sized`](Self::push_sized)).
    pub fn with_byte_budget(capacity: usize, max_bytes: usize) -> Self {
        Self {
            // Allocated as they fill: most connections never queue more than a few messages.
            lanes: [VecDeque::new(), VecDeque::new()],
            capacity,
            max_bytes,
            counts: [0; BUDGETS],
            bytes: [0; BUDGETS],
            refused: [0; BUDGETS],
            wanted: [false; BUDGETS],
            closed: false,
        }
    }

    /// Appends `item`, counted as zero bytes, to `lane`; see [`push_sized`](Self::push_sized).
    pub fn push(&mut self, lane: Priority, item: T) -> Result<(), PushError<T>> {
        self.push_sized(lane, item, 0)
    }

    /// Appends `item`, counted as `bytes` bytes, to `lane`. Never waits: a lane that holds
    /// `capacity` messages, or whose queued bytes would exceed `max_bytes` with this one,
    /// refuses it (and counts the refusal); a closed queue refuses it without counting. An
    /// empty lane takes any one message, however large, so that nothing is refused forever.
    pub fn push_sized(
        &mut self,
        lane: Priority,
        item: T,
        bytes: usize,
    ) -> Result<(), PushError<T>> {
        self.push_into(lane, lane.index(), item, bytes)
    }

    /// Appends an RPC response, counted as `bytes` bytes, to the high lane, held to the
    /// responses' own bounds (`capacity` messages, `max_bytes` bytes, any one response when
    /// none is queued) rather than the lane's. Refusals are counted in
    /// [`refused_responses`](Self::refused_responses).
    pub fn push_response(&mut self, item: T, bytes: usize) -> Result<(), PushError<T>> {
        self.push_into(Priority::High, RESPONSES, item, bytes)
    }

    fn push_into(
        &mut self,
        lane: Priority,
        budget: usize,
        item: T,
        bytes: usize,
    ) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        let count = self.counts[budget];
        let over_budget = count > 0 && self.bytes[budget].saturating_add(bytes) > self.max_bytes;
        if count >= self.capacity || over_budget {
            self.refused[budget] += 1;
            self.wanted[budget] = true;
            return Err(PushError::Full(item));
        }
        self.lanes[lane.index()].push_back(Entry {
            item,
            bytes,
            budget,
        });
        self.counts[budget] += 1;
        self.bytes[budget] += bytes;
        Ok(())
    }

    /// Gives back what a popped entry was counted as.
    fn release(counts: &mut [usize; BUDGETS], bytes: &mut [usize; BUDGETS], entry: &Entry<T>) {
        counts[entry.budget] -= 1;
        bytes[entry.budget] -= entry.bytes;
    }

    /// The oldest message of the high lane, or else of the low lane.
    pub fn pop(&mut self) -> Option<(Priority, T)> {
        self.pop_where(|_| true)
    }

    /// The oldest message that `accept` takes, looking through the high lane first, then the
    /// low lane. Messages skipped keep their place. O(messages skipped).
    pub fn pop_where(&mut self, mut accept: impl FnMut(&T) -> bool) -> Option<(Priority, T)> {
        for lane in Priority::ALL {
            let i = lane.index();
            let queue = &mut self.lanes[i];
            if let Some(position) = queue.iter().position(|entry| accept(&entry.item)) {
                let entry = queue.remove(position)?;
                Self::release(&mut self.counts, &mut self.bytes, &entry);
                return Some((lane, entry.item));
            }
        }
        None
    }

    /// Moves messages into `out` until it holds `max`, in the order [`pop`](Self::pop) would
    /// give them (high lane first, FIFO within a lane).
    pub fn pop_into(&mut self, out: &mut VecDeque<T>, max: usize) {
        let (counts, bytes) = (&mut self.counts, &mut self.bytes);
        for queue in &mut self.lanes {
            let n = max.saturating_sub(out.len()).min(queue.len());
            out.extend(queue.drain(..n).map(|entry| {
                Self::release(counts, bytes, &entry);
                entry.item
            }));
        }
    }

    /// Whether a lane (or the responses' budget) that refused a push has since drained to half
    /// of its message and byte bounds. Reports each refusal episode once: the marks of the
    /// budgets reported are cleared. O(1); meant to be called after pops.
    pub fn take_room(&mut self) -> bool {
        let mut room = false;
        for i in 0..BUDGETS {
            let drained =
                self.counts[i] <= self.capacity / 2 && self.bytes[i] <= self.max_bytes / 2;
            if self.wanted[i] && drained {
                self.wanted[i] = false;
                room = true;
            }
        }
        room
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
        self.counts = [0; BUDGETS];
        self.bytes = [0; BUDGETS];
        counts
    }

    /// Messages queued in `lane`, responses included.
    pub fn len(&self, lane: Priority) -> usize {
        self.lanes[lane.index()].len()
    }

    /// Bytes queued in `lane`, as counted by [`push_sized`](Self::push_sized) (responses not
    /// included).
    pub fn bytes(&self, lane: Priority) -> usize {
        self.bytes[lane.index()]
    }

    /// Responses queued, and their bytes.
    pub fn responses(&self) -> (usize, usize) {
        (self.counts[RESPONSES], self.bytes[RESPONSES])
    }

    /// Responses refused since the queue was made.
    pub fn refused_responses(&self) -> u64 {
        self.refused[RESPONSES]
    }

    /// Messages queued in both lanes.
    pub fn total_len(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
    }

    /// Whether both lanes are empty.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }

    /// Pushes refused because `lane` was full (by count or bytes), since the queue was made;
    /// refused responses are counted in [`refused_responses`](Self::refused_responses).
    pub fn refused(&self, lane: Priority) -> u64 {
        self.refused[lane.index()]
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

    /// A full lane refuses and counts; the other lane is unaffected; a closed queue refuses
    /// without counting but still drains.
    #[test]
    fn full_lane_refuses_and_closed_queue_drains() {
        let mut queue = OutboundQueue::new(2);
        queue.push(Priority::Low, 1).unwrap();
        queue.push(Priority::Low, 2).unwrap();
        assert_eq!(queue.push(Priority::Low, 3), Err(PushError::Full(3)));
        assert_eq!(queue.refused(Priority::Low), 1);
        queue.push(Priority::High, 4).unwrap();
        queue.close();
        assert_eq!(queue.push(Priority::High, 5), Err(PushError::Closed(5)));
        assert_eq!(queue.refused(Priority::High), 0);
        assert!(queue.is_closed());
        assert_eq!(queue.pop(), Some((Priority::High, 4)));
        assert_eq!(queue.pop(), Some((Priority::Low, 1)));
        assert_eq!(queue.clear(), [0, 1]);
        assert!(queue.is_empty());
    }

    /// The byte budget refuses a push that would exceed it, except into an empty lane; bytes
    /// are released by every kind of pop and by `clear`.
    #[test]
    fn byte_budget_refuses_but_an_empty_lane_takes_anything() {
        let mut queue = OutboundQueue::with_byte_budget(8, 100);
        queue.push_sized(Priority::Low, 1, 60).unwrap();
        assert_eq!(
            queue.push_sized(Priority::Low, 2, 41),
            Err(PushError::Full(2))
        );
        assert_eq!(queue.refused(Priority::Low), 1);
        queue.push_sized(Priority::Low, 3, 40).unwrap();
        assert_eq!(queue.bytes(Priority::Low), 100);
        // The other lane has a budget of its own, and an empty lane takes an oversized message.
        queue.push_sized(Priority::High, 4, 500).unwrap();
        assert_eq!(
            queue.push_sized(Priority::High, 5, 0),
            Err(PushError::Full(5))
        );
        assert_eq!(queue.pop(), Some((Priority::High, 4)));
        assert_eq!(queue.bytes(Priority::High), 0);
        assert_eq!(queue.pop_where(|&i| i == 3), Some((Priority::Low, 3)));
        assert_eq!(queue.bytes(Priority::Low), 60);
        let mut out = VecDeque::new();
        queue.pop_into(&mut out, 8);
        assert_eq!(queue.bytes(Priority::Low), 0);
        queue.push_sized(Priority::Low, 6, 1000).unwrap();
        assert_eq!(queue.clear(), [0, 1]);
        assert_eq!(queue.bytes(Priority::Low), 0);
    }

    /// `take_room` reports a lane that refused once it is down to half of both bounds, once.
    #[test]
    fn room_is_reported_once_a_refusing_lane_drains_to_half() {
        let mut queue = OutboundQueue::with_byte_budget(4, 1000);
        for item in 0..4 {
            queue.push_sized(Priority::Low, item, 10).unwrap();
        }
        assert!(!queue.take_room(), "nothing was refused");
        assert!(queue.push_sized(Priority::Low, 4, 10).is_err());
        queue.pop();
        assert!(!queue.take_room(), "3 of 4 queued");
        queue.pop();
        assert!(queue.take_room(), "2 of 4 queued");
        assert!(!queue.take_room(), "reported once");
        // Refused by bytes: half of the byte budget is the bar too.
        let mut queue = OutboundQueue::with_byte_budget(100, 1000);
        queue.push_sized(Priority::High, 0, 600).unwrap();
        queue.push_sized(Priority::High, 1, 300).unwrap();
        assert!(queue.push_sized(Priority::High, 2, 200).is_err());
        assert_eq!(queue.pop(), Some((Priority::High, 0)));
        assert!(queue.take_room(), "300 of 1000 bytes queued");
    }

    /// Responses go out on the high lane in push order with the lane's messages, but a full
    /// high lane does not refuse them, nor do queued responses refuse the lane's messages:
    /// each has its own count and byte bounds, and its own room signal.
    #[test]
    fn responses_have_bounds_of_their_own() {
        let mut queue = OutboundQueue::with_byte_budget(2, 100);
        queue.push_sized(Priority::High, "h1", 100).unwrap();
        assert_eq!(
            queue.push_sized(Priority::High, "h2", 10),
            Err(PushError::Full("h2"))
        );
        // The high lane is full by bytes; responses still fit, up to their own bounds.
        queue.push_response("r1", 60).unwrap();
        queue.push_response("r2", 40).unwrap();
        assert_eq!(queue.push_response("r3", 0), Err(PushError::Full("r3")));
        assert_eq!(queue.refused_responses(), 1);
        assert_eq!(queue.refused(Priority::High), 1);
        assert_eq!(queue.responses(), (2, 100));
        assert_eq!(queue.bytes(Priority::High), 100);
        assert_eq!(queue.len(Priority::High), 3);
        // Full responses do not refuse the lane's messages either, once the lane has room.
        assert_eq!(queue.pop(), Some((Priority::High, "h1")));
        assert!(queue.take_room(), "the high lane drained");
        queue.push_sized(Priority::High, "h3", 10).unwrap();
        assert_eq!(queue.pop(), Some((Priority::High, "r1")));
        assert!(
            queue.take_room(),
            "the responses drained to half (1 of 2, 40 of 100 bytes)"
        );
        let mut out = VecDeque::new();
        queue.pop_into(&mut out, 8);
        assert_eq!(out, ["r2", "h3"]);
        assert!(!queue.take_room(), "reported once");
        assert_eq!(queue.responses(), (0, 0));
        // An empty response budget takes any one response.
        queue.push_response("huge", 1000).unwrap();
        queue.close();
        assert_eq!(
            queue.push_response("late", 1),
            Err(PushError::Closed("late"))
        );
        assert_eq!(queue.clear(), [1, 0]);
        assert_eq!(queue.responses(), (0, 0));
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
                    prop_assert_eq!(queue.refused(lane), refused[lane.index()]);
                }
            }
        }
    }
}
