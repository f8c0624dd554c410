//! The precise index: which replica's KV cache holds which token block, as its events said.
//!
//! A block is keyed by our own chained 64-bit hash of its tokens (and of its adapter and extra
//! keys), computed the same way from an event's `token_ids` and from a request's token ids, so
//! the router needs neither vLLM's hash algorithm nor its seed. Each key lists its holders:
//! replicas holding it in GPU or CPU memory (from events), and replicas it was just sent to
//! (`Sent`, counted as held for `sent_window` and then expired).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use kv_events::idmap::IdBuildHasher;

use super::watch::SilenceWatch;
use crate::replicas::ReplicaId;

/// Parent of a prompt's first block.
pub(crate) const ROOT: u64 = 0x05ee_d0fb_10c5_u64;

fn mix(h: u64, v: u64) -> u64 {
    let h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Our key of a block: chained from its parent's key, over its namespace (adapter and extra
/// keys; 0 for a base-model block without extra keys) and its tokens.
pub(crate) fn block_key(parent: u64, namespace: u64, tokens: &[u32]) -> u64 {
    let mut h = mix(parent, namespace);
    for pair in tokens.chunks(2) {
        let v = u64::from(pair[0]) | (pair.get(1).map_or(0, |&t| u64::from(t)) << 32);
        h = mix(h, v);
    }
    finish(h ^ tokens.len() as u64)
}

/// Where a replica holds a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// GPU memory (also any tier vLLM does not name).
    Gpu,
    /// CPU memory (offloaded).
    Cpu,
    /// Not confirmed: the router just sent it there.
    Sent,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    replica: u32,
    tier: Tier,
    /// For `Sent`: milliseconds since the index's epoch when it was sent.
    at_ms: u32,
}

/// A replica's event stream as the request path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    /// Not connected (never, or lost): the approximate tree answers for it.
    Down = 0,
    /// Connected and in sequence: the precise index answers for it.
    Live = 1,
    /// Connected, but batches were lost beyond replay: the approximate tree answers for it
    /// until the replica restarts or clears its cache.
    Stale = 2,
    /// Connected, but requests sent there with uncached blocks brought no event (a publisher
    /// that stays connected and sends nothing): approximate until events flow again.
    Silent = 3,
}

impl StreamState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => StreamState::Live,
            2 => StreamState::Stale,
            3 => StreamState::Silent,
            _ => StreamState::Down,
        }
    }

    /// Lower-case name for readiness and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Down => "down",
            StreamState::Live => "live",
            StreamState::Stale => "stale",
            StreamState::Silent => "silent",
        }
    }
}

/// Token blocks held per replica, from KV events; shared by the request path and the
/// subscriber tasks.
#[derive(Debug)]
pub struct PreciseIndex {
    blocks: DashMap<u64, Vec<Hold>, IdBuildHasher>,
    states: DashMap<u32, Arc<AtomicU8>>,
    watch: SilenceWatch,
    block_size: usize,
    sent_window_ms: u32,
    cpu_weight: f64,
    epoch: Instant,
}

impl PreciseIndex {
    /// An empty index for `block_size`-token blocks.
    pub fn new(block_size: usize, sent_window_ms: u64, cpu_weight: f64) -> Self {
        Self {
            blocks: DashMap::default(),
            states: DashMap::new(),
            watch: SilenceWatch::default(),
            block_size: block_size.max(1),
            sent_window_ms: u32::try_from(sent_window_ms).unwrap_or(u32::MAX),
            cpu_weight,
            epoch: Instant::now(),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn now_ms(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    /// The state cell of `replica` (created `Down`).
    pub(crate) fn state_cell(&self, replica: ReplicaId) -> Arc<AtomicU8> {
        self.states
            .entry(replica.0)
            .or_insert_with(|| Arc::new(AtomicU8::new(StreamState::Down as u8)))
            .clone()
    }

    /// Sets `replica`'s stream state.
    pub(crate) fn set_state(&self, replica: ReplicaId, state: StreamState) {
        self.state_cell(replica)
            .store(state as u8, Ordering::Release);
    }

    /// `replica`'s stream state (`Down` if it has none).
    pub fn state(&self, replica: ReplicaId) -> StreamState {
        self.states.get(&replica.0).map_or(StreamState::Down, |s| {
            StreamState::from_u8(s.load(Ordering::Acquire))
        })
    }

    /// Marks `replica` silent if at least `after` requests sent there with uncached blocks
    /// have waited more than `window_ms` for any event; true when it just went silent.
    pub(crate) fn check_silent(&self, replica: ReplicaId, after: usize, window_ms: u64) -> bool {
        self.check_silent_at(replica, after, window_ms, self.now_ms())
    }

    fn check_silent_at(&self, replica: ReplicaId, after: usize, window_ms: u64, now: u32) -> bool {
        let cell = self.state_cell(replica);
        self.watch.expired(replica.0, after, window_ms, now, || {
            cell.compare_exchange(
                StreamState::Live as u8,
                StreamState::Silent as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        })
    }

    /// An event batch arrived from `replica`: every request sent there before now is answered.
    pub(crate) fn heard(&self, replica: ReplicaId) {
        self.watch.heard(replica.0);
    }

    /// Whether the precise index answers for `replica`.
    pub fn is_live(&self, replica: ReplicaId) -> bool {
        self.state(replica) == StreamState::Live
    }

    /// Keys of the full blocks of a base-model prompt.
    pub(crate) fn prompt_keys(&self, tokens: &[u32]) -> Vec<u64> {
        let mut parent = ROOT;
        tokens
            .chunks_exact(self.block_size)
            .map(|block| {
                parent = block_key(parent, 0, block);
                parent
            })
            .collect()
    }

    fn fresh(&self, h: &Hold, now: u32) -> bool {
        h.tier != Tier::Sent || now.saturating_sub(h.at_ms) <= self.sent_window_ms
    }

    /// Records that `replica` holds block `key` in `tier` (idempotent); a confirmed hold
    /// replaces a `Sent` one.
    pub(crate) fn store(&self, replica: ReplicaId, key: u64, tier: Tier) {
        let mut holds = self.blocks.entry(key).or_default();
        holds.retain(|h| !(h.replica == replica.0 && (h.tier == Tier::Sent || h.tier == tier)));
        holds.push(Hold {
            replica: replica.0,
            tier,
            at_ms: 0,
        });
    }

    /// Records that `replica` no longer holds block `key` in `tier`.
    pub(crate) fn remove(&self, replica: ReplicaId, key: u64, tier: Tier) {
        if let dashmap::Entry::Occupied(mut e) = self.blocks.entry(key) {
            e.get_mut()
                .retain(|h| !(h.replica == replica.0 && h.tier == tier));
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// Records that the full blocks of `tokens` were just sent to `replica` (only for a
    /// replica with a live stream: others are answered by the approximate tree).
    pub fn record_sent(&self, replica: ReplicaId, tokens: &[u32]) {
        if !self.is_live(replica) {
            return;
        }
        let now = self.now_ms();
        let mut uncached = false;
        for key in self.prompt_keys(tokens) {
            let mut holds = self.blocks.entry(key).or_default();
            match holds.iter_mut().find(|h| h.replica == replica.0) {
                Some(h) if h.tier == Tier::Sent => {
                    h.at_ms = now;
                    uncached = true;
                }
                Some(_) => {}
                None => {
                    holds.push(Hold {
                        replica: replica.0,
                        tier: Tier::Sent,
                        at_ms: now,
                    });
                    uncached = true;
                }
            }
        }
        if uncached {
            // The engine will compute and store these blocks: an event should follow.
            self.watch.probe(replica.0, now);
        }
    }

    /// Forgets everything about `replica` (a full scan: restarts and removals only).
    pub(crate) fn forget(&self, replica: ReplicaId) {
        self.blocks.retain(|_, holds| {
            holds.retain(|h| h.replica != replica.0);
            !holds.is_empty()
        });
    }

    /// Drops expired `Sent` holds (and blocks nobody holds any more).
    pub(crate) fn sweep(&self) {
        let now = self.now_ms();
        self.blocks.retain(|_, holds| {
            holds.retain(|h| self.fresh(h, now));
            !holds.is_empty()
        });
    }

    /// Blocks held by anyone (for metrics and memory measurement).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// For each live replica holding a prefix of `tokens`: the tokens it holds, a CPU-tier
    /// block counting `cpu_hit_weight` of a GPU one. Replicas holding nothing are left out.
    pub fn matches(&self, tokens: &[u32]) -> Vec<(ReplicaId, f64)> {
        let now = self.now_ms();
        // (replica, weighted blocks, still matching)
        let mut out: Vec<(u32, f64, bool)> = Vec::new();
        let mut parent = ROOT;
        for (i, block) in tokens.chunks_exact(self.block_size).enumerate() {
            parent = block_key(parent, 0, block);
            let Some(holds) = self.blocks.get(&parent) else {
                break;
            };
            if i == 0 {
                for h in holds.iter().filter(|h| self.fresh(h, now)) {
                    if out.iter().all(|(r, _, _)| *r != h.replica)
                        && self.is_live(ReplicaId(h.replica))
                    {
                        out.push((h.replica, 0.0, true));
                    }
                }
            }
            let mut any = false;
            for (replica, blocks, alive) in out.iter_mut().filter(|(_, _, a)| *a) {
                let best = holds
                    .iter()
                    .filter(|h| h.replica == *replica && self.fresh(h, now))
                    .map(|h| match h.tier {
                        Tier::Gpu | Tier::Sent => 1.0,
                        Tier::Cpu => self.cpu_weight,
                    })
                    .fold(0.0f64, f64::max);
                if best > 0.0 {
                    *blocks += best;
                    any = true;
                } else {
                    *alive = false;
                }
            }
            if !any {
                break;
            }
        }
        out.into_iter()
            .filter(|(_, b, _)| *b > 0.0)
            .map(|(r, b, _)| (ReplicaId(r), b * self.block_size as f64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: u32) -> Vec<u32> {
        (0..n).collect()
    }

    #[test]
    fn live_replicas_match_their_confirmed_blocks_only() {
        let idx = PreciseIndex::new(4, 10_000, 0.5);
        let keys = idx.prompt_keys(&toks(12));
        assert_eq!(keys.len(), 3);
        for k in &keys[..2] {
            idx.store(ReplicaId(1), *k, Tier::Gpu);
        }
        idx.store(ReplicaId(2), keys[0], Tier::Gpu);
        idx.store(ReplicaId(2), keys[1], Tier::Cpu);
        assert!(idx.matches(&toks(12)).is_empty(), "no live stream yet");
        idx.set_state(ReplicaId(1), StreamState::Live);
        idx.set_state(ReplicaId(2), StreamState::Live);
        let mut m = idx.matches(&toks(12));
        m.sort_by_key(|(r, _)| r.0);
        assert_eq!(m, vec![(ReplicaId(1), 8.0), (ReplicaId(2), 6.0)]);
        idx.remove(ReplicaId(1), keys[0], Tier::Gpu);
        let m = idx.matches(&toks(12));
        assert_eq!(
            m,
            vec![(ReplicaId(2), 6.0)],
            "a removed first block ends the match"
        );
        idx.set_state(ReplicaId(2), StreamState::Stale);
        assert!(idx.matches(&toks(12)).is_empty());
        idx.forget(ReplicaId(2));
        idx.forget(ReplicaId(1));
        assert!(idx.is_empty());
    }

    #[test]
    fn sent_blocks_count_until_the_window_ends() {
        let idx = PreciseIndex::new(4, 0, 0.5);
        idx.record_sent(ReplicaId(0), &toks(8));
        assert!(
            idx.is_empty(),
            "not recorded for a replica without a live stream"
        );
        idx.set_state(ReplicaId(0), StreamState::Live);
        idx.record_sent(ReplicaId(0), &toks(8));
        assert_eq!(idx.len(), 2);
        // A window of 0 ms: fresh within the same millisecond at most; sweep after it passes.
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert!(idx.matches(&toks(8)).is_empty(), "expired");
        idx.sweep();
        assert!(idx.is_empty());
        // Confirmation replaces the sent hold and does not expire.
        idx.record_sent(ReplicaId(0), &toks(8));
        for k in idx.prompt_keys(&toks(8)) {
            idx.store(ReplicaId(0), k, Tier::Gpu);
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
        idx.sweep();
        assert_eq!(idx.matches(&toks(9)), vec![(ReplicaId(0), 8.0)]);
    }

    #[test]
    fn requests_without_events_make_a_live_replica_silent_until_it_is_heard() {
        let idx = PreciseIndex::new(4, 10_000, 0.5);
        let r = ReplicaId(5);
        idx.set_state(r, StreamState::Live);
        idx.record_sent(r, &toks(8));
        idx.record_sent(r, &(100..108).collect::<Vec<_>>());
        let now = idx.now_ms();
        assert!(
            !idx.check_silent_at(r, 3, 100, now + 1_000),
            "two unanswered requests are not yet several"
        );
        // A request whose blocks are all confirmed expects no event.
        for k in idx.prompt_keys(&toks(12)) {
            idx.store(r, k, Tier::Gpu);
        }
        idx.record_sent(r, &toks(12));
        assert!(!idx.check_silent_at(r, 3, 100, now + 1_000));
        idx.record_sent(r, &(200..208).collect::<Vec<_>>());
        assert!(
            !idx.check_silent_at(r, 3, 100, now + 50),
            "still within the window"
        );
        assert!(idx.check_silent_at(r, 3, 100, now + 1_000));
        assert_eq!(idx.state(r), StreamState::Silent);
        assert!(idx.matches(&toks(12)).is_empty(), "silent is approximate");
        assert!(
            !idx.check_silent_at(r, 3, 100, now + 2_000),
            "reported once"
        );
        // Events flow again: heard, and the stream sets it live; old requests are answered.
        idx.heard(r);
        idx.set_state(r, StreamState::Live);
        assert!(!idx.check_silent_at(r, 1, 100, now + 5_000));
        assert_eq!(idx.state(r), StreamState::Live);
    }

    #[test]
    fn namespaces_and_parents_change_keys() {
        let a = block_key(ROOT, 0, &[1, 2, 3, 4]);
        assert_ne!(
            a,
            block_key(ROOT, 7, &[1, 2, 3, 4]),
            "an adapter or salt keeps apart"
        );
        assert_ne!(
            a,
            block_key(a, 0, &[1, 2, 3, 4]),
            "the parent is part of the key"
        );
        assert_ne!(a, block_key(ROOT, 0, &[1, 2, 3]));
    }
}
