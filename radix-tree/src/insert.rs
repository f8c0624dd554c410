//! Insert: record that a tenant was sent (or holds) a key, refreshing its LRU time on the path.
//!
//! The walk holds read locks on two levels at a time (`parent`, `cur`). A node can only be
//! split or detached under its parent's write lock, so while `parent` is read-locked `cur` may be
//! re-locked for writing without re-validation. Locks are always taken top-down.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::node::{Holder, Node, ReadGuard, WriteGuard, common_prefix};
use crate::small::SmallVec;
use crate::tenant::{TenantState, slack};
use crate::{KeyUnit, RadixTree, Residency, TenantId};

/// One insert in progress.
struct Insert<'a, K: KeyUnit> {
    tree: &'a RadixTree<K>,
    state: &'a TenantState<K>,
    tenant: TenantId,
    now: u64,
    confirmed: bool,
}

impl<K: KeyUnit> RadixTree<K> {
    /// Records that `key` was sent to `tenant` ([`Residency::Sent`]); refreshes its LRU time.
    pub fn insert(&self, key: &[K], tenant: TenantId) {
        self.insert_with(key, tenant, Residency::Sent);
    }

    /// Records that `tenant` holds `key` with the given residency (never downgrades a confirmed hold).
    ///
    /// An empty key is ignored. If the tenant has a cap and is over it by more than the slack,
    /// this call also evicts it back down to the cap.
    pub fn insert_with(&self, key: &[K], tenant: TenantId, residency: Residency) {
        if key.is_empty() {
            return;
        }
        let state = self.tenants.get_or_create(tenant);
        let op = Insert {
            tree: self,
            state: &state,
            tenant,
            now: self.clock.now(),
            confirmed: residency == Residency::Confirmed,
        };
        op.run(key);
        self.after_insert(&state);
    }

    /// Housekeeping once no node lock is held: LRU compaction and cap enforcement.
    fn after_insert(&self, state: &TenantState<K>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Load first: the flag is shared by every thread inserting for this tenant.
        if state.needs_compaction.load(Relaxed) && state.needs_compaction.swap(false, Relaxed) {
            match state.evicting.try_lock() {
                Some(_pass) => self.compact(state),
                None => state.needs_compaction.store(true, Relaxed),
            }
        }
        let Some(cap) = state.cap() else { return };
        while state.size() > cap.saturating_add(slack(cap)) {
            // Whoever holds the pass re-checks after releasing it, so skipping here loses nothing.
            let Some(pass) = state.evicting.try_lock() else {
                return;
            };
            let evicted = self.evict_locked(state, cap);
            drop(pass);
            if evicted == 0 {
                return;
            }
        }
    }

    /// Accounts for new nodes and units.
    pub(crate) fn grow(&self, nodes: usize, units: usize) {
        use std::sync::atomic::Ordering::AcqRel;
        self.counts.nodes.fetch_add(nodes, AcqRel);
        self.counts.units.fetch_add(units, AcqRel);
    }
}

impl<K: KeyUnit> Insert<'_, K> {
    fn run(&self, key: &[K]) {
        let mut parent: Option<ReadGuard<K>> = None;
        let mut cur: ReadGuard<K> = self.tree.root.read_arc();
        let mut pos = 0;
        while pos < key.len() {
            let rest = &key[pos..];
            if let Some(child) = cur.child(rest[0]) {
                let cg = child.read_arc();
                if rest.starts_with(&cg.label) {
                    let end = pos + cg.label.len();
                    let cg = self.hold_read(&cur, cg, end == key.len());
                    parent = Some(std::mem::replace(&mut cur, cg));
                    pos = end;
                    continue;
                }
            }
            // The step changes `cur`'s children: redo it under `cur`'s write lock.
            let node = ReadGuard::rwlock(&cur).clone();
            drop(cur);
            let mut w = node.write_arc();
            let Some((child, end)) = self.step_locked(&mut w, key, pos) else {
                return;
            };
            parent = Some(WriteGuard::downgrade(w));
            cur = WriteGuard::downgrade(child);
            pos = end;
        }
        drop(parent);
    }

    /// Makes the tenant hold the child behind `cg` (whose parent is `parent`); returns it read-locked.
    fn hold_read(&self, parent: &Node<K>, cg: ReadGuard<K>, is_final: bool) -> ReadGuard<K> {
        if let Some(h) = cg.holder(self.tenant) {
            h.touch(self.now, self.confirmed);
            return cg;
        }
        let node = ReadGuard::rwlock(&cg).clone();
        drop(cg);
        let mut cw = node.write_arc();
        self.hold_locked(parent, &mut cw, is_final);
        WriteGuard::downgrade(cw)
    }

    /// Makes the tenant hold the write-locked `child` of `parent`.
    fn hold_locked(&self, parent: &Node<K>, child: &mut WriteGuard<K>, is_final: bool) {
        if let Some(h) = child.holder(self.tenant) {
            h.touch(self.now, self.confirmed);
            return;
        }
        child.add_holder(self.new_holder(0));
        self.state.gain(child.label.len(), true);
        if let Some(ph) = parent.holder(self.tenant) {
            self.state.child_added(ph.add_child());
        }
        if is_final {
            // Newly held, so no held children: a leaf of this tenant.
            self.state.push_leaf(self.now, WriteGuard::rwlock(child));
        }
    }

    /// One step at write-locked `w` (key matched up to `pos`): add a leaf, split a child, or
    /// descend into a child that now matches fully (returned write-locked with its end depth).
    fn step_locked(
        &self,
        w: &mut WriteGuard<K>,
        key: &[K],
        pos: usize,
    ) -> Option<(WriteGuard<K>, usize)> {
        let rest = &key[pos..];
        let idx = match w.child_index(rest[0]) {
            Ok(idx) => idx,
            Err(idx) => {
                self.add_leaf(w, idx, rest);
                return None;
            }
        };
        let child = w.children[idx].1.clone();
        let mut cw = child.write_arc();
        let l = common_prefix(&cw.label, rest);
        if l == cw.label.len() {
            let end = pos + l;
            self.hold_locked(w, &mut cw, end == key.len());
            return Some((cw, end));
        }
        self.split(w, idx, cw, rest, l);
        None
    }

    fn new_holder(&self, children: u32) -> Holder {
        Holder::new(self.tenant, self.now, self.confirmed, children)
    }

    /// Adds a leaf with label `rest` at child position `idx` of write-locked `w`.
    fn add_leaf(&self, w: &mut WriteGuard<K>, idx: usize, rest: &[K]) {
        let parent = Arc::downgrade(WriteGuard::rwlock(w));
        let leaf = Arc::new(RwLock::new(Node::new(
            rest,
            SmallVec::one(self.new_holder(0)),
            parent,
        )));
        w.children.insert(idx, (rest[0], leaf.clone()));
        if let Some(ph) = w.holder(self.tenant) {
            self.state.child_added(ph.add_child());
        }
        self.state.gain(rest.len(), true);
        self.tree.grow(1, rest.len());
        self.state.push_leaf(self.now, &leaf);
    }

    /// Splits child `idx` of `w` after `l` units (0 < l < its label length) and hangs the rest
    /// of the key (if any) under the new middle node.
    fn split(
        &self,
        w: &mut WriteGuard<K>,
        idx: usize,
        mut cw: WriteGuard<K>,
        rest: &[K],
        l: usize,
    ) {
        let suffix: Box<[K]> = cw.label[l..].into();
        let holders = SmallVec::from_vec(cw.holders.iter().map(Holder::split_copy).collect());
        for h in &holders {
            // Every tenant holding the split node now also holds the new middle node.
            if h.tenant == self.tenant {
                self.state.gain(0, false);
            } else if let Some(s) = self.tree.tenants.get(h.tenant) {
                s.gain(0, false);
            }
        }
        let mut mid = Node::new(&rest[..l], holders, Arc::downgrade(WriteGuard::rwlock(w)));
        mid.children
            .push((suffix[0], WriteGuard::rwlock(&cw).clone()));
        cw.first = suffix.first().copied();
        cw.label = suffix;
        let mid = Arc::new(RwLock::new(mid));
        cw.parent = Arc::downgrade(&mid);
        drop(cw);

        let mut m = mid.write();
        let mut nodes = 1;
        let mut leaf_units = 0;
        let held = m.holder(self.tenant).is_some();
        if rest.len() > l {
            let label = &rest[l..];
            let leaf = Arc::new(RwLock::new(Node::new(
                label,
                SmallVec::one(self.new_holder(0)),
                Arc::downgrade(&mid),
            )));
            let (Ok(i) | Err(i)) = m.child_index(label[0]);
            m.children.insert(i, (label[0], leaf.clone()));
            match m.holder(self.tenant) {
                Some(h) => {
                    h.touch(self.now, self.confirmed);
                    h.add_child();
                }
                None => m.add_holder(self.new_holder(1)),
            }
            self.state.gain(label.len(), true);
            self.state.push_leaf(self.now, &leaf);
            nodes += 1;
            leaf_units = label.len();
        } else if let Some(h) = m.holder(self.tenant) {
            h.touch(self.now, self.confirmed);
        } else {
            m.add_holder(self.new_holder(0));
            self.state.push_leaf(self.now, &mid);
        }
        if !held {
            // Newly held middle node: a leaf only if the key ends there.
            self.state.gain(l, rest.len() == l);
            if let Some(ph) = w.holder(self.tenant) {
                self.state.child_added(ph.add_child());
            }
        }
        drop(m);
        w.children[idx].1 = mid;
        self.tree.grow(nodes, leaf_units);
    }
}
