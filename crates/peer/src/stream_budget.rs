//! [`StreamBudget`]: the bytes of unfinished inbound streams a node holds across all its
//! connections, and the most it may hold; and [`BudgetShare`], one connection's part of it.
//!
//! Without it every connection may hold one stream of up to `max_message_size` for as long as
//! the reassembly deadline allows, so a thousand connections could hold gigabytes. With it the
//! node holds at most its limit, and the connection whose stream piece would take the total
//! over it is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;

/// Bytes held in unfinished inbound streams, shared by every connection of a network (or of a
/// node): create one, wrap it in an `Arc`, and give a clone to each `peer::spawn`.
///
/// A connection reserves the payload bytes its reassembler holds as each header or fragment
/// arrives, and gives them back when the stream completes, fails or the connection ends. The
/// total is `peerlane_peer_stream_bytes_held` (a gauge in the [`Metrics`] it was created
/// with).
#[derive(Debug)]
pub struct StreamBudget {
    limit: usize,
    held: AtomicUsize,
    peak: AtomicUsize,
    gauge: Gauge,
}

impl StreamBudget {
    /// A budget of `limit` bytes, reported in `metrics`' `peerlane_peer_stream_bytes_held`.
    pub fn new(limit: usize, metrics: &Metrics) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            gauge: metrics.stream_bytes_held_gauge(),
        }
    }

    /// The most bytes unfinished streams may hold at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes unfinished streams hold now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most bytes unfinished streams have held at once since the budget was created.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, unless that would take the total over the limit.
    fn try_reserve(&self, bytes: usize) -> bool {
        let reserved = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            });
        match reserved {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::Relaxed);
                self.gauge.inc_by(gauge_value(bytes));
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back `bytes` reserved earlier.
    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            self.gauge.dec_by(gauge_value(bytes));
        }
    }
}

/// Byte counts as the gauge's i64; a count above i64::MAX cannot be held in memory.
fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// What one connection holds of a [`StreamBudget`]: kept equal to its reassembler's
/// buffered bytes, and given back when dropped (the connection ended).
#[derive(Debug)]
pub(crate) struct BudgetShare {
    budget: Arc<StreamBudget>,
    held: usize,
}

impl BudgetShare {
    /// A share holding nothing yet.
    pub(crate) fn new(budget: Arc<StreamBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Grows or shrinks the share to `len` bytes. Fails, holding what it held, when growing
    /// would take the budget over its limit.
    pub(crate) fn resize(&mut self, len: usize) -> Result<(), BudgetExceeded> {
        if len > self.held {
            if !self.budget.try_reserve(len - self.held) {
                return Err(BudgetExceeded);
            }
        } else {
            self.budget.release(self.held - len);
        }
        self.held = len;
        Ok(())
    }

    /// The budget shared.
    pub(crate) fn budget(&self) -> &StreamBudget {
        &self.budget
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// A stream piece would take the node's unfinished streams over their budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetExceeded;

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares grow up to the limit, not past it, give back on shrink and on drop, and the
    /// gauge follows the total.
    #[test]
    fn shares_stay_within_the_limit_and_give_back_on_drop() {
        let metrics = Metrics::default();
        let budget = Arc::new(StreamBudget::new(100, &metrics));
        let mut a = BudgetShare::new(budget.clone());
        let mut b = BudgetShare::new(budget.clone());
        a.resize(60).unwrap();
        assert_eq!(b.resize(41), Err(BudgetExceeded));
        b.resize(40).unwrap();
        assert_eq!((budget.held(), metrics.stream_bytes_held()), (100, 100));
        a.resize(10).unwrap();
        assert_eq!(budget.held(), 50);
        drop(b);
        assert_eq!(budget.held(), 10);
        drop(a);
        assert_eq!((budget.held(), metrics.stream_bytes_held()), (0, 0));
        assert_eq!(budget.peak(), 100);
    }
}
