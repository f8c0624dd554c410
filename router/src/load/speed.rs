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
//! replicas, [`pooled_speeds`] gives every replica the median of the fits, scaled by its own
//! relative speed, measured only on work with no queue ahead, once its samples say it differs
//! beyond noise: identical replicas read alike, a truly slower one reads slower.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::{
    learn::{self, ConstantFit, TERMS},
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
/// Effective number of recent samples the clean speed reading remembers.
const CLEAN_WINDOW: f64 = 64.0;
/// A first byte counts as clean when its queue term is at most this share of its prediction.
const CLEAN_QUEUE_SHARE: f64 = 0.1;
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
    /// Its own speed measured without a queue ahead, if recently seen.
    pub clean: Option<CleanReading>,
}

/// A replica's observed over configured time for work with no queue ahead of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanReading {
    /// Geometric mean of observed over configured time.
    pub ratio: f64,
    /// Samples behind it.
    pub samples: u64,
}

/// Decayed geometric mean of observed over predicted time, fed only by work that had (almost)
/// nothing queued ahead: the scraped prefill phase, and first bytes whose queue term is small.
/// Under overload no sample qualifies and the reading holds; it can never be pulled by how the
/// router's own placements filled a replica's queue.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct CleanRatio {
    log_sum: f64,
    weight: f64,
    samples: u64,
    last: Option<Instant>,
}

impl CleanRatio {
    fn record(&mut self, observed_s: f64, predicted_s: f64, weight: f64, now: Instant) {
        let log = (observed_s / predicted_s).ln();
        if !(log.is_finite() && weight > 0.0) {
            return;
        }
        if !self.fresh(now) {
            *self = Self::default();
        }
        // Within what the fit itself may report, so one stall cannot swing it.
        let log = log.clamp(
            learn::MIN_MULTIPLIER.ln() - 1.0,
            learn::MAX_MULTIPLIER.ln() + 1.0,
        );
        let keep = 1.0 - (weight / CLEAN_WINDOW).min(1.0);
        self.log_sum = self.log_sum * keep + weight * log;
        self.weight = self.weight * keep + weight;
        self.samples = self.samples.saturating_add(weight.ceil() as u64);
        self.last = Some(now);
    }

    fn fresh(&self, now: Instant) -> bool {
        fed_within_forget(self.last, now)
    }

    fn reading(&self, now: Instant) -> Option<CleanReading> {
        (self.fresh(now) && self.weight > 0.0).then(|| CleanReading {
            ratio: (self.log_sum / self.weight).exp(),
            samples: self.samples,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    fit: ConstantFit,
    clean: CleanRatio,
    last: Option<Instant>,
    prior: Option<Prior>,
}

impl State {
    fn fresh(&self, now: Instant) -> bool {
        fed_within_forget(self.last, now)
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

/// Whether a sample last recorded at `last` is recent enough at `now` (within [`FORGET_AFTER`]).
fn fed_within_forget(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|last| now.saturating_duration_since(last) < FORGET_AFTER)
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
        let total = predicted.total_s();
        let mut s = self.state.lock();
        if predicted.queue_s <= CLEAN_QUEUE_SHARE * total && observed_s <= MAX_OBSERVED_S {
            s.clean.record(observed_s, total, 1.0, now);
        }
        s.record(x, observed_s, 1.0, now);
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
        s.clean
            .record(sample.mean_prefill_s, x.iter().sum(), weight, now);
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
            clean: s.clean.reading(now),
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
        s.clean = CleanRatio::default();
        s.last = None;
    }
}

/// Learnt prefill speeds within this factor of the median count as the same (fit noise).
pub const SAME_SPEED: f64 = 1.25;

/// The speed the cost model uses for each replica: the median of the replicas' fits, term by
/// term, times the replica's own relative speed: its clean reading (no queue ahead) over the
/// median of its peers' clean readings, shrunk by how few samples back it, and none within
/// 25% (growing back to the full difference by twice that), so identical replicas
/// read exactly alike. A replica's own fit never sets its queue term: that is fitted where the
/// router's placements decide the queue, and a fit that read one replica's queue as fast would
/// send it more until the queue proved otherwise. A replica with no fit reads as the median;
/// all 1 (the configured constants) while no replica has one.
pub fn pooled_speeds(learnt: &[Option<LearntSpeed>]) -> Vec<Speed> {
    let mut speeds = vec![Speed::default(); learnt.len()];
    pool_speeds_into(learnt, &mut speeds);
    speeds
}

/// [`pooled_speeds`] written into `out` (one per entry of `learnt`; extra entries untouched),
/// allocating nothing for up to 8 replicas.
pub fn pool_speeds_into(learnt: &[Option<LearntSpeed>], out: &mut [Speed]) {
    let known: SmallVec<[[f64; TERMS]; 8]> = learnt
        .iter()
        .flatten()
        .map(|l| l.speed.multipliers())
        .collect();
    if known.is_empty() {
        out.iter_mut().for_each(|s| *s = Speed::default());
        return;
    }
    let median: [f64; TERMS] = std::array::from_fn(|j| {
        let mut column: SmallVec<[f64; 8]> = known.iter().map(|m| m[j]).collect();
        median_of(&mut column).unwrap_or(1.0)
    });
    let mut clean: SmallVec<[f64; 8]> = learnt
        .iter()
        .flatten()
        .filter_map(|l| l.clean.map(|c| c.ratio))
        .collect();
    let clean_median = median_of(&mut clean);
    for (l, out) in learnt.iter().zip(out) {
        let relative = match (l.and_then(|l| l.clean), clean_median) {
            (Some(own), Some(peers)) => relative_speed(own, peers),
            _ => 1.0,
        };
        *out = Speed::from_multipliers(median.map(|m| m * relative));
    }
}

/// The median of `values` (reordered), `None` when empty.
fn median_of(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 0 => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        _ => Some(values[n / 2]),
    }
}

/// A clean reading over its peers' median, shrunk by confidence and none within the noise band.
fn relative_speed(own: CleanReading, peers: f64) -> f64 {
    let confidence = own.samples as f64 / (own.samples as f64 + SHRINK_SAMPLES);
    let log = confidence * (own.ratio / peers).ln();
    if !log.is_finite() {
        return 1.0;
    }
    let band = SAME_SPEED.ln();
    // 0 inside the band, then rising twice as fast, so that beyond twice the band it is the
    // full difference again: continuous, and a truly 2.5x slower replica reads 2.5x.
    let kept = (2.0 * (log.abs() - band)).clamp(0.0, log.abs());
    (kept * log.signum()).exp()
}

#[cfg(test)]
#[path = "speed_tests.rs"]
mod tests;
