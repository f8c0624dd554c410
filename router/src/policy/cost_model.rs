//! The cost model (pure): per replica, the estimated time to first token (TTFT) of a request
//! plus the charges that keep placements good for everyone else.
//!
//! `TTFT(r) = queue(r) + prefill(r) + steps(r) + kv(r) + lag(r)` where
//! - `queue`: prefill of the prompt tokens already waiting on `r` (the router's requests not yet
//!   past first byte, plus waiting requests other clients sent, from a fresh scrape);
//! - `prefill`: this prompt's uncached tokens, plus attention of each of them over the cached
//!   part (the DESIGN numbers: 33 us per new token, ~3.9 ns per new x cached token pair);
//! - `steps`: engine steps until the first token, each slower with more context to decode;
//! - `kv`: a penalty as the replica's KV cache approaches full (it will queue or preempt);
//! - `lag`: how far the replica already runs behind the model (a stalled replica's pending
//!   requests are older than they should be), supplied by the caller.
//!
//! Each replica's [`Speed`] (its learnt multipliers of the configured constants, see
//! [`crate::load`]) scales its terms: `overhead` the steps, `prefill` its own prefill, busy and
//! displacement terms, `queue` the queued prefill.
//!
//! The decision cost adds `busy` (per request in flight: the decode slowdown the new request and
//! the running ones impose on each other), `displace` (a miss on a full cache evicts as much
//! cached prefix, recomputed later), `externality` (while every replica has requests waiting,
//! each second of this prompt's prefill delays the requests that will queue behind it: about as
//! many as wait on the least loaded replica) and `balance` (recent traffic above a fair share). The
//! minimum wins; costs within `tie_tolerance_s` are ties, broken by fewer requests in flight,
//! then by a seeded random draw (never by list order).

use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::load::{ExternalLoad, Speed, TtftPrediction};

/// One value per candidate replica, kept on the stack for up to 8 replicas (a decision then
/// allocates nothing), on the heap beyond.
pub(crate) type PerCandidate<T> = SmallVec<[T; 8]>;

/// Constants of the model, in seconds; defaults fit an 8B model served by vLLM on one H100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// Prefill seconds per uncached prompt token (Llama-3-8B on H100: 33 us).
    pub prefill_s_per_token: f64,
    /// Attention seconds per (new token x cached token) pair (H100 measurement: ~3.9 ns).
    pub prefill_s_per_cached_pair: f64,
    /// Seconds of an engine step with nothing to decode (reading the weights once: ~5 ms).
    pub step_s: f64,
    /// Extra step seconds per context token of each decoding sequence (KV read: ~46 ns).
    pub step_s_per_context_token: f64,
    /// Prompt tokens one engine step prefills at most (vLLM `max_num_batched_tokens`).
    pub step_token_budget: u64,
    /// Seconds charged per request in flight on the replica (mutual decode interference).
    pub busy_s_per_request: f64,
    /// Share of a miss's prefill charged again for the cache it displaces on a full replica
    /// (scaled by how full the replica's cache is): what the evicted prefix costs someone later.
    pub displacement_factor: f64,
    /// Seconds charged per 100% of recent traffic share above a replica's fair share (the policy
    /// leaves it out while the cluster is nearly idle).
    pub share_excess_s: f64,
    /// Time constant of the recent traffic share, seconds.
    pub share_window_s: f64,
    /// KV usage (0..1) above which a replica is considered under memory pressure.
    pub kv_pressure_threshold: f64,
    /// Seconds added at 100% KV usage, growing linearly from the threshold.
    pub kv_pressure_s: f64,
    /// Prompt tokens assumed for each waiting request another client sent (seen by scraping).
    pub external_request_tokens: u64,
    /// Estimates closer than this many seconds are ties, decided by load: a few cached tokens
    /// (a shared greeting, 0.2 ms of prefill) must not pile new conversations onto one replica.
    pub tie_tolerance_s: f64,
    /// Learn each replica's cost constants online (from streaming requests' time to first byte
    /// and its scraped prefill histogram), the configured ones serving only as the prior.
    pub learn_replica_speed: bool,
    /// Share of a prompt's prefill charged once per request that waits behind it when every
    /// replica has requests waiting (the capacity a miss takes from everyone; 0 turns it off).
    pub miss_externality: f64,
    /// Share of a prompt's prefill charged once per request expected to reach the replica before
    /// this one's first token (its share of the recent request rate x its estimated TTFT): those
    /// arrivals wait for that prefill too, so a miss costs them, below saturation as well.
    pub arrival_externality: f64,
    /// Share of the prefill the best-placed replica would save, charged again to a replica that
    /// holds less of the prompt: moving a conversation away from its prefix also costs its later
    /// turns (they miss, or follow and leave a stale copy), and near-ties keep affinity. Only
    /// the prefill beyond `tie_tolerance_s` counts, so a few shared tokens stay a tie.
    pub affinity_margin: f64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            prefill_s_per_token: 33e-6,
            prefill_s_per_cached_pair: 3.9e-9,
            step_s: 5e-3,
            step_s_per_context_token: 46e-9,
            step_token_budget: 8192,
            busy_s_per_request: 3e-3,
            displacement_factor: 4.0,
            share_excess_s: 5.0,
            share_window_s: 120.0,
            kv_pressure_threshold: 0.9,
            kv_pressure_s: 0.2,
            external_request_tokens: 512,
            tie_tolerance_s: 1e-3,
            learn_replica_speed: true,
            miss_externality: 1.0,
            arrival_externality: 1.0,
            affinity_margin: 3.0,
        }
    }
}

/// What the model needs to know about one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaLoadView {
    /// The router's requests in flight on the replica.
    pub inflight: u64,
    /// Uncached prompt tokens of the router's requests not yet past first byte.
    pub pending_tokens: u64,
    /// Prompt tokens of the router's requests past first byte (context being decoded).
    pub decoding_tokens: u64,
    /// Load other clients put on the replica, if a fresh scrape says so.
    pub external: Option<ExternalLoad>,
    /// Seconds the replica already runs behind the model (0 when unknown).
    pub lag_s: f64,
    /// The replica's learnt multipliers of the configured constants.
    pub speed: Speed,
}

/// One candidate replica for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostCandidate {
    /// Prompt tokens the replica is believed to hold (from the prefix tree).
    pub matched_tokens: u64,
    /// How full the replica's prefix cache is believed to be (0..=1, from the tree and its cap).
    pub cache_fill: f64,
    /// How far the replica's recent share of traffic is above its fair share (0.1 = 10% over;
    /// negative when under it, down to -1).
    pub excess_share: f64,
    /// Requests expected to queue behind this one whichever replica takes it (those waiting
    /// on the least loaded replica; 0 while any replica has none waiting).
    pub queued_behind: f64,
    /// The most prompt tokens any candidate holds (the affinity this one would give up).
    pub best_matched_tokens: u64,
    /// Requests per second expected to reach this replica (its share of the recent rate).
    pub arrival_rate: f64,
    /// Its load.
    pub load: ReplicaLoadView,
}

/// The estimate for one replica, term by term (for logs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Prefill of work queued ahead.
    pub queue_s: f64,
    /// Prefill of this prompt's uncached part.
    pub prefill_s: f64,
    /// Engine steps until the first token.
    pub steps_s: f64,
    /// Charge for requests in flight.
    pub busy_s: f64,
    /// Charge for the cached prefixes a miss would evict on a full replica.
    pub displace_s: f64,
    /// Charge for the delay this prompt's prefill imposes on the requests queued behind it.
    pub externality_s: f64,
    /// Charge for giving up the prefix another replica holds.
    pub affinity_s: f64,
    /// Charge for taking more than a fair share of recent traffic (a credit, negative, for
    /// taking less).
    pub balance_s: f64,
    /// KV memory pressure.
    pub kv_s: f64,
    /// Observed lag.
    pub lag_s: f64,
    /// Uncached prompt tokens on this replica.
    pub uncached_tokens: u64,
}

impl Estimate {
    /// The estimated time to first token, seconds.
    pub fn total_s(&self) -> f64 {
        self.ttft_s()
            + self.busy_s
            + self.displace_s
            + self.externality_s
            + self.affinity_s
            + self.balance_s
    }

    /// The TTFT terms the speed fit learns from (this estimate made at speed 1).
    pub fn prediction(&self) -> TtftPrediction {
        TtftPrediction {
            overhead_s: self.steps_s,
            prefill_s: self.prefill_s,
            queue_s: self.queue_s,
        }
    }

    /// The time-to-first-token part of the estimate, seconds.
    pub fn ttft_s(&self) -> f64 {
        self.queue_s + self.prefill_s + self.steps_s + self.kv_s + self.lag_s
    }
}

impl CostConfig {
    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let seconds = [
            ("prefill_s_per_token", self.prefill_s_per_token),
            ("prefill_s_per_cached_pair", self.prefill_s_per_cached_pair),
            ("step_s", self.step_s),
            ("step_s_per_context_token", self.step_s_per_context_token),
            ("busy_s_per_request", self.busy_s_per_request),
            ("displacement_factor", self.displacement_factor),
            ("share_excess_s", self.share_excess_s),
            ("kv_pressure_s", self.kv_pressure_s),
            ("tie_tolerance_s", self.tie_tolerance_s),
            ("miss_externality", self.miss_externality),
            ("arrival_externality", self.arrival_externality),
            ("affinity_margin", self.affinity_margin),
        ];
        if let Some((key, v)) = seconds.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err((
                format!("policy.cost.{key}"),
                format!("must be a finite number >= 0, got {v}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.kv_pressure_threshold) {
            return Err((
                "policy.cost.kv_pressure_threshold".into(),
                "must be within 0..=1".into(),
            ));
        }
        if !(self.share_window_s.is_finite() && self.share_window_s > 0.0) {
            return Err((
                "policy.cost.share_window_s".into(),
                "must be greater than 0".into(),
            ));
        }
        if self.step_token_budget == 0 {
            return Err((
                "policy.cost.step_token_budget".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether holding `tokens` of a prompt saves more prefill than the tie tolerance.
    pub fn worth_following(&self, tokens: u64) -> bool {
        tokens > 0 && tokens as f64 * self.prefill_s_per_token >= self.tie_tolerance_s
    }

    /// Estimates the TTFT of a `prompt_tokens`-token prompt on one candidate.
    pub fn estimate(&self, prompt_tokens: u64, c: &CostCandidate) -> Estimate {
        let load = &c.load;
        let [slow_steps, slow, slow_queue] = load.speed.multipliers();
        let ext = load.external.unwrap_or_default();
        let matched = c.matched_tokens.min(prompt_tokens);
        let uncached = prompt_tokens - matched;
        let ext_tokens = ext.waiting * self.external_request_tokens as f64;
        let queued_tokens = load.pending_tokens as f64 + ext_tokens;
        let queue_s = slow_queue * self.prefill_s_per_token * queued_tokens;
        let prefill_s = slow
            * (self.prefill_s_per_token * uncached as f64
                + self.prefill_s_per_cached_pair * uncached as f64 * matched as f64);
        let context =
            load.decoding_tokens as f64 + ext.running * self.external_request_tokens as f64;
        let step = slow_steps * (self.step_s + self.step_s_per_context_token * context);
        let budget = self.step_token_budget.max(1) as f64;
        // Half a step for the one in progress, then the steps that prefill the queue and us.
        let steps = 0.5 + ((queued_tokens + uncached as f64) / budget).ceil().max(1.0);
        let busy_s =
            slow * self.busy_s_per_request * (load.inflight as f64 + ext.waiting + ext.running);
        let kv_s = match ext.kv_usage {
            Some(kv) if kv > self.kv_pressure_threshold && self.kv_pressure_threshold < 1.0 => {
                let over = (kv - self.kv_pressure_threshold) / (1.0 - self.kv_pressure_threshold);
                self.kv_pressure_s * over.min(1.0)
            }
            _ => 0.0,
        };
        let fill = if c.cache_fill.is_finite() {
            c.cache_fill.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let displace_s =
            slow * self.displacement_factor * fill * self.prefill_s_per_token * uncached as f64;
        let excess = if c.excess_share.is_finite() {
            c.excess_share.max(-1.0)
        } else {
            0.0
        };
        let behind = if c.queued_behind.is_finite() {
            c.queued_behind.max(0.0)
        } else {
            0.0
        };
        let rate = if c.arrival_rate.is_finite() {
            c.arrival_rate.max(0.0)
        } else {
            0.0
        };
        let given_up = c
            .best_matched_tokens
            .min(prompt_tokens)
            .saturating_sub(matched);
        let mut e = Estimate {
            queue_s,
            prefill_s,
            steps_s: steps * step,
            busy_s,
            displace_s,
            // Beyond the tie tolerance only: a shared greeting is no conversation to keep.
            affinity_s: slow
                * self.affinity_margin
                * (self.prefill_s_per_token * given_up as f64 - self.tie_tolerance_s).max(0.0),
            balance_s: self.share_excess_s * excess,
            kv_s,
            lag_s: load.lag_s.max(0.0),
            uncached_tokens: uncached,
            ..Estimate::default()
        };
        let arrivals = rate * e.ttft_s();
        e.externality_s =
            (self.miss_externality * behind + self.arrival_externality * arrivals) * prefill_s;
        e
    }

    /// Estimates every candidate, the affinity charge bounded by how much more is queued on
    /// the replica holding most of the prompt than on the candidate, and faded out as that
    /// holder's recent request rate rises above the mean (gone at twice the mean): the margin
    /// keeps a conversation from being traded for a shorter queue, while a hot prefix whose
    /// holder takes more than its share still spreads as the other terms say.
    pub fn estimates(
        &self,
        prompt_tokens: u64,
        candidates: &[CostCandidate],
    ) -> PerCandidate<Estimate> {
        let mut estimates: PerCandidate<Estimate> = candidates
            .iter()
            .map(|c| self.estimate(prompt_tokens, c))
            .collect();
        let best = candidates.iter().map(|c| c.matched_tokens).max();
        let holder = candidates
            .iter()
            .zip(&estimates)
            .filter(|(c, _)| Some(c.matched_tokens) == best)
            .map(|(c, e)| (e.queue_s + e.lag_s, c.arrival_rate))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((holder_wait, holder_rate)) = holder else {
            return estimates;
        };
        let mean_rate = candidates
            .iter()
            .map(|c| c.arrival_rate)
            .filter(|r| r.is_finite())
            .sum::<f64>()
            / candidates.len() as f64;
        let fade = if mean_rate > 0.0 && holder_rate.is_finite() {
            (2.0 - holder_rate / mean_rate).clamp(0.0, 1.0)
        } else {
            1.0
        };
        for e in &mut estimates {
            let gap = (holder_wait - e.queue_s - e.lag_s).max(0.0);
            e.affinity_s = (fade * e.affinity_s).min(gap);
        }
        estimates
    }

    /// Picks the candidate with the lowest estimate; `None` only for an empty list.
    pub fn choose<R: Rng + ?Sized>(
        &self,
        prompt_tokens: u64,
        candidates: &[CostCandidate],
        rng: &mut R,
    ) -> Option<(usize, Estimate)> {
        let estimates = self.estimates(prompt_tokens, candidates);
        let pick = self.lowest(candidates, &estimates, rng)?;
        Some((pick, estimates[pick]))
    }

    /// The index of the lowest estimate: among those within the tie tolerance of it, the least
    /// loaded, a random one of those if several (`None` only for an empty list).
    fn lowest<R: Rng + ?Sized>(
        &self,
        candidates: &[CostCandidate],
        estimates: &[Estimate],
        rng: &mut R,
    ) -> Option<usize> {
        let best = estimates
            .iter()
            .map(Estimate::total_s)
            .fold(f64::INFINITY, f64::min);
        let near = |i: &usize| estimates[*i].total_s() <= best + self.tie_tolerance_s;
        let least = (0..candidates.len())
            .filter(near)
            .map(|i| total_load(&candidates[i]))
            .fold(f64::INFINITY, f64::min);
        let tied = |i: &usize| near(i) && total_load(&candidates[*i]) <= least;
        let nth = match (0..candidates.len()).filter(tied).count() {
            0 => return None,
            1 => 0,
            n => rng.random_range(0..n),
        };
        (0..candidates.len()).filter(tied).nth(nth)
    }
}

fn total_load(c: &CostCandidate) -> f64 {
    let ext = c.load.external.unwrap_or_default();
    c.load.inflight as f64 + ext.waiting + ext.running
}

#[cfg(test)]
#[path = "cost_model_tests.rs"]
mod tests;
