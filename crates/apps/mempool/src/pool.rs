//! [`Pool`]: the bounded set of pending transactions, oldest first, plus what is waiting to be
//! gossiped. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use peerlane::PeerNetworkId;

use crate::error::Error;
use crate::types::{Transaction, TxnId};

/// Pending transactions by id and by arrival, the recently committed ids (so that a late
/// gossip of a committed transaction is a duplicate, not a new transaction), and the outbox.
#[derive(Debug)]
pub(crate) struct Pool {
    capacity: usize,
    pending: HashMap<TxnId, (u64, Transaction)>,
    /// Arrival order: sequence number → id.
    order: BTreeMap<u64, TxnId>,
    next_seq: u64,
    committed: HashSet<TxnId>,
    committed_order: VecDeque<TxnId>,
    /// New transactions not yet gossiped, with the peer they came from (none: a client).
    /// At most `capacity` long; beyond that a transaction stays in the pool ungossiped.
    outbox: Vec<(Transaction, Option<PeerNetworkId>)>,
}

impl Pool {
    /// An empty pool of at most `capacity` pending transactions, remembering as many
    /// committed ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            pending: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            committed: HashSet::new(),
            committed_order: VecDeque::new(),
            outbox: Vec::new(),
        }
    }

    /// Adds `txn` (from `from`, or a client) and queues it for gossip.
    pub(crate) fn insert(
        &mut self,
        txn: Transaction,
        from: Option<PeerNetworkId>,
    ) -> Result<TxnId, Error> {
        let id = txn.id();
        if self.pending.contains_key(&id) || self.committed.contains(&id) {
            return Err(Error::Duplicate { id });
        }
        if self.pending.len() >= self.capacity {
            return Err(Error::Full {
                capacity: self.capacity,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id);
        if self.outbox.len() < self.capacity {
            self.outbox.push((txn.clone(), from));
        }
        self.pending.insert(id, (seq, txn));
        Ok(id)
    }

    /// Up to `max` pending transactions, oldest first. They stay pending until committed.
    pub(crate) fn batch(&self, max: usize) -> Vec<Transaction> {
        self.order
            .values()
            .take(max)
            .filter_map(|id| self.pending.get(id).map(|(_, txn)| txn.clone()))
            .collect()
    }

    /// Removes the committed transactions and remembers their ids; returns how many were
    /// pending.
    pub(crate) fn commit(&mut self, ids: impl IntoIterator<Item = TxnId>) -> usize {
        let mut removed = 0;
        for id in ids {
            if let Some((seq, _)) = self.pending.remove(&id) {
                self.order.remove(&seq);
                removed += 1;
            }
            if self.capacity > 0 && self.committed.insert(id) {
                self.committed_order.push_back(id);
                if self.committed_order.len() > self.capacity
                    && let Some(oldest) = self.committed_order.pop_front()
                {
                    self.committed.remove(&oldest);
                }
            }
        }
        removed
    }

    /// The transactions waiting to be gossiped, emptying the outbox.
    pub(crate) fn take_outbox(&mut self) -> Vec<(Transaction, Option<PeerNetworkId>)> {
        std::mem::take(&mut self.outbox)
    }

    /// How many transactions wait to be gossiped.
    pub(crate) fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// How many transactions are pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(n: u8) -> Transaction {
        Transaction::new(vec![n; 300])
    }

    /// A transaction is accepted once; again it is a duplicate, even after it was committed.
    #[test]
    fn a_transaction_is_accepted_once_even_after_its_commit() {
        let mut pool = Pool::new(4);
        let id = pool.insert(txn(1), None).unwrap();
        assert_eq!(pool.insert(txn(1), None), Err(Error::Duplicate { id }));
        assert_eq!(pool.commit([id]), 1);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.insert(txn(1), None), Err(Error::Duplicate { id }));
    }

    /// A full pool refuses new transactions with a typed error; a commit makes room.
    #[test]
    fn a_full_pool_refuses_until_a_commit_makes_room() {
        let mut pool = Pool::new(2);
        let first = pool.insert(txn(1), None).unwrap();
        pool.insert(txn(2), None).unwrap();
        assert_eq!(pool.insert(txn(3), None), Err(Error::Full { capacity: 2 }));
        pool.commit([first]);
        pool.insert(txn(3), None).unwrap();
    }

    /// Batches come oldest first, capped, and leave the transactions pending.
    #[test]
    fn batches_are_oldest_first_and_leave_transactions_pending() {
        let mut pool = Pool::new(10);
        for n in 0..5 {
            pool.insert(txn(n), None).unwrap();
        }
        let batch = pool.batch(3);
        assert_eq!(batch, vec![txn(0), txn(1), txn(2)]);
        assert_eq!(pool.len(), 5);
        assert_eq!(pool.take_outbox().len(), 5);
        assert_eq!(pool.outbox_len(), 0);
    }
}
