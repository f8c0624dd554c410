//! Per-tenant LRU eviction and tenant removal.
//!
//! Each tenant keeps a lazy min-heap of its leaves (nodes it holds with no held child). A popped
//! entry is checked under the node's and its parent's write locks: a refreshed node is re-queued,
//! a node that stopped being a leaf is dropped (it is queued again when it becomes one). So the
//! cost of a pass grows with what it evicts (times a log), never with the size of the tree.

use std::collections::HashSet;
use std::sync::Arc;

use crate::lru::LruEntry;
use crate::node::NodeRef;
use crate::tenant::TenantState;
use crate::{KeyUnit, RadixTree, TenantId};

impl<K: KeyUnit> RadixTree<K> {
    /// Evicts `tenant`'s least recently used leaves until it holds at most `max_units`.
    ///
    /// Returns the units it evicted. Nodes other tenants still hold stay in the tree.
    pub fn evict_tenant(&self, tenant: TenantId, max_units: usize) -> usize {
        let Some(state) = self.tenants.get(tenant) else {
            return 0;
        };
        let _pass = state.evicting.lock();
        self.evict_locked(&state, max_units)
    }

    /// Drops `tenant` from every node and clears its cap; nodes nobody holds any more are freed.
    pub fn remove_tenant(&self, tenant: TenantId) {
        let Some(state) = self.tenants.get(tenant) else {
            return;
        };
        state.set_cap(None);
        let _pass = state.evicting.lock();
        self.evict_locked(&state, 0);
    }

    /// One eviction pass down to `target` units; the caller holds `state.evicting`.
    pub(crate) fn evict_locked(&self, state: &TenantState<K>, target: usize) -> usize {
        let mut evicted = 0;
        while state.size() > target {
            let Some(entry) = state.lru.lock().pop() else {
                break;
            };
            evicted += self.evict_entry(state, entry);
        }
        evicted
    }

    /// Evicts the tenant from the entry's node if it is still that tenant's least recent leaf.
    fn evict_entry(&self, state: &TenantState<K>, entry: LruEntry<K>) -> usize {
        let Some(node) = entry.node.upgrade() else {
            return 0;
        };
        loop {
            let parent = {
                let g = node.read();
                if !g.alive {
                    return 0;
                }
                g.parent.upgrade()
            };
            let Some(parent) = parent else {
                return 0;
            };
            let mut pw = parent.write();
            let mut nw = node.write();
            if !nw.alive {
                return 0;
            }
            if nw.parent.as_ptr() != Arc::as_ptr(&parent) {
                // Split meanwhile: a new node now sits between us and `parent`.
                continue;
            }
            let Some(i) = nw.holder_index(state.id) else {
                return 0;
            };
            let h = &nw.holders[i];
            if h.held_children() > 0 {
                return 0;
            }
            let ts = h.last_used();
            if ts > entry.ts {
                state.lru.lock().push(ts, entry.node);
                return 0;
            }
            nw.holders.remove(i);
            let units = nw.label.len();
            state.lose(units);
            if let Some(ph) = pw.holder(state.id) {
                if ph.remove_child() == 0 {
                    state.became_leaf();
                    state.push_leaf(ph.last_used(), &parent);
                }
            }
            if nw.holders.is_empty() {
                if let Some(idx) = nw.first.and_then(|u| pw.child_index(u).ok()) {
                    pw.children.remove(idx);
                }
                nw.alive = false;
                self.shrink(1, units);
            }
            return units;
        }
    }

    /// Accounts for removed nodes and units.
    fn shrink(&self, nodes: usize, units: usize) {
        use std::sync::atomic::Ordering::AcqRel;
        self.counts.nodes.fetch_sub(nodes, AcqRel);
        self.counts.units.fetch_sub(units, AcqRel);
    }

    /// Rebuilds the tenant's LRU heap without stale or duplicate entries; caller holds `evicting`.
    pub(crate) fn compact(&self, state: &TenantState<K>) {
        let entries = state.lru.lock().take_all();
        let mut seen: HashSet<*const parking_lot::RwLock<crate::node::Node<K>>> = HashSet::new();
        let mut keep = Vec::new();
        for e in entries {
            let Some(node): Option<NodeRef<K>> = e.node.upgrade() else {
                continue;
            };
            if !seen.insert(Arc::as_ptr(&node)) {
                continue;
            }
            let g = node.read();
            let Some(h) = g.holder(state.id) else {
                continue;
            };
            if g.alive && h.held_children() == 0 {
                keep.push(LruEntry {
                    ts: h.last_used(),
                    seq: e.seq,
                    node: e.node,
                });
            }
        }
        let mut lru = state.lru.lock();
        for e in keep {
            lru.push_entry(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{ManualClock, RadixTree, TenantId};

    /// Evicting one tenant only consults that tenant's own LRU index, never the rest of the tree.
    #[test]
    fn eviction_work_is_bounded_by_the_tenant_index() {
        let clock = Arc::new(ManualClock::new(0));
        let tree: RadixTree<u8> = RadixTree::with_clock(clock.clone());
        let (big, small) = (TenantId(1), TenantId(2));
        for i in 0..5_000 {
            clock.advance(1);
            tree.insert(format!("big tenant conversation {i} turn").as_bytes(), big);
        }
        for i in 0..10 {
            clock.advance(1);
            tree.insert(format!("small {i}").as_bytes(), small);
        }
        let lru_len = |t| tree.tenants.get(t).map_or(0, |s| s.lru.lock().len());
        let big_before = lru_len(big);
        assert!(
            lru_len(small) <= 10,
            "index holds only the small tenant's leaves"
        );
        assert!(tree.evict_tenant(small, 0) > 0);
        assert_eq!(lru_len(small), 0);
        assert_eq!(lru_len(big), big_before, "other tenants' indexes untouched");
        assert_eq!(tree.tenant_size(small), 0);
        tree.audit().unwrap();
    }

    /// Stale index entries (leaves that were extended) are compacted away, so the index stays
    /// proportional to the tenant's leaves even without any eviction.
    #[test]
    fn lru_index_stays_proportional_to_leaves() {
        let tree: RadixTree<u8> = RadixTree::new();
        let t = TenantId(7);
        let mut key = b"conversation:".to_vec();
        for turn in 0..1_500 {
            key.extend_from_slice(format!(" turn {turn}").as_bytes());
            tree.insert(&key, t);
        }
        let state = tree.tenants.get(t).unwrap();
        assert_eq!(state.leaves.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(
            state.lru.lock().len() <= 2 + 64 + 1,
            "{}",
            state.lru.lock().len()
        );
        tree.audit().unwrap();
    }
}
