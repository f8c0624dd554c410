//! Online speed calibration: how a replica's observed time to first byte compares with what the
//! cost model predicted for it. A replica on a slower GPU (or sharing one) shows a higher ratio.
//!
//! Only streaming requests teach it (a non-streaming response's first byte is its last). The
//! ratio is of decayed sums, not a mean of ratios, so the many cache hits predicted at a few
//! milliseconds cannot drown the requests that carry real prefill work. A ratio that has not
//! been fed for [`FORGET_AFTER`] is forgotten, so a replica avoided for being slow is tried again.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Weight of the newest sample in the decayed sums (about the last 32 samples count).
const DECAY: f64 = 1.0 / 32.0;
/// Samples needed before the ratio is trusted.
const MIN_SAMPLES: u64 = 16;
/// Observations longer than this are a stall, not a speed (the lag term handles stalls).
const MAX_OBSERVED_S: f64 = 30.0;
/// A ratio with no new sample for this long no longer counts, and the next sample starts over.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    observed_s: f64,
    predicted_s: f64,
    samples: u64,
    last: Option<Instant>,
}

impl Sums {
    fn fresh(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|last| now.saturating_duration_since(last) < FORGET_AFTER)
    }
}

/// One replica's observed/predicted TTFT ratio, learnt from its streaming requests.
#[derive(Debug, Default)]
pub struct SpeedEstimate {
    sums: Mutex<Sums>,
}

impl SpeedEstimate {
    /// Records one streaming request answered at `now`: the model predicted `predicted_s`, the
    /// first byte took `observed_s`.
    pub fn record(&self, predicted_s: f64, observed_s: f64, now: Instant) {
        if !(predicted_s.is_finite() && predicted_s > 0.0 && observed_s.is_finite()) {
            return;
        }
        let observed_s = observed_s.clamp(0.0, MAX_OBSERVED_S);
        let mut s = self.sums.lock();
        if !s.fresh(now) {
            *s = Sums::default();
        }
        s.last = Some(now);
        s.observed_s = s.observed_s * (1.0 - DECAY) + observed_s * DECAY;
        s.predicted_s = s.predicted_s * (1.0 - DECAY) + predicted_s * DECAY;
        s.samples += 1;
    }

    /// Observed over predicted TTFT at `now`, once enough recent samples have been seen.
    pub fn ratio(&self, now: Instant) -> Option<f64> {
        let s = *self.sums.lock();
        (s.samples >= MIN_SAMPLES && s.predicted_s > 0.0 && s.fresh(now))
            .then(|| s.observed_s / s.predicted_s)
    }

    /// Forgets everything (the replica was replaced or came back from being down).
    pub fn reset(&self) {
        *self.sums.lock() = Sums::default();
    }
}

/// Each candidate's slowness relative to the median of the known ratios, clamped to `0.5..=4`:
/// 1.0 for all while fewer than two replicas have a ratio, or for a replica without one. A
/// common bias of the model (all replicas 20% faster than predicted) cancels out.
pub fn relative_slowness(ratios: &[Option<f64>]) -> Vec<f64> {
    let mut known: Vec<f64> = ratios
        .iter()
        .flatten()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    if known.len() < 2 {
        return vec![1.0; ratios.len()];
    }
    known.sort_by(f64::total_cmp);
    let mid = known.len() / 2;
    let median = if known.len() % 2 == 0 {
        (known[mid - 1] + known[mid]) / 2.0
    } else {
        known[mid]
    };
    ratios
        .iter()
        .map(|r| match r {
            Some(r) if r.is_finite() && *r > 0.0 => (r / median).clamp(0.5, 4.0),
            _ => 1.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_needs_samples_then_follows_the_sums() {
        let t = Instant::now();
        let s = SpeedEstimate::default();
        for _ in 0..MIN_SAMPLES - 1 {
            s.record(0.010, 0.025, t);
        }
        assert_eq!(s.ratio(t), None);
        s.record(0.010, 0.025, t);
        let r = s.ratio(t).unwrap();
        assert!((r - 2.5).abs() < 1e-9, "{r}");
        // Ratio of sums: one big request outweighs many tiny ones.
        let s = SpeedEstimate::default();
        for _ in 0..20 {
            s.record(0.001, 0.003, t);
        }
        s.record(0.5, 0.5, t);
        let r = s.ratio(t).unwrap();
        assert!(r < 1.5, "{r}");
        s.reset();
        assert_eq!(s.ratio(t), None);
    }

    #[test]
    fn bad_samples_are_ignored_and_stalls_clamped() {
        let t = Instant::now();
        let s = SpeedEstimate::default();
        for _ in 0..MIN_SAMPLES {
            s.record(0.0, 1.0, t);
            s.record(f64::NAN, 1.0, t);
            s.record(0.01, f64::INFINITY, t);
        }
        assert_eq!(s.ratio(t), None);
        for _ in 0..MIN_SAMPLES {
            s.record(1.0, 1000.0, t);
        }
        assert!(s.ratio(t).unwrap() <= MAX_OBSERVED_S + 1e-9);
    }

    #[test]
    fn an_unfed_ratio_is_forgotten_and_learning_starts_over() {
        let t = Instant::now();
        let s = SpeedEstimate::default();
        for _ in 0..MIN_SAMPLES {
            s.record(0.01, 0.04, t);
        }
        assert!(s.ratio(t + FORGET_AFTER / 2).is_some());
        let later = t + FORGET_AFTER;
        assert_eq!(s.ratio(later), None, "no sample for FORGET_AFTER");
        s.record(0.01, 0.01, later);
        assert_eq!(s.ratio(later), None, "one sample after a gap is not enough");
        for _ in 1..MIN_SAMPLES {
            s.record(0.01, 0.01, later);
        }
        let r = s.ratio(later).unwrap();
        assert!((r - 1.0).abs() < 1e-9, "the old 4x is gone: {r}");
    }

    #[test]
    fn slowness_is_relative_to_the_median_and_clamped() {
        assert_eq!(relative_slowness(&[Some(3.0), None]), vec![1.0, 1.0]);
        let s = relative_slowness(&[Some(0.8), Some(0.8), Some(0.8), Some(2.0)]);
        assert_eq!(s[..3], [1.0, 1.0, 1.0]);
        assert!((s[3] - 2.5).abs() < 1e-9);
        let s = relative_slowness(&[Some(1.0), Some(100.0), Some(0.01), None]);
        assert_eq!(s, vec![1.0, 4.0, 0.5, 1.0]);
    }
}
