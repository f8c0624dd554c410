//! vLLM-V1-like scheduling: running sequences first (decode or prefill chunks), then waiting
//! ones under `max_num_seqs`, a per-step token budget and free KV blocks; preemption when a
//! running sequence needs a block and none is free.

use super::cache::BlockPool;
use super::cost::StepWork;
use super::seq::Seq;
use super::{Command, SeqRequest, Sink, StreamEvent};
use crate::config::{SchedulingPolicy, SimConfig};
use crate::kv_publish::KvPublisher;
use crate::metrics::{Metrics, secs};
use crate::tokenizer::{extend_block_hashes, filler_token};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Scheduler state of one replica: queues, block pool and the step logic.
#[derive(Debug)]
pub(crate) struct Scheduler {
    block_size: usize,
    max_num_seqs: usize,
    max_batched: usize,
    policy: SchedulingPolicy,
    pool: BlockPool,
    waiting: BTreeMap<(i64, u64), Seq>,
    running: Vec<Seq>,
    next_arrival: u64,
    /// When waiting sequences are next checked for disconnected clients.
    next_waiting_reap: Option<Instant>,
    metrics: Arc<Metrics>,
    /// KV-cache event publisher, when enabled.
    kv: Option<KvPublisher>,
}

/// How often the whole waiting queue is checked for disconnected clients.
const WAITING_REAP_EVERY: Duration = Duration::from_millis(10);

impl Scheduler {
    /// An idle scheduler with an empty cache.
    pub(crate) fn new(config: &SimConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            block_size: config.block_size,
            max_num_seqs: config.max_num_seqs,
            max_batched: config.max_num_batched_tokens,
            policy: config.scheduling_policy,
            pool: BlockPool::new(config.num_gpu_blocks),
            waiting: BTreeMap::new(),
            running: Vec::new(),
            next_arrival: 0,
            next_waiting_reap: None,
            metrics,
            kv: None,
        }
    }

    /// Publishes this scheduler's cache changes as KV events.
    pub(crate) fn with_kv_events(mut self, kv: Option<KvPublisher>) -> Self {
        if kv.is_some() {
            self.pool.track_evictions();
        }
        self.kv = kv;
        self
    }

    /// Publishes the evictions and stores of the step just done as one batch.
    fn publish_kv(&mut self) {
        if let Some(kv) = &mut self.kv {
            kv.removed(&self.pool.take_evicted());
            kv.flush();
        }
    }

    /// True when no sequence is waiting or running.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Applies a command from the HTTP side.
    pub(crate) fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(req) => self.add(*req),
            Command::ResetCache(done) => {
                self.publish_kv();
                self.pool.reset();
                if let Some(kv) = &mut self.kv {
                    kv.cleared();
                    kv.flush();
                }
                let _ = done.send(());
            }
            Command::KvRestart(done) => {
                self.pool.reset();
                if let Some(kv) = &mut self.kv {
                    kv.restart();
                }
                let _ = done.send(());
            }
        }
    }

    fn add(&mut self, req: SeqRequest) {
        let n = self.next_arrival;
        self.next_arrival += 1;
        let prio = match self.policy {
            SchedulingPolicy::Fcfs => 0,
            SchedulingPolicy::Priority => req.priority,
        };
        let seq = Seq::new(req, (prio, n));
        self.waiting.insert(seq.key, seq);
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Plans one step: marks each sequence's `scheduled` tokens, allocates their blocks and
    /// returns the work for the time model.
    pub(crate) fn schedule(&mut self, now: Instant) -> StepWork {
        self.reap_aborted(now);
        let mut budget = self.max_batched;
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() {
            if budget == 0 {
                break;
            }
            let seq = &self.running[i];
            let n = (seq.tokens.len() - seq.computed).min(budget);
            let need = self
                .blocks_for(seq.computed + n)
                .saturating_sub(seq.blocks.len());
            let mut self_preempted = false;
            while self.pool.num_free() < need {
                let victim = self.pick_victim();
                budget += self.running[victim].scheduled;
                self.preempt(victim);
                preempted = true;
                if victim == i {
                    self_preempted = true;
                    break;
                }
                if victim < i {
                    i -= 1;
                }
            }
            if self_preempted {
                continue;
            }
            let Some(new_blocks) = self.pool.allocate(need) else {
                break;
            };
            let seq = &mut self.running[i];
            seq.blocks.extend(new_blocks);
            seq.scheduled = n;
            budget -= n;
            i += 1;
        }
        if !preempted {
            self.admit(now, budget);
        }
        self.step_work()
    }

    /// Moves waiting sequences to running while seats, budget and blocks allow.
    fn admit(&mut self, now: Instant, mut budget: usize) {
        let bs = self.block_size;
        while self.running.len() < self.max_num_seqs && budget > 0 {
            let Some(entry) = self.waiting.first_entry() else {
                break;
            };
            if entry.get().sink.is_closed() {
                let mut seq = entry.remove();
                seq.aborted = true;
                self.finish(seq, now);
                continue;
            }
            let seq = entry.get();
            // Like vLLM, the last prompt token is always computed, so hits stop before it.
            let max_hit = (seq.tokens.len().saturating_sub(1) / bs).min(seq.hashes.len());
            let hits = self.pool.lookup(&seq.hashes[..max_hit]);
            let cached = hits.len() * bs;
            let n = (seq.tokens.len() - cached).min(budget);
            let need = (cached + n).div_ceil(bs) - hits.len();
            let free_after_pin = self.pool.num_free() - self.pool.count_unpinned(&hits);
            if need > free_after_pin {
                break;
            }
            let mut seq = entry.remove();
            for &b in &hits {
                self.pool.pin(b);
            }
            seq.registered = hits.len();
            seq.blocks = hits;
            let Some(new_blocks) = self.pool.allocate(need) else {
                // Cannot happen (checked above); put it back untouched.
                self.pool.release(&seq.blocks);
                seq.blocks.clear();
                seq.registered = 0;
                self.waiting.insert(seq.key, seq);
                break;
            };
            seq.blocks.extend(new_blocks);
            seq.computed = cached;
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(cached);
                seq.scheduled_at = Some(now);
                self.metrics.prefix_queries.inc_by(seq.tokens.len() as u64);
                self.metrics.prefix_hits.inc_by(cached as u64);
                self.metrics.prompt_tokens.inc_by(seq.prompt_len as u64);
            }
            seq.scheduled = n;
            budget -= n;
            self.running.push(seq);
        }
    }

    /// The running sequence to preempt: the newest (FCFS) or the lowest priority.
    fn pick_victim(&self) -> usize {
        match self.policy {
            SchedulingPolicy::Fcfs => self.running.len() - 1,
            SchedulingPolicy::Priority => self
                .running
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| s.key)
                .map_or(0, |(i, _)| i),
        }
    }

    /// Frees a running sequence's blocks and queues it again (its KV will be recomputed,
    /// mostly from the prefix cache).
    fn preempt(&mut self, idx: usize) {
        let mut seq = self.running.remove(idx);
        self.pool.release(&seq.blocks);
        seq.blocks.clear();
        seq.registered = 0;
        seq.computed = 0;
        seq.scheduled = 0;
        self.metrics.preemptions.inc();
        self.waiting.insert(seq.key, seq);
    }

    fn step_work(&self) -> StepWork {
        let mut w = StepWork::default();
        for s in self.running.iter().filter(|s| s.scheduled > 0) {
            let is_decode = s.generated > 0 && s.scheduled == 1 && s.computed + 1 == s.tokens.len();
            if is_decode {
                w.decode_seqs += 1;
                w.decode_kv_tokens += s.computed as u64;
            } else {
                w.prefill_tokens += s.scheduled as u64;
                w.cached_pairs += s.scheduled as f64 * s.computed as f64;
            }
        }
        w
    }

    /// Applies the planned step at time `now`: KV computed, blocks hashed, tokens emitted,
    /// finished sequences released.
    pub(crate) fn complete_step(&mut self, now: Instant) {
        let mut generated = 0u64;
        let mut any_done = false;
        for seq in &mut self.running {
            let n = std::mem::take(&mut seq.scheduled);
            if n == 0 {
                continue;
            }
            seq.computed += n;
            let full = seq.computed / self.block_size;
            while seq.registered < full && seq.registered < seq.hashes.len() {
                let i = seq.registered;
                if self.pool.register(seq.blocks[i], seq.hashes[i]) {
                    if let Some(kv) = &mut self.kv {
                        // Evictions made room for this block: they go out first.
                        kv.removed(&self.pool.take_evicted());
                        kv.stored(&seq.hashes, &seq.tokens, i);
                    }
                }
                seq.registered += 1;
            }
            if seq.computed < seq.tokens.len() {
                continue;
            }
            // The step computed the whole sequence: it samples its next token.
            let index = seq.generated;
            seq.generated += 1;
            generated += 1;
            match seq.last_token_at {
                None => {
                    seq.first_token_at = Some(now);
                    self.metrics
                        .ttft
                        .observe(secs(now.saturating_duration_since(seq.arrival)));
                }
                Some(prev) => self
                    .metrics
                    .itl
                    .observe(secs(now.saturating_duration_since(prev))),
            }
            seq.last_token_at = Some(now);
            let last = seq.generated >= seq.max_tokens;
            if let Sink::Stream { tx, choice } = &seq.sink {
                let ev = StreamEvent::Token {
                    choice: *choice,
                    index: index as u32,
                    last,
                };
                if tx.send(ev).is_err() {
                    seq.aborted = true;
                }
            }
            if last || seq.aborted {
                any_done = true;
            } else {
                seq.tokens.push(filler_token(index));
                extend_block_hashes(&mut seq.hashes, &seq.tokens, self.block_size);
            }
        }
        self.metrics.generation_tokens.inc_by(generated);
        // Published before any response is released, so a client that saw its response
        // knows the step's events are out.
        self.publish_kv();
        if any_done {
            self.drain_finished(now);
        }
    }

    fn drain_finished(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.running.len() {
            let s = &self.running[i];
            if s.aborted || s.generated >= s.max_tokens {
                let seq = self.running.remove(i);
                self.finish(seq, now);
            } else {
                i += 1;
            }
        }
    }

    /// Aborts sequences whose client went away (running ones every step, waiting ones every
    /// few milliseconds so the waiting gauge does not count them).
    fn reap_aborted(&mut self, now: Instant) {
        if self.running.iter().any(|s| s.sink.is_closed()) {
            for s in &mut self.running {
                s.aborted |= s.sink.is_closed();
            }
            self.drain_finished(now);
        }
        if self.next_waiting_reap.is_some_and(|t| now < t) {
            return;
        }
        self.next_waiting_reap = Some(now + WAITING_REAP_EVERY);
        let gone: Vec<(i64, u64)> = self
            .waiting
            .iter()
            .filter(|(_, s)| s.sink.is_closed())
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(mut seq) = self.waiting.remove(&key) {
                seq.aborted = true;
                self.finish(seq, now);
            }
        }
    }

    /// Releases a finished sequence, records its metrics and reports its outcome.
    fn finish(&mut self, seq: Seq, now: Instant) {
        self.pool.release(&seq.blocks);
        seq.report(&self.metrics, now);
    }

    /// Publishes the load gauges.
    pub(crate) fn publish_gauges(&self) {
        self.metrics
            .set_load(self.running.len(), self.waiting.len(), self.pool.usage());
    }

    /// Blocks in the pool (for tests).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &BlockPool {
        &self.pool
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
