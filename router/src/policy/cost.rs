//! `cost` (the default policy): send each request where its estimated cost is lowest, in
//! seconds: its time to first token there plus what the placement costs everyone else.
//!
//! Per healthy replica, [`super::cost_model`] adds up `ttft + busy + evict + externality + share`:
//! - `ttft` = queued prefill + this prompt's uncached prefill + engine steps (+ KV pressure, lag),
//!   from the prefix tree (matched tokens), the router's own counts (prefill tokens not yet past
//!   first byte, less what the queue's head has prefilled since it was sent; context being
//!   decoded; how long pending requests have waited) and, when fresh, the replica's scraped
//!   waiting/running/KV usage beyond the router's own requests;
//! - `busy` = 3 ms per request in flight (mutual decode slowdown, ~46 ns x 1k context x 60 steps);
//! - `evict` = 4 x cache fill x the miss's prefill: on a full cache a miss evicts as much cached
//!   prefix, which someone recomputes later on a GPU that others share;
//! - `externality` = this prompt's prefill x the requests that will wait for it: those waiting
//!   on the least loaded replica, plus those expected to reach this replica before its first
//!   token (its recent request rate x the estimate), so a miss costs them too; under uniform
//!   overload affinity (and throughput) is kept, while a hit's small prefill costs them little;
//! - `affinity` = 3 x the prefill the best-placed replica would save (beyond the tie tolerance),
//!   charged to a replica that holds less of the prompt: a conversation moved away from its
//!   prefix makes its later turns miss too (or follow it and leave a stale copy behind), and
//!   near-ties keep affinity;
//! - `share` = 5 s per 100% of recent (about 2 minutes) traffic above the replica's fair share,
//!   beyond one Poisson standard deviation of chance, once replicas have work in flight, and
//!   as much credit per 100% below it beyond two; the fair share is proportional to the
//!   replica's capacity (weight over learnt slowness), so a 2.5x slower replica is sent about
//!   its capacity's share instead of only what overflows from the fast ones; a replica back
//!   from 5 s or more out of the picks (an outage) or new to the pool starts at its fair share,
//!   so it is neither flooded nor starved.
//!
//! Why this gets affinity and balance together: a request stays with the replica holding its
//! prefix until that replica's queue costs more than a miss elsewhere (a 2000-token prompt: 66 ms
//! of prefill, up to 5x that on a full cache); an idle replica then takes it, learns the prefix,
//! and from then on both compete on load alone, so a hot prefix spreads by itself. Tenants that
//! stay put because their misses are expensive would leave long-run counts uneven (the W4 case);
//! the `share` term evens those out without touching decisions while traffic is balanced (W1).
//!
//! Tuning (4 vllm-sim replicas, H100 time model, `loadgen/bench/policies.sh`): `busy` 10 ms
//! alone kept W4 balanced but moved W1 conversations on ordinary in-flight noise (81% of the
//! oracle hit rate); `busy` 3 ms alone left W4 at 1.15 max/mean. `evict` 4 brought W1 to 95-97%
//! of the oracle; it also makes W4's full caches expensive to replicate into, so only a strong,
//! slow `share` term (5 s per 100%, 2-minute window, noise allowance) evens W4 out (1.04-1.08)
//! while leaving W1 untouched, since W1's traffic is balanced to begin with. The tie tolerance
//! (1 ms) keeps a shared greeting of a few tokens from piling new conversations on one replica.
//!
//! Replicas need not be equal, nor match the configured constants: with `learn_replica_speed`
//! each replica's constants (steps, prefill per token, queue drain) are fitted online from its
//! streaming requests' time to first byte and its scraped prefill histogram ([`crate::load`]),
//! the configured values serving as the prior, and scale its estimate.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;
use rand::rngs::SmallRng;

use super::{
    Decision, DecisionReason, Policy, ReplicaView, RouteRequest,
    cost_model::{CostCandidate, CostConfig, Estimate, PerCandidate, ReplicaLoadView},
    prefix_index::{PrefixIndex, matched_tokens},
    share::DispatchShare,
};
use crate::{
    load::{PendingSnapshot, Prior, SAME_SPEED, Speed, pool_speeds_into},
    replicas::ReplicaId,
};

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

/// Replaces each prefill multiplier by its ratio to the median: 1 within [`SAME_SPEED`] of it.
fn relative_slowness(m: &mut [(ReplicaId, f64)]) {
    let (lo, hi) = m.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), (_, v)| {
        (lo.min(*v), hi.max(*v))
    });
    if hi <= SAME_SPEED * lo {
        // The common case, every replica alike: no median needed.
        m.iter_mut().for_each(|(_, v)| *v = 1.0);
        return;
    }
    let mut sorted: PerCandidate<f64> = m.iter().map(|(_, v)| *v).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 0 {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    } else {
        sorted[n / 2]
    };
    for (_, v) in m.iter_mut() {
        let rel = *v / median;
        *v = if (1.0 / SAME_SPEED..=SAME_SPEED).contains(&rel) {
            1.0
        } else {
            rel
        };
    }
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

    /// What the model sees of one replica at `now` at `speed`, and how many requests wait there.
    fn load_view(
        &self,
        view: &ReplicaView<'_>,
        now: Instant,
        speed: Speed,
    ) -> (ReplicaLoadView, f64) {
        let reading = view.load_at(now);
        let pending = reading.pending;
        let (pending_tokens, lag_s) = self.queue_view(&pending, speed);
        let external = view.load.scraped.fresh(now).map(|s| s.external);
        let waiting = pending.requests as f64 + external.map_or(0.0, |e| e.waiting);
        let load = ReplicaLoadView {
            inflight: reading.requests,
            pending_tokens,
            decoding_tokens: reading.decoding_tokens(),
            external,
            lag_s,
            speed,
        };
        (load, waiting)
    }

    /// The prefill tokens still queued on a replica with `pending` requests at `speed`, and how
    /// far it runs behind the model (seconds).
    fn queue_view(&self, pending: &PendingSnapshot, speed: Speed) -> (u64, f64) {
        let [steps, _, queue] = speed.multipliers();
        let s_per_token = queue * self.model.prefill_s_per_token;
        let queued_s = s_per_token * pending.prefill_tokens as f64;
        // Pending requests older than the model says they should be: the replica is behind
        // (stalled, or slower than the constants); new work there waits at least that much more.
        let lag_s = if pending.requests > 0 {
            (pending.mean_age_s - queued_s - 2.0 * steps * self.model.step_s).max(0.0)
        } else {
            0.0
        };
        // Less what the head of the queue has prefilled since it was sent: a request for a
        // prefix whose miss is half done waits only for the other half (then hits).
        (pending.undone_prefill_tokens(s_per_token), lag_s)
    }

    /// Each candidate's speed: its learnt constants pooled with its peers', or 1.
    fn speeds(&self, candidates: &[ReplicaView<'_>], now: Instant) -> PerCandidate<Speed> {
        let mut speeds = PerCandidate::from_elem(Speed::default(), candidates.len());
        if !self.model.learn_replica_speed {
            return speeds;
        }
        let prior = Prior {
            prefill_s_per_token: self.model.prefill_s_per_token,
            step_s: self.model.step_s,
        };
        let learnt: PerCandidate<_> = candidates
            .iter()
            .map(|v| v.load.speed.learnt(now, prior))
            .collect();
        pool_speeds_into(&learnt, &mut speeds);
        speeds
    }

    /// Each candidate's `(id, capacity)`: its weight over how much slower than its peers it is
    /// learnt to be, so one 2.5x slower is fairly sent 2.5x fewer requests (differences within
    /// the fit's noise, [`SAME_SPEED`], count as none).
    fn capacities(
        candidates: &[ReplicaView<'_>],
        speeds: &[Speed],
    ) -> PerCandidate<(ReplicaId, f64)> {
        let mut ids: PerCandidate<(ReplicaId, f64)> = candidates
            .iter()
            .zip(speeds)
            .map(|(v, s)| (v.id, s.multipliers()[1]))
            .collect();
        relative_slowness(&mut ids);
        for ((_, capacity), v) in ids.iter_mut().zip(candidates) {
            *capacity = f64::from(v.weight.max(1)) / *capacity;
        }
        ids
    }

    /// The model's view of every candidate for `request` (the part of its prompt each holds),
    /// with its `speeds`, `excess` share and arrival `rates`.
    fn cost_candidates(
        &self,
        request: &RouteRequest<'_>,
        candidates: &[ReplicaView<'_>],
        now: Instant,
        speeds: &[Speed],
        excess: &[f64],
        rates: &[f64],
    ) -> PerCandidate<CostCandidate> {
        let prompt_tokens = request.prompt_tokens_estimate as u64;
        let matches = self.index.matches(&request.prompt);
        let mut queued_behind = f64::INFINITY;
        let mut best_match = 0;
        let mut cands: PerCandidate<CostCandidate> = candidates
            .iter()
            .zip(speeds)
            .zip(excess)
            .zip(rates)
            .map(|(((v, speed), excess_share), arrival_rate)| {
                let (load, waiting) = self.load_view(v, now, *speed);
                queued_behind = queued_behind.min(waiting);
                let matched = matched_tokens(&matches, v.id).min(prompt_tokens);
                best_match = best_match.max(matched);
                CostCandidate {
                    matched_tokens: matched,
                    cache_fill: self.index.fill(v.id),
                    excess_share: *excess_share,
                    queued_behind: 0.0,
                    best_matched_tokens: 0,
                    arrival_rate: *arrival_rate,
                    load,
                }
            })
            .collect();
        // Requests that wait whichever replica takes this one: a miss's prefill delays them all.
        let queued_behind = if queued_behind.is_finite() {
            queued_behind
        } else {
            0.0
        };
        for c in &mut cands {
            c.queued_behind = queued_behind;
            c.best_matched_tokens = best_match;
        }
        cands
    }
}

impl Policy for CostPolicy {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn pick(&self, request: &RouteRequest<'_>, candidates: &[ReplicaView<'_>]) -> Decision {
        let now = Instant::now();
        let prompt_tokens = request.prompt_tokens_estimate as u64;
        let speeds = self.speeds(candidates, now);
        let ids = Self::capacities(candidates, &speeds);
        // Long-run balance only matters once replicas have work: with less than one request in
        // flight per replica, nobody waits for anybody and affinity alone decides.
        let busy_cluster =
            candidates.iter().map(|v| v.load.requests()).sum::<u64>() >= candidates.len() as u64;
        // Requests recently sent to each replica per second: about as many will arrive there
        // while this one's prefill runs.
        let (excess, rates) = self.share.excess_and_rates(now, &ids, busy_cluster);
        let cands = self.cost_candidates(request, candidates, now, &speeds, &excess, &rates);
        let best_match = cands.first().map_or(0, |c| c.best_matched_tokens);
        let chosen = self
            .model
            .choose(prompt_tokens, &cands, &mut *self.rng.lock());
        let (i, estimate) = chosen.unwrap_or((0, Estimate::default()));
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
            let estimates = self.model.estimates(prompt_tokens, &cands);
            let all: Vec<String> = candidates
                .iter()
                .zip(&cands)
                .zip(&estimates)
                .map(|((v, c), e)| {
                    format!(
                        "{}={:.1}ms(ttft {:.1} busy {:.1} evict {:.1} ext {:.1} aff {:.1} share {:.1} lag {:.1} x{:.2})/hit{}/q{}/n{}",
                        v.name,
                        e.total_s() * 1e3,
                        e.ttft_s() * 1e3,
                        e.busy_s * 1e3,
                        e.displace_s * 1e3,
                        e.externality_s * 1e3,
                        e.affinity_s * 1e3,
                        e.balance_s * 1e3,
                        e.lag_s * 1e3,
                        c.load.speed.prefill,
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
        // The model's terms there at the configured constants: the replica's observed time to
        // first byte against these is what its speed fit learns from.
        let predicted_ttft_s = cands.get(i).zip(candidates.get(i)).map(|(c, v)| {
            // Only the queue terms depend on the speed: the rest of the view is as read.
            let (pending_tokens, lag_s) =
                self.queue_view(&v.load.pending.snapshot(now), Speed::default());
            let load = ReplicaLoadView {
                pending_tokens,
                lag_s,
                speed: Speed::default(),
                ..c.load
            };
            let nominal = CostCandidate { load, ..*c };
            self.model.estimate(prompt_tokens, &nominal).prediction()
        });
        Decision {
            replica: candidates.get(i).map_or(ReplicaId(0), |v| v.id),
            reason,
            matched_tokens: Some(matched),
            predicted_ttft_s,
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

    fn prefix_index(&self) -> Option<&PrefixIndex> {
        Some(&self.index)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn a_hot_prefix_waits_for_its_half_done_miss_instead_of_missing_again_elsewhere() {
        let (p, index) = policy();
        let f = Fixture::new(&[1, 1, 1, 1]);
        let text = "h".repeat(64_000);
        let r = long_request(&text);
        // r1 took the prompt's last few requests (so it is hot: no affinity margin) ...
        for _ in 0..5 {
            p.on_dispatch(&r, ReplicaId(1));
        }
        assert_eq!(index.matches(&r.prompt), vec![(ReplicaId(1), 16_000)]);
        // ... and is still prefilling the first, sent 300 ms ago (528 ms of prefill at the
        // configured 33 us per token): what is left of it is cheaper than a miss elsewhere.
        // (Past 538 ms the replica counts as running late, so the pick below stays with r1
        // unless this thread stalls for over 0.7 s.)
        let sent = Instant::now() - Duration::from_millis(300);
        f.loads[1].add(1, 16_000);
        let _ticket = f.loads[1].pending.add(16_000, 16_000, sent);
        let d = p.pick(&r, &f.views());
        assert_eq!(
            (d.replica, d.reason),
            (ReplicaId(1), DecisionReason::CacheAffinity)
        );
        // Just sent, the whole prefill is ahead: a miss on an idle replica is as quick.
        let (fresh, _) = policy();
        for _ in 0..5 {
            fresh.on_dispatch(&r, ReplicaId(1));
        }
        let g = Fixture::new(&[1, 1, 1, 1]);
        g.loads[1].add(1, 16_000);
        let _ticket =
            g.loads[1]
                .pending
                .add(16_000, 16_000, Instant::now() + Duration::from_secs(3600));
        assert_ne!(fresh.pick(&r, &g.views()).replica, ReplicaId(1));
    }

    #[test]
    fn a_replica_learnt_to_be_slow_loses_its_prefix_once_the_miss_is_cheaper_elsewhere() {
        let (p, index) = policy();
        let f = Fixture::new(&[1, 1, 1]);
        // r0 holds the first 200 of 2000 tokens: 6.6 ms of prefill saved there.
        let text = "q".repeat(8000);
        index.insert(&PromptKey::Text(&text[..800]), ReplicaId(0));
        let d = p.pick(&long_request(&text), &f.views());
        assert_eq!(d.replica, ReplicaId(0));
        let predicted = d.predicted_ttft_s.unwrap();
        assert!(predicted.total_s() > 0.05, "{predicted:?}");
        // r0 turns out 3x slower than predicted, its peers as predicted.
        let now = Instant::now();
        let t = predicted.total_s();
        for _ in 0..16 {
            f.loads[0].speed.record(&predicted, 3.0 * t, now);
            f.loads[1].speed.record(&predicted, t, now);
            f.loads[2].speed.record(&predicted, t, now);
        }
        let d = p.pick(&long_request(&text), &f.views());
        assert_ne!(d.replica, ReplicaId(0));
        assert_eq!(d.reason, DecisionReason::LoadSpread);
        // Without learning the prefix wins again.
        let off = CostPolicy::new(
            Arc::clone(&index),
            CostConfig {
                learn_replica_speed: false,
                ..CostConfig::default()
            },
            SmallRng::seed_from_u64(1),
        );
        assert_eq!(
            off.pick(&long_request(&text), &f.views()).replica,
            ReplicaId(0)
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
