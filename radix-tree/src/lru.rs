//! Lazy min-heap of a tenant's leaves, ordered by last use.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::node::NodeWeak;

/// A candidate leaf in a tenant's LRU index; `ts` is never newer than the node's real timestamp.
#[derive(Debug)]
pub(crate) struct LruEntry<K> {
    /// Timestamp of the hold when the entry was pushed.
    pub(crate) ts: u64,
    /// Push order, to break timestamp ties deterministically.
    pub(crate) seq: u64,
    /// The node (may since have been detached, or stopped being a leaf).
    pub(crate) node: NodeWeak<K>,
}

impl<K> PartialEq for LruEntry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl<K> Eq for LruEntry<K> {}
impl<K> PartialOrd for LruEntry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for LruEntry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

/// Lazy min-heap of a tenant's leaves: stale entries are dropped or re-pushed when popped.
#[derive(Debug)]
pub(crate) struct LruHeap<K> {
    heap: BinaryHeap<Reverse<LruEntry<K>>>,
    seq: u64,
}

impl<K> Default for LruHeap<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K> LruHeap<K> {
    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds a candidate leaf with the timestamp of its hold.
    pub(crate) fn push(&mut self, ts: u64, node: NodeWeak<K>) {
        self.seq += 1;
        let seq = self.seq;
        self.heap.push(Reverse(LruEntry { ts, seq, node }));
    }

    /// Re-adds a checked entry, keeping its original order among equal timestamps.
    pub(crate) fn push_entry(&mut self, entry: LruEntry<K>) {
        self.heap.push(Reverse(entry));
    }

    /// Removes the entry with the oldest timestamp.
    pub(crate) fn pop(&mut self) -> Option<LruEntry<K>> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Takes every entry out, leaving the heap empty.
    pub(crate) fn take_all(&mut self) -> Vec<LruEntry<K>> {
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|Reverse(e)| e)
            .collect()
    }

    /// Iterates over the entries in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LruEntry<K>> {
        self.heap.iter().map(|Reverse(e)| e)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::*;
    use crate::node::{Node, NodeRef};

    #[test]
    fn heap_pops_oldest_then_push_order() {
        let mut h: LruHeap<u8> = LruHeap::default();
        let n: NodeRef<u8> = Arc::new(RwLock::new(Node::root()));
        h.push(5, Arc::downgrade(&n));
        h.push(3, Arc::downgrade(&n));
        h.push(5, Arc::downgrade(&n));
        let order: Vec<(u64, u64)> =
            std::iter::from_fn(|| h.pop().map(|e| (e.ts, e.seq))).collect();
        assert_eq!(order, vec![(3, 2), (5, 1), (5, 3)]);
    }
}
