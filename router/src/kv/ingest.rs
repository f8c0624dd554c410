//! Applying one replica's decoded event batches to the precise index, keeping the map from
//! the engine's block hashes to our block keys that removals need.

use std::sync::Arc;

use kv_events::idmap::IdMap;
use kv_events::{BlockStored, EventBatch, ExtraKey, KvEvent, Medium};

use super::index::{PreciseIndex, ROOT, Tier, block_key};
use crate::replicas::ReplicaId;

/// What applying a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Blocks stored.
    pub stored: u64,
    /// Blocks removed.
    pub removed: u64,
    /// Cache clears.
    pub cleared: u64,
    /// Blocks skipped: unknown parent, or a block size other than the router's.
    pub skipped: u64,
}

/// One engine block as we know it: our key and the tiers holding it (bit 0 GPU, bit 1 CPU).
#[derive(Debug, Clone, Copy)]
struct Known {
    key: u64,
    tiers: u8,
}

fn tier_of(medium: Option<&Medium>) -> Tier {
    match medium {
        Some(Medium::Cpu) => Tier::Cpu,
        _ => Tier::Gpu,
    }
}

fn bit(tier: Tier) -> u8 {
    match tier {
        Tier::Cpu => 2,
        _ => 1,
    }
}

fn mix_str(h: u64, s: &[u8]) -> u64 {
    s.iter().fold(h ^ 0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn fingerprint(h: u64, k: &ExtraKey) -> u64 {
    match k {
        ExtraKey::Nil => mix_str(h, b"\0nil"),
        ExtraKey::Bool(b) => mix_str(h, &[1, u8::from(*b)]),
        ExtraKey::Int(v) => mix_str(h ^ 2, &v.to_le_bytes()),
        ExtraKey::Float(f) => mix_str(h ^ 3, &f.to_bits().to_le_bytes()),
        ExtraKey::Str(s) => mix_str(h ^ 4, s.as_bytes()),
        ExtraKey::Bytes(b) => mix_str(h ^ 5, b),
        ExtraKey::List(items) => items.iter().fold(mix_str(h, b"\0list"), fingerprint),
    }
}

/// The namespace of block `i` of an event: 0 for a base-model block without extra keys.
fn namespace(e: &BlockStored, i: usize) -> u64 {
    let lora = e
        .lora_name
        .as_deref()
        .map_or(0, |n| mix_str(0x10, n.as_bytes()));
    let extra = e
        .extra_keys
        .as_ref()
        .and_then(|keys| keys.get(i))
        .and_then(Option::as_ref)
        .map_or(0, |k| fingerprint(0x20, k));
    lora ^ extra.rotate_left(17)
}

/// Applies one replica's batches in order.
#[derive(Debug)]
pub struct Ingestor {
    replica: ReplicaId,
    index: Arc<PreciseIndex>,
    known: IdMap<Known>,
}

impl Ingestor {
    /// An ingestor for `replica` knowing no block.
    pub fn new(replica: ReplicaId, index: Arc<PreciseIndex>) -> Self {
        Self {
            replica,
            index,
            known: IdMap::default(),
        }
    }

    /// Engine blocks currently known.
    pub fn blocks(&self) -> usize {
        self.known.len()
    }

    /// Applies every event of `batch`.
    pub fn apply(&mut self, batch: &EventBatch) -> Applied {
        let mut done = Applied::default();
        for event in &batch.events {
            match event {
                KvEvent::BlockStored(e) => self.stored(e, &mut done),
                KvEvent::BlockRemoved(e) => {
                    let tier = tier_of(e.medium.as_ref());
                    for h in &e.block_hashes {
                        if self.remove(h.key(), tier) {
                            done.removed += 1;
                        }
                    }
                }
                KvEvent::AllBlocksCleared => {
                    self.clear();
                    done.cleared += 1;
                }
            }
        }
        done
    }

    fn stored(&mut self, e: &BlockStored, done: &mut Applied) {
        let bs = self.index.block_size();
        let n = e.block_hashes.len() as u64;
        if e.block_size as usize != bs || e.token_ids.len() < e.block_hashes.len() * bs {
            done.skipped += n;
            return;
        }
        let mut parent = match &e.parent_block_hash {
            None => ROOT,
            Some(p) => match self.known.get(&p.key()) {
                Some(k) => k.key,
                // The parent was stored before we listened: these blocks cannot be placed.
                None => {
                    done.skipped += n;
                    return;
                }
            },
        };
        let tier = tier_of(e.medium.as_ref());
        for (i, (h, block)) in e
            .block_hashes
            .iter()
            .zip(e.token_ids.chunks_exact(bs))
            .enumerate()
        {
            let key = block_key(parent, namespace(e, i), block);
            let known = self.known.entry(h.key()).or_insert(Known { key, tiers: 0 });
            known.key = key;
            known.tiers |= bit(tier);
            self.index.store(self.replica, key, tier);
            parent = key;
            done.stored += 1;
        }
    }

    fn remove(&mut self, engine: u64, tier: Tier) -> bool {
        let Some(known) = self.known.get_mut(&engine) else {
            return false;
        };
        self.index.remove(self.replica, known.key, tier);
        known.tiers &= !bit(tier);
        if known.tiers == 0 {
            self.known.remove(&engine);
        }
        true
    }

    /// Forgets every block of this replica.
    pub fn clear(&mut self) {
        for known in self.known.values() {
            for tier in [Tier::Gpu, Tier::Cpu] {
                if known.tiers & bit(tier) != 0 {
                    self.index.remove(self.replica, known.key, tier);
                }
            }
        }
        self.known.clear();
    }
}

#[cfg(test)]
mod tests {
    use kv_events::{BlockHash, BlockRemoved};

    use super::*;
    use crate::kv::index::StreamState;

    fn stored(hashes: &[u64], parent: Option<u64>, tokens: Vec<u32>) -> KvEvent {
        KvEvent::BlockStored(BlockStored {
            block_hashes: hashes.iter().map(|&h| BlockHash::Int(h)).collect(),
            parent_block_hash: parent.map(BlockHash::Int),
            token_ids: tokens,
            block_size: 4,
            medium: Some(Medium::Gpu),
            ..BlockStored::default()
        })
    }

    fn batch(events: Vec<KvEvent>) -> EventBatch {
        EventBatch {
            ts: 0.0,
            events,
            data_parallel_rank: Some(0),
        }
    }

    #[test]
    fn stores_chain_through_parents_and_removals_cut_the_match() {
        let index = Arc::new(PreciseIndex::new(4, 1000, 0.5));
        index.set_state(ReplicaId(3), StreamState::Live);
        let mut ing = Ingestor::new(ReplicaId(3), index.clone());
        // u64 hashes above 2^63 as vLLM sends them.
        let (h0, h1, h2) = (u64::MAX - 5, 1u64 << 63, 42);
        let a = ing.apply(&batch(vec![
            stored(&[h0, h1], None, (0..8).collect()),
            stored(&[h2], Some(h1), (8..12).collect()),
        ]));
        assert_eq!(a.stored, 3);
        let all: Vec<u32> = (0..13).collect();
        assert_eq!(index.matches(&all), vec![(ReplicaId(3), 12.0)]);
        // Same blocks again: idempotent.
        ing.apply(&batch(vec![stored(&[h0, h1], None, (0..8).collect())]));
        assert_eq!(index.len(), 3);
        let a = ing.apply(&batch(vec![KvEvent::BlockRemoved(BlockRemoved {
            block_hashes: vec![BlockHash::Int(h1)],
            ..BlockRemoved::default()
        })]));
        assert_eq!(a.removed, 1);
        assert_eq!(index.matches(&all), vec![(ReplicaId(3), 4.0)]);
        // An unknown parent cannot be placed; a wrong block size is skipped.
        let a = ing.apply(&batch(vec![stored(&[7], Some(999), (0..4).collect())]));
        assert_eq!(a.skipped, 1);
        ing.apply(&batch(vec![KvEvent::AllBlocksCleared]));
        assert!(index.is_empty());
        assert_eq!(ing.blocks(), 0);
    }

    #[test]
    fn adapters_and_salts_are_kept_apart() {
        let index = Arc::new(PreciseIndex::new(4, 1000, 0.5));
        index.set_state(ReplicaId(0), StreamState::Live);
        let mut ing = Ingestor::new(ReplicaId(0), index.clone());
        let KvEvent::BlockStored(mut lora) = stored(&[1], None, (0..4).collect()) else {
            unreachable!()
        };
        lora.lora_name = Some("adapter".into());
        let mut salted = lora.clone();
        salted.lora_name = None;
        salted.block_hashes = vec![BlockHash::Int(2)];
        salted.extra_keys = Some(vec![Some(ExtraKey::Str("salt".into()))]);
        ing.apply(&batch(vec![
            KvEvent::BlockStored(lora),
            KvEvent::BlockStored(salted),
        ]));
        assert_eq!(index.len(), 2);
        assert!(
            index.matches(&(0..4).collect::<Vec<_>>()).is_empty(),
            "base-model prompts do not match adapter or salted blocks"
        );
    }
}
