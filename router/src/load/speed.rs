//! A replica's learnt speed: how its real cost constants compare with the configured ones,
//! fitted online ([`super::learn`]) from what the router sees and what the replica reports.
//!
//! Two sources feed it. Every streaming request answered there: its time to first byte against
//! the cost model's terms for it at dispatch (steps and overhead, own prefill, queue ahead). And
//! every scrape of the replica's vLLM histograms: the mean `request_prefill_time_seconds` of the
//! requests finished since the last scrape against their mean uncached prompt tokens.
//!
//! A fit that has not been fed for [`FORGET_AFTER`] is forgotten (the replica reads as its peers
//! until it has new samples), so a replica avoided for being slow is tried again. Across
//! replicas, [`pooled_speeds`] shrinks each fit towards the median of its peers by how few
//! samples it has: identical replicas read alike, a truly slower one reads slower once its
//! samples say so.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::{
    learn::{ConstantFit, TERMS},
    ttft::{Speed, TtftPrediction},
};

/// Uncached tokens of the reference request [`SpeedEstimate::ratio`] reports on.
pub(crate) const REFERENCE_TOKENS: f64 = 2000.0;
/// Samples needed before the learnt speed is shown as a metric.
const MIN_SAMPLES: u64 = 16;
/// Samples at which a replica's own fit and the median of its peers weigh the same.
const SHRINK_SAMPLES: f64 = 8.0;
/// Observations longer than this are a stall, not a speed (the lag term handles stalls).
const MAX_OBSERVED_S: f64 = 30.0;
/// Weight, in samples, of each request a scrape of the prefill histogram summarises (the
/// router's own observations, which also see the queue, count fully).
const SCRAPE_WEIGHT_PER_REQUEST: f64 = 0.25;
/// Most samples one scrape may count as.
const MAX_SCRAPE_WEIGHT: f64 = 4.0;
/// A fit with no new sample for this long no longer counts, and the next sample starts over.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The configured constants the learnt multipliers scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    /// Configured prefill seconds per uncached token.
    pub prefill_s_per_token: f64,
    /// Configured seconds of one engine step.
    pub step_s: f64,
}

/// What a replica's scraped histograms say about the requests it finished between two scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrefillSample {
    /// Requests finished in the interval.
    pub requests: f64,
    /// Their mean time in the prefill phase, seconds.
    pub mean_prefill_s: f64,
    /// Their mean uncached prompt tokens.
    pub mean_uncached_tokens: f64,
}

/// One replica's fit as the policy reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearntSpeed {
    /// The multipliers of the configured constants.
    pub speed: Speed,
    /// Samples behind them.
    pub samples: u64,
}

#[derive(Debug, Default)]
struct State {
    fit: ConstantFit,
    last: Option<Instant>,
    prior: Option<Prior>,
}

impl State {
    fn fresh(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|last| now.saturating_duration_since(last) < FORGET_AFTER)
    }

    fn record(&mut self, x: [f64; TERMS], y: f64, weight: f64, now: Instant) {
        if !self.fresh(now) {
            self.fit = ConstantFit::default();
        }
        let before = self.fit.samples();
        self.fit.record(x, y.min(MAX_OBSERVED_S), weight);
        if self.fit.samples() != before {
            self.last = Some(now);
        }
    }
}

/// One replica's learnt cost multipliers.
#[derive(Debug, Default)]
pub struct SpeedEstimate {
    state: Mutex<State>,
}

impl SpeedEstimate {
    /// Records one streaming request answered at `now`: the model's terms for it at dispatch
    /// were `predicted`, the first byte took `observed_s`.
    pub fn record(&self, predicted: &TtftPrediction, observed_s: f64, now: Instant) {
        let x = [predicted.overhead_s, predicted.prefill_s, predicted.queue_s];
        self.state.lock().record(x, observed_s, 1.0, now);
    }

    /// Records what a scrape of the replica's prefill histogram says (ignored until a policy
    /// has told the estimate its configured constants).
    pub fn record_scrape(&self, sample: &PrefillSample, now: Instant) {
        if !(sample.requests.is_finite() && sample.requests >= 1.0) {
            return;
        }
        let mut s = self.state.lock();
        let Some(prior) = s.prior else {
            return;
        };
        // A prefill phase is about one engine step plus the prompt's compute.
        let x = [
            prior.step_s,
            prior.prefill_s_per_token * sample.mean_uncached_tokens,
            0.0,
        ];
        let weight = (sample.requests * SCRAPE_WEIGHT_PER_REQUEST).min(MAX_SCRAPE_WEIGHT);
        s.record(x, sample.mean_prefill_s, weight, now);
    }

    /// The fit at `now` (`None` before any sample or once forgotten); remembers `prior`, the
    /// constants the multipliers scale.
    pub fn learnt(&self, now: Instant, prior: Prior) -> Option<LearntSpeed> {
        let mut s = self.state.lock();
        if s.prior != Some(prior) {
            s.prior = Some(prior);
        }
        (s.fit.samples() > 0 && s.fresh(now)).then(|| LearntSpeed {
            speed: Speed::from_multipliers(s.fit.multipliers()),
            samples: s.fit.samples(),
        })
    }

    /// How much slower than configured the replica is, once the fit has enough recent samples:
    /// its learnt time to first token over the configured one for a reference request (2000
    /// uncached tokens, nothing queued). Robust to how the fit splits
    /// time between per-request overhead and per-token prefill.
    pub fn ratio(&self, now: Instant) -> Option<f64> {
        let s = self.state.lock();
        let prior = s.prior.unwrap_or(Prior {
            prefill_s_per_token: 33e-6,
            step_s: 5e-3,
        });
        let x = [
            1.5 * prior.step_s,
            REFERENCE_TOKENS * prior.prefill_s_per_token,
            0.0,
        ];
        let nominal: f64 = x.iter().sum();
        (s.fit.samples() >= MIN_SAMPLES && s.fresh(now) && nominal > 0.0)
            .then(|| s.fit.predict(&x) / nominal)
    }

    /// The learnt absolute constants (overhead s per step, prefill s per token, queue drain s
    /// per token) once the fit has enough recent samples and a policy gave the prior.
    pub fn constants(&self, now: Instant) -> Option<[f64; TERMS]> {
        let s = self.state.lock();
        let prior = s.prior?;
        (s.fit.samples() >= MIN_SAMPLES && s.fresh(now)).then(|| {
            let m = s.fit.multipliers();
            [
                m[0] * prior.step_s,
                m[1] * prior.prefill_s_per_token,
                m[2] * prior.prefill_s_per_token,
            ]
        })
    }

    /// Forgets the fit (the replica was replaced or came back from being down).
    pub fn reset(&self) {
        let mut s = self.state.lock();
        s.fit = ConstantFit::default();
        s.last = None;
    }
}

/// The speed the cost model uses for each replica: its own fit, shrunk towards the median of
/// the replicas' fits by how few samples it has; the median itself for a replica with none
/// (all 1, the configured constants, while no replica has a fit).
pub fn pooled_speeds(learnt: &[Option<LearntSpeed>]) -> Vec<Speed> {
    let mut speeds = vec![Speed::default(); learnt.len()];
    pool_speeds_into(learnt, &mut speeds);
    speeds
}

/// [`pooled_speeds`] written into `out` (one per entry of `learnt`; extra entries untouched),
/// allocating nothing for up to 8 replicas.
pub fn pool_speeds_into(learnt: &[Option<LearntSpeed>], out: &mut [Speed]) {
    let mut known: SmallVec<[[f64; TERMS]; 8]> = learnt
        .iter()
        .flatten()
        .map(|l| l.speed.multipliers())
        .collect();
    if known.is_empty() {
        out.iter_mut().for_each(|s| *s = Speed::default());
        return;
    }
    let median: [f64; TERMS] = std::array::from_fn(|j| {
        known.sort_by(|a, b| a[j].total_cmp(&b[j]));
        let mid = known.len() / 2;
        if known.len() % 2 == 0 {
            (known[mid - 1][j] + known[mid][j]) / 2.0
        } else {
            known[mid][j]
        }
    });
    for (l, out) in learnt.iter().zip(out) {
        let m = match l {
            Some(l) => {
                let own = l.speed.multipliers();
                let w = l.samples as f64 / (l.samples as f64 + SHRINK_SAMPLES);
                std::array::from_fn(|j| median[j] + w * (own[j] - median[j]))
            }
            None => median,
        };
        *out = Speed::from_multipliers(m);
    }
}

#[cfg(test)]
#[path = "speed_tests.rs"]
mod tests;
