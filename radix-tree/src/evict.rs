//! Per-tenant LRU eviction and tenant removal.
//!
//! Each tenant keeps a lazy min-heap of its leaves (nodes it holds with no held child). A popped
//! entry is checked under the node's and its parent's write locks: a refreshed node is re-queued,
//! a node that stopped being a leaf is dropped (it is queued again when it becomes one). So the
//! cost of a pass grows with what it evicts (times a log), never with the size of the tree.

use std::collections::HashSet;
use std::sync::Arc;

use crate::node::NodeRef;
use crate::tenant::{LruEntry, TenantState};
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
        self.node_count.fetch_sub(nodes, AcqRel);
        self.total_units.fetch_sub(units, AcqRel);
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
