//! KV-cache block pool with prefix caching: blocks carry chained hashes, unpinned blocks stay
//! cached and are evicted least-recently-freed first.

use std::collections::BTreeMap;

use kv_events::idmap::IdMap;

#[derive(Debug, Clone, Copy, Default)]
struct BlockMeta {
    hash: Option<u64>,
    refs: u32,
    free_tick: u64,
}

/// The pool of `num_blocks` KV blocks and the hash -> block index of cached content.
#[derive(Debug)]
pub(crate) struct BlockPool {
    blocks: Vec<BlockMeta>,
    /// Unpinned blocks by the tick they were freed at: the first entry is evicted first.
    free: BTreeMap<u64, u32>,
    next_tick: u64,
    cached: IdMap<u32>,
    /// Hashes evicted since the last [`BlockPool::take_evicted`], when tracking (KV events).
    evicted: Option<Vec<u64>>,
}

impl BlockPool {
    /// A pool of empty, free blocks.
    pub(crate) fn new(num_blocks: usize) -> Self {
        let mut pool = Self {
            blocks: vec![BlockMeta::default(); num_blocks],
            free: BTreeMap::new(),
            next_tick: 0,
            cached: IdMap::default(),
            evicted: None,
        };
        for id in 0..num_blocks {
            pool.push_free(id as u32);
        }
        pool
    }

    fn push_free(&mut self, id: u32) {
        let tick = self.next_tick;
        self.next_tick += 1;
        self.blocks[id as usize].free_tick = tick;
        self.free.insert(tick, id);
    }

    /// Blocks not pinned by any sequence (cached or empty).
    pub(crate) fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Fraction of blocks pinned by sequences (vLLM's `kv_cache_usage_perc`).
    pub(crate) fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            return 0.0;
        }
        1.0 - self.free.len() as f64 / self.blocks.len() as f64
    }

    /// Blocks holding the leading run of `hashes` (stops at the first miss).
    pub(crate) fn lookup(&self, hashes: &[u64]) -> Vec<u32> {
        hashes
            .iter()
            .map_while(|h| self.cached.get(h).copied())
            .collect()
    }

    /// How many of `ids` are currently unpinned (pinning them shrinks the free pool).
    pub(crate) fn count_unpinned(&self, ids: &[u32]) -> usize {
        ids.iter()
            .filter(|&&id| self.blocks[id as usize].refs == 0)
            .count()
    }

    /// Pins a cached block for one more sequence.
    pub(crate) fn pin(&mut self, id: u32) {
        let meta = &mut self.blocks[id as usize];
        if meta.refs == 0 {
            self.free.remove(&meta.free_tick);
        }
        meta.refs += 1;
    }

    /// Takes `n` free blocks (evicting the least recently freed cached ones), pinned once.
    /// Returns `None` and changes nothing if fewer than `n` are free.
    pub(crate) fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, id) = self.free.pop_first()?;
            let meta = &mut self.blocks[id as usize];
            if let Some(h) = meta.hash.take() {
                if self.cached.get(&h) == Some(&id) {
                    self.cached.remove(&h);
                    if let Some(evicted) = &mut self.evicted {
                        evicted.push(h);
                    }
                }
            }
            meta.refs = 1;
            out.push(id);
        }
        Some(out)
    }

    /// Unpins a sequence's blocks; the tail is freed first so it is evicted first.
    pub(crate) fn release(&mut self, ids: &[u32]) {
        for &id in ids.iter().rev() {
            let meta = &mut self.blocks[id as usize];
            meta.refs = meta.refs.saturating_sub(1);
            if meta.refs == 0 {
                self.push_free(id);
            }
        }
    }

    /// Records that block `id` now holds the content hashed `hash` (first holder wins);
    /// true if the content is newly cached.
    pub(crate) fn register(&mut self, id: u32, hash: u64) -> bool {
        if self.cached.contains_key(&hash) {
            return false;
        }
        let meta = &mut self.blocks[id as usize];
        if meta.hash.is_none() {
            meta.hash = Some(hash);
            self.cached.insert(hash, id);
            return true;
        }
        false
    }

    /// Starts recording evicted hashes (for KV events).
    pub(crate) fn track_evictions(&mut self) {
        self.evicted.get_or_insert_with(Vec::new);
    }

    /// Hashes evicted since the last call (empty unless tracking).
    pub(crate) fn take_evicted(&mut self) -> Vec<u64> {
        self.evicted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Forgets all cached content (pinned blocks stay pinned, just unhashed).
    pub(crate) fn reset(&mut self) {
        self.cached.clear();
        if let Some(evicted) = &mut self.evicted {
            evicted.clear();
        }
        for meta in &mut self.blocks {
            meta.hash = None;
        }
    }

    /// Number of blocks whose content is cached (for tests and debugging).
    #[cfg(test)]
    pub(crate) fn num_cached(&self) -> usize {
        self.cached.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_after_release_and_lru_eviction() {
        let mut p = BlockPool::new(4);
        let a = p.allocate(2).unwrap();
        p.register(a[0], 10);
        p.register(a[1], 11);
        assert_eq!(p.num_free(), 2);
        p.release(&a);
        assert_eq!(p.num_free(), 4);
        assert_eq!(p.lookup(&[10, 11, 12]), a);
        // Allocating the 2 never-used blocks keeps the cached ones.
        let b = p.allocate(2).unwrap();
        assert_eq!(p.lookup(&[10, 11]).len(), 2);
        // The next allocation evicts the tail block (11) first.
        let c = p.allocate(1).unwrap();
        assert_eq!(c, vec![a[1]]);
        assert_eq!(p.lookup(&[10, 11]).len(), 1);
        assert!(p.allocate(2).is_none());
        p.release(&b);
        p.release(&c);
        assert_eq!(p.num_cached(), 1);
    }

    #[test]
    fn pinned_blocks_are_not_evicted() {
        let mut p = BlockPool::new(2);
        let a = p.allocate(1).unwrap();
        p.register(a[0], 7);
        p.release(&a);
        p.pin(a[0]);
        assert_eq!(p.count_unpinned(&a), 0);
        let b = p.allocate(1).unwrap();
        assert_ne!(b, a);
        assert!(p.allocate(1).is_none());
        assert_eq!(p.lookup(&[7]), a);
        assert!((p.usage() - 1.0).abs() < 1e-9);
        p.reset();
        assert!(p.lookup(&[7]).is_empty());
    }
}
