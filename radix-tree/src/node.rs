//! Tree nodes: an edge label, sorted children, and the tenants holding the node.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{RawRwLock, RwLock};

use crate::small::SmallVec;
use crate::{KeyUnit, TenantId};

/// Shared handle to a node.
pub(crate) type NodeRef<K> = Arc<RwLock<Node<K>>>;
/// Non-owning handle to a node (parent links, LRU entries).
pub(crate) type NodeWeak<K> = Weak<RwLock<Node<K>>>;
/// Owned read guard on a node.
pub(crate) type ReadGuard<K> = parking_lot::ArcRwLockReadGuard<RawRwLock, Node<K>>;
/// Owned write guard on a node.
pub(crate) type WriteGuard<K> = parking_lot::ArcRwLockWriteGuard<RawRwLock, Node<K>>;

/// One node: the key units on the edge from its parent, its children and its holders.
#[derive(Debug)]
pub(crate) struct Node<K> {
    /// Units on the edge from the parent (empty only for the root).
    pub(crate) label: Box<[K]>,
    /// Copy of `label[0]` (the key in the parent's child list), so eviction need not read the label.
    pub(crate) first: Option<K>,
    /// Children sorted by the first unit of their label.
    pub(crate) children: SmallVec<(K, NodeRef<K>)>,
    /// Tenants holding this node (the whole prefix ending here), sorted by tenant id.
    pub(crate) holders: SmallVec<Holder>,
    /// Parent node; dangling for the root.
    pub(crate) parent: NodeWeak<K>,
    /// False once the node is detached from the tree.
    pub(crate) alive: bool,
}

impl<K: KeyUnit> Node<K> {
    /// The root: empty label, no holders.
    pub(crate) fn root() -> Self {
        Self {
            label: Box::new([]),
            first: None,
            children: SmallVec::Empty,
            holders: SmallVec::Empty,
            parent: Weak::new(),
            alive: true,
        }
    }

    /// A new node with one label and no children.
    pub(crate) fn new(label: &[K], holders: SmallVec<Holder>, parent: NodeWeak<K>) -> Self {
        Self {
            label: label.into(),
            first: label.first().copied(),
            children: SmallVec::Empty,
            holders,
            parent,
            alive: true,
        }
    }

    /// Position of the child whose label starts with `unit`, or where it would go.
    pub(crate) fn child_index(&self, unit: K) -> Result<usize, usize> {
        self.children.binary_search_by(|(k, _)| k.cmp(&unit))
    }

    /// The child whose label starts with `unit`.
    pub(crate) fn child(&self, unit: K) -> Option<&NodeRef<K>> {
        self.child_index(unit).ok().map(|i| &self.children[i].1)
    }

    /// This node's record for `tenant`.
    pub(crate) fn holder(&self, tenant: TenantId) -> Option<&Holder> {
        self.holders.iter().find(|h| h.tenant == tenant)
    }

    /// Adds a hold, keeping holders sorted by tenant id.
    pub(crate) fn add_holder(&mut self, h: Holder) {
        let idx = self.holders.partition_point(|o| o.tenant < h.tenant);
        self.holders.insert(idx, h);
    }

    /// Index of this node's record for `tenant`.
    pub(crate) fn holder_index(&self, tenant: TenantId) -> Option<usize> {
        self.holders.iter().position(|h| h.tenant == tenant)
    }
}

/// High bit of `Holder::state`: the tenant's hold is confirmed by the replica.
const CONFIRMED: u32 = 1 << 31;

/// One tenant's hold on one node.
#[derive(Debug)]
pub(crate) struct Holder {
    /// The tenant.
    pub(crate) tenant: TenantId,
    /// Low 31 bits: children of the node this tenant also holds; high bit: confirmed.
    state: AtomicU32,
    /// Last tick an insert by this tenant passed through the node.
    last_used: AtomicU64,
}

impl Holder {
    /// A hold with `children` held children.
    pub(crate) fn new(tenant: TenantId, now: u64, confirmed: bool, children: u32) -> Self {
        let flag = if confirmed { CONFIRMED } else { 0 };
        Self {
            tenant,
            state: AtomicU32::new(children | flag),
            last_used: AtomicU64::new(now),
        }
    }

    /// Copy of this hold for a node split above the current one (which becomes its only held child).
    pub(crate) fn split_copy(&self) -> Self {
        Self::new(self.tenant, self.last_used(), self.confirmed(), 1)
    }

    /// Last tick this hold was refreshed.
    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Acquire)
    }

    /// Whether the replica confirmed it holds this prefix.
    pub(crate) fn confirmed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CONFIRMED != 0
    }

    /// Number of children this tenant also holds (zero: the node is one of its leaves).
    pub(crate) fn held_children(&self) -> u32 {
        self.state.load(Ordering::Acquire) & !CONFIRMED
    }

    /// Refreshes the timestamp (written only when it changes) and upgrades residency.
    pub(crate) fn touch(&self, now: u64, confirmed: bool) {
        if self.last_used.load(Ordering::Relaxed) < now {
            self.last_used.fetch_max(now, Ordering::AcqRel);
        }
        if confirmed && !self.confirmed() {
            self.state.fetch_or(CONFIRMED, Ordering::AcqRel);
        }
    }

    /// Counts one more held child; returns the previous count (zero: the node was a leaf).
    pub(crate) fn add_child(&self) -> u32 {
        self.state.fetch_add(1, Ordering::AcqRel) & !CONFIRMED
    }

    /// Counts one held child less; returns the new count.
    pub(crate) fn remove_child(&self) -> u32 {
        (self.state.fetch_sub(1, Ordering::AcqRel) & !CONFIRMED).saturating_sub(1)
    }
}

/// Length of the common prefix of `a` and `b`, comparing in chunks so equal runs use memcmp.
pub(crate) fn common_prefix<K: Eq>(a: &[K], b: &[K]) -> usize {
    const CHUNK: usize = 32;
    let n = a.len().min(b.len());
    if a[..n] == b[..n] {
        return n;
    }
    let mut i = 0;
    while i + CHUNK <= n && a[i..i + CHUNK] == b[i..i + CHUNK] {
        i += CHUNK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_finds_first_difference() {
        let a: Vec<u8> = (0..200).map(|i| (i % 251) as u8).collect();
        let mut b = a.clone();
        assert_eq!(common_prefix(&a, &b), 200);
        b[77] = 255;
        assert_eq!(common_prefix(&a, &b), 77);
        assert_eq!(common_prefix(&a[..10], &b), 10);
        assert_eq!(common_prefix::<u8>(&[], &b), 0);
        assert_eq!(common_prefix(&[1u32, 2, 3], &[1, 2, 4]), 2);
    }

    #[test]
    fn holder_packs_children_and_confirmation() {
        let h = Holder::new(TenantId(3), 10, false, 0);
        assert_eq!(h.add_child(), 0);
        assert_eq!(h.add_child(), 1);
        assert_eq!(h.held_children(), 2);
        assert!(!h.confirmed());
        h.touch(9, true);
        assert!(h.confirmed());
        assert_eq!(h.last_used(), 10, "time never goes back");
        h.touch(12, false);
        assert_eq!(h.last_used(), 12);
        assert!(h.confirmed(), "a sent insert never downgrades residency");
        assert_eq!(h.remove_child(), 1);
        assert_eq!(h.held_children(), 1);
        let c = h.split_copy();
        assert_eq!(
            (c.held_children(), c.confirmed(), c.last_used()),
            (1, true, 12)
        );
    }
}
