//! Per-tenant bookkeeping: held size, size cap and the LRU index of the tenant's leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::TenantId;
use crate::lru::LruHeap;
use crate::node::NodeRef;

/// Marker for "no cap" in `TenantState::cap`.
const NO_CAP: usize = usize::MAX;

/// Largest slack over a cap, in units: bounds the work (and latency) of one eviction pass.
const MAX_SLACK: usize = 16 * 1024;

/// Size a tenant may reach over `cap` before an insert evicts it back down to `cap`:
/// `min(cap / 64, 16384)`, so eviction runs in small, amortised passes.
pub(crate) fn slack(cap: usize) -> usize {
    (cap / 64).min(MAX_SLACK)
}

/// Everything the tree tracks about one tenant.
#[derive(Debug)]
pub(crate) struct TenantState<K> {
    /// The tenant.
    pub(crate) id: TenantId,
    /// Units of key text held (sum of label lengths of held nodes).
    pub(crate) size: AtomicUsize,
    /// Number of nodes held.
    pub(crate) nodes: AtomicUsize,
    /// Number of leaves (held nodes with no held child); bounds the useful size of `lru`.
    pub(crate) leaves: AtomicUsize,
    /// Size cap, `NO_CAP` when unset.
    cap: AtomicUsize,
    /// Set when the LRU heap holds many stale entries and should be compacted.
    pub(crate) needs_compaction: AtomicBool,
    /// LRU index of this tenant's leaves (a leaf lock: no node lock is taken while it is held).
    pub(crate) lru: Mutex<LruHeap<K>>,
    /// Serialises eviction passes and compaction for this tenant.
    pub(crate) evicting: Mutex<()>,
}

impl<K> TenantState<K> {
    fn new(id: TenantId) -> Self {
        Self {
            id,
            size: AtomicUsize::new(0),
            nodes: AtomicUsize::new(0),
            leaves: AtomicUsize::new(0),
            cap: AtomicUsize::new(NO_CAP),
            needs_compaction: AtomicBool::new(false),
            lru: Mutex::new(LruHeap::default()),
            evicting: Mutex::new(()),
        }
    }

    /// Current size in units.
    pub(crate) fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    /// The size cap, if any.
    pub(crate) fn cap(&self) -> Option<usize> {
        match self.cap.load(Ordering::Acquire) {
            NO_CAP => None,
            c => Some(c),
        }
    }

    /// Sets or clears the size cap.
    pub(crate) fn set_cap(&self, cap: Option<usize>) {
        self.cap.store(cap.unwrap_or(NO_CAP), Ordering::Release);
    }

    /// Queues `node`, one of this tenant's leaves last used at `ts`, in the LRU index.
    pub(crate) fn push_leaf(&self, ts: u64, node: &NodeRef<K>) {
        let mut lru = self.lru.lock();
        lru.push(ts, Arc::downgrade(node));
        if lru.len() > 2 * self.leaves.load(Ordering::Relaxed) + 64 {
            self.needs_compaction.store(true, Ordering::Relaxed);
        }
    }

    /// Accounts for a newly held node of `units` units (a leaf if it has no held child).
    pub(crate) fn gain(&self, units: usize, leaf: bool) {
        self.size.fetch_add(units, Ordering::AcqRel);
        self.nodes.fetch_add(1, Ordering::AcqRel);
        if leaf {
            self.leaves.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Accounts for an evicted leaf of `units` units.
    pub(crate) fn lose(&self, units: usize) {
        self.size.fetch_sub(units, Ordering::AcqRel);
        self.nodes.fetch_sub(1, Ordering::AcqRel);
        self.leaves.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records that a held node gained its first held child (`prev` children before): no longer a leaf.
    pub(crate) fn child_added(&self, prev: u32) {
        if prev == 0 {
            self.leaves.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Records that a held node lost its last held child: a leaf again.
    pub(crate) fn became_leaf(&self) {
        self.leaves.fetch_add(1, Ordering::AcqRel);
    }
}

/// Hasher for `TenantId` keys: one multiply instead of SipHash on every insert.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<TenantId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// All tenants ever seen by a tree; entries stay (they are small) so counters are never lost.
#[derive(Debug)]
pub(crate) struct TenantRegistry<K> {
    map: RwLock<IdMap<Arc<TenantState<K>>>>,
}

impl<K> TenantRegistry<K> {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Self {
            map: RwLock::new(IdMap::default()),
        }
    }

    /// The state of `id`, if it was ever seen.
    pub(crate) fn get(&self, id: TenantId) -> Option<Arc<TenantState<K>>> {
        self.map.read().get(&id).cloned()
    }

    /// The state of `id`, created on first use.
    pub(crate) fn get_or_create(&self, id: TenantId) -> Arc<TenantState<K>> {
        if let Some(s) = self.get(id) {
            return s;
        }
        self.map
            .write()
            .entry(id)
            .or_insert_with(|| Arc::new(TenantState::new(id)))
            .clone()
    }

    /// Snapshot of all tenant states, sorted by id.
    pub(crate) fn all(&self) -> Vec<Arc<TenantState<K>>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_creates_once_and_caps_round_trip() {
        let r: TenantRegistry<u8> = TenantRegistry::new();
        let a = r.get_or_create(TenantId(2));
        let b = r.get_or_create(TenantId(2));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(r.get(TenantId(9)).is_none());
        assert_eq!(a.cap(), None);
        a.set_cap(Some(100));
        assert_eq!(b.cap(), Some(100));
        assert_eq!(slack(100), 1);
        assert_eq!(slack(100 << 20), 16 * 1024);
        r.get_or_create(TenantId(1));
        let ids: Vec<_> = r.all().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![TenantId(1), TenantId(2)]);
    }
}
