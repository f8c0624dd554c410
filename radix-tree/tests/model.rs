//! Property tests: every operation against a plain reference model.
//!
//! The model keeps the node structure as a map from each node's full path to its holders and
//! recomputes everything (parents, leaves, sizes, matches) by brute force.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use radix_tree::{KeyUnit, ManualClock, RadixTree, Residency, TenantId, TenantMatch};

type Holders = BTreeMap<u32, (u64, bool)>;

/// Reference model: node paths with their holders (tenant -> (last used, confirmed)).
#[derive(Debug)]
struct Model<K> {
    nodes: BTreeMap<Vec<K>, Holders>,
    caps: BTreeMap<u32, usize>,
}

fn lcp<K: Eq>(a: &[K], b: &[K]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<K: KeyUnit> Model<K> {
    fn parent_len(&self, path: &[K]) -> usize {
        (1..path.len())
            .rev()
            .find(|&l| self.nodes.contains_key(&path[..l]))
            .unwrap_or(0)
    }

    fn size(&self, t: u32) -> usize {
        self.nodes
            .iter()
            .filter(|(_, h)| h.contains_key(&t))
            .map(|(p, _)| p.len() - self.parent_len(p))
            .sum()
    }

    fn total(&self) -> usize {
        self.nodes
            .keys()
            .map(|p| p.len() - self.parent_len(p))
            .sum()
    }

    fn insert(&mut self, key: &[K], t: u32, confirmed: bool, now: u64) {
        if key.is_empty() {
            return;
        }
        let d = self.nodes.keys().map(|p| lcp(key, p)).max().unwrap_or(0);
        if d > 0 && !self.nodes.contains_key(&key[..d]) {
            let below = self
                .nodes
                .iter()
                .filter(|(p, _)| p.len() > d && p.starts_with(&key[..d]))
                .min_by_key(|(p, _)| p.len())
                .map(|(_, h)| h.clone())
                .expect("a node continues past the split point");
            self.nodes.insert(key[..d].to_vec(), below);
        }
        self.nodes.entry(key.to_vec()).or_default();
        for (p, h) in self.nodes.iter_mut() {
            if key.starts_with(p) {
                let e = h.entry(t).or_insert((now, false));
                e.0 = now;
                e.1 |= confirmed;
            }
        }
        if let Some(&cap) = self.caps.get(&t) {
            if self.size(t) > cap + (cap / 64).min(16 * 1024) {
                self.evict(t, cap);
            }
        }
    }

    fn evict(&mut self, t: u32, max: usize) -> usize {
        let mut evicted = 0;
        while self.size(t) > max {
            let held: Vec<Vec<K>> = self
                .nodes
                .iter()
                .filter(|(_, h)| h.contains_key(&t))
                .map(|(p, _)| p.clone())
                .collect();
            let leaf = held
                .iter()
                .filter(|p| {
                    !held.iter().any(|c| {
                        c.len() > p.len() && c.starts_with(p) && self.parent_len(c) == p.len()
                    })
                })
                .min_by_key(|p| self.nodes[*p][&t].0)
                .expect("a tenant with units has a leaf")
                .clone();
            evicted += leaf.len() - self.parent_len(&leaf);
            let h = self.nodes.get_mut(&leaf).expect("leaf exists");
            h.remove(&t);
            if h.is_empty() {
                self.nodes.remove(&leaf);
            }
        }
        evicted
    }

    fn remove(&mut self, t: u32) {
        self.caps.remove(&t);
        for h in self.nodes.values_mut() {
            h.remove(&t);
        }
        self.nodes.retain(|_, h| !h.is_empty());
    }

    fn set_cap(&mut self, t: u32, cap: Option<usize>) {
        match cap {
            Some(c) => {
                self.caps.insert(t, c);
                if self.size(t) > c {
                    self.evict(t, c);
                }
            }
            None => {
                self.caps.remove(&t);
            }
        }
    }

    fn matches(&self, key: &[K]) -> Vec<TenantMatch> {
        let mut out: BTreeMap<u32, TenantMatch> = BTreeMap::new();
        for (p, h) in &self.nodes {
            let l = lcp(key, p);
            if l == 0 {
                continue;
            }
            for (&t, &(_, conf)) in h {
                let m = out.entry(t).or_insert(TenantMatch {
                    tenant: TenantId(t),
                    matched: 0,
                    confirmed: 0,
                });
                m.matched = m.matched.max(l);
                if conf {
                    m.confirmed = m.confirmed.max(l);
                }
            }
        }
        out.into_values().collect()
    }

    fn tenants(&self) -> Vec<TenantId> {
        let set: BTreeSet<u32> = self
            .nodes
            .values()
            .flat_map(|h| h.keys().copied())
            .collect();
        set.into_iter().map(TenantId).collect()
    }
}

#[derive(Clone, Debug)]
enum Op<K> {
    Insert(Vec<K>, u32, bool),
    Match(Vec<K>),
    Evict(u32, usize),
    Remove(u32),
    SetCap(u32, Option<usize>),
}

fn op_strategy<K: KeyUnit>(
    unit: impl Strategy<Value = K> + Clone + 'static,
) -> impl Strategy<Value = Op<K>> {
    let key = proptest::collection::vec(unit, 0..10);
    prop_oneof![
        6 => (key.clone(), 0..4u32, proptest::bool::weighted(0.2)).prop_map(|(k, t, c)| Op::Insert(k, t, c)),
        3 => key.prop_map(Op::Match),
        2 => (0..4u32, 0..30usize).prop_map(|(t, m)| Op::Evict(t, m)),
        1 => (0..4u32).prop_map(Op::Remove),
        1 => (0..4u32, proptest::option::of(0..40usize)).prop_map(|(t, c)| Op::SetCap(t, c)),
    ]
}

/// Runs `ops` on a tree and the model, comparing every observable after every step.
fn check_against_model<K: KeyUnit>(ops: Vec<Op<K>>) -> Result<(), TestCaseError> {
    let clock = Arc::new(ManualClock::new(0));
    let tree: RadixTree<K> = RadixTree::with_clock(clock.clone());
    let mut model: Model<K> = Model {
        nodes: BTreeMap::new(),
        caps: BTreeMap::new(),
    };
    for op in ops {
        let now = clock.advance(1);
        match &op {
            Op::Insert(k, t, c) => {
                let r = if *c {
                    Residency::Confirmed
                } else {
                    Residency::Sent
                };
                tree.insert_with(k, TenantId(*t), r);
                model.insert(k, *t, *c, now);
            }
            Op::Match(k) => {
                let m = tree.match_prefix(k);
                prop_assert_eq!(m.tenants().to_vec(), model.matches(k), "match {:?}", k);
                prop_assert_eq!(m.key_len(), k.len());
            }
            Op::Evict(t, max) => {
                let got = tree.evict_tenant(TenantId(*t), *max);
                prop_assert_eq!(got, model.evict(*t, *max), "evict {} to {}", t, max);
            }
            Op::Remove(t) => {
                tree.remove_tenant(TenantId(*t));
                model.remove(*t);
            }
            Op::SetCap(t, c) => {
                tree.set_tenant_cap(TenantId(*t), *c);
                model.set_cap(*t, *c);
            }
        }
        for t in 0..4 {
            prop_assert_eq!(
                tree.tenant_size(TenantId(t)),
                model.size(t),
                "size of {} after {:?}",
                t,
                op
            );
        }
        prop_assert_eq!(tree.total_size(), model.total(), "total after {:?}", op);
        prop_assert_eq!(tree.node_count(), model.nodes.len(), "nodes after {:?}", op);
        prop_assert_eq!(tree.tenants(), model.tenants());
        if let Err(e) = tree.audit() {
            return Err(TestCaseError::fail(format!("{e} after {op:?}")));
        }
    }
    // Every surviving prefix still matches the model.
    for p in model.nodes.keys() {
        prop_assert_eq!(tree.match_prefix(p).tenants().to_vec(), model.matches(p));
    }
    Ok(())
}

/// 300 cases, or `PROPTEST_CASES` when set (`router/bench/fuzz.sh` runs it at scale).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn byte_tree_matches_model(ops in proptest::collection::vec(op_strategy(b'a'..=b'd'), 1..60)) {
        check_against_model(ops)?;
    }

    #[test]
    fn token_tree_matches_model(ops in proptest::collection::vec(op_strategy(0u32..3), 1..60)) {
        check_against_model(ops)?;
    }
}
