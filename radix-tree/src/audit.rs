//! Full consistency check of the tree, for tests and debugging.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::node::{Node, NodeRef};
use crate::tenant::slack;
use crate::{KeyUnit, RadixError, RadixTree, TenantId};

/// Per tenant: (units, nodes) found by the walk.
type Tally = BTreeMap<TenantId, (usize, usize)>;

fn fail(msg: String) -> Result<(), RadixError> {
    Err(RadixError::Invariant(msg))
}

impl<K: KeyUnit> RadixTree<K> {
    /// Walks the whole tree and checks every invariant: structure, counters, prefix-closed
    /// holds, LRU index coverage and caps. Meant for quiescent trees (tests, debugging).
    pub fn audit(&self) -> Result<(), RadixError> {
        let mut tally = Tally::new();
        let (mut nodes, mut units) = (0usize, 0usize);
        let mut stack: Vec<(NodeRef<K>, usize)> = vec![(self.root.clone(), 0)];
        let mut leaves: Vec<(TenantId, NodeRef<K>, u64)> = Vec::new();
        while let Some((node, depth)) = stack.pop() {
            let g = node.read();
            if depth > 0 {
                nodes += 1;
                units += g.label.len();
                check_node(&g, depth)?;
                for h in &g.holders {
                    let t = tally.entry(h.tenant).or_default();
                    t.0 += g.label.len();
                    t.1 += 1;
                    if h.held_children() == 0 {
                        leaves.push((h.tenant, node.clone(), h.last_used()));
                    }
                }
            }
            let is_root = depth == 0;
            for (i, (unit, child)) in g.children.iter().enumerate() {
                let c = child.read();
                check_child(&g, &node, &c, *unit, i, is_root, depth)?;
                stack.push((child.clone(), depth + 1));
            }
        }
        if nodes != self.node_count() || units != self.total_size() {
            return fail(format!(
                "walk found {nodes} nodes / {units} units, counters say {} / {}",
                self.node_count(),
                self.total_size()
            ));
        }
        self.check_tenants(&tally, &leaves)
    }

    /// Tenant counters, caps and LRU coverage against what the walk found.
    fn check_tenants(
        &self,
        tally: &Tally,
        leaves: &[(TenantId, NodeRef<K>, u64)],
    ) -> Result<(), RadixError> {
        let mut queued: HashMap<(TenantId, *const parking_lot::RwLock<Node<K>>), u64> =
            HashMap::new();
        for state in self.tenants.all() {
            let (size, count) = tally.get(&state.id).copied().unwrap_or((0, 0));
            let nodes = state.nodes.load(std::sync::atomic::Ordering::Acquire);
            if size != state.size() || count != nodes {
                return fail(format!(
                    "tenant {:?}: walk found {size} units in {count} nodes, counters say {} in {nodes}",
                    state.id,
                    state.size()
                ));
            }
            let leaf_count = leaves.iter().filter(|l| l.0 == state.id).count();
            let counted = state.leaves.load(std::sync::atomic::Ordering::Acquire);
            if leaf_count != counted {
                return fail(format!(
                    "tenant {:?}: walk found {leaf_count} leaves, counter says {counted}",
                    state.id
                ));
            }
            if let Some(cap) = state.cap() {
                if size > cap + slack(cap) {
                    return fail(format!("tenant {:?} holds {size} > cap {cap}", state.id));
                }
            }
            for e in state.lru.lock().iter() {
                let ts = queued.entry((state.id, e.node.as_ptr())).or_insert(e.ts);
                *ts = (*ts).min(e.ts);
            }
        }
        if let Some(t) = tally.keys().find(|t| self.tenants.get(**t).is_none()) {
            return fail(format!("tenant {t:?} holds nodes but is not registered"));
        }
        for (tenant, node, ts) in leaves {
            match queued.get(&(*tenant, Arc::as_ptr(node))) {
                Some(q) if q <= ts => {}
                other => {
                    return fail(format!(
                        "leaf of {tenant:?} used at {ts} not in LRU index (queued at {other:?})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks one non-root node on its own.
fn check_node<K: KeyUnit>(g: &Node<K>, depth: usize) -> Result<(), RadixError> {
    if g.label.is_empty() || !g.alive || g.holders.is_empty() || g.first != g.label.first().copied()
    {
        return fail(format!(
            "node at depth {depth}: label {} units, alive {}, {} holders",
            g.label.len(),
            g.alive,
            g.holders.len()
        ));
    }
    for (i, h) in g.holders.iter().enumerate() {
        if i > 0 && g.holders[i - 1].tenant >= h.tenant {
            return fail(format!(
                "node {:?}: holders unsorted or duplicated",
                g.label
            ));
        }
        let held = g
            .children
            .iter()
            .filter(|(_, c)| c.read().holder(h.tenant).is_some());
        if held.count() != h.held_children() as usize {
            return fail(format!(
                "node {:?}: tenant {:?} held-children counter {} is wrong",
                g.label,
                h.tenant,
                h.held_children()
            ));
        }
    }
    Ok(())
}

/// Checks the link from `parent` to its `i`-th child `c` and the prefix-closure of holds.
fn check_child<K: KeyUnit>(
    parent: &Node<K>,
    parent_ref: &NodeRef<K>,
    c: &Node<K>,
    unit: K,
    i: usize,
    parent_is_root: bool,
    depth: usize,
) -> Result<(), RadixError> {
    if c.label.first() != Some(&unit) || (i > 0 && parent.children[i - 1].0 >= unit) {
        return fail(format!(
            "child {i} at depth {depth}: key {unit:?} unsorted or wrong"
        ));
    }
    if c.parent.as_ptr() != Arc::as_ptr(parent_ref) {
        return fail(format!("child {:?}: parent link is wrong", c.label));
    }
    if parent_is_root {
        return Ok(());
    }
    for h in &c.holders {
        let Some(ph) = parent.holder(h.tenant) else {
            return fail(format!(
                "{:?} holds {:?} but not its parent",
                h.tenant, c.label
            ));
        };
        if h.confirmed() && !ph.confirmed() {
            return fail(format!(
                "{:?} confirmed {:?} but not its parent",
                h.tenant, c.label
            ));
        }
        if ph.last_used() < h.last_used() {
            return fail(format!(
                "{:?}: parent of {:?} used before it",
                h.tenant, c.label
            ));
        }
    }
    Ok(())
}
