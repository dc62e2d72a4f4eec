//! [`InboundBudget`]: a node-wide budget of inbound payload bytes decoded and not yet taken by
//! the applications, shared by every connection's router, so that a flood turns into
//! back-pressure (readers stop reading their sockets) instead of growing memory.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// A budget of bytes, shared (clone it) by whoever charges it: a semaphore that never makes
/// anyone wait by itself. [`charge`](Self::charge) succeeds while the bytes held are under the
/// budget (so one message may take it over, by at most its own size) and hands back a
/// [`BudgetCharge`] that gives the bytes back when dropped; [`room`](Self::room) resolves once
/// the bytes held are under the budget again.
///
/// The facade charges each message as its router queues it and drops the charge when the
/// application takes the message off its queue (or the message is dropped). Charges taken in
/// one go can be given back together through a [`BudgetRelease`]: one update of the shared
/// counter and its gauge instead of one per message.
#[derive(Clone)]
pub struct InboundBudget(Arc<Inner>);

struct Inner {
    max_bytes: usize,
    held: AtomicUsize,
    room: Notify,
    metrics: Metrics,
}

impl InboundBudget {
    /// A budget of `max_bytes` (0 means no limit: every charge succeeds), whose bytes held
    /// and refused charges show in `metrics` (`peerlane_peer_inbound_budget_bytes`,
    /// `peerlane_peer_inbound_budget_waits_total`).
    pub fn new(max_bytes: usize, metrics: &Metrics) -> Self {
        Self(Arc::new(Inner {
            max_bytes,
            held: AtomicUsize::new(0),
            room: Notify::new(),
            metrics: metrics.clone(),
        }))
    }

    /// The budget.
    pub fn max_bytes(&self) -> usize {
        self.0.max_bytes
    }

    /// The bytes held by charges not yet dropped.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Acquire)
    }

    /// Whether a charge would succeed now.
    pub fn has_room(&self) -> bool {
        self.0.max_bytes == 0 || self.held() < self.0.max_bytes
    }

    /// Charges `bytes` if the budget has room, else `None` (wait for [`room`](Self::room)).
    pub fn charge(&self, bytes: usize) -> Option<BudgetCharge> {
        let mut held = self.0.held.load(Ordering::Acquire);
        loop {
            if self.0.max_bytes != 0 && held >= self.0.max_bytes {
                self.0.metrics.record_budget_wait();
                return None;
            }
            match self.0.held.compare_exchange_weak(
                held,
                held.saturating_add(bytes),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.charge_of(bytes)),
                Err(now) => held = now,
            }
        }
    }

    /// Charges `bytes` whatever the budget holds: for a message that waited for room already
    /// and must not wait again.
    pub fn force_charge(&self, bytes: usize) -> BudgetCharge {
        self.0.held.fetch_add(bytes, Ordering::AcqRel);
        self.charge_of(bytes)
    }

    /// Resolves once the budget has room (at once if it has now). Cancel-safe.
    pub fn room(&self) -> impl Future<Output = ()> + Send + 'static {
        let budget = self.clone();
        async move {
            loop {
                let notified = budget.0.room.notified();
                tokio::pin!(notified);
                // Registered before the check, so a release in between is not missed.
                notified.as_mut().enable();
                if budget.has_room() {
                    return;
                }
                notified.await;
            }
        }
    }

    fn charge_of(&self, bytes: usize) -> BudgetCharge {
        self.0.metrics.record_budget_bytes(bytes, true);
        BudgetCharge {
            budget: Some(self.clone()),
            bytes,
        }
    }

    /// Gives back `bytes` held by charges, waking the waiting readers if that makes room.
    fn release(&self, bytes: usize) {
        let inner = &self.0;
        let before = inner.held.fetch_sub(bytes, Ordering::AcqRel);
        let after = before - bytes;
        inner.metrics.record_budget_bytes(bytes, false);
        // Only a release that makes room wakes the waiting readers.
        if inner.max_bytes != 0 && before >= inner.max_bytes && after < inner.max_bytes {
            inner.room.notify_waiters();
        }
    }
}

impl fmt::Debug for InboundBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundBudget")
            .field("max_bytes", &self.0.max_bytes)
            .field("held", &self.held())
            .finish()
    }
}

/// Bytes charged to an [`InboundBudget`], given back when dropped (or by the
/// [`BudgetRelease`] that absorbed it).
pub struct BudgetCharge {
    /// `None` once a [`BudgetRelease`] took the bytes over.
    budget: Option<InboundBudget>,
    bytes: usize,
}

impl BudgetCharge {
    /// The bytes charged.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Splits `bytes` (at most what it holds) off into a charge of their own: charge a run of
    /// messages once, then give each message its share, without touching the shared counter.
    #[inline]
    pub fn split_off(&mut self, bytes: usize) -> Self {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Self {
            budget: self.budget.clone(),
            bytes,
        }
    }
}

impl Drop for BudgetCharge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget
            && self.bytes > 0
        {
            budget.release(self.bytes);
        }
    }
}

/// The bytes of several [`BudgetCharge`]s, given back together: when dropped, or at
/// [`release`](Self::release). Charges of another budget than the first absorbed are given
/// back on their own.
#[derive(Default)]
pub struct BudgetRelease {
    budget: Option<InboundBudget>,
    bytes: usize,
}

impl BudgetRelease {
    /// Nothing absorbed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes over `charge`'s bytes, to be given back with the others.
    #[inline]
    pub fn absorb(&mut self, mut charge: BudgetCharge) {
        let Some(budget) = charge.budget.take() else {
            return;
        };
        match &self.budget {
            None => self.budget = Some(budget),
            Some(ours) if Arc::ptr_eq(&ours.0, &budget.0) => {}
            // Another network's budget: given back now, by `charge`'s own drop.
            Some(_) => {
                charge.budget = Some(budget);
                return;
            }
        }
        self.bytes += charge.bytes;
    }

    /// The bytes absorbed and not yet given back.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back every byte absorbed so far.
    pub fn release(&mut self) {
        if self.bytes > 0
            && let Some(budget) = &self.budget
        {
            budget.release(std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for BudgetRelease {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for BudgetRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetRelease")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl fmt::Debug for BudgetCharge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetCharge")
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll};

    use futures::task::noop_waker_ref;

    use super::*;

    /// Charges succeed while under the budget, the last one may go over it, and dropping
    /// charges gives the bytes back and wakes a waiter once there is room.
    #[test]
    fn charges_hold_bytes_until_dropped() {
        let budget = InboundBudget::new(100, &Metrics::default());
        let a = budget.charge(60).unwrap();
        let b = budget.charge(60).unwrap();
        assert_eq!(budget.held(), 120);
        assert!(budget.charge(1).is_none());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut room = pin!(budget.room());
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Pending);
        drop(a);
        assert_eq!(budget.held(), 60);
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Ready(()));
        let forced = budget.force_charge(500);
        assert_eq!(budget.held(), 560);
        assert_eq!(budget.0.metrics.inbound_budget_bytes(), 560);
        assert_eq!(budget.0.metrics.inbound_budget_waits(), 1);
        drop((b, forced));
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.0.metrics.inbound_budget_bytes(), 0);
    }

    /// Absorbed charges hold their bytes until the release, which gives them back at once and
    /// wakes a waiter; a charge of another budget is given back on its own.
    #[test]
    fn a_release_gives_back_absorbed_charges_together() {
        let budget = InboundBudget::new(100, &Metrics::default());
        let other = InboundBudget::new(100, &Metrics::default());
        let mut release = BudgetRelease::new();
        release.absorb(budget.charge(70).unwrap());
        release.absorb(budget.charge(40).unwrap());
        release.absorb(other.charge(30).unwrap());
        assert_eq!((budget.held(), other.held()), (110, 0));
        assert_eq!(release.bytes(), 110);
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut room = pin!(budget.room());
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Pending);
        release.release();
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.0.metrics.inbound_budget_bytes(), 0);
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Ready(()));
        release.absorb(budget.charge(5).unwrap());
        drop(release);
        assert_eq!(budget.held(), 0);
    }

    /// A charge split into shares gives its bytes back share by share.
    #[test]
    fn split_shares_give_back_their_own_bytes() {
        let budget = InboundBudget::new(100, &Metrics::default());
        let mut run = budget.charge(90).unwrap();
        let a = run.split_off(30);
        let b = run.split_off(60);
        assert_eq!((a.bytes(), b.bytes(), run.bytes()), (30, 60, 0));
        drop(run);
        assert_eq!(budget.held(), 90);
        drop(a);
        assert_eq!(budget.held(), 60);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.0.metrics.inbound_budget_bytes(), 0);
    }

    #[test]
    fn zero_budget_is_unlimited() {
        let budget = InboundBudget::new(0, &Metrics::default());
        let charges: Vec<_> = (0..10).map(|_| budget.charge(usize::MAX / 20)).collect();
        assert!(charges.iter().all(Option::is_some));
        assert!(budget.has_room());
    }
}
