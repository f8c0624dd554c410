//! `cost` (the default policy): send each request where its estimated time to first token is
//! lowest, counting both the prefix a replica already holds and the work queued on it.
//!
//! Per healthy replica, `cost_model` estimates `TTFT = queue + prefill(uncached) + steps +
//! busy + kv + lag` from the prefix tree (matched tokens), the router's own counts (in flight,
//! prefill tokens not yet past first byte, context being decoded, how long pending requests have
//! waited) and, when fresh, the replica's scraped waiting/running/KV usage beyond its own.
//!
//! Why this spreads hot prefixes without losing affinity: a miss costs `33 us x uncached tokens`
//! (66 ms for a 2000-token system prompt), so a request stays with the replica holding its prefix
//! until that replica's queue and in-flight work cost more than the miss; then an idle replica
//! takes it, learns the prefix, and from then on both compete on load alone. The `busy` charge
//! (10 ms per request in flight, tuned on the W1/W3/W4 benchmarks) is what keeps long-run request
//! counts balanced when queues are short and prefill alone would not tell replicas apart.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;
use rand::rngs::SmallRng;

use super::{
    Decision, DecisionReason, Policy, ReplicaView, RouteRequest,
    cost_model::{CostCandidate, CostConfig, Estimate, ReplicaLoadView},
    prefix_index::PrefixIndex,
    share::DispatchShare,
};
use crate::replicas::ReplicaId;

/// The cost policy over a shared prefix index.
pub struct CostPolicy {
    index: Arc<PrefixIndex>,
    model: CostConfig,
    share: DispatchShare,
    rng: Mutex<SmallRng>,
}

impl std::fmt::Debug for CostPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostPolicy")
            .field("model", &self.model)
            .finish()
    }
}

/// Tokens `replica` holds according to `matches` (sorted by replica id).
pub(crate) fn matched_tokens(matches: &[(ReplicaId, u64)], replica: ReplicaId) -> u64 {
    matches
        .iter()
        .find(|(r, _)| *r == replica)
        .map_or(0, |(_, t)| *t)
}

impl CostPolicy {
    /// A cost policy with constants `model`, recording keys in `index`, breaking ties with `rng`.
    pub fn new(index: Arc<PrefixIndex>, model: CostConfig, rng: SmallRng) -> Self {
        let share = DispatchShare::new(model.share_window_s);
        Self {
            index,
            model,
            share,
            rng: Mutex::new(rng),
        }
    }

    /// What the model sees of one replica at `now`.
    fn load_view(&self, view: &ReplicaView<'_>, now: Instant) -> ReplicaLoadView {
        let pending = view.load.pending.snapshot(now);
        let queued_s = self.model.prefill_s_per_token * pending.prefill_tokens as f64;
        // Pending requests older than the model says they should be: the replica is behind
        // (stalled, or slower than the constants); new work there waits at least that much more.
        let lag_s = if pending.requests > 0 {
            (pending.mean_age_s - queued_s - 2.0 * self.model.step_s).max(0.0)
        } else {
            0.0
        };
        ReplicaLoadView {
            inflight: view.load.requests(),
            pending_tokens: pending.prefill_tokens,
            decoding_tokens: view
                .load
                .prompt_tokens()
                .saturating_sub(pending.prompt_tokens),
            external: view.load.scraped.fresh(now).map(|s| s.external),
            lag_s,
        }
    }
}

impl Policy for CostPolicy {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn pick(&self, request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        let now = Instant::now();
        let prompt_tokens = request.prompt_tokens_estimate as u64;
        let matches = self.index.matches(&request.prompt);
        let ids: Vec<(ReplicaId, u32)> = candidates.iter().map(|v| (v.id, v.weight)).collect();
        let excess = self.share.excess(&ids);
        let cands: Vec<CostCandidate> = candidates
            .iter()
            .zip(excess)
            .map(|(v, excess_share)| CostCandidate {
                matched_tokens: matched_tokens(&matches, v.id).min(prompt_tokens),
                cache_fill: self.index.fill(v.id),
                excess_share,
                load: self.load_view(v, now),
            })
            .collect();
        let chosen = self
            .model
            .choose(prompt_tokens, &cands, &mut *self.rng.lock());
        let (i, estimate) = chosen.unwrap_or((0, Estimate::default()));
        let best_match = cands.iter().map(|c| c.matched_tokens).max().unwrap_or(0);
        let matched = cands.get(i).map_or(0, |c| c.matched_tokens);
        let reason = if candidates.len() == 1 {
            DecisionReason::OnlyCandidate
        } else if !self.model.worth_following(best_match) {
            DecisionReason::NoCache
        } else if matched == best_match {
            DecisionReason::CacheAffinity
        } else {
            DecisionReason::LoadSpread
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let all: Vec<String> = candidates
                .iter()
                .zip(&cands)
                .map(|(v, c)| {
                    let e = self.model.estimate(prompt_tokens, c);
                    format!(
                        "{}={:.1}ms(ttft {:.1} busy {:.1} evict {:.1} share {:.1} lag {:.1})/hit{}/q{}/n{}",
                        v.name,
                        e.total_s() * 1e3,
                        e.ttft_s() * 1e3,
                        e.busy_s * 1e3,
                        e.displace_s * 1e3,
                        e.balance_s * 1e3,
                        e.lag_s * 1e3,
                        c.matched_tokens,
                        c.load.pending_tokens,
                        c.load.inflight
                    )
                })
                .collect();
            tracing::debug!(
                policy = "cost", replica = candidates.get(i).map_or("", |v| v.name),
                reason = reason.as_str(), prompt_tokens, matched, best_match,
                estimate_ms = estimate.total_s() * 1e3, candidates = %all.join(" "),
                "cost decision"
            );
        }
        Decision {
            replica: candidates.get(i).map_or(ReplicaId(0), |v| v.id),
            reason,
            matched_tokens: Some(matched),
        }
    }

    fn on_dispatch(&self, request: &RouteRequest<'_>, replica: ReplicaId) {
        self.index.insert(&request.prompt, replica);
        self.share.record(replica, Instant::now());
    }

    fn on_replica_removed(&self, replica: ReplicaId) {
        self.index.remove(replica);
        self.share.remove(replica);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::{
        policy::{
            PromptKey,
            test_support::{Fixture, request},
        },
        prompt_key::PrefixConfig,
    };

    fn policy() -> (CostPolicy, Arc<PrefixIndex>) {
        let index = Arc::new(PrefixIndex::new(&PrefixConfig::default()));
        let p = CostPolicy::new(
            Arc::clone(&index),
            CostConfig::default(),
            SmallRng::seed_from_u64(1),
        );
        (p, index)
    }

    fn long_request(text: &str) -> RouteRequest<'_> {
        RouteRequest {
            prompt: PromptKey::Text(text),
            prompt_tokens_estimate: text.len() / 4,
            ..request()
        }
    }

    #[test]
    fn follows_the_prefix_when_idle_and_spreads_when_the_owner_is_busy() {
        let (p, index) = policy();
        let f = Fixture::new(&[1, 1, 1]);
        let text = "s".repeat(8000);
        index.insert(&PromptKey::Text(&text), ReplicaId(2));
        let d = p.pick(&long_request(&text), &f.views());
        assert_eq!(
            (d.replica, d.reason),
            (ReplicaId(2), DecisionReason::CacheAffinity)
        );
        assert_eq!(d.matched_tokens, Some(2000));
        // The owner gets 10 requests of queued prefill (each a 2000-token miss elsewhere).
        let now = Instant::now();
        for _ in 0..10 {
            f.loads[2].add(1, 2000);
            let _ = f.loads[2].pending.add(2000, 2000, now);
        }
        let d = p.pick(&long_request(&text), &f.views());
        assert_ne!(d.replica, ReplicaId(2));
        assert_eq!(
            (d.reason, d.matched_tokens),
            (DecisionReason::LoadSpread, Some(0))
        );
    }

    #[test]
    fn no_cache_goes_to_the_least_loaded_and_dispatch_teaches_the_tree() {
        let (p, index) = policy();
        let f = Fixture::new(&[1, 1]);
        f.loads[0].add(3, 30);
        let r = long_request("a fresh prompt nobody has seen");
        let d = p.pick(&r, &f.views());
        assert_eq!(
            (d.replica, d.reason),
            (ReplicaId(1), DecisionReason::NoCache)
        );
        p.on_dispatch(&r, d.replica);
        assert_eq!(index.matches(&r.prompt), vec![(ReplicaId(1), 7)]);
        p.on_replica_removed(ReplicaId(1));
        assert!(index.matches(&r.prompt).is_empty());
    }
}
