//! Timing without tasks: [`RecomputeSchedule`] (when to recompute next hops after graph
//! changes) and [`EdgeBatcher`] (when to send the incremental edge broadcast). Both take
//! `now` from the caller (`tokio::time::Instant::now().into_std()` under a paused clock
//! works) and say when they next want to be woken.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::edge::{Edge, EdgeKey};

/// A debounce: recompute once changes have stopped for `quiet`, and at the latest `max_delay`
/// after the first change not yet covered.
#[derive(Clone, Debug)]
pub struct RecomputeSchedule {
    quiet: Duration,
    max_delay: Duration,
    first_change: Option<Instant>,
    last_change: Option<Instant>,
}

impl RecomputeSchedule {
    /// A schedule with nothing pending.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay,
            first_change: None,
            last_change: None,
        }
    }

    /// The graph changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.first_change.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// When the recompute is due, if a change is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let first = self.first_change?;
        let last = self.last_change?;
        Some((last + self.quiet).min(first + self.max_delay))
    }

    /// Whether to recompute at `now`. If so, the pending changes count as covered: call this
    /// right before computing.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.deadline().is_some_and(|deadline| now >= deadline) {
            self.first_change = None;
            self.last_change = None;
            true
        } else {
            false
        }
    }
}

/// What [`EdgeBatcher::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Replaced a queued edge of the same key with a lower nonce.
    Replaced,
    /// A queued edge of the same key had this nonce or a higher one.
    Ignored,
    /// Queued, and the oldest queued edge was dropped to make room (count it).
    DroppedOldest,
}

/// Collects changed edges into broadcast batches: a batch is due when it has `max_edges`
/// edges, or `max_delay` after its first edge. At most `max_pending` edges wait; beyond
/// that the oldest is dropped (reconciliation on the next connect makes up for it).
#[derive(Clone, Debug)]
pub struct EdgeBatcher {
    max_edges: usize,
    max_delay: Duration,
    max_pending: usize,
    queue: VecDeque<EdgeKey>,
    pending: HashMap<EdgeKey, Edge>,
    first_at: Option<Instant>,
}

impl EdgeBatcher {
    /// An empty batcher (limits of at least 1).
    pub fn new(max_edges: usize, max_delay: Duration, max_pending: usize) -> Self {
        Self {
            max_edges: max_edges.max(1),
            max_delay,
            max_pending: max_pending.max(1),
            queue: VecDeque::new(),
            pending: HashMap::new(),
            first_at: None,
        }
    }

    /// Edges waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `edge` (one per key, the highest nonce).
    pub fn push(&mut self, edge: Edge, now: Instant) -> PushOutcome {
        if let Some(queued) = self.pending.get_mut(&edge.key) {
            if queued.nonce >= edge.nonce {
                return PushOutcome::Ignored;
            }
            *queued = edge;
            return PushOutcome::Replaced;
        }
        let mut outcome = PushOutcome::Queued;
        if self.pending.len() >= self.max_pending {
            if let Some(oldest) = self.queue.pop_front() {
                self.pending.remove(&oldest);
            }
            outcome = PushOutcome::DroppedOldest;
        }
        self.queue.push_back(edge.key);
        self.pending.insert(edge.key, edge);
        self.first_at.get_or_insert(now);
        outcome
    }

    /// When the next batch is due, if any edge waits.
    pub fn deadline(&self) -> Option<Instant> {
        if self.pending.len() >= self.max_edges {
            return self.first_at;
        }
        self.first_at.map(|first| first + self.max_delay)
    }

    /// The next batch if one is due at `now` (full, or its time has come), oldest first.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<Edge>> {
        let full = self.pending.len() >= self.max_edges;
        let timed_out = self
            .first_at
            .is_some_and(|first| now >= first + self.max_delay);
        if self.pending.is_empty() || !(full || timed_out) {
            return None;
        }
        let mut batch = Vec::with_capacity(self.max_edges.min(self.pending.len()));
        while batch.len() < self.max_edges {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            if let Some(edge) = self.pending.remove(&key) {
                batch.push(edge);
            }
        }
        // What is left starts its own wait now.
        self.first_at = if self.pending.is_empty() {
            None
        } else {
            Some(now)
        };
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::test_keys::{active_edge, key};

    const MS: Duration = Duration::from_millis(1);

    /// Quiet period restarts on each change; the max delay caps a stream of changes.
    #[test]
    fn debounce_waits_for_quiet_but_not_forever() {
        let start = Instant::now();
        let mut schedule = RecomputeSchedule::new(100 * MS, 1000 * MS);
        assert_eq!(schedule.deadline(), None);
        assert!(!schedule.take_due(start));
        schedule.changed(start);
        assert_eq!(schedule.deadline(), Some(start + 100 * MS));
        schedule.changed(start + 50 * MS);
        assert!(!schedule.take_due(start + 100 * MS));
        assert!(schedule.take_due(start + 150 * MS));
        assert_eq!(schedule.deadline(), None);
        // Changes every 50 ms: the max delay fires at 1 s.
        for step in 0..30 {
            schedule.changed(start + 200 * MS + step * 50 * MS);
            let now = start + 200 * MS + step * 50 * MS;
            if schedule.take_due(now) {
                assert_eq!(now, start + 1200 * MS);
                return;
            }
        }
        panic!("the max delay never fired");
    }

    /// A batch goes out when full or when its first edge has waited the max delay; one edge
    /// per key; the oldest is dropped beyond the pending bound.
    #[test]
    fn batcher_flushes_on_size_or_delay_and_is_bounded() {
        let start = Instant::now();
        let keys: Vec<_> = (1..=6).map(key).collect();
        let edge = |i: usize, nonce: u64| active_edge(&keys[0], &keys[i], nonce);
        let mut batcher = EdgeBatcher::new(2, 50 * MS, 3);
        assert_eq!(batcher.push(edge(1, 1), start), PushOutcome::Queued);
        assert_eq!(batcher.push(edge(1, 1), start), PushOutcome::Ignored);
        assert_eq!(batcher.push(edge(1, 3), start), PushOutcome::Replaced);
        assert_eq!(batcher.take_due(start + 10 * MS), None);
        assert_eq!(batcher.deadline(), Some(start + 50 * MS));
        assert_eq!(batcher.take_due(start + 50 * MS), Some(vec![edge(1, 3)]));
        assert!(batcher.is_empty());

        batcher.push(edge(1, 5), start);
        batcher.push(edge(2, 5), start);
        batcher.push(edge(3, 5), start);
        assert_eq!(batcher.push(edge(4, 5), start), PushOutcome::DroppedOldest);
        assert_eq!(batcher.len(), 3);
        // Full: due at once, two at a time, oldest first.
        assert_eq!(batcher.take_due(start), Some(vec![edge(2, 5), edge(3, 5)]));
        assert_eq!(batcher.take_due(start + 10 * MS), None);
        assert_eq!(batcher.take_due(start + 60 * MS), Some(vec![edge(4, 5)]));
    }
}
