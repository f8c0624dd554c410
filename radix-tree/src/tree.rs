//! The tree handle: construction, sizes, tenant caps and teardown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::clock::{Clock, SystemClock};
use crate::node::{Node, NodeRef};
use crate::tenant::TenantRegistry;
use crate::{KeyUnit, TenantId};

/// Concurrent multi-tenant radix tree: which tenant (replica) holds which key prefix.
///
/// `Send + Sync`; share it with `Arc` and call every method through `&self`.
pub struct RadixTree<K: KeyUnit = u8> {
    pub(crate) root: NodeRef<K>,
    pub(crate) tenants: TenantRegistry<K>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counts: Counts,
}

/// Tree-wide counters, on their own cache line so writes to them do not slow down readers of
/// the read-mostly fields above.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Nodes in the tree, root excluded.
    pub(crate) nodes: AtomicUsize,
    /// Units stored in the tree (each label once).
    pub(crate) units: AtomicUsize,
}

impl<K: KeyUnit> RadixTree<K> {
    /// An empty tree timed by a millisecond [`SystemClock`].
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty tree timed by `clock` (LRU order follows its ticks).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            root: Arc::new(RwLock::new(Node::root())),
            tenants: TenantRegistry::new(),
            clock,
            counts: Counts::default(),
        }
    }

    /// Units of key text `tenant` holds (sum of the labels of the nodes it holds).
    pub fn tenant_size(&self, tenant: TenantId) -> usize {
        self.tenants.get(tenant).map_or(0, |s| s.size())
    }

    /// Units stored in the tree, each edge label counted once.
    pub fn total_size(&self) -> usize {
        self.counts.units.load(Ordering::Acquire)
    }

    /// Tenants holding at least one prefix, sorted by id.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.tenants
            .all()
            .iter()
            .filter(|s| s.nodes.load(Ordering::Acquire) > 0)
            .map(|s| s.id)
            .collect()
    }

    /// Number of nodes in the tree, not counting the root.
    pub fn node_count(&self) -> usize {
        self.counts.nodes.load(Ordering::Acquire)
    }

    /// The size cap of `tenant`, if one is set.
    pub fn tenant_cap(&self, tenant: TenantId) -> Option<usize> {
        self.tenants.get(tenant).and_then(|s| s.cap())
    }

    /// Sets (or clears) `tenant`'s size cap and evicts down to it at once if it is over.
    ///
    /// Afterwards an insert evicts the tenant back down to the cap once it exceeds it by the slack, `min(cap / 64, 16384)` units.
    pub fn set_tenant_cap(&self, tenant: TenantId, max_units: Option<usize>) {
        let state = self.tenants.get_or_create(tenant);
        state.set_cap(max_units);
        if let Some(cap) = max_units {
            if state.size() > cap {
                let _pass = state.evicting.lock();
                self.evict_locked(&state, cap);
            }
        }
    }
}

impl<K: KeyUnit> Default for RadixTree<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: KeyUnit> std::fmt::Debug for RadixTree<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadixTree")
            .field("nodes", &self.node_count())
            .field("total_size", &self.total_size())
            .field("tenants", &self.tenants())
            .finish()
    }
}

impl<K: KeyUnit> Drop for RadixTree<K> {
    /// Frees nodes iteratively so very deep trees cannot overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<NodeRef<K>> = std::mem::take(&mut self.root.write().children)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        while let Some(node) = stack.pop() {
            if let Ok(lock) = Arc::try_unwrap(node) {
                stack.extend(lock.into_inner().children.into_iter().map(|(_, c)| c));
            }
        }
    }
}
