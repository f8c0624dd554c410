//! Prefix matching: in one read-only walk, how much of a key each tenant holds.

use crate::node::{Holder, common_prefix};
use crate::{KeyUnit, RadixTree, TenantId};

/// How much of one key one tenant holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantMatch {
    /// The tenant.
    pub tenant: TenantId,
    /// Units of the key's longest prefix the tenant holds (sent or confirmed).
    pub matched: usize,
    /// Units of the key's longest prefix the tenant holds with [`crate::Residency::Confirmed`].
    pub confirmed: usize,
}

/// Result of [`RadixTree::match_prefix`]: every tenant holding a non-empty prefix of the key.
///
/// No tie-breaking is done here: callers see all tenants and break ties themselves (by load).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixMatch {
    key_len: usize,
    tenants: Vec<TenantMatch>,
}

impl PrefixMatch {
    /// Length of the key that was matched against.
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// Tenants with a non-empty match, sorted by tenant id; a tenant not listed matched nothing.
    pub fn tenants(&self) -> &[TenantMatch] {
        &self.tenants
    }

    /// The match of `tenant`, if it holds any prefix of the key.
    pub fn get(&self, tenant: TenantId) -> Option<&TenantMatch> {
        self.tenants.iter().find(|m| m.tenant == tenant)
    }

    /// Units of the key `tenant` holds (0 if none).
    pub fn matched(&self, tenant: TenantId) -> usize {
        self.get(tenant).map_or(0, |m| m.matched)
    }

    /// Units of the key `tenant` holds as confirmed (0 if none).
    pub fn confirmed(&self, tenant: TenantId) -> usize {
        self.get(tenant).map_or(0, |m| m.confirmed)
    }

    /// The longest prefix any tenant holds (0 if none).
    pub fn longest(&self) -> usize {
        self.tenants.iter().map(|m| m.matched).max().unwrap_or(0)
    }

    /// All tenants tied at the longest match, in id order (empty if nothing matched).
    pub fn best_tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        let longest = self.longest();
        self.tenants
            .iter()
            .filter(move |m| m.matched == longest)
            .map(|m| m.tenant)
    }

    /// A tenant with the longest match and its length; among ties the lowest id (see [`Self::best_tenants`]).
    pub fn best(&self) -> Option<(TenantId, usize)> {
        let longest = self.longest();
        self.best_tenants().next().map(|t| (t, longest))
    }

    /// Raises the match of every holder of a node to `matched` (and `confirmed` for confirmed
    /// holds). Holders and `self.tenants` are both sorted by tenant, so this is one merge pass.
    fn record(&mut self, holders: &[Holder], matched: usize) {
        let mut j = 0;
        for h in holders {
            while self.tenants.get(j).is_some_and(|m| m.tenant < h.tenant) {
                j += 1;
            }
            let confirmed = if h.confirmed() { matched } else { 0 };
            match self.tenants.get_mut(j) {
                Some(m) if m.tenant == h.tenant => {
                    m.matched = m.matched.max(matched);
                    m.confirmed = m.confirmed.max(confirmed);
                }
                _ => self.tenants.insert(
                    j,
                    TenantMatch {
                        tenant: h.tenant,
                        matched,
                        confirmed,
                    },
                ),
            }
            j += 1;
        }
    }
}

impl<K: KeyUnit> RadixTree<K> {
    /// For every tenant, the longest prefix of `key` it holds, in one walk; never waits for other matches.
    ///
    /// Matching does not refresh LRU times; [`RadixTree::insert`] does.
    pub fn match_prefix(&self, key: &[K]) -> PrefixMatch {
        let mut out = PrefixMatch {
            key_len: key.len(),
            tenants: Vec::new(),
        };
        let mut cur = self.root.read_arc();
        let mut pos = 0;
        while pos < key.len() {
            let rest = &key[pos..];
            let Some(child) = cur.child(rest[0]) else {
                break;
            };
            // Lock the child before releasing `cur`, so its label cannot be split under us.
            let cg = child.read_arc();
            drop(cur);
            let l = if rest.starts_with(&cg.label) {
                cg.label.len()
            } else {
                common_prefix(&cg.label, rest)
            };
            pos += l;
            out.record(&cg.holders, pos);
            if l < cg.label.len() {
                break;
            }
            cur = cg;
        }
        out
    }
}
