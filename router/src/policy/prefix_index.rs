//! The prefix index shared by the prefix policies and the scraper: one radix-tree tenant per
//! replica, keyed on bytes or on token ids, each tenant capped near its replica's KV capacity.

use std::sync::Arc;

use radix_tree::{RadixTree, TenantId};

use super::{HeldPrefix, PromptKey};
use crate::{kv::PreciseIndex, prompt_key::PrefixConfig, replicas::ReplicaId};

enum Tree {
    Bytes(RadixTree<u8>),
    Tokens(RadixTree<u32>),
}

/// Which prompt prefixes the router sent to which replica, in tokens.
pub struct PrefixIndex {
    tree: Tree,
    bytes_per_token: f64,
    block_size: usize,
    cap_override: Option<u64>,
    fallback_cap: u64,
    /// Token mode with `prefix.kv_events`: what the replicas' events confirm. It answers for
    /// replicas whose stream is live; the tree answers for the others.
    precise: Option<Arc<PreciseIndex>>,
}

impl std::fmt::Debug for PrefixIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixIndex")
            .field("token_mode", &self.token_mode())
            .field("total_units", &self.total_units())
            .finish()
    }
}

fn tenant(replica: ReplicaId) -> TenantId {
    TenantId(replica.0)
}

/// Client token ids as the byte tree stores them: 4 little-endian bytes each.
fn id_bytes(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

impl PrefixIndex {
    /// An empty index; token mode when `config.tokenizer` is set, byte mode otherwise.
    pub fn new(config: &PrefixConfig) -> Self {
        let tree = if config.tokenizer.is_some() {
            Tree::Tokens(RadixTree::new())
        } else {
            Tree::Bytes(RadixTree::new())
        };
        let kv = &config.kv_events;
        let precise = (config.tokenizer.is_some() && kv.enabled).then(|| {
            Arc::new(PreciseIndex::new(
                config.block_size.max(1),
                kv.sent_window_ms,
                kv.cpu_hit_weight,
            ))
        });
        Self {
            tree,
            precise,
            bytes_per_token: config.bytes_per_token.max(0.1),
            block_size: config.block_size.max(1),
            cap_override: config.tenant_cap_tokens,
            fallback_cap: config.fallback_cap_tokens,
        }
    }

    /// The precise index fed by KV events, if enabled.
    pub fn precise(&self) -> Option<&Arc<PreciseIndex>> {
        self.precise.as_ref()
    }

    /// Whether keys are token ids.
    pub fn token_mode(&self) -> bool {
        matches!(self.tree, Tree::Tokens(_))
    }

    /// Key units per token.
    fn units_per_token(&self, key: &PromptKey<'_>) -> f64 {
        match (&self.tree, key) {
            (Tree::Bytes(_), PromptKey::Tokens(_)) => 4.0,
            (Tree::Bytes(_), _) => self.bytes_per_token,
            (Tree::Tokens(_), _) => 1.0,
        }
    }

    fn cut<'a>(&self, ids: &'a [u32]) -> &'a [u32] {
        &ids[..ids.len() / self.block_size * self.block_size]
    }

    /// Prompt tokens each replica holds of `key` (replicas holding nothing are left out).
    pub fn matches(&self, key: &PromptKey<'_>) -> Vec<(ReplicaId, u64)> {
        let found = match (&self.tree, key) {
            (Tree::Bytes(t), PromptKey::Text(text)) => t.match_prefix(text.as_bytes()),
            (Tree::Bytes(t), PromptKey::Tokens(ids)) => t.match_prefix(&id_bytes(ids)),
            (Tree::Tokens(t), PromptKey::Tokens(ids)) => t.match_prefix(self.cut(ids)),
            // Token mode without token ids (tokenizing failed) or no prompt: nothing to match.
            _ => return Vec::new(),
        };
        let per_token = self.units_per_token(key);
        // vLLM reuses whole blocks only: in token mode a match ends on a block boundary.
        let block = if self.token_mode() {
            self.block_size
        } else {
            1
        };
        let mut out: Vec<(ReplicaId, u64)> = found
            .tenants()
            .iter()
            .map(|m| {
                let units = m.matched / block * block;
                (
                    ReplicaId(m.tenant.0),
                    (units as f64 / per_token).floor() as u64,
                )
            })
            .filter(|(_, tokens)| *tokens > 0)
            .collect();
        if let (Some(precise), PromptKey::Tokens(ids)) = (&self.precise, key) {
            // Replicas with a live event stream: what they confirmed (and what was just sent
            // to them) replaces the tree's guess.
            out.retain(|(r, _)| !precise.is_live(*r));
            out.extend(
                precise
                    .matches(self.cut(ids))
                    .into_iter()
                    .map(|(r, tokens)| (r, tokens.floor() as u64))
                    .filter(|(_, tokens)| *tokens > 0),
            );
            out.sort_by_key(|(r, _)| r.0);
        }
        out
    }

    /// Records that `key` was sent to `replica`.
    pub fn insert(&self, key: &PromptKey<'_>, replica: ReplicaId) {
        let t = tenant(replica);
        match (&self.tree, key) {
            (Tree::Bytes(tree), PromptKey::Text(text)) if !text.is_empty() => {
                self.ensure_cap(t);
                tree.insert(text.as_bytes(), t);
            }
            (Tree::Bytes(tree), PromptKey::Tokens(ids)) if !ids.is_empty() => {
                self.ensure_cap(t);
                tree.insert(&id_bytes(ids), t);
            }
            (Tree::Tokens(tree), PromptKey::Tokens(ids)) if ids.len() >= self.block_size => {
                self.ensure_cap(t);
                tree.insert(self.cut(ids), t);
                if let Some(precise) = &self.precise {
                    precise.record_sent(replica, self.cut(ids));
                }
            }
            _ => {}
        }
    }

    fn cap_of(&self, t: TenantId) -> Option<usize> {
        match &self.tree {
            Tree::Bytes(tree) => tree.tenant_cap(t),
            Tree::Tokens(tree) => tree.tenant_cap(t),
        }
    }

    fn set_cap_units(&self, t: TenantId, units: usize) {
        if self.cap_of(t) != Some(units) {
            match &self.tree {
                Tree::Bytes(tree) => tree.set_tenant_cap(t, Some(units)),
                Tree::Tokens(tree) => tree.set_tenant_cap(t, Some(units)),
            }
        }
    }

    fn tokens_to_units(&self, tokens: u64) -> usize {
        let units = match self.tree {
            Tree::Bytes(_) => tokens as f64 * self.bytes_per_token,
            Tree::Tokens(_) => tokens as f64,
        };
        units.min(usize::MAX as f64) as usize
    }

    /// Gives a tenant without a cap the configured or fallback cap before it grows.
    fn ensure_cap(&self, t: TenantId) {
        if self.cap_of(t).is_none() {
            let tokens = self.cap_override.unwrap_or(self.fallback_cap);
            self.set_cap_units(t, self.tokens_to_units(tokens));
        }
    }

    /// Caps `replica` at its KV capacity in tokens (the configured override wins; unknown
    /// capacity keeps the fallback). Evicts at once if the tenant is over the new cap.
    pub fn set_capacity(&self, replica: ReplicaId, kv_tokens: Option<u64>) {
        let tokens = self.cap_override.or(kv_tokens).unwrap_or(self.fallback_cap);
        self.set_cap_units(tenant(replica), self.tokens_to_units(tokens));
    }

    /// The cap of `replica` in key units, if set.
    pub fn cap_units(&self, replica: ReplicaId) -> Option<usize> {
        self.cap_of(tenant(replica))
    }

    /// How full `replica`'s share of the tree is: held units over its cap (0 without a cap).
    pub fn fill(&self, replica: ReplicaId) -> f64 {
        match self.cap_units(replica) {
            Some(cap) if cap > 0 => (self.units(replica) as f64 / cap as f64).min(1.0),
            _ => 0.0,
        }
    }

    /// Forgets everything sent to `replica`.
    pub fn remove(&self, replica: ReplicaId) {
        match &self.tree {
            Tree::Bytes(tree) => tree.remove_tenant(tenant(replica)),
            Tree::Tokens(tree) => tree.remove_tenant(tenant(replica)),
        }
    }

    /// What the tree holds for `replica`: units and fill.
    pub fn held(&self, replica: ReplicaId) -> HeldPrefix {
        HeldPrefix {
            units: self.units(replica),
            fill: self.fill(replica),
        }
    }

    /// Units (bytes or tokens) the tree holds for `replica`.
    pub fn units(&self, replica: ReplicaId) -> usize {
        match &self.tree {
            Tree::Bytes(tree) => tree.tenant_size(tenant(replica)),
            Tree::Tokens(tree) => tree.tenant_size(tenant(replica)),
        }
    }

    /// Key units stored in the whole tree.
    pub fn total_units(&self) -> usize {
        match &self.tree {
            Tree::Bytes(tree) => tree.total_size(),
            Tree::Tokens(tree) => tree.total_size(),
        }
    }
}

/// Tokens `replica` holds according to `matches` (sorted by replica id).
pub(crate) fn matched_tokens(matches: &[(ReplicaId, u64)], replica: ReplicaId) -> u64 {
    matches
        .iter()
        .find(|(r, _)| *r == replica)
        .map_or(0, |(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn byte_mode_matches_in_tokens_per_replica() {
        let idx = PrefixIndex::new(&PrefixConfig::default());
        idx.insert(&PromptKey::Text("abcdefghijkl"), ReplicaId(1));
        idx.insert(&PromptKey::Text("abcdXXXX"), ReplicaId(2));
        let m = idx.matches(&PromptKey::Text("abcdefghZZZZ"));
        assert_eq!(m, vec![(ReplicaId(1), 2), (ReplicaId(2), 1)]);
        idx.insert(&PromptKey::Tokens(&[7, 8, 9]), ReplicaId(3));
        assert_eq!(
            idx.matches(&PromptKey::Tokens(&[7, 8, 1])),
            vec![(ReplicaId(3), 2)]
        );
        assert!(idx.matches(&PromptKey::Empty).is_empty());
        idx.remove(ReplicaId(1));
        assert_eq!(
            idx.matches(&PromptKey::Text("abcdefgh")),
            vec![(ReplicaId(2), 1)]
        );
    }

    #[test]
    fn token_mode_keys_whole_blocks_only() {
        let cfg = PrefixConfig {
            tokenizer: Some(PathBuf::from("unused.json")),
            block_size: 4,
            ..PrefixConfig::default()
        };
        let idx = PrefixIndex::new(&cfg);
        assert!(idx.token_mode());
        idx.insert(&PromptKey::Tokens(&[1, 2, 3]), ReplicaId(0));
        assert_eq!(
            idx.total_units(),
            0,
            "less than a block is not cached by vLLM"
        );
        idx.insert(
            &PromptKey::Tokens(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            ReplicaId(0),
        );
        assert_eq!(idx.units(ReplicaId(0)), 8);
        assert_eq!(
            idx.matches(&PromptKey::Tokens(&[1, 2, 3, 4, 5, 6, 7, 0])),
            vec![(ReplicaId(0), 4)]
        );
        assert_eq!(
            idx.matches(&PromptKey::Tokens(&[1, 2, 3, 4, 5, 6, 7, 8, 0])),
            vec![(ReplicaId(0), 8)]
        );
        assert!(
            idx.matches(&PromptKey::Text("text is not a token key"))
                .is_empty()
        );
    }

    #[test]
    fn caps_follow_capacity_override_and_fallback() {
        let cfg = PrefixConfig {
            fallback_cap_tokens: 10,
            ..PrefixConfig::default()
        };
        let idx = PrefixIndex::new(&cfg);
        idx.insert(&PromptKey::Text("x"), ReplicaId(0));
        assert_eq!(
            idx.cap_units(ReplicaId(0)),
            Some(40),
            "fallback 10 tokens x 4 bytes"
        );
        let long = "a".repeat(400);
        idx.insert(&PromptKey::Text(&long), ReplicaId(0));
        assert!(
            idx.units(ReplicaId(0)) <= 40 + 40 / 16 + 1,
            "eviction keeps the cap"
        );
        idx.set_capacity(ReplicaId(0), Some(1000));
        assert_eq!(idx.cap_units(ReplicaId(0)), Some(4000));
        let fixed = PrefixIndex::new(&PrefixConfig {
            tenant_cap_tokens: Some(5),
            ..cfg
        });
        fixed.set_capacity(ReplicaId(0), Some(1000));
        assert_eq!(
            fixed.cap_units(ReplicaId(0)),
            Some(20),
            "the override wins over the scrape"
        );
    }
}
