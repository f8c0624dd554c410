//! The GPU time model: how long one scheduler step takes.

use crate::config::SimConfig;
use std::{cell::Cell, time::Duration};

/// The work scheduled in one step.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct StepWork {
    /// New prompt tokens computed this step (prefill chunks).
    pub(crate) prefill_tokens: u64,
    /// Sum over prefill chunks of (chunk tokens x context tokens already in KV before it).
    pub(crate) cached_pairs: f64,
    /// Sequences producing their next token from KV alone.
    pub(crate) decode_seqs: u64,
    /// KV tokens read by those decoding sequences.
    pub(crate) decode_kv_tokens: u64,
}

impl StepWork {
    /// True when nothing was scheduled.
    pub(crate) fn is_empty(&self) -> bool {
        self.prefill_tokens == 0 && self.decode_seqs == 0
    }
}

/// Step time = max(weight read, batch compute) + KV read of decoding sequences, / speedup,
/// times an optional random factor 1 +- `time_noise`.
/// Decode is memory-bound (weights + KV) until the batch is big enough to be compute-bound.
#[derive(Debug, Clone)]
pub(crate) struct CostModel {
    prefill_s_per_token: f64,
    prefill_s_per_pair: f64,
    base_s: f64,
    kv_s_per_token: f64,
    speedup: f64,
    noise: f64,
    /// State of a xorshift64 generator for the noise (never 0).
    rng: Cell<u64>,
}

impl CostModel {
    /// Takes the constants from the config.
    pub(crate) fn new(c: &SimConfig) -> Self {
        Self {
            prefill_s_per_token: c.prefill_us_per_token * 1e-6,
            prefill_s_per_pair: c.prefill_ns_per_cached_pair * 1e-9,
            base_s: c.decode_base_ms * 1e-3,
            kv_s_per_token: c.decode_ns_per_kv_token * 1e-9,
            speedup: c.speedup,
            noise: c.time_noise,
            rng: Cell::new(c.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    /// A factor uniform in 1 +- `noise` (1 without noise).
    fn jitter(&self) -> f64 {
        if self.noise <= 0.0 {
            return 1.0;
        }
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        1.0 + self.noise * (2.0 * unit - 1.0)
    }

    /// Wall time of a step doing `w`.
    pub(crate) fn duration(&self, w: &StepWork) -> Duration {
        if w.is_empty() {
            return Duration::ZERO;
        }
        // Every token in the batch (new prompt tokens and one per decoding sequence) costs the
        // same matmul compute; attention over cached context adds the pair term.
        let compute = (w.prefill_tokens + w.decode_seqs) as f64 * self.prefill_s_per_token
            + w.cached_pairs * self.prefill_s_per_pair;
        let kv = w.decode_kv_tokens as f64 * self.kv_s_per_token;
        let secs = (compute.max(self.base_s) + kv) / self.speedup * self.jitter();
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    #[test]
    fn calibrated_to_design_numbers() {
        let m = CostModel::new(&SimConfig::default());
        // 64 sequences of 1024 tokens decoding: ITL about 8 ms.
        let decode = StepWork {
            decode_seqs: 64,
            decode_kv_tokens: 64 * 1024,
            ..StepWork::default()
        };
        assert!((ms(m.duration(&decode)) - 8.0).abs() < 0.3);
        // 4096 new tokens: about 134 ms.
        let p = StepWork {
            prefill_tokens: 4096,
            ..StepWork::default()
        };
        assert!((ms(m.duration(&p)) - 135.0).abs() < 5.0);
        // 1024 new tokens over 4096 cached: about 50 ms.
        let c = StepWork {
            prefill_tokens: 1024,
            cached_pairs: 1024.0 * 4096.0,
            ..StepWork::default()
        };
        assert!((ms(m.duration(&c)) - 50.0).abs() < 2.0);
        assert_eq!(m.duration(&StepWork::default()), Duration::ZERO);
        // 256 short sequences: compute-bound, above the 5 ms weight-read floor.
        let big = StepWork {
            decode_seqs: 256,
            decode_kv_tokens: 256 * 100,
            ..StepWork::default()
        };
        assert!(ms(m.duration(&big)) > 9.0);
    }

    #[test]
    fn time_noise_varies_steps_within_bounds_around_the_mean() {
        let c = SimConfig {
            time_noise: 0.3,
            ..SimConfig::default()
        };
        let m = CostModel::new(&c);
        let w = StepWork {
            prefill_tokens: 1000,
            ..StepWork::default()
        };
        let exact = ms(CostModel::new(&SimConfig::default()).duration(&w));
        let steps: Vec<f64> = (0..2000).map(|_| ms(m.duration(&w))).collect();
        assert!(
            steps
                .iter()
                .all(|s| *s >= 0.7 * exact - 1e-9 && *s <= 1.3 * exact + 1e-9)
        );
        let mean = steps.iter().sum::<f64>() / steps.len() as f64;
        assert!((mean / exact - 1.0).abs() < 0.03, "{mean} vs {exact}");
        let spread = steps
            .iter()
            .fold(0.0f64, |a, s| a.max((s / exact - 1.0).abs()));
        assert!(spread > 0.25, "noise too small: {spread}");
    }

    #[test]
    fn speedup_divides() {
        let c = SimConfig {
            speedup: 10.0,
            ..SimConfig::default()
        };
        let w = StepWork {
            decode_seqs: 1,
            decode_kv_tokens: 0,
            ..StepWork::default()
        };
        assert!((ms(CostModel::new(&c).duration(&w)) - 0.5).abs() < 1e-6);
    }
}
