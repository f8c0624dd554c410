//! Summary statistics of a sample, with percentiles interpolated like numpy's default.

use serde::{Deserialize, Serialize};

/// Mean, spread and percentiles of a sample (all zero for an empty sample; a statistic missing
/// when read back, as from an older results file, is zero too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// 50th percentile.
    pub median: f64,
    /// Population standard deviation.
    pub std: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest value.
    pub min: f64,
    /// 25th percentile.
    pub p25: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// Statistics of `values` (any order; NaNs are ignored).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            median: percentile(&v, 50.0),
            std: var.sqrt(),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            min: v[0],
            p25: percentile(&v, 25.0),
            p75: percentile(&v, 75.0),
            p95: percentile(&v, 95.0),
            max: v[v.len() - 1],
        }
    }

    /// Every field multiplied by `k` (seconds to milliseconds: 1000).
    pub fn scaled(self, k: f64) -> Self {
        Self {
            mean: self.mean * k,
            median: self.median * k,
            std: self.std * k,
            p90: self.p90 * k,
            p99: self.p99 * k,
            min: self.min * k,
            p25: self.p25 * k,
            p75: self.p75 * k,
            p95: self.p95 * k,
            max: self.max * k,
        }
    }
}

/// The `p`th percentile of sorted, non-empty `v` with linear interpolation between ranks.
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_numpy() {
        // numpy: mean 5.5, median 5.5, std 2.8722813, p90 9.1, p99 9.91, p25 3.25, p95 9.55
        let s = Stats::of(&[10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]);
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.median, 5.5);
        assert!((s.std - 2.872_281_3).abs() < 1e-6);
        assert!((s.p90 - 9.1).abs() < 1e-9);
        assert!((s.p99 - 9.91).abs() < 1e-9);
        assert!((s.p25 - 3.25).abs() < 1e-9);
        assert!((s.p75 - 7.75).abs() < 1e-9);
        assert!((s.p95 - 9.55).abs() < 1e-9);
        assert_eq!((s.min, s.max), (1.0, 10.0));
    }

    #[test]
    fn single_and_empty_samples() {
        let s = Stats::of(&[4.0]);
        assert_eq!((s.mean, s.median, s.std, s.p99), (4.0, 4.0, 0.0, 4.0));
        assert_eq!(Stats::of(&[]), Stats::default());
        assert_eq!(Stats::of(&[0.002]).scaled(1000.0).mean, 2.0);
    }
}
